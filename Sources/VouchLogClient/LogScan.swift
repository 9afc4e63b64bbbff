import VouchCore
import VouchTLog

/// What reading every entry of a checkpoint's tree established; returned only once the entries'
/// leaf hashes have been shown to make the checkpoint's root.
public struct VerifiedLogScan: Sendable {
    public let checkpoint: VerifiedCheckpoint
    /// The entries `select` chose, with their indices, in log order.
    public let selected: [(index: UInt64, entry: [UInt8])]
    /// The root of the first `size` entries, for each size asked for that is at most the tree's.
    public let prefixRoots: [UInt64: [UInt8]]
    /// The tree's last entry (nil for an empty tree).
    public let lastEntry: [UInt8]?
}

extension LogClient {
    /// Reads every entry of `checkpoint`'s tree from the entry bundles, in order, and recomputes
    /// the RFC 9162 root from their leaf hashes; a root other than the checkpoint's, a bundle that
    /// is missing, over its bound or of the wrong width is `log_data_invalid` / `log_fetch_failed`
    /// and nothing is returned. So every entry handed out is proven part of the signed tree, and
    /// nothing in the tree was left out (tiles are not needed: the entries themselves make the
    /// root). `select` sees each entry's bytes as read, to choose which to keep; the caller gets
    /// them only after the root matched. `prefixSizes`: sizes whose roots to report (the
    /// roots of older checkpoints, to show this tree extends them). Cost: one fetch per 256
    /// entries, two SHA-256 per entry, memory for the kept entries and 40 hashes.
    public func scan(_ checkpoint: VerifiedCheckpoint, prefixSizes: Set<UInt64> = [],
                     select: (UInt64, [UInt8]) -> Bool) throws -> VerifiedLogScan {
        var edge = RightEdge(hasher: hasher)
        var selected: [(index: UInt64, entry: [UInt8])] = []
        var prefixRoots: [UInt64: [UInt8]] = [:]
        var last: [UInt8]?
        let bundles = (checkpoint.size + UInt64(Tile.fullWidth) - 1) / UInt64(Tile.fullWidth)
        for n in 0..<bundles {
            let tile = Tile.at(level: 0, index: n, treeSize: checkpoint.size)!
            let entries: [[UInt8]]
            do { entries = try EntryBundle.decode(try fetchBundle(tile), tile: tile) } catch let e as VouchError where e.code != .logFetchFailed {
                throw VouchError(.logDataInvalid, "entry bundle \(tile.entriesPath) from \(source.location) is not \(tile.width) entries: \(e.message)",
                                 context: ["tile": tile.path])
            }
            for (i, entry) in entries.enumerated() {
                let index = n * UInt64(Tile.fullWidth) + UInt64(i)
                if select(index, entry) { selected.append((index, entry)) }
                edge.append(hasher.leafHash(entry))
                if prefixSizes.contains(edge.size) { prefixRoots[edge.size] = edge.root }
            }
            last = entries.last
        }
        guard edge.root == checkpoint.rootHash else {
            throw VouchError(.logDataInvalid, "the entries of \(source.location) do not make the checkpoint's root", context: ["size": "\(checkpoint.size)"])
        }
        return VerifiedLogScan(checkpoint: checkpoint, selected: selected, prefixRoots: prefixRoots, lastEntry: last)
    }
}

/// The complete subtrees of a growing tree's right edge, largest first (at most one per level),
/// from which the root of the entries so far is folded (RFC 9162 2.1.1: the tree of n leaves is
/// the largest power-of-two subtree on the left and the rest on the right).
struct RightEdge {
    let hasher: MerkleHasher
    private(set) var size: UInt64 = 0
    private var subtrees: [(level: Int, hash: [UInt8])] = []

    init(hasher: MerkleHasher) { self.hasher = hasher }

    mutating func append(_ leafHash: [UInt8]) {
        var node = (level: 0, hash: leafHash)
        while let top = subtrees.last, top.level == node.level {
            subtrees.removeLast()
            node = (top.level + 1, hasher.nodeHash(top.hash, node.hash))
        }
        subtrees.append(node)
        size += 1
    }

    var root: [UInt8] {
        guard var hash = subtrees.last?.hash else { return hasher.emptyRoot }
        for subtree in subtrees.dropLast().reversed() { hash = hasher.nodeHash(subtree.hash, hash) }
        return hash
    }
}
