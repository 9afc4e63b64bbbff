import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEESim
import VouchTEEWire
import VouchTPMWire
import VouchTestSupport

/// The Azure SEV-SNP CVM's HCL report: its SNP report verifies, binds the runtime claims, and
/// yields the vTPM attestation key that verifies the VM's TPM quote.
final class AzureSNPTests: XCTestCase {
    func testTheGenoaCVMReportVerifiesAndItsKeyVerifiesTheQuote() throws {
        let hcl = try SNPFixtures.bytes("genoa-azure-cvm/hcl_report.bin")
        XCTAssertEqual(Array(hcl[0x20..<0x4C0]), try SNPFixtures.bytes("genoa-azure-cvm/report.bin"))
        let verifier = AzureSNPVerifier(snp: SNPVerifier(trust: try SNPFixtures.amdStore()))
        let vcek = try SNPFixtures.bytes("genoa-azure-cvm/vcek.pem")
        guard case let .verified(claims, _) = verifier.verify(hclReport: hcl, endorsementKey: vcek, at: SNPFixtures.now) else {
            return XCTFail("\(verifier.verify(hclReport: hcl, endorsementKey: vcek, at: SNPFixtures.now).violations)")
        }
        let parsed = try AzureHCLReport(bytes: hcl)
        XCTAssertEqual(parsed.hashType, .sha256)
        XCTAssertEqual(parsed.runtimeClaims.count, 1200)
        XCTAssertEqual(claims.runtimeClaimsDigest, Hex.encode(Crypto.sha256(parsed.runtimeClaims)))
        XCTAssertTrue(claims.snp.reportData.hasPrefix(claims.runtimeClaimsDigest))
        XCTAssertEqual(claims.snp.product, .genoa)
        XCTAssertEqual(claims.vmConfiguration["secure-boot"], "true")
        XCTAssertEqual(claims.vmConfiguration["vmUniqueId"], "390CBCF5-6C67-4D9B-98EF-C3F1699CC8FC")

        // The vTPM quote of the same sample verifies with the attestation key the report binds
        // (AzureVTPMTests checks the quote itself in detail).
        guard case let .authenticated(verified) = verifier.authenticate(hclReport: hcl, endorsementKey: vcek, at: SNPFixtures.now) else { return XCTFail() }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture("tpm-eventlog/quote-azure-snp-vtpm/evidence-genoa.json"))) as! [String: Any]
        XCTAssertEqual((json["report"] as! [Int]).map(UInt8.init), hcl, "the corpus's evidence carries this HCL report")
        let quote = json["quote"] as! [String: Any]
        var signature = ByteWriter()
        signature.u16(TPMAlg.rsassa.rawValue); signature.u16(TPMAlg.sha256.rawValue); signature.sized((quote["signature"] as! [Int]).map(UInt8.init))
        let pcrs = PCRValues([.sha256: Dictionary(uniqueKeysWithValues: (quote["pcrs"] as! [[Int]]).enumerated().map { ($0.offset, $0.element.map(UInt8.init)) })])
        let nonce = try Hex.decode("0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f")
        let ak = try AttestationKey(publicKey: verified.attestationKey, scheme: .rsassa, hash: .sha256)
        guard case .verified = QuoteVerifier.verify(attest: (quote["message"] as! [Int]).map(UInt8.init), signature: signature.bytes, ak: ak,
                                                    expectedQualifyingData: nonce, pcrs: pcrs) else {
            return XCTFail("the vTPM quote does not verify with HCLAkPub")
        }
    }

    func testChangedRuntimeClaimsAndMalformedReportsAreRefused() throws {
        let hcl = try SNPFixtures.bytes("genoa-azure-cvm/hcl_report.bin")
        let vcek = try SNPFixtures.bytes("genoa-azure-cvm/vcek.pem")
        let verifier = AzureSNPVerifier(snp: SNPVerifier(trust: try SNPFixtures.amdStore()))
        func codes(_ bytes: [UInt8]) -> [String] { verifier.verify(hclReport: bytes, endorsementKey: vcek, at: SNPFixtures.now).codes }

        // One byte of the claims (inside the AK's modulus), then one of the SNP report.
        var claims = hcl
        claims[0x4D4 + 100] ^= 0x01
        XCTAssertEqual(codes(claims), ["azure_runtime_claims_mismatch"])
        var report = hcl
        report[0x20 + 0x90] ^= 0x01
        XCTAssertEqual(codes(report), ["snp_report_signature_invalid"])
        // The unmeasured padding after report_size is not read.
        var padding = hcl
        padding[hcl.count - 1] = 0xff
        XCTAssertEqual(codes(padding), [])

        for (offset, value) in [(0, UInt8(0x48 ^ 1)), (4, 3), (8, 0x85), (0x4C0, 0xc5), (0x4C4, 3), (0x4C8, 4), (0x4CC, 9), (0x4D0, 0xb1)] {
            var bytes = hcl
            bytes[offset] = value
            XCTAssertEqual(codes(bytes), ["tee_evidence_malformed"], "offset 0x\(String(offset, radix: 16))")
        }
        for n in stride(from: 0, to: 0x984, by: 7) {
            XCTAssertEqual(codes(Array(hcl.prefix(n))), ["tee_evidence_malformed"], "length \(n)")
        }
    }

    func testSoftwareHCLReports() throws {
        let sim = SNPSim.genoa
        let verifier = AzureSNPVerifier(snp: try SNPSim.verifier([sim]))
        let ak = try PrivateKey.generateRSA(bits: 2048)
        func b64url(_ b: [UInt8]) -> String {
            Base64.encode(b).replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        let akDER = try ak.publicKey.spkiDER
        // The SPKI's RSAPublicKey: modulus and exponent, read with the DER reader.
        var spki = DER.Reader(akDER), body = try spki.sequence("spki")
        _ = try body.element("alg")
        var rsa = DER.Reader(try body.wholeByteBitString("key")), seq = try rsa.sequence("rsa")
        let n = Array(try seq.read(DER.integerTag, "n").drop { $0 == 0 }), e = try seq.read(DER.integerTag, "e")
        let goodClaims = Array(#"{"keys":[{"kid":"HCLAkPub","key_ops":["sign"],"kty":"RSA","e":"\#(b64url(e))","n":"\#(b64url(n))"}],"vm-configuration":{"secure-boot":true},"user-data":"00"}"#.utf8)

        func hclReport(vmpl: UInt32 = 0, claims: [UInt8] = goodClaims, hash: UInt32 = 1, requestVersion: UInt32 = 1) throws -> [UInt8] {
            let digest = hash == 2 ? Crypto.digest(.sha384, claims) : Crypto.sha256(claims)
            var r = sim.report(reportData: digest + [UInt8](repeating: 0, count: 64 - digest.count))
            r.vmpl = vmpl
            let report = try sim.sign(r)
            var out: [UInt8] = Array("HCLA".utf8)
            func u32(_ v: Int) { for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
            let ext = requestVersion == 2 ? 4 : 0
            let dataSize = 20 + ext + claims.count
            u32(2); u32(0x20 + 1184 + dataSize); u32(2); u32(0); out += [UInt8](repeating: 0, count: 12)
            out += report
            u32(dataSize); u32(Int(requestVersion)); u32(2); u32(Int(hash)); u32(claims.count)
            out += [UInt8](repeating: 0, count: ext) + claims
            return out + [UInt8](repeating: 0, count: 64)
        }
        let vcek = try sim.vcek.der
        for (hash, version) in [(UInt32(1), UInt32(1)), (2, 2)] {
            guard case let .verified(claims, _) = verifier.verify(hclReport: try hclReport(hash: hash, requestVersion: version), endorsementKey: vcek,
                                                                  at: SNPFixtures.now) else { return XCTFail("hash \(hash)") }
            XCTAssertEqual(claims.attestationKeySHA256, Hex.encode(Crypto.sha256(akDER)))
            XCTAssertEqual(claims.runtimeClaimsHash, hash == 1 ? "sha256" : "sha384")
            XCTAssertEqual(claims.userData, "00")
        }
        XCTAssertEqual(verifier.verify(hclReport: try hclReport(vmpl: 1), endorsementKey: vcek, at: SNPFixtures.now).codes, ["azure_vmpl_not_zero"])
        let noAK = Array(#"{"keys":[{"kid":"HCLEkPub","kty":"RSA","e":"AQAB","n":"AQAB"}]}"#.utf8)
        // Claims REPORT_DATA binds but that are unusable: signed evidence refused (403), not a bad request.
        XCTAssertEqual(verifier.verify(hclReport: try hclReport(claims: noAK), endorsementKey: vcek, at: SNPFixtures.now).codes, ["azure_runtime_claims_invalid"])
        let notJSON = Array("keys".utf8)
        XCTAssertEqual(verifier.verify(hclReport: try hclReport(claims: notJSON), endorsementKey: vcek, at: SNPFixtures.now).codes, ["azure_runtime_claims_invalid"])
        XCTAssertEqual(ErrorCode.azureRuntimeClaimsInvalid.status, 403)
        // Policy still applies, with the claims.
        var policy = SNPPolicy()
        policy.products = [.milan]
        let refused = verifier.verify(hclReport: try hclReport(), endorsementKey: vcek, at: SNPFixtures.now, policy: policy)
        XCTAssertEqual(refused.codes, ["snp_product_not_allowed"])
        XCTAssertNotNil(refused.claims)
    }

    func testRuntimeClaimsParser() throws {
        XCTAssertThrowsError(try AzureRuntimeClaims(json: Array(#"{"keys":[{"kid":"a","kty":"EC","n":"AQAB","e":"AQAB"}]}"#.utf8)))
        XCTAssertThrowsError(try AzureRuntimeClaims(json: Array(#"{"keys":[{"kid":"a","kty":"RSA","n":"AQ+B","e":"AQAB"}]}"#.utf8)))
        XCTAssertThrowsError(try AzureRuntimeClaims(json: Array(#"{"keys":[{"kid":"a","kty":"RSA","n":"AQAB","e":"AQAB"},{"kid":"a","kty":"RSA","n":"AQAB","e":"AQAB"}]}"#.utf8)))
        let ok = try AzureRuntimeClaims(json: Array(#"{"keys":[{"kid":"HCLAkPub","kty":"RSA","n":"AQAB","e":"AQ"}],"vm-configuration":{"tpm-enabled":false,"n":3}}"#.utf8))
        XCTAssertEqual(ok.attestationKey?.modulus, [1, 0, 1])
        XCTAssertEqual(ok.attestationKey?.exponent, [1])
        XCTAssertEqual(ok.vmConfiguration, ["tpm-enabled": "false", "n": "3"])
        XCTAssertNil(ok.endorsementKey)
    }
}
