import Foundation
import VouchModel
import VouchPolicy

/// The trust state machine of continuous re-attestation: pure, one function of (record, input,
/// policy rule, time). The services read the record, take a `TrustStep` from here, and write what
/// it says — the new record, the decision to record, the revocation, the event — in one
/// transaction (`Revocations.change`).
///
/// ```
///            good verdict                       failed verdict × afterFailures, or a fault past grace
///  unknown ───────────────► trusted ◄──────────────────────────────────────────────────► untrusted
///     │  ▲                    │   ▲  good verdict                                         ▲
///     │  │ failed verdict     │   │                                                       │
///     ▼  │ (fewer than        ▼   │                                                       │
///  unreachable ─────────────────── fault (no evidence) ───── past grace ──────────────────┘
/// ```
/// - A verdict resets the fault count and ends an unreachable spell. Good: failures reset, the host
///   is `trusted` (its revoked certificates stay revoked). Failed: failures + 1; at `afterFailures`
///   the host is `untrusted` and with `revoke` every unrevoked certificate of its agents is revoked;
///   below it, an `unreachable` host goes back to `unknown` (it answered, but not well), any
///   other state stays.
/// - A fault (no evidence: refused, timeout, TPM busy, clock not yet safe, missed push report)
///   counts for backoff and starts (or continues) an unreachable spell. An `untrusted` host stays
///   untrusted and nothing is recorded. Within the policy's grace the host is `unreachable` (a
///   `fault` record and `host.unreachable` event when it enters); once the spell lasts the grace,
///   the fault counts as a failed verdict and the failure action applies at once (no
///   `afterFailures`: the grace was the allowance). With no policy the grace is zero and the host
///   is only marked untrusted.
/// - A trusted enrollment is fresh verified evidence under the host's policy: a good verdict.
enum TrustStateMachine {
    /// The part of a policy the machine reads.
    struct Rule: Equatable, Sendable {
        var afterFailures: Int
        var grace: TimeInterval
        var action: Policy.Reattestation.Action
        init(afterFailures: Int, grace: TimeInterval, action: Policy.Reattestation.Action) {
            self.afterFailures = afterFailures; self.grace = grace; self.action = action
        }
        init(_ policy: Policy) {
            self.init(afterFailures: policy.reattestation.afterFailures, grace: policy.reattestation.grace, action: policy.reattestation.action)
        }
    }

    /// What a fault records in the audit trail, if anything.
    enum FaultRecord: Equatable, Sendable {
        /// The spell outlasted the grace: a failed re-attestation verdict, after `seconds` without evidence.
        case failedAfterGrace(seconds: Int)
        /// The host became unreachable.
        case unreachable
    }

    /// One step: the new record and what the change must also do.
    struct Step: Equatable, Sendable {
        var trust: HostTrust
        var previous: TrustState
        /// The failure action applies now (the host is or stays untrusted by a failure).
        var failed = false
        /// With `failed`: revoke every unrevoked certificate of the host's agents.
        var revoke = false
        /// For a fault: what it records.
        var faultRecord: FaultRecord?

        /// The event this step publishes. `revokedCount`: how many certificates the step revoked.
        func event(revokedCount: Int) -> OutboxEventType? {
            if failed { return previous != .untrusted || revokedCount > 0 ? .hostUntrusted : nil }
            if faultRecord == .unreachable { return .hostUnreachable }
            if trust.state == .trusted && previous != .trusted { return .hostTrusted }
            return nil
        }
    }

    /// A judged quote: `trusted`, or rejected with `problem` (its first code).
    static func verdict(_ t: HostTrust, trusted: Bool, problem: String?, rule: Rule, now: Date) -> Step {
        var t = t
        let was = t.state
        t.lastVerdictAt = now
        t.lastContactAt = now
        t.consecutiveFaults = 0
        t.unreachableSince = nil
        if trusted {
            t.consecutiveFailures = 0
            t.lastProblem = nil
            t.enter(.trusted, at: now)
            return Step(trust: t, previous: was)
        }
        t.consecutiveFailures += 1
        t.lastProblem = problem
        if t.consecutiveFailures >= rule.afterFailures {
            t.enter(.untrusted, at: now)
            return Step(trust: t, previous: was, failed: true, revoke: rule.action == .revoke)
        }
        if t.state == .unreachable { t.enter(.unknown, at: now) }
        return Step(trust: t, previous: was)
    }

    /// No evidence came (`code`). `rule` nil: no policy applies to the host any more.
    static func fault(_ t: HostTrust, code: String, rule: Rule?, now: Date) -> Step {
        var t = t
        let was = t.state
        t.consecutiveFaults += 1
        t.lastProblem = code
        let spellStart = t.unreachableSince ?? now
        t.unreachableSince = spellStart
        guard t.state != .untrusted else { return Step(trust: t, previous: was) }
        let grace = rule?.grace ?? 0
        let spell = now.timeIntervalSince(spellStart)
        if spell >= grace {
            t.enter(.untrusted, at: now)
            guard let rule else { return Step(trust: t, previous: was, faultRecord: .failedAfterGrace(seconds: Int(spell))) }
            t.consecutiveFailures += 1
            return Step(trust: t, previous: was, failed: true, revoke: rule.action == .revoke, faultRecord: .failedAfterGrace(seconds: Int(spell)))
        }
        if t.state != .unreachable {
            t.enter(.unreachable, at: now)
            return Step(trust: t, previous: was, faultRecord: .unreachable)
        }
        return Step(trust: t, previous: was)
    }

    /// A trusted enrollment: fresh verified evidence under the host's policy.
    static func trustedEnrollment(_ t: HostTrust, now: Date) -> Step {
        var t = t
        let was = t.state
        t.lastVerdictAt = now
        t.lastContactAt = now
        t.consecutiveFailures = 0
        t.consecutiveFaults = 0
        t.unreachableSince = nil
        t.lastProblem = nil
        t.enter(.trusted, at: now)
        return Step(trust: t, previous: was)
    }
}
