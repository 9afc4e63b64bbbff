import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchTestSupport

/// The plain-HTTP publication listener (`vouchd --publish-listen`): certificates name it in their
/// CRL distribution point and OCSP URL, and fetchers that speak only http reach it — NSS's
/// `vfychain` (libnss3-tools) checks an agent certificate by OCSP and by CRL from those URLs,
/// good before `vouch revoke` and revoked after; so does OpenSSL (`verify -crl_download`,
/// `ocsp -url`). curl shows the listener serves CRLs and OCSP and nothing else.
final class PublicationTests: XCTestCase {
    func testNSSFetchesCRLAndOCSPFromTheCertificatesHTTPURLs() throws {
        for tool in ["/usr/bin/vfychain", "/usr/bin/certutil"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw TestFailure("\(tool) is missing: run make deps (it installs libnss3-tools)")
        }
        let tpm = try SwTPM()
        let publishPort = TestEnv.freePorts(1)
        let broker = try BrokerHarness(trusting: tpm, extraArgs: ["--publish-listen", "127.0.0.1:\(publishPort)"])
        XCTAssertTrue(TestEnv.waitForPort(publishPort))
        let publishURL = "http://127.0.0.1:\(publishPort)"
        let attester = broker.attester(for: tpm)
        try attester.register()
        let key = try PrivateKey.generate()
        let issued = try attester.enroll(AgentEnrollRequest(agentName: "nss-agent", csr: try CSR.create(key: key, commonName: "nss-agent").pem))
        let d = broker.dir
        let certPath = d.appendingPathComponent("agent.pem").path, derPath = d.appendingPathComponent("agent.der").path
        try issued.certificate.write(toFile: certPath, atomically: true, encoding: .utf8)
        XCTAssertEqual(try TestEnv.run("openssl", ["x509", "-in", certPath, "-outform", "DER", "-out", derPath]).status, 0)
        let caKeyID = try Certificate(pem: String(contentsOfFile: broker.agentCAFile, encoding: .utf8)).subjectKeyID

        // The certificate names the publication listener, over http.
        let text = try TestEnv.run("openssl", ["x509", "-in", certPath, "-noout", "-ext", "crlDistributionPoints,authorityInfoAccess"]).stdout
        XCTAssertTrue(text.contains("URI:\(publishURL)/v1/crl/\(caKeyID)"), text)
        XCTAssertTrue(text.contains("OCSP - URI:\(publishURL)/v1/ocsp"), text)

        // An NSS database trusting the issuing CA, and vfychain with the PKIX library checking the
        // leaf by one method only, failing when it gets no revocation information: a good answer
        // means it fetched one from the URL in the certificate.
        let db = "sql:" + d.appendingPathComponent("nssdb").path
        try FileManager.default.createDirectory(at: d.appendingPathComponent("nssdb"), withIntermediateDirectories: true)
        for args in [["-N", "-d", db, "--empty-password"], ["-A", "-d", db, "-n", "vouch-ca", "-t", "CT,C,C", "-i", broker.agentCAFile]] {
            let r = try TestEnv.run("/usr/bin/certutil", args)
            XCTAssertEqual(r.status, 0, "certutil \(args): \(r.stdout)\(r.stderr)")
        }
        func vfychain(_ method: String) throws -> TestEnv.RunResult {
            // -u 0: SSL client (the agent certificate's clientAuth purpose).
            try TestEnv.run("/usr/bin/vfychain", ["-d", db, "-pp", "-vv", "-u", "0", "-g", "leaf", "-m", method, "-s", "failIfNoInfo", derPath])
        }
        for method in ["ocsp", "crl"] {
            let r = try vfychain(method)
            XCTAssertEqual(r.status, 0, "vfychain -m \(method) on a good certificate: \(r.stdout)\(r.stderr)")
            XCTAssertTrue((r.stdout + r.stderr).contains("Chain is good"), "\(method): \(r.stdout)\(r.stderr)")
        }
        // OpenSSL downloads the CRL from the same distribution point, and asks the OCSP URL.
        let verified = try TestEnv.run("openssl", ["verify", "-CAfile", broker.agentCAFile, "-crl_check", "-crl_download", certPath])
        XCTAssertEqual(verified.status, 0, verified.stdout + verified.stderr)
        func opensslOCSP() throws -> String {
            let r = try TestEnv.run("openssl", ["ocsp", "-issuer", broker.agentCAFile, "-cert", certPath, "-url", "\(publishURL)/v1/ocsp",
                                                "-CAfile", broker.agentCAFile])
            return r.stdout + r.stderr
        }
        XCTAssertTrue(try opensslOCSP().contains("\(certPath): good"))

        // Revoked: both of NSS's methods now fail with SEC_ERROR_REVOKED_CERTIFICATE (-8180).
        XCTAssertEqual(try broker.vouch(["revoke", "--serial", issued.serial, "--reason", "keyCompromise"]).status, 0)
        for method in ["ocsp", "crl"] {
            let r = try vfychain(method)
            XCTAssertNotEqual(r.status, 0, "vfychain -m \(method) accepted a revoked certificate: \(r.stdout)\(r.stderr)")
            XCTAssertTrue((r.stdout + r.stderr).contains("-8180"), "\(method): \(r.stdout)\(r.stderr)")
        }
        let refused = try TestEnv.run("openssl", ["verify", "-CAfile", broker.agentCAFile, "-crl_check", "-crl_download", certPath])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue((refused.stdout + refused.stderr).contains("error 23 at 0 depth lookup"), refused.stdout + refused.stderr)   // X509_V_ERR_CERT_REVOKED
        XCTAssertTrue(try opensslOCSP().contains("\(certPath): revoked"))

        // curl: the listener serves CRLs (with validators, HEAD too) and OCSP by GET and POST,
        // without TLS, and nothing else — no API route, not even with the admin token.
        func curl(_ method: String, _ path: String, _ extra: [String] = []) throws -> (status: Int, headers: String, body: String) {
            let headers = d.appendingPathComponent("curl-headers").path
            let r = try TestEnv.run("/usr/bin/curl", ["-s", "-X", method, "-D", headers, "-w", "\n%{http_code}", "\(publishURL)\(path)"] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            // Split on the last newline byte: as Characters, a body ending in "\r" would join the
            // "\n" before the status into one "\r\n" (an OCSP signature ends in 0x0D one time in 256).
            let out = Array(r.stdout.utf8)
            let cut = out.lastIndex(of: UInt8(ascii: "\n")) ?? -1
            return (Int(String(decoding: out[(cut + 1)...], as: UTF8.self)) ?? -1, try String(contentsOfFile: headers, encoding: .utf8).lowercased(),
                    String(decoding: out[..<max(cut, 0)], as: UTF8.self))
        }
        let crlPath = d.appendingPathComponent("crl.der").path
        let crl = try curl("GET", "/v1/crl/\(caKeyID)", ["-o", crlPath])
        XCTAssertEqual(crl.status, 200)
        XCTAssertTrue(crl.headers.contains("content-type: application/pkix-crl"), crl.headers)
        let etag = try XCTUnwrap(crl.headers.split(separator: "\r\n").first { $0.hasPrefix("etag:") }?.dropFirst(5)
            .trimmingCharacters(in: .whitespaces))
        XCTAssertTrue(crl.headers.contains("last-modified:"), crl.headers)
        let crlText = try TestEnv.run("openssl", ["crl", "-inform", "DER", "-in", crlPath, "-noout", "-text"]).stdout
        XCTAssertTrue(crlText.contains(issued.serial.uppercased()) && crlText.contains("Key Compromise"), crlText)
        XCTAssertEqual(try curl("GET", "/v1/crl/\(caKeyID)", ["-H", "If-None-Match: \(etag)"]).status, 304)
        let head = try TestEnv.run("/usr/bin/curl", ["-s", "-I", "-w", "%{http_code}", "\(publishURL)/v1/crl/\(caKeyID).pem"])
        XCTAssertTrue(head.stdout.hasSuffix("200") && head.stdout.lowercased().contains("content-type: application/x-pem-file"), head.stdout)
        let pem = try curl("GET", "/v1/crl.pem")
        XCTAssertTrue(pem.status == 200 && pem.body.hasPrefix("-----BEGIN X509 CRL-----"), pem.body)
        let reqPath = d.appendingPathComponent("ocsp-req.der").path
        XCTAssertEqual(try TestEnv.run("openssl", ["ocsp", "-issuer", broker.agentCAFile, "-cert", certPath, "-no_nonce", "-reqout", reqPath]).status, 0)
        let ocspGET = try curl("GET", "/v1/ocsp/" + (Base64.encode([UInt8](try Data(contentsOf: URL(fileURLWithPath: reqPath))))
            .addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""))
        XCTAssertEqual(ocspGET.status, 200)
        XCTAssertTrue(ocspGET.headers.contains("content-type: application/ocsp-response"), ocspGET.headers)
        let ocspPOST = try curl("POST", "/v1/ocsp", ["-H", "Content-Type: application/ocsp-request", "--data-binary", "@" + reqPath])
        XCTAssertEqual(ocspPOST.status, 200)
        XCTAssertTrue(ocspPOST.headers.contains("content-type: application/ocsp-response"), ocspPOST.headers)

        let token = try String(contentsOfFile: broker.tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        for (method, path) in [("GET", "/"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/v1/health"), ("GET", "/v1/ca"),
                               ("GET", "/v1/bundle"), ("GET", "/v1/status"), ("GET", "/v1/hosts"), ("GET", "/v1/events"), ("GET", "/v1/tokens"),
                               ("GET", "/v1/certificates/\(issued.serial)"), ("POST", "/v1/hosts"), ("POST", "/v1/enroll"), ("POST", "/v1/revoke"),
                               ("POST", "/v1/ca/rotate"), ("GET", "/v1/crl/zz"), ("GET", "/v1/crl/a/b")] {
            let r = try curl(method, path, ["-H", "Authorization: Bearer \(token)"])
            XCTAssertEqual(r.status, 404, "\(method) \(path): \(r.body)")
            XCTAssertEqual(try JSONCodec.decode(APIError.self, from: Array(r.body.utf8)).code, ErrorCode.notFound.rawValue, "\(method) \(path)")
        }
        for (method, path, allow) in [("POST", "/v1/crl/\(caKeyID)", "get, head"), ("DELETE", "/v1/crl", "get, head"), ("PUT", "/v1/ocsp", "post"),
                                      ("GET", "/v1/ocsp", "post"), ("POST", "/v1/ocsp/MAA=", "get, head")] {
            let r = try curl(method, path)
            XCTAssertEqual(r.status, 405, "\(method) \(path): \(r.body)")
            XCTAssertTrue(r.headers.contains("allow: \(allow)"), "\(method) \(path): \(r.headers)")
            XCTAssertEqual(try JSONCodec.decode(APIError.self, from: Array(r.body.utf8)).code, "method_not_allowed", "\(method) \(path)")
        }
        // No TLS there: a TLS client gets no handshake.
        XCTAssertNotEqual(try TestEnv.run("/usr/bin/curl", ["-s", "-k", "--max-time", "5", "https://127.0.0.1:\(publishPort)/v1/crl"]).status, 0)

        // The same store restarted with --publish-url (the name relying parties use) and an https
        // OCSP override: new certificates carry exactly those.
        broker.stop()
        let renamed = try BrokerHarness(trusting: tpm, extraArgs: ["--publish-listen", "127.0.0.1:\(publishPort)", "--publish-url", "http://revocation.example:8080/",
                                                                   "--ocsp-url", "https://ocsp.example/vouch/ocsp"], dataDir: broker.dataDir)
        let again = renamed.attester(for: tpm)
        try again.register()
        let second = try again.enroll(AgentEnrollRequest(agentName: "nss-agent-2", csr: try CSR.create(key: key, commonName: "nss-agent-2").pem))
        let secondPath = d.appendingPathComponent("second.pem").path
        try second.certificate.write(toFile: secondPath, atomically: true, encoding: .utf8)
        let urls = try TestEnv.run("openssl", ["x509", "-in", secondPath, "-noout", "-ext", "crlDistributionPoints,authorityInfoAccess"]).stdout
        XCTAssertTrue(urls.contains("URI:http://revocation.example:8080/v1/crl/\(caKeyID)"), urls)
        XCTAssertTrue(urls.contains("OCSP - URI:https://ocsp.example/vouch/ocsp"), urls)
    }

    /// Bad publication settings are usage errors (exit 2) naming where they came from, and change nothing.
    func testBadPublicationSettingsAreRefusedBeforeAnythingChanges() throws {
        let dir = try TestEnv.tempDir("vouch-publish-config")
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data").path
        let base = ["--data-dir", data, "--policy", TestEnv.packageRoot.appendingPathComponent("policies/development.yaml").path,
                    "--ek-roots", dir.path, "--port", "8443"]
        for (args, env, source) in [
            (["--publish-listen", "8080"], [:], "--publish-listen"),
            (["--publish-listen", "localhost:8080"], [:], "--publish-listen"),
            (["--publish-listen", "127.0.0.1:0"], [:], "--publish-listen"),
            (["--publish-listen", "127.0.0.1:70000"], [:], "--publish-listen"),
            (["--publish-listen", "127.0.0.1:8443"], [:], "--publish-listen"),
            (["--publish-listen", "0.0.0.0:8443"], [:], "--publish-listen"),
            ([], ["VOUCHD_PUBLISH_LISTEN": "::1:8080"], "VOUCHD_PUBLISH_LISTEN"),
            (["--publish-listen", "off", "--publish-url", "http://vouch.example:8080"], [:], "--publish-url"),
            (["--publish-listen", "127.0.0.1:8080", "--publish-url", "ftp://vouch.example"], [:], "--publish-url"),
            (["--crl-url", "crl.example/v1/crl"], [:], "--crl-url"),
            (["--crl-url", "http://crl.example/v1/crl?x=1"], [:], "--crl-url"),
            ([], ["VOUCHD_OCSP_URL": "http://"], "VOUCHD_OCSP_URL"),
            (["--ocsp-url", "http://ocsp.example/a b"], [:], "--ocsp-url"),
        ] as [([String], [String: String], String)] {
            let r = try TestEnv.run(TestEnv.bin("vouchd"), base + args, env: env)
            XCTAssertEqual(r.status, 2, "\(args) \(env): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("vouchd: \(source): "), "\(args) \(env): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: data), "a refused configuration must change nothing")
    }
}
