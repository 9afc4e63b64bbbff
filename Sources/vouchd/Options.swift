import Foundation
import VouchAttestation
import VouchBroker
import VouchCore
import VouchRuntime

/// vouchd's options, each checked: what a start and `--check-config` both run before anything is
/// created. A bad value ends the process with a usage error (exit 2) naming where it came from.
struct BrokerOptions {
    let dataDir: String
    /// `database`: nil for the embedded SQLite store (DATA-DIR/vouch.db), else a PostgreSQL URL.
    let postgresURL: String?
    let listen: String
    let port: UInt16
    let trustDomain: String
    let publicURL: String
    let publication: Publication
    let policyPaths: [String]
    let ekRoots: String
    let config: BrokerConfig
    let concurrency: Int
    let pullTimeout: TimeInterval
    /// `pull-connections`: attesters whose connection is kept between rounds (0: none).
    let pullConnections: Int
    let perAddress: Int
    let authFailures: Int
    let idle: Int
    let requestDeadline: Int
    /// Seconds a connection whose push report or hint the host's certificate authenticated may
    /// stay idle (and take over its next request): `--host-connection-timeout`.
    let hostIdle: Int
    /// `max-connections`: connections the HTTPS API holds open at once (kept-alive hosts included).
    let maxConnections: Int
    /// `http-threads`: the HTTPS API's thread pool (default four times the cores, at least 16).
    let httpThreads: Int
    /// `http-threading`: `pool` (the pool serves requests, each event stream has a thread of its
    /// own) or `per-connection` (a thread for every open connection: the former model).
    let perConnectionThreads: Bool
    /// The roots and TDX collateral CPU TEE evidence is verified with: AMD's and Intel's pinned
    /// roots; the software TEE's besides only with `simulated-tee-roots` (which needs
    /// `allow-simulated-hosts`); collateral from `tdx-collateral` (none without it: a TDX quote's
    /// TCB is then Unknown, which the default policy refuses).
    let tee: TEETrust
    /// `fetch-collateral` and its companions (`CollateralFetching`); nil: nothing is fetched.
    let collateral: CollateralFetching?

    init(_ args: Settings) throws {
        let dataDir = try args.required("data-dir")
        let postgresURL = try Self.database(args)
        let listen = args["listen"] ?? "127.0.0.1"
        guard let port = UInt16(args["port"] ?? "8443"), port > 0 else { fail("\(args.source("port")): port must be 1-65535") }
        let trustDomain = args["trust-domain"] ?? "vouch.local"
        guard trustDomain.range(of: "^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$", options: .regularExpression) != nil else {
            fail("\(args.source("trust-domain")): trust-domain must be a lowercase DNS name")
        }
        let publicURL = args["public-url"] ?? "https://\(listen):\(port)"
        let publication = Publication(args, publicURL: publicURL, httpsListen: listen, httpsPort: port)
        let policyPaths = try args.required("policy").split(separator: ",").map(String.init)
        let ekRoots = try args.required("ek-roots")
        var config = BrokerConfig(trustDomain: trustDomain)
        config.crlURL = publication.crlURL
        config.ocspURL = publication.ocspURL
        config.webhookURLs = (args["webhook"] ?? "").split(separator: ",").map(String.init)
        if let t = args["challenge-ttl"] { config.challengeTTL = try parseDuration(t, field: "--challenge-ttl") }
        if let v = args["crl-validity"] { config.crlValidity = try parseDuration(v, field: "--crl-validity") }
        config.allowSimulatedHosts = args.has("allow-simulated-hosts")
        guard let concurrency = Int(args["reattest-concurrency"] ?? "32"), (1...1024).contains(concurrency) else {
            fail("\(args.source("reattest-concurrency")): reattest-concurrency must be 1-1024")
        }
        let pullTimeout = try parseDuration(args["pull-timeout"] ?? "10s", field: "--pull-timeout")
        // A pull's nonce lives for the challenge TTL: an answer the pull may still wait for after
        // it could never be judged. Compared as the pull waits (whole seconds, at least 1).
        guard TimeInterval(Self.pullSeconds(pullTimeout)) < config.challengeTTL else {
            fail("\(args.source("pull-timeout")): pull-timeout (\(Self.pullSeconds(pullTimeout))s) must be shorter than challenge-ttl (\(args["challenge-ttl"] ?? "60s")): "
                 + "a pulled answer after its nonce expired cannot be judged")
        }
        guard let pullConnections = Int(args["pull-connections"] ?? "10000"), (0...1_000_000).contains(pullConnections) else {
            fail("\(args.source("pull-connections")): pull-connections must be 0-1000000")
        }
        guard let perAddress = Int(args["max-connections-per-address"] ?? "64"), (1...1024).contains(perAddress) else {
            fail("\(args.source("max-connections-per-address")): max-connections-per-address must be 1-1024")
        }
        guard let streamsPerAddress = Int(args["event-streams-per-address"] ?? "4"), (1...config.maxEventStreams).contains(streamsPerAddress) else {
            fail("\(args.source("event-streams-per-address")): event-streams-per-address must be 1-\(config.maxEventStreams)")
        }
        config.maxEventStreamsPerAddress = streamsPerAddress
        guard let authFailures = Int(args["auth-failures-per-address"] ?? "10"), (1...1_000_000).contains(authFailures) else {
            fail("\(args.source("auth-failures-per-address")): auth-failures-per-address must be 1-1000000")
        }
        /// Whole seconds of a connection limit, 1 s to 24 h (checked before the conversion, so a
        /// huge value is refused rather than trapping).
        func limitSeconds(_ name: String, _ fallback: String) throws -> Int {
            let seconds = try parseDuration(args[name] ?? fallback, field: "--\(name)")
            guard seconds.isFinite, seconds >= 1, seconds <= 24 * 3600 else { fail("\(args.source(name)): \(name) must be 1s to 24h") }
            return Int(seconds)
        }
        let idle = try limitSeconds("connection-timeout", "30s")
        let requestDeadline = try limitSeconds("request-deadline", "10s")
        // Unset: 20 minutes, or the longer of the two above when an operator raised them past it
        // (as operations.md advised for push fleets before this option existed).
        let hostIdle = try limitSeconds("host-connection-timeout", "\(max(20 * 60, idle, requestDeadline))s")
        guard hostIdle >= max(idle, requestDeadline) else {
            fail("\(args.source("host-connection-timeout")): host-connection-timeout must be at least connection-timeout and request-deadline")
        }
        guard let maxConnections = Int(args["max-connections"] ?? "\(Self.defaultMaxConnections)"), (perAddress...1_000_000).contains(maxConnections) else {
            fail("\(args.source("max-connections")): max-connections must be \(perAddress) (max-connections-per-address) to 1000000")
        }
        guard let httpThreads = Int(args["http-threads"] ?? "\(Self.defaultHTTPThreads)"), (1...1024).contains(httpThreads) else {
            fail("\(args.source("http-threads")): http-threads must be 1-1024")
        }
        let perConnectionThreads: Bool
        switch args["http-threading"] ?? "pool" {
        case "pool": perConnectionThreads = false
        case "per-connection": perConnectionThreads = true
        default: fail("\(args.source("http-threading")): http-threading must be pool or per-connection")
        }
        var tee = TEETrust()
        if let dir = args["tdx-collateral"] {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
                fail("\(args.source("tdx-collateral")): tdx-collateral must be a directory (of <fmspc>.json files or <fmspc>/ directories)")
            }
            tee.tdxCollateral = TDXCollateralDirectory(directory: URL(fileURLWithPath: dir))
        }
        let collateral = CollateralFetching(args, dataDir: dataDir)
        collateral?.install(into: &tee, log: { Runtime.log($0) })
        if let dir = args["simulated-tee-roots"] {
            guard config.allowSimulatedHosts else {
                fail("\(args.source("simulated-tee-roots")): simulated-tee-roots needs allow-simulated-hosts (the software TEE is for tests and demos only)")
            }
            tee = try tee.trustingSimulation(directory: URL(fileURLWithPath: dir))
        }
        if let dir = args["nvidia-rims"] {
            try Self.loadRIMs(directory: dir, into: &tee.gpu)
        }
        if let dir = args["nvidia-ocsp"] {
            let store = try OCSPStore(directory: URL(fileURLWithPath: dir))
            Runtime.log("nvidia-ocsp \(dir): \(store.count) OCSP answer(s)")
            for p in store.problems { Runtime.log("WARNING: nvidia-ocsp: \(p.file) is not used: \(p.code.rawValue): \(p.message)") }
            tee.gpu.ocsp = store
        }
        self.dataDir = dataDir; self.postgresURL = postgresURL; self.listen = listen; self.port = port; self.trustDomain = trustDomain; self.publicURL = publicURL
        self.publication = publication; self.policyPaths = policyPaths; self.ekRoots = ekRoots; self.config = config
        self.concurrency = concurrency; self.pullTimeout = pullTimeout; self.pullConnections = pullConnections; self.perAddress = perAddress; self.authFailures = authFailures
        self.idle = idle; self.requestDeadline = requestDeadline; self.hostIdle = hostIdle; self.tee = tee; self.collateral = collateral
        self.maxConnections = maxConnections; self.httpThreads = httpThreads; self.perConnectionThreads = perConnectionThreads
    }

    /// Enough for a large fleet's hosts to keep their connections alive (one descriptor each).
    static let defaultMaxConnections = 16_384
    /// Four times the cores, at least 16: handlers do CPU work (signatures, quote checks) and
    /// some wait (the store; a receipt up to 5 s for its log entry; an on-demand collateral fetch),
    /// and a waiting handler stalls every connection its pool thread serves: many threads keep
    /// one slow request from holding up a large share of the connections.
    static var defaultHTTPThreads: Int { max(16, 4 * ProcessInfo.processInfo.activeProcessorCount) }

    /// `--nvidia-rims DIR`: the driver and VBIOS RIMs GPU measurements are compared with, each
    /// verified once now under NVIDIA's pinned CoRIM root (`NvidiaRIMStore`; every lookup
    /// re-checks the signers' validity) — and, when the software GPU's RIM root is trusted
    /// (`--simulated-tee-roots` with `nvidia-rim.pem`), separately under that root, for simulated
    /// GPUs only. A RIM that verifies under neither is logged and never used.
    static func loadRIMs(directory dir: String, into gpu: inout GPUTrust) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
            fail("nvidia-rims must be a directory of NVIDIA RIM files (SWID tags)")
        }
        let url = URL(fileURLWithPath: dir), now = Date()
        let pinned = try NvidiaRIMStore(directory: url, verifier: try NvidiaRIMVerifier(), at: now)
        gpu.references = pinned
        var simulated: NvidiaRIMStore?
        if let roots = gpu.simulatedRIMRoots {
            simulated = try NvidiaRIMStore(directory: url, verifier: try NvidiaRIMVerifier(roots: roots), at: now)
            gpu.simulatedReferences = simulated
        }
        let used = Set(pinned.verified.map(\.file) + (simulated?.verified.map(\.file) ?? []))
        Runtime.log("nvidia-rims \(dir): \(pinned.verified.count) RIM(s) under NVIDIA's root" + (simulated.map { ", \($0.verified.count) under the software GPU's root (simulated GPUs only)" } ?? ""))
        for failure in pinned.failures where !used.contains(failure.file) {
            Runtime.log("WARNING: nvidia-rims: \(failure.file) is not used: \(failure.code.rawValue): \(failure.message)")
        }
    }

    /// `--database`: `sqlite` (the default: DATA-DIR/vouch.db) or a PostgreSQL connection URL
    /// (`postgres://` or `postgresql://`, several hosts allowed: libpq's syntax).
    static func database(_ args: Settings) throws -> String? {
        guard let value = args["database"], value != "sqlite" else { return nil }
        guard value.hasPrefix("postgres://") || value.hasPrefix("postgresql://") else {
            fail("\(args.source("database")): database must be sqlite or a postgres:// URL")
        }
        return value
    }

    /// How long one pull waits, in the whole seconds the client takes: at least 1.
    static func pullSeconds(_ timeout: TimeInterval) -> Int { max(1, Int(timeout)) }
}
