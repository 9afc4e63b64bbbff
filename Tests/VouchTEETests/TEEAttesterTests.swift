import Foundation
import Synchronization
import XCTest
import VouchAttestation
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchTEESim
import VouchTEEWire

/// The attester's confidential-VM sources: the simulated platform kept on disk (same chip and roots
/// across loads, roots a broker can load, collateral that parses), the options file read at every
/// report, and configfs-tsm reports turned into the broker's evidence fields.
final class TEEAttesterTests: XCTestCase {
    /// One simulated platform for the tests here (making one costs RSA key generation).
    static let directory: String = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-sim-tee-\(UUID().uuidString.prefix(8))").path
        _ = try! SimulatedTEEPlatform.loadOrCreate(directory: dir)
        return dir
    }()

    override class func tearDown() { try? FileManager.default.removeItem(atPath: directory) }

    func code(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return (error as? VouchError)?.code.rawValue ?? "\(error)" }
    }

    func testAPlatformIsMadeOnceAndKeptWithItsRootsPublished() throws {
        let first = try SimulatedTEEPlatform.loadOrCreate(directory: Self.directory)
        let again = try SimulatedTEEPlatform.loadOrCreate(directory: Self.directory)
        XCTAssertEqual(first.snp.chipID, again.snp.chipID, "a restart is the same chip")
        XCTAssertEqual(try first.snp.ark.der, try again.snp.ark.der)
        XCTAssertEqual(try first.tdx.root.certificate.der, try again.tdx.root.certificate.der)
        XCTAssertEqual(try first.tdx.pckCertificate.der, try again.tdx.pckCertificate.der)
        let mode = try FileManager.default.attributesOfItem(atPath: Self.directory + "/platform.json")[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600, "the platform's keys are secrets")
        // What a broker is handed: the roots (accepted as the software TEE's) and the collateral.
        let trust = try TEETrust().trustingSimulation(directory: URL(fileURLWithPath: first.rootsDirectory))
        XCTAssertEqual(trust.simulatedSNP?.products[.milan]?.ark.subject, first.snp.ark.subject)
        XCTAssertEqual(try trust.simulatedTDXRoots?.map { try $0.der }, [try first.tdx.root.certificate.der])
        let collateral = try TDXCollateralDirectory(directory: URL(fileURLWithPath: first.collateralDirectory)).collateral(fmspc: first.tdx.platform.fmspc)
        XCTAssertNotNil(collateral)
    }

    func testSimulatedRootsMayOnlyBeTheSoftwareTEEs() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-roots-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertEqual(code { _ = try TEETrust().trustingSimulation(directory: dir) }, "config", "neither file")
        // AMD's own chain is no simulation: refused, so the option cannot widen trust in real platforms.
        let amd = fixtureRoot.appendingPathComponent("certs/amd/ask_ark_milan_vcek.pem")
        try FileManager.default.copyItem(at: amd, to: dir.appendingPathComponent("sev-snp.pem"))
        XCTAssertEqual(code { _ = try TEETrust().trustingSimulation(directory: dir) }, "config")
    }

    var fixtureRoot: URL {
        var url = URL(fileURLWithPath: #filePath)
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) { url.deleteLastPathComponent() }
        return url
    }

    func testTheOptionsFileIsReadAtEveryReport() throws {
        let platform = try SimulatedTEEPlatform.loadOrCreate(directory: Self.directory)
        let options = Self.directory + "/options-\(UUID().uuidString.prefix(4))"
        let snp = SimulatedTEE(kind: .sevSNP, platform: platform, optionsPath: options)
        let data = [UInt8](repeating: 0x42, count: 64)
        // No file: the defaults (VCEK, so the host is the chip; no debug; the default measurement).
        var evidence = try snp.evidence(reportData: data)
        XCTAssertEqual(evidence.chipID, platform.snp.chipID)
        var report = try SNPReport(bytes: try Base64.decode(XCTUnwrap(evidence.fields.report), field: "report"))
        XCTAssertEqual(report.measurement, SimulatedTEEOptions.defaultMeasurement)
        XCTAssertEqual(report.reportData, data)
        XCTAssertFalse(report.policy.debug)
        let table = try SNPCertificateTable(try Base64.decode(XCTUnwrap(evidence.fields.certificateTable), field: "table"))
        XCTAssertEqual(table.certificate(.vcek), try platform.snp.vcek.der)
        XCTAssertNil(evidence.fields.endorsement)

        try Data("# a debug guest under the VLEK\ndebug=true\nsigner = vlek\nmeasurement=\(String(repeating: "22", count: 48))\n".utf8)
            .write(to: URL(fileURLWithPath: options))
        evidence = try snp.evidence(reportData: data)
        XCTAssertNil(evidence.chipID, "a VLEK-signed guest is its host key")
        report = try SNPReport(bytes: try Base64.decode(XCTUnwrap(evidence.fields.report), field: "report"))
        XCTAssertTrue(report.policy.debug)
        XCTAssertEqual(report.signingKey, .vlek)
        XCTAssertEqual(report.chipID, [UInt8](repeating: 0, count: 64))
        XCTAssertEqual(report.measurement, [UInt8](repeating: 0x22, count: 48))
        XCTAssertEqual(try SNPCertificateTable(try Base64.decode(XCTUnwrap(evidence.fields.certificateTable), field: "table")).certificate(.vlek),
                       try platform.snp.vlek.der)

        let tdx = SimulatedTEE(kind: .tdx, platform: platform, optionsPath: options)
        let quote = try TDXQuote(bytes: try Base64.decode(XCTUnwrap(try tdx.evidence(reportData: data).fields.quote), field: "quote"))
        XCTAssertEqual(quote.body.mrTD, [UInt8](repeating: 0x22, count: 48))
        XCTAssertEqual(quote.body.tdAttributes[0] & 1, 1, "TDATTRIBUTES.DEBUG")
        XCTAssertEqual(quote.body.reportData, data)

        for bad in ["debug=yes", "measurement=abcd", "signer=ark", "colour=blue", "debug"] {
            try Data(bad.utf8).write(to: URL(fileURLWithPath: options))
            XCTAssertEqual(code { _ = try snp.evidence(reportData: data) }, "config", bad)
        }
    }

    /// configfs-tsm with one provider whose outblob is the software TEE's report for the inblob.
    final class SimulatedKernel: TSMFileSystem, @unchecked Sendable {
        let provider: String
        let auxblob: [UInt8]?
        let make: @Sendable ([UInt8]) throws -> [UInt8]
        let state = Mutex<[String: (generation: UInt64, inblob: [UInt8])]>([:])
        init(provider: String, auxblob: [UInt8]?, make: @escaping @Sendable ([UInt8]) throws -> [UInt8]) {
            self.provider = provider; self.auxblob = auxblob; self.make = make
        }
        func parts(_ path: String) -> (String, String) {
            let url = URL(fileURLWithPath: path)
            return (url.deletingLastPathComponent().path, url.lastPathComponent)
        }
        func makeDirectory(_ path: String) throws { state.withLock { $0[path] = (0, []) } }
        func removeDirectory(_ path: String) throws { _ = state.withLock { $0.removeValue(forKey: path) } }
        func write(_ bytes: [UInt8], to path: String) throws {
            let (dir, name) = parts(path)
            guard name == "inblob" else { return }
            state.withLock { s in s[dir] = ((s[dir]?.generation ?? 0) + 1, bytes) }
        }
        func read(_ path: String) throws -> [UInt8]? {
            let (dir, name) = parts(path)
            guard let i = state.withLock({ $0[dir] }) else { return nil }
            switch name {
            case "generation": return Array("\(i.generation)".utf8)
            case "provider": return Array(provider.utf8)
            case "outblob": return try make(i.inblob)
            case "auxblob": return auxblob
            default: return nil
            }
        }
    }

    func testConfigFSReportsBecomeTheBrokersEvidenceFields() throws {
        let snp = try SimulatedTEEPlatform.loadOrCreate(directory: Self.directory).snp
        let report: @Sendable ([UInt8]) throws -> [UInt8] = { try snp.sign(snp.report(reportData: $0)) }
        let table = SNPCertificateTable(entries: [.init(guid: SNPCertificateTable.Kind.vcek.rawValue, der: try snp.vcek.der)]).bytes
        let data = [UInt8](repeating: 7, count: 64)

        let fromTable = try TSMEvidenceSource(kind: .sevSNP, tsm: TSMReportSource(root: "/tsm", fileSystem: SimulatedKernel(provider: "sev_guest", auxblob: table, make: report)))
            .evidence(reportData: data)
        XCTAssertEqual(fromTable.fields.certificateTable, Base64.encode(table))
        XCTAssertEqual(fromTable.chipID, snp.chipID)
        XCTAssertEqual(try SNPReport(bytes: try Base64.decode(XCTUnwrap(fromTable.fields.report), field: "report")).reportData, data)

        // No table from the host: the certificate given (--vcek) endorses the report; without one, refused.
        let bare = TSMReportSource(root: "/tsm", fileSystem: SimulatedKernel(provider: "sev_guest", auxblob: nil, make: report))
        let given = try TSMEvidenceSource(kind: .sevSNP, tsm: bare, endorsement: try snp.vcek.der).evidence(reportData: data)
        XCTAssertEqual(given.fields.endorsement, Base64.encode(try snp.vcek.der))
        XCTAssertNil(given.fields.certificateTable)
        XCTAssertEqual(code { _ = try TSMEvidenceSource(kind: .sevSNP, tsm: bare).evidence(reportData: data) }, "tsm_unavailable")
        // A table without the key the report names.
        let askOnly = SNPCertificateTable(entries: [.init(guid: SNPCertificateTable.Kind.ask.rawValue, der: try snp.ask.der)]).bytes
        XCTAssertEqual(code {
            _ = try TSMEvidenceSource(kind: .sevSNP, tsm: TSMReportSource(root: "/tsm", fileSystem: SimulatedKernel(provider: "sev_guest", auxblob: askOnly, make: report)))
                .evidence(reportData: data)
        }, "tsm_unavailable")
        // Another TEE's provider than the kind asked for.
        XCTAssertEqual(code {
            _ = try TSMEvidenceSource(kind: .tdx, tsm: TSMReportSource(root: "/tsm", fileSystem: SimulatedKernel(provider: "sev_guest", auxblob: table, make: report)))
                .evidence(reportData: data)
        }, "tsm_unavailable")
        let tdx = try SimulatedTEEPlatform.loadOrCreate(directory: Self.directory).tdx
        let quoted = try TSMEvidenceSource(kind: .tdx, tsm: TSMReportSource(root: "/tsm", fileSystem: SimulatedKernel(provider: "tdx_guest", auxblob: nil) {
            try tdx.quote(SoftwareTDX.body(reportData: $0))
        })).evidence(reportData: data)
        XCTAssertEqual(try TDXQuote(bytes: try Base64.decode(XCTUnwrap(quoted.fields.quote), field: "quote")).body.reportData, data)
        XCTAssertNil(quoted.chipID)
    }
}
