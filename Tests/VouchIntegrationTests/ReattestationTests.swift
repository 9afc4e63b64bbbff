import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchTestSupport

/// Continuous re-attestation with real processes: vouchd pulls quotes from a vouch-attester over
/// mutual TLS on its own schedule; drift revokes, recovery trusts again, a vanished attester is
/// unreachable (not failed) until the grace ends.
final class ReattestationTests: XCTestCase {
    /// The development policy, re-attesting every 10 s, with 6 s of grace for unreachable hosts.
    static func policy(in dir: URL, interval: String = "10s", grace: String = "6s", action: String = "revoke") throws -> String {
        var text = try String(contentsOf: TestEnv.packageRoot.appendingPathComponent("policies/development.yaml"), encoding: .utf8)
        text = text.replacingOccurrences(of: "  interval: 15m", with: "  interval: \(interval)")
            .replacingOccurrences(of: "    grace: 0s", with: "    grace: \(grace)")
            .replacingOccurrences(of: "    action: revoke", with: "    action: \(action)")
            .replacingOccurrences(of: "  ttl: 15m", with: "  ttl: 5m")
        let path = dir.appendingPathComponent("reattest.yaml")
        try text.write(to: path, atomically: true, encoding: .utf8)
        return path.path
    }

    func host(_ broker: BrokerHarness, _ id: String) throws -> HostStatus { try broker.hostStatus(id) }

    func waitFor(_ what: String, timeout: TimeInterval, _ condition: () throws -> Bool) throws {
        try TestEnv.waitFor(what, timeout: timeout, condition)
    }

    static func enroll(_ socket: String, _ name: String) throws -> EnrollResponse {
        try APIClient(transport: HTTPClient(.unix(path: socket))).call("POST", "/v1/enroll", body: AgentEnrollRequest(
            agentName: name, csr: try CSR.create(key: try PrivateKey.generate(), commonName: name).pem), as: EnrollResponse.self)
    }

    /// The OCSP status of `certPEM` as `openssl ocsp` reads the broker's signed answer.
    static func ocspStatus(_ broker: BrokerHarness, _ certPEM: String) throws -> String {
        let d = broker.dir.path, cert = d + "/ocsp-cert.pem"
        try certPEM.write(toFile: cert, atomically: true, encoding: .utf8)
        XCTAssertEqual(try TestEnv.run("openssl", ["ocsp", "-issuer", broker.agentCAFile, "-cert", cert, "-reqout", d + "/req.der", "-no_nonce"]).status, 0)
        let resp = try broker.client().transport.send("POST", "/v1/ocsp", headers: [:], body: [UInt8](try Data(contentsOf: URL(fileURLWithPath: d + "/req.der"))))
        try Data(resp.body).write(to: URL(fileURLWithPath: d + "/resp.der"))
        let r = try TestEnv.run("openssl", ["ocsp", "-issuer", broker.agentCAFile, "-cert", cert, "-respin", d + "/resp.der", "-CAfile", broker.agentCAFile, "-no_nonce"])
        return r.stdout
    }

    static func crlText(_ broker: BrokerHarness) throws -> String {
        let der = try broker.client().transport.send("GET", "/v1/crl", headers: [:], body: nil).body
        let path = broker.dir.appendingPathComponent("crl.der")
        try Data(der).write(to: path)
        return try TestEnv.run("openssl", ["crl", "-inform", "der", "-in", path.path, "-noout", "-text"]).stdout
    }

    func testDriftRevokesRecoveryTrustsVanishedAttesterIsUnreachableThenFailed() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, policy: try Self.policy(in: tpm.dir))
        let port = TestEnv.freePorts(1)
        let (attester, socket) = try broker.startAttesterProcess(for: tpm, extraArgs: ["--listen", "127.0.0.1:\(port)"])
        defer { attester.stop() }
        let id = try XCTUnwrap(try broker.status().hosts.first?.hostId)

        // The first pull comes at once: trusted, in pull mode, without any enrollment.
        try waitFor("the first pull", timeout: 10) { try host(broker, id).trust?.state == "trusted" }
        XCTAssertEqual(try host(broker, id).trust?.mode, "pull")
        let agent = try Self.enroll(socket, "worker")

        let events = broker.dir.appendingPathComponent("events.txt")
        let curl = try BackgroundProcess("/usr/bin/curl", ["-sN", "-m", "120", "--cacert", broker.brokerCAFile, "-o", events.path, "\(broker.url)/v1/events"],
                                         log: broker.dir.appendingPathComponent("curl.log"))
        defer { curl.stop() }

        // Drift: PCR 7 changes (as a Secure Boot policy change would). The attester's drift watcher
        // hints (else the next scheduled pull, within the 10 s interval, would see it); the pull
        // fails the policy; the revocation is visible at once.
        XCTAssertEqual(try tpm.tools("tpm2_pcrextend", ["7:sha256=" + String(repeating: "ab", count: 32)]).status, 0)
        try waitFor("the failed verdict", timeout: 30) { try host(broker, id).trust?.state == "untrusted" }
        let serialUpper = agent.serial.uppercased()
        // The revocation commits with the state change, in one transaction, and the CRL cache is
        // bypassed until it holds that commit, so the moment the state reads untrusted the CRL
        // already lists the certificate (an ordering, not a speed, check).
        XCTAssertTrue(try Self.crlText(broker).contains(serialUpper), "CRL does not list \(agent.serial)")
        XCTAssertTrue(try Self.ocspStatus(broker, agent.certificate).contains("revoked"))
        let streamed = (try? String(contentsOf: events, encoding: .utf8)) ?? ""
        XCTAssertTrue(streamed.contains("event: certificate.revoked") && streamed.contains(agent.serial), streamed)
        XCTAssertTrue(streamed.contains("event: host.untrusted"), streamed)
        // How fast a revocation becomes visible is the broker's own measurement (failed verdict ->
        // revocations, CRL and event committed), read from /metrics rather than timed by the test.
        let metrics = try broker.metrics()
        func sample(_ name: String) -> Double? {
            metrics.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
        }
        let revocations = try XCTUnwrap(sample("vouch_revocation_seconds_count"), metrics)
        XCTAssertGreaterThanOrEqual(revocations, 1, metrics)
        XCTAssertLessThan(try XCTUnwrap(sample("vouch_revocation_seconds_sum"), metrics) / revocations, 1.0, metrics)
        let status = try host(broker, id)
        XCTAssertEqual(status.lastAttestation?.codes, ["pcr_not_allowed"])
        // An agent on a failed host is refused a new certificate (its evidence fails the same policy).
        XCTAssertThrowsError(try Self.enroll(socket, "worker-2"))

        // Recovery: the TPM resets (reboot into the allowed state); the next pull trusts it again.
        tpm.stop()
        try tpm.start()
        try waitFor("recovery", timeout: 15) { try host(broker, id).trust?.state == "trusted" }
        XCTAssertTrue(try Self.ocspStatus(broker, agent.certificate).contains("revoked"), "a revoked certificate must stay revoked")
        let fresh = try Self.enroll(socket, "worker")
        XCTAssertTrue(try Self.ocspStatus(broker, fresh.certificate).contains(": good"))
        XCTAssertTrue(((try? String(contentsOf: events, encoding: .utf8)) ?? "").contains("event: host.trusted"))

        // The attester vanishes: unreachable (a fault, not a verdict; certificates stand) ...
        attester.stop()
        try waitFor("unreachable", timeout: 15) { try host(broker, id).trust?.state == "unreachable" }
        let unreachable = try host(broker, id)
        XCTAssertEqual(unreachable.trust?.lastProblem, "attester_unreachable")
        XCTAssertTrue(try Self.ocspStatus(broker, fresh.certificate).contains(": good"))
        // ... until the 6 s grace has passed: then failed, and the policy's action applies.
        try waitFor("grace to end", timeout: 15) { try host(broker, id).trust?.state == "untrusted" }
        XCTAssertTrue(try Self.ocspStatus(broker, fresh.certificate).contains("revoked"))
        let since = try XCTUnwrap(unreachable.trust.flatMap { Date.parseRFC3339($0.since) })
        let failedAt = try XCTUnwrap(try host(broker, id).trust.flatMap { Date.parseRFC3339($0.since) })
        XCTAssertGreaterThanOrEqual(failedAt.timeIntervalSince(since), 5)   // whole seconds in the API
    }

    /// The attester hangs in the middle of pulls (SIGSTOP: connections are accepted by the kernel,
    /// nothing answers): each pull times out, the host is unreachable with attester_timeout — a
    /// fault, not a verdict, so its certificate stands within the grace — and when the attester
    /// resumes the next try (backoff, not the full interval) trusts it again.
    func testAttesterHangingMidPullIsAFaultNotAVerdict() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, policy: try Self.policy(in: tpm.dir, grace: "5m"), extraArgs: ["--pull-timeout", "2s"])
        let port = TestEnv.freePorts(1)
        let (attester, socket) = try broker.startAttesterProcess(for: tpm, extraArgs: ["--listen", "127.0.0.1:\(port)"])
        defer { attester.stop() }
        let id = try XCTUnwrap(try broker.status().hosts.first?.hostId)
        try waitFor("the first pull", timeout: 10) { try host(broker, id).trust?.state == "trusted" }
        let agent = try Self.enroll(socket, "steady")

        kill(attester.process.processIdentifier, SIGSTOP)
        try waitFor("a timed-out pull", timeout: 20) { try host(broker, id).trust?.state == "unreachable" }
        XCTAssertEqual(try host(broker, id).trust?.lastProblem, "attester_timeout")
        XCTAssertTrue(try Self.ocspStatus(broker, agent.certificate).contains(": good"), "a fault within the grace revokes nothing")
        let history = try broker.admin().call("GET", "/v1/hosts/\(id)/attestations?kind=fault", as: AttestationPage.self)
        XCTAssertEqual(history.items.first?.codes, ["attester_timeout"])

        // Retries back off from 1 s (capped at the interval): `backoffDelay` is checked without a
        // clock in CoreBackoffTests; here only that the resumed attester is trusted again.
        kill(attester.process.processIdentifier, SIGCONT)
        try waitFor("recovery after resume", timeout: 30) { try host(broker, id).trust?.state == "trusted" }
        XCTAssertTrue(try Self.ocspStatus(broker, agent.certificate).contains(": good"))
        let metrics = try broker.metrics()
        XCTAssertTrue(metrics.contains("vouch_attestations_total{result=\"attester_timeout\"}"), metrics)
    }
}
