import Foundation
import Synchronization
import VouchAPI
import VouchCore
import VouchHTTPClient
import VouchTestSupport

/// Several real `vouchd` replicas on one PostgreSQL database, set up as docs/operations.md tells
/// an operator to: the first replica starts alone and creates DATA-DIR's keys (CA, broker CA, log
/// key, admin token, replica.key), is stopped, and its whole data directory is copied to each
/// other replica; then all of them run. Each replica has its own ports (HTTPS and the publication
/// listener on port + 1).
///
/// Replicas are killed (SIGKILL) and restarted by one thread (the test's killer) while others
/// send load and read; `crash` and `restart` record when each replica was down, so that a check
/// can ask whether a replica ran throughout a window (`upThroughout`). The harnesses themselves
/// are touched only by `crash`, `restart` and `stopAll`, under `harnessLock`; every other member
/// is immutable or behind `lives`, which is why the class may be shared across threads.
final class ReplicaSet: @unchecked Sendable {
    /// One replica's clients: its HTTPS API, the same with the admin token, and its plain-HTTP
    /// publication listener (CRLs and OCSP).
    struct Clients: Sendable {
        let api: HTTPClient
        let admin: APIClient
        let publication: HTTPClient
    }

    /// When a replica was down: from just before its SIGKILL until its restart answered /v1/health.
    struct Downtime: Sendable {
        var from: Date
        var to: Date?
    }

    let pg: PostgresServer
    /// The database the replicas share, and its URL.
    let databaseName: String
    let databaseURL: String
    private let harnesses: [BrokerHarness]
    private let harnessLock = NSLock()
    let clients: [Clients]
    /// The issuing CA's certificate (PEM): the issuer of the CRLs and OCSP answers the checks read.
    let caPEM: String
    private let copies: [URL]
    private let lives: Mutex<[[Downtime]]>

    var count: Int { clients.count }

    /// Starts `count` replicas on a new database `databaseName` of the test process's PostgreSQL
    /// server, each with `extraArgs` besides `--database`.
    init(count: Int, tpm: SwTPM, policy: String, extraArgs: [String], databaseName: String) throws {
        pg = try PostgresServer.shared.get()
        self.databaseName = databaseName
        databaseURL = try pg.createDatabase(databaseName)
        let args = ["--database", databaseURL] + extraArgs
        let first = try BrokerHarness(trusting: tpm, policy: policy, extraArgs: args)
        first.stop()
        var all = [first]
        var copies: [URL] = []
        for _ in 1..<count {
            let dir = try TestEnv.tempDir("vouch-replica")
            copies.append(dir)
            let data = dir.appendingPathComponent("data")
            try FileManager.default.copyItem(at: first.dataDir, to: data)
            all.append(try BrokerHarness(trusting: tpm, policy: policy, extraArgs: args, dataDir: data))
        }
        try first.start()
        harnesses = all
        self.copies = copies
        let token = try String(contentsOfFile: first.tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        clients = all.map { h in
            let api = HTTPClient(.https(baseURL: h.url, caFile: h.brokerCAFile), timeoutSeconds: 10)
            return Clients(api: api, admin: APIClient(transport: api, bearerToken: token),
                           publication: HTTPClient(.service(baseURL: "http://127.0.0.1:\(h.port + 1)"), timeoutSeconds: 5))
        }
        caPEM = try String(contentsOfFile: first.agentCAFile, encoding: .utf8)
        lives = Mutex(Array(repeating: [], count: count))
    }

    deinit {
        stopAll()
        for dir in copies { try? FileManager.default.removeItem(at: dir) }
    }

    /// The replica's HTTPS base URL and the broker CA file its clients trust (the same CA for all).
    func url(_ i: Int) -> String { harnesses[i].url }
    var brokerCAFile: String { harnesses[0].brokerCAFile }
    /// The log of the replica's current (or last) process.
    func log(_ i: Int) -> String { harnessLock.withLock { harnesses[i].log } }

    /// Everything replica `i`'s processes logged, oldest process first (a log file per start).
    func logs(_ i: Int) -> String {
        let dir = harnesses[i].dir
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasPrefix("vouchd-") && $0.hasSuffix(".log") }
        let dated = files.map { f -> (Date, String) in
            let url = dir.appendingPathComponent(f)
            return (((try? FileManager.default.attributesOfItem(atPath: url.path))?[.creationDate] as? Date) ?? .distantPast, url.path)
        }
        return dated.sorted { $0.0 < $1.0 }.map { (try? String(contentsOfFile: $0.1, encoding: .utf8)) ?? "" }.joined()
    }

    /// SIGKILLs replica `i`; it counts as down from just before the signal.
    func crash(_ i: Int) {
        lives.withLock { $0[i].append(Downtime(from: Date(), to: nil)) }
        harnessLock.withLock { harnesses[i].crash() }
    }

    /// Starts replica `i` again and waits until it answers; it counts as up from then.
    func restart(_ i: Int) throws {
        try harnessLock.withLock {
            do { try harnesses[i].start() } catch {
                harnesses[i].crash()   // a process that did not come up is not left behind
                throw error
            }
        }
        lives.withLock { l in if let last = l[i].indices.last, l[i][last].to == nil { l[i][last].to = Date() } }
    }

    /// Stops every replica (SIGTERM, then SIGKILL after 5 s).
    func stopAll() { harnessLock.withLock { for h in harnesses { h.stop() } } }

    /// Whether replica `i`'s process runs and is not being killed or restarted.
    func isUp(_ i: Int) -> Bool {
        lives.withLock { $0[i].last.map { $0.to != nil } ?? true } && harnessLock.withLock { harnesses[i].isRunning }
    }

    /// The replicas that are up now.
    var live: [Int] { (0..<count).filter(isUp) }

    /// Whether replica `i` was up during the whole of [from, to] (no downtime touches it).
    func upThroughout(_ i: Int, from: Date, to: Date) -> Bool {
        lives.withLock { $0[i].allSatisfy { d in d.from > to || (d.to.map { $0 < from } ?? false) } }
    }

    /// When replica `i` was up again after a downtime that touched [from, to]; `from` if none did.
    func upAgain(_ i: Int, from: Date, to: Date) -> Date {
        lives.withLock { l in
            l[i].filter { d in !(d.from > to || (d.to.map { $0 < from } ?? false)) }.map { $0.to ?? .distantFuture }.max() ?? from
        }
    }

    /// The replica holding the log sequencer's lease, if one does: a lease's holder is named
    /// `host/pid/random` (`LeaseGate.holderName`).
    func sequencer() -> Int? {
        guard let holder = try? psql("SELECT holder FROM vouch_leases WHERE job = 'log-sequencer'") else { return nil }
        let parts = holder.split(separator: "/")
        guard parts.count >= 3, let pid = Int32(parts[parts.count - 2]) else { return nil }
        return harnessLock.withLock { harnesses.firstIndex { $0.pid == pid } }
    }

    /// Every downtime so far, by replica.
    var downtimes: [[Downtime]] { lives.withLock { $0 } }

    /// psql in the shared database (`PostgresServer.psql`: `|` between columns, rows by line).
    @discardableResult
    func psql(_ sql: String) throws -> String { try pg.psql(sql, database: databaseName) }
}

/// An HTTP transport that sends each request to one of the replicas: `pinned` while set, else a
/// replica that is up, picked by a seeded generator (the pick, not where a kill lands, replays).
/// A request to a replica killed meanwhile fails as it would for any client.
final class ReplicaRouter: HTTPTransport, Sendable {
    let replicas: ReplicaSet
    private let state: Mutex<(pinned: Int?, rng: SplitMix64)>

    init(_ replicas: ReplicaSet, seed: UInt64, pinned: Int? = nil) {
        self.replicas = replicas
        state = Mutex((pinned, SplitMix64(seed: seed)))
    }

    /// Sends every request to replica `i` (nil: to any replica that is up).
    func pin(_ i: Int?) { state.withLock { $0.pinned = i } }

    func send(_ method: String, _ path: String, headers: [String: String], body: [UInt8]?) throws -> HTTPResponse {
        let live = replicas.live
        let i = state.withLock { s in s.pinned ?? (live.isEmpty ? 0 : live[Int(s.rng.next() % UInt64(live.count))]) }
        return try replicas.clients[i].api.send(method, path, headers: headers, body: body)
    }
}
