import Foundation
import XCTest
import VouchCore
import VouchPolicy
import VouchTEEWire
import VouchYAML

/// The `snp:` policy section's decoder.
final class SNPPolicyTests: XCTestCase {
    private func decode(_ yaml: String) throws -> SNPPolicy {
        let root = try YAMLParser.parse(Array(yaml.utf8), file: "snp.yaml")
        guard case let .mapping(entries) = root.value, let snp = entries.first(where: { $0.key.scalar == "snp" })?.value else {
            throw VouchError(.invalidValue, "no snp key")
        }
        return try SNPPolicy.decode(snp)
    }

    func testDefaults() throws {
        let p = try decode("snp: {}\n")
        XCTAssertEqual(p, SNPPolicy())
        XCTAssertFalse(p.allowDebug)
        XCTAssertFalse(p.allowMigrationAgent)
        XCTAssertTrue(p.allowSMT)
        XCTAssertEqual(p.signers, [.vcek, .vlek])
        XCTAssertNil(p.products)
        XCTAssertFalse(p.allowAnyMeasurement, "the broker requires a measurement allowlist unless told otherwise")
        XCTAssertTrue(try decode("snp: {allowAnyMeasurement: true}\n").allowAnyMeasurement)
        XCTAssertThrowsError(try decode("snp: {allowAnyMeasurement: yes please}\n")) { XCTAssertEqual(($0 as? VouchError)?.code, .policyInvalid) }
    }

    func testEveryKey() throws {
        let m = String(repeating: "ab", count: 48), h = String(repeating: "cd", count: 32), k = String(repeating: "01", count: 48)
        let p = try decode("""
        snp:
          allowDebug: true
          allowMigrationAgent: true
          allowSMT: false
          vmpl: [0, 1]
          maxVMPL: 1
          signers: [vcek]
          products: [Milan, Turin]
          minimumTCB:
            Milan:
              reported: {bootloader: 3, tee: 0, snp: 8, microcode: 115}
              committed: {snp: 8}
            Turin:
              launch: {fmc: 1, microcode: 9}
          measurements:
            - {name: ovmf, value: \(m)}
          paravisorMeasurements:
            - {name: hcl, value: \(k)}
          hostData: [\(h)]
          idKeyDigests: [\(k)]
          authorKeyDigests: [\(k)]
          reportData: \(String(repeating: "00", count: 64))

        """)
        XCTAssertTrue(p.allowDebug && p.allowMigrationAgent && !p.allowSMT)
        XCTAssertEqual(p.allowedVMPLs, [0, 1])
        XCTAssertEqual(p.maxVMPL, 1)
        XCTAssertEqual(p.signers, [.vcek])
        XCTAssertEqual(p.products, [.milan, .turin])
        XCTAssertEqual(p.minimumTCB[.milan]?.reported, .init(bootloader: 3, tee: 0, snp: 8, microcode: 115))
        XCTAssertEqual(p.minimumTCB[.milan]?.committed, .init(snp: 8))
        XCTAssertEqual(p.minimumTCB[.turin]?.launch, .init(microcode: 9, fmc: 1))
        XCTAssertEqual(p.measurements, [.init(name: "ovmf", value: [UInt8](repeating: 0xab, count: 48))])
        XCTAssertEqual(p.paravisorMeasurements, [.init(name: "hcl", value: [UInt8](repeating: 0x01, count: 48))])
        XCTAssertEqual(p.allowlist(.guest).values, p.measurements, "each launch its own list")
        XCTAssertEqual(p.allowlist(.paravisor).values, p.paravisorMeasurements)
        XCTAssertEqual(p.hostData, [[UInt8](repeating: 0xcd, count: 32)])
        XCTAssertEqual(p.idKeyDigests.count, 1)
        XCTAssertEqual(p.reportData, [UInt8](repeating: 0, count: 64))
    }

    func testInvalidSectionsAreRefusedWithTheirPath() {
        let cases: [(String, String)] = [
            ("snp: {allowDebug: yes}", "snp.allowDebug"),
            ("snp: {unknown: 1}", "snp.unknown"),
            ("snp: {vmpl: [4]}", "snp.vmpl"),
            ("snp: {vmpl: []}", "snp.vmpl"),
            ("snp: {signers: [tdx]}", "snp.signers"),
            ("snp: {products: [Rome]}", "snp.products"),
            ("snp: {minimumTCB: {Milan: {reported: {fmc: 1}}}}", "snp.minimumTCB.Milan.reported.fmc"),
            ("snp: {minimumTCB: {Milan: {reported: {snp: 256}}}}", "snp.minimumTCB.Milan.reported.snp"),
            ("snp: {minimumTCB: {Milan: {reported: {}}}}", "snp.minimumTCB.Milan.reported"),
            ("snp: {measurements: [{name: a, value: abcd}]}", "snp.measurements[0].value"),
            ("snp: {measurements: [{value: \(String(repeating: "ab", count: 48))}]}", "snp.measurements[0].name"),
            ("snp: {hostData: [\(String(repeating: "AB", count: 32))]}", "snp.hostData"),
            ("snp: {paravisorMeasurements: []}", "snp.paravisorMeasurements"),
            ("snp: {paravisorMeasurements: [{name: a, value: abcd}]}", "snp.paravisorMeasurements[0].value"),
            ("snp: {paravisorMeasurements: [{name: a, value: \(String(repeating: "ab", count: 48)), extra: 1}]}", "snp.paravisorMeasurements[0].extra"),
            ("snp: {reportData: 00}", "snp.reportData"),
        ]
        for (yaml, path) in cases {
            XCTAssertThrowsError(try decode(yaml + "\n"), yaml) { e in
                XCTAssertEqual((e as? VouchError)?.code, .policyInvalid, yaml)
                XCTAssertEqual((e as? VouchError)?.context["path"], path, yaml)
            }
        }
    }

    func testReportDataForANonce() {
        XCTAssertEqual(SNPPolicy.reportData(nonce: [1, 2]), [1, 2] + [UInt8](repeating: 0, count: 62))
        XCTAssertEqual(SNPPolicy.reportData(nonce: [UInt8](repeating: 3, count: 64))?.count, 64)
        XCTAssertNil(SNPPolicy.reportData(nonce: [UInt8](repeating: 3, count: 65)))
    }
}
