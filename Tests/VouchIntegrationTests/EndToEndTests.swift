import Foundation
import XCTest
import VouchAPI
import VouchCore
import VouchCrypto

/// The quick-start story through the real executables: swtpm, vouchd, vouch-attester and vouch,
/// with OpenSSL as the relying party.
final class EndToEndTests: XCTestCase {
    func testEnrollVerifyRevokeAndSurviveRestart() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let (attester, socket) = try broker.startAttesterProcess(for: tpm)
        defer { attester.stop() }
        let out = broker.dir.appendingPathComponent("agent").path

        let enroll = try broker.vouch(["enroll", "--name", "agent-1", "--out", out], socket: socket)
        XCTAssertEqual(enroll.status, 0, enroll.stderr + attester.log + broker.log)
        let certPath = out + "/agent-1.pem"
        let cert = try Certificate(pem: String(contentsOfFile: certPath, encoding: .utf8))
        let status = try broker.status()
        XCTAssertEqual(status.hosts.count, 1)
        let host = try XCTUnwrap(status.hosts.first)
        XCTAssertEqual(host.akState, "active")
        XCTAssertEqual(cert.uriSANs, ["spiffe://vouch.test/host/\(host.hostId)/agent/agent-1"])
        XCTAssertEqual(cert.notAfter.timeIntervalSince(cert.notBefore), 15 * 60 + 30, accuracy: 2, "policy TTL (15m) plus 30s of back-dating")
        let keyMode = try FileManager.default.attributesOfItem(atPath: out + "/agent-1.key")[.posixPermissions] as? Int
        XCTAssertEqual(keyMode, 0o600)
        let caKeyMode = try FileManager.default.attributesOfItem(atPath: broker.dir.appendingPathComponent("data/ca/ca.key").path)[.posixPermissions] as? Int
        XCTAssertEqual(caKeyMode, 0o600)

        // A relying party with OpenSSL accepts it, checking the whole certificate profile.
        let verify = try TestEnv.run("openssl", ["verify", "-purpose", "sslclient", "-CAfile", broker.agentCAFile, certPath])
        XCTAssertEqual(verify.status, 0, verify.stderr)
        let text = try TestEnv.run("openssl", ["x509", "-in", certPath, "-noout", "-text"]).stdout
        for expected in ["Digital Signature", "TLS Web Server Authentication, TLS Web Client Authentication", "CA:FALSE",
                         "X509v3 Authority Key Identifier", "X509v3 Subject Key Identifier", "http://127.0.0.1:\(broker.port + 1)/v1/crl"] {
            XCTAssertTrue(text.contains(expected), "certificate text lacks \(expected)")
        }

        // Status through the CLI shows host, attestation and certificate.
        let cliStatus = try broker.vouch(["status"])
        XCTAssertEqual(cliStatus.status, 0, cliStatus.stderr)
        XCTAssertTrue(cliStatus.stdout.contains(host.hostId) && cliStatus.stdout.contains(cert.serialHex) && cliStatus.stdout.contains("trusted"))

        // Revoke, then the CRL lists it and OpenSSL refuses the certificate.
        let revoke = try broker.vouch(["revoke", "--serial", cert.serialHex, "--reason", "keyCompromise"])
        XCTAssertEqual(revoke.status, 0, revoke.stderr)
        let crlPath = broker.dir.appendingPathComponent("crl.der").path
        let crl = try broker.vouch(["crl", "--out", crlPath])
        XCTAssertEqual(crl.status, 0, crl.stderr)
        XCTAssertTrue(crl.stdout.contains(cert.serialHex))
        let pem = broker.dir.appendingPathComponent("crl.pem").path
        XCTAssertEqual(try TestEnv.run("openssl", ["crl", "-inform", "der", "-in", crlPath, "-out", pem]).status, 0)
        let crlText = try TestEnv.run("openssl", ["crl", "-in", pem, "-noout", "-text"]).stdout
        XCTAssertTrue(crlText.contains("Key Compromise"))
        XCTAssertTrue(crlText.contains("X509v3 CRL Number"))
        let revokedCheck = try TestEnv.run("openssl", ["verify", "-crl_check", "-CAfile", broker.agentCAFile, "-CRLfile", pem, certPath])
        XCTAssertNotEqual(revokedCheck.status, 0)
        XCTAssertTrue((revokedCheck.stdout + revokedCheck.stderr).contains("certificate revoked"))

        let metrics = try broker.metrics()
        for line in ["vouch_enrollments_total{result=\"issued\"} 1", "vouch_revocations_total 1", "vouch_hosts{ak_state=\"active\"} 1",
                     "vouch_certificates{state=\"revoked\"} 1", "vouch_crl_number 2"] {
            XCTAssertTrue(metrics.contains(line + "\n"), "metrics lack \(line):\n\(metrics)")
        }

        // A second revocation of the same serial is refused and changes nothing.
        XCTAssertEqual(try broker.vouch(["revoke", "--serial", cert.serialHex]).status, 1)

        // A restart loses nothing: host, attestation history, certificate, revocation, CRL number.
        let before = try broker.status()
        try broker.restart()
        let after = try broker.status()
        XCTAssertEqual(after.hosts.map(\.hostId), before.hosts.map(\.hostId))
        XCTAssertEqual(after.hosts.first?.akState, "active")
        XCTAssertEqual(after.certificates.map(\.serial), [cert.serialHex])
        XCTAssertEqual(after.certificates.first?.state, .revoked)
        XCTAssertEqual(after.crlNumber, before.crlNumber)
        let crlAgain = try broker.client().raw("GET", "/v1/crl")
        XCTAssertEqual(crlAgain.header("Content-Type"), "application/pkix-crl")
        XCTAssertEqual(try CRL(der: crlAgain.body).revokedSerials, [cert.serialHex])
    }

    func testCLIUsageAndAuthErrors() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        XCTAssertEqual(try broker.vouch(["enroll"]).status, 2, "missing --name")
        XCTAssertEqual(try broker.vouch(["frobnicate"]).status, 2)
        XCTAssertEqual(try broker.vouch(["status", "--bogus", "1"]).status, 2)
        let noToken = try TestEnv.run(TestEnv.bin("vouch"), ["status", "--broker", broker.url, "--ca", broker.brokerCAFile],
                                      env: ["VOUCH_TOKEN_FILE": ""])
        XCTAssertEqual(noToken.status, 2)
        let badToken = broker.dir.appendingPathComponent("bad.token").path
        try "vouch_not_the_token_at_all_0000000000000000".write(toFile: badToken, atomically: true, encoding: .utf8)
        let wrong = try TestEnv.run(TestEnv.bin("vouch"), ["status", "--broker", broker.url, "--ca", broker.brokerCAFile, "--token-file", badToken])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("unauthorized"), wrong.stderr)
        // TLS below 1.2 is refused; 1.2 and 1.3 are accepted.
        func handshake(_ version: String) throws -> Int32 {
            try TestEnv.run("/bin/sh", ["-c", "openssl s_client -connect 127.0.0.1:\(broker.port) \(version) -CAfile \(broker.brokerCAFile) </dev/null >/dev/null 2>&1"]).status
        }
        XCTAssertNotEqual(try handshake("-tls1_1"), 0, "TLS 1.1 must be refused")
        XCTAssertNotEqual(try handshake("-tls1"), 0, "TLS 1.0 must be refused")
        XCTAssertEqual(try handshake("-tls1_2"), 0)
        XCTAssertEqual(try handshake("-tls1_3"), 0)

        // An oversized header gets an error answer, and the daemon keeps serving.
        let huge = try TestEnv.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", broker.brokerCAFile,
                                            "-H", "X-Big: " + String(repeating: "a", count: 100_000), "\(broker.url)/v1/health"])
        XCTAssertTrue(["400", "413", "431", "000"].contains(huge.stdout), "got \(huge.stdout)")
        XCTAssertEqual(try broker.client().raw("GET", "/v1/health").status, 200)

        // A CA that did not issue the broker's TLS certificate: the connection is refused.
        let otherCA = tpm.rootCA.path
        let pinned = try TestEnv.run(TestEnv.bin("vouch"), ["crl", "--broker", broker.url, "--ca", otherCA])
        XCTAssertEqual(pinned.status, 1, pinned.stderr)
    }
}
