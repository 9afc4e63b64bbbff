import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchTPM
import VouchTPMWire

/// Policies as operators use them: several files with precedence, hot reload that never lets a
/// broken file in, model rules deciding on a changed model, and the offline tools on real evidence.
final class PolicyOperationsTests: XCTestCase {
    static let zero = String(repeating: "0", count: 64)

    func policyText(name: String, version: Int = 1, priority: Int = 0, match: String = "", pcr7: String = zero, extra: String = "") -> String {
        var y = "apiVersion: vouch/v1\nname: \(name)\nversion: \(version)\npriority: \(priority)\n"
        if !match.isEmpty { y += "match:\n  labels: {\(match)}\n" }
        y += "pcrs:\n  bank: sha256\n  values:\n"
        for i in 0...6 { y += "    \(i): [\"\(Self.zero)\"]\n" }
        y += "    7: [\"\(pcr7)\"]\n" + extra
        return y
    }

    func enroll(_ attester: Attester, _ name: String = "agent") throws -> EnrollResponse {
        try attester.enroll(AgentEnrollRequest(agentName: name, csr: try CSR.create(key: try PrivateKey.generate(), commonName: name).pem))
    }

    func attester(_ broker: BrokerHarness, _ tpm: SwTPM, labels: [String: String] = [:], modelLog: String? = nil) -> Attester {
        var config = AttesterConfig(tcti: tpm.tcti, hostname: "gpu-1", modelLogPath: modelLog)
        config.labels = labels
        return Attester(config: config, broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
    }

    func refusal(_ body: () throws -> Void) -> APIError? {
        do { try body() } catch let f as APIFailure { return f.error } catch { XCTFail("\(error)") }
        XCTFail("expected a refusal")
        return nil
    }

    func waitFor(_ what: String, timeout: TimeInterval = 10, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline { if try condition() { return }; usleep(100_000) }
        XCTFail("timed out waiting for \(what)")
    }

    /// A template that could name an agent like the broker or a host is refused at issuance.
    func testReservedSpiffeIDsAreNeverIssuedToAgents() throws {
        let tpm = try SwTPM()
        let dir = tpm.dir.appendingPathComponent("policies")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try policyText(name: "flat", extra: "certificate:\n  spiffeIDTemplate: \"spiffe://{trustDomain}/{agentName}\"\n")
            .write(to: dir.appendingPathComponent("flat.yaml"), atomically: true, encoding: .utf8)
        let broker = try BrokerHarness(trusting: tpm, policy: dir.path)
        let a = attester(broker, tpm)
        try a.register()
        XCTAssertEqual(refusal { _ = try enroll(a, "vouchd") }?.code, "spiffe_id_reserved")
        XCTAssertEqual(try enroll(a, "payments").spiffeId, "spiffe://vouch.test/payments")
    }

    func testPrecedenceAndTemplatesThroughTheBroker() throws {
        let tpm = try SwTPM()
        let dir = tpm.dir.appendingPathComponent("policies")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try policyText(name: "default").write(to: dir.appendingPathComponent("default.yaml"), atomically: true, encoding: .utf8)
        try policyText(name: "prod", priority: 10, match: "env: prod",
                       extra: "certificate:\n  spiffeIDTemplate: \"spiffe://{trustDomain}/{label:env}/{hostname}/{agentName}\"\n  agentKeyTypes: [ec-p256]\n")
            .write(to: dir.appendingPathComponent("prod.yaml"), atomically: true, encoding: .utf8)
        try policyText(name: "strict", priority: 20, match: "env: prod, tier: strict", pcr7: String(repeating: "7", count: 64))
            .write(to: dir.appendingPathComponent("strict.yaml"), atomically: true, encoding: .utf8)
        let broker = try BrokerHarness(trusting: tpm, policy: dir.path)

        let plain = attester(broker, tpm)
        try plain.register()
        XCTAssertEqual(try enroll(plain).spiffeId, "spiffe://vouch.test/host/\(plain.hostID!)/agent/agent", "default template")
        XCTAssertEqual(try broker.status().hosts.first?.policy, "default v1")

        // A registered host keeps its labels: moving under another policy takes an operator, who
        // deletes the host so it registers afresh.
        let relabelled = attester(broker, tpm, labels: ["env": "prod"])
        XCTAssertThrowsError(try relabelled.register()) { XCTAssertEqual(($0 as? APIFailure)?.error.code, "labels_immutable") }
        XCTAssertEqual(try broker.status().hosts.first?.policy, "default v1", "the refused registration changed nothing")
        XCTAssertEqual(try broker.vouch(["host", "delete", plain.hostID!]).status, 0)
        let prod = attester(broker, tpm, labels: ["env": "prod"])
        try prod.register()
        let issued = try enroll(prod, "payments")
        XCTAssertEqual(issued.spiffeId, "spiffe://vouch.test/prod/gpu-1/payments")
        XCTAssertEqual(issued.policy, "prod v1")
        let cert = try Certificate(pem: issued.certificate)
        XCTAssertEqual(cert.notAfter.timeIntervalSince(cert.notBefore), 5 * 60 + 30, accuracy: 2,
                       "ttl 15m capped by the default re-attestation interval (5m) + grace (0s), plus 30s back-dating")

        XCTAssertEqual(try broker.vouch(["host", "delete", prod.hostID!]).status, 0)
        let strict = attester(broker, tpm, labels: ["env": "prod", "tier": "strict"])
        try strict.register()
        let refused = refusal { _ = try enroll(strict) }
        XCTAssertEqual(refused?.code, "pcr_not_allowed")
        XCTAssertEqual(refused?.violations?.map(\.path), ["pcrs.values.7"])
        XCTAssertEqual(try broker.status().hosts.first?.policy, "strict v1", "one TPM, one host: the labels it registered with select the policy")
        XCTAssertEqual(try broker.status().policies.policies.map(\.name), ["strict", "prod", "default"])
    }

    func testReloadNeverLetsABrokenFileIn() throws {
        let tpm = try SwTPM()
        let dir = tpm.dir.appendingPathComponent("policies")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let file = dir.appendingPathComponent("policy.yaml")
        try policyText(name: "fleet").write(to: file, atomically: true, encoding: .utf8)
        let broker = try BrokerHarness(trusting: tpm, policy: dir.path)
        let host = attester(broker, tpm)
        try host.register()
        _ = try enroll(host)

        // A broken edit (unknown key) and SIGHUP: refused, reported, the old policy keeps serving.
        try (policyText(name: "fleet", version: 2) + "pcrz: 1\n").write(to: file, atomically: true, encoding: .utf8)
        broker.signal(SIGHUP)
        try waitFor("the reload error in status") { try broker.status().policies.reloadError != nil }
        let status = try broker.status().policies
        XCTAssertEqual(status.reloadError?.code, "policy_invalid")
        XCTAssertEqual(status.reloadError?.context?["path"], "pcrz")
        XCTAssertEqual(status.reloadError?.context?["line"], "16")
        XCTAssertEqual(status.policies.map(\.version), [1])
        XCTAssertNoThrow(try enroll(host, "still-served"))
        XCTAssertTrue(broker.log.contains("policy reload refused"))
        let viaAPI = refusal { _ = try broker.admin().call("POST", "/v1/policies/reload", body: nil as String?, as: PolicyStatus.self) }
        XCTAssertEqual(viaAPI?.code, "policy_invalid")
        let cli = try broker.vouch(["status"])
        XCTAssertTrue(cli.stdout.contains("last reload refused"), cli.stdout)
        let metrics = try broker.metrics()
        XCTAssertTrue(metrics.contains("\nvouch_policy_reload_failing 1\n"), metrics)
        XCTAssertTrue(metrics.contains("vouch_policy_reloads_total{result=\"refused\"}"), metrics)
        XCTAssertTrue(metrics.contains("\nvouch_policies_loaded 1\n"), metrics)

        // A valid edit is picked up by the file watcher alone, and clears the error.
        try policyText(name: "fleet", version: 2, pcr7: String(repeating: "7", count: 64)).write(to: file, atomically: true, encoding: .utf8)
        try waitFor("version 2 in force") { try broker.status().policies.policies.first?.version == 2 }
        XCTAssertNil(try broker.status().policies.reloadError)
        XCTAssertTrue(try broker.metrics().contains("\nvouch_policy_reload_failing 0\n"))
        XCTAssertEqual(refusal { _ = try enroll(host, "under-v2") }?.code, "pcr_not_allowed")
    }

    /// The measured model changes on a host; its next enrollment is refused naming the model rule.
    func testChangedModelIsRefusedByTheModelRule() throws {
        let tpm = try SwTPM()
        let weights = tpm.dir.appendingPathComponent("model.safetensors")
        try Data("approved weights".utf8).write(to: weights)
        let log = tpm.dir.appendingPathComponent("model-log.json").path
        let measure = { try TestEnv.run(TestEnv.bin("vouch-attester"), ["measure-model", "--tcti", tpm.tcti, "--model-log", log, weights.path]) }
        let first = try measure()
        XCTAssertEqual(first.status, 0, first.stderr)
        let manifest = try XCTUnwrap(first.stdout.components(separatedBy: "manifest ").last?.prefix(64)).description
        let policy = tpm.dir.appendingPathComponent("policy.yaml")
        try policyText(name: "models", extra: "model:\n  required: true\n  allowed:\n    - name: approved-model\n      manifest: \(manifest)\n")
            .write(to: policy, atomically: true, encoding: .utf8)
        let broker = try BrokerHarness(trusting: tpm, policy: policy.path)
        let host = attester(broker, tpm, modelLog: log)
        try host.register()
        _ = try enroll(host)

        try Data("swapped weights".utf8).write(to: weights)
        XCTAssertEqual(try measure().status, 0)
        let changed = refusal { _ = try enroll(host, "after-swap") }
        XCTAssertEqual(changed?.code, "model_not_allowed")
        XCTAssertEqual(changed?.violations?.first?.path, "model.allowed")
        XCTAssertTrue(changed?.violations?.first?.expected.contains("approved-model") ?? false)

        // PCR 23 extended behind the log's back (another digest): the log no longer explains the quote.
        XCTAssertEqual(try tpm.tools("tpm2_pcrextend", ["23:sha256=" + String(repeating: "ab", count: 32)]).status, 0)
        XCTAssertEqual(refusal { _ = try enroll(host, "tampered") }?.code, "model_log_mismatch")
    }

    /// Export a host's evidence, capture a draft policy from it, lint it and test it: the draft
    /// accepts that host; after a PCR changes, the development policy test names the violation.
    func testCaptureLintAndTestOnRealEvidence() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let host = attester(broker, tpm, labels: ["env": "lab"])
        try host.register()
        _ = try enroll(host)
        let bundle = broker.dir.appendingPathComponent("evidence.json").path
        let export = try broker.vouch(["status", "--evidence", host.hostID!, "--out", bundle])
        XCTAssertEqual(export.status, 0, export.stderr)

        let capture = try broker.vouch(["policy", "capture", "--evidence", bundle, "--name", "lab-hosts"])
        XCTAssertEqual(capture.status, 0, capture.stderr)
        let draft = broker.dir.appendingPathComponent("draft.yaml").path
        try capture.stdout.write(toFile: draft, atomically: true, encoding: .utf8)
        XCTAssertTrue(capture.stdout.contains("env: \"lab\""))
        let lint = try broker.vouch(["policy", "lint", draft])
        XCTAssertEqual(lint.status, 0, lint.stderr + capture.stdout)
        XCTAssertEqual(try broker.vouch(["policy", "test", draft, "--evidence", bundle]).status, 0)
        let viaHost = try broker.vouch(["policy", "capture", "--host", host.hostID!])
        XCTAssertEqual(viaHost.status, 0, viaHost.stderr)

        // The host's PCR 3 changes: its new evidence fails the development policy, naming the rule.
        XCTAssertEqual(try tpm.tools("tpm2_pcrextend", ["3:sha256=" + String(repeating: "cd", count: 32)]).status, 0)
        _ = refusal { _ = try enroll(host, "after-change") }
        XCTAssertEqual(try broker.vouch(["status", "--evidence", host.hostID!, "--out", bundle]).status, 0)
        let test = try broker.vouch(["policy", "test", TestEnv.packageRoot.appendingPathComponent("policies/development.yaml").path, "--evidence", bundle, "--json"])
        XCTAssertEqual(test.status, 1)
        XCTAssertTrue(test.stdout.contains("\"path\" : \"pcrs.values.3\""), test.stdout)

        let broken = broker.dir.appendingPathComponent("broken.yaml").path
        try "apiVersion: vouch/v1\nname: x\nversion: 1\npcrs:\n  bank: md5\n".write(toFile: broken, atomically: true, encoding: .utf8)
        let lintBroken = try broker.vouch(["policy", "lint", broken])
        XCTAssertEqual(lintBroken.status, 1)
        XCTAssertTrue(lintBroken.stderr.contains("broken.yaml:5:9: pcrs.bank"), lintBroken.stderr)
        XCTAssertEqual(try broker.vouch(["policy", "test", broken, "--evidence", bundle]).status, 2)
        XCTAssertEqual(try broker.vouch(["policy", "test", draft, "--evidence", broken]).status, 2)
    }
}
