import Foundation
import Synchronization
import XCTest
import VouchAttesterKit
import VouchCore
import VouchTEEWire

/// The configfs-tsm protocol (fresh instance, generation checked around our one write, provider
/// named) and the SNP certificate table the kernel hands out as auxblob.
final class TSMReportTests: XCTestCase {
    /// configfs as the kernel's ABI document describes it: writing inblob or privlevel bumps the
    /// instance's generation; outblob is made from the inblob last written. `extraWrites` plays
    /// another process writing the same instance.
    final class KernelFS: TSMFileSystem, @unchecked Sendable {
        struct Instance { var generation: UInt64 = 0; var inblob: [UInt8] = []; var privlevel: Int? }
        let state = Mutex<[String: Instance]>([:])
        let removed = Mutex<[String]>([])
        let provider: String
        let auxblob: [UInt8]?
        let extraWrites: UInt64
        init(provider: String = "sev_guest", auxblob: [UInt8]? = nil, extraWrites: UInt64 = 0) {
            self.provider = provider; self.auxblob = auxblob; self.extraWrites = extraWrites
        }
        func split(_ path: String) -> (String, String) {
            let url = URL(fileURLWithPath: path)
            return (url.deletingLastPathComponent().path, url.lastPathComponent)
        }
        func makeDirectory(_ path: String) throws { state.withLock { $0[path] = Instance() } }
        func removeDirectory(_ path: String) throws {
            _ = state.withLock { $0.removeValue(forKey: path) }
            removed.withLock { $0.append(path) }
        }
        func write(_ bytes: [UInt8], to path: String) throws {
            let (dir, name) = split(path)
            try state.withLock { s in
                guard var i = s[dir] else { throw VouchError(.tsmUnavailable, "no instance") }
                switch name {
                case "inblob": i.inblob = bytes; i.generation += 1 + extraWrites
                case "privlevel": i.privlevel = Int(String(decoding: bytes, as: UTF8.self)); i.generation += 1
                default: throw VouchError(.tsmUnavailable, "read-only attribute \(name)")
                }
                s[dir] = i
            }
        }
        func read(_ path: String) throws -> [UInt8]? {
            let (dir, name) = split(path)
            guard let i = state.withLock({ $0[dir] }) else { return nil }
            switch name {
            case "generation": return Array("\(i.generation)\n".utf8)
            case "provider": return Array("\(provider)\n".utf8)
            case "outblob": return [UInt8(i.privlevel ?? 9)] + i.inblob
            case "auxblob": return auxblob
            default: return nil
            }
        }
    }

    func testAReportIsMadeInAFreshInstanceAndBoundToOurData() throws {
        let fs = KernelFS(auxblob: [1, 2, 3])
        let data = [UInt8](repeating: 0xab, count: 64)
        let report = try TSMReportSource(root: "/cfg", fileSystem: fs).report(reportData: data, privilegeLevel: 2)
        XCTAssertEqual(report.provider, "sev_guest")
        XCTAssertEqual(report.outblob, [2] + data)
        XCTAssertEqual(report.auxblob, [1, 2, 3])
        XCTAssertEqual(fs.removed.withLock { $0.count }, 1, "the instance is dropped")
        XCTAssertTrue(fs.state.withLock { $0.isEmpty })
        XCTAssertNil(try TSMReportSource(root: "/cfg", fileSystem: KernelFS(provider: "tdx_guest")).report(reportData: data).auxblob)
    }

    func testConflictsUnknownProvidersAndBadInputsAreRefused() throws {
        let data = [UInt8](repeating: 1, count: 64)
        func code(_ fs: KernelFS, _ data: [UInt8], level: Int? = nil) -> ErrorCode? {
            do { _ = try TSMReportSource(root: "/cfg", fileSystem: fs).report(reportData: data, privilegeLevel: level); return nil }
            catch { return (error as? VouchError)?.code }
        }
        XCTAssertEqual(code(KernelFS(extraWrites: 1), data), .tsmConflict)
        XCTAssertEqual(code(KernelFS(provider: "arm_cca_guest"), data), .tsmUnavailable)
        XCTAssertEqual(code(KernelFS(), Array(data.prefix(32))), .invalidValue)
        XCTAssertEqual(code(KernelFS(), data, level: 4), .invalidValue)
    }

    func testSNPCertificateTableRoundTripAndBounds() throws {
        let table = SNPCertificateTable(entries: [.init(guid: SNPCertificateTable.Kind.vcek.rawValue, der: [0x30, 0x03, 1, 2, 3]),
                                                  .init(guid: SNPCertificateTable.Kind.ask.rawValue, der: [0x30, 0x00])])
        let bytes = table.bytes
        XCTAssertEqual(Array(bytes.prefix(4)), [0x63, 0xda, 0x75, 0x8d], "GUID bytes in the order the text reads")
        let parsed = try SNPCertificateTable(bytes)
        XCTAssertEqual(parsed, table)
        XCTAssertEqual(parsed.certificate(.vcek), [0x30, 0x03, 1, 2, 3])
        XCTAssertNil(parsed.certificate(.vlek))
        XCTAssertEqual(parsed.entries.first?.kind, .vcek)
        // Every truncation, an entry pointing past the end, a repeated GUID: malformed.
        for n in 0..<(3 * 24) { XCTAssertThrowsError(try SNPCertificateTable(Array(bytes.prefix(n))), "prefix \(n)") }
        var outside = bytes
        outside[16] = 0xff
        XCTAssertThrowsError(try SNPCertificateTable(outside)) { XCTAssertEqual(($0 as? VouchError)?.code, .teeEvidenceMalformed) }
        let twice = SNPCertificateTable(entries: [table.entries[0], table.entries[0]]).bytes
        XCTAssertThrowsError(try SNPCertificateTable(twice)) { XCTAssertEqual(($0 as? VouchError)?.code, .teeEvidenceMalformed) }
        XCTAssertEqual(try SNPCertificateTable([UInt8](repeating: 0, count: 24)).entries, [])
    }
}
