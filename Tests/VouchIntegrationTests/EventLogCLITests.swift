import Foundation
import XCTest
import VouchTestSupport

/// `vouch eventlog replay --json` prints exactly the shape and values of the fixture expected_pcrs.json.
final class EventLogCLITests: XCTestCase {
    func testReplayJSONMatchesExpectedPCRsForEveryLog() throws {
        let expectedURL = try fixture("tpm-eventlog/eventlogs/expected_pcrs.json")
        let base = expectedURL.deletingLastPathComponent()
        let logs = (try JSONSerialization.jsonObject(with: Data(contentsOf: expectedURL)) as! [String: Any])["logs"] as! [String: [String: Any]]
        for (file, entry) in logs {
            let r = try TestEnv.run(TestEnv.bin("vouch"), ["eventlog", "replay", base.appendingPathComponent(file).path, "--json"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let got = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: [String: String]]
            for (bank, pcrs) in entry["pcrs"] as! [String: [String: String]] {
                for (index, value) in pcrs { XCTAssertEqual(got[bank]?[index], value, "\(file) \(bank) \(index)") }
            }
            let show = try TestEnv.run(TestEnv.bin("vouch"), ["eventlog", "show", base.appendingPathComponent(file).path])
            XCTAssertEqual(show.status, 0, show.stderr)
            XCTAssertTrue(show.stdout.contains("EV_SEPARATOR"))
        }
        let junk = FileManager.default.temporaryDirectory.appendingPathComponent("junk-\(UUID().uuidString).bin")
        try Data([1, 2, 3]).write(to: junk)
        defer { try? FileManager.default.removeItem(at: junk) }
        XCTAssertEqual(try TestEnv.run(TestEnv.bin("vouch"), ["eventlog", "replay", junk.path]).status, 1)
        XCTAssertEqual(try TestEnv.run(TestEnv.bin("vouch"), ["eventlog", "replay", "/nonexistent"]).status, 2)
        XCTAssertEqual(try TestEnv.run(TestEnv.bin("vouch"), ["eventlog", "replay"]).status, 2)
    }
}
