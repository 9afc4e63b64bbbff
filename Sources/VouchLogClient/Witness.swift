import Foundation
import VouchCore
import VouchCrypto
import VouchRuntime
import VouchTLog

extension ErrorCode {
    /// The log served a checkpoint smaller than the one this witness already cosigned.
    public static let witnessRollback = ErrorCode("witness_rollback", status: 409)
    /// The log forked: two checkpoints, both signed by the log key, that no append-only log can
    /// both have produced (same size and different roots, or a newer tree whose first entries
    /// have another root). The witness keeps both notes as evidence and cosigns nothing more.
    public static let witnessFork = ErrorCode("witness_fork", status: 409)
}

/// One witness round's result: the log's checkpoint with this witness's cosignature added.
public struct WitnessCosignature: Sendable {
    /// The checkpoint note with every signature it came with (but an older one by this witness)
    /// and this witness's cosignature/v1 line last.
    public let note: String
    public let checkpoint: VerifiedCheckpoint
    /// The size of the checkpoint this witness held before the round (nil: the first round).
    public let previousSize: UInt64?
    public let timestamp: UInt64
}

/// A C2SP witness (tlog-witness's checks, tlog-cosignature's signature) over one log: keeps the
/// latest checkpoint it cosigned in `stateDirectory`, one directory per log origin; cosigns a new
/// checkpoint only if the log key signed it and it extends the stored one (consistency proven from
/// the log's tiles). A fork leaves both notes in `<origin dir>/fork/` and the stored state as it
/// was; from then on every round is refused with `witness_fork` until an operator moves them away.
public struct Witness: Sendable {
    public let client: LogClient
    public let signer: NoteSigner
    public let stateDirectory: String
    public let clock: any Clock

    public init(client: LogClient, signer: NoteSigner, stateDirectory: String, clock: any Clock) throws {
        guard signer.verifierKey.type == .cosignatureV1 else {
            throw VouchError(.noteKeyInvalid, "a witness signs with a cosignature/v1 key (type 0x04); this key is a plain Ed25519 note key")
        }
        self.client = client
        self.signer = signer
        self.stateDirectory = stateDirectory
        self.clock = clock
    }

    /// The directory this witness keeps for the log: the origin with every byte outside
    /// `[A-Za-z0-9._-]` percent-encoded, and a leading `.` too, so no name (`.`, `..`, `.x`) can
    /// leave the state directory or hide in it (`example.org/vouch-log` ->
    /// `example.org%2Fvouch-log`, `..` -> `%2E.`).
    public var logDirectory: String {
        let safe = client.logKey.name.utf8.enumerated().map { i, b -> String in
            let c = Character(Unicode.Scalar(b))
            let plain = (c.isASCII && (c.isLetter || c.isNumber) || "._-".contains(c)) && !(i == 0 && c == ".")
            return plain ? String(c) : String(format: "%%%02X", b)
        }.joined()
        return stateDirectory + "/" + safe
    }
    public var checkpointPath: String { logDirectory + "/checkpoint" }
    public var forkDirectory: String { logDirectory + "/fork" }

    /// The checkpoint this witness last cosigned, verified again with the log key (state that no
    /// longer verifies is refused, not replaced).
    public func storedCheckpoint() throws -> VerifiedCheckpoint? {
        guard Files.exists(checkpointPath) else { return nil }
        return try client.verify(note: Files.read(checkpointPath))
    }

    /// One round: fetch, verify, compare with the stored checkpoint, cosign, save. Holds an
    /// exclusive lock on the log's state directory throughout, so two processes sharing it cannot
    /// each cosign one side of a fork from the same stored checkpoint (`conflict` if it is held).
    public func round() throws -> WitnessCosignature {
        try Files.makeDirectory(logDirectory)
        let lock = try StateLock(logDirectory + "/lock")
        defer { lock.release() }
        if Files.exists(forkDirectory) {
            throw VouchError(.witnessFork, "a fork of \(client.logKey.name) was recorded in \(forkDirectory); this witness cosigns nothing more for it",
                             context: ["evidence": forkDirectory])
        }
        let stored = try storedCheckpoint()
        let current = try client.checkpoint()
        if let stored {
            guard current.size >= stored.size else {
                throw VouchError(.witnessRollback, "the log's checkpoint has \(current.size) entries, fewer than the \(stored.size) this witness cosigned",
                                 context: ["stored": "\(stored.size)", "received": "\(current.size)"])
            }
            if case let .forked(prefixRoot) = try client.consistency(oldSize: stored.size, oldRoot: stored.rootHash, new: current) {
                try recordFork(stored: stored, received: current, prefixRoot: prefixRoot)
                throw VouchError(.witnessFork, "the log forked: its checkpoint of \(current.size) entries does not extend the one of \(stored.size) entries this witness cosigned; both notes are in \(forkDirectory)",
                                 context: ["stored": "\(stored.size)", "received": "\(current.size)", "evidence": forkDirectory])
            }
        } else {
            try client.checkTiles(of: current)
        }
        // Never earlier than the cosignature this witness last issued for the log: a clock that
        // went back does not make a later cosignature look older (C2SP tlog-witness).
        let now = UInt64(max(0, clock.now().timeIntervalSince1970.rounded(.down)))
        let timestamp = max(now, stored.flatMap(storedTimestamp) ?? 0)
        let line = try SignedNote.signature(of: current.body.text, by: signer, timestamp: timestamp)
        let mine = signer.verifierKey
        let others = current.verified.signatures.filter { !($0.name.utf8.elementsEqual(mine.name.utf8) && $0.keyID == mine.keyID) }
        let note = SignedNote.encode(text: current.body.text, signatures: others + [line])
        try Files.writeAtomically(Array(note.utf8), to: checkpointPath)
        return WitnessCosignature(note: note, checkpoint: current, previousSize: stored?.size, timestamp: timestamp)
    }

    /// The time of this witness's own cosignature on the stored checkpoint, if it carries one.
    func storedTimestamp(_ stored: VerifiedCheckpoint) -> UInt64? {
        (try? UnverifiedNote(stored.note).verify([signer.verifierKey]))?.verifications.first?.timestamp
    }

    /// Keeps both signed notes and, when the received tree is larger, `proof.txt`: the root of
    /// its first `stored.size` entries read from its tiles and the consistency proof from that
    /// prefix to its root, so anyone can check offline that the log signed a tree extending
    /// another prefix than the stored one. Existing evidence is never overwritten.
    func recordFork(stored: VerifiedCheckpoint, received: VerifiedCheckpoint, prefixRoot: [UInt8]) throws {
        try Files.makeDirectory(forkDirectory)
        _ = try Files.createOnce(Array(stored.note.utf8), at: forkDirectory + "/stored.note", mode: 0o644)
        _ = try Files.createOnce(Array(received.note.utf8), at: forkDirectory + "/received.note", mode: 0o644)
        guard received.size > stored.size else { return }
        let proof = try client.prover(for: received).consistencyProof(old: stored.size, new: received.size)
        _ = try Files.createOnce(Array(Self.forkProof(stored: stored, received: received, prefixRoot: prefixRoot, proof: proof).utf8),
                                 at: forkDirectory + "/proof.txt", mode: 0o644)
    }

    /// The text of `fork/proof.txt` (docs/receipts.md, "Witnesses and mirrors"): one line each,
    /// hashes in standard base64.
    static func forkProof(stored: VerifiedCheckpoint, received: VerifiedCheckpoint, prefixRoot: [UInt8], proof: [[UInt8]]) -> String {
        ["vouch.dev/fork-evidence/v1",
         "stored \(stored.size) \(Base64.encode(stored.rootHash))",
         "received \(received.size) \(Base64.encode(received.rootHash))",
         "prefix \(stored.size) \(Base64.encode(prefixRoot))",
         "consistency \(stored.size) \(received.size)"].joined(separator: "\n") + "\n"
            + proof.map { Base64.encode($0) + "\n" }.joined()
    }
}

/// An exclusive, non-blocking flock(2) on a file, held until `release()` or deinit.
final class StateLock {
    private var fd: Int32

    init(_ path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw VouchError(.io, "cannot open \(path)", context: ["errno": "\(errno)"]) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw VouchError(.conflict, "another witness or mirror process holds \(path)", context: ["path": path])
        }
        self.fd = fd
    }

    func release() {
        guard fd >= 0 else { return }
        flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { release() }
}
