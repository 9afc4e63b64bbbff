import Foundation
import XCTest
import VouchBroker
import VouchCore
import VouchModel

/// The trust state machine and the scheduler, in process: a `ManualClock` moved by the test, an
/// `InMemoryBrokerStore`, and pull rounds answered by a scripted source with software-TPM quotes.
/// Each test covers minutes of broker time in milliseconds. (The wiring — libcurl pulls, mTLS,
/// vouchd's thread — is proved by VouchIntegrationTests.ReattestationTests with real processes.)
final class ReattestationStateTests: XCTestCase {
    /// Host ids are 32 lowercase hex digits (`EKIdentity.hostID`).
    let h1 = String(repeating: "1", count: 32), p1 = String(repeating: "2", count: 32)

    func testUnknownHostIsPulledAfterTheFirstPullDelayAndBecomesTrusted() throws {
        let b = try Broker()
        try b.addHost(h1)
        b.source.script(b.url(h1), .quote)
        XCTAssertTrue(b.advance(by: 0).isEmpty, "first sight only schedules")
        XCTAssertEqual(b.reattestor.nextDue(hostID: h1), b.clock.now().addingTimeInterval(Reattestor.firstPullDelay))
        XCTAssertTrue(b.advance(by: Reattestor.firstPullDelay - 0.1).isEmpty)
        XCTAssertEqual(b.advance(by: 0.1)[h1], .verdict(trusted: true))
        XCTAssertEqual(try b.state(h1), .trusted)
        XCTAssertEqual(try b.store.trust(hostID: h1)?.lastVerdictAt, b.clock.now())
        // The next round lands in the last 10 % of the interval (spread 0.5: at 95 %).
        XCTAssertEqual(b.reattestor.nextDue(hostID: h1), b.clock.now().addingTimeInterval(60 * 0.95))
        XCTAssertEqual(try b.store.events(after: 0, limit: 10).map(\.type), [.hostTrusted])
        XCTAssertEqual(try b.store.attestations(HistoryQuery(hostID: h1, kind: .reattestation)).map(\.trusted), [true])
    }

    func testHostsWithAVerdictAreSpreadOverTheInterval() throws {
        let b = try Broker()
        try b.addHost(h1)
        var t = try XCTUnwrap(b.store.trust(hostID: h1))
        t.state = .trusted
        try b.store.saveTrust(t)   // as after a broker restart
        b.advance(by: 0)
        XCTAssertEqual(b.reattestor.nextDue(hostID: h1), b.clock.now().addingTimeInterval(30))
    }

    func testFaultsMakeTheHostUnreachableThenUntrustedAndRevokedWhenGraceEnds() throws {
        let b = try Broker(policy: Broker.policy(interval: 60, grace: 30, afterFailures: 1, action: .revoke))
        try b.addHost(h1)
        try b.addCertificate(host: h1, serial: "0a")
        b.source.script(b.url(h1), .quote)
        b.advance(by: 0)
        XCTAssertEqual(b.advance(by: 2)[h1], .verdict(trusted: true))

        // The attester stops answering (unscripted pulls are refused connections).
        XCTAssertEqual(b.advanceToNextRound(h1)[h1], .fault("attester_unreachable"))
        let spell = b.clock.now()
        XCTAssertEqual(try b.state(h1), .unreachable)
        XCTAssertEqual(try b.store.trust(hostID: h1)?.unreachableSince, spell)
        XCTAssertNil(try b.store.certificate(serial: "0a")?.revokedAt)
        var rounds = 1
        while try b.state(h1) == .unreachable {
            XCTAssertLessThan(b.clock.now().timeIntervalSince(spell), 30, "still unreachable after the grace")
            b.advanceToNextRound(h1)
            rounds += 1
            guard rounds < 20 else { return XCTFail("still unreachable after 20 rounds") }
        }
        // Backoff 1, 2, 4, 8, 16 s: the sixth fault is the first at or past the 30 s grace.
        XCTAssertEqual(rounds, 6)
        XCTAssertEqual(b.clock.now().timeIntervalSince(spell), 31)
        XCTAssertEqual(try b.state(h1), .untrusted)
        XCTAssertEqual(try b.store.certificate(serial: "0a")?.revokedAt, b.clock.now())
        XCTAssertEqual(try b.store.currentCRL(issuer: b.service.authorities.current.keyID)?.number, 1)
        let types = try b.store.events(after: 0, limit: 20).map(\.type)
        XCTAssertEqual(types, [.certificateIssued, .hostTrusted, .hostUnreachable, .certificateRevoked, .hostUntrusted])
        let failed = try XCTUnwrap(b.store.attestations(HistoryQuery(hostID: h1, trusted: false, kind: .reattestation)).first)
        XCTAssertEqual(failed.codes, ["attester_unreachable"])
        XCTAssertEqual(b.source.asked, 7)
    }

    func testFailedVerdictsCountToAfterFailuresAndAGoodVerdictTrustsAgainButRevokedStaysRevoked() throws {
        let b = try Broker(policy: Broker.policy(interval: 60, afterFailures: 2, action: .revoke))
        try b.addHost(h1)
        try b.addCertificate(host: h1, serial: "0b")
        b.source.script(b.url(h1), .quote, .drifted, .drifted, .quote)
        b.advance(by: 0)
        XCTAssertEqual(b.advance(by: 2)[h1], .verdict(trusted: true))

        XCTAssertEqual(b.advanceToNextRound(h1)[h1], .verdict(trusted: false))
        XCTAssertEqual(try b.state(h1), .trusted, "one failed verdict of two")
        XCTAssertEqual(try b.store.trust(hostID: h1)?.consecutiveFailures, 1)
        XCTAssertNil(try b.store.certificate(serial: "0b")?.revokedAt)

        XCTAssertEqual(b.advanceToNextRound(h1)[h1], .verdict(trusted: false))
        XCTAssertEqual(try b.state(h1), .untrusted)
        let revokedAt = try XCTUnwrap(b.store.certificate(serial: "0b")?.revokedAt)
        let codes = try b.store.latestAttestation(hostID: h1)?.codes ?? []
        XCTAssertTrue(codes.contains("pcr_not_allowed"), "\(codes)")

        XCTAssertEqual(b.advanceToNextRound(h1)[h1], .verdict(trusted: true))
        XCTAssertEqual(try b.state(h1), .trusted)
        XCTAssertEqual(try b.store.trust(hostID: h1)?.consecutiveFailures, 0)
        XCTAssertEqual(try b.store.certificate(serial: "0b")?.revokedAt, revokedAt, "a good verdict does not unrevoke")
    }

    func testUntrustActionMarksTheHostWithoutRevoking() throws {
        let b = try Broker(policy: Broker.policy(interval: 60, afterFailures: 1, action: .untrust))
        try b.addHost(h1)
        try b.addCertificate(host: h1, serial: "0c")
        b.source.script(b.url(h1), .drifted)
        b.advance(by: 0)
        XCTAssertEqual(b.advance(by: 2)[h1], .verdict(trusted: false))
        XCTAssertEqual(try b.state(h1), .untrusted)
        XCTAssertNil(try b.store.certificate(serial: "0c")?.revokedAt)
    }

    func testMissedPushReportMakesTheHostUnreachable() throws {
        let b = try Broker(policy: Broker.policy(interval: 60, grace: 600))
        try b.addHost(p1, mode: .push)
        let activated = b.clock.now()
        b.advance(by: 0)
        // Checked every min(interval / 4, 5 s) from the first pull delay on; overdue after interval +
        // max(5, interval / 2) = 90 s without a report.
        while try b.state(p1) == .unknown {
            XCTAssertTrue(b.advanceToNextRound(p1).isEmpty, "push hosts are never pulled")
            guard b.clock.now().timeIntervalSince(activated) < 100 else { return XCTFail("no report_overdue fault after 100 s") }
        }
        XCTAssertEqual(b.clock.now().timeIntervalSince(activated), 92)
        XCTAssertEqual(try b.state(p1), .unreachable)
        XCTAssertEqual(try b.store.trust(hostID: p1)?.lastProblem, "report_overdue")
        XCTAssertEqual(try b.store.latestAttestation(hostID: p1)?.kind, .fault)
        XCTAssertEqual(b.source.asked, 0)
    }

    func testBackoffDoublesFromOneSecondCappedAtTheIntervalAndResetsOnAVerdict() throws {
        let b = try Broker(policy: Broker.policy(interval: 10, grace: 3600))
        try b.addHost(h1)
        b.advance(by: 0)
        var delays: [TimeInterval] = []
        for _ in 0..<6 {
            XCTAssertEqual(b.advanceToNextRound(h1)[h1], .fault("attester_unreachable"))
            delays.append(try XCTUnwrap(b.reattestor.nextDue(hostID: h1)).timeIntervalSince(b.clock.now()))
        }
        XCTAssertEqual(delays, [1, 2, 4, 8, 10, 10])
        XCTAssertEqual(try b.state(h1), .unreachable)
        b.source.script(b.url(h1), .quote, .fault(.attesterTimeout))
        XCTAssertEqual(b.advanceToNextRound(h1)[h1], .verdict(trusted: true))
        XCTAssertEqual(try b.state(h1), .trusted)
        XCTAssertNil(try b.store.trust(hostID: h1)?.unreachableSince)
        XCTAssertEqual(b.advanceToNextRound(h1)[h1], .fault("attester_timeout"))
        XCTAssertEqual(b.reattestor.nextDue(hostID: h1), b.clock.now().addingTimeInterval(1), "backoff starts again from 1 s")
    }

    func testBlockedHostsLeaveTheScheduleAtTheNextRefresh() throws {
        let b = try Broker()
        try b.addHost(h1)
        b.advance(by: 0)
        try b.store.setBlock(hostID: h1, reason: "stolen")
        XCTAssertTrue(b.advance(by: Reattestor.firstPullDelay).isEmpty)
        XCTAssertNil(b.reattestor.nextDue(hostID: h1))
        XCTAssertEqual(b.source.asked, 0)
    }

    /// A failed verdict that revokes — its record, the trust record, the revocations with their
    /// CRL and events, the host.untrusted event — is one transaction.
    func testAFailedVerdictThatRevokesIsOneTransaction() throws {
        let b = try Broker(policy: Broker.policy(interval: 60, afterFailures: 1, action: .revoke))
        try b.addHost(h1)
        try b.addCertificate(host: h1, serial: "0a")
        try b.addCertificate(host: h1, serial: "0b")
        b.source.script(b.url(h1), .quote, .drifted)
        b.advance(by: 0)
        XCTAssertEqual(b.advance(by: 2)[h1], .verdict(trusted: true))
        let before = b.store.commits
        XCTAssertEqual(b.advanceToNextRound(h1)[h1], .verdict(trusted: false))
        XCTAssertEqual(b.store.commits, before + 1)
        XCTAssertEqual(try b.state(h1), .untrusted)
        XCTAssertNotNil(try b.store.certificate(serial: "0a")?.revokedAt)
        XCTAssertNotNil(try b.store.certificate(serial: "0b")?.revokedAt)
        XCTAssertEqual(try b.service.revocation.currentCRL().number, 1, "the CRL committed with the revocations lists them")
    }

    /// Verdicts and faults on one host read and write its trust record in one transaction, so
    /// concurrent ones never lose an update: every fault is counted.
    func testConcurrentFaultsOnOneHostAreAllCounted() throws {
        let b = try Broker(policy: Broker.policy(interval: 60, grace: 3600, afterFailures: 1, action: .revoke))
        try b.addHost(h1)
        let service = b.service, host = h1
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            for _ in 0..<25 { _ = try? service.reattestation.fault(hostID: host, code: "attester_timeout", message: "test") }
        }
        XCTAssertEqual(try b.store.trust(hostID: h1)?.consecutiveFaults, 100)
        XCTAssertEqual(try b.state(h1), .unreachable)
        XCTAssertEqual(try b.store.events(after: 0, limit: 10).map(\.type), [.hostUnreachable], "entered once")
    }
}
