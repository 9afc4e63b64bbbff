import Foundation
import Synchronization
import VouchCore

/// The store's read connections, beside its one writing connection. In WAL mode a read
/// transaction sees the last commit and neither waits for the writer nor holds it up, so reads
/// (a pull round reads the host, its trust and its last verified log before it decides) no
/// longer queue behind a group commit's fsync on the writer's lock. On a fleet of thousands of
/// hosts that queue was the broker's largest lock: 32 re-attestation workers and the HTTP pool
/// spinning and sleeping on one mutex.
///
/// Each `with` runs in its own read transaction, so a read of several queries (a revocation plan)
/// sees one snapshot, as it did when reads took the writer's lock. A read begun after a write
/// returned sees that write: `write` returns only once the commit is in the WAL.
/// Connections are opened on demand up to `limit`, read only (`PRAGMA query_only`), and kept;
/// a caller beyond the limit waits for one to come back.
final class SQLiteReaders: Sendable {
    private let path: String
    private let idle = Mutex<[SQLiteDatabase]>([])
    private let slots: DispatchSemaphore

    /// Read connections kept at most: enough for the re-attestation workers' short reads to rarely
    /// wait, few enough that each one's page cache stays small.
    static let defaultLimit = 8

    init(path: String, limit: Int = SQLiteReaders.defaultLimit) {
        self.path = path
        slots = DispatchSemaphore(value: max(1, limit))
    }

    func with<T>(_ body: (SQLiteDatabase) throws -> T) throws -> T {
        slots.wait()
        defer { slots.signal() }
        let db = try idle.withLock { $0.popLast() } ?? SQLiteDatabase(path: path, readOnly: true)
        // A connection left inside a transaction (a failed COMMIT or ROLLBACK) is closed, not reused.
        defer { if !db.inTransaction { idle.withLock { $0.append(db) } } }
        return try db.readTransaction { try body(db) }
    }
}
