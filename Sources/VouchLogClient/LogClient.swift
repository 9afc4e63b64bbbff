import VouchCore
import VouchCrypto
import VouchTLog

/// A checkpoint whose log signature verified, with the note as it was served (every signature
/// line kept, known or not, so it can be cosigned and passed on unchanged).
public struct VerifiedCheckpoint: Sendable {
    public let note: String
    public let body: CheckpointBody
    public let verified: VerifiedNote

    public var size: UInt64 { body.size }
    public var rootHash: [UInt8] { body.rootHash }
}

/// What a log's tiles say about an older checkpoint of the same log.
public enum ConsistencyOutcome: Sendable, Equatable {
    /// The newer tree extends the older one (proven from the newer tree's tiles; trivially for
    /// an empty older tree or an equal one).
    case consistent
    /// The newer tree's first `oldSize` entries have another root than the older checkpoint's
    /// (proven: the consistency proof from the tiles leads to the newer root): the log forked.
    case forked(prefixRoot: [UInt8])
}

/// Reads a C2SP tlog-tiles log (tlog-checkpoint, tlog-tiles) from a `LogSource` and checks what
/// it reads: the checkpoint against the log's verifier key and origin, tiles against the
/// checkpoint's root, entries against their leaf hashes. Nothing read is returned unverified.
public struct LogClient: Sendable {
    public let source: any LogSource
    public let logKey: NoteVerifierKey
    public let hasher: MerkleHasher

    public init(source: any LogSource, logKey: NoteVerifierKey) {
        self.source = source
        self.logKey = logKey
        hasher = MerkleHasher(sha256: { Crypto.sha256($0) })
    }

    /// The log's current checkpoint, verified.
    public func checkpoint() throws -> VerifiedCheckpoint {
        try verify(note: source.fetch("checkpoint", maxBytes: LogLimits.maxCheckpointBytes))
    }

    /// A signed checkpoint note checked against the log key: signed by it, its origin the key's
    /// name (the shared contract: origin = note key name = `<trust domain>/vouch-log`), and a
    /// size-0 tree carrying the empty tree's root.
    public func verify(note bytes: [UInt8]) throws -> VerifiedCheckpoint {
        guard bytes.count <= LogLimits.maxCheckpointBytes else {
            throw VouchError(.noteMalformed, "the checkpoint is over \(LogLimits.maxCheckpointBytes) bytes")
        }
        let verified = try UnverifiedNote(bytes).verify([logKey])
        let body = try CheckpointBody(text: verified.text)
        guard body.origin.utf8.elementsEqual(logKey.name.utf8) else {   // byte for byte, not canonical equivalence
            throw VouchError(.logDataInvalid, "the checkpoint is for origin \(body.origin), not \(logKey.name)", context: ["origin": body.origin])
        }
        guard body.size > 0 || body.rootHash == hasher.emptyRoot else {
            throw VouchError(.logDataInvalid, "an empty tree's checkpoint carries another root than the empty tree's")
        }
        return VerifiedCheckpoint(note: String(decoding: bytes, as: UTF8.self), body: body, verified: verified)
    }

    /// Subtree hashes of the checkpoint's tree, read from the source's tiles.
    func prover(for checkpoint: VerifiedCheckpoint) -> MerkleProver {
        MerkleProver(hasher: hasher, reader: TileHashReader(treeSize: checkpoint.size, tiles: SourceTileReader(source: source), hasher: hasher))
    }

    /// Recomputes the root from the right edge of the tiles; `log_data_invalid` if it is not the
    /// checkpoint's.
    public func checkTiles(of checkpoint: VerifiedCheckpoint) throws {
        let root = try prover(for: checkpoint).root(size: checkpoint.size)
        guard root == checkpoint.rootHash else {
            throw VouchError(.logDataInvalid, "the tiles of \(source.location) do not lead to the checkpoint's root", context: ["size": "\(checkpoint.size)"])
        }
    }

    /// Whether `new` extends an older tree of `oldSize` entries with root `oldRoot`, from `new`'s
    /// tiles: the root of `new`'s first `oldSize` entries and a consistency proof are read from the
    /// tiles and verified together against `new`'s root (tiles that fail are `log_data_invalid`),
    /// so a `.forked` answer is proven, not a guess from bad tiles.
    public func consistency(oldSize: UInt64, oldRoot: [UInt8], new: VerifiedCheckpoint) throws -> ConsistencyOutcome {
        guard oldSize <= new.size else {
            throw VouchError(.tlogProofInvalid, "no consistency from size \(oldSize) to the smaller size \(new.size)")
        }
        if oldSize == 0 {
            return oldRoot == hasher.emptyRoot ? .consistent : .forked(prefixRoot: hasher.emptyRoot)
        }
        if oldSize == new.size {
            return oldRoot == new.rootHash ? .consistent : .forked(prefixRoot: new.rootHash)
        }
        let prover = prover(for: new)
        let prefixRoot = try prover.root(size: oldSize)
        let proof = try prover.consistencyProof(old: oldSize, new: new.size)
        do {
            _ = try MerkleVerifier(hasher: hasher).verifyConsistency(oldSize: oldSize, oldRoot: prefixRoot, newSize: new.size,
                                                                        newRoot: new.rootHash, proof: proof)
        } catch let e as VouchError where e.code == .tlogProofInvalid {
            throw VouchError(.logDataInvalid, "the tiles of \(source.location) do not prove their own checkpoint: \(e.message)", context: ["size": "\(new.size)"])
        }
        return prefixRoot == oldRoot ? .consistent : .forked(prefixRoot: prefixRoot)
    }

    /// Entry `index` of `checkpoint`'s tree, read from its entry bundle and proven included: its
    /// leaf hash, the inclusion proof from the tiles and the checkpoint's root must agree.
    public func entry(_ index: UInt64, in checkpoint: VerifiedCheckpoint) throws -> (entry: [UInt8], inclusion: VerifiedInclusion) {
        guard index < checkpoint.size else {
            throw VouchError(.tlogProofInvalid, "index \(index) is not in a tree of \(checkpoint.size) entries")
        }
        let tile = Tile.at(level: 0, index: index / UInt64(Tile.fullWidth), treeSize: checkpoint.size)!
        let entries = try EntryBundle.decode(try fetchBundle(tile), tile: tile)
        let entry = entries[Int(index % UInt64(Tile.fullWidth))]
        let proof = try prover(for: checkpoint).inclusionProof(index: index, size: checkpoint.size)
        do {
            let inclusion = try MerkleVerifier(hasher: hasher).verifyInclusion(leafHash: hasher.leafHash(entry), index: index, size: checkpoint.size,
                                                                              proof: proof, root: checkpoint.rootHash)
            return (entry, inclusion)
        } catch let e as VouchError where e.code == .tlogProofInvalid {
            throw VouchError(.logDataInvalid, "entry \(index) from \(source.location) is not proven by the checkpoint: \(e.message)", context: ["index": "\(index)"])
        }
    }

    /// An entry bundle; a missing partial one is read from its full bundle, as for tiles.
    func fetchBundle(_ tile: Tile) throws -> [UInt8] {
        do {
            return try source.fetch(tile.entriesPath, maxBytes: LogLimits.maxBundleBytes)
        } catch let e as VouchError where e.code == .logFetchFailed && tile.isPartial {
            let full = try Tile(level: 0, index: tile.index, width: Tile.fullWidth)
            guard let bytes = try? source.fetch(full.entriesPath, maxBytes: LogLimits.maxBundleBytes),
                  let all = try? EntryBundle.decode(bytes, tile: full) else { throw e }
            return try EntryBundle.encode(Array(all.prefix(tile.width)))
        }
    }
}

/// Tiles fetched from a `LogSource`, exactly `width` hashes each; a partial tile the log no
/// longer serves (tlog-tiles lets a log drop partial tiles once the full one exists) is read from
/// the full tile, whose first hashes are the same.
struct SourceTileReader: TileReader {
    let source: any LogSource

    func readTiles(_ tiles: [Tile]) throws -> [[UInt8]] {
        try tiles.map { tile in
            let bytes: [UInt8]
            do {
                bytes = try source.fetch(tile.path, maxBytes: LogLimits.maxTileBytes)
            } catch let e as VouchError where e.code == .logFetchFailed && tile.isPartial {
                let full = try Tile(level: tile.level, index: tile.index, width: Tile.fullWidth)
                guard let wide = try? source.fetch(full.path, maxBytes: LogLimits.maxTileBytes), wide.count == LogLimits.maxTileBytes else { throw e }
                bytes = Array(wide.prefix(tile.width * MerkleHasher.hashSize))
            }
            guard bytes.count == tile.width * MerkleHasher.hashSize else {
                throw VouchError(.logDataInvalid, "tile \(tile.path) from \(source.location) has \(bytes.count) bytes, not \(tile.width * MerkleHasher.hashSize)",
                                 context: ["tile": tile.path])
            }
            return bytes
        }
    }
}
