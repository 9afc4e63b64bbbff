// vouchd: the Vouch broker. Wires configuration, store, CA, policy and the HTTPS API together.
import Foundation
import VouchAttestation
import VouchBroker
import VouchCore
import VouchCrypto
import VouchHTTPServer
import VouchModel
import VouchPolicy
import VouchPostgres
import VouchRuntime
import VouchStore
import VouchPolicyFiles

let usage = """
usage: vouchd --data-dir DIR --policy FILE --ek-roots DIR [options]
       vouchd --config FILE [options]
       vouchd -h | --help | --version
Every option can also come from the configuration file (YAML or JSON; keys are the option names
below, lists for comma-separated values, true/false for switches) or from the environment
(VOUCHD_ + the name in upper case with '_' for '-', e.g. VOUCHD_DATA_DIR). Command-line options
win over the environment, which wins over the file. docs/operations.md has an example.
  --config FILE         the configuration file
  --check-config        validate the settings (and policy files), print them, and exit
  --log-format FMT      text (default) or json: one JSON object per line (ts, level, msg)
  --database sqlite|URL the store: sqlite (default: DATA-DIR/vouch.db) or a PostgreSQL URL
                        (postgres://user@host1,host2/db?target_session_attrs=read-write) shared by
                        several vouchd replicas, which then share DATA-DIR's keys (docs/operations.md)
  --data-dir DIR        state: SQLite store (vouch.db), admin.token, ca/ (the agents' issuing CA) and
                        broker-ca/ (the broker's own CA: clients trust broker-ca/ca.pem for the
                        broker and its signed results), created on first start
  --policy PATH[,PATH]  trust policies: files, or directories of *.yaml/*.yml/*.json (docs/policy.md);
                        reloaded on SIGHUP and when a file changes; a set that fails validation
                        never replaces the running one
  --ek-roots DIR        TPM manufacturer CA certificates (PEM) that EK certificates must chain to
  --listen ADDR         IPv4 address to serve on (default 127.0.0.1)
  --port N              HTTPS port (default 8443)
  --ca-dir DIR          issuing CA: ca.pem, ca.key, optional chain.pem (intermediate under an offline
                        root); DIR/next is published before it issues; default DATA-DIR/ca
  --trust-domain NAME   SPIFFE trust domain (default vouch.local)
  --public-url URL      URL relying parties reach this broker at (default https://ADDR:PORT)
  --publish-listen ADDR:PORT|off  also serve CRLs and OCSP, and nothing else, over plain HTTP here
                        (they are signed; RFC 5280 fetchers such as NSS speak only http); issued
                        certificates name it in their CRL and OCSP URLs (default LISTEN:PORT+1)
  --publish-url URL     URL relying parties reach the publication listener at (default
                        http://PUBLIC-URL-HOST:PORT+1, or http://ADDR:PORT when publish-listen is given)
  --crl-url URL         base of the CRL distribution point in certificates (URL/<CA key id>; default
                        PUBLISH-URL/v1/crl, or PUBLIC-URL/v1/crl without a publication listener)
  --ocsp-url URL        the OCSP responder in certificates (default PUBLISH-URL/v1/ocsp, or PUBLIC-URL/v1/ocsp)
  --challenge-ttl DUR   lifetime of an enrollment nonce (default 60s)
  --crl-validity DUR    CRL nextUpdate - thisUpdate (default 5m)
  --connection-timeout DUR  close connections that send nothing for this long (default 30s)
  --request-deadline DUR    close connections that have not sent a whole request (TLS handshake,
                        headers, body) this long after connecting or after their previous response,
                        however slowly the bytes trickle; never cuts a response (default 10s)
  --host-connection-timeout DUR  the two limits above for a connection once a push report or
                        hint on it was authenticated by the host's current host certificate: a
                        push-mode host keeps its connection from one report to the next, with TCP
                        keepalive (default 20m, or the longer of the two above; at least both, at most 24h)
  --max-connections N   connections the HTTPS API holds open at once, kept-alive ones included
                        (default 16384); the open-file limit is raised to its hard limit at start,
                        with a warning when that is too low for this many
  --max-connections-per-address N  connections open at once from one client IP address (default 64);
                        more from that address are refused at accept
  --http-threads N      the HTTPS API's threads serving requests (default four times the cores, at least 16);
                        each open event stream has a thread of its own besides
  --http-threading pool|per-connection  pool (default): those threads serve every connection (an
                        idle kept-alive one costs no thread); per-connection: a thread for each open
                        connection, the former model
  --event-streams-per-address N    event streams (/v1/events) open at once from one client IP
                        address (default 4; 256 in all); more get 429 too_many_streams
  --auth-failures-per-address N    failed bearer-token attempts from one client IP address per
                        minute before its further failures get 429 too_many_attempts (default 10)
  --webhook URL[,URL]   push events (revocations, issuance, refusals, host blocks) to these URLs,
                        signed with HMAC-SHA256, retried with backoff from a durable outbox
  --webhook-secret-file FILE  the HMAC key (default DATA-DIR/webhook.secret, created mode 0600)
  --log-witness VKEY[,VKEY]  witnesses whose cosignatures on the transparency log's checkpoints
                        POST /v1/log/cosignatures accepts (C2SP cosignature/v1 verifier keys)
  --reattest-concurrency N    pull rounds in flight at once (default 32)
  --pull-connections N  attesters whose TLS connection is kept open between pull rounds (default
                        10000; 0: a fresh connection and handshake every round)
  --pull-timeout DUR    limit on one pull (connect, quote, answer) before it counts as a fault (default 10s;
                        whole seconds, shorter than --challenge-ttl)
  --tdx-collateral DIR  TDX collateral (TCB info, QE identity, CRLs) by FMSPC: <fmspc>.json (dcap-qvl
                        QuoteCollateralV3) or <fmspc>/ (the files a PCS client saves); re-read when a
                        file changes. Without it a TDX quote's TCB is Unknown (refused by default)
  --fetch-collateral intel,amd  fetch what evidence did not bring, on demand, from Intel PCS (TDX TCB
                        info, QE identity, PCK and root CA CRLs) and/or AMD KDS (VCEKs for reports sent
                        without one; the CRL each SEV-SNP report, not an Azure CVM's, is then checked
                        against: none current, refused); rate-limited, cached; off by default. Not
                        with --tdx-collateral
  --collateral-cache DIR      the fetchers' cache (default DATA-DIR/collateral; DIR/tdx is a
                        --tdx-collateral directory another vouchd may read)
  --intel-pcs-url URL   default https://api.trustedservices.intel.com
  --intel-root-ca-crl-url URL default https://certificates.trustedservices.intel.com/IntelSGXRootCA.der
  --amd-kds-url URL     default https://kdsintf.amd.com (https; plain http only to a loopback address)
  --nvidia-rims DIR     NVIDIA driver and VBIOS RIMs (SWID tag files) that GPUs' measurements are
                        compared with, verified once at start under NVIDIA's pinned CoRIM root (and
                        the software GPU's RIM root for simulated GPUs); without it every GPU
                        measurement is "missing" (a policy requiring reference values refuses)
  --nvidia-ocsp DIR     OCSP answers (DER files) for GPU device chains, read once at start; each answer
                        verified against its issuer when used. A revoked certificate always refuses; a
                        missing answer refuses only under a policy's devices.gpus.revocation: required
  --allow-simulated-hosts     accept hosts from vouch-attester --simulate (software AKs: scale tests only)
  --simulated-tee-roots DIR   with --allow-simulated-hosts only: also trust the software TEE's roots in
                        DIR (sev-snp.pem, tdx.pem, and the software GPU board's nvidia-gpu.pem and
                        nvidia-rim.pem, as vouch-attester simulated-tee-platform writes them) for
                        vouch-attester --simulate-tee guests and their --simulate-gpus; AMD's, Intel's
                        and NVIDIA's pinned roots are always the only ones for real hardware
"""

/// One line on stderr, then exit: 2 for a refused configuration (nothing was created), 1 for a
/// failure once the broker started creating its state.
func fail(_ message: String, code: Int32 = 2) -> Never {
    let line = message.split(whereSeparator: \.isNewline).joined(separator: "; ")
    FileHandle.standardError.write(Data("vouchd: \(line)\(code == 2 ? " (vouchd --help)" : "")\n".utf8))
    exit(code)
}

/// An error's sentence, without the code (those are for the API and the logs).
func describe(_ error: Error) -> String { (error as? VouchError)?.message ?? "\(error)" }

let words = Array(CommandLine.arguments.dropFirst())
if Arguments.asksForHelp(words) { print(usage); exit(0) }
if Arguments.asksForVersion(words) { print("vouchd \(VouchVersion.current)"); exit(0) }

let options: Set<String> = Set(["config", "data-dir", "database", "policy", "ek-roots", "listen", "port", "ca-dir", "trust-domain", "public-url", "challenge-ttl",
                             "publish-listen", "publish-url", "crl-url", "ocsp-url",
                             "crl-validity", "webhook", "webhook-secret-file", "log-witness", "connection-timeout", "request-deadline", "host-connection-timeout",
                             "max-connections", "http-threads", "http-threading",
                             "max-connections-per-address", "event-streams-per-address", "auth-failures-per-address", "reattest-concurrency", "pull-timeout", "pull-connections", "log-format",
                             "tdx-collateral", "simulated-tee-roots", "nvidia-rims", "nvidia-ocsp"]).union(CollateralFetching.options)
let switches: Set<String> = ["allow-simulated-hosts"]
let args: Settings
let brokerOptions: BrokerOptions
do {
    let argv = try Arguments(words, options: options, flags: switches.union(["check-config"]))
    args = try Settings(options: options, flags: switches, arguments: argv, environment: ProcessInfo.processInfo.environment)
    switch args["log-format"] ?? "text" {
    case "text": break
    case "json": Runtime.setLogFormat(.json)
    default: fail("\(args.source("log-format")): log-format must be text or json")
    }
    brokerOptions = try BrokerOptions(args)
    if argv.has("check-config") {
        // Every check a start makes before it creates anything: options, policy files, EK roots.
        _ = try PolicyFiles.loadSet(brokerOptions.policyPaths)
        _ = try EKTrustStore(directory: URL(fileURLWithPath: brokerOptions.ekRoots))
        for k in args.values.keys.sorted() { print("\(k): \(args.values[k]!)  (\(args.source(k)))") }
        for f in args.flags.sorted() { print("\(f): true  (\(args.source(f)))") }
        print("configuration valid")
        exit(0)
    }
} catch {
    fail(describe(error))
}

var creating = false
do {
    let clock = SystemClock()
    let (dataDir, listen, port, trustDomain) = (brokerOptions.dataDir, brokerOptions.listen, brokerOptions.port, brokerOptions.trustDomain)
    let (publication, policyPaths, ekRoots) = (brokerOptions.publication, brokerOptions.policyPaths, brokerOptions.ekRoots)
    var config = brokerOptions.config
    if config.allowSimulatedHosts { Runtime.log("WARNING: simulated hosts allowed (software AKs, no TPM): for scale tests only") }
    if let dir = args["simulated-tee-roots"] {
        Runtime.log("WARNING: the software TEE's roots in \(dir) are trusted: simulated confidential VMs are accepted (tests and demos only)")
    }
    if let dir = args["tdx-collateral"] { Runtime.log("TDX collateral from \(dir)") }
    if let fetching = brokerOptions.collateral { Runtime.log(fetching.summary) }

    // Everything above only reads: a refused configuration creates nothing (exit 2).
    let policies = try PolicyProvider(clock: clock, log: Runtime.log) { try PolicyFiles.loadSet(policyPaths) }
    let ekTrust = try EKTrustStore(directory: URL(fileURLWithPath: ekRoots))
    creating = true
    try Files.makeDirectory(dataDir)

    let (authorities, created) = try BrokerBootstrap.loadCASet(directory: args["ca-dir"] ?? dataDir + "/ca", commonName: "Vouch CA \(trustDomain)", clock: clock)
    let ca = authorities.current
    if created { Runtime.log("created issuing CA \(ca.signer.caCertificate.subject)") }
    if let next = authorities.next { Runtime.log("next CA staged (published in the bundle, not issuing): \(next.signer.caCertificate.subject)") }
    let token = try BrokerBootstrap.loadOrCreateAdminToken(path: dataDir + "/admin.token")
    if token.created { Runtime.log("created admin token in \(dataDir)/admin.token (mode 0600)") }
    let (brokerCA, brokerCACreated) = try BrokerBootstrap.loadOrCreateBrokerCA(directory: dataDir + "/broker-ca", trustDomain: trustDomain, clock: clock)
    if brokerCACreated { Runtime.log("created broker CA \(brokerCA.certificate.subject) in \(dataDir)/broker-ca: clients trust broker-ca/ca.pem for this broker") }
    let tls = try BrokerBootstrap.serverTLS(brokerCA: brokerCA, dnsNames: ["localhost"], ipAddresses: Array(Set(["127.0.0.1", listen])).sorted(), clock: clock)

    // The store. On PostgreSQL this broker is one of several replicas: they share DATA-DIR's keys
    // (copied to each) and replica.key, from which challenges and registration tickets are keyed,
    // so that one replica answers what another issued; singleton jobs go by lease.
    let store: any BrokerStore & LogStore
    var shared: (any SharedStore)?
    if let url = brokerOptions.postgresURL {
        let postgres = try PostgresBrokerStore(url: url, logEntries: BrokerLogEntries())
        Runtime.log("store: PostgreSQL at \(postgres.target) (replica mode)")
        store = postgres
        shared = postgres
        config.replicaSecret = try BrokerBootstrap.loadOrCreateSecret(path: dataDir + "/replica.key")
    } else {
        store = try SQLiteBrokerStore(path: dataDir + "/vouch.db", logEntries: BrokerLogEntries())
    }
    config.crlWatermarkFile = dataDir + "/crl-numbers"
    let replica = LeaseGate.holderName()
    // Leases: the sequencer's 5 s (a round takes well under a second); webhooks' 30 s, three times
    // a delivery's 10 s timeout, so a lease renewed before each subscriber's turn never lapses
    // during a POST.
    let gate = { (job: LeaseJob) in
        shared.map { LeaseGate(shared: $0, job: job, holder: replica, ttl: job == .webhooks ? 30 : 5, clock: clock, log: Runtime.log) }
    }
    let logGate = gate(.logSequencer)
    // The transparency log: its own key, its last published checkpoint kept in a file beside the
    // database (a restored old database then cannot fork the log), a sequencer round twice a second.
    let logKeyExisted = Files.exists(dataDir + "/log.key")
    let logSigner = try BrokerBootstrap.logSigner(path: dataDir + "/log.key", trustDomain: trustDomain)
    let witnesses = try (args["log-witness"] ?? "").split(separator: ",").map { try NoteVerifierKey(vkey: String($0)) }
    let transparencyLog = try TransparencyLog(signer: logSigner, store: store, clock: clock, checkpointFile: dataDir + "/log-checkpoint",
                                              witnesses: witnesses, keyExisted: logKeyExisted, gate: logGate)
    // One round before anything is served: the database is checked against the last checkpoint
    // (log_behind then answers at once), and a new log publishes its empty tree (the file exists).
    do { try transparencyLog.step() } catch { Runtime.log("transparency log: \((error as? VouchError)?.message ?? "\(error)")") }
    let sequencer = LogSequencerLoop(log: transparencyLog, every: 0.5, report: Runtime.log)
    sequencer.start()
    let clientTLS = try BrokerBootstrap.brokerIdentity(brokerCA: brokerCA, spiffeID: config.brokerSpiffeID, directory: dataDir + "/tls", clock: clock)
    let resultSigner = try BrokerBootstrap.resultSigner(brokerCA: brokerCA, spiffeID: config.brokerSpiffeID, directory: dataDir + "/results", clock: clock)
    // A key of its own: none of the CA or result-signing keys (checked; the TLS keys are new at each start).
    let otherKeys = try [brokerCA.certificate.publicKey, try resultSigner.jwk.publicKey()]
        + (authorities.bundle + authorities.signing.map(\.signer.caCertificate)).map { try $0.publicKey }
    let jwtSVIDSigner = try BrokerBootstrap.jwtSVIDSigner(directory: dataDir + "/results", distinctFrom: otherKeys)
    if let shared {
        // Every replica must hold the same keys: refused here if this data directory is not a copy.
        var facts = ["broker-ca": Hex.encode(Crypto.sha256(try brokerCA.certificate.der)), "log-key": logSigner.verifierKey.vkey,
                     "replica-key": Hex.encode(Crypto.hmac(.sha256, key: config.replicaSecret ?? [], Array("vouch replica identity v1".utf8)))]
        facts["issuing-ca"] = authorities.current.keyID
        try shared.agreeOnIdentity(facts)
    }
    let service = BrokerService(config: config, policies: policies, store: store, authorities: authorities, ekTrust: ekTrust,
                                resultSigner: resultSigner, jwtSVIDSigner: jwtSVIDSigner, clock: clock, tee: brokerOptions.tee, log: Runtime.log)
    var dispatcher: WebhookDispatcher?
    if !config.webhookURLs.isEmpty {
        let secret = try BrokerBootstrap.loadOrCreateSecret(path: args["webhook-secret-file"] ?? dataDir + "/webhook.secret")
        dispatcher = try WebhookDispatcher(subscribers: config.webhookURLs.map { .init(url: $0, secret: secret) }, store: store,
                                           transport: CurlWebhooks(), notifier: service.events, clock: clock, gate: gate(.webhooks), log: Runtime.log)
        dispatcher?.start()
        Runtime.log("pushing events to \(config.webhookURLs.joined(separator: ", "))")
    }
    let follower = shared.map { ReplicaFollower(shared: $0, service: service, log: Runtime.log) }
    follower?.start()
    let sighup = policies.reloadOnSIGHUP()
    let watcher = policies.watch(every: 2) { PolicyFiles.fingerprint(policyPaths) }
    do {
        _ = try service.revocation.currentCRL()
    } catch let e as VouchError where e.code == .crlBehind {
        // Served degraded, as a log behind its checkpoint is: CRL requests answer 503 crl_behind.
        Runtime.log("WARNING: \(e.message) (\(e.context["issuer"] ?? ""): published \(e.context["published"] ?? "?"), database \(e.context["got"] ?? "?")): no CRL is signed until it catches up")
    }
    let bundle = try service.revocation.bundlePEM()
    let pullTLS = try TLSClientMaterial(trustPEM: bundle, certificateChainPEM: clientTLS.certificatePEM, keyPEM: clientTLS.keyPEM)
    let pullSource = CurlEvidenceSource(material: pullTLS, timeoutSeconds: BrokerOptions.pullSeconds(brokerOptions.pullTimeout),
                                        connections: brokerOptions.pullConnections)
    let reattestor = Reattestor(service: service, source: pullSource, concurrency: brokerOptions.concurrency, shared: shared, holder: replica, log: Runtime.log)
    reattestor.start()
    // A CA rotation changes the bundle attesters' certificates are verified with: new pull TLS
    // material, and the kept connections verified under the old bundle are dropped with their pool.
    let pullTrustWatch = PullTrustWatch(source: pullSource, bundle: bundle, every: 5, bundlePEM: { try service.revocation.bundlePEM() }) {
        try TLSClientMaterial(trustPEM: $0, certificateChainPEM: clientTLS.certificatePEM, keyPEM: clientTLS.keyPEM)
    }
    pullTrustWatch.start()
    let api = BrokerAPI(service: service, adminTokenDigests: [token.digest], resultSigner: resultSigner,
                        transparency: LogAPI(log: transparencyLog, trustDomain: trustDomain, brokerCAPEM: try brokerCA.certificate.pem),
                        throttle: AuthThrottle(maxFailures: brokerOptions.authFailures), reattestor: reattestor, log: Runtime.log)
    let limits = HTTPServer.Limits(idleTimeout: brokerOptions.idle, requestDeadline: brokerOptions.requestDeadline, perAddress: brokerOptions.perAddress, total: 1024)
    // The HTTPS API holds a fleet's kept-alive connections: one descriptor each.
    var apiLimits = limits
    apiLimits.total = brokerOptions.maxConnections
    // Hosts authenticated by their current host certificate keep their connection between
    // requests minutes apart (push reports every interval, hints); everyone else is held to
    // --connection-timeout and --request-deadline.
    apiLimits.authenticatedIdleTimeout = brokerOptions.hostIdle
    // Kept-alive pull connections (one per attester, up to --pull-connections) hold descriptors too.
    FileLimit.raise(forConnections: apiLimits.total + (publication.listen == nil ? 0 : limits.total) + brokerOptions.pullConnections)
    // The publication listener: CRLs and OCSP alone, over plain HTTP, on a thread pool (their
    // handlers never block long). Up before the HTTPS listener: a broker answering there publishes.
    let publisher = try publication.listen.map { l in
        try HTTPServer(listen: .http(host: l.host, port: l.port), threading: .pool(4), maxBodyBytes: 64 << 10, limits: limits,
                       handler: PublicationAPI(service: service, log: Runtime.log).httpHandler)
    }
    let server = try HTTPServer(listen: .tls(host: listen, port: port, certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM),
                                threading: brokerOptions.perConnectionThreads ? .perConnection : .poolWithStreamThreads(brokerOptions.httpThreads),
                                limits: apiLimits,
                                clientTrustPEM: bundle, handler: api.httpHandler)
    if let l = publication.listen { Runtime.log("publishing CRLs and OCSP on http://\(l.host):\(l.port)") }
    Runtime.log("certificates name CRLs at \(publication.crlURL)/<CA key id> and OCSP at \(publication.ocspURL)")
    Runtime.log("vouchd listening on https://\(listen):\(port) (\(brokerOptions.perConnectionThreads ? "a thread per connection" : "\(brokerOptions.httpThreads) threads, a thread per event stream"), "
                + "at most \(apiLimits.total) connections; trust domain \(trustDomain), policies \(policies.current.policies.map(\.label).joined(separator: ", ")), \(ekTrust.anchors.count) EK root(s))")
    Runtime.waitForTermination()
    // Graceful shutdown: /readyz answers 503 and event streams end; no new re-attestation rounds
    // start and those in flight finish; the server stops accepting and drains its requests; then
    // the webhook outbox stops (undelivered events stay in the store).
    Runtime.log("shutting down: draining")
    service.shutdown()
    sighup.cancel()
    watcher.cancel()
    reattestor.stop()
    pullTrustWatch.stop()
    server.stop()
    sequencer.stop()
    logGate?.release()
    follower?.stop()
    publisher?.stop()
    dispatcher?.stop()
    Runtime.log("vouchd stopped")
} catch {
    fail(describe(error), code: creating ? 1 : 2)
}
