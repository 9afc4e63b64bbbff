import Dispatch
import Foundation
import Synchronization
import VouchCore

/// Connections for reads: up to `size` at once, each used by one caller at a time. A connection
/// whose server went away (a restart, a failover) is dropped; a read that finds its pooled
/// connection dead runs once more on a fresh one (a read changes nothing, so running it again is safe).
final class PGPool: Sendable {
    let url: String
    private let idle = Mutex<[PGConnection]>([])
    private let slots: DispatchSemaphore

    init(url: String, size: Int) {
        self.url = url
        slots = DispatchSemaphore(value: max(1, size))
    }

    func with<T>(_ body: (PGConnection) throws -> T) throws -> T {
        slots.wait()
        defer { slots.signal() }
        var attempt = 0
        while true {
            let c = try idle.withLock { $0.popLast() } ?? PGConnection(url: url)
            do {
                let value = try body(c)
                giveBack(c)
                return value
            } catch let e as VouchError where e.isConnectionLoss && attempt == 0 {
                // The server went away: every idle connection is as dead as this one.
                drain()
                attempt += 1
            } catch {
                giveBack(c)
                throw error
            }
        }
    }

    private func giveBack(_ c: PGConnection) {
        guard c.isHealthy, c.isIdle else { return }
        idle.withLock { $0.append(c) }
    }

    /// Drops every idle connection (tests that restart the server; a failover).
    func drain() { idle.withLock { $0.removeAll() } }
}

/// The store's writes, one transaction at a time across every replica, with group commit inside
/// each replica.
///
/// Each write transaction takes one PostgreSQL advisory lock (`pg_advisory_xact_lock`) before
/// anything else and runs at READ COMMITTED, so every statement after the lock sees every write
/// committed before it: writes are serial, as on SQLite, and each check a store method makes
/// before it writes (a host's version, a revocation plan, the next CRL number, the log's size, a
/// lease's epoch) holds until its commit, whichever replica made it. Serial ids (events, log
/// outbox rows) are therefore given out in commit order: a reader that has seen id n has seen
/// every id below it.
///
/// Writers of one replica that arrive while another holds its writer connection are committed
/// together (each in its own savepoint, so one that throws is rolled back alone; one commit and
/// one WAL flush for the group). A writer returns only once its group committed.
///
/// A lost connection before COMMIT was sent runs the whole group again on a new connection
/// (nothing of it committed); a loss while COMMIT was in flight fails the group with
/// `database` and `outcome: unknown` (it may or may not have committed).
final class PGWriter: Sendable {
    /// One writer's work and, once its group committed (or failed), its result.
    final class Ticket: @unchecked Sendable {
        let work: (PGConnection) throws -> Any
        var result: Result<Any, Error>?   // written and read under the connection lock only
        init(_ work: @escaping (PGConnection) throws -> Any) { self.work = work }
    }

    /// The advisory lock every write transaction takes ("Vouch" in ASCII).
    static let lockKey: Int64 = 0x566F_7563_68
    /// Whole-group attempts after a lost connection or a serialization failure.
    static let attempts = 5

    let url: String
    private let pending = Mutex<[Ticket]>([])
    private let connection = Mutex<PGConnection?>(nil)

    init(url: String) { self.url = url }

    func write<T>(_ work: @escaping (PGConnection) throws -> T) throws -> T {
        let ticket = Ticket { try work($0) }
        pending.withLock { $0.append(ticket) }
        return try connection.withLock { conn in
            if ticket.result == nil { commit(pending.withLock { q in defer { q.removeAll() }; return q }, &conn) }
            return try ticket.result!.get() as! T   // the ticket wraps `work`, whose result is a T
        }
    }

    private struct Retry: Error { let cause: VouchError }

    private func commit(_ group: [Ticket], _ conn: inout PGConnection?) {
        var last: Error = VouchError(.database, "the write was not attempted")
        for attempt in 0..<Self.attempts {
            if attempt > 0 { usleep(UInt32.random(in: 1_000...20_000) * UInt32(attempt)) }
            group.forEach { $0.result = nil }
            var committing = false
            do {
                let c: PGConnection
                if let existing = conn, existing.isHealthy { c = existing } else { c = try PGConnection(url: url); conn = c }
                try c.exec("BEGIN")
                try c.run("SELECT pg_advisory_xact_lock($1::bigint)", [.int(Self.lockKey)])
                if group.count == 1 {
                    do { group[0].result = .success(try group[0].work(c)) } catch let e as VouchError where e.isConnectionLoss || e.isRetryableTransaction {
                        throw Retry(cause: e)
                    }
                } else {
                    for (i, t) in group.enumerated() {
                        try c.exec("SAVEPOINT w\(i)")
                        do {
                            t.result = .success(try t.work(c))
                            try c.exec("RELEASE w\(i)")
                        } catch let e as VouchError where e.isConnectionLoss || e.isRetryableTransaction {
                            throw Retry(cause: e)
                        } catch {
                            t.result = .failure(error)
                            try c.exec("ROLLBACK TO w\(i)")
                            try c.exec("RELEASE w\(i)")
                        }
                    }
                }
                committing = true
                _ = c.takeWarnings()
                try c.commit()
                // A commit a synchronous standby never confirmed (the wait was cancelled) is on the
                // primary only: a failover may still lose it. Not acknowledged as durable.
                if c.takeWarnings().contains(where: { $0.contains("synchronous replication") }) {
                    fail(group, VouchError(.database, "the commit was not confirmed by a synchronous standby: the outcome is unknown",
                                           context: ["outcome": "unknown"]))
                }
                return
            } catch let retry as Retry {
                last = retry.cause
                rollback(&conn, lost: retry.cause.isConnectionLoss)
            } catch let e as VouchError where e.isConnectionLoss && !committing {
                last = e
                conn = nil
            } catch let e as VouchError where e.isConnectionLoss {
                conn = nil
                fail(group, VouchError(.database, "the connection to PostgreSQL was lost while committing: the outcome is unknown",
                                       context: ["outcome": "unknown", "connection": "lost"]))
                return
            } catch {
                rollback(&conn, lost: false)
                fail(group, error)
                return
            }
        }
        fail(group, last)
    }

    private func rollback(_ conn: inout PGConnection?, lost: Bool) {
        if lost { conn = nil; return }
        do { try conn?.exec("ROLLBACK") } catch { conn = nil }
    }

    private func fail(_ group: [Ticket], _ error: Error) {
        for t in group { t.result = .failure(error) }
    }
}
