import VouchCore

/// A complete subtree of the log: the 2^`level` entries starting at `index` * 2^`level`
/// (tlog-tiles and Go's sumdb/tlog number stored hashes the same way).
public struct TreeNode: Hashable, Sendable, CustomStringConvertible {
    public let level: Int
    public let index: UInt64

    public init(level: Int, index: UInt64) {
        precondition((0...63).contains(level) && index < (UInt64(1) << UInt64(63 - level)), "node out of range")
        self.level = level
        self.index = index
    }

    /// The first entry the node covers.
    public var start: UInt64 { index << UInt64(level) }
    public var description: String { "(\(level), \(index))" }
}

/// Where the hashes of complete subtrees come from: the broker's store, tiles, or an in-memory
/// tree. Hashes are read in one batch, in the order asked; a reader that lacks one throws.
public protocol NodeHashReader {
    func hashes(_ nodes: [TreeNode]) throws -> [[UInt8]]
}

/// A contiguous run of entries [lo, hi) whose hash RFC 9162's MTH defines; `lo` is always a
/// multiple of the largest power of two below `hi - lo` where the recursion makes one.
struct EntryRange: Equatable {
    let lo: UInt64
    let hi: UInt64

    /// The complete subtrees that make up the range, left to right (each smaller than the one
    /// before): MTH of the range is their right fold with the node hash.
    var nodes: [TreeNode] {
        var out: [TreeNode] = []
        var lo = self.lo
        while lo < hi {
            let size = hi - lo
            let level = 63 - size.leadingZeroBitCount        // the largest power of two <= size
            out.append(TreeNode(level: level, index: lo >> UInt64(level)))
            lo += UInt64(1) << UInt64(level)
        }
        return out
    }
}

/// The largest power of two strictly less than n (n > 1): RFC 9162's k.
func splitPoint(_ n: UInt64) -> UInt64 {
    precondition(n > 1)
    return UInt64(1) << UInt64(63 - (n - 1).leadingZeroBitCount)
}

/// Tree hashes and proofs computed from stored subtree hashes (RFC 9162 sections 2.1.1, 2.1.3.1,
/// 2.1.4.1). Sizes are checked against `TLogLimits.maxTreeSize` first.
public struct MerkleProver {
    public let hasher: MerkleHasher
    public let reader: any NodeHashReader

    public init(hasher: MerkleHasher, reader: any NodeHashReader) {
        self.hasher = hasher
        self.reader = reader
    }

    /// MTH(D[0:size]); the empty tree's root for size 0.
    public func root(size: UInt64) throws -> [UInt8] {
        try checkSize(size)
        if size == 0 { return hasher.emptyRoot }
        return try hashes(of: [EntryRange(lo: 0, hi: size)])[0]
    }

    /// PATH(index, D[0:size]): the inclusion proof of entry `index`, the leaf's sibling first.
    public func inclusionProof(index: UInt64, size: UInt64) throws -> [[UInt8]] {
        try checkSize(size)
        guard index < size else {
            throw VouchError(.tlogProofInvalid, "index \(index) is not in a tree of \(size) entries")
        }
        return try hashes(of: Self.inclusionRanges(index: index, lo: 0, hi: size))
    }

    /// PROOF(old, D[0:new]): the consistency proof from the tree of `old` entries to the tree of
    /// `new` entries (0 < old <= new; empty when they are equal).
    public func consistencyProof(old: UInt64, new: UInt64) throws -> [[UInt8]] {
        try checkSize(new)
        guard old > 0, old <= new else {
            throw VouchError(.tlogProofInvalid, "no consistency proof from size \(old) to size \(new)")
        }
        if old == new { return [] }
        return try hashes(of: Self.consistencyRanges(old: old, lo: 0, hi: new, complete: true))
    }

    static func inclusionRanges(index: UInt64, lo: UInt64, hi: UInt64) -> [EntryRange] {
        // Iterative form of RFC 9162 PATH(m, D[n]); the recursion appends outermost last.
        var out: [EntryRange] = []
        var lo = lo, hi = hi
        while hi - lo > 1 {
            let k = splitPoint(hi - lo)
            if index < lo + k {
                out.append(EntryRange(lo: lo + k, hi: hi))
                hi = lo + k
            } else {
                out.append(EntryRange(lo: lo, hi: lo + k))
                lo += k
            }
        }
        return out.reversed()
    }

    static func consistencyRanges(old: UInt64, lo: UInt64, hi: UInt64, complete: Bool) -> [EntryRange] {
        // Iterative form of RFC 9162 SUBPROOF(m, D[n], b).
        var out: [EntryRange] = []
        var m = old, lo = lo, hi = hi, b = complete
        while true {
            let n = hi - lo
            if m == n {
                if !b { out.append(EntryRange(lo: lo, hi: hi)) }
                break
            }
            let k = splitPoint(n)
            if m <= k {
                out.append(EntryRange(lo: lo + k, hi: hi))
                hi = lo + k
            } else {
                out.append(EntryRange(lo: lo, hi: lo + k))
                m -= k
                lo += k
                b = false
            }
        }
        return out.reversed()
    }

    private func hashes(of ranges: [EntryRange]) throws -> [[UInt8]] {
        let perRange = ranges.map(\.nodes)
        let wanted = perRange.flatMap { $0 }
        let got = try reader.hashes(wanted)
        guard got.count == wanted.count, got.allSatisfy({ $0.count == MerkleHasher.hashSize }) else {
            throw VouchError(.internalError, "the hash reader answered \(got.count) hashes for \(wanted.count) nodes")
        }
        var next = 0
        return perRange.map { nodes in
            let slice = got[next..<(next + nodes.count)]
            next += nodes.count
            return slice.dropLast().reversed().reduce(slice.last!) { acc, left in hasher.nodeHash(left, acc) }
        }
    }

    private func checkSize(_ size: UInt64) throws {
        guard size <= TLogLimits.maxTreeSize else {
            throw VouchError(.tlogProofInvalid, "tree size \(size) is over the limit of \(TLogLimits.maxTreeSize)")
        }
    }
}

/// A log held in memory: every level of complete subtree hashes. For tests, tools and small logs;
/// the broker reads its store (or tiles) through `NodeHashReader` instead.
public struct MemoryMerkleTree: NodeHashReader, Sendable {
    public let hasher: MerkleHasher
    /// levels[l][i] is the hash of the complete subtree (l, i).
    public private(set) var levels: [[[UInt8]]] = [[]]

    public init(hasher: MerkleHasher) {
        self.hasher = hasher
    }

    public var size: UInt64 { UInt64(levels[0].count) }

    /// Appends one entry (its data, hashed as a leaf) and every subtree it completes.
    public mutating func append(entry: [UInt8]) {
        append(leafHash: hasher.leafHash(entry))
    }

    public mutating func append(leafHash: [UInt8]) {
        precondition(leafHash.count == MerkleHasher.hashSize && size < TLogLimits.maxTreeSize)
        levels[0].append(leafHash)
        var level = 0
        while levels[level].count % 2 == 0 {
            let row = levels[level]
            let parent = hasher.nodeHash(row[row.count - 2], row[row.count - 1])
            if levels.count == level + 1 { levels.append([]) }
            levels[level + 1].append(parent)
            level += 1
        }
    }

    public func hashes(_ nodes: [TreeNode]) throws -> [[UInt8]] {
        try nodes.map { node in
            guard node.level < levels.count, node.index < UInt64(levels[node.level].count) else {
                throw VouchError(.notFound, "no stored hash for node \(node)")
            }
            return levels[node.level][Int(node.index)]
        }
    }

    public var prover: MerkleProver { MerkleProver(hasher: hasher, reader: self) }
}
