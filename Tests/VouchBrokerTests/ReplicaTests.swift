import Foundation
import Synchronization
import VouchAPI
import VouchAttestation
@testable import VouchBroker
import VouchCore
import VouchCrypto
import VouchModel
import VouchPolicy
import VouchPostgres
import VouchTestSupport
import VouchTLog
import XCTest

/// Answers every pull with a good quote from the host's software TPM, and notes when each host was pulled.
final class CountingSource: EvidenceSource {
    private let state = Mutex<(tpms: [String: SoftwareTPM], pulls: [String: [Date]])>(([:], [:]))
    let clock: ManualClock
    init(clock: ManualClock) { self.clock = clock }

    func attach(_ tpm: SoftwareTPM, url: String) { state.withLock { $0.tpms[url] = tpm } }
    var pulls: [String: [Date]] { state.withLock { $0.pulls } }

    func quote(attesterURL: String, pin: String, request: QuoteRequest) throws -> QuoteBody {
        let now = clock.now()
        let tpm = state.withLock { s -> SoftwareTPM? in
            s.pulls[attesterURL, default: []].append(now)
            return s.tpms[attesterURL]
        }
        guard let tpm else { throw VouchError(.attesterUnreachable, "no such attester") }
        return try tpm.quote(request, at: now, drifted: false)
    }

    func evidence(attesterURL: String, pin: String, request: QuoteRequest) throws -> AttestationReport {
        throw VouchError(.attesterUnreachable, "no TEE attesters here")
    }
}

/// A replica's own connection to the shared store, with one interleaving point: `afterNextLatestCheckpoint`
/// runs once, right after the next `latestCheckpoint` read returns, so a test can make another
/// replica commit between two reads of this one. Every call goes to the real store.
final class InterleavedLogStore: LogStore {
    let base: any LogStore
    private let hook = Mutex<(@Sendable () -> Void)?>(nil)
    init(_ base: any LogStore) { self.base = base }

    func afterNextLatestCheckpoint(_ body: @escaping @Sendable () -> Void) { hook.withLock { $0 = body } }

    func latestCheckpoint() throws -> PublishedCheckpoint? {
        let c = try base.latestCheckpoint()
        hook.withLock { h in defer { h = nil }; return h }?()
        return c
    }
    func enqueueLogEntry(_ entry: LogOutboxEntry) throws -> Int64 { try base.enqueueLogEntry(entry) }
    func pendingLogEntries(limit: Int) throws -> [PendingLogEntry] { try base.pendingLogEntries(limit: limit) }
    func logSize() throws -> UInt64 { try base.logSize() }
    func appendLog(size: UInt64, entries: [PendingLogEntry], hashes: [LogNodeHash]) throws { try base.appendLog(size: size, entries: entries, hashes: hashes) }
    func logHashes(_ nodes: [(level: Int, index: UInt64)]) throws -> [[UInt8]?] { try base.logHashes(nodes) }
    func logHashRange(level: Int, from index: UInt64, count: Int) throws -> [[UInt8]] { try base.logHashRange(level: level, from: index, count: count) }
    func logEntries(from index: UInt64, count: Int) throws -> [[UInt8]] { try base.logEntries(from: index, count: count) }
    func logIndex(certificate: String) throws -> UInt64? { try base.logIndex(certificate: certificate) }
    func logIndex(outboxID: Int64) throws -> UInt64? { try base.logIndex(outboxID: outboxID) }
    func pendingLogEntry(key: String) throws -> Int64? { try base.pendingLogEntry(key: key) }
    func checkpoint(size: UInt64) throws -> PublishedCheckpoint? { try base.checkpoint(size: size) }
    func publishCheckpoint(_ checkpoint: PublishedCheckpoint) throws { try base.publishCheckpoint(checkpoint) }
    func addCosignature(size: UInt64, line: String) throws { try base.addCosignature(size: size, line: line) }
}

/// Several brokers on one PostgreSQL store, in this process: each due host is re-attested by one
/// replica once per interval, and a dead replica's hosts are taken over within an interval; a
/// revocation committed by one replica reaches the others' CRL and OCSP answers, with or without
/// the notification connection; a singleton job has one writer, fenced.
final class ReplicaTests: XCTestCase {
    let clock = ManualClock()
    var url: String!
    var ca: CertificateAuthority!

    override func setUpWithError() throws {
        url = try PostgresServer.shared.get().createDatabase("replicas_\(UInt64.random(in: 0...UInt64.max))")
        let now = clock.now()
        ca = try CertificateAuthority.create(commonName: "Vouch CA test.local", key: try PrivateKey.generate(.p256),
                                             notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(10 * 365 * 86400))
    }

    /// One replica: a broker service over its own connection to the shared database.
    struct Replica {
        let store: PostgresBrokerStore
        let service: BrokerService
        let reattestor: Reattestor
    }

    func replica(_ holder: String, source: EvidenceSource, interval: TimeInterval = 10) throws -> Replica {
        let store = try PostgresBrokerStore(url: url)
        let policy = Broker.policy(interval: interval)
        let service = BrokerService(config: BrokerConfig(trustDomain: "test.local"), policies: PolicyProvider(fixed: try PolicySet([policy]), clock: clock),
                                    store: store, authorities: CASet(current: IssuingCA(signer: ca)), ekTrust: EKTrustStore(anchors: [], intermediates: []),
                                    resultSigner: try JWSSigner(key: try PrivateKey.generate(.p256), chain: [ca.certificate]),
                                    jwtSVIDSigner: try JWSSigner(key: try PrivateKey.generate(.p256), use: "jwt-svid"), clock: clock)
        let reattestor = Reattestor(service: service, source: source, spread: { 0.5 }, shared: store, holder: holder, log: { XCTFail("[\(holder)] \($0)") })
        return Replica(store: store, service: service, reattestor: reattestor)
    }

    /// Seeds `count` activated pull hosts with software TPMs behind `source`; returns their attester URLs.
    func seedHosts(_ count: Int, store: BrokerStore, source: CountingSource) throws -> [String] {
        try (0..<count).map { i in
            let id = String(format: "%032x", i + 1), tpm = try SoftwareTPM(), now = clock.now()
            let host = HostRecord(id: id, hostname: id, ekPublic: [1], ekCertificate: [2], ekIssuer: "test EK CA", akPublic: tpm.akPublic, akName: tpm.akName,
                                  akAlgorithm: "ecc-p256", akState: .active, activationDigest: nil, activationExpiresAt: nil, activationFailures: 0,
                                  registeredAt: now, updatedAt: now)
            let url = "https://h\(i).test:8444"
            try store.activateHost(host, trust: HostTrust(hostID: id, since: now, mode: .pull, attesterURL: url, hostCertificateSerial: "01", hostKeyPin: "sha256//pin"),
                                   record: AttestationRecord(hostID: id, at: now, kind: .activation, trusted: true, codes: [], message: "activated"))
            source.attach(tpm, url: url)
            return url
        }
    }

    /// Ticks each replica, in an order that turns, every `step` seconds of the test's clock until `until`, running
    /// the rounds each claimed — but for `dead` replicas, which claim rounds and never run them (a
    /// replica that died holding its claims). Returns the dead replicas' claims: host and time.
    @discardableResult
    func run(_ replicas: [Replica], until end: Date, step: TimeInterval = 0.5, dead: Set<Int> = []) -> [(hostID: String, at: Date)] {
        var abandoned: [(hostID: String, at: Date)] = []
        var first = 0
        while clock.now() < end {
            clock.advance(by: step)
            first += 1   // who ticks first changes every step, so that every replica wins some claims
            for i in replicas.indices.map({ ($0 + first) % replicas.count }) {
                let r = replicas[i]
                let rounds = r.reattestor.tick(now: clock.now())
                if dead.contains(i) {
                    abandoned += rounds.map { ($0.hostID, clock.now()) }
                } else {
                    for round in rounds { XCTAssertEqual(r.reattestor.run(round), .verdict(trusted: true)) }
                }
            }
        }
        return abandoned
    }

    func testEachDueHostIsPulledOncePerIntervalAcrossReplicas() throws {
        let source = CountingSource(clock: clock)
        let replicas = [try replica("a", source: source), try replica("b", source: source), try replica("c", source: source)]
        let urls = try seedHosts(12, store: replicas[0].store, source: source)
        let start = clock.now()
        run(replicas, until: start.addingTimeInterval(62))
        let pulls = source.pulls
        for url in urls {
            let times = try XCTUnwrap(pulls[url], "\(url) was never pulled")
            XCTAssertGreaterThanOrEqual(times.count, 6, url)
            for (a, b) in zip(times, times.dropFirst()) {
                XCTAssertGreaterThanOrEqual(b.timeIntervalSince(a), 9, "\(url) pulled twice within an interval")
                XCTAssertLessThanOrEqual(b.timeIntervalSince(a), 10.5, "\(url) missed its interval")
            }
        }
    }

    /// A hint to one replica: that replica claims the round at once (`claimRoundNow`) and pulls;
    /// the other does not pull it too, and no replica pulls the host again before its interval.
    func testAHintedRoundIsPulledByOneReplicaOnce() throws {
        let source = CountingSource(clock: clock)
        let replicas = [try replica("a", source: source, interval: 60), try replica("b", source: source, interval: 60)]
        let urls = try seedHosts(4, store: replicas[0].store, source: source)
        let start = clock.now()
        run(replicas, until: start.addingTimeInterval(5))
        XCTAssertEqual(urls.map { source.pulls[$0]?.count }, [1, 1, 1, 1], "each host's first round, once")
        let hinted = String(format: "%032x", 1)
        XCTAssertEqual(try replicas[1].reattestor.hint(hostID: hinted, now: clock.now()), .scheduled(clock.now()))
        run(replicas, until: clock.now().addingTimeInterval(20))
        let pulls = source.pulls
        XCTAssertEqual(pulls[urls[0]]?.count, 2, "the hinted round, pulled by one replica")
        XCTAssertEqual(urls.dropFirst().map { pulls[$0]?.count }, [1, 1, 1], "no other host pulled")
    }

    func testADeadReplicasHostsAreTakenOverWithinAnInterval() throws {
        let source = CountingSource(clock: clock)
        let replicas = [try replica("a", source: source), try replica("b", source: source)]
        let urls = try seedHosts(8, store: replicas[0].store, source: source)
        let start = clock.now()
        run(replicas, until: start.addingTimeInterval(25))
        // For two intervals b claims what is due to it and never runs it (it died holding its
        // claims); then a goes on alone.
        let death = clock.now()
        let abandoned = run(replicas, until: death.addingTimeInterval(20), dead: [1])
        run([replicas[0]], until: death.addingTimeInterval(40))
        XCTAssertFalse(abandoned.isEmpty, "the dead replica had claimed rounds")
        let pulls = source.pulls
        for (hostID, claimedAt) in abandoned {
            let url = urls[Int(hostID, radix: 16)! - 1]
            let next = try XCTUnwrap(pulls[url]?.first { $0 > claimedAt }, "\(hostID) was not taken over")
            XCTAssertLessThanOrEqual(next.timeIntervalSince(claimedAt), 10.5, "\(hostID) waited more than an interval after its claim")
        }
        for url in urls {
            let times = try XCTUnwrap(pulls[url])
            for (a, b) in zip(times, times.dropFirst()) { XCTAssertGreaterThanOrEqual(b.timeIntervalSince(a), 9, "\(url) pulled twice within an interval") }
        }
    }

    /// A revocation committed on one replica is in another's CRL and OCSP answers once its follower
    /// has seen the store move — also after the follower's LISTEN connection was cut.
    func testARevocationReachesTheOtherReplicasCaches() throws {
        let source = CountingSource(clock: clock)
        let a = try replica("a", source: source), b = try replica("b", source: source)
        let follower = ReplicaFollower(shared: b.store, service: b.service, every: 0.25)
        follower.start()
        defer { follower.stop() }
        _ = try seedHosts(1, store: a.store, source: source)
        let hostID = String(format: "%032x", 1)
        var serials: [String] = []
        for n in 0..<2 {
            let serial = String(format: "%02x", 0x40 + n)
            serials.append(serial)
            _ = try a.store.recordIssuance(attestation: AttestationRecord(hostID: hostID, at: clock.now(), kind: .enrollment, trusted: true, codes: [], message: "ok",
                                                                         agentName: "agent\(n)"),
                                           certificate: CertificateRecord(serial: serial, hostID: hostID, agentName: "agent\(n)", spiffeID: "spiffe://test.local/a\(n)",
                                                                          notBefore: clock.now(), notAfter: clock.now().addingTimeInterval(3600), pem: "",
                                                                          attestationID: 0, issuer: IssuingCA(signer: ca).keyID))
        }
        let before = try b.service.revocation.currentCRL()   // cached at b
        for (n, serial) in serials.enumerated() {
            if n == 1 {
                try PostgresServer.shared.get().psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vouchd-listen'",
                                                     database: String(url.split(separator: "/").last!))
            }
            let revoked = try a.service.revocation.revoke(RevokeRequest(serial: serial, reason: "keyCompromise"))
            XCTAssertEqual(revoked.revoked, [serial])
            let deadline = Date().addingTimeInterval(3)
            var crl = try b.service.revocation.currentCRL()
            while crl.number <= before.number + UInt64(n), Date() < deadline {
                usleep(20_000)
                crl = try b.service.revocation.currentCRL()
            }
            XCTAssertEqual(crl.number, before.number + UInt64(n) + 1, "replica b serves the CRL replica a committed")
            let listed = try CRL(der: crl.der).revokedSerials
            XCTAssertTrue(listed.contains(serial), "the CRL at b lists \(serial)")
        }
    }

    /// Two replicas' transparency logs on one store: only the sequencer lease's holder appends and
    /// signs; the other keeps its checkpoint file up with what was published (verified), takes the
    /// job over once the lease lapses, and goes on from there — one history, no fork.
    func testOneReplicaSequencesTheOtherFollowsAndTakesOver() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-replica-log-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let signer = try BrokerBootstrap.logSigner(path: dir.appendingPathComponent("log.key").path, trustDomain: "test.local")
        func log(_ holder: String) throws -> (PostgresBrokerStore, TransparencyLog) {
            let store = try PostgresBrokerStore(url: url, logEntries: BrokerLogEntries())
            let gate = LeaseGate(shared: store, job: .logSequencer, holder: holder, ttl: 5, clock: clock, log: { _ in })
            return (store, try TransparencyLog(signer: signer, store: store, clock: clock, checkpointFile: dir.appendingPathComponent("checkpoint-\(holder)").path,
                                               gate: gate))
        }
        let (storeA, a) = try log("a"), (_, b) = try log("b")
        func receipt(_ n: Int) throws {
            let d = { (s: String) in LogEntry.digest(Crypto.sha256(Array(s.utf8))) }
            let e = try LogEntry(kind: .receipt, time: clock.now(), fields: ["spiffe": "spiffe://test.local/agent/x", "serial": "\(n)",
                                                                              "certificate": d("c\(n)"), "statement": d("s\(n)"), "output": d("o\(n)")])
            _ = try storeA.enqueueLogEntry(LogOutboxEntry(entry: e.bytes))
        }
        for n in 0..<3 { try receipt(n) }
        XCTAssertEqual(try a.step()?.size, 3, "a holds the lease: it sequences and signs")
        XCTAssertNil(try b.step(), "b follows")
        XCTAssertEqual(try b.served()?.size, 3)
        let fileB = try String(contentsOf: dir.appendingPathComponent("checkpoint-b"), encoding: .utf8)
        XCTAssertEqual(fileB, try a.served()?.note, "b's checkpoint file is the published checkpoint")
        for n in 3..<5 { try receipt(n) }
        clock.advance(by: 6)   // a's lease lapses (a stopped renewing it: it died)
        XCTAssertEqual(try b.step()?.size, 5, "b took the job over and extends the same log")
        XCTAssertNil(try a.step(), "a, back, follows now")
        XCTAssertEqual(try a.served()?.size, 5)
    }

    /// A broker that published CRL number n signs no CRL from a store holding less (a database
    /// restored from an older copy): `crl_behind`, until a store that caught up is used.
    func testNoCRLIsSignedFromAStoreBehindWhatWasPublished() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-crl-watermark-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var config = BrokerConfig(trustDomain: "test.local")
        config.crlWatermarkFile = dir.appendingPathComponent("crl-numbers").path
        func service(_ store: BrokerStore) throws -> BrokerService {
            BrokerService(config: config, policies: PolicyProvider(fixed: try PolicySet([Broker.policy()]), clock: clock), store: store,
                          authorities: CASet(current: IssuingCA(signer: ca)), ekTrust: EKTrustStore(anchors: [], intermediates: []),
                          resultSigner: try JWSSigner(key: try PrivateKey.generate(.p256), chain: [ca.certificate]),
                          jwtSVIDSigner: try JWSSigner(key: try PrivateKey.generate(.p256), use: "jwt-svid"), clock: clock)
        }
        let current = try PostgresBrokerStore(url: url)
        let source = CountingSource(clock: clock)
        _ = try seedHosts(1, store: current, source: source)
        let issuer = IssuingCA(signer: ca).keyID, hostID = String(format: "%032x", 1)
        let broker = try service(current)
        for serial in ["51", "52"] {
            _ = try current.recordIssuance(attestation: AttestationRecord(hostID: hostID, at: clock.now(), kind: .enrollment, trusted: true, codes: [], message: "ok"),
                                           certificate: CertificateRecord(serial: serial, hostID: hostID, agentName: "a\(serial)", spiffeID: "spiffe://test.local/a",
                                                                          notBefore: clock.now(), notAfter: clock.now().addingTimeInterval(3600), pem: "",
                                                                          attestationID: 0, issuer: issuer))
            _ = try broker.revocation.revoke(RevokeRequest(serial: serial, reason: "keyCompromise"))
        }
        let published = try broker.revocation.currentCRL().number
        XCTAssertEqual(try String(contentsOf: dir.appendingPathComponent("crl-numbers"), encoding: .utf8), "\(issuer) \(published)\n")

        let restored = try PostgresBrokerStore(url: try PostgresServer.shared.get().createDatabase("restored_\(UInt64.random(in: 0...UInt64.max))"))
        XCTAssertThrowsError(try service(restored).revocation.currentCRL()) { XCTAssertEqual(($0 as? VouchError)?.code, .crlBehind) }
        // A restored copy from just before the revocation: its CRL is fresh but older than the one
        // published. Neither it nor an OCSP answer from that store is served.
        let older = try PostgresBrokerStore(url: try PostgresServer.shared.get().createDatabase("older_\(UInt64.random(in: 0...UInt64.max))"))
        _ = try seedHosts(1, store: older, source: source)
        var unwatched = config
        unwatched.crlWatermarkFile = nil
        let stale = try BrokerService(config: unwatched, policies: PolicyProvider(fixed: try PolicySet([Broker.policy()]), clock: clock), store: older,
                                      authorities: CASet(current: IssuingCA(signer: ca)), ekTrust: EKTrustStore(anchors: [], intermediates: []),
                                      resultSigner: try JWSSigner(key: try PrivateKey.generate(.p256), chain: [ca.certificate]),
                                      jwtSVIDSigner: try JWSSigner(key: try PrivateKey.generate(.p256), use: "jwt-svid"), clock: clock).revocation.currentCRL()
        XCTAssertLessThan(stale.number, published)
        XCTAssertThrowsError(try service(older).revocation.currentCRL()) { XCTAssertEqual(($0 as? VouchError)?.code, .crlBehind, "a fresh but older CRL is not served") }
        let leaf = try ca.issue(publicKey: try PrivateKey.generate(.p256).publicKey,
                                profile: LeafProfile(subjectCommonName: "a", notBefore: clock.now(), notAfter: clock.now().addingTimeInterval(60), usage: .tlsServer))
        let request = try OCSPClient.request(certificate: leaf, issuer: ca.certificate)
        XCTAssertThrowsError(try service(older).revocation.ocsp(request: request)) { XCTAssertEqual(($0 as? VouchError)?.code, .crlBehind, "no OCSP answer from a store behind") }
        XCTAssertNoThrow(try service(current).revocation.ocsp(request: request))
        XCTAssertEqual(try service(current).revocation.currentCRL().number, published, "the store that caught up is served")
        try Data("garbage".utf8).write(to: dir.appendingPathComponent("crl-numbers"))
        clock.advance(by: 400)   // the stored CRL is stale: re-signing is needed, and refused
        XCTAssertThrowsError(try service(current).revocation.currentCRL()) { XCTAssertEqual(($0 as? VouchError)?.code, .crlBehind, "an unreadable file fails closed") }
    }

    /// A replica that does not sequence checks the checkpoint it read from the database against
    /// its own file: when the sequencing replica publishes a larger one between the follower's
    /// reads, that is no log_behind (which /readyz and every proof would answer until the next
    /// round), and the next round follows the larger one.
    func testAFollowerIsNotBehindWhenTheSequencerPublishesDuringItsRound() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-replica-log-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let signer = try BrokerBootstrap.logSigner(path: dir.appendingPathComponent("log.key").path, trustDomain: "test.local")
        let a = try PostgresBrokerStore(url: url), b = try PostgresBrokerStore(url: url), clock = clock
        func gate(_ store: PostgresBrokerStore, _ holder: String) -> LeaseGate {
            LeaseGate(shared: store, job: .logSequencer, holder: holder, clock: clock, log: { _ in })
        }
        let sequencer = try TransparencyLog(signer: signer, store: a, clock: clock, checkpointFile: dir.appendingPathComponent("a.checkpoint").path, gate: gate(a, "a"))
        let interleaved = InterleavedLogStore(b)
        let followerFile = dir.appendingPathComponent("b.checkpoint").path
        let follower = try TransparencyLog(signer: signer, store: interleaved, clock: clock, checkpointFile: followerFile, gate: gate(b, "b"))
        @Sendable func enqueue(_ range: Range<Int>) throws {
            for n in range {
                let e = try LogEntry(kind: .receipt, time: clock.now(), fields: ["spiffe": "spiffe://test.local/agent/a", "serial": "\(n)",
                                                                                 "certificate": LogEntry.digest(Crypto.sha256(Array("c\(n)".utf8))),
                                                                                 "statement": LogEntry.digest(Crypto.sha256(Array("s\(n)".utf8))),
                                                                                 "output": LogEntry.digest(Crypto.sha256(Array("o\(n)".utf8)))])
                _ = try a.enqueueLogEntry(LogOutboxEntry(entry: e.bytes))
            }
        }
        XCTAssertEqual(try sequencer.step()?.size, 0, "a takes the job and publishes the empty tree")
        XCTAssertNil(try follower.step(), "b follows")
        try enqueue(0..<3)
        let three = try XCTUnwrap(try sequencer.step())
        XCTAssertEqual(three.size, 3)
        // b reads checkpoint 3; before it checks it, a publishes 5.
        interleaved.afterNextLatestCheckpoint {
            do {
                try enqueue(3..<5)
                XCTAssertEqual(try sequencer.step()?.size, 5)
            } catch { XCTFail("the sequencer's round: \(error)") }
        }
        XCTAssertNoThrow(try follower.step())
        XCTAssertNil(follower.currentProblem, "b is not behind")
        XCTAssertEqual(try String(contentsOfFile: followerFile, encoding: .utf8), three.note, "b's file holds the checkpoint it verified")
        XCTAssertNoThrow(try follower.step())
        XCTAssertEqual(try CheckpointBody(text: try UnverifiedNote(try String(contentsOfFile: followerFile, encoding: .utf8)).verify([signer.verifierKey]).text).size, 5,
                       "the next round follows the larger checkpoint")
        XCTAssertNil(follower.currentProblem)
    }

    /// Records an issued certificate `serial` (valid for an hour, by the test CA) for `agent` on `host`.
    func issue(_ serial: String, agent: String, host: String, store: BrokerStore) throws {
        _ = try store.recordIssuance(attestation: AttestationRecord(hostID: host, at: clock.now(), kind: .enrollment, trusted: true, codes: [], message: "ok",
                                                                   agentName: agent),
                                     certificate: CertificateRecord(serial: serial, hostID: host, agentName: agent, spiffeID: "spiffe://test.local/\(agent)",
                                                                    notBefore: clock.now(), notAfter: clock.now().addingTimeInterval(3600), pem: "",
                                                                    attestationID: 0, issuer: IssuingCA(signer: ca).keyID))
    }

    /// A replica that planned a revocation, then served the CRL another replica published with
    /// the number the plan takes (which raised its CRL watermark to that number), has a stale
    /// plan, not a database behind its watermark: `sign` answers `revocation_plan_stale`, and the
    /// revocation is planned again and committed under the next number (seen in a three-replica
    /// chaos run as `crl_behind` refusals of operator revocations). A store really behind the
    /// watermark is still `crl_behind`.
    func testAPlanMadeStaleByAnotherReplicasCRLIsPlannedAgainNotRefused() throws {
        let source = CountingSource(clock: clock)
        let a = try replica("a", source: source), b = try replica("b", source: source)
        _ = try seedHosts(1, store: a.store, source: source)
        let hostID = String(format: "%032x", 1)
        for n in 0..<2 { try issue(String(format: "%02x", 0x50 + n), agent: "agent\(n)", host: hostID, store: a.store) }
        let before = try a.service.revocation.currentCRL()
        // a's plan, from a snapshot at the current number; then b publishes the next one, and a
        // serves it (its follower dropped its cache).
        let plan = try a.store.revocationPlan(.serial("50"), at: clock.now(), reason: .keyCompromise)
        XCTAssertEqual(plan.issuers.map(\.number), [before.number + 1])
        _ = try b.service.revocation.revoke(RevokeRequest(serial: "51", reason: "keyCompromise"))
        a.service.storeChanged(revocations: true, events: false)
        XCTAssertEqual(try a.service.revocation.currentCRL().number, before.number + 1)
        XCTAssertThrowsError(try a.service.context.revocations.sign(plan.issuers[0])) { error in
            XCTAssertEqual((error as? VouchError)?.code, .revocationPlanStale)
        }
        let revoked = try a.service.revocation.revoke(RevokeRequest(serial: "50", reason: "keyCompromise"))
        XCTAssertEqual(revoked.revoked, ["50"])
        XCTAssertEqual(revoked.crlNumber, before.number + 2)
        b.service.storeChanged(revocations: true, events: false)
        XCTAssertEqual(Set(try CRL(der: try b.service.revocation.currentCRL().der).revokedSerials), ["50", "51"])

        // A watermark above the store (a database restored from an older copy): refused.
        let stored = try XCTUnwrap(try a.store.currentCRL(issuer: plan.issuers[0].issuer))
        a.service.context.revocations.watermark.raise([CRLRecord(issuer: stored.issuer, number: stored.number + 5, der: stored.der,
                                                                 thisUpdate: stored.thisUpdate, nextUpdate: stored.nextUpdate)])
        XCTAssertThrowsError(try a.service.context.revocations.sign(try a.store.revocations(issuer: stored.issuer))) { error in
            XCTAssertEqual((error as? VouchError)?.code, .crlBehind)
        }
    }
    /// A CRL or OCSP answer whose store read came just before another replica's newer CRL was
    /// committed and followed (the follower raising this broker's watermark before the answer
    /// checked it) is an old answer, not a database behind the watermark: never `crl_behind`
    /// (a three-replica chaos run saw one CRL request refused so). Readers race revocations at
    /// the other replica; every read either answers or fails for another reason.
    func testAReadOverlappingAnotherReplicasRevocationIsNeverCRLBehind() throws {
        let source = CountingSource(clock: clock)
        let a = try replica("a", source: source), b = try replica("b", source: source)
        _ = try seedHosts(1, store: a.store, source: source)
        let hostID = String(format: "%032x", 1), revocations = 40
        for n in 0..<revocations { try issue(String(format: "%02x", 0x10 + n), agent: "agent\(n)", host: hostID, store: a.store) }
        let first = try a.service.revocation.currentCRL()
        let issuer = a.service.context.authorities.current.keyID
        let stop = Atomic<Bool>(false), refusals = Mutex<[String]>([]), reads = Atomic<Int>(0)
        let readers = DispatchGroup()
        for _ in 0..<4 {
            DispatchQueue.global().async(group: readers) {
                while !stop.load(ordering: .relaxed) {
                    do {
                        _ = try a.service.revocation.currentCRL()
                        try a.service.context.revocations.checkNotBehind(issuer: issuer)
                        reads.add(1, ordering: .relaxed)
                    } catch {
                        refusals.withLock { $0.append("\((error as? VouchError)?.code.rawValue ?? "\(error)")") }
                    }
                }
            }
        }
        for n in 0..<revocations {
            _ = try b.service.revocation.revoke(RevokeRequest(serial: String(format: "%02x", 0x10 + n), reason: "keyCompromise"))
            a.service.storeChanged(revocations: true, events: false)
        }
        stop.store(true, ordering: .relaxed)
        readers.wait()
        XCTAssertEqual(refusals.withLock { $0 }, [])
        XCTAssertGreaterThan(reads.load(ordering: .relaxed), 0)
        XCTAssertEqual(try a.service.revocation.currentCRL().number, first.number + UInt64(revocations))
    }
}
