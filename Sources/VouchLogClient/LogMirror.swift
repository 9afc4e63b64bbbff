import VouchCore
import VouchRuntime
import VouchTLog

/// A verified copy of a log: the checkpoint, every tile and every entry bundle of its tree (on
/// later runs, those the copy's tree lacks), each checked before it is written (full tiles
/// against their parent tile's hash, the right edge against the checkpoint's root, bundles against
/// their level-0 tile), so receipts can later be verified from the copy with no network. The
/// tiles above level 0 (a 256th of the hashes) are read and verified first; then each level-0
/// tile with its entry bundle is fetched, verified and written before the next, so memory stays
/// bounded by one bundle however large the log. The checkpoint is written last, so a copy
/// interrupted half way still serves its previous, complete tree. An update holds the same
/// exclusive lock a witness holds on its state (`DIR/lock`, flock): two runs on one copy cannot
/// interleave and roll it back (`conflict` for the second).
public struct LogMirror: Sendable {
    public let client: LogClient
    public let directory: String

    public init(client: LogClient, directory: String) {
        self.client = client
        self.directory = directory
    }

    /// Copies the log's current tree; refuses one that does not extend the tree already in
    /// `directory` (`witness_rollback`, `witness_fork`: the same checks as a witness).
    @discardableResult
    public func update() throws -> VerifiedCheckpoint {
        try Files.makeDirectory(directory, mode: 0o755)
        let lock = try StateLock(directory + "/lock")
        defer { lock.release() }
        let checkpoint = try client.checkpoint()
        let localSource = DirectoryLogSource(directory: directory)
        var heldSize: UInt64 = 0
        if Files.exists(directory + "/checkpoint") {
            let held = try LogClient(source: localSource, logKey: client.logKey).checkpoint()
            heldSize = held.size
            guard checkpoint.size >= held.size else {
                throw VouchError(.witnessRollback, "the log has \(checkpoint.size) entries, fewer than the \(held.size) of the copy")
            }
            if case .forked = try client.consistency(oldSize: held.size, oldRoot: held.rootHash, new: checkpoint) {
                throw VouchError(.witnessFork, "the log's tree of \(checkpoint.size) entries does not extend the copy's of \(held.size) entries")
            }
        }
        // Only what the held tree lacks is fetched: a new full tile's parent tile is new too, and
        // the right edge is recomputed over the new tiles and the held ones.
        let tiles = try Tile.newTiles(oldSize: heldSize, newSize: checkpoint.size)
        let remote = SourceTileReader(source: client.source)
        let upperTiles = tiles.filter { $0.level > 0 }
        var upper: [Tile: [UInt8]] = [:]
        for (tile, bytes) in zip(upperTiles, try remote.readTiles(upperTiles)) { upper[tile] = bytes }
        // The right edge may need the last level-0 tile: fetched for the check, kept for below.
        let edge = FetchedTiles(tiles: upper, new: Set(tiles), remote: remote, held: SourceTileReader(source: localSource))
        let reader = TileHashReader(treeSize: checkpoint.size, tiles: edge, hasher: client.hasher)
        guard try MerkleProver(hasher: client.hasher, reader: reader).root(size: checkpoint.size) == checkpoint.rootHash else {
            throw VouchError(.logDataInvalid, "the tiles do not lead to the checkpoint's root", context: ["size": "\(checkpoint.size)"])
        }
        for (tile, bytes) in upper { try verifyAgainstParent(tile, bytes, upper: upper, checkpoint: checkpoint) }
        for tile in tiles where tile.level == 0 {
            let bytes = try edge.fetched(tile) ?? remote.readTiles([tile])[0]
            try verifyAgainstParent(tile, bytes, upper: upper, checkpoint: checkpoint)
            let bundle = try client.fetchBundle(tile)
            let leaves = try EntryBundle.decode(bundle, tile: tile).map(client.hasher.leafHash)
            guard leaves == (try TileContent.hashes(of: tile, bytes: bytes)) else {
                throw VouchError(.logDataInvalid, "entry bundle \(tile.entriesPath) does not match tile \(tile.path)", context: ["tile": tile.path])
            }
            try write(bytes, tile.path)
            try write(bundle, tile.entriesPath)
        }
        for (tile, bytes) in upper { try write(bytes, tile.path) }
        try write(Array(checkpoint.note.utf8), "checkpoint")
        return checkpoint
    }

    /// A full tile hashes to its entry in the tile above (which is new whenever the tile is).
    func verifyAgainstParent(_ tile: Tile, _ bytes: [UInt8], upper: [Tile: [UInt8]], checkpoint: VerifiedCheckpoint) throws {
        guard !tile.isPartial else { return }
        let hasher = client.hasher
        var row = try TileContent.hashes(of: tile, bytes: bytes)
        while row.count > 1 { row = stride(from: 0, to: row.count, by: 2).map { hasher.nodeHash(row[$0], row[$0 + 1]) } }
        guard let parent = Tile.at(level: tile.level + 1, index: tile.index / UInt64(Tile.fullWidth), treeSize: checkpoint.size),
              let above = upper[parent] else {
            throw VouchError(.logDataInvalid, "no tile above \(tile.path)", context: ["tile": tile.path])
        }
        let offset = Int(tile.index % UInt64(Tile.fullWidth)) * MerkleHasher.hashSize
        guard Array(above[offset..<(offset + MerkleHasher.hashSize)]) == row[0] else {
            throw VouchError(.logDataInvalid, "tile \(tile.path) does not hash to its entry in \(parent.path)", context: ["tile": tile.path])
        }
    }

    func write(_ bytes: [UInt8], _ path: String) throws {
        let full = directory + "/" + path
        try Files.makeDirectory(String(full[..<full.lastIndex(of: "/")!]), mode: 0o755)
        try Files.writeAtomically(bytes, to: full)
    }
}

/// The tiles of an update: those above level 0 (read first), new level-0 tiles fetched when the
/// right edge needs them (kept, so they are not fetched twice), else those of the copy's tree,
/// which the new tree extends.
final class FetchedTiles: TileReader, @unchecked Sendable {
    let tiles: [Tile: [UInt8]]
    let new: Set<Tile>
    let remote: any TileReader
    let held: any TileReader
    private var level0: [Tile: [UInt8]] = [:]

    init(tiles: [Tile: [UInt8]], new: Set<Tile>, remote: any TileReader, held: any TileReader) {
        self.tiles = tiles
        self.new = new
        self.remote = remote
        self.held = held
    }

    /// A level-0 tile fetched for the right edge, handed out once.
    func fetched(_ tile: Tile) -> [UInt8]? { level0.removeValue(forKey: tile) }

    func readTiles(_ wanted: [Tile]) throws -> [[UInt8]] {
        try wanted.map { tile in
            if let bytes = tiles[tile] ?? level0[tile] { return bytes }
            guard new.contains(tile) else { return try held.readTiles([tile])[0] }
            let bytes = try remote.readTiles([tile])[0]
            level0[tile] = bytes
            return bytes
        }
    }
}
