import Foundation
import VouchCore

// The broker's transparency log, as the store keeps it (docs/receipts.md, "The broker's log").
// Decisions are written to a log outbox in the transaction that records them; one writer (the
// broker's sequencer) later moves outbox rows, in order, into the log with consecutive indices,
// together with the Merkle subtree hashes they complete, and publishes signed checkpoints.

/// One entry waiting in, or taken from, the log outbox: the entry bytes (a `vouch.dev/log-entry/v1`
/// text) and, for an issuance, the issued certificate's DER SHA-256 (lowercase hex) for lookups.
public struct LogOutboxEntry: Sendable, Equatable {
    public var entry: [UInt8]
    /// The entry's lookup key: an issuance's certificate DER SHA-256 (lowercase hex), or
    /// `receipt:` and a receipt's Statement SHA-256 (one entry per receipt); nil for others.
    public var certificate: String?
    public init(entry: [UInt8], certificate: String? = nil) { self.entry = entry; self.certificate = certificate }
}

/// Builds the entry the store writes for each kind of decision, inside the decision's transaction
/// (it must be cheap and must not block: no signing, no I/O). Thrown errors fail the transaction.
public protocol LogEntryMaker: Sendable {
    /// A trusted enrollment and the certificate issued for it (`attestation.id` is set).
    func issuance(_ attestation: AttestationRecord, certificate: CertificateRecord) throws -> LogOutboxEntry
    /// Any other recorded decision (`record.id` is set).
    func verdict(_ record: AttestationRecord) throws -> LogOutboxEntry
    /// One certificate revoked (`revokedAt` and `revocationReason` set).
    func revocation(_ certificate: CertificateRecord) throws -> LogOutboxEntry
}

/// A row of the outbox, by its position in it.
public struct PendingLogEntry: Sendable, Equatable {
    public var outboxID: Int64
    public var entry: LogOutboxEntry
    public init(outboxID: Int64, entry: LogOutboxEntry) { self.outboxID = outboxID; self.entry = entry }
}

/// The hash of a complete subtree: 2^`level` entries from `index` * 2^`level`.
public struct LogNodeHash: Sendable, Equatable {
    public var level: Int
    public var index: UInt64
    public var hash: [UInt8]
    public init(level: Int, index: UInt64, hash: [UInt8]) { self.level = level; self.index = index; self.hash = hash }
}

/// A checkpoint the broker signed and published: its tree size and root, the signed note (the log
/// key's signature only), and the cosignature lines witnesses added since, in the order received.
public struct PublishedCheckpoint: Sendable, Equatable {
    public var size: UInt64
    public var root: [UInt8]
    public var note: String
    public var cosignatures: [String]
    public var publishedAt: Date
    public init(size: UInt64, root: [UInt8], note: String, cosignatures: [String] = [], publishedAt: Date) {
        self.size = size; self.root = root; self.note = note; self.cosignatures = cosignatures; self.publishedAt = publishedAt
    }

    /// The note with every collected cosignature line appended (what `/checkpoint` serves).
    public var servedNote: String { note + cosignatures.joined() }
}

/// The log's durable state. Only the sequencer writes the log itself (`appendLog`,
/// `publishCheckpoint`); decisions reach the outbox through the store's own transactions.
public protocol LogStore: Sendable {
    /// Puts one entry in the outbox in a transaction of its own (receipts); returns its outbox id.
    func enqueueLogEntry(_ entry: LogOutboxEntry) throws -> Int64
    /// The oldest outbox rows, in order.
    func pendingLogEntries(limit: Int) throws -> [PendingLogEntry]
    /// The number of entries in the log.
    func logSize() throws -> UInt64
    /// In one transaction: appends `entries` at indices `size`, `size` + 1, ... with `hashes` (the
    /// subtree hashes they complete) and removes them from the outbox. Fails with `conflict`
    /// unless the log has exactly `size` entries and `entries` are the oldest outbox rows.
    func appendLog(size: UInt64, entries: [PendingLogEntry], hashes: [LogNodeHash]) throws
    /// Stored subtree hashes, in the order asked; nil where none is stored.
    func logHashes(_ nodes: [(level: Int, index: UInt64)]) throws -> [[UInt8]?]
    /// `count` consecutive stored hashes of one level from `index` (fewer if the log has fewer).
    func logHashRange(level: Int, from index: UInt64, count: Int) throws -> [[UInt8]]
    /// `count` consecutive entries from `index` (fewer if the log has fewer).
    func logEntries(from index: UInt64, count: Int) throws -> [[UInt8]]
    /// The index of the issuance entry of the certificate with this DER SHA-256 (lowercase hex).
    func logIndex(certificate: String) throws -> UInt64?
    /// The index an outbox row was given, once sequenced.
    func logIndex(outboxID: Int64) throws -> UInt64?
    /// The outbox row still waiting with this key (`LogOutboxEntry.certificate`), if any.
    func pendingLogEntry(key: String) throws -> Int64?
    /// The checkpoint published last (largest size, latest).
    func latestCheckpoint() throws -> PublishedCheckpoint?
    /// The published checkpoint of this size, if any.
    func checkpoint(size: UInt64) throws -> PublishedCheckpoint?
    /// Stores a newly signed checkpoint. Fails with `conflict` if a larger one is stored, or one of
    /// the same size with another root.
    func publishCheckpoint(_ checkpoint: PublishedCheckpoint) throws
    /// Appends a cosignature line to the stored checkpoint of `size` (unless it already carries it).
    func addCosignature(size: UInt64, line: String) throws
}
