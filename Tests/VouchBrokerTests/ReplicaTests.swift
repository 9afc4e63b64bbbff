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

    /// Records an issued certificate `serial` (valid for an hour, by the test CA) for `agent` on `host`.
    func issue(_ serial: String, agent: String, host: String, store: BrokerStore) throws {
        _ = try store.recordIssuance(attestation: AttestationRecord(hostID: host, at: clock.now(), kind: .enrollment, trusted: true, codes: [], message: "ok",
                                                                   agentName: agent),
                                     certificate: CertificateRecord(serial: serial, hostID: host, agentName: agent, spiffeID: "spiffe://test.local/\(agent)",
                                                                    notBefore: clock.now(), notAfter: clock.now().addingTimeInterval(3600), pem: "",
                                                                    attestationID: 0, issuer: IssuingCA(signer: ca).keyID))
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
            try issue(serial, agent: "agent\(n)", host: hostID, store: a.store)
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
}
