import Foundation
import Synchronization
import VouchCore

/// Group commit: writers that arrive while a group is being committed are committed together in
/// the next one. Each writer queues its work; the first to find no leader leads: it takes the
/// connection, runs every queued piece of work — each in its own savepoint, so one that throws is
/// rolled back alone — and commits them in one transaction (one fsync). The others sleep on their
/// ticket until their group committed, then find their result waiting. A leader whose own work
/// is done hands leadership to the oldest writer still queued, so no caller leads for ever.
/// A writer returns only after the commit that contains its work, so durability is unchanged:
/// acknowledged means on disk.
///
/// Followers sleep on a semaphore rather than on the connection's mutex: 32 re-attestation
/// workers queueing on the mutex spent a twentieth of the broker's time spinning in it.
final class GroupCommit: Sendable {
    /// One writer's work and, once its group committed (or failed), its result.
    final class Ticket: @unchecked Sendable {
        /// Dropped by the leader before the writer wakes: a writer's work may capture a closure the
        /// caller lent without escaping it (`withoutActuallyEscaping`), which must be released
        /// before the writer returns.
        var work: ((SQLiteDatabase) throws -> Any)?
        /// Written by the leader under the connection lock before `wake` is signalled; read by the
        /// writer after it woke.
        var result: Result<Any, Error>?
        /// Signalled once: the result is in, or (result still nil) this writer now leads.
        let wake = DispatchSemaphore(value: 0)
        init(_ work: @escaping (SQLiteDatabase) throws -> Any) { self.work = work }
    }

    private struct Queue {
        var tickets: [Ticket] = []
        var leading = false
    }
    private let pending = Mutex(Queue())

    /// Runs `work` in a group transaction on `db`, which `connection` serializes.
    func write<T>(connection: borrowing Mutex<Void>, db: SQLiteDatabase, _ work: @escaping (SQLiteDatabase) throws -> T) throws -> T {
        let ticket = Ticket { try work($0) }
        let leads = pending.withLock { q -> Bool in
            q.tickets.append(ticket)
            if q.leading { return false }
            q.leading = true
            return true
        }
        if !leads {
            ticket.wake.wait()
        }
        if ticket.result == nil {
            // Leading: commit everything queued (this ticket among it), then pass the lead on.
            let group = pending.withLock { q in defer { q.tickets.removeAll() }; return q.tickets }
            connection.withLock { _ in
                Self.commit(group, db)
                for t in group { t.work = nil }
            }
            let next = pending.withLock { q -> Ticket? in
                guard let next = q.tickets.first else { q.leading = false; return nil }
                return next
            }
            for t in group where t !== ticket { t.wake.signal() }
            next?.wake.signal()   // its result is nil: it leads the next group
        }
        return try ticket.result!.get() as! T   // the ticket wraps `work`, whose result is a T
    }

    private static func commit(_ group: [Ticket], _ db: SQLiteDatabase) {
        do {
            try db.transaction {
                for t in group {
                    // Some failures (disk full, I/O) make SQLite roll the whole transaction back; the
                    // rest of the group must then not run outside it.
                    guard db.inTransaction else {
                        t.result = .failure(VouchError(.database, "the group transaction was rolled back by an earlier failure"))
                        continue
                    }
                    guard let work = t.work else {   // never: work is dropped only after its group
                        t.result = .failure(VouchError(.database, "the write was already committed or dropped"))
                        continue
                    }
                    t.result = Result { try db.transaction { try work(db) } }
                }
            }
        } catch {
            for t in group { t.result = .failure(error) }   // nothing of the group was committed
        }
    }
}
