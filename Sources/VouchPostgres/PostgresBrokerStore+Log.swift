import Foundation
import VouchCore
import VouchModel

// The transparency log's tables on PostgreSQL (as SQLiteBrokerStore+Log.swift): the outbox
// decisions write in their own transaction, the sequenced entries, the stored subtree hashes and
// the published checkpoints. Every write goes through the writer's lock, so two replicas can
// never append at the same size nor publish two checkpoints of one size.

extension PostgresBrokerStore {
    /// Writes `entry` to the outbox (inside the caller's transaction); no entry maker, no log.
    func enqueue(_ c: PGConnection, _ make: (any LogEntryMaker) throws -> LogOutboxEntry) throws {
        guard let logEntries else { return }
        let e = try make(logEntries)
        try c.run("INSERT INTO log_outbox (entry, certificate) VALUES ($1, $2)", [.bytes(e.entry), .textOrNull(e.certificate)])
    }

    public func enqueueLogEntry(_ entry: LogOutboxEntry) throws -> Int64 {
        try write { c in
            try c.query("INSERT INTO log_outbox (entry, certificate) VALUES ($1, $2) RETURNING id", [.bytes(entry.entry), .textOrNull(entry.certificate)]) {
                $0.int(0)
            }[0]
        }
    }

    public func pendingLogEntries(limit: Int) throws -> [PendingLogEntry] {
        try read { c in
            try c.query("SELECT id, entry, certificate FROM log_outbox ORDER BY id LIMIT $1", [.int(Int64(max(1, limit)))]) {
                PendingLogEntry(outboxID: $0.int(0), entry: LogOutboxEntry(entry: $0.bytes(1), certificate: $0.optionalText(2)))
            }
        }
    }

    static func logSize(_ c: PGConnection) throws -> UInt64 {
        UInt64(try c.query("SELECT COALESCE(MAX(idx) + 1, 0) FROM log_entries") { $0.int(0) }.first ?? 0)
    }

    public func logSize() throws -> UInt64 { try read { try Self.logSize($0) } }

    public func appendLog(size: UInt64, entries: [PendingLogEntry], hashes: [LogNodeHash]) throws {
        try write { c in
            guard try Self.logSize(c) == size else {
                throw VouchError(.conflict, "the log grew since it was read", context: ["expected": "\(size)"])
            }
            let first = try c.query("SELECT MIN(id) FROM log_outbox") { $0.optionalInt(0) }.first ?? nil
            guard entries.isEmpty || first == entries[0].outboxID,
                  zip(entries, entries.dropFirst()).allSatisfy({ $0.outboxID < $1.outboxID }) else {
                throw VouchError(.conflict, "the outbox changed since it was read")
            }
            let ids = "{" + entries.map { "\($0.outboxID)" }.joined(separator: ",") + "}"
            guard try c.run("DELETE FROM log_outbox WHERE id = ANY($1::bigint[])", [.text(ids)]) == entries.count else {
                throw VouchError(.conflict, "an outbox row was sequenced twice")
            }
            try c.runBatch("INSERT INTO log_entries (idx, entry, certificate, outbox_id) VALUES ($1,$2,$3,$4)", entries.enumerated().map { i, p in
                [.int(Int64(size) + Int64(i)), .bytes(p.entry.entry), .textOrNull(p.entry.certificate), .int(p.outboxID)]
            })
            try c.runBatch("INSERT INTO log_hashes (level, idx, hash) VALUES ($1,$2,$3)", hashes.map { h in
                [.int(Int64(h.level)), .int(Int64(h.index)), .bytes(h.hash)]
            })
        }
    }

    public func logHashes(_ nodes: [(level: Int, index: UInt64)]) throws -> [[UInt8]?] {
        try read { c in
            try nodes.map { n in
                try c.query("SELECT hash FROM log_hashes WHERE level = $1 AND idx = $2", [.int(Int64(n.level)), .int(Int64(n.index))]) { $0.bytes(0) }.first
            }
        }
    }

    public func logHashRange(level: Int, from index: UInt64, count: Int) throws -> [[UInt8]] {
        try read { c in
            try c.query("SELECT hash FROM log_hashes WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
                        [.int(Int64(level)), .int(Int64(index)), .int(Int64(index) + Int64(count))]) { $0.bytes(0) }
        }
    }

    public func logEntries(from index: UInt64, count: Int) throws -> [[UInt8]] {
        try read { c in
            try c.query("SELECT entry FROM log_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx", [.int(Int64(index)), .int(Int64(index) + Int64(count))]) {
                $0.bytes(0)
            }
        }
    }

    public func logIndex(certificate: String) throws -> UInt64? {
        try read { c in
            try c.query("SELECT idx FROM log_entries WHERE certificate = $1 ORDER BY idx LIMIT 1", [.text(certificate)]) { UInt64($0.int(0)) }.first
        }
    }

    public func pendingLogEntry(key: String) throws -> Int64? {
        try read { c in try c.query("SELECT id FROM log_outbox WHERE certificate = $1 ORDER BY id LIMIT 1", [.text(key)]) { $0.int(0) }.first }
    }

    public func logIndex(outboxID: Int64) throws -> UInt64? {
        try read { c in try c.query("SELECT idx FROM log_entries WHERE outbox_id = $1", [.int(outboxID)]) { UInt64($0.int(0)) }.first }
    }

    public func latestCheckpoint() throws -> PublishedCheckpoint? {
        try read { c in try c.query("SELECT \(StoredRecords.checkpointColumns) FROM log_checkpoints ORDER BY size DESC LIMIT 1", [], StoredRecords.checkpoint).first }
    }

    public func checkpoint(size: UInt64) throws -> PublishedCheckpoint? {
        try read { c in try c.query("SELECT \(StoredRecords.checkpointColumns) FROM log_checkpoints WHERE size = $1", [.int(Int64(size))], StoredRecords.checkpoint).first }
    }

    public func publishCheckpoint(_ cp: PublishedCheckpoint) throws {
        try write { c in
            let latest = try c.query("SELECT size, root FROM log_checkpoints ORDER BY size DESC LIMIT 1") { (UInt64($0.int(0)), $0.bytes(1)) }.first
            if let latest, latest.0 > cp.size || (latest.0 == cp.size && latest.1 != cp.root) {
                throw VouchError(.conflict, "a larger or different checkpoint is already published", context: ["size": "\(latest.0)"])
            }
            if latest?.0 == cp.size { return }
            try c.run("INSERT INTO log_checkpoints (size, root, note, cosignatures, published_at) VALUES ($1,$2,$3,$4,$5)",
                      [.int(Int64(cp.size)), .bytes(cp.root), .text(cp.note), .text(cp.cosignatures.joined()), .date(cp.publishedAt)])
        }
    }

    public func addCosignature(size: UInt64, line: String) throws {
        try write { c in
            guard let stored = try c.query("SELECT cosignatures FROM log_checkpoints WHERE size = $1", [.int(Int64(size))], { $0.text(0) }).first else {
                throw VouchError(.notFound, "no checkpoint of this size was published", context: ["size": "\(size)"])
            }
            guard !stored.split(separator: "\n").contains(where: { $0 + "\n" == line }) else { return }
            try c.run("UPDATE log_checkpoints SET cosignatures = $1 WHERE size = $2", [.text(stored + line), .int(Int64(size))])
        }
    }
}
