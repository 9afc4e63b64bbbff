import XCTest
import VouchCore
@testable import VouchTLog

final class LogEntryTests: XCTestCase {
    let d = "sha256:" + String(repeating: "ab", count: 32)

    func revocation() throws -> LogEntry {
        try LogEntry(kind: .revocation, time: Date(timeIntervalSince1970: 1_790_000_000),
                     fields: ["host": "h-1", "serial": "0a1b", "certificate": d, "reason": "keyCompromise"])
    }

    func testEncodesInFieldOrderAndParsesBack() throws {
        let e = try revocation()
        XCTAssertEqual(String(decoding: e.bytes, as: UTF8.self),
                       "vouch.dev/log-entry/v1\nkind revocation\ntime 2026-09-21T14:13:20Z\nhost h-1\nserial 0a1b\ncertificate \(d)\nreason keyCompromise\n")
        XCTAssertEqual(try LogEntry(bytes: e.bytes), e)
        XCTAssertEqual(e["serial"], "0a1b")
        XCTAssertNil(e["spiffe"])
    }

    func testRefusesAnythingButTheCanonicalForm() throws {
        let good = String(decoding: try revocation().bytes, as: UTF8.self)
        let bad = [
            good.replacingOccurrences(of: "kind revocation", with: "kind coronation"),
            good.replacingOccurrences(of: "host h-1\nserial 0a1b", with: "serial 0a1b\nhost h-1"),   // order
            good.replacingOccurrences(of: "host h-1", with: "host h 1"),                            // space in a value
            good.replacingOccurrences(of: "reason keyCompromise\n", with: "reason keyCompromise\nextra x\n"),
            good.replacingOccurrences(of: "reason keyCompromise\n", with: ""),
            good.replacingOccurrences(of: "ab", with: "AB"),                                       // digest case
            good.replacingOccurrences(of: "14:13:20Z", with: "14:13:20.5Z"),
            String(good.dropLast()),                                                                // no final newline
            good.replacingOccurrences(of: "\n", with: "\r\n"),
            "x" + good,
        ]
        for text in bad {
            XCTAssertThrowsError(try LogEntry(bytes: Array(text.utf8)), text) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue) }
        }
        XCTAssertThrowsError(try LogEntry(kind: .revocation, time: Date(), fields: ["host": "h"]))
        XCTAssertThrowsError(try LogEntry(bytes: Array(repeating: 0x41, count: LogEntry.maxBytes + 1)))
    }
}
