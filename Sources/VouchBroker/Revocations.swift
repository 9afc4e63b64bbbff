import Dispatch
import Foundation
import Synchronization
import VouchCore
import VouchCrypto
import VouchModel

/// What relying parties poll, kept in memory: the committed CRL per issuer, and signed OCSP
/// responses by request. `generation` counts revocations.
struct ResponseCache {
    var crls: [String: CRLRecord] = [:]
    var ocsp: [[UInt8]: (at: Date, response: [UInt8])] = [:]
    var generation = 0
    /// Revocations between the start of their transaction and the cache update after its commit.
    /// While any is in flight the caches are neither read nor filled: the store's commit makes the
    /// revocation and the state change that caused it visible at once, so an observer that sees
    /// the host untrusted must not then get a cached CRL or OCSP "good" from before it.
    var revoking = 0
    /// Replicas on a shared store: until when (monotonic nanoseconds) the caches may answer,
    /// moved on by every revision the `ReplicaFollower` reads; nil for a broker alone. A replica
    /// that cannot follow the store for a moment stops answering from memory (it reads the store,
    /// or fails) rather than serve what another replica may have revoked since.
    var followedUntil: UInt64?
    /// Whether the caches may answer now.
    var usable: Bool { revoking == 0 && (followedUntil.map { DispatchTime.now().uptimeNanoseconds < $0 } ?? true) }
}

/// Revocation and CRLs, and the unit of work of every state change that may revoke.
///
/// A change (`change`) is decided and written inside one store transaction, so what it reads
/// cannot change before it writes (no lost update between two verdicts on one host). When the
/// decision revokes, the revocation is planned and each concerned CA's next CRL signed *before*
/// the transaction — with no store lock held, so ECDSA signing never stalls other writers — and
/// committed in it with the decision, the revocations' events and the CRLs: the first time a
/// decision asks for a revocation without a plan, the transaction is abandoned (it wrote
/// nothing), and the change joins the next batch of revocations (RevocationBatch.swift).
///
/// Revocations are batched: those that arrive while one is planned, signed and committed wait,
/// and the next of them to lead plans them all together — a plan per member from the store, one
/// CRL per issuer for their union, signed once — and commits them in one store transaction, each
/// member decided again (`decide`) and written in turn, the CRLs last. A batch commits whole or
/// not at all; when it cannot commit (a member's plan, signature, decision or writes failed, a
/// decision changed, a plan went stale), every member is committed alone, as an unbatched
/// revocation, so one member's error never fails another (RevocationBatch.swift). Every
/// member's answer names CRLs that list its certificates, and no CRL is committed that lists a
/// certificate the store does not mark revoked or misses one it does. Planning, signing and
/// committing hold `planning`, so this broker's revocations and CRL refreshes never make each
/// other's plans stale; a plan that still went stale by the commit (a certificate issued for a
/// target meanwhile, another broker on the same database) makes the store answer
/// `revocation_plan_stale`, and the revocation is planned again — each up to `attempts` times,
/// then its change fails with `conflict`. A plan can also go stale before it is signed: another
/// broker published the CRL number it takes, and this broker served that CRL meanwhile (which
/// raised its watermark); `sign` tells that from a store behind the watermark, and it is planned
/// again. Every plan is checked at commit, one that names nothing too. From just before such a
/// transaction until the in-memory CRL and OCSP caches are replaced from what it committed, the
/// caches are bypassed (`ResponseCache.revoking`): relying parties read the store, which shows
/// the revocation exactly when it shows the state change that caused it.
final class Revocations: Sendable {
    let store: BrokerStore
    let authorities: CASet
    let clock: Clock
    let crlValidity: TimeInterval
    let cache: ReadMostly<ResponseCache>
    /// The highest CRL number published per issuer: no CRL is signed from a store behind it.
    let watermark: CRLWatermark
    /// Held while a batch of revocations is planned, signed and committed, and while a CRL is refreshed.
    let planning = NSLock()
    /// Revocations waiting for the next batch.
    let pending = Mutex<[BatchMember]>([])
    /// Which waiting change commits the next batches (RevocationBatch.swift).
    let leader = BatchLeader()
    /// Test seams of the batching (RevocationBatch.swift); empty in service.
    let hooks = Mutex(BatchHooks())
    /// How often a revocation is planned again after its plan went stale, before `conflict` is returned.
    static let attempts = 8

    init(store: BrokerStore, authorities: CASet, clock: Clock, crlValidity: TimeInterval, cache: ReadMostly<ResponseCache>, watermark: CRLWatermark) {
        self.store = store; self.authorities = authorities; self.clock = clock; self.crlValidity = crlValidity; self.cache = cache
        self.watermark = watermark
    }

    /// A decision: its value, and what (if anything) to revoke with it.
    struct Decision<D> {
        var value: D
        var revoke: (target: RevocationTarget, reason: RevocationReason)?
    }

    /// The transaction was abandoned: the decision revokes, and needs a plan and signed CRLs first.
    private struct NeedsPlan: Error { let target: RevocationTarget; let reason: RevocationReason }

    /// Decides (`decide`, reading through the transaction) and commits the revocation it names
    /// and what `write` writes, in one transaction (see the type's comment). `expecting`: the
    /// revocation the decision will name, batched before the first transaction (operator
    /// revocations always revoke). Returns the decision, the plan (nil: nothing to revoke) and
    /// the CRLs stored (those of the plan's issuers, which list its certificates).
    func change<D>(at now: Date, expecting: (target: RevocationTarget, reason: RevocationReason)? = nil,
                   decide: (any StoreTransaction) throws -> Decision<D>,
                   write: (any StoreTransaction, D, RevocationPlan?) throws -> Void) throws -> (value: D, plan: RevocationPlan?, crls: [CRLRecord]) {
        var wanted = expecting
        var replans = 0
        while true {
            if let w = wanted {
                // Committed in a batch, or the decision changed: decided again below.
                if let done = try batched(at: now, target: w.target, reason: w.reason, decide: decide, write: write) { return done }
                replans += 1
                guard replans <= 2 * Self.attempts else { throw VouchError(.conflict, "the change kept naming other revocations; not committed") }
            }
            do {
                let value = try store.transaction { tx -> D in
                    let decision = try decide(tx)
                    if let r = decision.revoke { throw NeedsPlan(target: r.target, reason: r.reason) }
                    try write(tx, decision.value, nil)
                    return decision.value
                }
                return (value, nil, [])
            } catch let needed as NeedsPlan {
                wanted = (needed.target, needed.reason)
            }
        }
    }

    /// Revokes what `target` names, with nothing else; returns the serials and the CRLs stored.
    func revoke(_ target: RevocationTarget, at now: Date, reason: RevocationReason) throws -> (serials: [String], crls: [CRLRecord]) {
        let done = try change(at: now, expecting: (target, reason), decide: { _ in Decision(value: (), revoke: (target, reason)) }, write: { _, _, _ in })
        return (done.plan?.serials ?? [], done.crls)
    }

    /// Signs the issuer's next CRL: every certificate it revoked that has not expired, the number
    /// the plan gives, valid from now for `crlValidity`. A number already published is refused:
    /// `revocation_plan_stale` when the store has moved on to it (another broker published it),
    /// `crl_behind` when the store is behind it (`CRLWatermark.check`).
    func sign(_ r: IssuerRevocations) throws -> CRLRecord {
        guard let signer = authorities.byKeyID(r.issuer)?.signer else {
            throw VouchError(.internalError, "no CA signs CRLs for issuer \(r.issuer)")
        }
        try watermark.check(issuer: r.issuer, next: r.number) { try store.currentCRL(issuer: r.issuer)?.number }
        let now = clock.now()
        let entries = r.revoked.filter { $0.notAfter > now }.compactMap { c in
            c.revokedAt.map { RevokedEntry(serialHex: c.serial, revokedAt: $0, reason: (c.revocationReason ?? .unspecified).rawValue) }
        }
        let next = now.addingTimeInterval(crlValidity)
        return CRLRecord(issuer: r.issuer, number: r.number, der: try signer.makeCRL(entries: entries, number: r.number, thisUpdate: now, nextUpdate: next),
                         thisUpdate: now, nextUpdate: next)
    }

    /// Throws `crl_behind` when the store's CRL of `issuer` is older than one already published
    /// (OCSP answers and /readyz: the store may have lost revocations).
    /// The cached CRL answers while the cache may (it holds only what was checked when filled,
    /// and is dropped whenever the store's CRLs move), so an OCSP answer reads the store for this
    /// only on a cache miss, as the CRL route does.
    /// The watermark is read first (`CRLWatermark.check(serving:issuer:readAfter:)`); a cached
    /// number below it is no answer, and the store is read.
    func checkNotBehind(issuer: String) throws {
        let floor = try watermark.published(issuer: issuer)
        if let cached = cache.read({ $0.usable ? $0.crls[issuer]?.number : nil }), cached >= floor { return }
        try watermark.check(serving: try store.currentCRL(issuer: issuer)?.number ?? 0, issuer: issuer, readAfter: floor)
    }

    /// The CRL of the CA with key id `issuer`, re-signed when half its validity has passed. Only
    /// current and previous CAs have CRLs. Served from memory: the cache holds what the store
    /// committed and is replaced by every revocation before it is answered.
    func currentCRL(issuer id: String) throws -> CRLRecord {
        guard authorities.byKeyID(id) != nil else { throw VouchError(.notFound, "no CA with this key identifier signs CRLs here", context: ["issuer": id]) }
        let now = clock.now()
        func fresh(_ crl: CRLRecord) -> Bool { now >= crl.thisUpdate && now < crl.thisUpdate.addingTimeInterval(crlValidity / 2) }
        // Taken before anything is read: what is read after it must be at least it (see `checkNotBehind`).
        let floor = try watermark.published(issuer: id)
        if let crl = cache.read({ $0.usable ? $0.crls[id] : nil }), fresh(crl), crl.number >= floor { return crl }
        // What the store says from here on may predate a change another replica committed; the
        // cache keeps it only if nothing dropped the cache meanwhile.
        let generation = cache.read { $0.generation }
        let crl: CRLRecord
        if let stored = try store.currentCRL(issuer: id), fresh(stored) {
            crl = stored
        } else {
            // Signed outside the store lock, under `planning` (so no batch of this broker's
            // revocations is planned against the number it takes); a CRL another broker stored meanwhile is
            // newer, and `publishCRL` keeps and returns it instead.
            planning.lock()
            defer { planning.unlock() }
            // Read again under the lock: a concurrent request may have re-signed it meanwhile, and
            // unauthenticated requests must not each sign a CRL.
            if let again = try store.currentCRL(issuer: id), fresh(again) {
                crl = again
            } else {
                do {
                    crl = try store.publishCRL(try sign(try store.revocations(issuer: id)))
                } catch let e as VouchError where e.code == .revocationPlanStale {
                    // Another broker published a newer CRL since the revocations were read: it is the current one.
                    guard let newer = try store.currentCRL(issuer: id) else { throw e }
                    crl = newer
                }
            }
        }
        // Never serve a CRL older than one already published (a store behind: crl_behind).
        try watermark.check(serving: crl.number, issuer: id, readAfter: floor)
        watermark.raise([crl])
        cache.write { c in if c.usable, c.generation == generation, (c.crls[id]?.number ?? 0) <= crl.number { c.crls[id] = crl } }
        return crl
    }
}
