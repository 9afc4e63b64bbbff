import VouchCore

/// An entry whose inclusion in a tree of `size` entries with root `root` was proven.
public struct VerifiedInclusion: Equatable, Sendable {
    public let index: UInt64
    public let size: UInt64
    public let leafHash: [UInt8]
    public let root: [UInt8]
}

/// A tree of `newSize` entries (root `newRoot`) proven to extend one of `oldSize` (`oldRoot`).
public struct VerifiedConsistency: Equatable, Sendable {
    public let oldSize: UInt64
    public let oldRoot: [UInt8]
    public let newSize: UInt64
    public let newRoot: [UInt8]
}

/// RFC 9162 proof verification (sections 2.1.3.2 and 2.1.4.2). Every input is checked for size
/// first (hash lengths, tree size, proof length); any failure throws `tlog_proof_invalid`.
public struct MerkleVerifier: Sendable {
    public let hasher: MerkleHasher

    public init(hasher: MerkleHasher) {
        self.hasher = hasher
    }

    public func verifyInclusion(leafHash: [UInt8], index: UInt64, size: UInt64, proof: [[UInt8]],
                                root: [UInt8]) throws -> VerifiedInclusion {
        try checkHashes([leafHash, root] + proof, proofCount: proof.count, size: size)
        guard index < size else { throw refusal("index \(index) is not in a tree of \(size) entries") }
        var fn = index, sn = size - 1
        var r = leafHash
        for p in proof {
            guard sn != 0 else { throw refusal("the inclusion proof is too long") }
            if fn & 1 == 1 || fn == sn {
                r = hasher.nodeHash(p, r)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
                }
            } else {
                r = hasher.nodeHash(r, p)
            }
            fn >>= 1; sn >>= 1
        }
        guard sn == 0 else { throw refusal("the inclusion proof is too short") }
        guard r == root else { throw refusal("the inclusion proof does not lead to the root") }
        return VerifiedInclusion(index: index, size: size, leafHash: leafHash, root: root)
    }

    public func verifyConsistency(oldSize: UInt64, oldRoot: [UInt8], newSize: UInt64, newRoot: [UInt8],
                                  proof: [[UInt8]]) throws -> VerifiedConsistency {
        try checkHashes([oldRoot, newRoot] + proof, proofCount: proof.count, size: newSize)
        guard oldSize > 0, oldSize <= newSize else {
            throw refusal("no consistency proof from size \(oldSize) to size \(newSize)")
        }
        let verified = VerifiedConsistency(oldSize: oldSize, oldRoot: oldRoot, newSize: newSize, newRoot: newRoot)
        if oldSize == newSize {
            guard proof.isEmpty else { throw refusal("a consistency proof between equal sizes is empty") }
            guard oldRoot == newRoot else { throw refusal("two roots of the same size differ") }
            return verified
        }
        guard !proof.isEmpty else { throw refusal("the consistency proof is empty") }
        var path = proof
        if oldSize & (oldSize - 1) == 0 { path.insert(oldRoot, at: 0) }
        var fn = oldSize - 1, sn = newSize - 1
        while fn & 1 == 1 { fn >>= 1; sn >>= 1 }
        var fr = path[0], sr = path[0]
        for c in path.dropFirst() {
            guard sn != 0 else { throw refusal("the consistency proof is too long") }
            if fn & 1 == 1 || fn == sn {
                fr = hasher.nodeHash(c, fr)
                sr = hasher.nodeHash(c, sr)
                if fn & 1 == 0 {
                    while fn & 1 == 0 && fn != 0 { fn >>= 1; sn >>= 1 }
                }
            } else {
                sr = hasher.nodeHash(sr, c)
            }
            fn >>= 1; sn >>= 1
        }
        guard sn == 0 else { throw refusal("the consistency proof is too short") }
        guard fr == oldRoot else { throw refusal("the consistency proof does not lead to the old root") }
        guard sr == newRoot else { throw refusal("the consistency proof does not lead to the new root") }
        return verified
    }

    private func checkHashes(_ hashes: [[UInt8]], proofCount: Int, size: UInt64) throws {
        guard size <= TLogLimits.maxTreeSize else { throw refusal("tree size \(size) is over the limit") }
        guard proofCount <= TLogLimits.maxProofHashes else { throw refusal("the proof has \(proofCount) hashes") }
        guard hashes.allSatisfy({ $0.count == MerkleHasher.hashSize }) else {
            throw refusal("a hash is not \(MerkleHasher.hashSize) bytes")
        }
    }

    private func refusal(_ message: String) -> VouchError {
        VouchError(.tlogProofInvalid, message)
    }
}
