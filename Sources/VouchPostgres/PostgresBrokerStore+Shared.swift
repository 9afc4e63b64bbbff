import Foundation
import Synchronization
import VouchCore
import VouchModel

// What replicas sharing the database need of it: the revision other replicas moved (with
// LISTEN/NOTIFY as the hint to look), and leases with fencing epochs for singleton jobs.

extension PostgresBrokerStore {
    /// The channel every transaction that writes an event or a CRL notifies (at its commit).
    static let changeChannel = "vouch_changes"

    /// Inside a write: wakes the replicas waiting in `waitForChange` once this transaction commits
    /// (PostgreSQL folds a transaction's identical notifications into one).
    static func notifyChange(_ c: PGConnection) throws { try c.exec("NOTIFY \(changeChannel)") }

    public func revision() throws -> StoreRevision {
        try read { c in try Self.revision(c) }
    }

    static func revision(_ c: PGConnection) throws -> StoreRevision {
        try c.query("SELECT (SELECT COALESCE(MAX(id), 0) FROM events), (SELECT COALESCE(SUM(number), 0)::bigint FROM crls)") {
            StoreRevision(events: $0.int(0), crls: $0.int(1))
        }[0]
    }

    /// Returns at once when the revision already moved past `known`; otherwise waits on the LISTEN
    /// connection for at most `timeout`, then reads the revision. Both readings run on that
    /// connection — the follower never waits behind the read pool — which is set up again
    /// (LISTEN first, then the reading) after it was lost. A notification is only a hint: a lost
    /// LISTEN costs at most `timeout`, never a change.
    public func waitForChange(after known: StoreRevision, timeout: TimeInterval) throws -> StoreRevision {
        try listener.withConnection { c in
            let now = try Self.revision(c)
            if now != known { return now }
            _ = try c.notifications(timeout: timeout)
            return try Self.revision(c)
        }
    }

    public func acquireLease(_ job: LeaseJob, holder: String, ttl: TimeInterval, now: Date) throws -> Lease? {
        try writer.write { c in
            let until = now.addingTimeInterval(ttl)
            let current = try c.query("SELECT holder, epoch, expires_at FROM vouch_leases WHERE job = $1", [.text(job.rawValue)]) {
                (holder: $0.text(0), epoch: $0.int(1), expires: $0.date(2))
            }.first
            if let current, current.holder != holder, current.expires > now { return nil }
            let epoch = current.map { $0.holder == holder && $0.expires > now ? $0.epoch : $0.epoch + 1 } ?? 1
            try c.run("""
            INSERT INTO vouch_leases (job, holder, epoch, expires_at) VALUES ($1,$2,$3,$4)
            ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, expires_at = excluded.expires_at
            """, [.text(job.rawValue), .text(holder), .int(epoch), .date(until)])
            return Lease(job: job, holder: holder, epoch: epoch, expiresAt: until)
        }
    }

    public func releaseLease(_ lease: Lease) throws {
        try writer.write { c in
            try c.run("UPDATE vouch_leases SET expires_at = 0 WHERE job = $1 AND holder = $2 AND epoch = $3",
                      [.text(lease.job.rawValue), .text(lease.holder), .int(lease.epoch)])
        }
    }

    /// Claims run on a pooled connection, each statement on its own (outside the writer's lock:
    /// row locks and `SKIP LOCKED` keep two replicas from claiming one round). A claim run again
    /// after its answer was lost (the pool's retry) finds its own claim and counts it won.
    public func claimRounds(_ rounds: [RoundClaim], holder: String, now: Date) throws -> RoundClaims {
        guard !rounds.isEmpty else { return RoundClaims(won: [], elsewhere: [:]) }
        let ids = Self.array(rounds.map(\.hostID))
        return try read { c in
            try c.run("INSERT INTO host_rounds (host_id, next_due) SELECT unnest($1::text[]), 0 ON CONFLICT (host_id) DO NOTHING", [.text(ids)])
            let won = Set(try c.query("""
            UPDATE host_rounds r SET next_due = d.next, claimed_by = $3 FROM (
              SELECT h.host_id, n.next FROM host_rounds h JOIN unnest($1::text[], $2::float8[]) AS n(host_id, next) ON n.host_id = h.host_id
              WHERE h.next_due <= $4 OR (h.claimed_by = $3 AND h.next_due = n.next) ORDER BY h.host_id FOR UPDATE OF h SKIP LOCKED) d
            WHERE r.host_id = d.host_id RETURNING r.host_id
            """, [.text(ids), .text(Self.array(rounds.map { "\($0.next.timeIntervalSince1970)" })), .text(holder), .date(now)]) { $0.text(0) })
            let lost = rounds.map(\.hostID).filter { !won.contains($0) }
            var elsewhere: [String: Date] = [:]
            if !lost.isEmpty {
                for (id, due) in try c.query("SELECT host_id, next_due FROM host_rounds WHERE host_id = ANY($1::text[])", [.text(Self.array(lost))], {
                    ($0.text(0), $0.date(1))
                }) { elsewhere[id] = due }
            }
            return RoundClaims(won: won, elsewhere: elsewhere)
        }
    }

    public func claimRoundNow(_ round: RoundClaim, holder: String, now: Date) throws -> Bool {
        try read { c in
            try c.run("INSERT INTO host_rounds (host_id, next_due) VALUES ($1, 0) ON CONFLICT (host_id) DO NOTHING", [.text(round.hostID)])
            return try !c.query("""
            UPDATE host_rounds r SET next_due = $2, claimed_by = $3 FROM (
              SELECT host_id FROM host_rounds WHERE host_id = $1 FOR UPDATE SKIP LOCKED) d
            WHERE r.host_id = d.host_id RETURNING r.host_id
            """, [.text(round.hostID), .date(round.next), .text(holder)]) { $0.text(0) }.isEmpty
        }
    }

    public func rescheduleRound(hostID: String, holder: String, due: Date) throws {
        _ = try read { c in
            try c.run("UPDATE host_rounds SET next_due = $1 WHERE host_id = $2 AND claimed_by = $3", [.date(due), .text(hostID), .text(holder)])
        }
    }

    public func agreeOnIdentity(_ facts: [String: String]) throws {
        try writer.write { c in
            for (key, value) in facts.sorted(by: { $0.key < $1.key }) {
                try c.run("INSERT INTO vouch_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", [.text("identity." + key), .text(value)])
                let recorded = try c.query("SELECT value FROM vouch_meta WHERE key = $1", [.text("identity." + key)]) { $0.text(0) }.first
                guard recorded == value else {
                    throw VouchError(.config, "this replica's \(key) differs from the other replicas': start every replica on a copy of one data directory "
                                     + "(docs/operations.md#several-replicas-on-postgresql)", context: ["identity": key])
                }
            }
        }
    }

    /// A PostgreSQL array literal of `values`, each quoted (`"` and `\` escaped).
    static func array(_ values: [String]) -> String {
        "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }.joined(separator: ",") + "}"
    }

    public func fenced(by lease: Lease) -> any BrokerStore & LogStore {
        PostgresBrokerStore(sharing: self, fence: lease)
    }

    /// The fence: the job's stored holder and epoch must still be the lease's. An expired lease
    /// nobody took since still fences correctly (no other writer exists); one another replica took
    /// has a new epoch.
    static func checkFence(_ c: PGConnection, _ lease: Lease) throws {
        let stored = try c.query("SELECT holder, epoch FROM vouch_leases WHERE job = $1", [.text(lease.job.rawValue)]) { ($0.text(0), $0.int(1)) }.first
        guard let stored, stored.0 == lease.holder, stored.1 == lease.epoch else {
            throw VouchError(.leaseLost, "the \(lease.job.rawValue) job is leased to another replica now", context: ["job": lease.job.rawValue, "epoch": "\(lease.epoch)"])
        }
    }
}

/// The connection that LISTENs for `channel`, kept open between waits and opened again after it
/// was lost (a failover, a server restart, an operator's pg_terminate_backend).
final class PGListener: Sendable {
    let url: String
    let channel: String
    private let connection = Mutex<PGConnection?>(nil)

    init(url: String, channel: String) { self.url = url; self.channel = channel }

    /// Runs `body` on the listening connection (one caller at a time); a failure drops the
    /// connection, so the next call starts a new one.
    func withConnection<T>(_ body: (PGConnection) throws -> T) throws -> T {
        try connection.withLock { conn in
            do {
                if conn == nil || conn?.isHealthy == false {
                    let c = try PGConnection(url: url, applicationName: "vouchd-listen")
                    try c.exec("LISTEN \(channel)")
                    conn = c
                }
                return try body(conn!)
            } catch {
                conn = nil
                throw error
            }
        }
    }
}
