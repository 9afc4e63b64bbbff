import Foundation
import XCTest
import VouchAPI
import VouchCore
import VouchCrypto

/// What a new user meets at the command line of the three programs: help and version everywhere,
/// usage errors as one line with exit 2, failures as one line with exit 1, nothing created by a
/// refused configuration, and `vouch check` naming every failed requirement.
final class CLITests: XCTestCase {
    let programs = ["vouch", "vouchd", "vouch-attester"]
    let vouchCommands = ["enroll", "status", "revoke", "host", "history", "token", "ca", "crl", "cert", "check", "policy", "quote", "eventlog", "log", "trust", "receipt", "store"]

    func run(_ program: String, _ args: [String], env: [String: String] = [:]) throws -> TestEnv.RunResult {
        // No broker settings leak in from the environment of the test run.
        try TestEnv.run(TestEnv.bin(program), args, env: ["VOUCH_BROKER": "", "VOUCH_CA": "", "VOUCH_TOKEN_FILE": "", "VOUCH_ATTESTER_SOCKET": ""].merging(env) { $1 })
    }

    func lines(_ s: String) -> [Substring] { s.split(separator: "\n", omittingEmptySubsequences: true) }

    /// Exit 2, nothing on stdout, exactly one line on stderr, and no API error code in it.
    func assertUsageError(_ r: TestEnv.RunResult, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, 2, "\(what): \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stdout, "", what, file: file, line: line)
        XCTAssertEqual(lines(r.stderr).count, 1, "\(what): one line, no usage text: \(r.stderr)", file: file, line: line)
        XCTAssertFalse(r.stderr.contains(ErrorCode.badRequest.rawValue) || r.stderr.contains(ErrorCode.usage.rawValue + ":"), "\(what): \(r.stderr)", file: file, line: line)
    }

    func testVersionAndHelpOnEveryProgram() throws {
        for program in programs {
            let version = try run(program, ["--version"])
            XCTAssertEqual(version.status, 0, "\(program) --version: \(version.stderr)")
            XCTAssertEqual(version.stdout, "\(program) \(VouchVersion.current)\n")
            for flag in ["-h", "--help"] {
                let help = try run(program, [flag])
                XCTAssertEqual(help.status, 0, "\(program) \(flag): \(help.stderr)")
                XCTAssertEqual(help.stderr, "", "\(program) \(flag)")
                XCTAssertTrue(help.stdout.hasPrefix("usage: \(program) "), "\(program) \(flag): \(help.stdout.prefix(80))")
            }
        }
        // Each vouch command has its own short help, with examples, whatever else is on the line.
        for command in vouchCommands {
            for args in [[command, "--help"], [command, "-h"], [command, "--name", "x", "--help"], ["help", command]] {
                let help = try run("vouch", args)
                XCTAssertEqual(help.status, 0, "vouch \(args): \(help.stderr)")
                XCTAssertEqual(help.stderr, "", "vouch \(args)")
                XCTAssertTrue(help.stdout.hasPrefix("usage: vouch \(command)"), "vouch \(args): \(help.stdout.prefix(80))")
                XCTAssertLessThanOrEqual(lines(help.stdout).count, 20, "vouch \(args) is short")
                XCTAssertTrue(lines(help.stdout).contains { $0.hasPrefix("example") }, "vouch \(args) has examples")
            }
        }
    }

    func testUsageErrorsAreOneLineAndExitTwo() throws {
        // No arguments: the short usage, on stderr, exit 2.
        let bare = try run("vouch", [])
        XCTAssertEqual(bare.status, 2)
        XCTAssertEqual(bare.stdout, "")
        XCTAssertLessThanOrEqual(lines(bare.stderr).count, 5)

        for args in [["frobnicate"], ["status", "--bogus"], ["status"], ["enroll"], ["enroll", "--name"], ["check"], ["check", "--cert", "a", "--spiffe-id", "b"],
                     ["check", "--cert", "a", "--max-age", "soon"], ["revoke"], ["host"], ["token"], ["ca"], ["cert"], ["policy"], ["quote"], ["eventlog"], ["log"], ["trust"], ["trust", "get"], ["receipt"], ["store"],
                     ["status", "--broker", "https://127.0.0.1:1", "--broker", "https://127.0.0.1:2"]] {
            assertUsageError(try run("vouch", args), "vouch \(args)")
        }
        assertUsageError(try run("vouch-attester", []), "vouch-attester")
        assertUsageError(try run("vouch-attester", ["--bogus"]), "vouch-attester --bogus")
        assertUsageError(try run("vouch-attester", ["measure-model"]), "vouch-attester measure-model")
        assertUsageError(try run("vouch-attester", ["--broker", "https://127.0.0.1:1", "--ca", "ca.pem", "--tcti", "swtpm:port=1", "--socket", "s",
                                                    "--register-timeout", "soon"]), "vouch-attester --register-timeout soon")
        assertUsageError(try run("vouchd", []), "vouchd")
        assertUsageError(try run("vouchd", ["--bogus"]), "vouchd --bogus")
    }

    /// A refused configuration exits 2 with one line and creates nothing: not the data directory,
    /// not a CA, not a token.
    func testARefusedConfigurationCreatesNothing() throws {
        let dir = try TestEnv.tempDir("vouchd-refused")
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data").path
        let policy = TestEnv.packageRoot.appendingPathComponent("policies/development.yaml").path
        let ekRoots = dir.appendingPathComponent("ek-roots")
        try FileManager.default.createDirectory(at: ekRoots, withIntermediateDirectories: true)
        let base = ["--data-dir", data, "--policy", policy, "--ek-roots", ekRoots.path]
        let valid = base + ["--port", "\(TestEnv.freePorts(2))"]
        let refused: [(String, [String])] = [
            ("no policy", ["--data-dir", data, "--ek-roots", ekRoots.path]),
            ("no EK roots", ["--data-dir", data, "--policy", policy]),
            ("EK roots missing", ["--data-dir", data, "--policy", policy, "--ek-roots", dir.appendingPathComponent("none").path]),
            ("policy missing", ["--data-dir", data, "--policy", dir.appendingPathComponent("none.yaml").path, "--ek-roots", ekRoots.path]),
            ("bad port", base + ["--port", "70000"]),
            ("bad duration", valid + ["--pull-timeout", "soon"]),
            ("bad concurrency", valid + ["--reattest-concurrency", "0"]),
            ("bad log format", valid + ["--log-format", "xml"]),
        ]
        for (what, args) in refused {
            assertUsageError(try run("vouchd", args), "vouchd, \(what)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: data), "vouchd, \(what): the data directory was created")
        }
    }

    /// A failure at run time (here: no broker listening) is one line, exit 1, without the usage.
    func testRuntimeFailuresAreOneLineWithoutUsage() throws {
        let dir = try TestEnv.tempDir("vouch-runtime")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ca = try CertificateAuthority.create(commonName: "nobody", key: try PrivateKey.generate(), notBefore: Date(), notAfter: Date().addingTimeInterval(600))
        let caFile = dir.appendingPathComponent("ca.pem").path
        try ca.certificate.pem.write(toFile: caFile, atomically: true, encoding: .utf8)
        let unreachable = "https://127.0.0.1:\(TestEnv.freePorts(1))"
        for args in [["crl"], ["status"], ["history"]] {
            let tokenFile = dir.appendingPathComponent("token").path
            try "vouch_nothing\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            let r = try run("vouch", args, env: ["VOUCH_BROKER": unreachable, "VOUCH_CA": caFile, "VOUCH_TOKEN_FILE": tokenFile])
            XCTAssertEqual(r.status, 1, "vouch \(args): \(r.stderr)")
            XCTAssertEqual(lines(r.stderr).count, 1, "vouch \(args): \(r.stderr)")
        }
        // Unreadable input to a verifier stays exit 2 (its documented contract), one line.
        let missing = try run("vouch", ["cert", "inspect", dir.appendingPathComponent("none.pem").path])
        XCTAssertEqual(missing.status, 2)
        XCTAssertEqual(lines(missing.stderr).count, 1, missing.stderr)
    }

    /// `vouch check` on a revoked and expired certificate names both failures (not a complaint
    /// about the CA bundle). Meanwhile, while the certificate is valid: the EAR carries a `kid`, the
    /// broker publishes its key in a JWK set, `vouch check --jwks` verifies with it, and so does a
    /// third-party JOSE library (PyJWT, Debian's python3-jwt) given only the set and the kid.
    func testCheckNamesEveryFailedRequirementAndTheEARVerifiesByKeySet() throws {
        let tpm = try SwTPM()
        var policy = try String(contentsOf: TestEnv.packageRoot.appendingPathComponent("policies/development.yaml"), encoding: .utf8)
        policy = policy.replacingOccurrences(of: "  ttl: 15m", with: "  ttl: 1m")
        let policyFile = tpm.dir.appendingPathComponent("short-lived.yaml")
        try policy.write(to: policyFile, atomically: true, encoding: .utf8)
        let broker = try BrokerHarness(trusting: tpm, policy: policyFile.path)
        let attester = broker.attester(for: tpm)
        let hostID = try attester.register()
        let issued = try attester.enroll(AgentEnrollRequest(agentName: "brief", csr: try CSR.create(key: try PrivateKey.generate(), commonName: "brief").pem))
        let certFile = broker.dir.appendingPathComponent("brief.pem").path
        try issued.certificate.write(toFile: certFile, atomically: true, encoding: .utf8)
        let notAfter = try Certificate(pem: issued.certificate).notAfter

        // The key set: public, one ES256 key named by its RFC 7638 thumbprint.
        let setBytes = try broker.client().raw("GET", "/v1/ear/jwks").body
        let set = try JSONCodec.decode(JWKSet.self, from: setBytes)
        XCTAssertEqual(set.keys.count, 1)
        let key = try XCTUnwrap(set.keys.first)
        XCTAssertEqual(key.kid, key.thumbprint)
        XCTAssertEqual(key.alg, "ES256")

        // vouch check verifies the EAR by its kid in the key set, as it does by its x5c chain.
        for extra in [[], ["--jwks"]] {
            let ok = try broker.vouch(["check", "--cert", certFile, "--json"] + extra)
            XCTAssertEqual(ok.status, 0, "check \(extra): \(ok.stdout) \(ok.stderr)")
            XCTAssertEqual(try checkFailureCodes(ok), [])
        }

        // PyJWT, given the set and the token only (no x5c, no broker CA), verifies the EAR; it
        // computes the thumbprint itself and refuses a tampered token.
        let ear = String(decoding: try broker.admin().raw("GET", "/v1/hosts/\(hostID)/ear?nonce=jwks-interop-1").body, as: UTF8.self)
        let tokenFile = broker.dir.appendingPathComponent("ear.jwt"), setFile = broker.dir.appendingPathComponent("ear-jwks.json")
        var parts = ear.split(separator: ".").map(String.init)
        parts[1] = JWSSigner.base64URL(Array(#"{"eat_nonce":"jwks-interop-1","submods":{"tpm":{"ear.status":"affirming"}}}"#.utf8))
        let tamperedFile = broker.dir.appendingPathComponent("tampered.jwt")
        try ear.write(to: tokenFile, atomically: true, encoding: .utf8)
        try parts.joined(separator: ".").write(to: tamperedFile, atomically: true, encoding: .utf8)
        try Data(setBytes).write(to: setFile)
        let script = """
        import base64, hashlib, json, sys
        try:
            import jwt
        except ImportError:
            sys.exit("PyJWT is missing: make deps installs python3-jwt")
        token = open(sys.argv[1]).read().strip()
        keys = json.load(open(sys.argv[2]))
        kid = jwt.get_unverified_header(token)["kid"]
        (jwk,) = [k for k in keys["keys"] if k["kid"] == kid]
        jwk = {k: jwk[k] for k in ("kty", "crv", "x", "y", "kid", "use", "alg")}
        canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
        thumbprint = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
        assert thumbprint == kid, (thumbprint, kid)
        key = jwt.PyJWKSet.from_dict({"keys": [jwk]})[kid]
        claims = jwt.decode(token, key=key.key, algorithms=["ES256"])
        print(json.dumps({"nonce": claims["eat_nonce"], "status": claims["submods"]["tpm"]["ear.status"]}, sort_keys=True))
        """
        let verified = try TestEnv.run("/usr/bin/python3", ["-c", script, tokenFile.path, setFile.path])
        XCTAssertEqual(verified.status, 0, verified.stderr)
        XCTAssertEqual(verified.stdout, #"{"nonce": "jwks-interop-1", "status": "affirming"}"# + "\n")
        let tampered = try TestEnv.run("/usr/bin/python3", ["-c", script, tamperedFile.path, setFile.path])
        XCTAssertEqual(tampered.status, 1, "PyJWT must refuse a tampered EAR: \(tampered.stdout)")
        XCTAssertTrue(tampered.stderr.contains("InvalidSignatureError"), tampered.stderr)

        // Revoked, then expired (the CRL drops it then): check names both, and only those.
        let revoked = try broker.vouch(["revoke", "--serial", issued.serial])
        XCTAssertEqual(revoked.status, 0, revoked.stderr)
        let wait = notAfter.timeIntervalSinceNow + 1
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
        let both = try broker.vouch(["check", "--cert", certFile, "--json"])
        XCTAssertEqual(both.status, 1, both.stderr)
        XCTAssertEqual(Set(try checkFailureCodes(both)), ["certificate_expired", "certificate_revoked"], both.stdout)
        // Without --json: one line per failed requirement, on stderr.
        let text = try broker.vouch(["check", "--cert", certFile])
        XCTAssertEqual(text.status, 1)
        XCTAssertEqual(lines(text.stderr).count, 2, text.stderr)
    }
}
