import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient

/// Agent and host certificates, the CRL and OCSP answers of a live broker (swtpm behind it), as
/// other TLS stacks see them: Go crypto/x509 and a Go TLS server requiring client certificates,
/// GnuTLS (certtool, ocsptool), Debian's python3-cryptography, Java 17 PKIX with the CRL, and
/// OpenSSL. Each tool is installed by `make deps` and must run: a missing tool fails the test.
final class TLSStackInteropTests: XCTestCase {
    /// One broker for every stack: a valid agent, a revoked one, a host certificate, the CRL
    /// after the revocation, and an OCSP answer for each agent, all written to `dir`.
    final class Fixture {
        let tpm: SwTPM
        let broker: BrokerHarness
        let dir: URL
        let hostID: String

        init() throws {
            tpm = try SwTPM()
            broker = try BrokerHarness(trusting: tpm)
            dir = broker.dir.appendingPathComponent("interop")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let attester = broker.pushAttester(for: tpm, hostname: "interop")
            hostID = try attester.register()
            func write(_ name: String, _ text: String) throws { try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8) }
            func enroll(_ name: String) throws -> (EnrollResponse, PrivateKey) {
                let key = try PrivateKey.generate()
                return (try attester.enroll(AgentEnrollRequest(agentName: name, csr: try CSR.create(key: key, commonName: name).pem)), key)
            }
            let (agent, agentKey) = try enroll("interop")
            let (revoked, _) = try enroll("revoked")
            let revoke = try broker.vouch(["revoke", "--serial", revoked.serial, "--reason", "keyCompromise"])
            guard revoke.status == 0 else { throw VouchError(.internalError, "vouch revoke: \(revoke.stderr)") }
            let identity = try XCTUnwrap(attester.identity)
            try write("ca.pem", try String(contentsOfFile: broker.agentCAFile, encoding: .utf8))
            try write("broker-ca.pem", try String(contentsOfFile: broker.brokerCAFile, encoding: .utf8))
            try write("agent.pem", agent.certificate)
            try write("agent.key", try agentKey.pem)
            try write("revoked.pem", revoked.certificate)
            try write("host.pem", identity.certificatePEM)
            try write("host.key", identity.keyPEM)
            let client = broker.client()
            try Data(try client.raw("GET", "/v1/crl").body).write(to: dir.appendingPathComponent("crl.der"))
            try Data(try client.raw("GET", "/v1/crl.pem").body).write(to: dir.appendingPathComponent("crl.pem"))
            for (cert, out) in [("agent.pem", "ocsp-good.der"), ("revoked.pem", "ocsp-revoked.der")] {
                let req = dir.appendingPathComponent("req.der").path
                _ = try TestEnv.run("openssl", ["ocsp", "-issuer", path("ca.pem"), "-cert", path(cert), "-no_nonce", "-reqout", req])
                let answer = try client.transport.send("POST", "/v1/ocsp", headers: ["Content-Type": "application/ocsp-request"],
                                                       body: [UInt8](try Data(contentsOf: URL(fileURLWithPath: req))))
                guard answer.status == 200 else { throw VouchError(.internalError, "OCSP answered HTTP \(answer.status)") }
                try Data(answer.body).write(to: dir.appendingPathComponent(out))
            }
        }

        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
    }

    nonisolated(unsafe) static var shared: Fixture?

    func fixture() throws -> Fixture {
        if let f = Self.shared { return f }
        let f = try Fixture()
        Self.shared = f
        return f
    }

    override class func tearDown() {
        shared?.broker.stop()
        shared?.tpm.stop()
        shared = nil
        super.tearDown()
    }

    func testGoCryptoX509AndATLSServerRequiringClientCertificates() throws {
        let f = try fixture()
        let src = f.dir.appendingPathComponent("go")
        try FileManager.default.createDirectory(at: src, withIntermediateDirectories: true)
        try InteropPrograms.go.write(to: src.appendingPathComponent("interop.go"), atomically: true, encoding: .utf8)
        // Offline and self-contained: standard library only, caches in the scratch directory.
        let env = ["GOCACHE": src.appendingPathComponent("cache").path, "GOPATH": src.appendingPathComponent("gopath").path,
                   "GOPROXY": "off", "GOFLAGS": "", "GOTOOLCHAIN": "local", "GO111MODULE": "auto", "CGO_ENABLED": "0"]
        let r = try TestEnv.run("go", ["run", src.appendingPathComponent("interop.go").path, f.dir.path], env: env)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        for line in ["ok x509 verify agent host", "ok ear signed hostId=\(f.hostID)", "ok crl signed, lists the revoked agent only",
                     "ok ocsp good revoked", "ok tls client-auth agent=spiffe://", "ok tls client-auth host=spiffe://"] {
            XCTAssertTrue(r.stdout.contains(line), "missing \(line): \(r.stdout)")
        }
    }

    func testGnuTLSCerttoolVerifiesWithTheCRLAndOcsptoolReadsTheAnswers() throws {
        let f = try fixture()
        for name in ["agent.pem", "revoked.pem", "host.pem"] {
            let info = try TestEnv.run("certtool", ["-i", "--infile", f.path(name)])
            XCTAssertEqual(info.status, 0, "certtool cannot parse \(name): \(info.stderr)")
        }
        XCTAssertTrue(try TestEnv.run("certtool", ["-i", "--infile", f.path("agent.pem")]).stdout.contains("1.3.6.1.5.5.7.1.35"))
        func verify(_ name: String) throws -> TestEnv.RunResult {
            try TestEnv.run("certtool", ["--verify", "--load-ca-certificate", f.path("ca.pem"), "--load-crl", f.path("crl.pem"), "--infile", f.path(name)])
        }
        for name in ["agent.pem", "host.pem"] {
            let r = try verify(name)
            XCTAssertEqual(r.status, 0, "\(name): \(r.stdout) \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("Chain verification output: Verified."), r.stdout)
        }
        let revoked = try verify("revoked.pem")
        XCTAssertNotEqual(revoked.status, 0, revoked.stdout)
        XCTAssertTrue(revoked.stdout.contains("revoked"), revoked.stdout)

        let crl = try TestEnv.run("certtool", ["--verify-crl", "--load-ca-certificate", f.path("ca.pem"), "--infile", f.path("crl.pem")])
        XCTAssertEqual(crl.status, 0, crl.stdout + crl.stderr)
        for (name, status) in [("ocsp-good.der", "good"), ("ocsp-revoked.der", "revoked")] {
            let v = try TestEnv.run("ocsptool", ["--verify-response", "--load-signer", f.path("ca.pem"), "--load-response", f.path(name)])
            XCTAssertEqual(v.status, 0, "\(name): \(v.stdout) \(v.stderr)")
            let info = try TestEnv.run("ocsptool", ["--response-info", "--load-response", f.path(name)])
            XCTAssertEqual(info.status, 0, info.stderr)
            XCTAssertTrue(info.stdout.contains("Certificate Status: \(status)"), info.stdout)
        }
    }

    func testDebianPythonCryptography() throws {
        let f = try fixture()
        let script = f.dir.appendingPathComponent("interop.py")
        try InteropPrograms.python.write(to: script, atomically: true, encoding: .utf8)
        // Debian's interpreter and its python3-cryptography, whatever else is on PATH.
        let version = try TestEnv.run("/usr/bin/python3", ["-c", "import cryptography; print(cryptography.__version__)"])
        XCTAssertEqual(version.status, 0, "python3-cryptography is not installed: \(version.stderr)")
        let r = try TestEnv.run("/usr/bin/python3", [script.path, f.dir.path])
        XCTAssertEqual(r.status, 0, "cryptography \(version.stdout): \(r.stdout) \(r.stderr)")
        for line in ["ok parse and signatures agent revoked host", "ok ear hostId=\(f.hostID)", "ok crl", "ok ocsp good revoked"] {
            XCTAssertTrue(r.stdout.contains(line), "missing \(line): \(r.stdout)")
        }
    }

    func testJava17PKIXWithTheCRL() throws {
        let f = try fixture()
        let src = f.dir.appendingPathComponent("java")
        try FileManager.default.createDirectory(at: src, withIntermediateDirectories: true)
        try InteropPrograms.java.write(to: src.appendingPathComponent("Interop.java"), atomically: true, encoding: .utf8)
        let compiled = try TestEnv.run("javac", ["-d", src.path, src.appendingPathComponent("Interop.java").path])
        XCTAssertEqual(compiled.status, 0, compiled.stderr)
        let r = try TestEnv.run("java", ["-cp", src.path, "Interop", f.dir.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("ok pkix agent host with crl"), r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("ok pkix revoked REVOKED"), r.stdout + r.stderr)
    }

    func testOpenSSLVerifiesWithTheCRLAndReadsTheOCSPAnswers() throws {
        let f = try fixture()
        func verify(_ name: String) throws -> TestEnv.RunResult {
            try TestEnv.run("openssl", ["verify", "-crl_check", "-CAfile", f.path("ca.pem"), "-CRLfile", f.path("crl.pem"), f.path(name)])
        }
        for name in ["agent.pem", "host.pem"] {
            let r = try verify(name)
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains("\(f.path(name)): OK"), r.stdout)
        }
        let revoked = try verify("revoked.pem")
        XCTAssertNotEqual(revoked.status, 0)
        XCTAssertTrue((revoked.stdout + revoked.stderr).contains("certificate revoked"), revoked.stdout + revoked.stderr)
        let text = try TestEnv.run("openssl", ["x509", "-in", f.path("agent.pem"), "-noout", "-text"]).stdout
        XCTAssertTrue(text.contains("1.3.6.1.5.5.7.1.35"), text)
        for (cert, name, status) in [("agent.pem", "ocsp-good.der", "good"), ("revoked.pem", "ocsp-revoked.der", "revoked")] {
            let r = try TestEnv.run("openssl", ["ocsp", "-issuer", f.path("ca.pem"), "-cert", f.path(cert), "-respin", f.path(name),
                                                "-CAfile", f.path("ca.pem"), "-no_nonce"])
            XCTAssertTrue((r.stdout + r.stderr).contains("Response verify OK"), r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains("\(f.path(cert)): \(status)"), r.stdout)
        }
    }
}
