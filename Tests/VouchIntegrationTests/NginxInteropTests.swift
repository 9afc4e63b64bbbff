import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchTestSupport

/// A real nginx that requires client certificates, trusting the broker's bundle and CRL: an agent
/// certificate gets through before revocation and is refused once nginx loads the new CRL.
final class NginxInteropTests: XCTestCase {
    func testNginxHonoursTheBrokersCRL() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") else { throw TestFailure("/usr/sbin/nginx is missing: run make deps (it installs nginx-light)") }
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let attester = broker.attester(for: tpm)
        try attester.register()
        let key = try PrivateKey.generate()
        let issued = try attester.enroll(AgentEnrollRequest(agentName: "web-client", csr: try CSR.create(key: key, commonName: "web-client").pem))

        let d = broker.dir.appendingPathComponent("nginx")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        func path(_ f: String) -> String { d.appendingPathComponent(f).path }
        try issued.certificate.write(toFile: path("agent.pem"), atomically: true, encoding: .utf8)
        try key.pem.write(toFile: path("agent.key"), atomically: true, encoding: .utf8)
        try Data(try broker.client().raw("GET", "/v1/bundle").body).write(to: URL(fileURLWithPath: path("bundle.pem")))
        func refreshCRL() throws { try Data(try broker.client().raw("GET", "/v1/crl.pem").body).write(to: URL(fileURLWithPath: path("crl.pem"))) }
        try refreshCRL()
        // nginx's own server certificate: any will do, the client does not verify it here.
        XCTAssertEqual(try TestEnv.run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=nginx",
                                                   "-days", "1", "-keyout", path("server.key"), "-out", path("server.pem")]).status, 0)
        let port = TestEnv.freePorts(1)
        try """
        worker_processes 1;
        daemon off;
        pid \(path("nginx.pid"));
        error_log \(path("error.log")) info;
        events {}
        http {
          access_log off;
          client_body_temp_path \(path("tmp"));
          server {
            listen 127.0.0.1:\(port) ssl;
            ssl_protocols TLSv1.2 TLSv1.3;
            ssl_certificate \(path("server.pem"));
            ssl_certificate_key \(path("server.key"));
            ssl_client_certificate \(path("bundle.pem"));
            ssl_verify_client on;
            ssl_crl \(path("crl.pem"));
            location / { return 200 "hello $ssl_client_s_dn\\n"; }
          }
        }
        """.write(toFile: path("nginx.conf"), atomically: true, encoding: .utf8)
        let nginx = try BackgroundProcess("/usr/sbin/nginx", ["-c", path("nginx.conf"), "-p", d.path], log: d.appendingPathComponent("stdout.log"))
        defer { nginx.stop() }
        XCTAssertTrue(TestEnv.waitForPort(port), nginx.log)

        func get(withCertificate: Bool) throws -> String {
            var args = ["-sk", "-o", "-", "-w", "%{http_code}", "https://127.0.0.1:\(port)/"]
            if withCertificate { args = ["--cert", path("agent.pem"), "--key", path("agent.key")] + args }
            return try TestEnv.run("curl", args).stdout
        }
        let before = try get(withCertificate: true)
        XCTAssertTrue(before.hasSuffix("200") && before.contains("OU=agent,O=Vouch"), before)
        XCTAssertTrue(try get(withCertificate: false).hasSuffix("400"), "nginx must demand a client certificate")

        XCTAssertEqual(try broker.vouch(["revoke", "--serial", issued.serial]).status, 0)
        try refreshCRL()
        kill(nginx.process.processIdentifier, SIGHUP)   // nginx reloads its configuration and the CRL
        var after = ""
        for _ in 0..<50 {
            after = try get(withCertificate: true)
            if after.hasSuffix("400") { break }
            usleep(100_000)
        }
        XCTAssertTrue(after.hasSuffix("400"), "revoked certificate still accepted: \(after)")
        XCTAssertTrue((try? String(contentsOfFile: path("error.log"), encoding: .utf8))?.contains("certificate revoked") ?? false)
    }
}
