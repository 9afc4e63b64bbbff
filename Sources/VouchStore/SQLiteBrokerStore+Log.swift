import Foundation
import VouchCore
import VouchModel

// The transparency log's tables (migration 7): the outbox decisions write in their own
// transaction, the sequenced entries, the stored subtree hashes (tiles read them as they are),
// and the published checkpoints with the witness cosignatures collected for each.

extension SQLiteBrokerStore {
    static let logMigration = """
    CREATE TABLE log_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, entry BLOB NOT NULL, certificate TEXT);
    CREATE TABLE log_entries (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL, certificate TEXT, outbox_id INTEGER NOT NULL UNIQUE);
    CREATE INDEX log_entries_certificate ON log_entries(certificate) WHERE certificate IS NOT NULL;
    CREATE TABLE log_hashes (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID;
    CREATE TABLE log_checkpoints (size INTEGER PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL,
      cosignatures TEXT NOT NULL DEFAULT '', published_at REAL NOT NULL);
    """

    /// Writes `entry` to the outbox (inside the caller's transaction). A store without an entry
    /// maker (tests of other concerns) keeps no log.
    func enqueue(_ db: SQLiteDatabase, _ make: (any LogEntryMaker) throws -> LogOutboxEntry) throws {
        guard let logEntries else { return }
        let e = try make(logEntries)
        try db.prepare("INSERT INTO log_outbox (entry, certificate) VALUES (?, ?)").run([.blob(e.entry), e.certificate.map { .text($0) } ?? .null])
    }

    public func enqueueLogEntry(_ entry: LogOutboxEntry) throws -> Int64 {
        try write { db in
            try db.prepare("INSERT INTO log_outbox (entry, certificate) VALUES (?, ?)").run([.blob(entry.entry), entry.certificate.map { .text($0) } ?? .null])
            return db.lastInsertID
        }
    }

    public func pendingLogEntries(limit: Int) throws -> [PendingLogEntry] {
        try with { db in
            try db.prepare("SELECT id, entry, certificate FROM log_outbox ORDER BY id LIMIT ?").query([.int(Int64(max(1, limit)))]) {
                PendingLogEntry(outboxID: $0.int(0), entry: LogOutboxEntry(entry: $0.blob(1), certificate: $0.optionalText(2)))
            }
        }
    }

    static func logSize(_ db: SQLiteDatabase) throws -> UInt64 {
        UInt64(try db.prepare("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries").query([]) { $0.int(0) }.first ?? 0)
    }

    public func logSize() throws -> UInt64 { try with { try Self.logSize($0) } }

    public func appendLog(size: UInt64, entries: [PendingLogEntry], hashes: [LogNodeHash]) throws {
        try write { db in
            try db.transaction {
                guard try Self.logSize(db) == size else {
                    throw VouchError(.conflict, "the log grew since it was read", context: ["expected": "\(size)"])
                }
                let first = try db.prepare("SELECT MIN(id) FROM log_outbox").query([]) { $0.optionalInt(0) }.first ?? nil
                guard entries.isEmpty || first == entries[0].outboxID,
                      zip(entries, entries.dropFirst()).allSatisfy({ $0.outboxID < $1.outboxID }) else {
                    throw VouchError(.conflict, "the outbox changed since it was read")
                }
                let insert = try db.prepare("INSERT INTO log_entries (idx, entry, certificate, outbox_id) VALUES (?,?,?,?)")
                let remove = try db.prepare("DELETE FROM log_outbox WHERE id = ?")
                for (i, p) in entries.enumerated() {
                    try remove.run([.int(p.outboxID)])
                    guard db.changes == 1 else { throw VouchError(.conflict, "an outbox row was sequenced twice") }
                    try insert.run([.int(Int64(size) + Int64(i)), .blob(p.entry.entry), p.entry.certificate.map { .text($0) } ?? .null, .int(p.outboxID)])
                }
                let node = try db.prepare("INSERT INTO log_hashes (level, idx, hash) VALUES (?,?,?)")
                for h in hashes { try node.run([.int(Int64(h.level)), .int(Int64(h.index)), .blob(h.hash)]) }
            }
        }
    }

    public func logHashes(_ nodes: [(level: Int, index: UInt64)]) throws -> [[UInt8]?] {
        try with { db in
            let q = try db.prepare("SELECT hash FROM log_hashes WHERE level = ? AND idx = ?")
            return try nodes.map { n in try q.query([.int(Int64(n.level)), .int(Int64(n.index))]) { $0.blob(0) }.first }
        }
    }

    public func logHashRange(level: Int, from index: UInt64, count: Int) throws -> [[UInt8]] {
        try with { db in
            try db.prepare("SELECT hash FROM log_hashes WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx")
                .query([.int(Int64(level)), .int(Int64(index)), .int(Int64(index) + Int64(count))]) { $0.blob(0) }
        }
    }

    public func logEntries(from index: UInt64, count: Int) throws -> [[UInt8]] {
        try with { db in
            try db.prepare("SELECT entry FROM log_entries WHERE idx >= ? AND idx < ? ORDER BY idx")
                .query([.int(Int64(index)), .int(Int64(index) + Int64(count))]) { $0.blob(0) }
        }
    }

    public func logIndex(certificate: String) throws -> UInt64? {
        try with { db in
            try db.prepare("SELECT idx FROM log_entries WHERE certificate = ? ORDER BY idx LIMIT 1").query([.text(certificate)]) { UInt64($0.int(0)) }.first
        }
    }

    public func pendingLogEntry(key: String) throws -> Int64? {
        try with { db in try db.prepare("SELECT id FROM log_outbox WHERE certificate = ? ORDER BY id LIMIT 1").query([.text(key)]) { $0.int(0) }.first }
    }

    public func logIndex(outboxID: Int64) throws -> UInt64? {
        try with { db in try db.prepare("SELECT idx FROM log_entries WHERE outbox_id = ?").query([.int(outboxID)]) { UInt64($0.int(0)) }.first }
    }

    public func latestCheckpoint() throws -> PublishedCheckpoint? {
        try with { db in try db.prepare("SELECT \(StoredRecords.checkpointColumns) FROM log_checkpoints ORDER BY size DESC LIMIT 1").query([], StoredRecords.checkpoint).first }
    }

    public func checkpoint(size: UInt64) throws -> PublishedCheckpoint? {
        try with { db in try db.prepare("SELECT \(StoredRecords.checkpointColumns) FROM log_checkpoints WHERE size = ?").query([.int(Int64(size))], StoredRecords.checkpoint).first }
    }

    public func publishCheckpoint(_ c: PublishedCheckpoint) throws {
        try write { db in
            try db.transaction {
                let latest = try db.prepare("SELECT size, root FROM log_checkpoints ORDER BY size DESC LIMIT 1").query([]) { (UInt64($0.int(0)), $0.blob(1)) }.first
                if let latest, latest.0 > c.size || (latest.0 == c.size && latest.1 != c.root) {
                    throw VouchError(.conflict, "a larger or different checkpoint is already published", context: ["size": "\(latest.0)"])
                }
                if latest?.0 == c.size { return }
                try db.prepare("INSERT INTO log_checkpoints (size, root, note, cosignatures, published_at) VALUES (?,?,?,?,?)")
                    .run([.int(Int64(c.size)), .blob(c.root), .text(c.note), .text(c.cosignatures.joined()), .real(c.publishedAt.timeIntervalSince1970)])
            }
        }
    }

    public func addCosignature(size: UInt64, line: String) throws {
        try write { db in
            try db.transaction {
                guard let stored = try db.prepare("SELECT cosignatures FROM log_checkpoints WHERE size = ?").query([.int(Int64(size))], { $0.text(0) }).first else {
                    throw VouchError(.notFound, "no checkpoint of this size was published", context: ["size": "\(size)"])
                }
                guard !stored.split(separator: "\n").contains(where: { $0 + "\n" == line }) else { return }
                try db.prepare("UPDATE log_checkpoints SET cosignatures = ? WHERE size = ?").run([.text(stored + line), .int(Int64(size))])
            }
        }
    }
}
