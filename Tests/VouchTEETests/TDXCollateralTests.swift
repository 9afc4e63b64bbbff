import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTEEWire
import VouchTestSupport

final class TDXCollateralTests: XCTestCase {
    func testDcapQVLCollateralKeepsTheExactSignedText() throws {
        for dir in [TDXSamples.v4UpToDate, TDXSamples.v5NoMatch] {
            let json = try JSONSerialization.jsonObject(with: Data(try TDXSamples.bytes("\(dir)/collateral.json"))) as! [String: Any]
            let c = try TDXSamples.dcapCollateral(dir)
            XCTAssertEqual(c.tcbInfo.bytes, Array((json["tcb_info"] as! String).utf8), dir)
            XCTAssertEqual(c.qeIdentity.bytes, Array((json["qe_identity"] as! String).utf8), dir)
            XCTAssertEqual(Hex.encode(c.tcbInfo.signature), json["tcb_info_signature"] as? String, dir)
            XCTAssertEqual(try CRL(der: c.pckCRL).issuer.contains("Intel SGX PCK Platform CA"), true, dir)
            XCTAssertEqual(try CRL(der: c.rootCACRL).issuer.contains("Intel SGX Root CA"), true, dir)
            let info = try TDXTCBInfo(json: c.tcbInfo.bytes)
            XCTAssertEqual(info.id, "TDX")
            XCTAssertEqual(info.version, 3)
            XCTAssertTrue(info.tdxModuleIdentities.contains { $0.id == "TDX_01" })
            XCTAssertTrue(info.tcbLevels.allSatisfy { $0.sgxComponents.count == 16 && $0.tdxComponents.count == 16 })
            let qe = try TDXQEIdentity(json: c.qeIdentity.bytes)
            XCTAssertEqual(qe.id, "TD_QE")
            XCTAssertEqual(qe.version, 2)
            XCTAssertEqual(qe.isvProdID, 2)
        }
    }

    /// The PCS files: the signed object is the exact text between `{"tcbInfo":` and
    /// `,"signature"` of the body as PCS sent it.
    func testPCSFilesKeepTheExactSignedText() throws {
        let c = try TDXSamples.sprCollateral()
        let body = try TDXSamples.bytes("\(TDXSamples.v4SPR)/tcbinfo_response.json")
        let text = String(decoding: body, as: UTF8.self)
        let start = text.range(of: "{\"tcbInfo\":")!.upperBound, end = text.range(of: ",\"signature\"")!.lowerBound
        XCTAssertEqual(c.tcbInfo.bytes, Array(text[start..<end].utf8))
        XCTAssertEqual(c.tcbInfo.signature.count, 64)
        XCTAssertEqual(try TDXTCBInfo(json: c.tcbInfo.bytes).fmspc, [0x50, 0x80, 0x6f, 0, 0, 0])
        XCTAssertEqual(try TDXQEIdentity(json: c.qeIdentity.bytes).tcbLevels.first?.isvSvn, 4)
        // go-tdx-guest's v5 TCB info body reads too.
        let v5 = try TDXSignedJSON(pcsBody: try TDXSamples.bytes("\(TDXSamples.v5GoTDX)/tcbinfo_response.json"), key: "tcbInfo")
        XCTAssertEqual(try TDXTCBInfo(json: v5.bytes).fmspc, [0x90, 0xc0, 0x6f, 0, 0, 0])
    }

    func testPCSBodyScanIsStrict() throws {
        let sig = String(repeating: "ab", count: 64)
        func body(_ s: String) -> [UInt8] { Array(s.utf8) }
        // Braces and quotes inside strings are not structure.
        let tricky = try TDXSignedJSON(pcsBody: body("{\"tcbInfo\":{\"a\":\"}{\\\"\",\"b\":[1,{\"c\":2}]},\"signature\":\"\(sig)\"}"), key: "tcbInfo")
        XCTAssertEqual(String(decoding: tricky.bytes, as: UTF8.self), "{\"a\":\"}{\\\"\",\"b\":[1,{\"c\":2}]}")
        let spaced = try TDXSignedJSON(pcsBody: body(" { \"signature\" : \"\(sig)\" , \"tcbInfo\" : {\"x\": 1} } "), key: "tcbInfo")
        XCTAssertEqual(spaced.bytes, body("{\"x\": 1}"))
        for bad in ["{\"tcbInfo\":{},\"tcbInfo\":{},\"signature\":\"\(sig)\"}",          // twice
                    "{\"tcbInfo\":{},\"signature\":\"\(sig)\",\"extra\":1}",             // another member
                    "{\"tcbInfo\":[],\"signature\":\"\(sig)\"}",                          // not an object
                    "{\"tcbInfo\":{},\"signature\":\"abc\"}",                             // not hex r‖s
                    "{\"tcbInfo\":{},\"signature\":\"\(sig)\"} x",                        // trailing
                    "{\"tcbInfo\":" + String(repeating: "[", count: 70) + String(repeating: "]", count: 70) + ",\"signature\":\"\(sig)\"}"] {
            XCTAssertThrowsError(try TDXSignedJSON(pcsBody: body(bad), key: "tcbInfo"), bad) { e in
                XCTAssertEqual((e as? VouchError)?.code, .teeEvidenceMalformed, bad)
            }
        }
    }

    func testTruncationAtEveryLength() throws {
        let json = try TDXSamples.bytes("\(TDXSamples.v4UpToDate)/collateral.json")
        let jsonEnd = json.lastIndex(of: UInt8(ascii: "}"))!
        for n in 0...jsonEnd {
            XCTAssertThrowsError(try TDXCollateral(dcapQVLJSON: Array(json.prefix(n))), "\(n)")
        }
        let body = try TDXSamples.bytes("\(TDXSamples.v4SPR)/tcbinfo_response.json")
        let bodyEnd = body.lastIndex(of: UInt8(ascii: "}"))!
        for n in 0...bodyEnd { XCTAssertThrowsError(try TDXSignedJSON(pcsBody: Array(body.prefix(n)), key: "tcbInfo"), "\(n)") }
        let c = try TDXSamples.dcapCollateral(TDXSamples.v4UpToDate)
        for n in 0..<c.tcbInfo.bytes.count { XCTAssertThrowsError(try TDXTCBInfo(json: Array(c.tcbInfo.bytes.prefix(n))), "\(n)") }
        for n in 0..<c.qeIdentity.bytes.count { XCTAssertThrowsError(try TDXQEIdentity(json: Array(c.qeIdentity.bytes.prefix(n))), "\(n)") }
        let q = try TDXQuote(bytes: try TDXSamples.quote(TDXSamples.v4UpToDate))
        let pck = try Certificate.chain(pem: String(decoding: q.signatureData.certification.pckCertChain.prefix { $0 != 0 }, as: UTF8.self))[0]
        let ext = try XCTUnwrap(pck.extensionValue(oid: SGXPCKExtension.oid))
        for n in 0..<ext.count {
            XCTAssertThrowsError(try SGXPCKExtension(der: Array(ext.prefix(n))), "\(n)") { e in XCTAssertEqual((e as? VouchError)?.code, .teeEvidenceMalformed) }
        }
    }

    /// A changed byte of a signed object, of a signature, of an issuer chain or of a CRL is refused.
    func testMutatedCollateralIsRefused() throws {
        let quote = try TDXSamples.quote(TDXSamples.v4UpToDate)
        let c = try TDXSamples.dcapCollateral(TDXSamples.v4UpToDate)
        let verifier = TDXVerifier(roots: TDXSamples.verifier.roots)
        XCTAssertTrue(verifier.verify(quote: quote, collateral: c, at: TDXSamples.v4Now).isVerified)
        var rng = SeededRandom(seed: 0x7d)
        func flip(_ b: [UInt8]) -> [UInt8] {
            var m = b
            m[Int.random(in: 0..<m.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
            return m
        }
        for _ in 0..<150 {
            var t = c
            t.tcbInfo = try TDXSignedJSON(bytes: flip(c.tcbInfo.bytes), signature: c.tcbInfo.signature)
            assertRefused(verifier.verify(quote: quote, collateral: t, at: TDXSamples.v4Now), .tdxCollateralSignatureInvalid)
            var q = c
            q.qeIdentity = try TDXSignedJSON(bytes: flip(c.qeIdentity.bytes), signature: c.qeIdentity.signature)
            assertRefused(verifier.verify(quote: quote, collateral: q, at: TDXSamples.v4Now), .tdxCollateralSignatureInvalid)
        }
        for _ in 0..<40 {
            var t = c
            t.tcbInfo = try TDXSignedJSON(bytes: c.tcbInfo.bytes, signature: flip(c.tcbInfo.signature))
            assertRefused(verifier.verify(quote: quote, collateral: t, at: TDXSamples.v4Now), .tdxCollateralSignatureInvalid)
            var p = c
            p.pckCRL = flip(c.pckCRL)
            XCTAssertFalse(verifier.verify(quote: quote, collateral: p, at: TDXSamples.v4Now).isVerified, "PCK CRL")
            var r = c
            r.rootCACRL = flip(c.rootCACRL)
            XCTAssertFalse(verifier.verify(quote: quote, collateral: r, at: TDXSamples.v4Now).isVerified, "root CA CRL")
            var chain = c
            chain.tcbInfoIssuerChain = String(decoding: flip(Array(c.tcbInfoIssuerChain.utf8)), as: UTF8.self)
            if verifier.verify(quote: quote, collateral: chain, at: TDXSamples.v4Now).isVerified {
                XCTAssertEqual(try Certificate.chain(pem: chain.tcbInfoIssuerChain).map { try $0.der },
                               try Certificate.chain(pem: c.tcbInfoIssuerChain).map { try $0.der }, "a changed TCB signing chain verified")
            }
        }
    }

    /// Windows of the real collateral: the QE identity is the last part to start (2025-06-19T10:32:27Z)
    /// and the PCK CRL the first to end (2025-07-19T10:00:35Z).
    func testRealCollateralWindows() throws {
        let quote = try TDXSamples.quote(TDXSamples.v4UpToDate)
        let c = try TDXSamples.dcapCollateral(TDXSamples.v4UpToDate)
        let v = TDXVerifier(roots: TDXSamples.verifier.roots)
        assertRefused(v.verify(quote: quote, collateral: c, at: TDXSamples.date("2025-06-19T10:32:26Z")), .tdxCollateralExpired)
        XCTAssertTrue(v.verify(quote: quote, collateral: c, at: TDXSamples.date("2025-06-19T10:32:27Z")).isVerified)
        XCTAssertTrue(v.verify(quote: quote, collateral: c, at: TDXSamples.date("2025-07-19T10:00:34Z")).isVerified)
        assertRefused(v.verify(quote: quote, collateral: c, at: TDXSamples.date("2025-07-19T10:00:35Z")), .tdxCRLInvalid)
        assertRefused(v.verify(quote: quote, collateral: c, at: TDXSamples.date("2025-06-19T10:00:34Z")), .tdxCRLInvalid)
    }

    func testIntelRootIsPinned() throws {
        let root = try IntelSGXRoot.certificate()
        XCTAssertEqual(try root.der, try TDXSamples.bytes("roots/intel_sgx_root_ca.der"))
        let certs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("certs/intel/intel_sgx_root_ca.pem")
        XCTAssertEqual(try Certificate(pem: String(contentsOf: certs, encoding: .utf8)).der, try root.der)
        XCTAssertEqual(Hex.encode(Crypto.sha256(try root.der)), IntelSGXRoot.sha256Fingerprint)
    }
}
