import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTPMWire
import VouchTestSupport

/// The Azure confidential VM (SEV-SNP, Genoa) vTPM sample: its TPM quote verifies with the AK that
/// the HCL report's runtime claims carry, and those claims are the ones the SNP report binds.
final class AzureVTPMTests: XCTestCase {
    func testQuoteVerifiesWithTheAKFromRuntimeClaims() throws {
        let url = try fixture("tpm-eventlog/quote-azure-snp-vtpm/evidence-genoa.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let quote = json["quote"] as! [String: Any]
        let report = (json["report"] as! [Int]).map(UInt8.init)
        let message = (quote["message"] as! [Int]).map(UInt8.init)
        let rawSignature = (quote["signature"] as! [Int]).map(UInt8.init)
        let pcrList = (quote["pcrs"] as! [[Int]]).map { $0.map(UInt8.init) }

        // HCL report: SNP report at 0x20 (REPORT_DATA at +0x50); runtime claims header at 0x4C0:
        // u32 size, version, type, hashType, variableSize; then the JSON.
        var r = ByteReader(Array(report[0x4C0...]))
        _ = try r.u32le("size"); _ = try r.u32le("version"); _ = try r.u32le("type")
        XCTAssertEqual(try r.u32le("hashType"), 1, "SHA-256")
        let claimsJSON = try r.bytes(Int(try r.u32le("variableSize")), "runtimeClaims")
        let reportData = Array(report[(0x20 + 0x50)..<(0x20 + 0x50 + 32)])
        XCTAssertEqual(reportData, Crypto.sha256(claimsJSON), "SNP REPORT_DATA binds the runtime claims")

        let claims = try JSONSerialization.jsonObject(with: Data(claimsJSON)) as! [String: Any]
        let keys = claims["keys"] as! [[String: Any]]
        let ak = try XCTUnwrap(keys.first { $0["kid"] as? String == "HCLAkPub" })
        func base64url(_ s: String) -> [UInt8] {
            var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while t.count % 4 != 0 { t += "=" }
            return [UInt8](Data(base64Encoded: t)!)
        }
        // A JWK names no TPM scheme; the HCL AK is an RSASSA SHA-256 key.
        let akKey = try AttestationKey(publicKey: try PublicKey(rsaModulus: base64url(ak["n"] as! String), exponent: base64url(ak["e"] as! String)),
                                       scheme: .rsassa, hash: .sha256)

        // The sample's signature is the bare RSASSA value: wrap it as TPMT_SIGNATURE (RSASSA, SHA-256).
        var w = ByteWriter()
        w.u16(TPMAlg.rsassa.rawValue); w.u16(TPMAlg.sha256.rawValue); w.sized(rawSignature)
        let pcrs = PCRValues([.sha256: Dictionary(uniqueKeysWithValues: pcrList.enumerated().map { ($0.offset, $0.element) })])
        let nonce = try Hex.decode("0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f")
        guard case let .verified(q) = QuoteVerifier.verify(attest: message, signature: w.bytes, ak: akKey, expectedQualifyingData: nonce, pcrs: pcrs) else {
            return XCTFail("genuine Azure vTPM quote rejected")
        }
        XCTAssertEqual(q.selection.banks.first?.pcrs, Array(0...23))

        // Forgeries: another nonce, a changed PCR, another key.
        guard case .rejected = QuoteVerifier.verify(attest: message, signature: w.bytes, ak: akKey, expectedQualifyingData: Array(nonce.reversed()), pcrs: pcrs) else { return XCTFail() }
        var forged = pcrs
        forged.values[.sha256]![23]![0] ^= 1
        guard case .rejected = QuoteVerifier.verify(attest: message, signature: w.bytes, ak: akKey, expectedQualifyingData: nonce, pcrs: forged) else { return XCTFail() }
        var otherModulus = base64url(ak["n"] as! String)
        otherModulus[otherModulus.count - 1] ^= 2
        let other = try AttestationKey(publicKey: try PublicKey(rsaModulus: otherModulus, exponent: base64url(ak["e"] as! String)), scheme: .rsassa, hash: .sha256)
        guard case .rejected = QuoteVerifier.verify(attest: message, signature: w.bytes, ak: other, expectedQualifyingData: nonce, pcrs: pcrs) else { return XCTFail() }
    }
}
