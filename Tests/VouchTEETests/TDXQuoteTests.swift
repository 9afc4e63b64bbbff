import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTEEWire
import VouchTestSupport

/// SplitMix64: seeded, so a mutation test picks the same positions on every run.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

final class TDXQuoteTests: XCTestCase {
    static let samples: [(dir: String, version: Int, kind: TDXQuoteBody.Kind, trailing: Int, fmspcHex: String)] = [
        (TDXSamples.v4UpToDate, 4, .td10, 70, "b0c06f000000"),
        (TDXSamples.v5NoMatch, 5, .td15, 0, "90c06f000000"),
        (TDXSamples.v5GoTDX, 5, .td15, 0, "90c06f000000"),
        (TDXSamples.v4SPR, 4, .td10, 39, "50806f000000"),
        (TDXSamples.ccel, 4, .td10, 3065, "00806f050000"),
    ]

    func testEverySampleParsesByItsLengthFields() throws {
        for s in Self.samples {
            let bytes = try TDXSamples.quote(s.dir)
            let q = try TDXQuote(bytes: bytes)
            XCTAssertEqual(q.version, s.version, s.dir)
            XCTAssertEqual(q.body.kind, s.kind, s.dir)
            XCTAssertEqual(q.trailingByteCount, s.trailing, s.dir)
            XCTAssertEqual(q.header.qeVendorID, TDXQuoteHeader.intelQEVendorID, s.dir)
            XCTAssertEqual(q.signedBytes.count, s.version == 4 ? 48 + 584 : 48 + 6 + 648, s.dir)
            // The writer gives back the exact bytes (less the buffer's tail).
            XCTAssertEqual(q.encoded, Array(bytes.prefix(bytes.count - s.trailing)), s.dir)
            XCTAssertEqual(TDXQuote.signedBytes(header: q.header, body: q.body), q.signedBytes, s.dir)
            // The PCK certificate's SGX extension names the sample's FMSPC.
            let chain = try Certificate.chain(pem: String(decoding: q.signatureData.certification.pckCertChain.prefix { $0 != 0 }, as: UTF8.self))
            XCTAssertEqual(chain.count, 3, s.dir)
            let sgx = try SGXPCKExtension(der: try XCTUnwrap(chain[0].extensionValue(oid: SGXPCKExtension.oid)))
            XCTAssertEqual(Hex.encode(sgx.fmspc), s.fmspcHex, s.dir)
            XCTAssertEqual(try SGXPCKExtension(der: sgx.encoded), sgx, s.dir)
        }
    }

    func testTheNoMatchSamplesPCKComponentEightIsThree() throws {
        let q = try TDXQuote(bytes: try TDXSamples.quote(TDXSamples.v5NoMatch))
        let chain = try Certificate.chain(pem: String(decoding: q.signatureData.certification.pckCertChain.prefix { $0 != 0 }, as: UTF8.self))
        let sgx = try SGXPCKExtension(der: try XCTUnwrap(chain[0].extensionValue(oid: SGXPCKExtension.oid)))
        XCTAssertEqual(sgx.tcbComponents[7], 3)
        XCTAssertEqual(q.body.attributes.septVEDisable, true)
        XCTAssertEqual(q.body.attributes.debug, false)
    }

    /// Every prefix shorter than the quote is refused with the wire code; every longer one (the
    /// quote and part of its buffer) parses to the same quote.
    func testTruncationAtEveryLength() throws {
        for s in Self.samples {
            let bytes = try TDXSamples.quote(s.dir)
            let end = bytes.count - s.trailing
            for n in 0..<bytes.count {
                do {
                    let q = try TDXQuote(bytes: Array(bytes.prefix(n)))
                    XCTAssertGreaterThanOrEqual(n, end, "\(s.dir): a \(n)-byte prefix parsed")
                    XCTAssertEqual(q.trailingByteCount, n - end)
                } catch let e as VouchError {
                    XCTAssertEqual(e.code, .teeEvidenceMalformed, "\(s.dir) at \(n)")
                    XCTAssertLessThan(n, end, "\(s.dir): \(n) bytes refused: \(e)")
                }
            }
        }
    }

    func testHeaderAndDescriptorFieldsAreChecked() throws {
        let v4 = try TDXSamples.quote(TDXSamples.v4UpToDate)
        let v5 = try TDXSamples.quote(TDXSamples.v5NoMatch)
        func refused(_ bytes: [UInt8], _ field: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try TDXQuote(bytes: bytes), file: file, line: line) { e in
                XCTAssertEqual((e as? VouchError)?.code, .teeEvidenceMalformed, file: file, line: line)
                XCTAssertEqual((e as? VouchError)?.context["field"], field, file: file, line: line)
            }
        }
        func set(_ b: [UInt8], _ at: Int, _ v: [UInt8]) -> [UInt8] { var c = b; c.replaceSubrange(at..<at + v.count, with: v); return c }
        refused(set(v4, 0, [3, 0]), "header.version")
        refused(set(v4, 2, [3, 0]), "header.attestationKeyType")
        refused(set(v4, 4, [0, 0, 0, 0]), "header.teeType")
        refused(set(v5, 48, [4, 0]), "bodyDescriptor.type")
        refused(set(v5, 50, [0x48, 0x02, 0, 0]), "bodyDescriptor.size")        // 584 with type 3
        refused(set(v4, 632, [0xff, 0xff, 0, 0]), "signatureDataLength")
        refused(set(v4, 636 + 128, [5, 0]), "signatureData.certificationData.type")
        refused(set(v4, 636 + 130, [0, 0, 0, 0]), "signatureData.certificationData.size")
        refused(set(v4, 636 + 134 + 448, [0xff, 0]), "qeCertificationData.certificationData.type")   // auth length now runs past
        refused(set(v4, 636 + 134 + 450 + 32, [1, 0]), "qeCertificationData.certificationData.type")
        XCTAssertThrowsError(try TDXQuote(bytes: [UInt8](repeating: 0, count: TDXQuote.maxBytes + 1)))
    }

    /// Every byte the verifier reads, changed, is refused: the signed header and body, the
    /// signature, the attestation key, the QE report, its signature, the auth data and every
    /// length and type; seeded positions of the PCK chain PEM are refused unless the change left
    /// every certificate the same. Bytes after the quote change nothing.
    func testMutationOfEveryFieldIsRefused() throws {
        let bytes = try TDXSamples.quote(TDXSamples.v4UpToDate)
        let collateral = try TDXSamples.dcapCollateral(TDXSamples.v4UpToDate)
        let verifier = TDXVerifier(roots: TDXSamples.verifier.roots)
        XCTAssertTrue(verifier.verify(quote: bytes, collateral: collateral, at: TDXSamples.v4Now).isVerified)
        let q = try TDXQuote(bytes: bytes)
        let chainStart = bytes.count - q.trailingByteCount - q.signatureData.certification.pckCertChain.count
        var rng = SeededRandom(seed: 16)
        func flip(_ at: Int) -> [UInt8] {
            var m = bytes
            m[at] ^= UInt8.random(in: 1...255, using: &rng)
            return m
        }
        for at in 0..<chainStart {
            let r = verifier.verify(quote: flip(at), collateral: collateral, at: TDXSamples.v4Now)
            XCTAssertFalse(r.isVerified, "byte \(at) changed and still verified")
        }
        let original = try Certificate.chain(pem: String(decoding: q.signatureData.certification.pckCertChain.prefix { $0 != 0 }, as: UTF8.self)).map { try $0.der }
        for _ in 0..<300 {
            let at = Int.random(in: chainStart..<(bytes.count - q.trailingByteCount), using: &rng)
            let m = flip(at)
            if verifier.verify(quote: m, collateral: collateral, at: TDXSamples.v4Now).isVerified {
                let chain = try TDXQuote(bytes: m).signatureData.certification.pckCertChain
                let ders = try Certificate.chain(pem: String(decoding: chain.prefix { $0 != 0 }, as: UTF8.self)).map { try $0.der }
                XCTAssertEqual(ders, original, "PEM byte \(at) (\(bytes[at]) -> \(m[at]), offset in chain \(at - chainStart)) changed a certificate and still verified")
            }
        }
        for at in (bytes.count - q.trailingByteCount)..<bytes.count {
            XCTAssertTrue(verifier.verify(quote: flip(at), collateral: collateral, at: TDXSamples.v4Now).isVerified, "trailing byte \(at)")
        }
    }
}
