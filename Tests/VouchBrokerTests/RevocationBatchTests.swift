import Foundation
import Synchronization
import VouchAPI
import VouchAttestation
@testable import VouchBroker
import VouchBrokerTestSupport
import VouchCore
import VouchCrypto
import VouchModel
import VouchPolicy
import VouchPostgres
import VouchStore
import VouchTestSupport
import XCTest

/// Revocations batched (`Revocations`, RevocationBatch.swift) on each store — in memory, SQLite,
/// PostgreSQL (one broker, and two replicas on one database): concurrent revocations all commit;
/// every CRL committed lists exactly what the store revoked up to it; every answer names a CRL
/// that lists its certificates; a member whose decision changes or whose writes fail in a batch
/// fails the batch, every member then commits alone, and nothing of that member reaches a CRL.
final class RevocationBatchTests: XCTestCase {
    let clock = ManualClock()
    var ca: CertificateAuthority!
    var directory: String!

    override func setUpWithError() throws {
        let now = clock.now()
        ca = try CertificateAuthority.create(commonName: "Vouch CA test.local", key: try PrivateKey.generate(.p256),
                                             notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(10 * 365 * 86400))
        directory = NSTemporaryDirectory() + "revbatch-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    enum Kind: CaseIterable { case memory, sqlite, postgres }

    func makeStore(_ kind: Kind) throws -> BrokerStore {
        switch kind {
        case .memory: return InMemoryBrokerStore()
        case .sqlite: return try SQLiteBrokerStore(path: directory + "/broker.db")
        case .postgres: return try PostgresBrokerStore(url: try PostgresServer.shared.get().createDatabase("revbatch_\(UInt64.random(in: 0...UInt64.max))"))
        }
    }

    func service(_ store: BrokerStore) throws -> BrokerService {
        BrokerService(config: BrokerConfig(trustDomain: "test.local"), policies: PolicyProvider(fixed: try PolicySet([Broker.policy()]), clock: clock),
                      store: store, authorities: CASet(current: IssuingCA(signer: ca)), ekTrust: EKTrustStore(anchors: [], intermediates: []),
                      resultSigner: try JWSSigner(key: try PrivateKey.generate(.p256), chain: [ca.certificate]),
                      jwtSVIDSigner: try JWSSigner(key: try PrivateKey.generate(.p256), use: "jwt-svid"), clock: clock)
    }

    /// `count` activated hosts, each with one agent certificate (serial `serial(i)`); returns the host ids.
    func seed(_ count: Int, store: BrokerStore, perHost: Int = 1) throws -> [String] {
        try (0..<count).map { i in
            let id = String(format: "%032x", i + 1), tpm = try SoftwareTPM(), now = clock.now()
            let host = HostRecord(id: id, hostname: id, ekPublic: [1], ekCertificate: [2], ekIssuer: "test EK CA", akPublic: tpm.akPublic, akName: tpm.akName,
                                  akAlgorithm: "ecc-p256", akState: .active, activationDigest: nil, activationExpiresAt: nil, activationFailures: 0,
                                  registeredAt: now, updatedAt: now)
            try store.activateHost(host, trust: HostTrust(hostID: id, since: now, mode: .push),
                                   record: AttestationRecord(hostID: id, at: now, kind: .activation, trusted: true, codes: [], message: "activated"))
            for n in 0..<perHost {
                _ = try store.recordIssuance(attestation: AttestationRecord(hostID: id, at: now, kind: .enrollment, trusted: true, codes: [], message: "ok",
                                                                           agentName: "agent\(n)"),
                                             certificate: CertificateRecord(serial: Self.serial(i, n), hostID: id, agentName: "agent\(n)",
                                                                            spiffeID: "spiffe://test.local/agent\(n)", notBefore: now,
                                                                            notAfter: now.addingTimeInterval(3600), pem: "", attestationID: 0,
                                                                            issuer: IssuingCA(signer: ca).keyID))
            }
            return id
        }
    }

    static func serial(_ host: Int, _ n: Int = 0) -> String { String(format: "%x", 0x100000 + host * 16 + n) }

    /// Runs `body(i)` for i in 0..<count on `count` threads of their own at once; returns each result.
    /// `started(i)` runs on the calling thread after thread i started.
    static func concurrently<T: Sendable>(_ count: Int, started: (Int) -> Void = { _ in },
                                          _ body: @escaping @Sendable (Int) throws -> T) -> [Result<T, any Error>] {
        let results = Mutex<[Int: Result<T, any Error>]>([:])
        let group = DispatchGroup()
        for i in 0..<count {
            group.enter()
            Thread {
                let r = Result { try body(i) }
                results.withLock { $0[i] = r }
                group.leave()
            }.start()
            started(i)
        }
        group.wait()
        return results.withLock { r in (0..<count).map { r[$0]! } }
    }

    /// Holds `planning` while `count` changes queue up behind it, so they are committed as one batch.
    func asOneBatch<T: Sendable>(_ revocations: Revocations, _ count: Int, _ body: @escaping @Sendable (Int) throws -> T) throws -> [Result<T, any Error>] {
        revocations.planning.lock()
        let results = Mutex<[Result<T, any Error>]>([])
        let runner = DispatchGroup()
        runner.enter()
        Thread {
            let r = Self.concurrently(count, body)
            results.withLock { $0 = r }
            runner.leave()
        }.start()
        let deadline = Date().addingTimeInterval(60)
        while revocations.pending.withLock({ $0.count }) < count, Date() < deadline { usleep(1000) }
        XCTAssertEqual(revocations.pending.withLock { $0.count }, count, "the changes did not all queue")
        revocations.planning.unlock()
        runner.wait()
        return results.withLock { $0 }
    }

    /// What a revocation answered: its serials and the CRLs it names.
    struct Answer: Sendable { let serials: [String]; let crls: [CRLRecord] }

    /// Checks every answer against the CRLs: each names one CRL (of the one issuer) that lists its
    /// serials; CRLs of one number are one CRL; each CRL lists exactly the serials answered with
    /// that number or a lower one (beside `before`); the numbers run without a gap from `first`
    /// to the current CRL's, which lists exactly everything answered.
    func checkCRLs(_ answers: [Answer], first: UInt64, before: Set<String> = [], current: CRLRecord,
                   file: StaticString = #filePath, line: UInt = #line) throws {
        var byNumber: [UInt64: CRLRecord] = [:]
        for a in answers where !a.serials.isEmpty {
            XCTAssertEqual(a.crls.count, 1, file: file, line: line)
            let crl = try XCTUnwrap(a.crls.first)
            let parsed = try CRL(der: crl.der)
            XCTAssertEqual(parsed.number, crl.number, file: file, line: line)
            XCTAssertTrue(parsed.isSigned(by: ca.certificate), file: file, line: line)
            XCTAssertTrue(Set(a.serials).isSubset(of: Set(parsed.revokedSerials)), "CRL #\(crl.number) misses \(a.serials)", file: file, line: line)
            if let seen = byNumber[crl.number] { XCTAssertEqual(seen.der, crl.der, "two CRLs numbered \(crl.number)", file: file, line: line) }
            byNumber[crl.number] = crl
        }
        for (number, crl) in byNumber {
            let expected = before.union(answers.filter { ($0.crls.first?.number ?? .max) <= number }.flatMap(\.serials))
            XCTAssertEqual(Set(try CRL(der: crl.der).revokedSerials), expected, "CRL #\(number)", file: file, line: line)
        }
        let numbers = byNumber.keys.sorted()
        XCTAssertEqual(numbers, Array(first...current.number), "the CRL numbers answered have gaps", file: file, line: line)
        XCTAssertEqual(Set(try CRL(der: current.der).revokedSerials), before.union(answers.flatMap(\.serials)), file: file, line: line)
    }

    // MARK: concurrent revocations

    /// 50 threads at once, each revoking another host's certificate (by serial, by host, by a
    /// verdict that untrusts the host): every one commits, and the CRLs are exact.
    func concurrentRevocations(_ kind: Kind) throws {
        let store = try makeStore(kind), broker = try service(store)
        let hosts = try seed(50, store: store)
        let start = try broker.revocation.currentCRL().number
        let revocations = broker.context.revocations, now = clock.now()
        let results = Self.concurrently(50) { i -> Answer in
            switch i % 3 {
            case 0:
                let done = try revocations.revoke(.serial(Self.serial(i)), at: now, reason: .keyCompromise)
                return Answer(serials: done.serials, crls: done.crls)
            case 1:
                let done = try revocations.revoke(.host(hosts[i]), at: now, reason: .superseded)
                return Answer(serials: done.serials, crls: done.crls)
            default:
                // The re-attestation verdict's path: a failed step revokes the host's certificates.
                let done = try revocations.change(at: now, decide: { tx in
                    _ = try tx.trust(hostID: hosts[i])
                    return .init(value: (), revoke: (.host(hosts[i]), .privilegeWithdrawn))
                }) { tx, _, plan in
                    try tx.appendEvent(type: .hostUntrusted, data: ["hostId": hosts[i], "revoked": "\(plan?.certificates.count ?? 0)"], at: now)
                }
                return Answer(serials: done.plan?.serials ?? [], crls: done.crls)
            }
        }
        let answers = try results.map { try $0.get() }
        XCTAssertEqual(answers.map(\.serials), (0..<50).map { [Self.serial($0)] })
        for i in 0..<50 { XCTAssertNotNil(try store.certificate(serial: Self.serial(i))?.revokedAt) }
        try checkCRLs(answers, first: start + 1, current: try broker.revocation.currentCRL())
        XCTAssertEqual(try store.currentCRL(issuer: broker.context.authorities.current.keyID)?.number, try broker.revocation.currentCRL().number)
        // One certificate.revoked event per serial.
        let revokedEvents = try store.events(after: 0, limit: 10_000).filter { $0.type == .certificateRevoked }
        XCTAssertEqual(revokedEvents.count, 50)
    }

    func testConcurrentRevocationsInMemory() throws { try concurrentRevocations(.memory) }
    func testConcurrentRevocationsOnSQLite() throws { try concurrentRevocations(.sqlite) }
    func testConcurrentRevocationsOnPostgres() throws { try concurrentRevocations(.postgres) }

    /// Two replicas on one PostgreSQL database, 40 revocations at once split between them: their
    /// batches race on the CRL number (compare-and-set, `revocation_plan_stale`, planned again),
    /// and every answer still names a CRL that lists its serial; the store's CRL lists them all.
    func testConcurrentRevocationsAtTwoReplicas() throws {
        let url = try PostgresServer.shared.get().createDatabase("revbatch_\(UInt64.random(in: 0...UInt64.max))")
        let a = try service(try PostgresBrokerStore(url: url)), b = try service(try PostgresBrokerStore(url: url))
        _ = try seed(40, store: a.context.store)
        let start = try a.revocation.currentCRL().number
        let now = clock.now()
        let results = Self.concurrently(40) { i -> Answer in
            let done = try (i % 2 == 0 ? a : b).context.revocations.revoke(.serial(Self.serial(i)), at: now, reason: .keyCompromise)
            return Answer(serials: done.serials, crls: done.crls)
        }
        let answers = try results.map { try $0.get() }
        XCTAssertEqual(answers.map(\.serials), (0..<40).map { [Self.serial($0)] })
        let current = try XCTUnwrap(try a.context.store.currentCRL(issuer: a.context.authorities.current.keyID))
        try checkCRLs(answers, first: start + 1, current: current)
    }

    // MARK: exact fallbacks

    /// A batch of 12 in which one member's decision, decided again in the batch's transaction, no
    /// longer revokes (the host was trusted again meanwhile), and another's writes fail: the batch
    /// does not commit, and every member commits alone (a CRL each); the flipped change commits
    /// alone with no revocation, the failed one returns its error; neither's certificate is
    /// revoked or listed.
    func batchMembersLeftOut(_ kind: Kind) throws {
        let store = try makeStore(kind), broker = try service(store)
        let hosts = try seed(12, store: store)
        let start = try broker.revocation.currentCRL().number
        let revocations = broker.context.revocations, now = clock.now()
        let decisions = Atomic<Int>(0)
        let results = try asOneBatch(revocations, 12) { i -> Answer in
            switch i {
            case 3:
                // Revokes when first decided (so it joins the batch), then flips.
                let done = try revocations.change(at: now, decide: { _ -> Revocations.Decision<String> in
                    let n = decisions.add(1, ordering: .sequentiallyConsistent).newValue
                    return n == 1 ? .init(value: "untrusted", revoke: (.host(hosts[i]), .privilegeWithdrawn)) : .init(value: "trusted again", revoke: nil)
                }) { tx, value, plan in
                    XCTAssertEqual(value, "trusted again")
                    XCTAssertNil(plan)
                    try tx.appendEvent(type: .hostTrusted, data: ["hostId": hosts[i]], at: now)
                }
                XCTAssertEqual(done.value, "trusted again")
                return Answer(serials: done.plan?.serials ?? [], crls: done.crls)
            case 7:
                let done = try revocations.change(at: now, expecting: (.host(hosts[i]), .superseded), decide: { _ in
                    .init(value: (), revoke: (.host(hosts[i]), .superseded))
                }) { _, _, _ in throw VouchError(.hostRevoked, "refused by this change's own check") }
                return Answer(serials: done.plan?.serials ?? [], crls: done.crls)
            default:
                let done = try revocations.revoke(.serial(Self.serial(i)), at: now, reason: .keyCompromise)
                return Answer(serials: done.serials, crls: done.crls)
            }
        }
        XCTAssertThrowsError(try results[7].get()) { XCTAssertEqual(($0 as? VouchError)?.code, .hostRevoked) }
        let flipped = try results[3].get()
        XCTAssertEqual(flipped.serials, [])
        XCTAssertEqual(flipped.crls, [])
        XCTAssertGreaterThanOrEqual(decisions.load(ordering: .sequentiallyConsistent), 2)
        let answers = try results.enumerated().filter { $0.offset != 7 && $0.offset != 3 }.map { try $0.element.get() }
        XCTAssertEqual(answers.map(\.serials), (0..<12).filter { $0 != 3 && $0 != 7 }.map { [Self.serial($0)] })
        // The batch could not commit, so each of the ten committed alone: a CRL each, in turn.
        XCTAssertEqual(Set(answers.map { $0.crls.first?.number }), Set((start + 1)...(start + 10)))
        XCTAssertNil(try store.certificate(serial: Self.serial(3))?.revokedAt)
        XCTAssertNil(try store.certificate(serial: Self.serial(7))?.revokedAt)
        try checkCRLs(answers, first: start + 1, current: try broker.revocation.currentCRL())
    }

    func testBatchMembersLeftOutInMemory() throws { try batchMembersLeftOut(.memory) }
    func testBatchMembersLeftOutOnSQLite() throws { try batchMembersLeftOut(.sqlite) }
    func testBatchMembersLeftOutOnPostgres() throws { try batchMembersLeftOut(.postgres) }

    /// A member whose decision, decided again in the batch, names another revocation (one
    /// certificate of its host instead of all) fails the batch (every member commits alone) and is
    /// batched again for that one: only
    /// that certificate is revoked, and the CRLs list exactly what was.
    func testABatchMemberNamingAnotherRevocationIsPlannedForIt() throws {
        let store = try makeStore(.memory), broker = try service(store)
        let hosts = try seed(6, store: store, perHost: 2)
        let start = try broker.revocation.currentCRL().number
        let revocations = broker.context.revocations, now = clock.now()
        let decisions = Atomic<Int>(0)
        let results = try asOneBatch(revocations, 6) { i -> Answer in
            if i == 2 {
                let done = try revocations.change(at: now, decide: { _ -> Revocations.Decision<Void> in
                    let n = decisions.add(1, ordering: .sequentiallyConsistent).newValue
                    return .init(value: (), revoke: n == 1 ? (.host(hosts[i]), .privilegeWithdrawn) : (.serial(Self.serial(i, 1)), .keyCompromise))
                }) { _, _, _ in }
                return Answer(serials: done.plan?.serials ?? [], crls: done.crls)
            }
            let done = try revocations.revoke(.host(hosts[i]), at: now, reason: .superseded)
            return Answer(serials: done.serials, crls: done.crls)
        }
        let answers = try results.map { try $0.get() }
        XCTAssertEqual(answers.map { Set($0.serials) }, (0..<6).map { $0 == 2 ? [Self.serial(2, 1)] : [Self.serial($0, 0), Self.serial($0, 1)] })
        XCTAssertNil(try store.certificate(serial: Self.serial(2, 0))?.revokedAt)
        try checkCRLs(answers, first: start + 1, current: try broker.revocation.currentCRL())
    }

    /// Two changes revoking the same host in one batch: the second waits for a batch of its own,
    /// planned after the first committed (it then revokes nothing), so no certificate is planned
    /// twice and both commit.
    func testOverlappingTargetsInOneBatchBothCommit() throws {
        let store = try makeStore(.sqlite), broker = try service(store)
        let hosts = try seed(3, store: store)
        let start = try broker.revocation.currentCRL().number
        let revocations = broker.context.revocations, now = clock.now()
        let results = try asOneBatch(revocations, 4) { i -> Answer in
            let done = try revocations.revoke(.host(hosts[min(i, 2)]), at: now, reason: .superseded)
            return Answer(serials: done.serials, crls: done.crls)
        }
        let answers = try results.map { try $0.get() }
        XCTAssertEqual(answers[0].serials, [Self.serial(0)])
        XCTAssertEqual(answers[1].serials, [Self.serial(1)])
        XCTAssertEqual(Set([answers[2].serials, answers[3].serials]), [[Self.serial(2)], []])
        try checkCRLs(answers, first: start + 1, current: try broker.revocation.currentCRL())
    }
}
