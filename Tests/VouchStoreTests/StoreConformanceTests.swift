import Foundation
import XCTest
import VouchAPI
import VouchBrokerTestSupport
import VouchCore
import VouchEventLog
import VouchModel
import VouchPostgres
import VouchStore
import VouchTestSupport

/// The same assertions against `SQLiteBrokerStore`, `PostgresBrokerStore` (a database of its own
/// per test on a PostgreSQL server the tests start) and `InMemoryBrokerStore`, so the three keep
/// one semantics — the in-memory store the in-process service tests use included: version-checked
/// host writes, blocks, deletion, the two halves of a trust record, used nonces, revocation with
/// per-issuer CRL numbers, history filters and the outbox.
final class StoreConformanceTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-conformance-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// Runs `body` once per store, naming the store in failures.
    func forEachStore(_ body: (BrokerStore, String) throws -> Void) throws {
        try body(try SQLiteBrokerStore(path: dir.appendingPathComponent("vouch.db").path), "sqlite")
        let postgres = try PostgresServer.shared.get()
        try body(try PostgresBrokerStore(url: try postgres.createDatabase("conformance_\(UInt64.random(in: 0...UInt64.max))")), "postgres")
        try body(InMemoryBrokerStore(), "memory")
    }

    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let id = String(repeating: "a", count: 32)

    func host() -> HostRecord {
        HostRecord(id: id, hostname: "h", ekPublic: [1], ekCertificate: [2], ekIssuer: "CN=x", akPublic: [3], akName: [4], akAlgorithm: "ecc-p256",
                   akState: .active, activationDigest: nil, activationExpiresAt: nil, activationFailures: 0, registeredAt: t0, updatedAt: t0)
    }

    func record(_ kind: AttestationKind = .activation, trusted: Bool = true, at: Date? = nil, nonce: String? = nil, expires: Date? = nil) -> AttestationRecord {
        AttestationRecord(hostID: id, at: at ?? t0, kind: kind, trusted: trusted, codes: trusted ? [] : ["pcr_mismatch"], message: "m",
                          nonce: nonce, nonceExpiresAt: expires)
    }

    func assertCode(_ code: ErrorCode, _ store: String, _ body: () throws -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try body(), store, line: line) { XCTAssertEqual(($0 as? VouchError)?.code, code, "\(store): \($0)", line: line) }
    }

    func testHostVersionsBlocksAndDeletion() throws {
        try forEachStore { s, name in
            try s.saveHost(host())
            var h = try XCTUnwrap(s.host(id: id))
            XCTAssertEqual(h.version, 1, name)
            assertCode(.conflict, name) { try s.saveHost(self.host()) }   // stale version 0
            h.hostname = "renamed"
            try s.saveHost(h)
            XCTAssertEqual(try s.host(id: id)?.version, 2, name)
            assertCode(.conflict, name) { try s.saveHost(h) }             // still version 1
            try s.setBlock(hostID: id, reason: "stolen")
            let blocked = try XCTUnwrap(s.host(id: id))
            XCTAssertEqual(blocked.version, 3, name)
            var unblocked = blocked
            unblocked.blockedReason = nil
            assertCode(.hostRevoked, name) { try s.saveHost(unblocked) } // a block is never overwritten
            assertCode(.notFound, name) { try s.setBlock(hostID: "none", reason: nil) }
            try s.setBlock(hostID: id, reason: nil)
            try s.deleteHost(id: id)
            XCTAssertNil(try s.host(id: id), name)
            XCTAssertEqual(try s.hosts().count, 0, name)
            try s.saveHost(host())                                          // deleted counts as absent
            XCTAssertEqual(try s.host(id: id)?.version, 5, name)
        }
    }

    func testTrustHalvesAndAttestableHosts() throws {
        try forEachStore { s, name in
            var t = HostTrust(hostID: id, since: t0, mode: .pull, attesterURL: "https://a", hostCertificateSerial: "01", hostKeyPin: "pin1")
            try s.saveTrust(t)
            XCTAssertNil(try s.trust(hostID: id), "\(name): saveTrust creates no record")
            try s.activateHost(host(), trust: t, record: record())
            XCTAssertEqual(try s.attestableHosts().map(\.id), [id], name)
            t.state = .trusted
            t.attesterURL = "https://changed"
            t.consecutiveFaults = 3
            try s.saveTrust(t)
            let saved = try XCTUnwrap(s.trust(hostID: id))
            XCTAssertEqual(saved.state, .trusted, name)
            XCTAssertEqual(saved.consecutiveFaults, 3, name)
            XCTAssertEqual(saved.attesterURL, "https://a", "\(name): verdicts never write how the host is reached")
            var again = HostTrust(hostID: id, state: .unknown, since: t0, mode: .push, hostCertificateSerial: "02")
            again.consecutiveFaults = 0
            var h = try XCTUnwrap(s.host(id: id))
            h.updatedAt = t0.addingTimeInterval(1)
            try s.activateHost(h, trust: again, record: record())
            let reactivated = try XCTUnwrap(s.trust(hostID: id))
            XCTAssertEqual(reactivated.state, .trusted, "\(name): activation never writes the state")
            XCTAssertEqual(reactivated.mode, .push, name)
            XCTAssertEqual(reactivated.hostCertificateSerial, "02", name)
            XCTAssertNil(reactivated.attesterURL, name)
            try s.setBlock(hostID: id, reason: "x")
            XCTAssertEqual(try s.attestableHosts().count, 0, name)
            assertCode(.hostRevoked, name) { try s.activateHost(h.withBlock(nil).withVersion(h.version + 1), trust: again, record: self.record()) }
        }
    }

    func testNoncesHistoryAndTrustedClock() throws {
        try forEachStore { s, name in
            try s.activateHost(host(), trust: HostTrust(hostID: id, since: t0, mode: .push), record: record())
            let nonce = String(repeating: "1", count: 64)
            XCTAssertFalse(try s.nonceUsed(nonce), name)
            try s.recordVerdict(record(.reattestation, at: t0.addingTimeInterval(1), nonce: nonce, expires: t0.addingTimeInterval(60)),
                                trust: HostTrust(hostID: id, state: .trusted, since: t0, mode: .push))
            XCTAssertTrue(try s.nonceUsed(nonce), name)
            assertCode(.nonceReused, name) {
                try s.recordAttestation(self.record(.reattestation, trusted: false, at: self.t0.addingTimeInterval(2), nonce: nonce, expires: self.t0.addingTimeInterval(60)))
            }
            XCTAssertEqual(try s.attestations(HistoryQuery(hostID: id)).count, 2, "\(name): the refused decision was rolled back")
            XCTAssertEqual(try s.trust(hostID: id)?.state, .trusted, name)
            var claimed = record(.reattestation, at: t0.addingTimeInterval(3))
            claimed.claims = EvidenceClaims(boot: nil, model: nil, clock: ClockState(resetCount: 1, restartCount: 0, clock: 42, safe: true),
                                            rebootedSinceLastAttestation: false)
            claimed.pcrs = ["sha256": ["0": "00"]]
            let claimedID = try s.recordAttestation(claimed)
            try s.recordAttestation(record(.fault, trusted: false, at: t0.addingTimeInterval(4)))
            XCTAssertEqual(try s.lastTrustedClock(hostID: id)?.clock.clock, 42, name)
            XCTAssertEqual(try s.lastTrustedClock(hostID: id)?.at, t0.addingTimeInterval(3), name)
            XCTAssertEqual(try s.latestEvidence(hostID: id)?.id, claimedID, name)
            XCTAssertEqual(try s.latestAttestation(hostID: id)?.kind, .fault, name)
            XCTAssertEqual(try s.latestDecisionTime(), t0.addingTimeInterval(4), name)
            XCTAssertNil(try s.latestAttestation(hostID: id)?.nonceExpiresAt, name)
            let all = try s.attestations(HistoryQuery(hostID: id))
            XCTAssertEqual(all.map(\.kind), [.fault, .reattestation, .reattestation, .activation] as [AttestationKind], name)
            XCTAssertEqual(try s.attestations(HistoryQuery(trusted: false)).map(\.kind), [.fault] as [AttestationKind], name)
            XCTAssertEqual(try s.attestations(HistoryQuery(kind: .reattestation, before: claimedID)).count, 1, name)
            XCTAssertEqual(try s.attestations(HistoryQuery(from: t0.addingTimeInterval(1), until: t0.addingTimeInterval(4))).count, 2, name)
            XCTAssertEqual(try s.attestations(HistoryQuery(limit: 1)).map(\.kind), [.fault] as [AttestationKind], name)
            // A CPU TEE's verified report has no PCRs: its claims' `tee` makes it evidence.
            var tee = record(.reattestation, trusted: false, at: t0.addingTimeInterval(5))
            tee.claims = EvidenceClaims(tee: TEEClaims(kind: "sev-snp", measurement: "6a", measurementName: nil, tcb: "00", tcbStatus: nil, debug: true,
                                                       signer: "vcek", platform: "Milan", rtmrs: nil, configId: nil, reportData: "00", warnings: [], simulated: true))
            let teeID = try s.recordAttestation(tee)
            try s.recordAttestation(record(.fault, trusted: false, at: t0.addingTimeInterval(6)))
            XCTAssertEqual(try s.latestEvidence(hostID: id)?.id, teeID, name)
            XCTAssertEqual(try s.latestEvidence(hostID: id)?.claims?.tee?.debug, true, name)
        }
    }

    /// A CPU TEE's evidence bytes: kept the latest per host, in the decision's transaction, given
    /// back only with that decision by `latestEvidence`, dropped with the host.
    func testTEEEvidenceBytesAreTheLatestPerHostAndGoWithTheirDecision() throws {
        let claims = EvidenceClaims(tee: TEEClaims(kind: "tdx", measurement: "6a", measurementName: nil, tcb: "00", tcbStatus: "UpToDate", debug: false,
                                                   signer: "pck", platform: "00806f050000", rtmrs: nil, configId: nil, reportData: "00", warnings: [], simulated: true))
        func decision(_ quote: String, at seconds: Double, kept: Bool = true) -> AttestationRecord {
            var r = record(.reattestation, trusted: true, at: t0.addingTimeInterval(seconds))
            r.claims = claims
            if kept { r.teeEvidence = TEEEvidenceCopy(kind: "tdx", evidence: TEEEvidenceFields(quote: quote), collateral: "e30=", simulated: true) }
            return r
        }
        try forEachStore { s, name in
            try s.activateHost(host(), trust: HostTrust(hostID: id, since: t0, mode: .push), record: record())
            XCTAssertNil(try s.latestEvidence(hostID: id), name)
            let first = try s.recordAttestation(decision("AQ==", at: 1))
            XCTAssertEqual(try s.latestEvidence(hostID: id)?.id, first, name)
            XCTAssertEqual(try s.latestEvidence(hostID: id)?.teeEvidence?.evidence.quote, "AQ==", name)
            XCTAssertEqual(try s.latestEvidence(hostID: id)?.teeEvidence?.collateral, "e30=", name)
            XCTAssertNil(try s.latestAttestation(hostID: id)?.teeEvidence, "\(name): only latestEvidence gives the bytes back")
            XCTAssertNil(try s.attestations(HistoryQuery(hostID: id)).first?.teeEvidence, name)
            try s.recordAttestation(decision("Ag==", at: 2))
            try s.recordAttestation(record(.fault, trusted: false, at: t0.addingTimeInterval(3)))
            XCTAssertEqual(try s.latestEvidence(hostID: id)?.teeEvidence?.evidence.quote, "Ag==", "\(name): the latest replaces the one before")
            // An abandoned decision leaves the kept bytes as they were.
            struct Abandon: Error {}
            XCTAssertThrowsError(try s.transaction { tx in
                try tx.recordAttestation(decision("Aw==", at: 4))
                throw Abandon()
            }, name)
            XCTAssertEqual(try s.latestEvidence(hostID: id)?.teeEvidence?.evidence.quote, "Ag==", name)
            // A later decision without bytes (made before they were kept): no bytes of another decision.
            let bare = try s.recordAttestation(decision("", at: 5, kept: false))
            XCTAssertEqual(try s.latestEvidence(hostID: id)?.id, bare, name)
            XCTAssertNil(try s.latestEvidence(hostID: id)?.teeEvidence, name)
            try s.recordAttestation(decision("BA==", at: 6))
            try s.deleteHost(id: id)
            XCTAssertNil(try s.latestEvidence(hostID: id)?.teeEvidence, "\(name): deleting the host drops its bytes")
        }
    }

    func testRevocationCRLNumbersPerIssuerAndOutbox() throws {
        try forEachStore { s, name in
            try s.activateHost(host(), trust: HostTrust(hostID: id, since: t0, mode: .push), record: record())
            for (serial, issuer) in [("01", "ca1"), ("02", "ca1"), ("03", "ca2")] {
                let c = CertificateRecord(serial: serial, hostID: id, agentName: "a\(serial)", spiffeID: "spiffe://t/a", notBefore: t0,
                                          notAfter: t0.addingTimeInterval(900), pem: "PEM", attestationID: 0, issuer: issuer)
                let aid = try s.recordIssuance(attestation: record(.enrollment), certificate: c)
                XCTAssertEqual(try s.certificate(serial: serial)?.attestationID, aid, name)
            }
            assertCode(.conflict, name) {
                _ = try s.recordIssuance(attestation: self.record(.enrollment), certificate: try XCTUnwrap(s.certificate(serial: "01")))
            }
            let build: CRLBuilder = { issuer, revoked, number in
                CRLRecord(number: number, der: revoked.map { UInt8($0.serial)! }, thisUpdate: self.t0, nextUpdate: self.t0.addingTimeInterval(300))
            }
            let first = try s.revoke(.serial("01"), at: t0, reason: RevocationReason(rawValue: 1)!, buildCRL: build)
            XCTAssertEqual(first.serials, ["01"], name)
            XCTAssertEqual(first.crls.map(\.issuer), ["ca1"], name)
            XCTAssertEqual(first.crls.map(\.number), [1], name)
            let second = try s.revoke(.host(id), at: t0, reason: RevocationReason(rawValue: 9)!, buildCRL: build)
            XCTAssertEqual(second.serials, ["02", "03"], name)
            XCTAssertEqual(second.crls.map(\.issuer), ["ca1", "ca2"], name)
            XCTAssertEqual(second.crls.map(\.number), [2, 1], name)
            XCTAssertEqual(try s.currentCRL(issuer: "ca1")?.der, [1, 2], name)
            XCTAssertEqual(try s.revoke(.host(id), at: t0, reason: RevocationReason(rawValue: 9)!, buildCRL: build).serials, [], name)
            XCTAssertEqual(try s.refreshCRL(issuer: "ca2", buildCRL: build).number, 2, name)
            let events = try s.events(after: 0, limit: 100)
            XCTAssertEqual(events.map(\.type), Array(repeating: OutboxEventType.certificateIssued, count: 3) + Array(repeating: .certificateRevoked, count: 3), name)
            XCTAssertEqual(events[3].data, #"{"agentName":"a01","hostId":"\#(id)","reason":"keyCompromise","revokedAt":"\#(t0.iso8601)","serial":"01","spiffeId":"spiffe://t/a"}"#, name)
            let since = try s.registerSubscriber("https://hook")
            XCTAssertEqual(since, 6, name)
            try s.appendEvent(type: .hostBlocked, data: ["hostId": id], at: t0)
            try s.appendEvent(type: .hostUnblocked, data: ["hostId": id], at: t0)
            XCTAssertEqual(try s.undelivered(subscriber: "https://hook", limit: 10).map(\.event.type), [.hostBlocked, .hostUnblocked], name)
            try s.recordDelivery(subscriber: "https://hook", eventID: 7, delivered: true, attempts: 1, nextAttempt: nil, error: nil, at: t0)
            try s.recordDelivery(subscriber: "https://hook", eventID: 8, delivered: false, attempts: 2, nextAttempt: t0, error: "503", at: t0)
            let pending = try s.undelivered(subscriber: "https://hook", limit: 10)
            XCTAssertEqual(pending.map(\.attempts), [2], name)
            XCTAssertEqual(try s.undeliveredCount(subscriber: "https://hook"), 1, name)
            XCTAssertEqual(try s.registerSubscriber("https://hook"), 6, name)
        }
    }

    /// The unit of work: a transaction's writes commit together, or none does if its body throws.
    func testTransactionCommitsWholeOrNothing() throws {
        try forEachStore { s, name in
            try s.activateHost(host(), trust: HostTrust(hostID: id, since: t0, mode: .push), record: record())
            struct Abandon: Error {}
            XCTAssertThrowsError(try s.transaction { tx in
                try tx.recordAttestation(self.record(.reattestation, trusted: false, nonce: "n1", expires: self.t0.addingTimeInterval(60)))
                var t = try XCTUnwrap(tx.trust(hostID: self.id))
                t.consecutiveFailures = 5
                try tx.saveTrust(t)
                XCTAssertEqual(try tx.trust(hostID: self.id)?.consecutiveFailures, 5, "\(name): a transaction reads its own writes")
                try tx.appendEvent(type: .hostUntrusted, data: ["hostId": self.id], at: self.t0)
                throw Abandon()
            }, name)
            XCTAssertEqual(try s.trust(hostID: id)?.consecutiveFailures, 0, name)
            XCTAssertEqual(try s.attestations(HistoryQuery(hostID: id)).map(\.kind), [.activation], name)
            XCTAssertEqual(try s.events(after: 0, limit: 10), [], name)
            XCTAssertFalse(try s.nonceUsed("n1"), "\(name): the nonce of an abandoned decision stays unused")
            try s.transaction { tx in
                try tx.recordAttestation(self.record(.reattestation, trusted: false, nonce: "n1", expires: self.t0.addingTimeInterval(60)))
                try tx.appendEvent(type: .hostUntrusted, data: ["hostId": self.id], at: self.t0)
            }
            XCTAssertTrue(try s.nonceUsed("n1"), name)
            XCTAssertEqual(try s.events(after: 0, limit: 10).map(\.type), [.hostUntrusted], name)
            // A used nonce fails the whole transaction it is used in.
            assertCode(.nonceReused, name) {
                try s.transaction { tx in
                    try tx.appendEvent(type: .hostTrusted, data: ["hostId": self.id], at: self.t0)
                    try tx.recordAttestation(self.record(.reattestation, nonce: "n1", expires: self.t0.addingTimeInterval(60)))
                }
            }
            XCTAssertEqual(try s.events(after: 0, limit: 10).map(\.type), [.hostUntrusted], name)
        }
    }

    /// A revocation plan is committed only if nothing it was made from changed: another revocation
    /// or CRL for the issuer, or a new certificate for the target, makes it `revocation_plan_stale`.
    func testStaleRevocationPlansConflict() throws {
        try forEachStore { s, name in
            try s.activateHost(host(), trust: HostTrust(hostID: id, since: t0, mode: .push), record: record())
            func issue(_ serial: String, agent: String) throws {
                _ = try s.recordIssuance(attestation: record(.enrollment), certificate: CertificateRecord(
                    serial: serial, hostID: id, agentName: agent, spiffeID: "spiffe://t/\(agent)", notBefore: t0, notAfter: t0.addingTimeInterval(900),
                    pem: "PEM", attestationID: 0, issuer: "ca1"))
            }
            func crls(_ plan: RevocationPlan) -> [CRLRecord] {
                plan.issuers.map { CRLRecord(issuer: $0.issuer, number: $0.number, der: $0.revoked.map { UInt8($0.serial)! }, thisUpdate: t0, nextUpdate: t0) }
            }
            try issue("01", agent: "a")
            try issue("02", agent: "b")
            let planA = try s.revocationPlan(.agent(hostID: id, agentName: "a"), at: t0, reason: .keyCompromise)
            XCTAssertEqual(planA.serials, ["01"], name)
            XCTAssertEqual(planA.issuers.map(\.number), [1], name)
            XCTAssertNil(try s.certificate(serial: "01")?.revokedAt, "\(name): planning writes nothing")
            let planB = try s.revocationPlan(.agent(hostID: id, agentName: "b"), at: t0, reason: .keyCompromise)
            try s.transaction { try $0.revoke(planB, crls: crls(planB)) }
            assertCode(.revocationPlanStale, name) { try s.transaction { try $0.revoke(planA, crls: crls(planA)) } }
            XCTAssertNil(try s.certificate(serial: "01")?.revokedAt, name)
            let again = try s.revocationPlan(.agent(hostID: id, agentName: "a"), at: t0, reason: .keyCompromise)
            XCTAssertEqual(again.issuers.map(\.revoked).map { $0.map(\.serial) }, [["01", "02"]], "\(name): the new CRL lists both")
            try issue("03", agent: "a")   // a certificate for the target since the plan
            assertCode(.revocationPlanStale, name) { try s.transaction { try $0.revoke(again, crls: crls(again)) } }
            // A plan that names nothing is checked too: a certificate issued since must not escape.
            let empty = try s.revocationPlan(.agent(hostID: id, agentName: "c"), at: t0, reason: .keyCompromise)
            XCTAssertEqual(empty.serials, [], name)
            try issue("05", agent: "c")
            assertCode(.revocationPlanStale, name) { try s.transaction { try $0.revoke(empty, crls: []) } }
            let fresh = try s.revocationPlan(.agent(hostID: id, agentName: "a"), at: t0, reason: .keyCompromise)
            try s.transaction { try $0.revoke(fresh, crls: crls(fresh)) }
            XCTAssertEqual(try s.currentCRL(issuer: "ca1")?.number, 2, name)
            XCTAssertEqual(try s.currentCRL(issuer: "ca1")?.der, [1, 2, 3], name)
            // A CRL signed for a number another CRL took first is not stored; the stored one is kept.
            let late = CRLRecord(issuer: "ca1", number: 2, der: [9], thisUpdate: t0, nextUpdate: t0)
            XCTAssertEqual(try s.publishCRL(late).der, [1, 2, 3], name)
            XCTAssertEqual(try s.publishCRL(CRLRecord(issuer: "ca1", number: 3, der: [7], thisUpdate: t0, nextUpdate: t0)).number, 3, name)
        }
    }
}
