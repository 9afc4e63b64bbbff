import VouchCore

/// RFC 6962 / RFC 9162 (section 2.1.1) Merkle tree hashing over an injected SHA-256: this target
/// is pure, so the caller passes the digest (VouchCrypto's `Crypto.digest(.sha256, _)`), as
/// VouchEventLog takes a `Digester`.
public struct MerkleHasher: Sendable {
    /// The size of every hash in the log (SHA-256).
    public static let hashSize = 32
    private let sha256: @Sendable ([UInt8]) -> [UInt8]

    public init(sha256: @escaping @Sendable ([UInt8]) -> [UInt8]) {
        self.sha256 = sha256
    }

    /// H(0x00 || data): the hash of one log entry.
    public func leafHash(_ data: [UInt8]) -> [UInt8] {
        hash([0x00] + data)
    }

    /// H(0x01 || left || right): an interior node.
    public func nodeHash(_ left: [UInt8], _ right: [UInt8]) -> [UInt8] {
        var input = [UInt8]()
        input.reserveCapacity(1 + left.count + right.count)
        input.append(0x01)
        input += left
        input += right
        return hash(input)
    }

    /// H(""): the root of the empty tree.
    public var emptyRoot: [UInt8] { hash([]) }

    private func hash(_ input: [UInt8]) -> [UInt8] {
        let out = sha256(input)
        precondition(out.count == Self.hashSize, "the injected SHA-256 returned \(out.count) bytes")
        return out
    }
}

extension ErrorCode {
    /// A Merkle inclusion or consistency proof that does not prove what it claims (wrong length,
    /// wrong hashes, sizes out of range).
    public static let tlogProofInvalid = ErrorCode("tlog_proof_invalid", status: 422)
}

/// The bounds every tree operation checks before it does any work.
public enum TLogLimits {
    /// The largest tree size handled: 2^40 entries.
    public static let maxTreeSize: UInt64 = 1 << 40
    /// The longest proof accepted: an inclusion proof in a 2^40 tree has at most 40 hashes, a
    /// consistency proof at most 2 * 40.
    public static let maxProofHashes = 80
}
