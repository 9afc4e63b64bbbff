import Foundation
import XCTest
import VouchAPI
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchModel
import VouchStore
import VouchTestSupport

/// Running vouchd as a service: configuration file with environment overrides and clear errors,
/// JSON logs, readiness, graceful shutdown on SIGTERM, the shipped systemd units and example
/// configuration, and a schema migration from an older database.
final class OperationsTests: XCTestCase {
    func testConfigFileEnvironmentJSONLogsAndGracefulShutdown() throws {
        let tpm = try SwTPM()
        let dir = try TestEnv.tempDir("vouch-ops")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ek = dir.appendingPathComponent("ek")
        try FileManager.default.createDirectory(at: ek, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: tpm.rootCA, to: ek.appendingPathComponent("root.pem"))
        let port = TestEnv.freePorts(2)
        let config = dir.appendingPathComponent("vouchd.yaml")
        try """
        data-dir: \(dir.path)/data
        policy: [\(TestEnv.packageRoot.path)/policies/development.yaml]
        ek-roots: \(ek.path)
        port: 1
        trust-domain: ops.test
        log-format: json
        """.write(to: config, atomically: true, encoding: .utf8)
        let vouchd = TestEnv.bin("vouchd")

        // --check-config: the environment overrides the file; every value says where it came from.
        let checked = try TestEnv.run(vouchd, ["--config", config.path, "--check-config"], env: ["VOUCHD_PORT": "\(port)"])
        XCTAssertEqual(checked.status, 0, checked.stderr)
        XCTAssertTrue(checked.stdout.contains("port: \(port)  (VOUCHD_PORT)"), checked.stdout)
        XCTAssertTrue(checked.stdout.contains("trust-domain: ops.test  (\(config.path):5:15)"), checked.stdout)
        // --check-config runs every check a start runs before creating anything.
        for (name, value) in [("VOUCHD_PULL_TIMEOUT", "soon"), ("VOUCHD_PUBLISH_LISTEN", "nowhere"), ("VOUCHD_REATTEST_CONCURRENCY", "0"),
                              ("VOUCHD_PORT", "65535"), ("VOUCHD_EK_ROOTS", dir.appendingPathComponent("missing").path),
                              // A pull may not outlast its nonce (an answer after the TTL could never be judged).
                              ("VOUCHD_CHALLENGE_TTL", "10s"), ("VOUCHD_PULL_TIMEOUT", "60s")] {
            let refused = try TestEnv.run(vouchd, ["--config", config.path, "--check-config"], env: [name: value])
            XCTAssertEqual(refused.status, 2, "\(name)=\(value): \(refused.stdout)")
            XCTAssertFalse(refused.stdout.contains("configuration valid"), name)
        }
        // Clear errors, exit 2, naming the place.
        let badPort = try TestEnv.run(vouchd, ["--config", config.path], env: ["VOUCHD_PORT": "99999"])
        XCTAssertEqual(badPort.status, 2)
        XCTAssertTrue(badPort.stderr.contains("VOUCHD_PORT: port must be 1-65535"), badPort.stderr)
        let typo = dir.appendingPathComponent("typo.yaml")
        try "data-dir: /x\nprot: 8443\n".write(to: typo, atomically: true, encoding: .utf8)
        let unknown = try TestEnv.run(vouchd, ["--config", typo.path])
        XCTAssertEqual(unknown.status, 2)
        XCTAssertTrue(unknown.stderr.contains("typo.yaml:2:1: unknown key prot"), unknown.stderr)
        XCTAssertEqual(try TestEnv.run(vouchd, ["--config", config.path], env: ["VOUCHD_PROT": "1"]).status, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("data").path), "a refused configuration must change nothing")

        // Run it: JSON log lines, ready, then SIGTERM drains and exits 0 with readiness gone.
        let log = dir.appendingPathComponent("vouchd.log")
        let process = try BackgroundProcess(vouchd, ["--config", config.path, "--port", "\(port)"], log: log)
        XCTAssertTrue(TestEnv.waitForPort(port))
        let ca = dir.appendingPathComponent("data/broker-ca/ca.pem").path
        let client = HTTPClient(.https(baseURL: "https://127.0.0.1:\(port)", caFile: ca))
        XCTAssertEqual(try client.send("GET", "/readyz", headers: [:], body: nil).status, 200)
        XCTAssertEqual(try client.send("GET", "/healthz", headers: [:], body: nil).status, 200)
        // An event stream is open when the signal comes: it ends, it does not hold shutdown up.
        let stream = try BackgroundProcess("/usr/bin/curl", ["-sN", "--cacert", ca, "https://127.0.0.1:\(port)/v1/events"], log: dir.appendingPathComponent("sse.log"))
        usleep(300_000)
        kill(process.process.processIdentifier, SIGTERM)
        // A generous deadline (not a speed bound): an open stream must not hold shutdown up forever.
        let deadline = Date().addingTimeInterval(60)
        while process.process.isRunning && Date() < deadline { usleep(50_000) }
        guard !process.process.isRunning else {
            process.stop()
            throw TestFailure("vouchd did not exit within 60 s of SIGTERM with an event stream open")
        }
        XCTAssertEqual(process.process.terminationStatus, 0)
        stream.stop()
        let lines = (try String(contentsOf: log, encoding: .utf8)).split(separator: "\n")
        XCTAssertGreaterThan(lines.count, 3)
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            XCTAssertNotNil(object?["msg"] as? String, String(line))
            XCTAssertNotNil(object?["level"] as? String, String(line))
        }
        XCTAssertTrue(lines.contains { $0.contains("shutting down: draining") } && lines.last?.contains("vouchd stopped") == true, lines.joined(separator: "\n"))
    }

    func testShippedExampleConfigurationAndUnits() throws {
        let example = TestEnv.packageRoot.appendingPathComponent("scripts/systemd/vouchd.yaml").path
        // The example is valid once its paths exist (they are overridden here to point at the repo).
        let dir = try TestEnv.tempDir("vouch-example")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Any self-signed root stands in for the TPM vendors' roots the example names.
        let ekRoots = dir.appendingPathComponent("ek-roots")
        try FileManager.default.createDirectory(at: ekRoots, withIntermediateDirectories: true)
        let root = try CertificateAuthority.create(commonName: "EK root", key: try PrivateKey.generate(.p256), notBefore: Date(), notAfter: Date().addingTimeInterval(3600))
        try root.certificate.pem.write(to: ekRoots.appendingPathComponent("root.pem"), atomically: true, encoding: .utf8)
        let r = try TestEnv.run(TestEnv.bin("vouchd"), ["--config", example, "--check-config"],
                                env: ["VOUCHD_POLICY": TestEnv.packageRoot.appendingPathComponent("policies").path, "VOUCHD_DATA_DIR": dir.path,
                                      "VOUCHD_EK_ROOTS": ekRoots.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("reattest-concurrency: 64"), r.stdout)
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else { throw TestFailure("/usr/bin/systemd-analyze is missing: run make deps (it installs systemd)") }
        for unit in ["vouchd.service", "vouch-attester.service"] {
            let v = try TestEnv.run("/usr/bin/systemd-analyze", ["verify", TestEnv.packageRoot.appendingPathComponent("scripts/systemd/\(unit)").path])
            // Binaries are not installed on a build machine; anything else is a real unit error.
            let problems = (v.stdout + v.stderr).split(separator: "\n").filter { !$0.contains("is not executable") && !$0.contains("No such file") }
            XCTAssertEqual(problems, [], "\(unit): \(problems.joined(separator: "\n"))")
        }
    }

    func testSchemaMigratesFromVersionOne() throws {
        // A database as the walking skeleton (schema 1) left it, made with the sqlite3 CLI.
        let tpm = try SwTPM()
        let dir = try TestEnv.tempDir("vouch-migrate")
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let db = data.appendingPathComponent("vouch.db").path
        let v1 = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n" + SQLiteBrokerStore.migrations[0] + """
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO hosts VALUES ('0123456789abcdef0123456789abcdef', 'old-host', x'00', x'00', 'CN=old', '{}', x'00', x'00', 'ecc-p256', 'active',
          NULL, NULL, 0, 1700000000, 1700000000, NULL);
        """
        XCTAssertEqual(try TestEnv.run("/usr/bin/sqlite3", [db], stdin: v1).status, 0)
        let broker = try BrokerHarness(trusting: tpm, dataDir: data)
        let status = try broker.status()
        XCTAssertEqual(status.hosts.map(\.hostname), ["old-host"])
        XCTAssertNil(status.hosts.first?.trust)
        let version = try TestEnv.run("/usr/bin/sqlite3", [db, "SELECT value FROM meta WHERE key='schema_version'"])
        XCTAssertEqual(version.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(SQLiteBrokerStore.schemaVersion)")
        // A database from a newer vouchd is refused, not misread.
        broker.stop()
        XCTAssertEqual(try TestEnv.run("/usr/bin/sqlite3", [db, "UPDATE meta SET value='99' WHERE key='schema_version'"]).status, 0)
        XCTAssertThrowsError(try broker.start())
        XCTAssertTrue(broker.log.contains("newer than this vouchd supports"), broker.log)
    }
}
