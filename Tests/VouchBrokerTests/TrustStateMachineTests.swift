import Foundation
import XCTest
@testable import VouchBroker
import VouchModel

/// Every transition of `TrustStateMachine`, as pure functions: (record, input, rule, time) -> step.
final class TrustStateMachineTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let revoke3 = TrustStateMachine.Rule(afterFailures: 3, grace: 30, action: .revoke)
    let revoke1 = TrustStateMachine.Rule(afterFailures: 1, grace: 30, action: .revoke)
    let untrust1 = TrustStateMachine.Rule(afterFailures: 1, grace: 0, action: .untrust)

    func trust(_ state: TrustState, failures: Int = 0, faults: Int = 0, spell: Date? = nil) -> HostTrust {
        HostTrust(hostID: "h", state: state, since: t0, mode: .pull, consecutiveFailures: failures, consecutiveFaults: faults, unreachableSince: spell)
    }

    func testGoodVerdictTrustsFromEveryState() {
        let now = t0.addingTimeInterval(10)
        for state in TrustState.allCases {
            let step = TrustStateMachine.verdict(trust(state, failures: 2, faults: 4, spell: t0), trusted: true, problem: nil, rule: revoke3, now: now)
            XCTAssertEqual(step.trust.state, .trusted, "\(state)")
            XCTAssertEqual(step.trust.since, state == .trusted ? t0 : now, "since restarts only on a change (\(state))")
            XCTAssertEqual([step.trust.consecutiveFailures, step.trust.consecutiveFaults], [0, 0], "\(state)")
            XCTAssertNil(step.trust.unreachableSince)
            XCTAssertEqual(step.trust.lastVerdictAt, now)
            XCTAssertFalse(step.failed || step.revoke)
            XCTAssertEqual(step.event(revokedCount: 0), state == .trusted ? nil : .hostTrusted, "\(state)")
        }
    }

    func testFailedVerdictsCountUntilAfterFailuresThenFailWithTheRulesAction() {
        var t = trust(.trusted)
        for n in 1...2 {
            let step = TrustStateMachine.verdict(t, trusted: false, problem: "pcr_mismatch", rule: revoke3, now: t0)
            XCTAssertEqual(step.trust.state, .trusted, "below afterFailures the state stays")
            XCTAssertEqual(step.trust.consecutiveFailures, n)
            XCTAssertEqual(step.trust.lastProblem, "pcr_mismatch")
            XCTAssertNil(step.event(revokedCount: 0))
            t = step.trust
        }
        let third = TrustStateMachine.verdict(t, trusted: false, problem: "pcr_mismatch", rule: revoke3, now: t0)
        XCTAssertEqual(third.trust.state, .untrusted)
        XCTAssertTrue(third.failed && third.revoke)
        XCTAssertEqual(third.event(revokedCount: 0), .hostUntrusted)
        let untrust = TrustStateMachine.verdict(trust(.trusted), trusted: false, problem: "x", rule: untrust1, now: t0)
        XCTAssertTrue(untrust.failed)
        XCTAssertFalse(untrust.revoke, "untrust only marks the host")
    }

    func testAFailedVerdictBelowTheThresholdTakesAnUnreachableHostBackToUnknown() {
        let step = TrustStateMachine.verdict(trust(.unreachable, faults: 3, spell: t0), trusted: false, problem: "x", rule: revoke3, now: t0.addingTimeInterval(5))
        XCTAssertEqual(step.trust.state, .unknown)
        XCTAssertNil(step.trust.unreachableSince)
        XCTAssertEqual(step.trust.consecutiveFaults, 0)
        XCTAssertNil(step.event(revokedCount: 0))
    }

    func testAFailedVerdictOnAnUntrustedHostPublishesOnlyIfItRevokedSomething() {
        let step = TrustStateMachine.verdict(trust(.untrusted, failures: 1), trusted: false, problem: "x", rule: revoke1, now: t0)
        XCTAssertTrue(step.failed && step.revoke, "a certificate issued meanwhile is revoked too")
        XCTAssertNil(step.event(revokedCount: 0))
        XCTAssertEqual(step.event(revokedCount: 1), .hostUntrusted)
    }

    func testFaultsWithinTheGraceMakeTheHostUnreachableOnce() {
        let first = TrustStateMachine.fault(trust(.trusted), code: "attester_timeout", rule: revoke3, now: t0)
        XCTAssertEqual(first.trust.state, .unreachable)
        XCTAssertEqual(first.trust.unreachableSince, t0)
        XCTAssertEqual(first.faultRecord, .unreachable)
        XCTAssertEqual(first.event(revokedCount: 0), .hostUnreachable)
        let second = TrustStateMachine.fault(first.trust, code: "attester_timeout", rule: revoke3, now: t0.addingTimeInterval(29))
        XCTAssertEqual(second.trust.state, .unreachable)
        XCTAssertEqual(second.trust.consecutiveFaults, 2)
        XCTAssertEqual(second.trust.unreachableSince, t0, "the spell keeps its start")
        XCTAssertNil(second.faultRecord)
        XCTAssertNil(second.event(revokedCount: 0))
    }

    func testAFaultAtTheEndOfTheGraceFailsAtOnceWithoutAfterFailures() {
        let spell = trust(.unreachable, faults: 2, spell: t0)
        let step = TrustStateMachine.fault(spell, code: "attester_unreachable", rule: revoke3, now: t0.addingTimeInterval(30))
        XCTAssertEqual(step.trust.state, .untrusted)
        XCTAssertEqual(step.trust.consecutiveFailures, 1)
        XCTAssertTrue(step.failed && step.revoke)
        XCTAssertEqual(step.faultRecord, .failedAfterGrace(seconds: 30))
        XCTAssertEqual(step.event(revokedCount: 0), .hostUntrusted)
        // Zero grace: the first fault already fails.
        XCTAssertEqual(TrustStateMachine.fault(trust(.trusted), code: "x", rule: untrust1, now: t0).trust.state, .untrusted)
    }

    func testAFaultWithoutAPolicyOnlyMarksTheHostUntrusted() {
        let step = TrustStateMachine.fault(trust(.trusted), code: "x", rule: nil, now: t0)
        XCTAssertEqual(step.trust.state, .untrusted)
        XCTAssertFalse(step.failed || step.revoke)
        XCTAssertEqual(step.trust.consecutiveFailures, 0)
        XCTAssertEqual(step.faultRecord, .failedAfterGrace(seconds: 0))
        XCTAssertNil(step.event(revokedCount: 0))
    }

    func testAnUntrustedHostStaysUntrustedThroughFaultsAndRecordsNothing() {
        let step = TrustStateMachine.fault(trust(.untrusted, failures: 1), code: "attester_timeout", rule: revoke3, now: t0)
        XCTAssertEqual(step.trust.state, .untrusted)
        XCTAssertEqual(step.trust.consecutiveFaults, 1, "counted for backoff")
        XCTAssertNil(step.faultRecord)
        XCTAssertFalse(step.failed || step.revoke)
        XCTAssertNil(step.event(revokedCount: 0))
    }

    func testATrustedEnrollmentIsAGoodVerdict() {
        for state in TrustState.allCases {
            let step = TrustStateMachine.trustedEnrollment(trust(state, failures: 2, faults: 1, spell: t0), now: t0.addingTimeInterval(1))
            XCTAssertEqual(step.trust.state, .trusted)
            XCTAssertEqual([step.trust.consecutiveFailures, step.trust.consecutiveFaults], [0, 0])
            XCTAssertEqual(step.event(revokedCount: 0), state == .trusted ? nil : .hostTrusted)
        }
    }
}
