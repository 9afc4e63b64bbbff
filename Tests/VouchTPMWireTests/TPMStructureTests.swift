import Foundation
import XCTest
import VouchCore
import VouchTPMWire
import VouchTestSupport

final class TPMStructureTests: XCTestCase {
    /// Date.iso8601 and DER.generalizedTime (gmtime_r, on hot paths) write exactly what
    /// Foundation's formatters write.
    func testISO8601MatchesFoundation() {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        let g = DateFormatter()
        g.locale = Locale(identifier: "en_US_POSIX")
        g.timeZone = TimeZone(identifier: "UTC")
        g.dateFormat = "yyyyMMddHHmmss'Z'"
        let seed = TestSeed()
        var generator = seed.generator
        let samples = [0, 951_782_400, 1_700_000_000.9, 4_102_444_799] + (0..<500).map { _ in Double(UInt32.random(in: 0...UInt32.max, using: &generator)) }
        for t in samples {
            let d = Date(timeIntervalSince1970: t)
            XCTAssertEqual(d.iso8601, f.string(from: d), "\(t), \(seed)")
            XCTAssertEqual(DER.generalizedTime(d), DER.tlv(DER.generalizedTimeTag, Array(g.string(from: d).utf8)), "\(t), \(seed)")
            XCTAssertEqual(Date.parseRFC3339(d.iso8601)?.timeIntervalSince1970, t.rounded(.down), "\(t), \(seed)")
        }
        // RFC 3339 as JSON Schema's date-time reads it: any fraction, offsets, lowercase t/z, leap seconds.
        for (text, t) in [("2026-11-30T10:00:00.96288Z", 1_796_032_800.96288), ("2026-11-30t11:30:00+01:30", 1_796_032_800),
                          ("2026-11-30T09:59:60z", 1_796_032_800), ("0730-11-23T05:52:24Z", -39_102_458_856), ("2024-02-29T00:00:00-00:00", 1_709_164_800)] {
            XCTAssertEqual(try XCTUnwrap(Date.parseRFC3339(text), text).timeIntervalSince1970, t, accuracy: 0.0001, text)
        }
        for bad in ["", "2026-11-30", "2026-11-30T10:00:00", "2026-11-30 10:00:00Z", "2026-02-30T00:00:00Z", "2025-02-29T00:00:00Z",
                    "2026-11-30T24:00:00Z", "2026-11-30T10:00:00.Z", "2026-11-30T10:00:00+0100", "2026-11-30T10:00:00Zx", "+2026-11-30T10:00:00Z"] {
            XCTAssertNil(Date.parseRFC3339(bad), bad)
        }
        XCTAssertTrue(Hex.isLowercase("0123456789abcdef", length: 16...16))
        XCTAssertFalse(Hex.isLowercase("0123456789ABCDEF", length: 16...16))
        XCTAssertFalse(Hex.isLowercase("0123", length: 16...16))
        XCTAssertFalse(Hex.isLowercase("012g", length: 4...4))
    }

    func testParsesRealGCPQuote() throws {
        let f = try GCPQuoteFixture()
        let ak = try f.akTPMPublic()
        XCTAssertEqual(ak.type, .rsa)
        XCTAssertEqual(ak.nameAlg, .sha256)
        XCTAssertTrue(ak.attributes.isSuperset(of: [.restricted, .sign, .fixedTPM, .fixedParent, .sensitiveDataOrigin]))
        guard case let .rsa(modulus, exponent, bits) = ak.key else { return XCTFail("expected RSA") }
        XCTAssertEqual(bits, 2048)
        XCTAssertEqual(modulus.count, 256)
        XCTAssertEqual(exponent, 65537)
        XCTAssertEqual(ak.raw, f.akPublic)

        let attest = try TPMSAttest(bytes: f.attest)
        XCTAssertEqual(attest.magic, TPMConstants.generatedValue)
        XCTAssertEqual(attest.type, TPMConstants.stAttestQuote)
        XCTAssertEqual(attest.extraData, [])
        guard case let .quote(selection, digest) = attest.attested else { return XCTFail("expected a quote") }
        XCTAssertEqual(selection.banks.first?.hash, .sha1)
        XCTAssertEqual(selection.banks.first?.pcrs, Array(0...23))
        XCTAssertEqual(digest.count, 20)

        let sig = try TPMTSignature(bytes: f.signature)
        guard case let .rsa(scheme, hash, bytes) = sig.value else { return XCTFail("expected RSA signature") }
        XCTAssertEqual(scheme, .rsassa)
        XCTAssertEqual(hash, .sha1)
        XCTAssertEqual(bytes.count, 256)
    }

    /// Every prefix of a valid structure fails with a typed error; none traps.
    func testEveryTruncationIsATypedError() throws {
        let f = try GCPQuoteFixture()
        let parsers: [(String, [UInt8], ([UInt8]) throws -> Void)] = [
            ("TPMS_ATTEST", f.attest, { _ = try TPMSAttest(bytes: $0) }),
            ("TPMT_SIGNATURE", f.signature, { _ = try TPMTSignature(bytes: $0) }),
            ("TPMT_PUBLIC", f.akPublic, { var r = ByteReader($0); _ = try TPMTPublic(from: &r); try r.expectEnd("TPMT_PUBLIC") }),
        ]
        for (name, bytes, parse) in parsers {
            for n in 0..<bytes.count {
                XCTAssertThrowsError(try parse(Array(bytes.prefix(n))), "\(name) prefix \(n)") { error in
                    guard let e = error as? VouchError else { return XCTFail("untyped error \(error)") }
                    XCTAssertTrue([.truncated, .invalidValue].contains(e.code), "\(name) prefix \(n): \(e)")
                }
            }
            XCTAssertThrowsError(try parse(bytes + [0])) { XCTAssertEqual(($0 as? VouchError)?.code, .trailingBytes, name) }
        }
    }

    /// Random corruption of real structures never traps, and never yields a parse of different bytes.
    func testRandomCorruptionNeverTraps() throws {
        let f = try GCPQuoteFixture()
        let seed = TestSeed()
        var rng = seed.generator
        for round in 0..<20_000 {
            var b = [f.attest, f.signature, f.akPublic].randomElement(using: &rng)!
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if let a = try? TPMSAttest(bytes: b) { XCTAssertEqual(a.raw, b, "\(seed) round \(round)") }
            _ = try? TPMTSignature(bytes: b)
            var r = ByteReader(b)
            _ = try? TPMTPublic(from: &r)
        }
    }

    func testHostileLengthsAreRefused() {
        // TPM2B_PUBLIC claiming 65535 bytes with 2 present.
        XCTAssertThrowsError(try TPMTPublic(tpm2bPublic: [0xff, 0xff, 0x00, 0x01])) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue) }
        // A PCR selection claiming 2^32-1 banks.
        var r = ByteReader([0xff, 0xff, 0xff, 0xff])
        XCTAssertThrowsError(try PCRSelection(from: &r)) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue) }
        // An oversized attestation blob.
        XCTAssertThrowsError(try TPMSAttest(bytes: [UInt8](repeating: 0, count: 5000))) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue) }
        // sizeofSelect outside 3...4.
        var s = ByteReader([0, 0, 0, 1, 0x00, 0x0b, 200])
        XCTAssertThrowsError(try PCRSelection(from: &s)) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue) }
    }

    func testPCRSelectionRoundTrip() throws {
        let sel = PCRSelection(banks: [PCRBankSelection(hash: .sha256, pcrs: [0, 1, 7, 16, 23]), PCRBankSelection(hash: .sha1, pcrs: [4])])
        var r = ByteReader(sel.marshaled)
        XCTAssertEqual(try PCRSelection(from: &r), sel)
        XCTAssertEqual(r.remaining, 0)
    }

    func testAKTemplatesParseAsRestrictedSigningKeys() throws {
        for kind in KeyTemplates.AKKind.allCases {
            var r = ByteReader(KeyTemplates.attestationKey(kind))
            // Templates carry an empty unique field, which the parser rejects as a key: check the header only.
            XCTAssertEqual(try r.u16("type"), kind == .eccP256 ? TPMAlg.ecc.rawValue : TPMAlg.rsa.rawValue)
            XCTAssertEqual(try r.u16("nameAlg"), TPMAlg.sha256.rawValue)
            XCTAssertEqual(ObjectAttributes(rawValue: try r.u32("attributes")), KeyTemplates.akAttributes)
        }
    }
}
