import Foundation
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchHTTPClient
import VouchTestSupport
import VouchTPMWire
#if canImport(Glibc)
import Glibc
#endif

/// A real `vouchd` on a free loopback port with its own data directory, trusting the EK CA of
/// the given software TPM. Stopped when released. With `VOUCH_TEST_STORE=postgres` in the
/// environment, its store is a database of its own on the tests' PostgreSQL server
/// (`--database`), so the same tests run against both stores (`make test` runs the end-to-end
/// ones twice).
final class BrokerHarness {
    /// The store the brokers of this test run use: `sqlite` (default) or `postgres`.
    static let storeKind = ProcessInfo.processInfo.environment["VOUCH_TEST_STORE"] ?? "sqlite"
    /// The broker's PostgreSQL database (name and URL), when `storeKind` is `postgres`.
    let postgres: (name: String, url: String)?
    let dir: URL
    let port: UInt16
    let ekRoots: URL
    let extraArgs: [String]
    let policy: String
    private var process: BackgroundProcess?

    var url: String { "https://127.0.0.1:\(port)" }
    /// The file clients trust for the broker itself (its TLS certificate and signed results): the
    /// broker CA, which certifies nothing else.
    var brokerCAFile: String { dataDir.appendingPathComponent("broker-ca/ca.pem").path }
    /// The trust anchors for agent and host certificates, CRLs and OCSP answers: the issuing CA
    /// (self-signed), or a bundle the test provides (an issuing CA under an offline root).
    var agentCAFile: String { agentCAFileOverride ?? dataDir.appendingPathComponent("ca/ca.pem").path }
    let agentCAFileOverride: String?
    let dataDir: URL
    var tokenFile: String { dataDir.appendingPathComponent("admin.token").path }
    var log: String { process?.log ?? "" }

    convenience init(trusting tpm: SwTPM, policy: String? = nil, extraArgs: [String] = [], agentCAFile: String? = nil, dataDir: URL? = nil) throws {
        try self.init(ekRootFiles: [tpm.rootCA, tpm.issuerCA], policy: policy, extraArgs: extraArgs, agentCAFile: agentCAFile, dataDir: dataDir)
    }

    /// A vouchd whose EK roots are `ekRootFiles` (PEM; at least one self-signed root).
    init(ekRootFiles: [URL], policy: String? = nil, extraArgs: [String] = [], agentCAFile: String? = nil, dataDir: URL? = nil) throws {
        agentCAFileOverride = agentCAFile
        dir = try TestEnv.tempDir("vouch-broker")
        self.dataDir = dataDir ?? dir.appendingPathComponent("data")
        ekRoots = dir.appendingPathComponent("ek-roots")
        try FileManager.default.createDirectory(at: ekRoots, withIntermediateDirectories: true)
        for f in ekRootFiles {
            try FileManager.default.copyItem(at: f, to: ekRoots.appendingPathComponent(f.lastPathComponent))
        }
        self.policy = policy ?? TestEnv.packageRoot.appendingPathComponent("policies/development.yaml").path
        if Self.storeKind == "postgres" {
            // One database per data directory: a broker started again on a data directory (a
            // test's restart, an upgrade) finds the database that directory's broker used.
            let marker = self.dataDir.appendingPathComponent("test-database")
            let name: String
            if let known = try? String(contentsOf: marker, encoding: .utf8) {
                name = known
            } else {
                name = "broker_\(UInt64.random(in: 0...UInt64.max))"
                _ = try PostgresServer.shared.get().createDatabase(name)
                try FileManager.default.createDirectory(at: self.dataDir, withIntermediateDirectories: true)
                try Data(name.utf8).write(to: marker)
            }
            let url = try PostgresServer.shared.get().url(database: name)
            postgres = (name, url)
            self.extraArgs = extraArgs + ["--database", url]
        } else {
            postgres = nil
            self.extraArgs = extraArgs
        }
        port = TestEnv.freePorts(2)   // and port + 1: the publication listener (default)
        try start()
    }

    func start() throws {
        process = try BackgroundProcess(TestEnv.bin("vouchd"), [
            "--data-dir", dataDir.path, "--policy", policy, "--ek-roots", ekRoots.path,
            "--port", "\(port)", "--trust-domain", "vouch.test",
        ] + extraArgs, log: dir.appendingPathComponent("vouchd-\(UUID().uuidString.prefix(4)).log"))
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if FileManager.default.fileExists(atPath: brokerCAFile), (try? client().raw("GET", "/v1/health")) != nil { return }
            if process?.process.isRunning == false { break }
            usleep(50_000)
        }
        throw NSError(domain: "vouchd", code: 1, userInfo: [NSLocalizedDescriptionKey: "vouchd did not start:\n\(log)"])
    }

    func stop() { process?.stop(); process = nil }

    /// Whether the vouchd this harness started is still running (false once stopped or crashed).
    var isRunning: Bool { process?.process.isRunning ?? false }

    /// The process id of the running vouchd, if any.
    var pid: Int32? { process.map { $0.process.processIdentifier } }

    /// Kills vouchd with SIGKILL (no cleanup, no flush beyond what it committed) and forgets it.
    func crash() {
        guard let p = process?.process else { return }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        process = nil
    }

    /// Sends a signal (SIGHUP: reload policies) to the running vouchd.
    func signal(_ sig: Int32) { if let p = process?.process, p.isRunning { kill(p.processIdentifier, sig) } }

    func restart() throws {
        stop()
        try start()
    }

    func client() -> APIClient { APIClient(transport: HTTPClient(.https(baseURL: url, caFile: brokerCAFile))) }

    func admin() throws -> APIClient {
        APIClient(transport: HTTPClient(.https(baseURL: url, caFile: brokerCAFile)),
                  bearerToken: try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func status() throws -> StatusResponse { try admin().call("GET", "/v1/status", as: StatusResponse.self) }

    /// An in-process attester (the same code as vouch-attester) for `tpm`, talking to this broker.
    /// An in-process attester; `ek` picks the endorsement key that registers it (rsa or ecc).
    func attester(for tpm: SwTPM, ak: String = "ecc-p256", ek: String = "rsa") -> Attester {
        var config = AttesterConfig(tcti: tpm.tcti, akKind: .init(rawValue: ak)!, hostname: "test-host")
        config.ekKind = .init(rawValue: ek)!
        return Attester(config: config, broker: HTTPClient(.https(baseURL: url, caFile: brokerCAFile)))
    }

    /// An in-process attester with a state directory for its host certificate, so it can push
    /// re-attestation reports over mutual TLS.
    func pushAttester(for tpm: SwTPM, hostname: String) -> Attester {
        var config = AttesterConfig(tcti: tpm.tcti, hostname: hostname)
        config.stateDirectory = dir.appendingPathComponent("state-\(hostname)").path
        return Attester(config: config, broker: HTTPClient(.https(baseURL: url, caFile: brokerCAFile)))
    }

    /// Runs the `vouch` CLI with this broker's settings in the environment.
    /// The id of the newest event in the outbox (0 if none), read from the database.
    func lastEventID() throws -> Int64 {
        Int64(try query("SELECT COALESCE(MAX(id), 0) FROM events")) ?? -1
    }

    /// Rows in a table of the broker's database (read while it runs: WAL readers do not block it).
    func rowCount(_ table: String) throws -> Int {
        Int(try query("SELECT COUNT(*) FROM \(table)")) ?? -1
    }

    /// One value a query on the broker's database gives (sqlite3, or psql on PostgreSQL).
    func query(_ sql: String) throws -> String {
        if let postgres { return try PostgresServer.shared.get().psql(sql, database: postgres.name) }
        let r = try TestEnv.run("/usr/bin/sqlite3", [dataDir.appendingPathComponent("vouch.db").path, sql])
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The Prometheus text of /metrics (it needs a read token; the admin token will do).
    func metrics() throws -> String { String(decoding: try admin().raw("GET", "/metrics").body, as: UTF8.self) }

    func vouch(_ args: [String], socket: String? = nil) throws -> TestEnv.RunResult {
        var env = ["VOUCH_BROKER": url, "VOUCH_CA": brokerCAFile, "VOUCH_TOKEN_FILE": tokenFile]
        if let socket { env["VOUCH_ATTESTER_SOCKET"] = socket }
        return try TestEnv.run(TestEnv.bin("vouch"), args, env: env)
    }

    /// Starts the real `vouch-attester` process for `tpm` (push mode unless `extraArgs` has
    /// `--listen`); returns it and its socket path.
    func startAttesterProcess(for tpm: SwTPM, extraArgs: [String] = []) throws -> (BackgroundProcess, String) {
        let tag = UUID().uuidString.prefix(4)
        let socket = dir.appendingPathComponent("attester-\(tag).sock").path
        let p = try BackgroundProcess(TestEnv.bin("vouch-attester"), [
            "--broker", url, "--ca", brokerCAFile, "--tcti", tpm.tcti, "--socket", socket, "--hostname", "test-host",
            "--state-dir", dir.appendingPathComponent("attester-\(tag)-state").path,
        ] + extraArgs, log: dir.appendingPathComponent("attester-\(tag).log"))
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && !FileManager.default.fileExists(atPath: socket) {
            guard p.process.isRunning else { break }
            usleep(50_000)
        }
        guard FileManager.default.fileExists(atPath: socket) else {
            throw NSError(domain: "vouch-attester", code: 1, userInfo: [NSLocalizedDescriptionKey: "attester did not start:\n\(p.log)"])
        }
        return (p, socket)
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: dir)
    }
}
