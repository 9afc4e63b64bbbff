import Foundation
import Synchronization
@testable import VouchBroker
import VouchBrokerTestSupport
import VouchCore
import VouchCrypto
import VouchModel
import XCTest

/// A batch of revocations that cannot commit (RevocationBatch.swift): one member's planning,
/// signing or stale target fails that member alone, each member with a budget of its own; every
/// member is settled exactly once; errors the store retries are retried for the whole batch, and
/// an unknown outcome is every member's answer. Paths are forced with hooks and injected errors.
extension RevocationBatchTests {
    /// Holds `planning` while `count` changes queue up behind it one after another, in order
    /// (`body(i)` is queued i-th), so they are committed as one batch in that order.
    func inOrder<T: Sendable>(_ revocations: Revocations, _ count: Int, _ body: @escaping @Sendable (Int) throws -> T) -> [Result<T, any Error>] {
        revocations.planning.lock()
        return Self.concurrently(count, started: { i in
            let deadline = Date().addingTimeInterval(60)
            while revocations.pending.withLock({ $0.count }) <= i, Date() < deadline { usleep(1000) }
            XCTAssertEqual(revocations.pending.withLock { $0.count }, i + 1, "change \(i) did not queue")
            if i == count - 1 { revocations.planning.unlock() }
        }, body)
    }

    func code(_ result: Result<Answer, any Error>) -> ErrorCode? {
        if case let .failure(e) = result { return (e as? VouchError)?.code }
        return nil
    }

    /// A broker on `store` with `count` seeded hosts: its revocations, the hosts and the CRL
    /// number before any revocation.
    func fixture(_ store: BrokerStore, hosts count: Int) throws -> (broker: BrokerService, revocations: Revocations, hosts: [String], start: UInt64) {
        let broker = try service(store)
        let hosts = try seed(count, store: store)
        return (broker, broker.context.revocations, hosts, try broker.revocation.currentCRL().number)
    }

    /// Every change but `failed` committed the revocation of its host's certificate, under exact
    /// CRLs numbered from `first`; the certificates of `failed` are not revoked.
    func checkCommitted(_ results: [Result<Answer, any Error>], except failed: Set<Int>, store: BrokerStore, broker: BrokerService, first: UInt64,
                        file: StaticString = #filePath, line: UInt = #line) throws {
        for i in failed { XCTAssertNil(try store.certificate(serial: Self.serial(i))?.revokedAt, file: file, line: line) }
        let others = results.indices.filter { !failed.contains($0) }
        let answers = try others.map { try results[$0].get() }
        XCTAssertEqual(answers.map(\.serials), others.map { [Self.serial($0)] }, file: file, line: line)
        try checkCRLs(answers, first: first, current: try broker.revocation.currentCRL(), file: file, line: line)
    }

    /// Issues `host` one more certificate (agent `agent`) through `record` (the store's or a
    /// transaction's `recordIssuance`).
    static func issue(_ serial: String, host: String, agent: String, issuer: String, at now: Date,
               _ record: (AttestationRecord, CertificateRecord) throws -> Int64) throws {
        _ = try record(AttestationRecord(hostID: host, at: now, kind: .enrollment, trusted: true, codes: [], message: "ok", agentName: agent),
                       CertificateRecord(serial: serial, hostID: host, agentName: agent, spiffeID: "spiffe://test.local/\(agent)", notBefore: now,
                                         notAfter: now.addingTimeInterval(3600), pem: "", attestationID: 0, issuer: issuer))
    }

    /// Defect 1: a batch with one member whose signature fails (its host holds a certificate of an
    /// issuer no CA here signs for) and one whose plan throws: each gets its own error, nothing of
    /// theirs is revoked, and every other member commits (unbatched, under exact CRLs).
    func testOneMembersPlanOrSignErrorFailsItAlone() throws {
        let store = InMemoryBrokerStore(), (broker, revocations, hosts, start) = try fixture(store, hosts: 6), now = clock.now()
        try Self.issue("ffff01", host: hosts[2], agent: "other", issuer: "no CA signs for this issuer", at: now) {
            try store.recordIssuance(attestation: $0, certificate: $1)
        }
        let failing = RevocationTarget.host(hosts[4])
        revocations.hooks.withLock {
            $0.planning = { target in
                if target == failing { throw VouchError(.database, "planning failed (injected)") }
            }
        }
        let results = try asOneBatch(revocations, 6) { i -> Answer in
            let done = try revocations.revoke(.host(hosts[i]), at: now, reason: .superseded)
            return Answer(serials: done.serials, crls: done.crls)
        }
        XCTAssertEqual(code(results[2]), .internalError)
        XCTAssertEqual(code(results[4]), .database)
        try checkCommitted(results, except: [2, 4], store: store, broker: broker, first: start + 1)
    }

    /// Defect 2: a member whose target goes stale at every commit (its decision issues its host
    /// another certificate each time) uses up its own budget and fails with `conflict` alone; the
    /// other members commit.
    func testAMemberThatKeepsGoingStaleUsesItsOwnBudget() throws {
        let store = InMemoryBrokerStore(), (broker, revocations, hosts, start) = try fixture(store, hosts: 5)
        let now = clock.now(), issuer = broker.context.authorities.current.keyID
        let decisions = Atomic<Int>(0)
        let results = try asOneBatch(revocations, 5) { i -> Answer in
            guard i == 3 else {
                let done = try revocations.revoke(.serial(Self.serial(i)), at: now, reason: .keyCompromise)
                return Answer(serials: done.serials, crls: done.crls)
            }
            let done = try revocations.change(at: now, expecting: (.host(hosts[i]), .privilegeWithdrawn), decide: { tx in
                let n = decisions.add(1, ordering: .sequentiallyConsistent).newValue
                try Self.issue(String(format: "eeee%02x", n), host: hosts[i], agent: "late", issuer: issuer, at: now) {
                    try tx.recordIssuance(attestation: $0, certificate: $1)
                }
                return .init(value: (), revoke: (.host(hosts[i]), .privilegeWithdrawn))
            }) { _, _, _ in }
            return Answer(serials: done.plan?.serials ?? [], crls: done.crls)
        }
        XCTAssertEqual(code(results[3]), .conflict)
        // Once in the batch, then `attempts` times alone: its budget, spent by it only.
        XCTAssertEqual(decisions.load(ordering: .sequentiallyConsistent), 1 + Revocations.attempts)
        try checkCommitted(results, except: [3], store: store, broker: broker, first: start + 1)
    }

    /// Defect 3: a batch queued in the order [host A, host A again (overlaps), host B, host C whose
    /// plan throws]: every member is settled exactly once (counted by the `settled` hook), the
    /// failing one with its error, the others committed.
    func testEveryMemberIsSettledOnceWhenPlanningThrowsAfterAnOverlap() throws {
        let (broker, revocations, hosts, start) = try fixture(InMemoryBrokerStore(), hosts: 3), now = clock.now()
        let settlements = Mutex<[ObjectIdentifier: Int]>([:])
        let failing = RevocationTarget.host(hosts[2])
        revocations.hooks.withLock {
            $0.planning = { target in
                if target == failing { throw VouchError(.database, "planning failed (injected)") }
            }
            $0.settled = { member in settlements.withLock { $0[member, default: 0] += 1 } }
        }
        let results = inOrder(revocations, 4) { i -> Answer in
            let done = try revocations.revoke(.host(hosts[[0, 0, 1, 2][i]]), at: now, reason: .superseded)
            return Answer(serials: done.serials, crls: done.crls)
        }
        let counts = settlements.withLock { $0 }
        XCTAssertEqual(counts.count, 4, "every member settled")
        XCTAssertEqual(Set(counts.values), [1], "a member settled more than once")
        XCTAssertEqual(code(results[3]), .database)
        let answers = try results.prefix(3).map { try $0.get() }
        XCTAssertEqual(answers.map(\.serials), [[Self.serial(0)], [], [Self.serial(1)]])
        try checkCRLs(answers, first: start + 1, current: try broker.revocation.currentCRL())
    }

    /// Defect 4, retryable errors: a member's decision in the batch's transaction meets a
    /// serialization failure, then a connection lost before COMMIT (both as the PostgreSQL store
    /// classifies them): the store runs the whole batch's transaction again, and every member
    /// commits in that one batch (one CRL), none failed with the store's error.
    func testRetryableStoreErrorsInABatchAreRetriedOnPostgres() throws {
        let (broker, revocations, hosts, start) = try fixture(try makeStore(.postgres), hosts: 6), now = clock.now()
        let decisions = Atomic<Int>(0)
        let results = try asOneBatch(revocations, 6) { i -> Answer in
            let done = try revocations.change(at: now, expecting: (.host(hosts[i]), .superseded), decide: { _ in
                if i == 2 {
                    switch decisions.add(1, ordering: .sequentiallyConsistent).newValue {
                    case 1: throw VouchError(.database, "could not serialize access (injected)", context: ["sqlstate": "40001"])
                    case 2: throw VouchError(.database, "server closed the connection (injected)", context: ["connection": "lost"])
                    default: break
                    }
                }
                return .init(value: (), revoke: (.host(hosts[i]), .superseded))
            }) { _, _, _ in }
            return Answer(serials: done.plan?.serials ?? [], crls: done.crls)
        }
        let answers = try results.map { try $0.get() }
        XCTAssertEqual(answers.map(\.serials), (0..<6).map { [Self.serial($0)] })
        XCTAssertEqual(decisions.load(ordering: .sequentiallyConsistent), 3)
        XCTAssertEqual(Set(answers.map { $0.crls.first?.number }), [start + 1], "not committed as one batch")
        try checkCRLs(answers, first: start + 1, current: try broker.revocation.currentCRL())
    }

    /// Defect 4, unknown outcome: the batch's transaction commits and the store then reports the
    /// outcome unknown (a connection lost during COMMIT): every member gets that error, none is
    /// decided or committed again, and the CRL served afterwards is the one the store holds,
    /// which lists every certificate the store marks revoked.
    func testAnUnknownOutcomeIsEveryMembersAnswer() throws {
        let store = InMemoryBrokerStore(), (broker, revocations, hosts, _) = try fixture(store, hosts: 5)
        let now = clock.now(), issuer = broker.context.authorities.current.keyID
        let decisions = Atomic<Int>(0)
        store.failNextCommit(with: VouchError(.database, "the connection to PostgreSQL was lost while committing (injected)",
                                              context: ["outcome": "unknown", "connection": "lost"]))
        let results = try asOneBatch(revocations, 5) { i -> Answer in
            let done = try revocations.change(at: now, expecting: (.host(hosts[i]), .superseded), decide: { _ in
                decisions.add(1, ordering: .sequentiallyConsistent)
                return .init(value: (), revoke: (.host(hosts[i]), .superseded))
            }) { _, _, _ in }
            return Answer(serials: done.plan?.serials ?? [], crls: done.crls)
        }
        for r in results {
            XCTAssertThrowsError(try r.get()) { XCTAssertEqual(($0 as? VouchError)?.context["outcome"], "unknown") }
        }
        XCTAssertEqual(decisions.load(ordering: .sequentiallyConsistent), 5, "a member was decided again")
        for i in 0..<5 { XCTAssertNotNil(try store.certificate(serial: Self.serial(i))?.revokedAt) }
        let stored = try XCTUnwrap(try store.currentCRL(issuer: issuer))
        XCTAssertEqual(try broker.revocation.currentCRL().number, stored.number)
        XCTAssertEqual(Set(try CRL(der: stored.der).revokedSerials), Set((0..<5).map { Self.serial($0) }))
    }

    /// An error that says "outcome unknown" but comes from planning (before any transaction ran)
    /// is no batch outcome: nothing was committed, so every member is committed alone and settled
    /// once — the one whose plan throws with that error, the others committed — rather than the
    /// members planned so far told "unknown" and the rest left unsettled.
    func testAnUnknownOutcomeFromPlanningIsNotTheBatchsAnswer() throws {
        let store = InMemoryBrokerStore(), (broker, revocations, hosts, start) = try fixture(store, hosts: 4), now = clock.now()
        let settlements = Mutex<[ObjectIdentifier: Int]>([:])
        let failing = RevocationTarget.host(hosts[1])
        revocations.hooks.withLock {
            $0.planning = { target in
                if target == failing { throw VouchError(.database, "lost during a read (injected)", context: ["outcome": "unknown"]) }
            }
            $0.settled = { member in settlements.withLock { $0[member, default: 0] += 1 } }
        }
        let results = inOrder(revocations, 4) { i -> Answer in
            let done = try revocations.revoke(.host(hosts[i]), at: now, reason: .superseded)
            return Answer(serials: done.serials, crls: done.crls)
        }
        let counts = settlements.withLock { $0 }
        XCTAssertEqual(counts.count, 4, "every member settled")
        XCTAssertEqual(Set(counts.values), [1], "a member settled more than once")
        XCTAssertEqual(code(results[1]), .database)
        try checkCommitted(results, except: [1], store: store, broker: broker, first: start + 1)
    }
}
