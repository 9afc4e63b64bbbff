import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTPMWire
import VouchTestSupport

/// The quote verifier on a real quote from a GCE Shielded VM (RSASSA-PKCS1-v1_5, SHA-1, 24 SHA-1 PCRs).
/// Its AK's template fixes SHA-1, so every check but the refusal below allows SHA-1 explicitly.
final class QuoteVerifierTests: XCTestCase {
    struct Fixture {
        let ak: TPMTPublic
        let attest: [UInt8]
        let signature: [UInt8]
        let pcrs: PCRValues
    }

    func fixture() throws -> Fixture {
        let f = try GCPQuoteFixture()
        return Fixture(ak: try f.akTPMPublic(), attest: f.attest, signature: f.signature, pcrs: f.pcrs)
    }

    func verify(_ f: Fixture, attest: [UInt8]? = nil, signature: [UInt8]? = nil, qualifyingData: [UInt8] = [], pcrs: PCRValues? = nil,
                allowSHA1: Bool = true) -> QuoteVerdict {
        QuoteVerifier.verify(attest: attest ?? f.attest, signature: signature ?? f.signature, akPublic: f.ak,
                             expectedQualifyingData: qualifyingData, pcrs: pcrs ?? f.pcrs, allowSHA1: allowSHA1)
    }

    func testSHA1AKIsRefusedWithoutTheAllowance() throws {
        let f = try fixture()
        XCTAssertEqual(f.ak.scheme, .rsassa)
        XCTAssertEqual(f.ak.schemeHash, .sha1)
        XCTAssertEqual(code(verify(f, allowSHA1: false)), .akSchemeNotAllowed)
    }

    /// The genuine SHA-1 signature, with the AK's template rewritten to say SHA-256: refused for the
    /// scheme, before verification; and a signature header naming SHA-256 for the SHA-1 AK likewise.
    func testSignatureHashOtherThanTheAKsIsRefused() throws {
        let f = try fixture()
        var raw = f.ak.raw
        let hashAt = 2 + 2 + 4 + 2 + f.ak.authPolicy.count + 2 + 2   // type, nameAlg, attributes, authPolicy, symmetric (null), scheme
        XCTAssertEqual(Array(raw[hashAt..<hashAt + 2]), [0x00, 0x04])
        raw[hashAt + 1] = 0x0B
        var r = ByteReader(raw)
        let sha256AK = try TPMTPublic(from: &r)
        XCTAssertEqual(sha256AK.schemeHash, .sha256)
        let v = QuoteVerifier.verify(attest: f.attest, signature: f.signature, akPublic: sha256AK, expectedQualifyingData: [], pcrs: f.pcrs)
        XCTAssertEqual(code(v), .quoteSignatureSchemeMismatch)
        var s = f.signature
        s[3] = 0x0B   // TPMT_SIGNATURE.hash SHA-1 -> SHA-256
        XCTAssertEqual(code(verify(f, signature: s)), .quoteSignatureSchemeMismatch)
    }

    func code(_ v: QuoteVerdict) -> ErrorCode? {
        if case let .rejected(errors) = v { return errors.first?.code }
        return nil
    }

    func testGenuineQuoteVerifies() throws {
        let f = try fixture()
        guard case let .verified(q) = verify(f) else { return XCTFail("genuine quote rejected: \(verify(f))") }
        XCTAssertEqual(q.selection.banks.first?.pcrs.count, 24)
        XCTAssertEqual(q.pcrs.values[.sha1]?.count, 24)
    }

    func testEveryBitFlipInTheSignedBytesIsRejected() throws {
        let f = try fixture()
        for i in 0..<f.attest.count {
            var a = f.attest
            a[i] ^= 0x01
            XCTAssertEqual(code(verify(f, attest: a)), .quoteSignatureInvalid, "byte \(i)")
        }
    }

    func testSignatureTamperingIsRejected() throws {
        let f = try fixture()
        for i in stride(from: 6, to: f.signature.count, by: 7) {
            var s = f.signature
            s[i] ^= 0x80
            XCTAssertEqual(code(verify(f, signature: s)), .quoteSignatureInvalid, "byte \(i)")
        }
        // Header damage: scheme or length no longer parse or no longer fit the key.
        var s = f.signature
        s[1] = 0x18   // ECDSA scheme for an RSA key
        XCTAssertNotNil(code(verify(f, signature: s)))
        XCTAssertEqual(code(verify(f, signature: [])), .quoteMalformed)
    }

    func testWrongQualifyingDataIsRejected() throws {
        let f = try fixture()
        XCTAssertEqual(code(verify(f, qualifyingData: [1, 2, 3])), .qualifyingDataMismatch)
    }

    func testForgedPCRValueIsRejected() throws {
        let f = try fixture()
        var forged = f.pcrs
        forged.values[.sha1]![7]![0] ^= 0xff
        XCTAssertEqual(code(verify(f, pcrs: forged)), .pcrDigestMismatch)
        var missing = f.pcrs
        missing.values[.sha1]![3] = nil
        XCTAssertEqual(code(verify(f, pcrs: missing)), .pcrDigestMismatch)
    }

    func testAnotherKeyOfTheSameTypeIsRejected() throws {
        let f = try fixture()
        guard case let .rsa(modulus, _, _) = f.ak.key else { return XCTFail() }
        var raw = f.ak.raw
        raw[raw.count - 1] ^= 0x02   // last modulus byte
        var r = ByteReader(raw)
        let other = try TPMTPublic(from: &r)
        XCTAssertNotEqual(modulus.last, { if case let .rsa(m, _, _) = other.key { return m.last } else { return nil } }())
        let v = QuoteVerifier.verify(attest: f.attest, signature: f.signature, akPublic: other, expectedQualifyingData: [], pcrs: f.pcrs, allowSHA1: true)
        XCTAssertEqual(code(v), .quoteSignatureInvalid)
    }
}
