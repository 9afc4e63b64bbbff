import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchModel

/// The always-on service seen from its users: push mode and who may talk to whom (mutual TLS),
/// scoped tokens, EAR results and `vouch check` as a workflow gate.
final class ServiceAPITests: XCTestCase {
    func refusal(_ body: () throws -> Void) -> APIError? {
        do { try body() } catch let f as APIFailure { return f.error } catch { XCTFail("\(error)") }
        XCTFail("expected a refusal")
        return nil
    }

    func testPushModeAndMutualTLSRefusals() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, policy: try ReattestationTests.policy(in: tpm.dir))
        let attester = broker.pushAttester(for: tpm, hostname: "edge-1")
        let id = try attester.register()
        let identity = try XCTUnwrap(attester.identity)
        XCTAssertEqual(try Certificate(pem: identity.certificatePEM).uriSANs, ["spiffe://vouch.test/host/\(id)"])
        XCTAssertEqual(identity.brokerSpiffeID, "spiffe://vouch.test/vouchd")

        // A pushed report over mTLS gets a verdict; the host is trusted, in push mode.
        let (verdict, interval) = try attester.pushReport()
        XCTAssertEqual(verdict.result, .trusted)
        XCTAssertEqual(verdict.state, "trusted")
        XCTAssertEqual(interval, 10)
        let status = try broker.admin().call("GET", "/v1/hosts/\(id)", as: HostStatus.self)
        XCTAssertEqual(status.trust?.mode, "push")
        XCTAssertEqual(status.trust?.state, "trusted")

        // Two agents on the host (their certificates will matter below).
        let agent = try attester.enroll(AgentEnrollRequest(agentName: "pusher", csr: try CSR.create(key: try PrivateKey.generate(), commonName: "pusher").pem))
        let agentKey = try PrivateKey.generate()
        let reissued = try attester.enroll(AgentEnrollRequest(agentName: "pusher2", csr: try CSR.create(key: agentKey, commonName: "pusher2").pem))
        // The broker's own certificate is not this host's: it chains to the broker CA, which the API
        // does not accept for client certificates at all, so it counts as none.
        // (Agent certificates cannot stand in here: GnuTLS, under libmicrohttpd, fails to parse the
        // 128-bit arc of the attestation extension's OID and drops the handshake; docs/certificates.md.)
        let agentCert = broker.dataDir.appendingPathComponent("tls/client.pem").path, agentKeyFile = broker.dataDir.appendingPathComponent("tls/client.key").path

        // Without a client certificate, or with a certificate that is not this host's: refused,
        // and nothing is judged (the nonce stays unused).
        let challenge = try broker.client().call("POST", "/v1/challenges", body: ChallengeRequest(hostId: id, purpose: "attestation"), as: ChallengeResponse.self)
        let body = try attester.reattestationQuote(QuoteRequest(nonce: challenge.nonce, pcrSelection: challenge.pcrSelection))
        let report = AttestationReport(nonce: challenge.nonce, quote: body)
        let anonymous = refusal { _ = try broker.client().call("POST", "/v1/hosts/\(id)/attestations", body: report, as: AttestationVerdict.self) }
        XCTAssertEqual(anonymous?.code, "client_certificate_required")
        let wrongIdentity = APIClient(transport: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile),
                                                            identity: .init(certificateFile: agentCert, keyFile: agentKeyFile)))
        let mismatch = refusal { _ = try wrongIdentity.call("POST", "/v1/hosts/\(id)/attestations", body: report, as: AttestationVerdict.self) }
        XCTAssertEqual(mismatch?.code, "client_certificate_required", broker.log)
        // The genuine report with that same nonce still goes through: the refusals consumed nothing.
        let mtls = APIClient(transport: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile),
                                                   identity: .init(certificateFile: identity.certificateFile!, keyFile: identity.keyFile!)))
        XCTAssertEqual(try mtls.call("POST", "/v1/hosts/\(id)/attestations", body: report, as: AttestationVerdict.self).result, .trusted)
        // Replaying it is refused (nonce used), with no verdict.
        XCTAssertEqual(refusal { _ = try mtls.call("POST", "/v1/hosts/\(id)/attestations", body: report, as: AttestationVerdict.self) }?.code, "nonce_reused")
        // An enrollment nonce is not a re-attestation nonce (the nonce's MAC binds its purpose)...
        let enrollment = try broker.client().call("POST", "/v1/challenges", body: ChallengeRequest(hostId: id), as: ChallengeResponse.self)
        let wrongPurpose = try attester.reattestationQuote(QuoteRequest(nonce: enrollment.nonce, pcrSelection: enrollment.pcrSelection))
        XCTAssertEqual(refusal { _ = try mtls.call("POST", "/v1/hosts/\(id)/attestations", body: AttestationReport(nonce: enrollment.nonce, quote: wrongPurpose),
                                                   as: AttestationVerdict.self) }?.code, "nonce_unknown")
        // ...and an enrollment quote cannot stand in for a re-attestation report (different binding).
        let c2 = try broker.client().call("POST", "/v1/challenges", body: ChallengeRequest(hostId: id, purpose: "attestation"), as: ChallengeResponse.self)
        let enrollQuote = try attester.quote(qualifyingData: EnrollmentBinding.qualifyingData(nonce: try Hex.decode(c2.nonce), agentSPKI: try agentKey.publicKey.spkiDER),
                                             selection: .init(banks: [.init(hash: .sha256, pcrs: Array(0...7) + [23])]))
        let crossed = try mtls.call("POST", "/v1/hosts/\(id)/attestations",
                                    body: AttestationReport(nonce: c2.nonce, quote: try Attester.quoteBody(enrollQuote, eventLogPath: nil, modelLogPath: nil)),
                                    as: AttestationVerdict.self)
        XCTAssertEqual(crossed.result, .rejected)
        XCTAssertEqual(crossed.codes, ["qualifying_data_mismatch"])
        XCTAssertEqual(crossed.state, "untrusted")
        XCTAssertEqual(crossed.revoked?.sorted(), [agent.serial, reissued.serial].sorted())
        // A bad purpose is refused.
        XCTAssertEqual(refusal { _ = try broker.client().call("POST", "/v1/challenges", body: ChallengeRequest(hostId: id, purpose: "x"), as: ChallengeResponse.self) }?.code,
                       "bad_request")
    }

    /// Push mode: a host that stops reporting is unreachable (report_overdue) once its interval
    /// plus slack has passed — a fault, not a verdict — and its next report trusts it again.
    func testMissedPushReportsMakeAHostUnreachable() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, policy: try ReattestationTests.policy(in: tpm.dir, grace: "5m"))
        let attester = broker.pushAttester(for: tpm, hostname: "behind-nat")
        let id = try attester.register()
        XCTAssertEqual(try attester.pushReport().verdict.state, "trusted")
        let reported = Date()
        func trust() throws -> HostTrustStatus? { try broker.admin().call("GET", "/v1/hosts/\(id)", as: HostStatus.self).trust }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, try trust()?.state != "unreachable" { usleep(200_000) }
        XCTAssertEqual(try trust()?.state, "unreachable")
        XCTAssertEqual(try trust()?.lastProblem, "report_overdue")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(reported), 15, "interval 10 s + 5 s slack")
        XCTAssertEqual(try attester.pushReport().verdict.state, "trusted")
    }

    func testPullEndpointAnswersOnlyTheBroker() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let port = TestEnv.freePorts(1)
        let (process, _) = try broker.startAttesterProcess(for: tpm, extraArgs: ["--listen", "127.0.0.1:\(port)"])
        defer { process.stop() }
        XCTAssertTrue(TestEnv.waitForPort(port))
        let body = #"{"nonce":"\#(String(repeating: "ab", count: 32))","pcrSelection":[{"bank":"sha256","pcrs":[0]}]}"#
        // No client certificate: the TLS handshake succeeds (the host certificate chains to the
        // broker CA) but the request is refused.
        let plain = try TestEnv.run("/usr/bin/curl", ["-s", "-k", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-d", body,
                                                      "https://127.0.0.1:\(port)/v1/quote"])
        XCTAssertEqual(plain.stdout, "401")
        // The broker's own client certificate is answered with a quote.
        let tls = broker.dataDir.appendingPathComponent("tls").path
        let asBroker = try TestEnv.run("/usr/bin/curl", ["-s", "--cacert", broker.brokerCAFile, "--cert", tls + "/client.pem", "--key", tls + "/client.key",
                                                         "-k", "-X", "POST", "-d", body, "https://127.0.0.1:\(port)/v1/quote"])
        let quote = try JSONCodec.decode(QuoteBody.self, from: Array(asBroker.stdout.utf8))
        XCTAssertEqual(quote.pcrs["sha256"]?["0"], String(repeating: "0", count: 64))
        // TLS 1.1 is refused outright.
        let old = try TestEnv.run("/usr/bin/curl", ["-s", "-k", "--tlsv1.1", "--tls-max", "1.1", "https://127.0.0.1:\(port)/v1/quote"])
        XCTAssertNotEqual(old.status, 0)
    }

    func testScopedTokensEARAndCheck() throws {
        let tpm = try SwTPM()
        let weights = tpm.dir.appendingPathComponent("model.bin")
        try Data("weights v1".utf8).write(to: weights)
        let modelLog = tpm.dir.appendingPathComponent("model.json").path
        let model = try ModelMeasurement.measure(paths: [weights.path], tcti: tpm.tcti, logPath: modelLog)
        let broker = try BrokerHarness(trusting: tpm)
        let attester = Attester(config: AttesterConfig(tcti: tpm.tcti, hostname: "gpu-7", modelLogPath: modelLog),
                                broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
        let id = try attester.register()
        let key = try PrivateKey.generate()
        let issued = try attester.enroll(AgentEnrollRequest(agentName: "payments", csr: try CSR.create(key: key, commonName: "payments").pem))
        let certFile = broker.dir.appendingPathComponent("payments.pem").path
        try issued.certificate.write(toFile: certFile, atomically: true, encoding: .utf8)

        // A read token, made with the CLI; it reads but cannot revoke.
        let readFile = broker.dir.appendingPathComponent("read.token").path
        let created = try broker.vouch(["token", "create", "--name", "workflow", "--scope", "read", "--out", readFile])
        XCTAssertEqual(created.status, 0, created.stderr)
        let token = try String(contentsOfFile: readFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let reader = APIClient(transport: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)), bearerToken: token)
        XCTAssertEqual(try reader.call("GET", "/v1/summary", as: StatusSummary.self).hostsByState["trusted"], 1)
        XCTAssertEqual(refusal { _ = try reader.call("POST", "/v1/revoke", body: RevokeRequest(serial: issued.serial), as: RevokeResponse.self) }?.code, "forbidden")
        XCTAssertEqual(refusal { _ = try reader.call("POST", "/v1/tokens", body: TokenCreateRequest(name: "x", scope: "admin"), as: TokenInfo.self) }?.code, "forbidden")

        // The EAR: ES256 over the claims, chaining to the broker CA, echoing our nonce.
        let ear = String(decoding: try reader.raw("GET", "/v1/hosts/\(id)/ear?nonce=abcdefgh12345678").body, as: UTF8.self)
        let anchors = try Certificate.chain(pem: String(contentsOfFile: broker.brokerCAFile, encoding: .utf8))
        let brokerID = "spiffe://vouch.test/vouchd"
        let claims = try JSONSerialization.jsonObject(with: Data(try JWSSigner.verify(ear, anchors: anchors, signer: brokerID, at: Date()))) as! [String: Any]
        XCTAssertEqual(claims["eat_profile"] as? String, "tag:github.com,2023:veraison/ear")
        XCTAssertEqual(claims["eat_nonce"] as? String, "abcdefgh12345678")
        let tpmClaims = (claims["submods"] as! [String: Any])["tpm"] as! [String: Any]
        XCTAssertEqual(tpmClaims["ear.status"] as? String, "affirming")
        XCTAssertTrue((tpmClaims["ear.appraisal-policy-id"] as? String ?? "").hasPrefix("vouch:policy:development:v1:sha256:"))
        // A tampered token does not verify.
        var parts = ear.split(separator: ".").map(String.init)
        parts[1] = JWSSigner.base64URL(Array(#"{"submods":{"tpm":{"ear.status":"affirming"}}}"#.utf8))
        XCTAssertThrowsError(try JWSSigner.verify(parts.joined(separator: "."), anchors: anchors, signer: brokerID, at: Date()))
        // ... nor one from another CA.
        XCTAssertThrowsError(try JWSSigner.verify(ear, anchors: [try CertificateAuthority.create(commonName: "other", key: try PrivateKey.generate(),
                                                                                                  notBefore: Date(), notAfter: Date().addingTimeInterval(60)).certificate], signer: brokerID, at: Date()))

        // vouch check: the workflow gate, with a read token only.
        func check(_ args: [String]) throws -> TestEnv.RunResult {
            try TestEnv.run(TestEnv.bin("vouch"), ["check"] + args, env: ["VOUCH_BROKER": broker.url, "VOUCH_CA": broker.brokerCAFile, "VOUCH_TOKEN_FILE": readFile])
        }
        let ok = try check(["--cert", certFile, "--policy", "development", "--model", model.manifestDigest])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        XCTAssertTrue(ok.stdout.hasPrefix("ok: spiffe://vouch.test/host/\(id)/agent/payments"), ok.stdout)
        let bySpiffe = try check(["--spiffe-id", issued.spiffeId, "--json"])
        XCTAssertEqual(bySpiffe.status, 0, bySpiffe.stderr)
        let wrongModel = try check(["--cert", certFile, "--model", String(repeating: "1", count: 64), "--policy", "production", "--json"])
        XCTAssertEqual(wrongModel.status, 1)
        XCTAssertEqual(try checkFailureCodes(wrongModel), ["policy_mismatch", "model_mismatch"])
        XCTAssertEqual(try check(["--cert", certFile, "--model", "nothex"]).status, 2)
        XCTAssertEqual(try check([]).status, 2)

        // Revoked: check fails on the CRL. Host untrusted (blocked): it fails on the EAR too.
        XCTAssertEqual(try broker.vouch(["revoke", "--host", id, "--block"]).status, 0)
        let revoked = try check(["--cert", certFile, "--json"])
        XCTAssertEqual(revoked.status, 1)
        XCTAssertEqual(try checkFailureCodes(revoked), ["certificate_revoked", "host_not_trusted"])

        // Revoking the token locks the workflow out.
        let list = try broker.admin().call("GET", "/v1/tokens", as: [TokenInfo].self)
        XCTAssertEqual(try broker.vouch(["token", "revoke", list[0].id]).status, 0)
        XCTAssertEqual(refusal { _ = try reader.call("GET", "/v1/summary", as: StatusSummary.self) }?.code, "unauthorized")
    }
}
