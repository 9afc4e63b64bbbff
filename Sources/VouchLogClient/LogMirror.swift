import VouchCore
import VouchRuntime
import VouchTLog

/// A verified copy of a log: the checkpoint, every tile and every entry bundle of its tree (on
/// later runs, those the copy's tree lacks), each checked before anything is written (full tiles
/// against their parent tile's hash, the right edge against the checkpoint's root, bundles against
/// their level-0 tile), so receipts can later be verified from the copy with no network. The checkpoint is written last, so a copy
/// interrupted half way still serves its previous, complete tree.
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
        let contents = try SourceTileReader(source: client.source).readTiles(tiles)
        var byTile: [Tile: [UInt8]] = [:]
        for (tile, bytes) in zip(tiles, contents) { byTile[tile] = bytes }
        try verify(byTile, held: SourceTileReader(source: localSource), checkpoint: checkpoint)
        var bundles: [(Tile, [UInt8])] = []
        for tile in tiles where tile.level == 0 {
            let bytes = try client.fetchBundle(tile)
            let leaves = try EntryBundle.decode(bytes, tile: tile).map(client.hasher.leafHash)
            guard leaves == (try TileContent.hashes(of: tile, bytes: byTile[tile]!)) else {
                throw VouchError(.logDataInvalid, "entry bundle \(tile.entriesPath) does not match tile \(tile.path)", context: ["tile": tile.path])
            }
            bundles.append((tile, bytes))
        }
        for (tile, bytes) in byTile { try write(bytes, tile.path) }
        for (tile, bytes) in bundles { try write(bytes, tile.entriesPath) }
        try write(Array(checkpoint.note.utf8), "checkpoint")
        return checkpoint
    }

    /// Every full tile hashes to its entry in the tile above; the right edge leads to the root.
    func verify(_ tiles: [Tile: [UInt8]], held: any TileReader, checkpoint: VerifiedCheckpoint) throws {
        let hasher = client.hasher
        for (tile, bytes) in tiles where !tile.isPartial {
            var row = try TileContent.hashes(of: tile, bytes: bytes)
            while row.count > 1 { row = stride(from: 0, to: row.count, by: 2).map { hasher.nodeHash(row[$0], row[$0 + 1]) } }
            guard let parent = Tile.at(level: tile.level + 1, index: tile.index / UInt64(Tile.fullWidth), treeSize: checkpoint.size),
                  let above = tiles[parent] else {
                throw VouchError(.logDataInvalid, "no tile above \(tile.path)", context: ["tile": tile.path])
            }
            let offset = Int(tile.index % UInt64(Tile.fullWidth)) * MerkleHasher.hashSize
            guard Array(above[offset..<(offset + MerkleHasher.hashSize)]) == row[0] else {
                throw VouchError(.logDataInvalid, "tile \(tile.path) does not hash to its entry in \(parent.path)", context: ["tile": tile.path])
            }
        }
        let reader = TileHashReader(treeSize: checkpoint.size, tiles: FetchedTiles(tiles: tiles, held: held), hasher: hasher)
        guard try MerkleProver(hasher: hasher, reader: reader).root(size: checkpoint.size) == checkpoint.rootHash else {
            throw VouchError(.logDataInvalid, "the tiles do not lead to the checkpoint's root", context: ["size": "\(checkpoint.size)"])
        }
    }

    func write(_ bytes: [UInt8], _ path: String) throws {
        let full = directory + "/" + path
        try Files.makeDirectory(String(full[..<full.lastIndex(of: "/")!]), mode: 0o755)
        try Files.writeAtomically(bytes, to: full)
    }
}

/// Tiles just fetched (and verified), else those of the copy's tree, which the new tree extends.
struct FetchedTiles: TileReader {
    let tiles: [Tile: [UInt8]]
    let held: any TileReader

    func readTiles(_ wanted: [Tile]) throws -> [[UInt8]] {
        try wanted.map { tile in try tiles[tile] ?? held.readTiles([tile])[0] }
    }
}
