import Foundation
import VouchCore

// A store several brokers share (vouchd replicas on one PostgreSQL database): what the other
// replicas changed, and the leases that give each singleton job exactly one writer.

/// Where a shared store stands: the newest event's id (every issuance, revocation, block and
/// refusal writes one in its transaction) and the sum of every issuer's CRL number (each
/// revocation and each CRL re-signing raises it). Both only grow.
public struct StoreRevision: Sendable, Equatable {
    public var events: Int64
    public var crls: Int64
    public init(events: Int64, crls: Int64) { self.events = events; self.crls = crls }
}

/// The jobs only one replica may run at a time.
public enum LeaseJob: String, Sendable, CaseIterable {
    /// Moving the log outbox into the log and signing checkpoints.
    case logSequencer = "log-sequencer"
    /// Delivering the event outbox to webhook subscribers (twice would deliver twice).
    case webhooks
}

/// A replica's hold on a job until `expiresAt`. `epoch` grows each time the job changes hands;
/// a store fenced by the lease (`SharedStore.fenced`) refuses every write once the job's stored
/// epoch or holder differs, so a replica that paused past its lease cannot write over its successor.
public struct Lease: Sendable, Equatable {
    public let job: LeaseJob
    public let holder: String
    public let epoch: Int64
    public let expiresAt: Date
    public init(job: LeaseJob, holder: String, epoch: Int64, expiresAt: Date) {
        self.job = job; self.holder = holder; self.epoch = epoch; self.expiresAt = expiresAt
    }
}

public protocol SharedStore: Sendable {
    /// Where the store stands now.
    func revision() throws -> StoreRevision
    /// Waits up to `timeout` for a sign that the store changed since `known` (a notification from
    /// the database: only a hint) and returns the revision then, which the caller compares.
    func waitForChange(after known: StoreRevision, timeout: TimeInterval) throws -> StoreRevision
    /// Takes the job's lease for `holder` until `now + ttl` if it is free or expired (a new epoch),
    /// or renews it if `holder` has it (same epoch); nil while another holder's lease runs.
    func acquireLease(_ job: LeaseJob, holder: String, ttl: TimeInterval, now: Date) throws -> Lease?
    /// Gives the lease up (if still held), so another replica takes the job at once.
    func releaseLease(_ lease: Lease) throws
    /// Claims for `holder` the rounds among `rounds` that are still due at `now` in the store (every
    /// replica ticks every host; the first to claim a round runs it): each claimed round's stored
    /// due time becomes its `next` — when it is due again should its claimant never report back, so
    /// a dead replica's hosts are taken over by the others one `next` later. Rounds another replica
    /// is claiming or has claimed are skipped (`FOR UPDATE SKIP LOCKED`) and come back with their
    /// stored due time.
    func claimRounds(_ rounds: [RoundClaim], holder: String, now: Date) throws -> RoundClaims
    /// Claims one round for `holder` now, whatever its stored due time (a hinted round: the host
    /// asked to be pulled at once); its stored due time becomes `round.next`. False when another
    /// replica is claiming it at this instant (its row is locked: that replica pulls now).
    func claimRoundNow(_ round: RoundClaim, holder: String, now: Date) throws -> Bool
    /// After a claimed round: when the host is due next (only while `holder` still has the claim).
    func rescheduleRound(hostID: String, holder: String, due: Date) throws
    /// What must be the same on every replica (fingerprints of the broker CA, the log key, the
    /// replica secret, …): the first replica's are recorded; a replica whose differ is refused
    /// (`config`), naming what differs — it was started on a data directory of its own rather
    /// than a copy of the others'.
    func agreeOnIdentity(_ facts: [String: String]) throws
    /// The same store, every write of which first checks (in its transaction) that `lease` still
    /// holds the job: `lease_lost` otherwise, and nothing is written.
    func fenced(by lease: Lease) -> any BrokerStore & LogStore
}

/// A round a replica wants to run now, and when it is due again if the replica never reports back.
public struct RoundClaim: Sendable, Equatable {
    public var hostID: String
    public var next: Date
    public init(hostID: String, next: Date) { self.hostID = hostID; self.next = next }
}

/// What a claim got: the rounds this replica runs, and the stored due time of each other one.
public struct RoundClaims: Sendable, Equatable {
    public var won: Set<String>
    public var elsewhere: [String: Date]
    public init(won: Set<String>, elsewhere: [String: Date]) { self.won = won; self.elsewhere = elsewhere }
}

extension ErrorCode {
    /// A write fenced by a lease found the job held by another replica (or a later epoch).
    public static let leaseLost = ErrorCode("lease_lost", status: 503)
}
