import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTPMWire
import VouchTestSupport

/// The quote verifier on a real quote from a GCE Shielded VM (RSASSA-PKCS1-v1_5, SHA-1, 24 SHA-1 PCRs).
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

    func verify(_ f: Fixture, attest: [UInt8]? = nil, signature: [UInt8]? = nil, qualifyingData: [UInt8] = [], pcrs: PCRValues? = nil) -> QuoteVerdict {
        QuoteVerifier.verify(attest: attest ?? f.attest, signature: signature ?? f.signature, akPublic: f.ak,
                             expectedQualifyingData: qualifyingData, pcrs: pcrs ?? f.pcrs)
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
        let v = QuoteVerifier.verify(attest: f.attest, signature: f.signature, akPublic: other, expectedQualifyingData: [], pcrs: f.pcrs)
        XCTAssertEqual(code(v), .quoteSignatureInvalid)
    }
}
