import Foundation
import XCTest
import VouchAPI
import VouchCore
import VouchCrypto

/// Identities that cannot be borrowed: the broker is known by its own CA, which certifies
/// nothing else; agent certificates name only their SPIFFE ID; results are verified against the
/// broker's signing identity only; a relying party refuses a stale CRL.
final class IdentityTests: XCTestCase {
    /// Attack: enroll an agent named "localhost", then serve its certificate as the broker (to
    /// collect the operator's token) or present it to an attester as the broker's client identity.
    func testAgentCertificateCannotPoseAsBroker() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let attesterPort = TestEnv.freePorts(1)
        let (attester, socket) = try broker.startAttesterProcess(for: tpm, extraArgs: ["--listen", "127.0.0.1:\(attesterPort)"])
        defer { attester.stop() }
        let out = broker.dir.appendingPathComponent("agent").path
        let enroll = try broker.vouch(["enroll", "--name", "localhost", "--out", out], socket: socket)
        XCTAssertEqual(enroll.status, 0, enroll.stderr + attester.log + broker.log)
        let certPath = out + "/localhost.pem", keyPath = out + "/localhost.key"

        // The certificate names nothing a host-name check could match: no CN, no DNS or IP SAN.
        let subject = try TestEnv.run("openssl", ["x509", "-in", certPath, "-noout", "-subject", "-nameopt", "RFC2253"])
        XCTAssertEqual(subject.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "subject=OU=agent,O=Vouch")
        let san = try TestEnv.run("openssl", ["x509", "-in", certPath, "-noout", "-ext", "subjectAltName"]).stdout
        XCTAssertFalse(san.contains("DNS:") || san.contains("IP Address:"), san)
        XCTAssertEqual(try Certificate(pem: String(contentsOfFile: certPath, encoding: .utf8)).uriSANs.count, 1)

        // An impostor serving the agent's certificate on 127.0.0.1 is refused by curl with the
        // documented broker CA (chain) and even with the agents' CA (no name matches), and by the CLI.
        let port = TestEnv.freePorts(1)
        let impostor = try BackgroundProcess("/usr/bin/openssl", ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", certPath, "-key", keyPath, "-www", "-quiet"],
                                             log: broker.dir.appendingPathComponent("impostor.log"))
        defer { impostor.stop() }
        XCTAssertTrue(TestEnv.waitForPort(port))
        for (host, ca) in [("localhost", broker.brokerCAFile), ("127.0.0.1", broker.brokerCAFile), ("localhost", broker.agentCAFile)] {
            let r = try TestEnv.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "--cacert", ca, "https://\(host):\(port)/v1/health"])
            XCTAssertEqual(r.status, 60, "curl must refuse the impostor's certificate (\(host), \(ca))")
        }
        let cli = try TestEnv.run(TestEnv.bin("vouch"), ["status", "--broker", "https://localhost:\(port)", "--ca", broker.brokerCAFile,
                                                         "--token-file", broker.tokenFile])
        XCTAssertEqual(cli.status, 1)

        // The attester answers only the broker CA's client certificate: the agent's is refused.
        XCTAssertTrue(TestEnv.waitForPort(attesterPort))
        let body = #"{"nonce":"\#(String(repeating: "ab", count: 32))","pcrSelection":[{"bank":"sha256","pcrs":[0]}]}"#
        let asAgent = try TestEnv.run("/usr/bin/curl", ["-s", "-k", "-o", "/dev/null", "-w", "%{http_code}", "--cert", certPath, "--key", keyPath,
                                                        "-X", "POST", "-d", body, "https://127.0.0.1:\(attesterPort)/v1/quote"])
        XCTAssertNotEqual(asAgent.stdout, "200")
    }

    /// Attack: replay an old CRL (taken before a revocation) to `vouch check`, and hand it an EAR
    /// signed by an agent's key under the agents' CA.
    func testCheckRefusesStaleCRLAndResultsNotSignedByTheBroker() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, extraArgs: ["--crl-validity", "2s"])
        let (attester, socket) = try broker.startAttesterProcess(for: tpm)
        defer { attester.stop() }
        let out = broker.dir.appendingPathComponent("agent").path
        XCTAssertEqual(try broker.vouch(["enroll", "--name", "worker", "--out", out], socket: socket).status, 0)
        let certPath = out + "/worker.pem"
        let cert = try Certificate(pem: String(contentsOfFile: certPath, encoding: .utf8))
        let oldCRL = broker.dir.appendingPathComponent("old-crl.der").path
        XCTAssertEqual(try broker.vouch(["crl", "--out", oldCRL]).status, 0)
        let old = try CRL(der: Array(try Data(contentsOf: URL(fileURLWithPath: oldCRL))))
        XCTAssertEqual(try broker.vouch(["revoke", "--serial", cert.serialHex]).status, 0)
        while Date() <= old.nextUpdate.addingTimeInterval(0.5) { usleep(100_000) }

        let replayed = try broker.vouch(["check", "--cert", certPath, "--crl", oldCRL, "--json"])
        XCTAssertEqual(replayed.status, 1, replayed.stderr)
        // The replayed CRL is refused as stale; and the broker's record of the serial still says revoked.
        XCTAssertEqual(try checkFailureCodes(replayed), ["crl_stale", "certificate_revoked"])
        let current = try broker.vouch(["check", "--cert", certPath, "--json"])
        XCTAssertEqual(try checkFailureCodes(current), ["certificate_revoked"])

        // A result signed by an agent key (chaining to the agents' CA) is not the broker's.
        let agentKey = try PrivateKey(pem: String(contentsOfFile: out + "/worker.key", encoding: .utf8))
        let agentCA = try Certificate(pem: String(contentsOfFile: broker.agentCAFile, encoding: .utf8))
        let forged = try JWSSigner(key: agentKey, chain: [cert, agentCA]).sign(payload: Array(#"{"submods":{"tpm":{"ear.status":"affirming"}}}"#.utf8))
        let brokerAnchors = try Certificate.chain(pem: String(contentsOfFile: broker.brokerCAFile, encoding: .utf8))
        XCTAssertThrowsError(try JWSSigner.verify(forged, anchors: brokerAnchors, signer: "spiffe://vouch.test/vouchd", at: Date())) {
            XCTAssertEqual(($0 as? VouchError)?.code, .signatureInvalid)
        }
        // Even a verifier that (wrongly) trusted the agents' CA refuses it: the signer is not the broker.
        XCTAssertThrowsError(try JWSSigner.verify(forged, anchors: [agentCA], signer: "spiffe://vouch.test/vouchd", at: Date())) {
            XCTAssertEqual(($0 as? VouchError)?.code, .signerMismatch)
        }
    }
}
