import Foundation
import VouchCore
import VouchCrypto
import VouchTLog

/// A C2SP tlog-tiles log written as static files into a directory, the way a log server or a
/// mirror lays it out: `checkpoint`, `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`. For the
/// log client's tests and third-party interop; independent of the broker's log.
public struct StaticTileLog {
    public static let hasher = MerkleHasher(sha256: { Crypto.sha256($0) })
    public let directory: URL
    public let signer: NoteSigner
    public private(set) var tree = MemoryMerkleTree(hasher: StaticTileLog.hasher)
    public private(set) var entries: [[UInt8]] = []

    public init(directory: URL, signer: NoteSigner) {
        self.directory = directory
        self.signer = signer
    }

    public static func logSigner(_ name: String = "example.org/vouch-log") throws -> NoteSigner {
        try NoteSigner(name: name, privateKey: Ed25519PrivateKey.generate())
    }

    /// Appends `count` entries whose bytes start with `tag`.
    public mutating func append(_ count: Int, tag: String = "entry") {
        for _ in 0..<count { append(entry: Array("\(tag) \(entries.count)\n".utf8)) }
    }

    /// Appends one entry, byte for byte.
    public mutating func append(entry: [UInt8]) {
        entries.append(entry)
        tree.append(entry: entry)
    }

    /// The signed checkpoint of the current tree.
    public func note(signer: NoteSigner? = nil) throws -> String {
        let body = try CheckpointBody(origin: self.signer.name, size: tree.size, rootHash: try tree.prover.root(size: tree.size))
        return try SignedNote.sign(body.text, with: [signer ?? self.signer])
    }

    /// Writes every tile and entry bundle of the current tree, then the checkpoint.
    @discardableResult
    public func publish() throws -> String {
        for tile in try Tile.newTiles(oldSize: 0, newSize: tree.size) {
            try write(TileContent.bytes(of: tile, from: tree), tile.path)
            if tile.level == 0 {
                let first = Int(tile.index) * Tile.fullWidth
                try write(EntryBundle.encode(Array(entries[first..<(first + tile.width)])), tile.entriesPath)
            }
        }
        let n = try note()
        try write(Array(n.utf8), "checkpoint")
        return n
    }

    public func write(_ bytes: [UInt8], _ path: String) throws {
        let url = directory.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }

    public func writeCheckpoint(_ note: String) throws { try write(Array(note.utf8), "checkpoint") }
}
