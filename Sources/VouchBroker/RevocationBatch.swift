import Foundation
import Synchronization
import VouchCore
import VouchModel

/// Which change commits batches now (`Revocations.batched`); `leading` and every member's
/// `outcome` are read and written under `condition`, which is signalled as members end.
final class BatchLeader: @unchecked Sendable {
    let condition = NSCondition()
    var leading = false
}

/// One change waiting to be revoked in a batch (`Revocations.batched`): the revocation its
/// decision named, its decision and writes (type-erased; they run on whichever thread commits the
/// batch, while the change's own thread waits), and how it ended (`outcome`, under
/// `BatchLeader.condition`; the closures are used only by the thread that commits the batch).
final class BatchMember: @unchecked Sendable {
    let target: RevocationTarget
    let reason: RevocationReason
    let at: Date
    var decide: ((any StoreTransaction) throws -> (value: Any, revoke: (target: RevocationTarget, reason: RevocationReason)?))?
    var write: ((any StoreTransaction, Any, RevocationPlan) throws -> Void)?
    var outcome: Outcome?

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

    /// Ends the member (under `BatchLeader.condition`); its closures are dropped (they must not
    /// outlive the waiting change).
    func settle(_ outcome: Outcome) {
        self.outcome = outcome
        decide = nil
        write = nil
    }
}

/// Batching of revocations (see `Revocations`): a change whose decision revokes queues itself in
/// `pending` and waits while another change leads; if no batch committed it meanwhile, it leads:
/// under `planning` it commits every queued change, its own included, as batches, and each
/// batch's members are woken as soon as it committed (not when the leader is done). A batch's members have disjoint plans (a member whose
/// plan shares a certificate with an earlier one waits for the next batch, planned after the
/// earlier one committed). Each batch is planned from the store (one plan per member; the CRL of
/// each issuer for their union, signed once) and committed in one transaction in which every
/// member is decided again and written in queue order, its certificates revoked before its own
/// writes, and the CRLs stored last. Exact fallbacks: a member whose decision no longer names its
/// revocation, or whose decision or writes throw, abandons the transaction and is left out
/// (`changed`: its change decides again; or its error), and the rest are planned and signed
/// again; a stale plan (`revocation_plan_stale`) plans the whole batch again, `attempts` times.
extension Revocations {
    /// Thrown inside a batch's transaction: member `index` ended the attempt.
    private struct MemberEnded: Error {
        let index: Int
        let changed: Bool
        let error: (any Error)?
    }

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
                let c = leader.condition
                c.lock()
                while member.outcome == nil && leader.leading { c.wait() }
                if member.outcome == nil {
                    // No leader, and this change is still queued: it leads, for what is queued now.
                    leader.leading = true
                    c.unlock()
                    planning.lock()
                    commitPending()
                    planning.unlock()
                    c.lock()
                    leader.leading = false
                    c.broadcast()
                }
                let outcome = member.outcome
                c.unlock()
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
        leader.condition.lock()
        for (m, outcome) in ended { m.settle(outcome) }
        leader.condition.broadcast()
        leader.condition.unlock()
    }

    /// Commits every queued change as batches (under `planning`); every one taken from the queue
    /// is settled before this returns.
    private func commitPending() {
        var queue = pending.withLock { q in
            defer { q.removeAll() }
            return q
        }
        while !queue.isEmpty {
            queue = commitBatch(queue)
        }
    }

    /// Plans and commits one batch from the head of `queue`; returns the members left for the next
    /// batch (those whose plans overlap a member's before them). Settles every member it takes.
    private func commitBatch(_ queue: [BatchMember]) -> [BatchMember] {
        var members = queue
        var later: [BatchMember] = []
        var stale = 0
        while !members.isEmpty {
            do {
                // One plan per member; a member naming a certificate an earlier one names waits.
                var plans: [RevocationPlan] = []
                var claimed = Set<String>()
                var taken: [BatchMember] = []
                for m in members {
                    let plan = try store.revocationPlan(m.target, at: m.at, reason: m.reason)
                    if plan.serials.contains(where: claimed.contains) { later.append(m); continue }
                    claimed.formUnion(plan.serials)
                    plans.append(plan)
                    taken.append(m)
                }
                members = taken
                let crls = try union(plans).map(sign)
                try commit(members, plans: plans, crls: crls)
                return later
            } catch let ended as MemberEnded {
                finish([(members[ended.index], ended.changed ? .changed : .failed(ended.error ?? VouchError(.internalError, "a batched change failed")))])
                members.remove(at: ended.index)
            } catch let e as VouchError where e.code == .revocationPlanStale {
                stale += 1
                guard stale < Self.attempts else {
                    let conflict = VouchError(.conflict, "the certificates or CRLs kept changing while this revocation was planned; not committed", context: e.context)
                    finish(members.map { ($0, .failed(conflict)) })
                    return later
                }
            } catch {
                finish(members.map { ($0, .failed(error)) })
                return later
            }
        }
        return later
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

    /// Commits a planned batch in one transaction and settles its members; throws `MemberEnded`
    /// (nothing committed) when a member's decision changed or its decision or writes threw.
    private func commit(_ members: [BatchMember], plans: [RevocationPlan], crls: [CRLRecord]) throws {
        // The CRLs must list exactly what the batch revokes beside what was revoked before.
        let revoking = Set(plans.flatMap(\.certificates).map(\.serial))
        let listed = Set(plans.flatMap(\.issuers).flatMap(\.revoked).map(\.serial))
        guard revoking.isSubset(of: listed), Set(plans.flatMap(\.certificates).map(\.issuer)) == Set(crls.map(\.issuer)) else {
            throw VouchError(.internalError, "a batch's CRLs do not cover its revocations")
        }
        // A batch that revokes something: readers go to the store until the caches are updated.
        let bracketed = !revoking.isEmpty
        if bracketed { cache.write { $0.revoking += 1; $0.generation += 1 } }
        var committed: [CRLRecord]?
        defer {
            if bracketed {
                cache.write { c in
                    if let committed, !committed.isEmpty {
                        for crl in committed where (c.crls[crl.issuer]?.number ?? 0) <= crl.number { c.crls[crl.issuer] = crl }
                        c.ocsp.removeAll()
                    }
                    c.generation += 1
                    c.revoking -= 1
                }
            }
        }
        let values = try store.transaction { tx -> [Any] in
            var values: [Any] = []
            for (index, m) in members.enumerated() {
                guard let decide = m.decide, let write = m.write else { throw VouchError(.internalError, "a batch member was settled twice") }
                let decision: (value: Any, revoke: (target: RevocationTarget, reason: RevocationReason)?)
                do { decision = try decide(tx) } catch { throw MemberEnded(index: index, changed: false, error: error) }
                guard let r = decision.revoke, r.target == m.target, r.reason == m.reason else {
                    throw MemberEnded(index: index, changed: true, error: nil)
                }
                // The revocations first, so their events precede the ones the change writes.
                try tx.revokeCertificates(plans[index])
                do { try write(tx, decision.value, plans[index]) } catch { throw MemberEnded(index: index, changed: false, error: error) }
                values.append(decision.value)
            }
            try tx.storeCRLs(crls)
            return values
        }
        committed = crls
        watermark.raise(crls)
        finish(members.enumerated().map { index, m in
            let own = Set(plans[index].certificates.map(\.issuer))
            return (m, .committed(values[index], plans[index], crls.filter { own.contains($0.issuer) }))
        })
    }
}
