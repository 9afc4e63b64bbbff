import XCTest
import VouchCore
import VouchCrypto
import VouchTLog

/// The worked examples of the C2SP specifications themselves (the Go vectors are elsewhere:
/// VouchCryptoTests' SignedNoteTests, TileTests, MerkleTests).
final class SpecVectorTests: XCTestCase {
    // c2sp.org/signed-note, "Example": the verifier key and the note it signs.
    static let exampleVKey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    static let exampleText = "This is an example message.\n"
    static let exampleNote = exampleText + "\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"

    func testSignedNoteSpecExample() throws {
        let key = try NoteVerifierKey(vkey: Self.exampleVKey)
        XCTAssertEqual(key.name, "example.com/foo")
        XCTAssertEqual(key.keyID, 0x530d903a)
        XCTAssertEqual(key.vkey, Self.exampleVKey)
        let verified = try UnverifiedNote(Self.exampleNote).verify([key])
        XCTAssertEqual(verified.text, Self.exampleText)
        // One changed byte of the text, and the same note under another key of the same name.
        assertCode(.noteSignatureInvalid, try UnverifiedNote(Self.exampleNote.replacingOccurrences(of: "example message", with: "examplE message")).verify([key]))
        let other = try NoteVerifierKey(name: "example.com/foo", publicKey: try Ed25519PrivateKey.generate().publicKey)
        assertCode(.noteUnverified, try UnverifiedNote(Self.exampleNote).verify([other]))
    }
}
