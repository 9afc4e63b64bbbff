import Foundation
import XCTest
@testable import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEESim
import VouchTEEWire
import VouchTestSupport

/// `TDXVerificationCache`: what a warm verifier serves from its caches is only ever what it
/// verified, byte for byte, and only within the window the verdict holds by the caller's clock.
/// Each test first makes a verifier warm on dcap-qvl's v4 sample (and checks that its caches then
/// hold the collateral, the chain and the QE report), then changes one byte and expects exactly
/// the refusal a fresh verifier gives.
final class TDXVerificationCacheTests: XCTestCase {
    let now = TDXSamples.v4Now

    func warmVerifier(_ quote: [UInt8], _ collateral: TDXCollateral) throws -> TDXVerifier {
        let v = TDXVerifier(roots: TDXSamples.verifier.roots)
        XCTAssertTrue(v.verify(quote: quote, collateral: collateral, at: now).isVerified)
        let parsed = try TDXQuote(bytes: quote)
        let outcome = try XCTUnwrap(v.cache.collateral(collateral, at: now), "collateral cached")
        let chain = TDXChainKey(chain: ExactBytes(parsed.signatureData.certification.pckCertChain), collateral: outcome.serial)
        XCTAssertNotNil(v.cache.chain(chain, at: now), "chain cached")
        XCTAssertTrue(v.cache.endorsed(TDXEndorsementKey(chain: chain, report: ExactBytes(parsed.signatureData.certification.qeReport.raw),
                                                         signature: ExactBytes(parsed.signatureData.certification.qeReportSignature)), at: now), "QE report cached")
        return v
    }

    /// dcap-qvl's v4 sample and its collateral, and a verifier made warm on them.
    func warmSample() throws -> (quote: [UInt8], collateral: TDXCollateral, warm: TDXVerifier) {
        let quote = try TDXSamples.quote(TDXSamples.v4UpToDate)
        let collateral = try TDXSamples.dcapCollateral(TDXSamples.v4UpToDate)
        return (quote, collateral, try warmVerifier(quote, collateral))
    }

    /// The warm verifier's answer is the fresh verifier's, and it is a refusal.
    func assertRefusedAsFresh(_ warm: TDXVerifier, _ quote: [UInt8], _ collateral: TDXCollateral, at t: Date, _ what: String, code: ErrorCode? = nil,
                              file: StaticString = #filePath, line: UInt = #line) {
        let cached = warm.verify(quote: quote, collateral: collateral, at: t)
        let fresh = TDXVerifier(roots: TDXSamples.verifier.roots).verify(quote: quote, collateral: collateral, at: t)
        XCTAssertFalse(fresh.isVerified, "fresh: \(what)", file: file, line: line)
        XCTAssertFalse(cached.isVerified, "warm: \(what)", file: file, line: line)
        XCTAssertEqual(cached.violations.map(\.code), fresh.violations.map(\.code), what, file: file, line: line)
        if let code { XCTAssertEqual(cached.violations.first?.code, code, what, file: file, line: line) }
    }

    static func flip(_ bytes: [UInt8], at i: Int? = nil) -> [UInt8] {
        var b = bytes
        b[i ?? b.count / 2] ^= 0x01
        return b
    }

    /// One base64 character of the first certificate of a PEM chain changed (another base64
    /// character), so the DER under it differs.
    static func flipPEM(_ pem: String) -> String {
        var lines = pem.components(separatedBy: "\n")
        let i = lines.firstIndex { $0.hasPrefix("-----BEGIN") }! + 3
        var chars = Array(lines[i])
        chars[10] = chars[10] == "A" ? "B" : "A"
        lines[i] = String(chars)
        return lines.joined(separator: "\n")
    }

    func testOneChangedByteOfCollateralIsRefusedAfterAWarmCall() throws {
        let (quote, c, warm) = try warmSample()
        var mutants: [(String, TDXCollateral, ErrorCode?)] = []
        var m = c
        m.tcbInfo = try TDXSignedJSON(bytes: Self.flip(c.tcbInfo.bytes), signature: c.tcbInfo.signature)
        mutants.append(("tcbInfo", m, .tdxCollateralSignatureInvalid))
        m = c
        m.tcbInfo = try TDXSignedJSON(bytes: c.tcbInfo.bytes, signature: Self.flip(c.tcbInfo.signature))
        mutants.append(("tcbInfo signature", m, .tdxCollateralSignatureInvalid))
        m = c
        m.qeIdentity = try TDXSignedJSON(bytes: Self.flip(c.qeIdentity.bytes), signature: c.qeIdentity.signature)
        mutants.append(("qeIdentity", m, .tdxCollateralSignatureInvalid))
        m = c
        m.qeIdentity = try TDXSignedJSON(bytes: c.qeIdentity.bytes, signature: Self.flip(c.qeIdentity.signature, at: 63))
        mutants.append(("qeIdentity signature", m, .tdxCollateralSignatureInvalid))
        m = c
        m.pckCRL = Self.flip(c.pckCRL)
        mutants.append(("pckCRL", m, nil))
        m = c
        m.pckCRL = Self.flip(c.pckCRL, at: c.pckCRL.count - 1)
        mutants.append(("pckCRL signature", m, .tdxCRLInvalid))
        m = c
        m.rootCACRL = Self.flip(c.rootCACRL, at: c.rootCACRL.count - 1)
        mutants.append(("rootCACRL signature", m, .tdxCRLInvalid))
        m = c
        m.tcbInfoIssuerChain = Self.flipPEM(c.tcbInfoIssuerChain)
        mutants.append(("tcbInfoIssuerChain", m, .tdxCollateralChainInvalid))
        m = c
        m.qeIdentityIssuerChain = Self.flipPEM(c.qeIdentityIssuerChain)
        mutants.append(("qeIdentityIssuerChain", m, .tdxCollateralChainInvalid))
        for (what, mutant, code) in mutants {
            XCTAssertNotEqual(mutant, c, what)
            assertRefusedAsFresh(warm, quote, mutant, at: now, what, code: code)
        }
        // The verified collateral still verifies, from the cache.
        XCTAssertTrue(warm.verify(quote: quote, collateral: c, at: now).isVerified)
    }

    func testOneChangedByteOfTheQuoteIsRefusedAfterAWarmCall() throws {
        let (quote, c, warm) = try warmSample()
        let parsed = try TDXQuote(bytes: quote)
        let certification = parsed.signatureData.certification
        // Offsets in the v4 quote: header ‖ body (the signed bytes), signature data length,
        // quote signature, attestation key, certification data type and size, QE report, its
        // signature, QE auth data size and data, PCK chain type and size, PCK chain.
        let signature = parsed.signedBytes.count + 4, key = signature + 64, report = key + 64 + 6, reportSignature = report + 384
        let auth = reportSignature + 64 + 2, chain = auth + certification.qeAuthData.count + 6
        XCTAssertEqual(Array(quote[report..<report + 384]), certification.qeReport.raw)
        XCTAssertEqual(Array(quote[chain..<chain + 27]), Array("-----BEGIN CERTIFICATE-----".utf8))
        let chainText = String(decoding: certification.pckCertChain.prefix { $0 != 0 }, as: UTF8.self)
        let chainLines = String(decoding: certification.pckCertChain.prefix { $0 != 0 }, as: UTF8.self).components(separatedBy: "\n")
        let pckBase64 = chain + chainLines.prefix(3).reduce(0) { $0 + $1.utf8.count + 1 } + 10   // a character of the PCK certificate's base64
        let mutations: [(String, Int, ErrorCode)] = [
            ("TD body (REPORTDATA)", parsed.signedBytes.count - 1, .tdxQuoteSignatureInvalid), ("quote signature", signature + 10, .tdxQuoteSignatureInvalid),
            ("attestation key", key + 10, .tdxQEReportDataMismatch), ("QE report", report + 320, .tdxQEReportSignatureInvalid),
            ("QE report signature", reportSignature + 10, .tdxQEReportSignatureInvalid), ("QE auth data", auth + 1, .tdxQEReportDataMismatch),
            ("PCK certificate", pckBase64, .tdxPCKChainInvalid)]
        for (what, at, code) in mutations {
            var mutant = quote
            if what == "PCK certificate" {
                mutant[at] = mutant[at] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
            } else {
                mutant[at] ^= 0x01
            }
            XCTAssertNotEqual(mutant, quote, what)
            assertRefusedAsFresh(warm, mutant, c, at: now, what, code: code)
        }
        XCTAssertTrue(warm.verify(quote: quote, collateral: c, at: now).isVerified)
    }

    /// Verified at one time, the verdict is served only inside its window (here the manifest's
    /// `now_window`: the intersection of the CRLs', collateral's and certificates' validity); at or
    /// past its end, or before its start, the warm verifier answers as a fresh one; inside it again,
    /// it verifies. Without collateral the chain and QE report verdicts are kept by the PCK chain's
    /// own window the same way.
    func testCachedVerdictsExpireWithTheirWindowByTheInjectedClock() throws {
        let (quote, c, warm) = try warmSample()
        let start = TDXSamples.date("2025-06-19T10:32:27Z"), end = TDXSamples.date("2025-07-19T10:00:35Z")
        XCTAssertTrue(warm.verify(quote: quote, collateral: c, at: end.addingTimeInterval(-1)).isVerified)
        XCTAssertTrue(warm.verify(quote: quote, collateral: c, at: start).isVerified)
        XCTAssertNil(warm.cache.collateral(c, at: end))
        assertRefusedAsFresh(warm, quote, c, at: end, "at the window's end")
        assertRefusedAsFresh(warm, quote, c, at: start.addingTimeInterval(-1), "before the window")
        XCTAssertTrue(warm.verify(quote: quote, collateral: c, at: now).isVerified)

        var unknownTCB = TDXPolicy()
        unknownTCB.allowUnknownTCB = true
        XCTAssertTrue(warm.verify(quote: quote, collateral: nil, at: now, policy: unknownTCB).isVerified)
        let key = TDXChainKey(chain: ExactBytes(try TDXQuote(bytes: quote).signatureData.certification.pckCertChain), collateral: nil)
        let pck = try XCTUnwrap(warm.cache.chain(key, at: now))
        let late = pck.window.until
        XCTAssertNotNil(warm.cache.chain(key, at: late.addingTimeInterval(-1)))
        XCTAssertNil(warm.cache.chain(key, at: late))
        let cached = warm.verify(quote: quote, collateral: nil, at: late, policy: unknownTCB)
        let fresh = TDXVerifier(roots: TDXSamples.verifier.roots).verify(quote: quote, collateral: nil, at: late, policy: unknownTCB)
        XCTAssertFalse(cached.isVerified)
        XCTAssertEqual(cached.violations.map(\.code), fresh.violations.map(\.code))
        XCTAssertEqual(cached.violations.first?.code, .tdxPCKChainInvalid)
    }

    /// A QE report's verdict is kept for the chain whose key verified it: the same report and
    /// signature carried with another platform's (valid) PCK chain are checked again, with that
    /// chain's key, and refused. Two software platforms under one PCK CA.
    func testAQEReportVerdictHoldsOnlyForTheChainThatVerifiedIt() throws {
        let start = Date.parseRFC3339("2026-01-01T00:00:00Z")!, end = Date.parseRFC3339("2030-01-01T00:00:00Z")!
        let t = Date.parseRFC3339("2026-01-15T00:00:00Z")!
        let a = try SoftwareTDX(notBefore: start, notAfter: end)
        let otherKey = try PrivateKey.generate()
        var otherPlatform = a.platform
        otherPlatform.ppid = [UInt8](repeating: 0x6b, count: 16)
        let sgx = SGXPCKExtension(ppid: otherPlatform.ppid, tcbComponents: otherPlatform.sgxComponents, pceSvn: otherPlatform.pceSvn,
                                  cpuSvn: otherPlatform.sgxComponents, pceID: otherPlatform.pceID, fmspc: otherPlatform.fmspc)
        let otherPCK = try a.pckCA.tdxSimulationLeaf(subject: [("CN", "Simulated SGX PCK Certificate"), ("O", TEESimulation.organization)], publicKey: try otherKey.publicKey,
                                                     notBefore: start, notAfter: end, extensions: [(SGXPCKExtension.oid, sgx.encoded)])
        let b = SoftwareTDX(platform: otherPlatform, root: a.root, pckCA: a.pckCA, pck: (otherPCK, otherKey),
                            tcbSigning: (a.tcbSigningCertificate, a.tcbSigningKey), attestationKey: a.attestationKey)
        var unknownTCB = TDXPolicy()
        unknownTCB.allowUnknownTCB = true
        let v = TDXVerifier(roots: a.roots)
        let quoteA = try a.quote(SoftwareTDX.body()), quoteB = try b.quote(SoftwareTDX.body())
        XCTAssertTrue(v.verify(quote: quoteA, collateral: nil, at: t, policy: unknownTCB).isVerified)
        XCTAssertTrue(v.verify(quote: quoteB, collateral: nil, at: t, policy: unknownTCB).isVerified)
        // A's QE report and signature (now cached for A's chain) with B's chain.
        let pa = try TDXQuote(bytes: quoteA), pb = try TDXQuote(bytes: quoteB)
        let certification = TDXQECertificationData(qeReport: pa.signatureData.certification.qeReport, qeReportSignature: pa.signatureData.certification.qeReportSignature,
                                                   qeAuthData: pa.signatureData.certification.qeAuthData, pckCertChain: pb.signatureData.certification.pckCertChain)
        let spliced = TDXQuote.encode(header: pa.header, body: pa.body,
                                      signatureData: TDXQuoteSignatureData(signature: pa.signatureData.signature, attestationKey: pa.signatureData.attestationKey,
                                                                           certification: certification))
        let r = v.verify(quote: spliced, collateral: nil, at: t, policy: unknownTCB)
        assertRefused(r, .tdxQEReportSignatureInvalid)
        assertRefused(TDXVerifier(roots: a.roots).verify(quote: spliced, collateral: nil, at: t, policy: unknownTCB), .tdxQEReportSignatureInvalid)
    }

    /// Keys are equal only when every byte is, also past the part that is hashed.
    func testExactBytesKeysCompareEveryByte() {
        let long = [UInt8](repeating: 7, count: 4096)
        var tail = long
        tail[4000] = 8
        var table: [ExactBytes: Int] = [ExactBytes(long): 1]
        XCTAssertNil(table[ExactBytes(tail)])
        XCTAssertNil(table[ExactBytes(Array(long.dropLast()))])
        XCTAssertEqual(table[ExactBytes(Array(long))], 1)
        table[ExactBytes(tail)] = 2
        XCTAssertEqual(table[ExactBytes(long)], 1)
        XCTAssertEqual(table[ExactBytes(tail)], 2)
        XCTAssertEqual(ExactBytes([]), ExactBytes([]))
        XCTAssertNotEqual(ExactBytes([]), ExactBytes([0]))
    }

    /// Equal bytes in other storage (collateral read again) are the same collateral: served from
    /// the cache entry, whose serial the chain and QE report entries are keyed by.
    func testEqualCollateralInOtherStorageHitsTheCache() throws {
        let (quote, c, warm) = try warmSample()
        let again = try TDXSamples.dcapCollateral(TDXSamples.v4UpToDate)
        let serial = try XCTUnwrap(warm.cache.collateral(c, at: now)).serial
        XCTAssertEqual(warm.cache.collateral(again, at: now)?.serial, serial)
        XCTAssertTrue(warm.verify(quote: quote, collateral: again, at: now).isVerified)
        XCTAssertEqual(warm.cache.collateral(c, at: now)?.serial, serial)
    }
}

/// The strict PEM reader of PCK and TCB signing chains (`TDXVerifier.strictChain`), which reads
/// the text as bytes: only CERTIFICATE blocks and blank lines, LF or CRLF line ends.
final class TDXStrictChainTests: XCTestCase {
    func testStrictChainReadsOnlyCertificateBlocks() throws {
        let quote = try TDXQuote(bytes: try TDXSamples.quote(TDXSamples.v4UpToDate))
        let pem = String(decoding: quote.signatureData.certification.pckCertChain.prefix { $0 != 0 }, as: UTF8.self)
        let v = TDXVerifier(roots: TDXSamples.verifier.roots)
        let certs = try XCTUnwrap(v.strictChain(pem))
        XCTAssertEqual(certs.count, 3)
        XCTAssertTrue(certs[2] === v.roots[0], "the chain's copy of the root is the pinned root")
        let crlf = try XCTUnwrap(v.strictChain(pem.replacingOccurrences(of: "\n", with: "\r\n")))
        XCTAssertEqual(try crlf.map { try $0.der }, try certs.map { try $0.der })
        XCTAssertNotNil(v.strictChain("\n \t\n" + pem + "\n\n"))
        for bad in ["", "junk\n" + pem, pem + "junk", pem.replacingOccurrences(of: "-----END CERTIFICATE-----\n", with: "", range: pem.range(of: "-----END CERTIFICATE-----\n")),
                    pem.replacingOccurrences(of: "CERTIFICATE", with: "PUBLIC KEY"), String(pem.dropLast(40))] {
            XCTAssertNil(v.strictChain(bad), bad.prefix(60).description)
        }
        // Only the chain: a block that is not in path order, or one that is not a certificate.
        let blocks = pem.components(separatedBy: "-----END CERTIFICATE-----\n").filter { !$0.isEmpty }.map { $0 + "-----END CERTIFICATE-----\n" }
        XCTAssertEqual(blocks.count, 3)
        XCTAssertNil(v.strictChain(blocks[1] + blocks[0] + blocks[2]))
        XCTAssertNil(v.strictChain(blocks[0] + blocks[0] + blocks[1] + blocks[2]))
    }
}
