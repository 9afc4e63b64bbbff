import Foundation
import Synchronization
import VouchCore
import VouchCrypto
import VouchModel
import VouchRuntime
import VouchTLog

extension ErrorCode {
    /// The log in the database is behind, or not a continuation of, the last checkpoint this broker
    /// published (a restored old database): the broker signs no checkpoint and serves the last one.
    public static let logBehind = ErrorCode("log_behind", status: 503)
    /// A log query names sizes that are out of order (old after new).
    public static let logRangeInvalid = ErrorCode("log_range_invalid", status: 422)
}

/// The broker's transparency log (docs/receipts.md, "The broker's log"): one sequencer moves the
/// outbox into the log in order and signs a C2SP checkpoint with the log key whenever the tree
/// grew — never one smaller than, or inconsistent with, the last it published, which it keeps
/// both in the database and in a file (`checkpointFile`) so that a restored old database cannot
/// fork the log. Also answers proofs, collects witness cosignatures, and logs receipts.
public final class TransparencyLog: Sendable {
    public let origin: String
    let signer: NoteSigner
    let store: any LogStore
    let clock: any Clock
    let checkpointFile: String
    let witnesses: [NoteVerifierKey]
    /// Replicas on a shared store: only the holder of the sequencer's lease sequences and signs
    /// (through the store fenced by it); the others follow (`follow`). nil: this broker alone.
    let gate: LeaseGate?
    let hasher = MerkleHasher(sha256: Crypto.sha256)
    /// The checkpoint in the file when the broker started, or as it last wrote it.
    private let fileCheckpoint: Mutex<PublishedCheckpoint?>
    /// Why the last round signed nothing, while that lasts (`log_behind`).
    private let problem = Mutex<VouchError?>(nil)
    /// One sequencer: rounds never overlap.
    private let sequencer = Mutex(())
    /// Receipt submissions: the "already logged?" check and the enqueue happen together.
    private let receipts = Mutex(())


    /// Reads the last published checkpoint from `checkpointFile`; a file that is not a checkpoint
    /// of this log signed by `signer` is refused (`config`). The file may be absent only on a log
    /// that never published: when `keyExisted` (the log key was made by an earlier start: that
    /// start published at least the empty tree) or the database holds a checkpoint, a missing file
    /// is refused (`config`) — deleting it must not let a restored old database sign a fork.
    public init(signer: NoteSigner, store: any LogStore, clock: any Clock, checkpointFile: String, witnesses: [NoteVerifierKey] = [],
                keyExisted: Bool = false, gate: LeaseGate? = nil) throws {
        self.origin = signer.name
        self.gate = gate
        self.signer = signer
        self.store = store
        self.clock = clock
        self.checkpointFile = checkpointFile
        self.witnesses = witnesses
        var saved: PublishedCheckpoint?
        if Files.exists(checkpointFile) {
            do {
                saved = try Self.checkpoint(note: try Files.readString(checkpointFile), key: signer.verifierKey, at: clock.now())
            } catch {
                throw VouchError(.config, "the last published checkpoint file is not a checkpoint of this log signed by its key",
                                 context: ["path": checkpointFile])
            }
        }
        if saved == nil, try keyExisted || store.latestCheckpoint() != nil {
            throw VouchError(.config, "the last published checkpoint file is missing while the log key or database show this log published; "
                             + "restore the file from a backup (or, if it is truly lost, start a new log: move log.key away, then publish the new trust document)",
                             context: ["path": checkpointFile])
        }
        fileCheckpoint = Mutex(saved)
    }

    /// The verifier key (vkey) relying parties check checkpoints with.
    public var verifierKey: NoteVerifierKey { signer.verifierKey }

    /// Why no checkpoint is being signed, if so (for /readyz).
    public var currentProblem: VouchError? { problem.withLock { $0 } }

    static func checkpoint(note: String, key: NoteVerifierKey, at: Date) throws -> PublishedCheckpoint {
        let verified = try UnverifiedNote(note).verify([key])
        let body = try CheckpointBody(text: verified.text)
        guard body.origin == key.name else { throw VouchError(.invalidValue, "the checkpoint is of another log") }
        return PublishedCheckpoint(size: body.size, root: body.rootHash, note: note, publishedAt: at)
    }

    // MARK: sequencing and signing

    /// One round: moves up to `batch` outbox rows into the log with the subtree hashes they
    /// complete, then, if the tree differs from the last published checkpoint, checks it extends
    /// that checkpoint (database and file) and signs and publishes a new one. Returns it (nil:
    /// nothing to publish). Throws `log_behind` when the tree does not extend the last checkpoint.
    @discardableResult
    public func step(batch: Int = 4096) throws -> PublishedCheckpoint? {
        try sequencer.withLock { _ in
            let writer: any LogStore
            if let gate {
                guard let fenced = gate.acquire() else {
                    try follow()
                    return nil
                }
                writer = fenced
            } else {
                writer = store
            }
            var size = try store.logSize()
            let pending = try store.pendingLogEntries(limit: batch)
            if !pending.isEmpty {
                let hashes = try newHashes(size: size, entries: pending.map(\.entry.entry))
                try writer.appendLog(size: size, entries: pending, hashes: hashes)
                size += UInt64(pending.count)
            }
            let root = try prover.root(size: size)
            do {
                let last = try lastPublished()
                if let last, last.size == size, last.root == root {
                    // Published already; the database lacks it only after a crash between the file and the row.
                    if try store.latestCheckpoint()?.size != size { try writer.publishCheckpoint(last) }
                    problem.withLock { $0 = nil }
                    return nil
                }
                try checkExtends(last, size: size, root: root)
            } catch let e as VouchError where e.code == .logBehind {
                problem.withLock { $0 = e }
                throw e
            }
            let note = try SignedNote.sign(try CheckpointBody(origin: origin, size: size, rootHash: root).text, with: [signer])
            let published = PublishedCheckpoint(size: size, root: root, note: note, publishedAt: clock.now())
            try Files.writeAtomically(Array(note.utf8), to: checkpointFile, mode: 0o644)
            fileCheckpoint.withLock { $0 = published }
            try writer.publishCheckpoint(published)
            problem.withLock { $0 = nil }
            return published
        }
    }

    /// A replica that does not sequence keeps its checkpoint file up with what the sequencing
    /// replica published — verified: signed by this log's key, its root the database's tree at its
    /// size, a consistent extension of the file's checkpoint — so that this replica, when it takes
    /// the job or starts again, refuses a database behind it (`log_behind`) as the sequencer would.
    func follow() throws {
        do {
            let file = fileCheckpoint.withLock { $0 }
            guard let stored = try store.latestCheckpoint() else {
                if let file, file.size > 0 { throw VouchError(.logBehind, "the database holds no checkpoint; this replica published or saw \(file.size)") }
                return
            }
            if let file {
                // The database behind what this replica saw (restored): said, as the sequencer would.
                guard stored.size >= file.size else {
                    throw VouchError(.logBehind, "the log in the database is smaller than the last published checkpoint; restore a newer database",
                                     context: ["published": "\(file.size)", "got": "\(stored.size)"])
                }
                guard stored.size > file.size else {
                    if stored.root != file.root { throw VouchError(.logBehind, "the database and the checkpoint file hold different checkpoints of one size") }
                    problem.withLock { $0 = nil }
                    return
                }
            }
            let verified = try Self.checkpoint(note: stored.note, key: signer.verifierKey, at: stored.publishedAt)
            guard verified.size == stored.size, verified.root == stored.root, try store.logSize() >= stored.size,
                  try prover.root(size: stored.size) == stored.root else {
                throw VouchError(.logBehind, "the database's latest checkpoint is not its own tree signed by this log's key", context: ["size": "\(stored.size)"])
            }
            // Against the file alone: the sequencer may have published a newer checkpoint since
            // `stored` was read, which is no fault of `stored` (the next round follows it).
            try checkExtends(file, size: stored.size, root: stored.root, againstStore: false)
            try Files.writeAtomically(Array(stored.note.utf8), to: checkpointFile, mode: 0o644)
            fileCheckpoint.withLock { $0 = verified }
            problem.withLock { $0 = nil }
        } catch let e as VouchError where e.code == .logBehind {
            problem.withLock { $0 = e }
            throw e
        }
    }

    /// The subtree hashes appending `entries` at `size` completes: each leaf, and every node whose
    /// right child it completes (left siblings come from this batch or the store).
    func newHashes(size: UInt64, entries: [[UInt8]]) throws -> [LogNodeHash] {
        var made: [String: [UInt8]] = [:]
        var out: [LogNodeHash] = []
        for (i, entry) in entries.enumerated() {
            var index = size + UInt64(i), level = 0
            var hash = hasher.leafHash(entry)
            out.append(LogNodeHash(level: 0, index: index, hash: hash))
            made["0/\(index)"] = hash
            while index & 1 == 1 {
                let left: [UInt8]
                if let m = made["\(level)/\(index - 1)"] {
                    left = m
                } else if let stored = try store.logHashes([(level, index - 1)]).first ?? nil {
                    left = stored
                } else {
                    throw VouchError(.internalError, "the log lacks the subtree hash (\(level), \(index - 1))")
                }
                hash = hasher.nodeHash(left, hash)
                level += 1
                index >>= 1
                out.append(LogNodeHash(level: level, index: index, hash: hash))
                made["\(level)/\(index)"] = hash
            }
        }
        return out
    }

    /// The last checkpoint published: the larger of the database's and the file's (a file ahead of
    /// the database means the database was restored from an older copy).
    func lastPublished() throws -> PublishedCheckpoint? {
        let stored = try store.latestCheckpoint()
        let file = fileCheckpoint.withLock { $0 }
        guard let file else { return stored }
        guard let stored else { return file }
        if stored.size == file.size, stored.root != file.root {
            throw VouchError(.logBehind, "the database and the checkpoint file hold different checkpoints of one size", context: ["size": "\(file.size)"])
        }
        return stored.size >= file.size ? stored : file
    }

    /// Refuses a tree that does not extend `last`: smaller, or not consistent with it. Checked
    /// against the file's checkpoint and, `againstStore`, the database's latest as read now (the
    /// sequencer's check: nobody else publishes while it holds the job).
    func checkExtends(_ last: PublishedCheckpoint?, size: UInt64, root: [UInt8], againstStore: Bool = true) throws {
        let file = fileCheckpoint.withLock { $0 }
        for c in [last, file, againstStore ? try store.latestCheckpoint() : nil].compactMap({ $0 }) {
            guard size >= c.size else {
                throw VouchError(.logBehind, "the log in the database is smaller than the last published checkpoint; restore a newer database",
                                 context: ["published": "\(c.size)", "got": "\(size)"])
            }
            guard c.size > 0 else { continue }
            do {
                let proof = c.size == size ? [] : try prover.consistencyProof(old: c.size, new: size)
                _ = try MerkleVerifier(hasher: hasher).verifyConsistency(oldSize: c.size, oldRoot: c.root, newSize: size, newRoot: root, proof: proof)
            } catch {
                throw VouchError(.logBehind, "the log in the database does not extend the last published checkpoint; restore a newer database",
                                 context: ["published": "\(c.size)"])
            }
        }
    }

    var prover: MerkleProver { MerkleProver(hasher: hasher, reader: StoredHashes(store: store)) }

    /// The checkpoint to serve: the last published, with the cosignatures collected for it (the
    /// file's when the database disagrees with it).
    public func served() throws -> PublishedCheckpoint? {
        do {
            return try lastPublished()
        } catch let e as VouchError where e.code == .logBehind {
            return fileCheckpoint.withLock { $0 }
        }
    }

    /// The served checkpoint, and the guarantee that the database's tree is the one it signs
    /// (proofs and tiles are made from it): `log_behind` otherwise, or `not_found` before any.
    func current() throws -> PublishedCheckpoint {
        if let p = currentProblem { throw p }
        guard let c = try served() else { throw VouchError(.notFound, "the log has no checkpoint yet") }
        guard try store.logSize() >= c.size else { throw VouchError(.logBehind, "the log in the database is behind its last checkpoint") }
        return c
    }

    // MARK: proofs

    /// The entry at `index`, and its C2SP tlog-proof against the served checkpoint.
    public func inclusion(index: UInt64) throws -> (entry: [UInt8], proof: TLogProofFile) {
        let c = try current()
        guard index < c.size, let entry = try store.logEntries(from: index, count: 1).first else {
            throw VouchError(.notFound, "the log's last checkpoint has no entry at this index", context: ["size": "\(c.size)"])
        }
        let proof = try TLogProofFile(extra: nil, index: index, proof: try prover.inclusionProof(index: index, size: c.size), signedCheckpoint: c.servedNote)
        return (entry, proof)
    }

    /// The issuance entry of the certificate whose DER has this SHA-256 (lowercase hex).
    public func inclusion(certificate: String) throws -> (index: UInt64, entry: [UInt8], proof: TLogProofFile) {
        guard let index = try store.logIndex(certificate: certificate) else {
            throw VouchError(.notFound, "no issuance of this certificate is in the log", context: ["certificate": String(certificate.prefix(64))])
        }
        let (entry, proof) = try inclusion(index: index)
        return (index, entry, proof)
    }

    /// RFC 9162 consistency proof between two tree sizes, both at most the served checkpoint's.
    public func consistency(old: UInt64, new: UInt64) throws -> [[UInt8]] {
        let c = try current()
        guard old <= new else { throw VouchError(.notFound, "there is no consistency proof from a larger size to a smaller one", context: ["field": "old"]) }
        guard new <= c.size else { throw VouchError(.notFound, "the log's last checkpoint is smaller than new", context: ["size": "\(c.size)"]) }
        return old == 0 || old == new ? [] : try prover.consistencyProof(old: old, new: new)
    }

    // MARK: tiles

    /// A tile's bytes (the stored hashes of its level, none computed), or nil if the served tree
    /// has no such tile.
    public func tile(_ t: Tile) throws -> [UInt8]? {
        let c = try current()
        guard let available = Tile.at(level: t.level, index: t.index, treeSize: c.size), available.width >= t.width else { return nil }
        let hashes = try store.logHashRange(level: Tile.height * t.level, from: t.index * UInt64(Tile.fullWidth), count: t.width)
        guard hashes.count == t.width else { throw VouchError(.internalError, "the log lacks hashes of \(t.path)") }
        return hashes.flatMap { $0 }
    }

    /// An entry bundle's bytes, or nil if the served tree has no such bundle.
    public func entryBundle(_ t: Tile) throws -> [UInt8]? {
        let c = try current()
        guard let available = Tile.at(level: 0, index: t.index, treeSize: c.size), available.width >= t.width else { return nil }
        let entries = try store.logEntries(from: t.index * UInt64(Tile.fullWidth), count: t.width)
        guard entries.count == t.width else { throw VouchError(.internalError, "the log lacks entries of \(t.entriesPath)") }
        return try EntryBundle.encode(entries)
    }

    // MARK: witnesses

    /// Stores a witness's cosignature: `note` must be a checkpoint this broker published, with its
    /// own valid signature and a valid cosignature by a configured witness (`note_unverified`
    /// otherwise). Returns the checkpoint as served with its cosignatures.
    public func addCosignatures(note: String) throws -> PublishedCheckpoint {
        // Whatever the body is, if it is not a note this log signed it is refused as unverified (403).
        let verified: VerifiedNote
        do {
            verified = try UnverifiedNote(note).verify([signer.verifierKey] + witnesses)
        } catch let e as VouchError where e.code == .noteSignatureInvalid {
            throw e
        } catch {
            throw VouchError(.noteUnverified, "the body is not a note signed by this log", context: ["cause": (error as? VouchError)?.code.rawValue ?? "unreadable"])
        }
        guard verified.verifiedBy.contains(origin) else {
            throw VouchError(.noteUnverified, "the checkpoint does not carry the log's signature")
        }
        let byWitness = verified.verifications.filter { $0.key != signer.verifierKey }
        guard !byWitness.isEmpty else { throw VouchError(.noteUnverified, "the note carries no cosignature by a configured witness") }
        guard let body = try? CheckpointBody(text: verified.text) else {
            throw VouchError(.noteUnverified, "the note's text is not a checkpoint")
        }
        guard body.origin == origin, let stored = try store.checkpoint(size: body.size), stored.root == body.rootHash else {
            throw VouchError(.notFound, "this broker published no such checkpoint", context: ["size": "\(body.size)"])
        }
        // One line per witness key: the first valid one kept (a witness re-cosigning an idle
        // checkpoint each round, or one POST carrying several of its lines, adds nothing), so a
        // checkpoint never carries more than the configured witnesses' lines (verifiers refuse
        // notes of over 100 signatures). Serialized with the sequencer: no two POSTs race.
        try sequencer.withLock { _ in
            for v in byWitness {
                guard let sig = verified.signatures.first(where: { $0.name == v.key.name && $0.keyID == v.key.keyID }) else { continue }
                let current = try store.checkpoint(size: body.size)?.cosignatures ?? stored.cosignatures
                guard !current.contains(where: { $0.hasPrefix("— \(sig.name) ") }), current.count < witnesses.count else { continue }
                try store.addCosignature(size: body.size, line: sig.line)
            }
        }
        return try store.checkpoint(size: body.size) ?? stored
    }

    // MARK: receipts

    /// Logs a receipt entry once: a receipt (keyed by its Statement's SHA-256) already logged or
    /// waiting is not appended again — its index and proof are returned — so replaying a public
    /// receipt adds nothing. The entry goes to the outbox; the background sequencer (never this
    /// call: a request must not drive checkpoint signing) sequences it and signs the checkpoint,
    /// which this waits for, polling, at most `wait` (`not_ready` then: retry, nothing is
    /// logged twice). The entry point of `POST /v1/receipts`, once the receipt is verified.
    public func appendReceipt(_ entry: LogEntry, wait: TimeInterval = 5) throws -> (index: UInt64, entry: [UInt8], proof: TLogProofFile) {
        guard entry.kind == .receipt, let statement = entry["statement"] else { throw VouchError(.invalidValue, "only receipt entries are submitted") }
        let key = "receipt:" + statement.dropFirst("sha256:".count)
        let outboxID: Int64? = try receipts.withLock { _ in
            // The outbox first: entries only move from it into the log, so a row the sequencer
            // moves between these two reads is still found by the second.
            if let pending = try store.pendingLogEntry(key: key) { return pending }
            if try store.logIndex(certificate: key) != nil { return nil }
            return try store.enqueueLogEntry(LogOutboxEntry(entry: entry.bytes, certificate: key))
        }
        let deadline = Date().addingTimeInterval(wait)
        while true {
            let index = try outboxID.map { try store.logIndex(outboxID: $0) } ?? store.logIndex(certificate: key)
            if let index, let c = try served(), index < c.size {
                let (bytes, proof) = try inclusion(index: index)
                return (index, bytes, proof)
            }
            if let problem = currentProblem { throw problem }
            guard Date() < deadline else { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw VouchError(.notReady, "the receipt was logged but no checkpoint covers it yet; retry")
    }
}

/// Subtree hashes read from the store, for `MerkleProver`.
struct StoredHashes: NodeHashReader {
    let store: any LogStore
    func hashes(_ nodes: [TreeNode]) throws -> [[UInt8]] {
        try zip(nodes, try store.logHashes(nodes.map { ($0.level, $0.index) })).map { node, hash in
            guard let hash else { throw VouchError(.internalError, "the log lacks the subtree hash \(node)") }
            return hash
        }
    }
}

/// Runs the sequencer in the background: a round every `every` seconds (so a checkpoint at least
/// every second while entries arrive; a round with nothing new signs nothing). A failing round is
/// reported once until rounds succeed again.
public final class LogSequencerLoop: @unchecked Sendable {   // the timer is only scheduled, resumed and cancelled
    let log: TransparencyLog
    let every: TimeInterval
    let report: @Sendable (String) -> Void
    private let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "vouch.log.sequencer"))
    private let failing = Mutex(false)

    public init(log: TransparencyLog, every: TimeInterval, report: @escaping @Sendable (String) -> Void) {
        self.log = log
        self.every = every
        self.report = report
    }

    /// One round, as the timer runs it.
    func round() {
        do {
            try log.step()
            if failing.withLock({ f in defer { f = false }; return f }) { report("transparency log: signing checkpoints again") }
        } catch {
            let message = (error as? VouchError)?.message ?? "\(error)"
            if !failing.withLock({ f in defer { f = true }; return f }) { report("transparency log: no checkpoint signed: \(message)") }
        }
    }

    public func start() {
        timer.schedule(deadline: .now(), repeating: every)
        timer.setEventHandler { [self] in round() }
        timer.resume()
    }

    public func stop() { timer.cancel() }
}
