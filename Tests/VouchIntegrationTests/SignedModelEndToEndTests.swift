import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchTestSupport

/// A model signed with the unmodified `model-signing` CLI, measured with its signature by the
/// real `vouch-attester measure-model`, judged by a real vouchd under `model.publishers`: the
/// certificate and the EARs name the publisher; a policy trusting another key refuses; an
/// unsigned copy swapped in fails re-attestation and the agent's certificate is revoked.
final class SignedModelEndToEndTests: XCTestCase {
    /// `policies/development.yaml`, re-attesting every 10 s, trusting `publicKeyPEM` as `publisher`
    /// for the model `acme-llm-7b` (the YAML of docs/policy.md's "Signed models"). Five minutes of
    /// grace: certificates live the interval plus the grace, and one must not expire (and so
    /// leave the CRL) before the swap is judged; a pull that meets the TPM busy measuring is
    /// then a fault within the grace, not a verdict.
    func policy(in dir: URL, publisher: String, publicKeyPEM: String) throws -> String {
        let sub = dir.appendingPathComponent("policy-\(publisher.filter(\.isLetter))")
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
        let path = try ReattestationTests.policy(in: sub, grace: "5m")
        let key = publicKeyPEM.split(separator: "\n").map { "        \($0)" }.joined(separator: "\n")
        let text = try String(contentsOfFile: path, encoding: .utf8)
            + "\nmodel:\n  publishers:\n    - name: \(publisher)\n      models: [acme-llm-7b]\n      key: |\n\(key)\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A P-256 key pair made by openssl: (private key file, public key PEM).
    func keyPair(_ dir: URL, _ name: String) throws -> (String, String) {
        let key = dir.appendingPathComponent("\(name).key").path
        XCTAssertEqual(try TestEnv.run("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key]).status, 0)
        let pub = try TestEnv.run("openssl", ["pkey", "-in", key, "-pubout"])
        XCTAssertEqual(pub.status, 0, pub.stderr)
        return (key, pub.stdout)
    }

    func measure(_ tpm: SwTPM, _ log: String, _ model: String) throws -> TestEnv.RunResult {
        try TestEnv.run(TestEnv.bin("vouch-attester"), ["measure-model", "--tcti", tpm.tcti, "--model-log", log, model])
    }

    func testSignedModelNamesItsPublisherAndAnUnsignedSwapRevokes() throws {
        let tpm = try SwTPM()
        let model = tpm.dir.appendingPathComponent("acme-llm-7b")
        try FileManager.default.createDirectory(at: model.appendingPathComponent("tokenizer"), withIntermediateDirectories: true)
        var rng = SystemRandomNumberGenerator()
        try Data((0..<65_536).map { _ in UInt8.random(in: 0...255, using: &rng) }).write(to: model.appendingPathComponent("model.safetensors"))
        try Data(#"{"architectures": ["LlamaForCausalLM"]}"#.utf8).write(to: model.appendingPathComponent("config.json"))
        try Data(#"{"vocab": {"a": 0}}"#.utf8).write(to: model.appendingPathComponent("tokenizer/tokenizer.json"))
        let (acmeKey, acmePub) = try keyPair(tpm.dir, "acme")
        let (_, otherPub) = try keyPair(tpm.dir, "other")
        try ModelSigningTool.signWithKey(model.path, privateKey: acmeKey, signature: model.appendingPathComponent("model.sig").path)

        // The attester records model.sig as the directory's signature, and says what it claims unverified.
        let log = tpm.dir.appendingPathComponent("model-log.json").path
        let measured = try measure(tpm, log, model.path)
        XCTAssertEqual(measured.status, 0, measured.stderr)
        XCTAssertTrue(measured.stdout.contains("model \"acme-llm-7b\" (unverified"), measured.stdout)
        XCTAssertFalse(measured.stdout.contains("  \(model.path)/model.sig  ("), "the signature is no artefact: \(measured.stdout)")
        XCTAssertTrue(measured.stdout.contains("(3 artefacts, 1 signature,"), measured.stdout)

        // A broker whose policy trusts only another key refuses enrollment.
        do {
            let other = try BrokerHarness(trusting: tpm, policy: try policy(in: tpm.dir, publisher: "Someone Else", publicKeyPEM: otherPub))
            let host = Attester(config: AttesterConfig(tcti: tpm.tcti, hostname: "gpu", modelLogPath: log),
                                broker: HTTPClient(.https(baseURL: other.url, caFile: other.brokerCAFile)))
            try host.register()
            XCTAssertThrowsError(try host.enroll(AgentEnrollRequest(agentName: "worker", csr: try CSR.create(key: try PrivateKey.generate(), commonName: "worker").pem))) {
                XCTAssertEqual(($0 as? APIFailure)?.error.code, "model_signer_untrusted", "\($0)")
            }
            XCTAssertEqual(try other.status().certificates.count, 0)
        }

        // The publisher's broker: pull-mode re-attestation every 10 s.
        let broker = try BrokerHarness(trusting: tpm, policy: try policy(in: tpm.dir, publisher: "Acme AI", publicKeyPEM: acmePub))
        let (attester, socket) = try broker.startAttesterProcess(for: tpm, extraArgs: ["--listen", "127.0.0.1:\(TestEnv.freePorts(1))", "--model-log", log])
        defer { attester.stop() }
        let id = try XCTUnwrap(try broker.status().hosts.first?.hostId)
        try TestEnv.waitFor("the first pull", timeout: 20) { try broker.hostStatus(id).trust?.state == "trusted" }
        let agent = try ReattestationTests.enroll(socket, "worker")

        // The certificate's EAR names the publisher, the signed model and the key.
        let signer = "sha256:" + Hex.encode(Crypto.sha256(try PublicKey(pem: acmePub).spkiDER))
        let certFile = tpm.dir.appendingPathComponent("worker.pem").path
        try agent.certificate.write(toFile: certFile, atomically: true, encoding: .utf8)
        let inspect = try broker.vouch(["cert", "inspect", certFile, "--ca", broker.brokerCAFile, "--json"])
        XCTAssertEqual(inspect.status, 0, inspect.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        let models = try XCTUnwrap((report["attestation"] as? [String: Any])?["models"] as? [[String: String]], inspect.stdout)
        XCTAssertEqual(models.map { $0["publisher"] }, ["Acme AI"])
        XCTAssertEqual(models.map { $0["model"] }, ["acme-llm-7b"])
        XCTAssertEqual(models.map { $0["signer"] }, [signer])
        let text = try broker.vouch(["cert", "inspect", certFile, "--ca", broker.brokerCAFile])
        XCTAssertTrue(text.stdout.contains("signed model   acme-llm-7b by Acme AI"), text.stdout)

        // The host's current EAR carries the verified signature with the model claims.
        let ear = String(decoding: try broker.admin().raw("GET", "/v1/hosts/\(id)/ear?nonce=signed-model-1").body, as: UTF8.self)
        let anchors = try Certificate.chain(pem: String(contentsOfFile: broker.brokerCAFile, encoding: .utf8))
        let claims = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try JWSSigner.verify(ear, anchors: anchors, signer: "spiffe://vouch.test/vouchd", at: Date())))
                                   as? [String: Any])
        let evidence = ((claims["vouch.host"] as? [String: Any])?["evidence"] as? [String: Any])?["model"] as? [String: Any]
        let signatures = try XCTUnwrap(evidence?["signatures"] as? [[String: Any]], "\(claims)")
        XCTAssertEqual(signatures.map { $0["publisher"] as? String }, ["Acme AI"])
        XCTAssertEqual(signatures.map { $0["directory"] as? String }, [model.path])

        // An unsigned copy (same files, one byte changed, no model.sig) swapped in: the next pull
        // fails with model_unsigned, and the agent's certificate is revoked.
        let copy = tpm.dir.appendingPathComponent("acme-llm-7b-unsigned")
        try FileManager.default.copyItem(at: model, to: copy)
        try FileManager.default.removeItem(at: copy.appendingPathComponent("model.sig"))
        var config = try Data(contentsOf: copy.appendingPathComponent("config.json"))
        config[config.count - 2] = UInt8(ascii: "X")
        try config.write(to: copy.appendingPathComponent("config.json"))
        let swapped = try measure(tpm, log, copy.path)
        XCTAssertEqual(swapped.status, 0, swapped.stderr)
        XCTAssertFalse(swapped.stdout.contains("signature"), swapped.stdout)
        try TestEnv.waitFor("the unsigned model's verdict", timeout: 40) { try broker.hostStatus(id).lastAttestation?.codes == ["model_unsigned"] }
        XCTAssertEqual(try broker.hostStatus(id).trust?.state, "untrusted")
        let crl = try ReattestationTests.crlText(broker)
        XCTAssertTrue(crl.contains(agent.serial.uppercased()), "the CRL does not list \(agent.serial): \(crl)")
        XCTAssertTrue(try ReattestationTests.ocspStatus(broker, agent.certificate).contains("revoked"))
        XCTAssertEqual(try broker.status().certificates.first { $0.serial == agent.serial }?.state, .revoked)
        XCTAssertThrowsError(try ReattestationTests.enroll(socket, "worker-2"))
    }
}
