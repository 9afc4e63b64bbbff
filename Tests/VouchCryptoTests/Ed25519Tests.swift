import XCTest
import VouchCore
import VouchCrypto

final class Ed25519Tests: XCTestCase {
    /// RFC 8032 section 7.1, TEST 1 to 3: the public key from the seed, the signature of the
    /// message byte for byte (Ed25519 is deterministic), and it verifies.
    func testRFC8032Vectors() throws {
        let vectors: [(seed: String, pub: String, msg: String, sig: String)] = [
            ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
             "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
             "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
            ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
             "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
             "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
            ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
             "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
             "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
        ]
        for v in vectors {
            let key = try Ed25519PrivateKey(seed: try Hex.decode(v.seed))
            XCTAssertEqual(Hex.encode(key.publicKey.rawRepresentation), v.pub)
            XCTAssertEqual(try key.seed, try Hex.decode(v.seed))
            let msg = try Hex.decode(v.msg)
            let sig = try key.signature(for: msg)
            XCTAssertEqual(Hex.encode(sig), v.sig)
            let pub = try Ed25519PublicKey(rawRepresentation: try Hex.decode(v.pub))
            XCTAssertTrue(pub.isValidSignature(sig, for: msg))
            XCTAssertFalse(pub.isValidSignature(sig, for: msg + [0]))
            var flipped = sig
            flipped[10] ^= 1
            XCTAssertFalse(pub.isValidSignature(flipped, for: msg))
            XCTAssertFalse(pub.isValidSignature(Array(sig.dropLast()), for: msg))
            XCTAssertFalse(pub.isValidSignature(sig + [0], for: msg))
        }
    }

    /// A generated key survives PKCS#8 PEM, signs what its public key verifies, and another key
    /// does not verify it.
    func testGeneratePEMRoundTripAndWrongKey() throws {
        let key = try Ed25519PrivateKey.generate()
        let pem = try key.pem
        XCTAssertTrue(pem.hasPrefix("-----BEGIN PRIVATE KEY-----"))
        let again = try Ed25519PrivateKey(pem: pem)
        XCTAssertEqual(again.publicKey, key.publicKey)
        XCTAssertEqual(try again.seed, try key.seed)
        let msg = Array("note".utf8)
        XCTAssertTrue(key.publicKey.isValidSignature(try again.signature(for: msg), for: msg))
        XCTAssertFalse(try Ed25519PrivateKey.generate().publicKey.isValidSignature(try key.signature(for: msg), for: msg))
    }

    /// PKCS#8 as RFC 8410 writes it (made with `openssl pkey` from RFC 8032 TEST 1's seed): read,
    /// it is that key; written, it is the same text.
    func testPKCS8PEMIsRFC8410() throws {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n"
        let key = try Ed25519PrivateKey(pem: pem)
        XCTAssertEqual(Hex.encode(key.publicKey.rawRepresentation), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        XCTAssertEqual(try Ed25519PrivateKey(seed: try key.seed).pem, pem)
    }

    /// Wrong lengths and wrong key types are refused, never truncated or converted.
    func testRefusesOtherKeysAndLengths() throws {
        XCTAssertThrowsError(try Ed25519PublicKey(rawRepresentation: [UInt8](repeating: 1, count: 31))) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue) }
        XCTAssertThrowsError(try Ed25519PrivateKey(seed: [UInt8](repeating: 1, count: 33))) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue) }
        let ec = try PrivateKey.generate(.p256).pem
        XCTAssertThrowsError(try Ed25519PrivateKey(pem: ec)) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue) }
        XCTAssertThrowsError(try Ed25519PrivateKey(pem: "not a key")) { XCTAssertEqual(($0 as? VouchError)?.code, .crypto) }
    }
}
