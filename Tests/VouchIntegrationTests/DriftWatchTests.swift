import Foundation
import XCTest
import Synchronization
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchHTTPClient
import VouchTestSupport

/// Drift detection at the host, with real processes: vouchd re-attests every hour, so only the
/// attester's drift watcher can bring a PCR change to it before the test's timeout. In push mode
/// the watcher has the attester push a fresh quote; in pull mode it hints and vouchd pulls at once.
/// Either way the failed verdict revokes the agent: the CRL lists it, OCSP answers revoked and the
/// event stream carries the revocation. Functional checks with generous timeouts, no timing targets.
final class DriftWatchTests: XCTestCase {
    func host(_ broker: BrokerHarness, _ id: String) throws -> HostStatus { try broker.hostStatus(id) }

    /// Starts the attester (`extraArgs` picks the mode), waits for its first verdict, enrolls an
    /// agent, drifts PCR 7 and checks the revocation shows everywhere.
    func driftIsReportedAtOnce(mode: String, extraArgs: [String]) throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, policy: try ReattestationTests.policy(in: tpm.dir, interval: "1h", grace: "1h"))
        let (attester, socket) = try broker.startAttesterProcess(for: tpm, extraArgs: extraArgs + ["--watch-interval", "100ms"])
        defer { attester.stop() }
        let id = try XCTUnwrap(try broker.status().hosts.first?.hostId)
        try TestEnv.waitFor("the first verdict", timeout: 20) { try host(broker, id).trust?.state == "trusted" }
        XCTAssertEqual(try host(broker, id).trust?.mode, mode)
        let agent = try ReattestationTests.enroll(socket, "worker")

        let events = broker.dir.appendingPathComponent("events-\(mode).txt")
        let curl = try BackgroundProcess("/usr/bin/curl", ["-sN", "-m", "120", "--cacert", broker.brokerCAFile, "-o", events.path, "\(broker.url)/v1/events?from=latest"],
                                         log: broker.dir.appendingPathComponent("curl-\(mode).log"))
        defer { curl.stop() }
        usleep(500_000)   // the stream is open before the drift

        XCTAssertEqual(try tpm.tools("tpm2_pcrextend", ["7:sha256=" + String(repeating: "ab", count: 32)]).status, 0)
        try TestEnv.waitFor("the drift's failed verdict", timeout: 60) { try host(broker, id).trust?.state == "untrusted" }
        XCTAssertEqual(try host(broker, id).lastAttestation?.codes, ["pcr_not_allowed"])
        XCTAssertTrue(try ReattestationTests.crlText(broker).contains(agent.serial.uppercased()), "the CRL does not list \(agent.serial)")
        XCTAssertTrue(try ReattestationTests.ocspStatus(broker, agent.certificate).contains("revoked"))
        try TestEnv.waitFor("the revocation event", timeout: 20) {
            let streamed = (try? String(contentsOf: events, encoding: .utf8)) ?? ""
            return streamed.contains("event: certificate.revoked") && streamed.contains(agent.serial)
        }
        XCTAssertTrue(attester.log.contains("measurements changed since the last quote"), attester.log)
    }

    /// The watcher in process, its clock given: nothing to compare before a quote reached the
    /// broker; a PCR change is reported once; a further change within the second is held, then
    /// reported with everything seen meanwhile; a new model log counts as a change; the next
    /// quote is the new baseline.
    func testWatcherReportsEachChangeOnceAtMostOnceASecond() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, policy: try ReattestationTests.policy(in: tpm.dir, interval: "1h", grace: "1h"))
        let modelLog = broker.dir.appendingPathComponent("model-log.json").path
        let attester: Attester = {
            var config = AttesterConfig(tcti: tpm.tcti, hostname: "watched", modelLogPath: modelLog)
            config.stateDirectory = broker.dir.appendingPathComponent("state-watched").path
            return Attester(config: config, broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
        }()
        try attester.register()
        let reports = Mutex(0)
        let watcher = DriftWatcher(attester: attester) { reports.withLock { $0 += 1 } }
        let t0 = Date()
        XCTAssertEqual(watcher.check(now: t0), .noBaseline)
        XCTAssertEqual(try attester.pushReport().verdict.result, .trusted)
        XCTAssertEqual(watcher.check(now: t0), .unchanged)

        XCTAssertEqual(try tpm.tools("tpm2_pcrextend", ["7:sha256=" + String(repeating: "ab", count: 32)]).status, 0)
        XCTAssertEqual(watcher.check(now: t0), .reportedNow)
        XCTAssertEqual(watcher.check(now: t0.addingTimeInterval(0.1)), .reported, "the same change is reported once")
        XCTAssertEqual(try tpm.tools("tpm2_pcrextend", ["7:sha256=" + String(repeating: "cd", count: 32)]).status, 0)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: modelLog))   // a model measured since
        XCTAssertEqual(watcher.check(now: t0.addingTimeInterval(0.2)), .held(t0.addingTimeInterval(1)))
        XCTAssertEqual(reports.withLock { $0 }, 1)
        XCTAssertEqual(watcher.check(now: t0.addingTimeInterval(1)), .reportedNow, "held changes go together when the second ends")
        XCTAssertEqual(reports.withLock { $0 }, 2)

        try FileManager.default.removeItem(atPath: modelLog)   // not a model log the broker would read
        XCTAssertEqual(try attester.pushReport().verdict.result, .rejected)   // the fresh quote: the drifted state is now the baseline
        XCTAssertEqual(watcher.check(now: t0.addingTimeInterval(5)), .unchanged)
        XCTAssertEqual(reports.withLock { $0 }, 2)
    }

    func testPushModeDriftPushesAFreshQuoteAtOnce() throws {
        try driftIsReportedAtOnce(mode: "push", extraArgs: [])
    }

    func testPullModeDriftHintsAndTheBrokerPullsAtOnce() throws {
        let port = TestEnv.freePorts(1)
        try driftIsReportedAtOnce(mode: "pull", extraArgs: ["--listen", "127.0.0.1:\(port)"])
    }
}
