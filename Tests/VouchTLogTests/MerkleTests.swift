import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchTLog
import VouchTPMWire
import VouchTestSupport

let sha256Hasher = MerkleHasher(sha256: { Crypto.digest(.sha256, $0) })

func h(_ hex: String) -> [UInt8] { try! Hex.decode(hex) }

/// The certificate-transparency reference tree: eight entries, the roots of every prefix and
/// proofs published with RFC 6962 implementations.
enum CTVectors {
    static let entries: [[UInt8]] = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f"].map(h)
    static let roots: [[UInt8]] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ].map(h)
    static let inclusion: [(index: UInt64, size: UInt64, proof: [String])] = [
        (0, 1, []),
        (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
        (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
        (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    ]
    static let consistency: [(old: UInt64, new: UInt64, proof: [String])] = [
        (1, 1, []),
        (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
        (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
        (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    ]

    static func tree(_ n: Int) -> MemoryMerkleTree {
        var t = MemoryMerkleTree(hasher: sha256Hasher)
        for e in entries.prefix(n) { t.append(entry: e) }
        return t
    }
}

/// A tree of n entries with distinct, reproducible contents.
func numberedTree(_ n: Int) -> MemoryMerkleTree {
    var t = MemoryMerkleTree(hasher: sha256Hasher)
    for i in 0..<n { t.append(entry: Array("entry \(i)".utf8)) }
    return t
}

func assertCode<T>(_ code: ErrorCode, _ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        XCTAssertEqual((error as? VouchError)?.code, code, "\(error)", file: file, line: line)
    }
}

final class MerkleTests: XCTestCase {
    let verifier = MerkleVerifier(hasher: sha256Hasher)

    func testEmptyTreeRootIsTheHashOfNothing() throws {
        XCTAssertEqual(sha256Hasher.emptyRoot, CTVectors.roots[0])
        XCTAssertEqual(try MemoryMerkleTree(hasher: sha256Hasher).prover.root(size: 0), CTVectors.roots[0])
    }

    func testRootsOfEveryPrefixMatchTheReferenceTree() throws {
        let tree = CTVectors.tree(8)
        for n in 0...8 {
            XCTAssertEqual(try tree.prover.root(size: UInt64(n)), CTVectors.roots[n], "size \(n)")
            XCTAssertEqual(try CTVectors.tree(n).prover.root(size: UInt64(n)), CTVectors.roots[n], "size \(n)")
        }
        XCTAssertEqual(sha256Hasher.leafHash([]), CTVectors.roots[1])
    }

    func testInclusionProofsMatchTheReferenceVectors() throws {
        for v in CTVectors.inclusion {
            let tree = CTVectors.tree(Int(v.size))
            let proof = try tree.prover.inclusionProof(index: v.index, size: v.size)
            XCTAssertEqual(proof, v.proof.map(h), "\(v.index) in \(v.size)")
            let leaf = sha256Hasher.leafHash(CTVectors.entries[Int(v.index)])
            XCTAssertNoThrow(try verifier.verifyInclusion(leafHash: leaf, index: v.index, size: v.size, proof: proof,
                                                          root: CTVectors.roots[Int(v.size)]))
        }
    }

    func testConsistencyProofsMatchTheReferenceVectors() throws {
        let tree = CTVectors.tree(8)
        for v in CTVectors.consistency {
            let proof = try tree.prover.consistencyProof(old: v.old, new: v.new)
            XCTAssertEqual(proof, v.proof.map(h), "\(v.old) to \(v.new)")
            XCTAssertNoThrow(try verifier.verifyConsistency(oldSize: v.old, oldRoot: CTVectors.roots[Int(v.old)], newSize: v.new,
                                                            newRoot: CTVectors.roots[Int(v.new)], proof: proof))
        }
    }

    /// Every inclusion proof of every tree up to 64 entries verifies, and flipping a bit of the
    /// proof (every bit up to 32 entries), the leaf or the root makes it refuse.
    func testEveryInclusionProofUpTo64VerifiesAndEveryBitFlipRefuses() throws {
        let tree = numberedTree(64)
        for n in UInt64(1)...64 {
            let root = try tree.prover.root(size: n)
            for i in 0..<n {
                let leaf = tree.levels[0][Int(i)]
                let proof = try tree.prover.inclusionProof(index: i, size: n)
                let ok = try verifier.verifyInclusion(leafHash: leaf, index: i, size: n, proof: proof, root: root)
                XCTAssertEqual(ok.root, root)
                for k in 0..<proof.count {
                    // Every bit up to 32 entries; above, every fifth (all eight bit positions,
                    // across every byte) to keep the test near ten seconds.
                    for bit in stride(from: 0, to: 256, by: n <= 32 ? 1 : 5) {
                        var bad = proof
                        bad[k][bit / 8] ^= 1 << (bit % 8)
                        assertCode(.tlogProofInvalid, try verifier.verifyInclusion(leafHash: leaf, index: i, size: n, proof: bad, root: root))
                    }
                }
                if n <= 16 {
                    for bit in 0..<256 {
                        var badLeaf = leaf, badRoot = root
                        badLeaf[bit / 8] ^= 1 << (bit % 8)
                        badRoot[bit / 8] ^= 1 << (bit % 8)
                        assertCode(.tlogProofInvalid, try verifier.verifyInclusion(leafHash: badLeaf, index: i, size: n, proof: proof, root: root))
                        assertCode(.tlogProofInvalid, try verifier.verifyInclusion(leafHash: leaf, index: i, size: n, proof: proof, root: badRoot))
                    }
                }
                // Another index, a proof one hash short or one too long: refused.
                if n > 1 {
                    assertCode(.tlogProofInvalid, try verifier.verifyInclusion(leafHash: leaf, index: (i + 1) % n, size: n, proof: proof, root: root))
                }
                if !proof.isEmpty {
                    assertCode(.tlogProofInvalid, try verifier.verifyInclusion(leafHash: leaf, index: i, size: n, proof: Array(proof.dropLast()), root: root))
                }
                assertCode(.tlogProofInvalid, try verifier.verifyInclusion(leafHash: leaf, index: i, size: n, proof: proof + [root], root: root))
            }
            assertCode(.tlogProofInvalid, try verifier.verifyInclusion(leafHash: tree.levels[0][0], index: n, size: n, proof: [], root: root))
        }
    }

    /// Every consistency proof between two sizes up to 64 verifies; every bit flip in the proof
    /// or either root refuses.
    func testEveryConsistencyProofUpTo64VerifiesAndEveryBitFlipRefuses() throws {
        let tree = numberedTree(64)
        let roots = try (0...64).map { try tree.prover.root(size: UInt64($0)) }
        for new in UInt64(1)...64 {
            for old in UInt64(1)...new {
                let proof = try tree.prover.consistencyProof(old: old, new: new)
                XCTAssertNoThrow(try verifier.verifyConsistency(oldSize: old, oldRoot: roots[Int(old)], newSize: new,
                                                                newRoot: roots[Int(new)], proof: proof), "\(old) to \(new)")
                for k in 0..<proof.count {
                    for bit in stride(from: 0, to: 256, by: new <= 16 ? 1 : 13) {
                        var bad = proof
                        bad[k][bit / 8] ^= 1 << (bit % 8)
                        assertCode(.tlogProofInvalid, try verifier.verifyConsistency(oldSize: old, oldRoot: roots[Int(old)], newSize: new,
                                                                                     newRoot: roots[Int(new)], proof: bad))
                    }
                }
                for bit in stride(from: 0, to: 256, by: 17) {
                    var badOld = roots[Int(old)], badNew = roots[Int(new)]
                    badOld[bit / 8] ^= 1 << (bit % 8)
                    badNew[bit / 8] ^= 1 << (bit % 8)
                    assertCode(.tlogProofInvalid, try verifier.verifyConsistency(oldSize: old, oldRoot: badOld, newSize: new,
                                                                                 newRoot: roots[Int(new)], proof: proof))
                    assertCode(.tlogProofInvalid, try verifier.verifyConsistency(oldSize: old, oldRoot: roots[Int(old)], newSize: new,
                                                                                 newRoot: badNew, proof: proof))
                }
                if !proof.isEmpty {
                    assertCode(.tlogProofInvalid, try verifier.verifyConsistency(oldSize: old, oldRoot: roots[Int(old)], newSize: new,
                                                                                 newRoot: roots[Int(new)], proof: Array(proof.dropLast())))
                }
                assertCode(.tlogProofInvalid, try verifier.verifyConsistency(oldSize: old, oldRoot: roots[Int(old)], newSize: new,
                                                                             newRoot: roots[Int(new)], proof: proof + [roots[1]]))
            }
        }
    }

    func testBoundsAreCheckedBeforeAnyWork() throws {
        let tree = CTVectors.tree(8)
        let root = CTVectors.roots[8]
        let leaf = tree.levels[0][0]
        assertCode(.tlogProofInvalid, try tree.prover.root(size: TLogLimits.maxTreeSize + 1))
        assertCode(.tlogProofInvalid, try tree.prover.inclusionProof(index: 8, size: 8))
        assertCode(.tlogProofInvalid, try tree.prover.consistencyProof(old: 0, new: 8))
        assertCode(.tlogProofInvalid, try tree.prover.consistencyProof(old: 9, new: 8))
        assertCode(.notFound, try tree.prover.root(size: 9))
        assertCode(.tlogProofInvalid, try verifier.verifyInclusion(leafHash: leaf, index: 0, size: TLogLimits.maxTreeSize + 1,
                                                                   proof: [], root: root))
        assertCode(.tlogProofInvalid, try verifier.verifyInclusion(leafHash: leaf, index: 0, size: 8,
                                                                   proof: Array(repeating: root, count: TLogLimits.maxProofHashes + 1), root: root))
        assertCode(.tlogProofInvalid, try verifier.verifyInclusion(leafHash: Array(leaf.prefix(31)), index: 0, size: 8, proof: [], root: root))
        assertCode(.tlogProofInvalid, try verifier.verifyConsistency(oldSize: 0, oldRoot: CTVectors.roots[0], newSize: 8, newRoot: root, proof: []))
        assertCode(.tlogProofInvalid, try verifier.verifyConsistency(oldSize: 8, oldRoot: root, newSize: 6, newRoot: CTVectors.roots[6], proof: []))
        assertCode(.tlogProofInvalid, try verifier.verifyConsistency(oldSize: 8, oldRoot: root, newSize: 8, newRoot: root, proof: [root]))
        assertCode(.tlogProofInvalid, try verifier.verifyConsistency(oldSize: 8, oldRoot: CTVectors.roots[7], newSize: 8, newRoot: root, proof: []))
        XCTAssertNoThrow(try verifier.verifyConsistency(oldSize: 8, oldRoot: root, newSize: 8, newRoot: root, proof: []))
    }

    /// Seeded random mutations of valid proofs (a hash replaced, two swapped, one dropped or
    /// repeated, the index or size moved) are refused unless they leave the proof unchanged.
    func testSeededMutationsAreRefused() throws {
        var rng = SplitMix64(seed: 0x7106_2026)
        let tree = numberedTree(300)
        for _ in 0..<400 {
            let n = UInt64.random(in: 2...300, using: &rng)
            let i = UInt64.random(in: 0..<n, using: &rng)
            let root = try tree.prover.root(size: n)
            let leaf = tree.levels[0][Int(i)]
            let proof = try tree.prover.inclusionProof(index: i, size: n)
            var bad = proof, badIndex = i
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: bad[Int.random(in: 0..<bad.count, using: &rng)] = root
            case 1: if bad.count > 1 { bad.swapAt(0, bad.count - 1) } else { bad = [] }
            case 2: bad.insert(bad[0], at: 0)
            default: badIndex = (i + UInt64.random(in: 1..<n, using: &rng)) % n
            }
            if bad == proof && badIndex == i { continue }
            do {
                _ = try verifier.verifyInclusion(leafHash: leaf, index: badIndex, size: n, proof: bad, root: root)
                // Only a swap of two equal hashes could leave the proof valid; none are equal here.
                XCTFail("a mutated proof verified: \(i) in \(n)")
            } catch let e as VouchError {
                XCTAssertEqual(e.code, .tlogProofInvalid)
            }
        }
    }
}
