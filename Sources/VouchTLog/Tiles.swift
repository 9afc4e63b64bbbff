import VouchCore

/// A C2SP tlog-tiles tile: the hashes at tree level 8 * `level` numbered `index` * 256 ..<
/// `index` * 256 + `width` (a full tile has 256, the right edge of a tree a partial one).
public struct Tile: Hashable, Sendable, CustomStringConvertible {
    /// Tree levels per tile (fixed by tlog-tiles).
    public static let height = 8
    public static let fullWidth = 256
    /// The highest tile level a tree of at most `TLogLimits.maxTreeSize` entries has.
    public static let maxLevel = (TLogLimits.maxTreeSize.trailingZeroBitCount) / height

    public let level: Int
    public let index: UInt64
    public let width: Int

    public init(level: Int, index: UInt64, width: Int) throws {
        guard (0...Self.maxLevel).contains(level), (1...Self.fullWidth).contains(width),
              index < (TLogLimits.maxTreeSize >> UInt64(Self.height * (level + 1))) || index == 0 else {
            throw VouchError(.invalidValue, "no tile at level \(level), index \(index), width \(width)")
        }
        self.level = level
        self.index = index
        self.width = width
    }

    public var isPartial: Bool { width < Self.fullWidth }
    public var description: String { path }

    /// `tile/<L>/<N>[.p/<W>]`.
    public var path: String { "tile/\(level)/" + Self.encode(index: index, width: width) }

    /// The matching entry bundle's path, `tile/entries/<N>[.p/<W>]` (level-0 tiles only: bundle N
    /// holds the entries whose leaf hashes tile 0/N holds).
    public var entriesPath: String {
        precondition(level == 0, "only level-0 tiles have entry bundles")
        return "tile/entries/" + Self.encode(index: index, width: width)
    }

    /// The tile of the given level and index in a tree of `treeSize` entries; nil where that tree
    /// has no hash there yet.
    public static func at(level: Int, index: UInt64, treeSize: UInt64) -> Tile? {
        guard (0...maxLevel).contains(level), treeSize <= TLogLimits.maxTreeSize else { return nil }
        let count = treeSize >> UInt64(height * level)          // hashes at tree level 8 * level
        let first = index.multipliedReportingOverflow(by: UInt64(fullWidth))
        guard !first.overflow, first.partialValue < count else { return nil }
        return try? Tile(level: level, index: index, width: Int(min(UInt64(fullWidth), count - first.partialValue)))
    }

    /// The tiles a tree of `newSize` entries has that one of `oldSize` does not (new full tiles,
    /// and the new right-edge partial tile at each level): what a log publishes when it grows.
    public static func newTiles(oldSize: UInt64, newSize: UInt64) throws -> [Tile] {
        guard oldSize <= newSize, newSize <= TLogLimits.maxTreeSize else {
            throw VouchError(.invalidValue, "no tiles from size \(oldSize) to size \(newSize)")
        }
        var out: [Tile] = []
        for level in 0...maxLevel {
            let shift = UInt64(height * level)
            let oldCount = oldSize >> shift, newCount = newSize >> shift
            if newCount == oldCount { continue }
            var n = oldCount / UInt64(fullWidth)
            while n * UInt64(fullWidth) < newCount {
                out.append(at(level: level, index: n, treeSize: newSize)!)
                n += 1
            }
        }
        return out
    }

    /// Parses a tile path, only in its one canonical spelling.
    public init(path: String) throws {
        let prefix = "tile/"
        guard path.hasPrefix(prefix), path.utf8.count <= 64 else { throw Self.badPath(path) }
        let rest = path.dropFirst(prefix.count)
        guard let slash = rest.firstIndex(of: "/"), let level = Int(rest[..<slash]), String(level) == rest[..<slash] else {
            throw Self.badPath(path)
        }
        let (index, width) = try Self.decode(String(rest[rest.index(after: slash)...]), path: path)
        try self.init(level: level, index: index, width: width)
        guard self.path == path else { throw Self.badPath(path) }
    }

    /// Parses an entry bundle path into its level-0 tile.
    public init(entriesPath path: String) throws {
        let prefix = "tile/entries/"
        guard path.hasPrefix(prefix), path.utf8.count <= 64 else { throw Self.badPath(path) }
        let (index, width) = try Self.decode(String(path.dropFirst(prefix.count)), path: path)
        try self.init(level: 0, index: index, width: width)
        guard entriesPath == path else { throw Self.badPath(path) }
    }

    /// N as three-digit path elements, all but the last prefixed with `x`; then `.p/W` if partial.
    static func encode(index: UInt64, width: Int) -> String {
        var groups: [String] = []
        var n = index
        repeat {
            let digits = String(n % 1000)
            groups.append(String(repeating: "0", count: 3 - digits.count) + digits)
            n /= 1000
        } while n > 0
        let elements = groups.reversed().enumerated().map { i, g in i == groups.count - 1 ? g : "x" + g }
        return elements.joined(separator: "/") + (width < fullWidth ? ".p/\(width)" : "")
    }

    static func decode(_ s: String, path: String) throws -> (UInt64, Int) {
        var indexPart = Substring(s), width = fullWidth
        if let p = s.range(of: ".p/") {
            indexPart = s[..<p.lowerBound]
            let w = s[p.upperBound...]
            guard let v = Int(w), (1..<fullWidth).contains(v) else { throw badPath(path) }
            width = v
        }
        var index: UInt64 = 0
        let elements = indexPart.split(separator: "/", omittingEmptySubsequences: false)
        guard elements.count <= 7 else { throw badPath(path) }
        for (i, e) in elements.enumerated() {
            let digits = i == elements.count - 1 ? e : (e.first == "x" ? e.dropFirst() : "")
            guard digits.count == 3, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let v = UInt64(digits) else {
                throw badPath(path)
            }
            let (m, o1) = index.multipliedReportingOverflow(by: 1000)
            let (sum, o2) = m.addingReportingOverflow(v)
            guard !o1, !o2 else { throw badPath(path) }
            index = sum
        }
        return (index, width)
    }

    static func badPath(_ path: String) -> VouchError {
        VouchError(.invalidValue, "not a tile path: \(path.prefix(80))", context: ["field": "tile_path"])
    }
}

/// A tile's contents: its hashes, each `MerkleHasher.hashSize` bytes, concatenated.
public enum TileContent {
    /// The tile's bytes, from stored subtree hashes.
    public static func bytes(of tile: Tile, from reader: any NodeHashReader) throws -> [UInt8] {
        let level = Tile.height * tile.level
        let first = tile.index * UInt64(Tile.fullWidth)
        let nodes = (0..<UInt64(tile.width)).map { TreeNode(level: level, index: first + $0) }
        return try reader.hashes(nodes).flatMap { $0 }
    }

    /// Splits a tile's bytes into its hashes; exactly `tile.width` of them or it throws.
    public static func hashes(of tile: Tile, bytes: [UInt8]) throws -> [[UInt8]] {
        let size = MerkleHasher.hashSize
        guard bytes.count == tile.width * size else {
            throw VouchError(.invalidValue, "tile \(tile.path) has \(bytes.count) bytes, not \(tile.width * size)",
                             context: ["field": "tile"])
        }
        return stride(from: 0, to: bytes.count, by: size).map { Array(bytes[$0..<($0 + size)]) }
    }
}

/// The tlog-tiles entry bundle: each entry a big-endian uint16 length and its bytes; a full
/// bundle holds 256 entries, a partial one as many as its width.
public enum EntryBundle {
    public static func encode(_ entries: [[UInt8]]) throws -> [UInt8] {
        guard (1...Tile.fullWidth).contains(entries.count), entries.allSatisfy({ $0.count <= Int(UInt16.max) }) else {
            throw VouchError(.invalidValue, "an entry bundle holds 1 to 256 entries of at most 65535 bytes",
                             context: ["field": "entry_bundle"])
        }
        var w = ByteWriter()
        for e in entries { w.sized(e) }
        return w.bytes
    }

    /// Exactly `tile.width` entries and nothing after them.
    public static func decode(_ bytes: [UInt8], tile: Tile) throws -> [[UInt8]] {
        guard tile.level == 0 else { throw VouchError(.invalidValue, "entry bundles are level 0", context: ["field": "entry_bundle"]) }
        var r = ByteReader(bytes)
        var out: [[UInt8]] = []
        out.reserveCapacity(tile.width)
        for i in 0..<tile.width { out.append(try r.sized("entry bundle entry \(i)")) }
        try r.expectEnd("entry bundle")
        return out
    }
}

/// Where tiles come from (the broker's store, a directory, a mirror). Answers every tile asked,
/// in order, with exactly `width` hashes: a reader holding a wider tile of the same level and
/// index answers its first `width` hashes (hashes never change once written).
public protocol TileReader {
    func readTiles(_ tiles: [Tile]) throws -> [[UInt8]]
}

/// Subtree hashes for a tree of `treeSize` entries, read from tiles: a node at level 8L + s is
/// computed from the 2^s level-8L hashes under it in one tile. Lets `MerkleProver` compute roots
/// and proofs from tiles.
public struct TileHashReader: NodeHashReader {
    public let treeSize: UInt64
    public let tiles: any TileReader
    public let hasher: MerkleHasher

    public init(treeSize: UInt64, tiles: any TileReader, hasher: MerkleHasher) {
        self.treeSize = treeSize
        self.tiles = tiles
        self.hasher = hasher
    }

    public func hashes(_ nodes: [TreeNode]) throws -> [[UInt8]] {
        var located: [(tile: Tile, offset: Int, count: Int)] = []
        for node in nodes {
            let tileLevel = node.level / Tile.height, sub = node.level % Tile.height
            let first = node.index << UInt64(sub)                 // at tree level 8 * tileLevel
            let count = 1 << sub
            guard node.start + (UInt64(1) << UInt64(node.level)) <= treeSize,
                  let tile = Tile.at(level: tileLevel, index: first / UInt64(Tile.fullWidth), treeSize: treeSize) else {
                throw VouchError(.notFound, "node \(node) is not in a tree of \(treeSize) entries")
            }
            located.append((tile, Int(first % UInt64(Tile.fullWidth)), count))
        }
        var wanted: [Tile] = []
        var seen: [Tile: Int] = [:]
        for l in located where seen[l.tile] == nil {
            seen[l.tile] = wanted.count
            wanted.append(l.tile)
        }
        let data = try tiles.readTiles(wanted)
        guard data.count == wanted.count else {
            throw VouchError(.internalError, "the tile reader answered \(data.count) tiles for \(wanted.count)")
        }
        let split = try zip(wanted, data).map { try TileContent.hashes(of: $0, bytes: $1) }
        return located.map { l in
            var row = Array(split[seen[l.tile]!][l.offset..<(l.offset + l.count)])
            while row.count > 1 {
                row = stride(from: 0, to: row.count, by: 2).map { hasher.nodeHash(row[$0], row[$0 + 1]) }
            }
            return row[0]
        }
    }
}
