import Foundation
import Synchronization
import VouchCore
import VouchModel

/// Which change commits batches now (`Revocations.batched`); `leading` and every member's
/// `outcome` are read and written under `lock`. A member sleeps on its own semaphore, signalled
/// when it is settled or when it is the oldest queued member as a leader steps down — never all
/// waiters at every settlement (200 drifting hosts made that 40,000 wake-ups on two cores).
final class BatchLeader: @unchecked Sendable {
    let lock = NSLock()
    var leading = false
}

/// One change waiting to be revoked in a batch (`Revocations.batched`): the revocation its
/// decision named, its decision and writes (type-erased; they run on whichever thread commits the
/// batch, while the change's own thread waits on `wake`), and how it ended (`outcome`, under
/// `BatchLeader.lock`; the closures are used only by the thread that commits the batch).
final class BatchMember: @unchecked Sendable {
    let target: RevocationTarget
    let reason: RevocationReason
    let at: Date
    var decide: ((any StoreTransaction) throws -> (value: Any, revoke: (target: RevocationTarget, reason: RevocationReason)?))?
    var write: ((any StoreTransaction, Any, RevocationPlan) throws -> Void)?
    var outcome: Outcome?
    /// Signalled when the member is settled, or when it may lead (the leader stepped down).
    let wake = DispatchSemaphore(value: 0)

    enum Outcome {
        /// Committed: the decision's value, the member's plan and the CRLs of its issuers.
        case committed(Any, RevocationPlan, [CRLRecord])
        /// Its decision no longer names `target` and `reason`: nothing of it was committed.
        case changed
        case failed(any Error)
    }

    init(target: RevocationTarget, reason: RevocationReason, at: Date,
         decide: @escaping (any StoreTransaction) throws -> (value: Any, revoke: (target: RevocationTarget, reason: RevocationReason)?),
         write: @escaping (any StoreTransaction, Any, RevocationPlan) throws -> Void) {
        self.target = target; self.reason = reason; self.at = at; self.decide = decide; self.write = write
    }

    /// Ends the member (under `BatchLeader.lock`); its closures are dropped (they must not
    /// outlive the waiting change).
    func settle(_ outcome: Outcome) {
        self.outcome = outcome
        decide = nil
        write = nil
    }
}

/// Test seams of the batching (`Revocations.hooks`), nil in service: tests force a path with them
/// instead of timing.
struct BatchHooks: Sendable {
    /// Called before every plan of a batched revocation's target; what it throws is that plan's error.
    var planning: (@Sendable (RevocationTarget) throws -> Void)?
    /// Called once for every settlement of a member (a member must be settled exactly once).
    var settled: (@Sendable (ObjectIdentifier) -> Void)?
}

/// Batching of revocations (see `Revocations`): a change whose decision revokes queues itself in
/// `pending` and waits while another change leads; if no batch committed it meanwhile, it leads:
/// under `planning` it takes every queued change, its own included, and commits them as one
/// batch, and each member is woken as soon as its outcome is known (not when the leader is done).
///
/// The batch is all or nothing, and nothing has to be attributed to a member inside it: the
/// leader plans every member from the store, signs each issuer's next CRL once for their union,
/// and commits them in one transaction in which every member is decided again and written in
/// queue order, its certificates revoked before its own writes, the CRLs stored last. A member
/// whose plan shares a certificate with an earlier member's is not in the batch. A CRL number
/// that moved since the batch was planned (another broker's revocation, a refresh: stale, but no
/// member's doing) plans the whole batch again, up to `attempts` times. If anything else keeps
/// the batch from committing — a member's plan, a signature, a member's decision or writes
/// throwing, a decision that no longer names its revocation, a member's target naming other
/// certificates now (its stale plan), a store error — nothing of it was committed, and every
/// member is committed alone, one at a time, exactly as an unbatched revocation is
/// (`commitAlone`: its own plan, signature and transaction, its own budget of `attempts` stale
/// plans, its own error); so is a batch of one. The members left out for overlapping are
/// committed alone after the batch, planned from a store that holds it. So each member ends
/// exactly once, with the answer it would have had unbatched: one member's error or stale
/// target never fails another. Two store errors are not a batch failure: those the store retries
/// (PostgreSQL serialization failures, deadlocks, a connection lost before COMMIT) pass through
/// the batch's transaction unchanged, so the store runs the whole transaction again as it would any
/// other; and an error whose outcome is unknown (the connection lost during COMMIT) may have
/// committed the batch, so it is every member's answer and nothing is run again.
///
/// Why this and not re-planning the batch without a failed member: the batch path has two
/// outcomes only (all committed, nothing committed), and the error path is the unbatched code,
/// which already answers each change exactly; failures are rare (drift verdicts revoke, operators
/// revoke), and a failed batch costs one wasted attempt.
extension Revocations {
    /// Thrown inside a transaction: a member's decision no longer names its revocation.
    private struct Changed: Error {}
    /// Thrown inside a batch's transaction: a member's target names other certificates than planned.
    private struct MemberStale: Error {}

    /// Commits the revocation `target`/`reason` with the change `decide`/`write` in the next
    /// batch. Returns what the change committed, or nil when its decision no longer names this
    /// revocation (nothing of it was committed; the caller decides again).
    func batched<D>(at now: Date, target: RevocationTarget, reason: RevocationReason,
                    decide: (any StoreTransaction) throws -> Decision<D>,
                    write: (any StoreTransaction, D, RevocationPlan?) throws -> Void) throws -> (value: D, plan: RevocationPlan?, crls: [CRLRecord])? {
        // The closures run on another thread only while this one waits below, and the member drops
        // them before it is settled, so they never outlive this call.
        let outcome = try withoutActuallyEscaping(decide) { decide in
            try withoutActuallyEscaping(write) { write -> BatchMember.Outcome in
                let member = BatchMember(target: target, reason: reason, at: now, decide: { tx in
                    let d = try decide(tx)
                    return (d.value, d.revoke)
                }, write: { tx, value, plan in
                    guard let value = value as? D else { throw VouchError(.internalError, "a batched decision changed type") }
                    try write(tx, value, plan)
                })
                pending.withLock { $0.append(member) }
                let l = leader
                while true {
                    l.lock.lock()
                    if member.outcome != nil { l.lock.unlock(); break }
                    if l.leading {
                        // Settled by this leader or a later one; or woken to lead. A signal that
                        // comes before the wait is counted, so none is lost.
                        l.lock.unlock()
                        member.wake.wait()
                        continue
                    }
                    // No leader, and this change is still queued: it leads, for what is queued
                    // now (itself among it), and settles all of it.
                    l.leading = true
                    l.lock.unlock()
                    planning.lock()
                    let queue = pending.withLock { q in defer { q.removeAll() }; return q }
                    commitBatch(queue)
                    planning.unlock()
                    // commitBatch settles every member it took; one it did not (a defect) fails
                    // rather than sleeping for ever.
                    l.lock.lock()
                    let unsettled = queue.filter { $0.outcome == nil }
                    l.lock.unlock()
                    finish(unsettled.map { ($0, .failed(VouchError(.internalError, "a batched revocation ended without an outcome"))) })
                    l.lock.lock()
                    l.leading = false
                    let next = pending.withLock { $0.first }
                    l.lock.unlock()
                    next?.wake.signal()   // the oldest change queued meanwhile leads next
                }
                l.lock.lock()
                let outcome = member.outcome
                l.lock.unlock()
                guard let outcome else { throw VouchError(.internalError, "a batched revocation ended without an outcome") }
                return outcome
            }
        }
        switch outcome {
        case let .committed(value, plan, crls):
            guard let value = value as? D else { throw VouchError(.internalError, "a batched decision changed type") }
            return (value, plan, crls)
        case .changed:
            return nil
        case let .failed(error):
            throw error
        }
    }

    /// Ends `members` with their outcomes and wakes their changes.
    private func finish(_ ended: [(BatchMember, BatchMember.Outcome)]) {
        let settled = hooks.withLock { $0.settled }
        leader.lock.lock()
        for (m, outcome) in ended {
            m.settle(outcome)
            settled?(ObjectIdentifier(m))
        }
        leader.lock.unlock()
        for (m, _) in ended { m.wake.signal() }
    }

    /// Commits `queue` (under `planning`): as one batch, or each member alone when the batch
    /// cannot commit (see the extension's comment). Settles every member exactly once.
    private func commitBatch(_ queue: [BatchMember]) {
        var alone = queue
        if queue.count > 1 {
            for attempt in 1...Self.attempts {
                var members: [BatchMember] = []
                var transacting = false
                do {
                    alone = []
                    try commitTogether(queue, members: &members, leftOut: &alone, transacting: &transacting)
                    break
                } catch let e as VouchError where e.outcomeUnknown && transacting {
                    // The batch may have committed: its members' answer, and none runs again (the
                    // ones left out for overlapping were not in it, and run alone).
                    finish(members.map { ($0, .failed(e)) })
                    break
                } catch let e as VouchError where e.code == .revocationPlanStale && attempt < Self.attempts {
                    // A CRL number moved (another broker, or a refresh): no member's doing; planned again.
                    continue
                } catch {
                    // Nothing of the batch committed, and no member was settled: each runs alone.
                    alone = queue
                    break
                }
            }
        }
        for m in alone { finish([(m, commitAlone(m))]) }
    }

    /// Plans `queue` as one batch (`members`; those whose plans share a certificate with an
    /// earlier member's go to `leftOut`), signs its CRLs and commits it, settling its members;
    /// throws (no member settled) when it did not commit.
    /// `transacting` is set as the batch's transaction starts: only an error from it can leave
    /// the batch's outcome unknown (one from planning or signing committed nothing).
    private func commitTogether(_ queue: [BatchMember], members: inout [BatchMember], leftOut: inout [BatchMember], transacting: inout Bool) throws {
        var plans: [RevocationPlan] = []
        var claimed = Set<String>()
        for m in queue {
            let plan = try plan(m)
            if plan.serials.contains(where: claimed.contains) { leftOut.append(m); continue }
            claimed.formUnion(plan.serials)
            plans.append(plan)
            members.append(m)
        }
        try commit(members, plans: plans, crls: try union(plans).map(sign), transacting: &transacting)
    }

    /// The plan of `m`'s revocation, from the store now.
    private func plan(_ m: BatchMember) throws -> RevocationPlan {
        try hooks.withLock { $0.planning }?(m.target)
        return try store.revocationPlan(m.target, at: m.at, reason: m.reason)
    }

    /// What each issuer's next CRL lists for the plans together: every certificate the issuer
    /// revoked before (the same in every plan, which must have been read at the same CRL number:
    /// `revocation_plan_stale` otherwise) and every one the plans revoke.
    private func union(_ plans: [RevocationPlan]) throws -> [IssuerRevocations] {
        var byIssuer: [String: (number: UInt64, revoked: [String: CertificateRecord])] = [:]
        for plan in plans where !plan.certificates.isEmpty {
            for i in plan.issuers {
                var entry = byIssuer[i.issuer] ?? (i.number, [:])
                guard entry.number == i.number else {
                    throw VouchError(.revocationPlanStale, "the CRL of \(i.issuer) changed while the batch was planned; plan again")
                }
                for c in i.revoked { entry.revoked[c.serial] = c }
                byIssuer[i.issuer] = entry
            }
        }
        return byIssuer.keys.sorted().map { id in
            let entry = byIssuer[id]!
            return IssuerRevocations(issuer: id, revoked: entry.revoked.values.sorted { $0.serial < $1.serial }, number: entry.number)
        }
    }

    /// Commits a planned batch in one transaction and settles its members; throws (nothing settled)
    /// when it did not commit. Errors of the members' decisions and writes are thrown unchanged, so
    /// the store runs the transaction again for those it retries.
    private func commit(_ members: [BatchMember], plans: [RevocationPlan], crls: [CRLRecord], transacting: inout Bool) throws {
        // The CRLs must list exactly what the batch revokes beside what was revoked before.
        let revoking = Set(plans.flatMap(\.certificates).map(\.serial))
        let listed = Set(plans.flatMap(\.issuers).flatMap(\.revoked).map(\.serial))
        guard revoking.isSubset(of: listed), Set(plans.flatMap(\.certificates).map(\.issuer)) == Set(crls.map(\.issuer)) else {
            throw VouchError(.internalError, "a batch's CRLs do not cover its revocations")
        }
        transacting = true
        let values = try bracketed(revoking: !revoking.isEmpty, crls: crls) {
            try store.transaction { tx -> [Any] in
                var values: [Any] = []
                for (index, m) in members.enumerated() {
                    guard let decide = m.decide, let write = m.write else { throw VouchError(.internalError, "a batch member was settled twice") }
                    let decision = try decide(tx)
                    guard let r = decision.revoke, r.target == m.target, r.reason == m.reason else { throw Changed() }
                    // The revocations first, so their events precede the ones the change writes. A
                    // target that names other certificates now is this member's stale plan, not the batch's.
                    do { try tx.revokeCertificates(plans[index]) } catch let e as VouchError where e.code == .revocationPlanStale { throw MemberStale() }
                    try write(tx, decision.value, plans[index])
                    values.append(decision.value)
                }
                try tx.storeCRLs(crls)
                return values
            }
        }
        finish(members.enumerated().map { index, m in
            let own = Set(plans[index].certificates.map(\.issuer))
            return (m, .committed(values[index], plans[index], crls.filter { own.contains($0.issuer) }))
        })
    }

    /// Commits `m` alone, as an unbatched revocation: planned and signed (again while the CRLs
    /// move under the signature), committed in a transaction of its own, planned again on
    /// `revocation_plan_stale` up to `attempts` times (then `conflict`).
    private func commitAlone(_ m: BatchMember) -> BatchMember.Outcome {
        guard let decide = m.decide, let write = m.write else {
            return .failed(VouchError(.internalError, "a batch member was settled twice"))
        }
        func conflict(_ e: VouchError) -> VouchError {
            VouchError(.conflict, "the certificates or CRLs kept changing while this revocation was planned; not committed", context: e.context)
        }
        func prepare() throws -> (RevocationPlan, [CRLRecord]) {
            // A plan can be stale before it is signed: another broker on the same store published
            // the CRL number it takes after its snapshot (`sign` says so). Planned again.
            for attempt in 1...Self.attempts {
                let made = try plan(m)
                do {
                    return (made, made.certificates.isEmpty ? [] : try made.issuers.map(sign))
                } catch let e as VouchError where e.code == .revocationPlanStale {
                    if attempt == Self.attempts { throw conflict(e) }
                }
            }
            throw VouchError(.internalError, "no revocation attempt was made")
        }
        do {
            var (plan, crls) = try prepare()
            for attempt in 1...Self.attempts {
                do {
                    let value = try bracketed(revoking: !plan.certificates.isEmpty, crls: crls) {
                        try store.transaction { tx -> Any in
                            let decision = try decide(tx)
                            guard let r = decision.revoke, r.target == m.target, r.reason == m.reason else { throw Changed() }
                            try tx.revoke(plan, crls: crls)
                            try write(tx, decision.value, plan)
                            return decision.value
                        }
                    }
                    return .committed(value, plan, crls)
                } catch let e as VouchError where e.code == .revocationPlanStale {
                    if attempt == Self.attempts { throw conflict(e) }
                    (plan, crls) = try prepare()
                }
            }
            throw VouchError(.internalError, "no revocation attempt was made")
        } catch is Changed {
            return .changed
        } catch {
            return .failed(error)
        }
    }

    /// Runs `body`, a transaction committing `crls` when it returns, with the response caches
    /// bypassed when it revokes (`ResponseCache.revoking`) until they hold what it committed. A
    /// transaction whose outcome is unknown may have committed `crls`: the cached CRLs of their
    /// issuers and the OCSP answers are dropped, and readers go to the store.
    private func bracketed<T>(revoking: Bool, crls: [CRLRecord], _ body: () throws -> T) throws -> T {
        guard revoking else { return try body() }
        cache.write { $0.revoking += 1; $0.generation += 1 }
        var committed: [CRLRecord] = [], unknown = false
        defer {
            cache.write { c in
                for crl in committed where (c.crls[crl.issuer]?.number ?? 0) <= crl.number { c.crls[crl.issuer] = crl }
                if unknown { for crl in crls { c.crls[crl.issuer] = nil } }
                if !committed.isEmpty || unknown { c.ocsp.removeAll() }
                c.generation += 1
                c.revoking -= 1
            }
        }
        do {
            let value = try body()
            committed = crls
            watermark.raise(crls)
            return value
        } catch let e as VouchError where e.outcomeUnknown {
            unknown = true
            throw e
        }
    }
}

extension VouchError {
    /// Whether the store cannot tell if the transaction committed (PostgreSQL: the connection was
    /// lost during COMMIT, or a synchronous standby never confirmed it): `outcome: unknown`.
    var outcomeUnknown: Bool { context["outcome"] == "unknown" }
}
