import Foundation
import XCTest
import VouchAPI
@testable import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchTPMWire

/// Agent keys created inside the TPM and certified by the AK (TPM2_Certify).
final class TPMKeyTests: XCTestCase {
    func testTPMBoundKeyIsCertifiedIssuedAndUsable() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let (process, socket) = try broker.startAttesterProcess(for: tpm)
        let out = broker.dir.appendingPathComponent("tk").path
        let enroll = try broker.vouch(["enroll", "--name", "tpm-agent", "--tpm-key", "--out", out], socket: socket)
        process.stop()   // the TPM is needed by the tools below
        XCTAssertEqual(enroll.status, 0, enroll.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/tpm-agent.key"), "no software key is written")
        let mode = try FileManager.default.attributesOfItem(atPath: out + "/tpm-agent.tpm.priv")[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)

        // The certified key is in this TPM: load it under the SRK, sign with it, verify with the certificate's key.
        let d = broker.dir.path
        XCTAssertEqual(try tpm.tools("tpm2_load", ["-C", "0x81000001", "-u", out + "/tpm-agent.tpm.pub", "-r", out + "/tpm-agent.tpm.priv", "-c", d + "/key.ctx"]).status, 0)
        try "what the agent signs".write(toFile: d + "/msg", atomically: true, encoding: .utf8)
        let sign = try tpm.tools("tpm2_sign", ["-c", d + "/key.ctx", "-g", "sha256", "-f", "plain", "-o", d + "/sig.der", d + "/msg"])
        XCTAssertEqual(sign.status, 0, sign.stderr)
        let cert = try Certificate(pem: String(contentsOfFile: out + "/tpm-agent.pem", encoding: .utf8))
        try cert.publicKey.pem.write(toFile: d + "/pub.pem", atomically: true, encoding: .utf8)
        let verify = try TestEnv.run("openssl", ["dgst", "-sha256", "-verify", d + "/pub.pem", "-signature", d + "/sig.der", d + "/msg"])
        XCTAssertTrue(verify.stdout.contains("Verified OK"), verify.stdout + verify.stderr)
        XCTAssertEqual(try TestEnv.run("openssl", ["verify", "-CAfile", broker.agentCAFile, out + "/tpm-agent.pem"]).status, 0)
    }

    func testForgedCertificationsAreRefused() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let attester = broker.attester(for: tpm)
        try attester.register()
        let client = broker.client()
        func request(_ mutate: (inout EnrollRequest) throws -> Void, certifier: Attester? = nil) throws -> String? {
            let ch = try client.call("POST", "/v1/challenges", body: ChallengeRequest(hostId: attester.hostID!), as: ChallengeResponse.self)
            let nonce = try Hex.decode(ch.nonce)
            let made = try (certifier ?? attester).createCertifiedKey(nonce: nonce)
            let spki = try PublicKey(tpmPublic: TPMTPublic(tpm2bPublic: made.pub)).spkiDER
            let selection = PCRSelection(banks: ch.pcrSelection.map { PCRBankSelection(hash: HashAlg(rawValue: $0.bank)!, pcrs: $0.pcrs) })
            let q = try attester.quote(qualifyingData: EnrollmentBinding.qualifyingData(nonce: nonce, agentSPKI: spki), selection: selection)
            var req = EnrollRequest(hostId: attester.hostID!, nonce: ch.nonce, agentName: "tk", csr: nil, tpmKey: made.body,
                                    quote: try Attester.quoteBody(q, eventLogPath: nil, modelLogPath: nil))
            try mutate(&req)
            do { _ = try client.call("POST", "/v1/enroll", body: req, as: EnrollResponse.self) } catch let f as APIFailure { return f.error.code }
            return nil
        }
        XCTAssertNil(try request { _ in }, "a genuine TPM-bound enrollment is issued")
        // Another key's public area presented with this certification.
        let other = try attester.createCertifiedKey(nonce: [1, 2, 3])
        XCTAssertEqual(try request { $0.tpmKey!.publicArea = other.body.publicArea }, "qualifying_data_mismatch")
        // A certification made for another nonce.
        XCTAssertEqual(try request { $0.tpmKey!.certifyInfo = other.body.certifyInfo; $0.tpmKey!.signature = other.body.signature }, "qualifying_data_mismatch")
        // Certified by another TPM's AK.
        let stranger = try SwTPM()
        XCTAssertEqual(try request({ _ in }, certifier: broker.attester(for: stranger)), "quote_signature_invalid")
        // Both a CSR and a TPM key, or neither.
        XCTAssertEqual(try request { $0.csr = "x" }, "bad_request")
        XCTAssertEqual(try request { $0.tpmKey = nil }, "bad_request")
        XCTAssertEqual(try broker.status().certificates.count, 1)
    }
}
