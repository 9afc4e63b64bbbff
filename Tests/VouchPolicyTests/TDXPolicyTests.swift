import Foundation
import XCTest
import VouchCore
import VouchPolicy
import VouchYAML

final class TDXPolicyTests: XCTestCase {
    func decode(_ text: String) throws -> TDXPolicy {
        let root = try YAMLParser.parse(Array(text.utf8), file: "tdx.yaml")
        guard case let .mapping(entries) = root.value, let node = entries.first(where: { $0.key.scalar == "tdx" })?.value else {
            throw VouchError(.invalidValue, "no tdx section")
        }
        return try TDXPolicy.decode(node)
    }

    func testDefaults() throws {
        let p = try decode("tdx: {}\n")
        XCTAssertEqual(p, TDXPolicy())
        XCTAssertFalse(p.allowDebug)
        XCTAssertTrue(p.requireSeptVEDisable)
        XCTAssertFalse(p.allowUnknownTCB)
        XCTAssertFalse(p.allowAnyMeasurement, "the broker requires an MRTD allowlist unless told otherwise")
        XCTAssertTrue(try decode("tdx: {allowAnyMeasurement: true}\n").allowAnyMeasurement)
        XCTAssertThrowsError(try decode("tdx: {allowAnyMeasurement: 1}\n")) { XCTAssertEqual(($0 as? VouchError)?.code, .policyInvalid) }
        XCTAssertEqual(p.acceptedTCBStatuses, ["UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"])
    }

    func testEverySetting() throws {
        let mr = String(repeating: "ab", count: 48)
        let p = try decode("""
        tdx:
          allowDebug: true
          requireSeptVeDisable: false
          xfam: [e702060000000000]
          mrtd:
            - {name: ovmf-2024.02, value: \(mr)}
          mrConfigId: [\(mr)]
          mrOwner: [\(mr)]
          mrOwnerConfig: [\(mr)]
          rtmrs:
            0: [\(mr)]
            3: [\(mr)]
          reportData: \(String(repeating: "01", count: 64))
          tcb:
            acceptedStatuses: [UpToDate, SWHardeningNeeded]
            dateBaseline: 2024-03-13T00:00:00Z
            deniedAdvisories: [INTEL-SA-00837]
            allowUnknown: true

        """)
        XCTAssertTrue(p.allowDebug)
        XCTAssertFalse(p.requireSeptVEDisable)
        XCTAssertEqual(p.xfam, [[0xe7, 0x02, 0x06, 0, 0, 0, 0, 0]])
        XCTAssertEqual(p.mrtd, [.init(name: "ovmf-2024.02", value: [UInt8](repeating: 0xab, count: 48))])
        XCTAssertEqual(p.rtmrs.keys.sorted(), [0, 3])
        XCTAssertEqual(p.reportData, [UInt8](repeating: 1, count: 64))
        XCTAssertEqual(p.acceptedTCBStatuses, ["UpToDate", "SWHardeningNeeded"])
        XCTAssertEqual(p.tcbDateBaseline, Date.parseRFC3339("2024-03-13T00:00:00Z"))
        XCTAssertEqual(p.deniedAdvisories, ["INTEL-SA-00837"])
        XCTAssertTrue(p.allowUnknownTCB)
    }

    func testBadValuesAreRefusedWithTheirPath() throws {
        let cases: [(String, String)] = [
            ("tdx: {debug: true}\n", "tdx.debug"),
            ("tdx: {allowDebug: yes}\n", "tdx.allowDebug"),
            ("tdx: {xfam: [e7020600]}\n", "tdx.xfam"),
            ("tdx: {xfam: []}\n", "tdx.xfam"),
            ("tdx: {mrtd: [{name: a, value: \(String(repeating: "AB", count: 48))}]}\n", "tdx.mrtd[0].value"),
            ("tdx: {rtmrs: {4: [\(String(repeating: "ab", count: 48))]}}\n", "tdx.rtmrs"),
            ("tdx: {tcb: {acceptedStatuses: [UpToDate, OutOfDate]}}\n", "tdx.tcb.acceptedStatuses"),
            ("tdx: {tcb: {acceptedStatuses: [UpToDate, Revoked]}}\n", "tdx.tcb.acceptedStatuses"),
            ("tdx: {tcb: {acceptedStatuses: [SWHardeningNeeded]}}\n", "tdx.tcb.acceptedStatuses"),
            ("tdx: {tcb: {dateBaseline: yesterday}}\n", "tdx.tcb.dateBaseline"),
            ("tdx: {reportData: 00}\n", "tdx.reportData"),
        ]
        for (text, path) in cases {
            XCTAssertThrowsError(try decode(text), text) { e in
                XCTAssertEqual((e as? VouchError)?.code, .policyInvalid, text)
                XCTAssertEqual((e as? VouchError)?.context["path"], path, text)
            }
        }
    }
}
