import Foundation
import XCTest
import VouchAPI
@testable import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchTPMWire
import VouchTestSupport

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

    /// `vouch receipt sign --tpm-key --socket` and `vouch-attester proxy --tpm-key --socket`: the
    /// TPM-bound key signs receipts through the attester's `POST /v1/sign`, and they verify offline.
    func testATPMBoundKeySignsReceiptsThroughTheAttesterSocket() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let (process, socket) = try broker.startAttesterProcess(for: tpm)
        defer { process.stop() }
        let d = broker.dir.path, out = d + "/tk"
        for name in ["answerer", "other"] {
            let enroll = try broker.vouch(["enroll", "--name", name, "--tpm-key", "--out", out], socket: socket)
            XCTAssertEqual(enroll.status, 0, enroll.stderr)
        }
        // The chain a receipt carries: the agent certificate, then the issuing CA.
        let chain = try String(contentsOfFile: out + "/answerer.pem", encoding: .utf8) + String(contentsOfFile: out + "/ca.pem", encoding: .utf8)
        try chain.write(toFile: d + "/chain.pem", atomically: true, encoding: .utf8)
        XCTAssertEqual(try broker.vouch(["trust", "get", "--output", d + "/trust.json"]).status, 0)
        let proof = try broker.vouch(["log", "proof", "--certificate", out + "/answerer.pem", "--output", d + "/issuance.json", "--wait", "30s"])
        XCTAssertEqual(proof.status, 0, proof.stderr)
        try "what the agent answered".write(toFile: d + "/answer.txt", atomically: true, encoding: .utf8)

        func sign(_ keyPrefix: String, _ name: String) throws -> TestEnv.RunResult {
            try broker.vouch(["receipt", "sign", "--cert", d + "/chain.pem", "--tpm-key", keyPrefix, "--socket", socket, "--output", d + "/answer.txt",
                              "--issuance-proof", d + "/issuance.json", "--out", d + "/" + name])
        }
        let signed = try sign(out + "/answerer", "receipt.json")
        XCTAssertEqual(signed.status, 0, signed.stderr + process.log)
        let verified = try broker.vouch(["receipt", "verify", d + "/receipt.json", "--trust", d + "/trust.json", "--output", d + "/answer.txt"])
        XCTAssertEqual(verified.status, 0, verified.stdout + verified.stderr)
        XCTAssertTrue(verified.stdout.contains("matches --output"), verified.stdout)
        // Another TPM key of this host cannot sign for this certificate.
        let wrongKey = try sign(out + "/other", "never.json")
        XCTAssertEqual(wrongKey.status, 1, wrongKey.stderr)
        // Usage: one key, and a socket only with a TPM key.
        for args in [["--key", out + "/x.key", "--tpm-key", out + "/answerer"], ["--key", out + "/x.key", "--socket", socket], [String]()] {
            let r = try broker.vouch(["receipt", "sign", "--cert", d + "/chain.pem", "--output", d + "/answer.txt", "--out", d + "/never.json"] + args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/never.json"))

        // The socket's refusals, each before anything is signed.
        let attester = HTTPClient(.unix(path: socket), timeoutSeconds: 30)
        let pub = try Array(Data(contentsOf: URL(fileURLWithPath: out + "/answerer.tpm.pub")))
        let priv = try Array(Data(contentsOf: URL(fileURLWithPath: out + "/answerer.tpm.priv")))
        let otherPriv = try Array(Data(contentsOf: URL(fileURLWithPath: out + "/other.tpm.priv")))
        /// The status, and the code and field of a refusal.
        func ask(_ pub: [UInt8], _ priv: [UInt8], digest: String = String(repeating: "ab", count: 32)) throws -> (Int, String?, String?) {
            let body = JSONCodec.encode(AgentSignRequest(tpmKeyPublic: Base64.encode(pub), tpmKeyPrivate: Base64.encode(priv), digest: digest))
            let r = try attester.send("POST", "/v1/sign", headers: ["Content-Type": "application/json"], body: body)
            let error = r.status == 200 ? nil : try? JSONCodec.decode(APIError.self, from: r.body)
            return (r.status, error?.code, error?.context?["field"])
        }
        XCTAssertEqual(try ask(pub, priv).0, 200)
        // Refused by the template check (field tpmKeyPublic), before the TPM would fail to load it
        // (field tpmKeyPrivate): TPM2B_PUBLIC is size, type, nameAlg, then objectAttributes, whose bit 16 is restricted.
        var restricted = pub
        restricted[7] |= 0x01
        XCTAssertEqual(try ask(restricted, priv).1, "tpm_key_invalid", "a restricted key (an AK's kind) is never used here")
        XCTAssertEqual(try ask(restricted, priv).2, "tpmKeyPublic")
        XCTAssertEqual(try ask(pub, otherPriv).1, "tpm_key_invalid", "the private blob of another key")
        XCTAssertEqual(try ask(pub, otherPriv).2, "tpmKeyPrivate", "refused by the TPM's load")
        XCTAssertEqual(try ask(pub, priv, digest: String(repeating: "ab", count: 31)).2, "digest", "not a SHA-256 digest")
        XCTAssertEqual(try ask(Array(pub.prefix(20)), priv).2, "tpmKeyPublic", "a truncated public area")

        // The receipt proxy signs with the same TPM key through the socket.
        let modelPort = try freePort(), proxyPort = try freePort()
        let model = try BackgroundProcess("/usr/bin/python3", [TestEnv.packageRoot.appendingPathComponent("scripts/model-server.py").path,
                                                               "--listen", "127.0.0.1:\(modelPort)"], log: broker.dir.appendingPathComponent("model.log"))
        defer { model.stop() }
        XCTAssertTrue(model.waitForLog("model-server listening", timeout: 30) && TestEnv.waitForPort(modelPort), model.log)
        let proxy = try BackgroundProcess(TestEnv.bin("vouch-attester"), [
            "proxy", "--upstream", "http://127.0.0.1:\(modelPort)", "--listen", "127.0.0.1:\(proxyPort)", "--cert", d + "/chain.pem",
            "--tpm-key", out + "/answerer", "--socket", socket, "--issuance-proof", d + "/issuance.json",
        ], log: broker.dir.appendingPathComponent("proxy.log"))
        defer { proxy.stop() }
        XCTAssertTrue(TestEnv.waitForPort(proxyPort), proxy.log)
        let ask = Array(#"{"model":"vouch-echo","messages":[{"role":"user","content":"signed in the TPM"}]}"#.utf8)
        let answer = try HTTPClient(.service(baseURL: "http://127.0.0.1:\(proxyPort)"), timeoutSeconds: 60)
            .send("POST", "/v1/chat/completions", headers: ["Content-Type": "application/json"], body: ask)
        XCTAssertEqual(answer.status, 200, String(decoding: answer.body, as: UTF8.self) + proxy.log)
        try Data(answer.body).write(to: URL(fileURLWithPath: d + "/chat.json"))
        try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(answer.header("vouch-receipt")))).write(to: URL(fileURLWithPath: d + "/chat.receipt.json"))
        let chat = try broker.vouch(["receipt", "verify", d + "/chat.receipt.json", "--trust", d + "/trust.json", "--output", d + "/chat.json"])
        XCTAssertEqual(chat.status, 0, chat.stdout + chat.stderr)
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
