import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient

/// Renewal needs fresh evidence and the current key; a revoked certificate or a revoked (blocked)
/// host cannot renew, and a blocked host cannot come back by enrolling or registering afresh.
final class RenewalTests: XCTestCase {
    func testRenewalAndHostRevocation() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let (process, socket) = try broker.startAttesterProcess(for: tpm)
        defer { process.stop() }
        let out = broker.dir.appendingPathComponent("agent").path
        XCTAssertEqual(try broker.vouch(["enroll", "--name", "worker", "--out", out], socket: socket).status, 0)
        let first = try Certificate(pem: String(contentsOfFile: out + "/worker.pem", encoding: .utf8))

        // Renew through the CLI: new serial and key, same identity.
        let renew = try broker.vouch(["enroll", "--name", "worker", "--out", out, "--renew"], socket: socket)
        XCTAssertEqual(renew.status, 0, renew.stderr)
        XCTAssertTrue(renew.stdout.contains("renewed agent worker"))
        let second = try Certificate(pem: String(contentsOfFile: out + "/worker.pem", encoding: .utf8))
        XCTAssertNotEqual(second.serialHex, first.serialHex)
        XCTAssertEqual(second.uriSANs, first.uriSANs)
        XCTAssertFalse(try second.publicKey.isEqual(to: first.publicKey), "renewal rotates the key")

        // Forged renewals, through the attester's socket API.
        let client = APIClient(transport: HTTPClient(.unix(path: socket), timeoutSeconds: 60))
        func renewal(current: String, signingKey: PrivateKey, name: String = "worker") throws -> AgentEnrollRequest {
            let csr = try CSR.create(key: try PrivateKey.generate(), commonName: name)
            return AgentEnrollRequest(agentName: name, csr: try csr.pem, renewal: RenewalBody(certificate: current, proof: Base64.encode(try signingKey.sign(try csr.der))))
        }
        func code(_ req: AgentEnrollRequest) -> String? {
            do { _ = try client.call("POST", "/v1/enroll", body: req, as: EnrollResponse.self) } catch let f as APIFailure { return f.error.code } catch { return "\(error)" }
            return nil
        }
        let currentPEM = try String(contentsOfFile: out + "/worker.pem", encoding: .utf8)
        XCTAssertEqual(code(try renewal(current: currentPEM, signingKey: try PrivateKey.generate())), "renewal_proof_invalid")
        let currentKey = try PrivateKey(pem: String(contentsOfFile: out + "/worker.key", encoding: .utf8))
        XCTAssertEqual(code(try renewal(current: currentPEM, signingKey: currentKey, name: "someone-else")), "renewal_identity_mismatch")
        XCTAssertEqual(code(try renewal(current: try String(contentsOf: tpm.rootCA, encoding: .utf8), signingKey: currentKey)), "renewal_invalid")

        // Revoked certificate: renewal refused; the refusal issues nothing.
        XCTAssertEqual(try broker.vouch(["revoke", "--serial", second.serialHex]).status, 0)
        let refused = try broker.vouch(["enroll", "--name", "worker", "--out", out, "--renew"], socket: socket)
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("certificate_revoked"), refused.stderr)
        XCTAssertEqual(try Certificate(pem: String(contentsOfFile: out + "/worker.pem", encoding: .utf8)).serialHex, second.serialHex, "files untouched")

        // Revoking the host as a whole blocks it: no enrollment, no re-registration, until unblocked.
        let hostID = try XCTUnwrap(try broker.status().hosts.first?.hostId)
        XCTAssertEqual(try broker.vouch(["enroll", "--name", "other", "--out", out], socket: socket).status, 0)
        let block = try broker.vouch(["revoke", "--host", hostID, "--block", "--reason", "keyCompromise"])
        XCTAssertEqual(block.status, 0, block.stderr)
        XCTAssertTrue(try broker.status().certificates.allSatisfy { $0.state == .revoked })
        let blocked = try broker.vouch(["enroll", "--name", "fresh", "--out", out], socket: socket)
        XCTAssertEqual(blocked.status, 1)
        XCTAssertTrue(blocked.stderr.contains("host_revoked"), blocked.stderr)
        XCTAssertThrowsError(try broker.attester(for: tpm).register()) { XCTAssertEqual(($0 as? APIFailure)?.error.code, "host_revoked") }
        XCTAssertTrue(try broker.vouch(["status"]).stdout.contains("BLOCKED: keyCompromise"))

        XCTAssertEqual(try broker.vouch(["host", "unblock", hostID]).status, 0)
        XCTAssertEqual(try broker.vouch(["enroll", "--name", "fresh", "--out", out], socket: socket).status, 0)
    }
}
