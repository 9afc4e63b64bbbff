import Foundation
import XCTest
import VouchCore
import VouchTLog

/// Tiles served from a dictionary of path -> bytes, as a log directory would; a reader may also
/// hold a wider tile and answer its prefix.
struct DictionaryTileReader: TileReader {
    var files: [String: [UInt8]]
    var reads: [[Tile]] = []

    func readTiles(_ tiles: [Tile]) throws -> [[UInt8]] {
        try tiles.map { t in
            if let exact = files[t.path] { return exact }
            let full = try Tile(level: t.level, index: t.index, width: Tile.fullWidth)
            guard let wide = files[full.path] ?? (t.width..<Tile.fullWidth).lazy
                .compactMap({ self.files[(try! Tile(level: t.level, index: t.index, width: $0)).path] }).first else {
                throw VouchError(.notFound, "no tile \(t.path)")
            }
            return Array(wide.prefix(t.width * MerkleHasher.hashSize))
        }
    }
}

final class TileTests: XCTestCase {
    func testPathsFollowTheSpecExamples() throws {
        XCTAssertEqual(try Tile(level: 0, index: 1_234_067, width: 256).path, "tile/0/x001/x234/067")
        XCTAssertEqual(try Tile(level: 0, index: 1_234_067, width: 8).path, "tile/0/x001/x234/067.p/8")
        XCTAssertEqual(try Tile(level: 1, index: 0, width: 256).path, "tile/1/000")
        XCTAssertEqual(try Tile(level: 2, index: 5, width: 1).path, "tile/2/005.p/1")
        XCTAssertEqual(try Tile(level: 0, index: 1000, width: 256).path, "tile/0/x001/000")
        XCTAssertEqual(try Tile(level: 0, index: 1_234_067, width: 256).entriesPath, "tile/entries/x001/x234/067")
        XCTAssertEqual(try Tile(level: 0, index: 7, width: 200).entriesPath, "tile/entries/007.p/200")
    }

    func testPathsRoundTripAndOnlyTheCanonicalSpellingParses() throws {
        for index in [0, 1, 999, 1000, 1_234_067, 999_999_999, UInt64(1 << 32) - 1] as [UInt64] {
            for width in [1, 8, 255, 256] {
                let t = try Tile(level: 0, index: index, width: width)
                XCTAssertEqual(try Tile(path: t.path), t)
                XCTAssertEqual(try Tile(entriesPath: t.entriesPath), t)
            }
        }
        for bad in ["tile/0/1", "tile/0/0001", "tile/0/x000/001", "tile/0/001/002", "tile/0/x001", "tile/0/001.p/256",
                    "tile/0/001.p/0", "tile/0/001.p/08", "tile/00/001", "tile/6/000", "tile/-1/000", "tile/0/y001/002",
                    "tile/0/001.p/", "tile/0/001/", "/tile/0/001", "tile/0/x004/x294/967/296", "tile/entries/001",
                    "tile/0/+01", "tile/0/00a", "tile/1/x016/x777/216", "tile/0/٠٠١"] {
            XCTAssertThrowsError(try Tile(path: bad), bad)
        }
        for bad in ["tile/entries/1", "tile/entries/001.p/256", "tile/0/001", "tile/entries/x000/001"] {
            XCTAssertThrowsError(try Tile(entriesPath: bad), bad)
        }
        XCTAssertThrowsError(try Tile(level: 0, index: 0, width: 0))
        XCTAssertThrowsError(try Tile(level: 0, index: 0, width: 257))
        XCTAssertThrowsError(try Tile(level: 0, index: 1 << 32, width: 1))   // past 2^40 entries
    }

    func testTileCoordinatesForATreeSize() throws {
        XCTAssertNil(Tile.at(level: 0, index: 0, treeSize: 0))
        XCTAssertEqual(Tile.at(level: 0, index: 0, treeSize: 5)?.width, 5)
        XCTAssertEqual(Tile.at(level: 0, index: 0, treeSize: 300)?.width, 256)
        XCTAssertEqual(Tile.at(level: 0, index: 1, treeSize: 300)?.width, 44)
        XCTAssertNil(Tile.at(level: 0, index: 2, treeSize: 300))
        XCTAssertNil(Tile.at(level: 1, index: 0, treeSize: 255))
        XCTAssertEqual(Tile.at(level: 1, index: 0, treeSize: 70000)?.width, 256)
        XCTAssertEqual(Tile.at(level: 1, index: 1, treeSize: 70000)?.width, 17)
        XCTAssertEqual(Tile.at(level: 5, index: 0, treeSize: TLogLimits.maxTreeSize)?.width, 1)
        XCTAssertEqual(try Tile.newTiles(oldSize: 0, newSize: 300).map(\.path), ["tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1"])
        XCTAssertEqual(try Tile.newTiles(oldSize: 300, newSize: 300), [])
        XCTAssertThrowsError(try Tile.newTiles(oldSize: 301, newSize: 300))
    }

    /// Roots and proofs computed from tiles equal the ones computed from the tree itself, for
    /// every size on the way, with tiles published as the tree grew (partial ones superseded).
    func testATreeReadFromTilesEqualsTheDirectTree() throws {
        let tree = numberedTree(1100)
        var files: [String: [UInt8]] = [:]
        var published: UInt64 = 0
        for size in [1, 2, 255, 256, 257, 600, 1024, 1100] as [UInt64] {
            for t in try Tile.newTiles(oldSize: published, newSize: size) {
                files[t.path] = try TileContent.bytes(of: t, from: tree)
            }
            published = size
        }
        let reader = DictionaryTileReader(files: files)
        for size in [1, 2, 3, 255, 256, 257, 511, 512, 600, 1023, 1024, 1025, 1100] as [UInt64] {
            let fromTiles = MerkleProver(hasher: sha256Hasher, reader: TileHashReader(treeSize: size, tiles: reader, hasher: sha256Hasher))
            XCTAssertEqual(try fromTiles.root(size: size), try tree.prover.root(size: size), "size \(size)")
            for i in [0, size / 2, size - 1] {
                XCTAssertEqual(try fromTiles.inclusionProof(index: i, size: size), try tree.prover.inclusionProof(index: i, size: size))
            }
            for old in [1, size / 3 + 1, size] {
                XCTAssertEqual(try fromTiles.consistencyProof(old: old, new: size), try tree.prover.consistencyProof(old: old, new: size))
            }
        }
        // A tile of the wrong length, or a node the tree does not have yet, throws.
        var short = files
        short["tile/1/000.p/1"] = Array(files["tile/1/000.p/1"]!.dropLast())
        let bad = MerkleProver(hasher: sha256Hasher, reader: TileHashReader(treeSize: 300, tiles: DictionaryTileReader(files: short), hasher: sha256Hasher))
        assertCode(.invalidValue, try bad.root(size: 300))
        let early = MerkleProver(hasher: sha256Hasher, reader: TileHashReader(treeSize: 300, tiles: reader, hasher: sha256Hasher))
        assertCode(.notFound, try early.root(size: 301))
    }

    func testTileContentIsConcatenatedHashes() throws {
        let tree = numberedTree(10)
        let tile = try Tile(level: 0, index: 0, width: 10)
        let bytes = try TileContent.bytes(of: tile, from: tree)
        XCTAssertEqual(bytes, tree.levels[0].flatMap { $0 })
        XCTAssertEqual(try TileContent.hashes(of: tile, bytes: bytes), tree.levels[0])
        assertCode(.invalidValue, try TileContent.hashes(of: tile, bytes: bytes + [0]))
    }

    func testEntryBundlesRoundTripAndRefuseAnythingElse() throws {
        let entries: [[UInt8]] = [[], [1], Array(repeating: 7, count: 300), Array(repeating: 9, count: 65535)]
        let bundle = try EntryBundle.encode(entries)
        XCTAssertEqual(Array(bundle.prefix(5)), [0, 0, 0, 1, 1])
        let tile = try Tile(level: 0, index: 3, width: 4)
        XCTAssertEqual(try EntryBundle.decode(bundle, tile: tile), entries)
        assertCode(.trailingBytes, try EntryBundle.decode(bundle + [0], tile: tile))
        assertCode(.truncated, try EntryBundle.decode(Array(bundle.dropLast()), tile: tile))
        assertCode(.truncated, try EntryBundle.decode(bundle, tile: try Tile(level: 0, index: 3, width: 5)))
        assertCode(.trailingBytes, try EntryBundle.decode(bundle, tile: try Tile(level: 0, index: 3, width: 3)))
        assertCode(.invalidValue, try EntryBundle.decode(bundle, tile: try Tile(level: 1, index: 0, width: 4)))
        assertCode(.invalidValue, try EntryBundle.encode([Array(repeating: 0, count: 65536)]))
        assertCode(.invalidValue, try EntryBundle.encode([]))
        assertCode(.invalidValue, try EntryBundle.encode(Array(repeating: [], count: 257)))
        let full = try EntryBundle.encode(Array(repeating: [0xab], count: 256))
        XCTAssertEqual(try EntryBundle.decode(full, tile: try Tile(level: 0, index: 0, width: 256)).count, 256)
    }
}
