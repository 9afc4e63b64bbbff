import Foundation
import XCTest
import VouchCore
import VouchTLog

final class CheckpointTests: XCTestCase {
    /// The example in C2SP tlog-checkpoint.
    let specBody = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

    func testTheSpecExampleParsesAndFormatsBackByteForByte() throws {
        let body = try CheckpointBody(text: specBody)
        XCTAssertEqual(body.origin, "example.com/behind-the-sofa")
        XCTAssertEqual(body.size, 20_852_163)
        XCTAssertEqual(Base64.encode(body.rootHash), "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
        XCTAssertEqual(body.extensions, [])
        XCTAssertEqual(body.text, specBody)
        let withExtensions = specBody + "ext one\nanother: 2\n"
        XCTAssertEqual(try CheckpointBody(text: withExtensions).extensions, ["ext one", "another: 2"])
        XCTAssertEqual(try CheckpointBody(text: withExtensions).text, withExtensions)
        let empty = try CheckpointBody(origin: "log", size: 0, rootHash: sha256Hasher.emptyRoot)
        XCTAssertEqual(empty.text, "log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
        XCTAssertEqual(try CheckpointBody(text: empty.text), empty)
    }

    func testAnythingButTheExactLineRulesIsRefused() throws {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
        let bad = [
            "", "\n", "example.com/log\n5\n\(root)",                 // no final newline
            "example.com/log\n5\n", "example.com/log\n5\n\(root)\n\n",  // two lines; an empty extension line
            "\n5\n\(root)\n",                                           // empty origin
            "example.com/log\n05\n\(root)\n", "example.com/log\n+5\n\(root)\n", "example.com/log\n 5\n\(root)\n",
            "example.com/log\n5 \n\(root)\n", "example.com/log\n\n\(root)\n", "example.com/log\n0x5\n\(root)\n",
            "example.com/log\n99999999999999999999999\n\(root)\n",     // over UInt64
            "example.com/log\n1099511627777\n\(root)\n",                // over 2^40
            "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n", // no padding
            "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n", // non-zero pad bits
            "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom_Xajj7h2fB2MPA3j2jxq2I=\n", // URL alphabet
            "example.com/log\n5\nAAAA\n",                                // not 32 bytes
            "example.com/log\r\n5\n\(root)\n", "example.com/log\n5\r\n\(root)\n", "example.com/\tlog\n5\n\(root)\n",
            "example.com/log\n5\n\(root)\next\u{0}\n",
            "example.com/log\n٥\n\(root)\n",                             // a non-ASCII digit
            String(repeating: "a", count: CheckpointBody.maxTextBytes) + "\n5\n\(root)\n",
        ]
        for text in bad {
            assertCode(.invalidValue, try CheckpointBody(text: text))
        }
        XCTAssertNoThrow(try CheckpointBody(text: "example.com/log\n0\n\(root)\n"))
        XCTAssertNoThrow(try CheckpointBody(text: "ünïcode origin\n1099511627776\n\(root)\n\u{85}\u{7f}\n"))
        assertCode(.invalidValue, try CheckpointBody(origin: "a\nb", size: 1, rootHash: sha256Hasher.emptyRoot))
        assertCode(.invalidValue, try CheckpointBody(origin: "a", size: 1, rootHash: [1, 2]))
        assertCode(.invalidValue, try CheckpointBody(origin: "a", size: 1, rootHash: sha256Hasher.emptyRoot, extensions: [""]))
    }
}

final class ProofFileTests: XCTestCase {
    let note = "example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n— example.com/fancylog hI2DJwAAAA==\n— witness1.example mJirIkljAAA=\n"
    let hashes = ["gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=", "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=",
                  "EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs="]

    func testTheSpecShapeParsesAndFormatsBack() throws {
        let text = "c2sp.org/tlog-proof@v1\nextra YWdlLXYxLjIuMQ==\nindex 73894\n" + hashes.map { $0 + "\n" }.joined() + "\n" + note
        let file = try TLogProofFile(text: text)
        XCTAssertEqual(file.extra, Array("age-v1.2.1".utf8))
        XCTAssertEqual(file.index, 73894)
        XCTAssertEqual(file.proof.map(Base64.encode), hashes)
        XCTAssertEqual(file.signedCheckpoint, note)
        XCTAssertEqual(file.text, text)
        let plain = "c2sp.org/tlog-proof@v1\nindex 0\n\n" + note
        let p = try TLogProofFile(text: plain)
        XCTAssertNil(p.extra)
        XCTAssertEqual(p.proof, [])
        XCTAssertEqual(p.text, plain)
        // The checkpoint part is the note, whose body is a checkpoint.
        XCTAssertEqual(try CheckpointBody(text: String(note[..<note.range(of: "\n\n")!.lowerBound]) + "\n").size, 109482)
    }

    func testMalformedProofFilesAreRefused() throws {
        let h = hashes[0]
        let bad = [
            "", "c2sp.org/tlog-proof@v1\nindex 0\n",                              // no checkpoint
            "c2sp.org/tlog-proof@v2\nindex 0\n\n" + note, "C2SP.org/tlog-proof@v1\nindex 0\n\n" + note,
            "c2sp.org/tlog-proof@v1\n\n" + note,                                   // no index
            "c2sp.org/tlog-proof@v1\nindex 01\n\n" + note, "c2sp.org/tlog-proof@v1\nindex -1\n\n" + note,
            "c2sp.org/tlog-proof@v1\nindex  1\n\n" + note, "c2sp.org/tlog-proof@v1\nindex 1099511627776\n\n" + note,
            "c2sp.org/tlog-proof@v1\nindex 1\nextra YQ==\n\n" + note,              // extra after index
            "c2sp.org/tlog-proof@v1\nextra \nindex 1\n\n" + note,                  // empty extra
            "c2sp.org/tlog-proof@v1\nextra YQ\nindex 1\n\n" + note,                // unpadded
            "c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\n" + note,                    // not a SHA-256 hash
            "c2sp.org/tlog-proof@v1\nindex 1\n\(h) \n\n" + note,
            "c2sp.org/tlog-proof@v1\nindex 1\n" + String(repeating: h + "\n", count: TLogLimits.maxProofHashes + 1) + "\n" + note,
            "c2sp.org/tlog-proof@v1\nindex 1\n\n",                                 // empty checkpoint
            "c2sp.org/tlog-proof@v1\nindex 1\n\n\n" + note,                        // two empty lines
            "c2sp.org/tlog-proof@v1\nindex 1\n\n" + note.dropLast(),               // no final newline
            "c2sp.org/tlog-proof@v1\r\nindex 1\n\n" + note,
        ]
        for text in bad {
            assertCode(.invalidValue, try TLogProofFile(text: text))
        }
        assertCode(.invalidValue, try TLogProofFile(extra: [], index: 0, proof: [], signedCheckpoint: note))
        assertCode(.invalidValue, try TLogProofFile(extra: nil, index: 0, proof: [[1]], signedCheckpoint: note))
    }

    /// A proof file made from a real tree round-trips and its proof verifies against the root
    /// its checkpoint names.
    func testAProofFileCarriesAVerifiableProof() throws {
        let tree = numberedTree(100)
        let root = try tree.prover.root(size: 100)
        let body = try CheckpointBody(origin: "vouch.example/log", size: 100, rootHash: root)
        let file = try TLogProofFile(extra: nil, index: 42, proof: try tree.prover.inclusionProof(index: 42, size: 100),
                                     signedCheckpoint: body.text + "\n— vouch.example/log AAAAAA==\n")
        let parsed = try TLogProofFile(text: file.text)
        XCTAssertEqual(parsed, file)
        let checkpoint = try CheckpointBody(text: String(parsed.signedCheckpoint.prefix(body.text.count)))
        XCTAssertNoThrow(try MerkleVerifier(hasher: sha256Hasher).verifyInclusion(
            leafHash: tree.levels[0][42], index: parsed.index, size: checkpoint.size, proof: parsed.proof, root: checkpoint.rootHash))
    }
}
