import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient

/// An offline root with an online intermediate, and rotation with overlap: the next CA is in the
/// bundle before it issues, and the previous CA keeps revoking what it issued.
final class CATests: XCTestCase {
    func testIntermediateAndRotation() throws {
        let tpm = try SwTPM()
        let d = tpm.dir.path
        let vouch = TestEnv.bin("vouch")
        for (args, label) in [(["ca", "create-root", "--out", d + "/root1", "--name", "Root One"], "root1"),
                              (["ca", "create-intermediate", "--root", d + "/root1", "--out", d + "/ca", "--name", "Issuing One"], "int1"),
                              (["ca", "create-root", "--out", d + "/root2", "--name", "Root Two"], "root2"),
                              (["ca", "create-intermediate", "--root", d + "/root2", "--out", d + "/staged", "--name", "Issuing Two"], "int2")] {
            let r = try TestEnv.run(vouch, args)
            XCTAssertEqual(r.status, 0, "\(label): \(r.stderr)")
        }
        XCTAssertEqual(try TestEnv.run(vouch, ["ca", "create-root", "--out", d + "/root1"]).status, 1, "never overwrites a CA key")
        // Clients trust both roots from the start (what the bundle will say once the next CA is staged).
        let trust = d + "/trust.pem"
        try (try String(contentsOfFile: d + "/root1/ca.pem", encoding: .utf8) + String(contentsOfFile: d + "/root2/ca.pem", encoding: .utf8))
            .write(toFile: trust, atomically: true, encoding: .utf8)
        let broker = try BrokerHarness(trusting: tpm, extraArgs: ["--ca-dir", d + "/ca"], agentCAFile: trust)
        let attester = broker.attester(for: tpm)
        try attester.register()
        func enroll(_ name: String) throws -> (EnrollResponse, String) {
            let issued = try attester.enroll(AgentEnrollRequest(agentName: name, csr: try CSR.create(key: try PrivateKey.generate(), commonName: name).pem))
            let path = "\(d)/\(name).pem"
            try issued.certificate.write(toFile: path, atomically: true, encoding: .utf8)
            return (issued, path)
        }

        // Issued by the intermediate; OpenSSL builds the path to the offline root.
        let (a, aPath) = try enroll("agent-a")
        XCTAssertEqual(try TestEnv.run("openssl", ["verify", "-CAfile", d + "/root1/ca.pem", "-untrusted", d + "/ca/ca.pem", aPath]).status, 0)
        XCTAssertEqual(try Certificate.chain(pem: a.caCertificate).map(\.subject), ["CN=Issuing One,O=Vouch", "CN=Root One,O=Vouch"])
        XCTAssertEqual(try Certificate.chain(pem: String(decoding: try broker.client().raw("GET", "/v1/bundle").body, as: UTF8.self)).map(\.subject),
                       ["CN=Root One,O=Vouch"], "the bundle holds roots only")

        // Stage the next CA: after a restart it is published before it issues anything.
        try FileManager.default.copyItem(atPath: d + "/staged", toPath: d + "/ca/next")
        try broker.restart()
        XCTAssertEqual(try Certificate.chain(pem: String(decoding: try broker.client().raw("GET", "/v1/bundle").body, as: UTF8.self)).map(\.subject),
                       ["CN=Root One,O=Vouch", "CN=Root Two,O=Vouch"])
        let (_, bPath) = try enroll("agent-b")
        XCTAssertTrue(try TestEnv.run("openssl", ["x509", "-in", bPath, "-noout", "-issuer"]).stdout.contains("Issuing One"), "staged CA does not issue yet")

        // Rotate: new certificates come from the next CA; the previous one still revokes its own.
        let rotate = try broker.vouch(["ca", "rotate"])
        XCTAssertEqual(rotate.status, 0, rotate.stderr)
        let (_, cPath) = try enroll("agent-c")
        XCTAssertEqual(try TestEnv.run("openssl", ["verify", "-CAfile", d + "/root2/ca.pem", "-untrusted", d + "/staged/ca.pem", cPath]).status, 0)
        XCTAssertEqual(try broker.vouch(["revoke", "--serial", a.serial]).status, 0)
        let oldKeyID = try Certificate(pem: String(contentsOfFile: d + "/ca/previous/ca.pem", encoding: .utf8)).subjectKeyID
        let oldCRL = try broker.client().raw("GET", "/v1/crl/\(oldKeyID).pem")
        try Data(oldCRL.body).write(to: URL(fileURLWithPath: d + "/old-crl.pem"))
        let check = try TestEnv.run("openssl", ["verify", "-crl_check", "-CAfile", d + "/root1/ca.pem", "-untrusted", d + "/ca/previous/ca.pem",
                                                "-CRLfile", d + "/old-crl.pem", aPath])
        XCTAssertTrue((check.stdout + check.stderr).contains("certificate revoked"), check.stdout + check.stderr)
        XCTAssertTrue(try TestEnv.run("openssl", ["x509", "-in", aPath, "-noout", "-ext", "crlDistributionPoints"]).stdout.contains("/v1/crl/\(oldKeyID)"))

        // OCSP: the previous CA answers for A (revoked), the new one for C (good).
        func ocsp(_ cert: String, issuer: String, root: String) throws -> String {
            XCTAssertEqual(try TestEnv.run("openssl", ["ocsp", "-issuer", issuer, "-cert", cert, "-reqout", d + "/req.der", "-no_nonce"]).status, 0)
            let resp = try broker.client().transport.send("POST", "/v1/ocsp", headers: [:], body: [UInt8](try Data(contentsOf: URL(fileURLWithPath: d + "/req.der"))))
            try Data(resp.body).write(to: URL(fileURLWithPath: d + "/resp.der"))
            let r = try TestEnv.run("openssl", ["ocsp", "-issuer", issuer, "-cert", cert, "-respin", d + "/resp.der", "-CAfile", root, "-no_nonce"])
            return r.stdout + r.stderr
        }
        let aStatus = try ocsp(aPath, issuer: d + "/ca/previous/ca.pem", root: d + "/root1/ca.pem")
        XCTAssertTrue(aStatus.contains("Response verify OK") && aStatus.contains(": revoked"), aStatus)
        let cStatus = try ocsp(cPath, issuer: d + "/staged/ca.pem", root: d + "/root2/ca.pem")
        XCTAssertTrue(cStatus.contains("Response verify OK") && cStatus.contains(": good"), cStatus)

        // The rotation is on disk: after a restart the next CA still issues and the old CRL is served.
        try broker.restart()
        let (_, dPath) = try enroll("agent-d")
        XCTAssertTrue(try TestEnv.run("openssl", ["x509", "-in", dPath, "-noout", "-issuer"]).stdout.contains("Issuing Two"))
        XCTAssertEqual(try broker.client().raw("GET", "/v1/crl/\(oldKeyID)").status, 200)
        let again = try broker.vouch(["ca", "rotate"])
        XCTAssertEqual(again.status, 1, "nothing staged: refused")
        XCTAssertTrue(again.stderr.contains("no next CA is staged"), again.stderr)
    }
}
