import XCTest
import VouchCore
import VouchCrypto

final class SignedNoteTests: XCTestCase {
    // The test vector of Go's golang.org/x/mod/sumdb/note (note_test.go, TestSign/TestOpen).
    static let peterVKey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    static let peterSKey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    static let peterText = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    static let peterSig = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    static let peterNote = peterText + "\n" + peterSig

    func code(_ body: () throws -> Any) -> ErrorCode? {
        do { _ = try body(); return nil } catch { return (error as? VouchError)?.code }
    }

    /// The reference vector both ways: our verifier accepts its note with its vkey, our signer
    /// reproduces its signature from its skey, and the key encodings round-trip.
    func testGoSumdbNoteVector() throws {
        let vkey = try NoteVerifierKey(vkey: Self.peterVKey)
        XCTAssertEqual(vkey.name, "PeterNeumann")
        XCTAssertEqual(vkey.keyID, 0xc74f20a3)
        XCTAssertEqual(vkey.vkey, Self.peterVKey)
        let verified = try UnverifiedNote(Self.peterNote).verify([vkey])
        XCTAssertEqual(verified.text, Self.peterText)
        XCTAssertEqual(verified.verifiedBy, ["PeterNeumann"])
        XCTAssertNil(verified.verifications[0].timestamp)

        let signer = try NoteSigner(skey: Self.peterSKey)
        XCTAssertEqual(signer.verifierKey, vkey)
        XCTAssertEqual(try signer.skey, Self.peterSKey)
        XCTAssertEqual(try SignedNote.sign(Self.peterText, with: [signer]), Self.peterNote)
    }

    /// Unknown names or IDs are ignored; a known key's bad signature refuses the whole note;
    /// with no known signature the note is unverified.
    func testVerificationRules() throws {
        let peter = try NoteVerifierKey(vkey: Self.peterVKey)
        let other = try NoteSigner(name: "example.com/log", privateKey: try Ed25519PrivateKey.generate())
        let otherLine = try SignedNote.signature(of: Self.peterText, by: other)

        // An extra line by an unknown key, and a line sharing Peter's name but not his ID: ignored.
        let imposter = NoteSignature(name: "PeterNeumann", keyID: 0xc74f20a4, signature: [UInt8](repeating: 7, count: 64))
        let mixed = SignedNote.encode(text: Self.peterText, signatures: [otherLine, imposter]) + Self.peterSig
        XCTAssertEqual(try UnverifiedNote(mixed).verify([peter]).verifiedBy, ["PeterNeumann"])
        XCTAssertEqual(try UnverifiedNote(mixed).verify([peter, other.verifierKey]).verifiedBy, ["example.com/log", "PeterNeumann"])
        XCTAssertEqual(try UnverifiedNote(mixed).signatures.count, 3)

        // Peter's name and ID with a bad signature: refused even though another known key signed.
        var bad = try UnverifiedNote(Self.peterNote).signatures[0].signature
        bad[0] ^= 1
        let forged = SignedNote.encode(text: Self.peterText, signatures: [otherLine, NoteSignature(name: "PeterNeumann", keyID: 0xc74f20a3, signature: bad)])
        XCTAssertEqual(code { try UnverifiedNote(forged).verify([peter, other.verifierKey]) }, .noteSignatureInvalid)
        // The text changed: Peter's signature no longer verifies.
        let changed = Self.peterNote.replacingOccurrences(of: "answer", with: "ANSWER")
        XCTAssertEqual(code { try UnverifiedNote(changed).verify([peter]) }, .noteSignatureInvalid)
        // Only unknown signers.
        XCTAssertEqual(code { try UnverifiedNote(Self.peterNote).verify([other.verifierKey]) }, .noteUnverified)
        XCTAssertEqual(code { try UnverifiedNote(Self.peterNote).verify([]) }, .noteUnverified)
    }

    /// The text may hold blank lines: the last blank line separates it from the signatures.
    func testTextWithBlankLinesAndCustomKeys() throws {
        let key = try Ed25519PrivateKey.generate()
        let signer = try NoteSigner(name: "vouch.example/log", privateKey: key)
        let text = "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned \u{e8} subito sera.\n"
        let note = try SignedNote.sign(text, with: [signer])
        let v = try UnverifiedNote(note).verify([try NoteVerifierKey(vkey: signer.verifierKey.vkey)])
        XCTAssertEqual(v.text, text)
        let reloaded = try NoteSigner(skey: try signer.skey)
        XCTAssertEqual(try SignedNote.sign(text, with: [reloaded]), note)
        XCTAssertEqual(try NoteSigner(name: "vouch.example/log", privateKey: try Ed25519PrivateKey(pem: try key.pem)).verifierKey, signer.verifierKey)
    }

    /// Malformed notes are refused before any key is looked at.
    func testStrictParsing() throws {
        let sig = Self.peterSig
        let text = Self.peterText
        let cases: [String] = [
            text + sig,                                   // no blank line
            text + "\n",                                  // no signature line
            text + "\n" + String(sig.dropLast()),         // last line without newline
            text + "\n" + sig.replacingOccurrences(of: "\u{2014}", with: "--"),
            text + "\n" + sig.replacingOccurrences(of: "\u{2014} ", with: "\u{2014}  "),  // empty name
            text + "\n" + sig.replacingOccurrences(of: "PeterNeumann", with: "Peter+Neumann"),
            text + "\n" + sig.replacingOccurrences(of: "PeterNeumann", with: "Peter\u{3000}Neumann"),
            text + "\n" + sig.replacingOccurrences(of: "x08go", with: "x08g!"),  // not base64
            text + "\n" + "\u{2014} PeterNeumann AAAAAA==\n",                  // key ID only
            text + "\n" + "\u{2014} PeterNeumann\n",                           // no signature
            text.replacingOccurrences(of: "answer", with: "ans\twer") + "\n" + sig,   // control character
        ]
        for (i, c) in cases.enumerated() {
            XCTAssertEqual(code { try UnverifiedNote(c) }, .noteMalformed, "case \(i)")
        }
        // A blank line among the signature lines moves the split: the first line becomes text,
        // and Peter's signature does not cover that text.
        XCTAssertEqual(code { try UnverifiedNote(text + "\n" + sig + "\n" + sig).verify([try NoteVerifierKey(vkey: Self.peterVKey)]) }, .noteSignatureInvalid)
        XCTAssertEqual(code { try UnverifiedNote(Array(Self.peterNote.utf8) + [0xff, 0x0a]) }, .noteMalformed, "invalid UTF-8")
        XCTAssertEqual(code { try UnverifiedNote(Self.peterNote, maxBytes: 100) }, .noteMalformed, "over the size bound")
        let many = text + "\n" + String(repeating: sig, count: UnverifiedNote.maxSignatures)
        XCTAssertEqual(try UnverifiedNote(many).verify([try NoteVerifierKey(vkey: Self.peterVKey)]).verifiedBy, ["PeterNeumann"])
        XCTAssertEqual(code { try UnverifiedNote(many + sig) }, .noteMalformed, "over the signature bound")

        // Signing refuses a text without its final newline or with a control character.
        let signer = try NoteSigner(skey: Self.peterSKey)
        XCTAssertEqual(code { try SignedNote.sign("no newline", with: [signer]) }, .noteMalformed)
        XCTAssertEqual(code { try SignedNote.sign("a\rb\n", with: [signer]) }, .noteMalformed)
    }

    /// A cosignature is an 8-byte timestamp and a 64-byte signature over the cosignature/v1
    /// message; a timestamp past 2^63-1, another length or another time refuses the note.
    func testCosignatureShape() throws {
        let seed = [UInt8](repeating: 9, count: 32)
        let key = try Ed25519PrivateKey(seed: seed)
        let witness = try NoteSigner(name: "witness.example/w1", type: .cosignatureV1, privateKey: key)
        let text = "vouch.example/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        let good = try SignedNote.signature(of: text, by: witness, timestamp: 42)
        XCTAssertEqual(good.signature.prefix(8), [0, 0, 0, 0, 0, 0, 0, 42])
        XCTAssertEqual(Array(good.signature.dropFirst(8)), try key.signature(for: Array("cosignature/v1\ntime 42\n\(text)".utf8)))
        let keys = [witness.verifierKey]
        XCTAssertEqual(try UnverifiedNote(SignedNote.encode(text: text, signatures: [good])).verify(keys).verifications[0].timestamp, 42)

        let huge: UInt64 = 1 << 63
        let hugeSig = (0..<8).reversed().map { UInt8(huge >> (8 * UInt64($0)) & 0xff) } + (try key.signature(for: Array("cosignature/v1\ntime \(huge)\n\(text)".utf8)))
        var otherTime = good.signature
        otherTime[7] = 43
        for bad in [hugeSig, otherTime, Array(good.signature.dropFirst(8)), good.signature + [0]] {
            let note = SignedNote.encode(text: text, signatures: [NoteSignature(name: good.name, keyID: good.keyID, signature: bad)])
            XCTAssertEqual(code { try UnverifiedNote(note).verify(keys) }, .noteSignatureInvalid)
        }
    }

    /// Key encodings: a wrong hash, type, length, name or prefix is refused.
    func testKeyEncodingsAreStrict() throws {
        let bad = [
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",   // hash of another key
            "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",   // uppercase hash
            "PeterNeumann+c74f20a3+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",   // unknown type
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==", // wrong length
            "PeterNeumann+c74f20a3",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ]
        for (i, k) in bad.enumerated() {
            XCTAssertEqual(code { try NoteVerifierKey(vkey: k) }, .noteKeyInvalid, "case \(i)")
        }
        XCTAssertEqual(code { try NoteSigner(skey: "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz") }, .noteKeyInvalid)
        XCTAssertEqual(code { try NoteSigner(skey: "PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz") }, .noteKeyInvalid)
        XCTAssertEqual(code { try NoteSigner(skey: Self.peterVKey) }, .noteKeyInvalid)
        XCTAssertEqual(code { try NoteSigner(name: "a+b", privateKey: try Ed25519PrivateKey.generate()) }, .noteKeyInvalid)
    }
}
