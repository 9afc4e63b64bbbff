import Foundation
import VouchCore

/// The body (note text) of a C2SP tlog-checkpoint: origin, tree size, root hash, then optional
/// extension lines, each line ending in a newline. The signatures around it belong to the
/// signed note (VouchCrypto's signed-note type); this is only the text they sign.
public struct CheckpointBody: Equatable, Sendable {
    /// Longest note text parsed (a policy bound: the spec sets none; real checkpoints are ~100 bytes).
    public static let maxTextBytes = 16 * 1024
    public let origin: String
    public let size: UInt64
    public let rootHash: [UInt8]
    public let extensions: [String]

    public init(origin: String, size: UInt64, rootHash: [UInt8], extensions: [String] = []) throws {
        guard !origin.isEmpty, Self.isLine(origin) else { throw Self.bad("the origin is empty or not one line") }
        guard size <= TLogLimits.maxTreeSize else { throw Self.bad("tree size \(size) is over the limit") }
        guard rootHash.count == MerkleHasher.hashSize else { throw Self.bad("the root hash is not \(MerkleHasher.hashSize) bytes") }
        guard extensions.allSatisfy({ !$0.isEmpty && Self.isLine($0) }) else { throw Self.bad("an extension line is empty or not one line") }
        self.origin = origin
        self.size = size
        self.rootHash = rootHash
        self.extensions = extensions
        guard text.utf8.count <= Self.maxTextBytes else { throw Self.bad("the checkpoint is over \(Self.maxTextBytes) bytes") }
    }

    /// Parses note text strictly: at least three non-empty lines, each ending in a newline; no
    /// control character but the newlines; the size in decimal without leading zeroes; the root
    /// hash in canonical standard base64 of exactly 32 bytes.
    public init(text: String) throws {
        guard text.utf8.count <= Self.maxTextBytes else { throw Self.bad("the checkpoint is over \(Self.maxTextBytes) bytes") }
        guard text.hasSuffix("\n") else { throw Self.bad("the checkpoint does not end with a newline") }
        let lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 3 else { throw Self.bad("a checkpoint has at least three lines") }
        guard let size = parseDecimal(lines[1]) else { throw Self.bad("the tree size is not a decimal number") }
        let root: [UInt8]
        do { root = try Base64.decode(lines[2], field: "root_hash") } catch { throw Self.bad("the root hash is not base64") }
        try self.init(origin: lines[0], size: size, rootHash: root, extensions: Array(lines.dropFirst(3)))
    }

    /// The note text: every line followed by a newline.
    public var text: String {
        ([origin, String(size), Base64.encode(rootHash)] + extensions).map { $0 + "\n" }.joined()
    }

    /// One line: nothing below U+0020 (signed-note text allows no ASCII control character but
    /// the newlines between lines).
    static func isLine(_ s: String) -> Bool {
        s.unicodeScalars.allSatisfy { $0.value >= 0x20 }
    }

    static func bad(_ message: String) -> VouchError {
        VouchError(.invalidValue, message, context: ["field": "checkpoint"])
    }
}

/// An ASCII decimal with no sign, no leading zeroes (except "0") and at most 20 digits.
func parseDecimal(_ s: String) -> UInt64? {
    guard !s.isEmpty, s.utf8.count <= 20, s.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
          s == "0" || !s.hasPrefix("0") else { return nil }
    return UInt64(s)
}
