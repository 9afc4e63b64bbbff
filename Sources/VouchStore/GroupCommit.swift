import Synchronization
import VouchCore

/// Group commit: writers that arrive while another holds the connection are committed together.
/// Each writer queues its work and waits for the connection; whoever gets it first runs every
/// queued piece of work — each in its own savepoint, so one that throws is rolled back alone —
/// and commits them in one transaction (one fsync). The others then find their result waiting.
/// A writer returns only after the commit that contains its work, so durability is unchanged:
/// acknowledged means on disk.
final class GroupCommit: Sendable {
    /// One writer's work and, once its group committed (or failed), its result.
    final class Ticket: @unchecked Sendable {
        let work: (SQLiteDatabase) throws -> Any
        var result: Result<Any, Error>?   // written and read under the connection lock only
        init(_ work: @escaping (SQLiteDatabase) throws -> Any) { self.work = work }
    }

    private let pending = Mutex<[Ticket]>([])

    /// Runs `work` in a group transaction on `db`, which `connection` serializes.
    func write<T>(connection: borrowing Mutex<Void>, db: SQLiteDatabase, _ work: @escaping (SQLiteDatabase) throws -> T) throws -> T {
        let ticket = Ticket { try work($0) }
        pending.withLock { $0.append(ticket) }
        return try connection.withLock { _ in
            if ticket.result == nil { Self.commit(pending.withLock { q in defer { q.removeAll() }; return q }, db) }
            return try ticket.result!.get() as! T   // the ticket wraps `work`, whose result is a T
        }
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
                    t.result = Result { try db.transaction { try t.work(db) } }
                }
            }
        } catch {
            for t in group { t.result = .failure(error) }   // nothing of the group was committed
        }
    }
}
