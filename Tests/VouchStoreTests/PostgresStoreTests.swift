import Foundation
import Synchronization
import XCTest
import VouchCore
import VouchModel
import VouchPostgres
import VouchTestSupport

/// What the PostgreSQL store adds to the conformance suite: several stores on one database (as
/// several vouchd replicas hold) stay one truth — migrations run once, a serial is issued once,
/// every revocation takes its own CRL number, event ids are visible in order, the log is appended
/// at each size once — and a store outlives its server's crash and restart.
final class PostgresStoreTests: XCTestCase {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let hostID = String(repeating: "b", count: 32)

    func database() throws -> String {
        try PostgresServer.shared.get().createDatabase("replicas_\(UInt64.random(in: 0...UInt64.max))")
    }

    func host() -> HostRecord {
        HostRecord(id: hostID, hostname: "h", ekPublic: [1], ekCertificate: [2], ekIssuer: "CN=x", akPublic: [3], akName: [4], akAlgorithm: "ecc-p256",
                   akState: .active, activationDigest: nil, activationExpiresAt: nil, activationFailures: 0, registeredAt: t0, updatedAt: t0)
    }

    func cert(_ serial: String, issuer: String = "ca1") -> CertificateRecord {
        CertificateRecord(serial: serial, hostID: hostID, agentName: "agent-\(serial)", spiffeID: "spiffe://t/a", notBefore: t0,
                          notAfter: t0.addingTimeInterval(900), pem: "PEM", attestationID: 0, issuer: issuer)
    }

    func issuance(_ message: String) -> AttestationRecord {
        AttestationRecord(hostID: hostID, at: t0, kind: .enrollment, trusted: true, codes: [], message: message)
    }

    func assertCode(_ code: ErrorCode, _ body: () throws -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { XCTAssertEqual(($0 as? VouchError)?.code, code, "\($0)", line: line) }
    }

    /// Replicas starting together on an empty database migrate it once; a database migrated by a
    /// newer build is refused, not misread.
    func testReplicasMigrateOnceAndANewerSchemaIsRefused() throws {
        let url = try database()
        let opened = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            if (try? PostgresBrokerStore(url: url)) != nil { opened.withLock { $0 += 1 } }
        }
        XCTAssertEqual(opened.withLock { $0 }, 4)
        let pg = try PostgresServer.shared.get()
        let name = String(url.split(separator: "/").last!)
        XCTAssertEqual(try pg.psql("SELECT value FROM vouch_meta WHERE key = 'schema_version'", database: name), "\(PostgresBrokerStore.schemaVersion)")
        try pg.psql("UPDATE vouch_meta SET value = '999' WHERE key = 'schema_version'", database: name)
        assertCode(.database) { _ = try PostgresBrokerStore(url: url) }
    }

    /// Two replicas issuing at once: a serial is stored once (every writer of a reused serial but
    /// one gets `conflict`), and each acknowledged issuance is there with its decision.
    func testSerialsStayUniqueAcrossReplicas() throws {
        let url = try database()
        let replicas = [try PostgresBrokerStore(url: url), try PostgresBrokerStore(url: url)]
        try replicas[0].saveHost(host())
        let failed = Mutex(0)
        let certs = (0..<64).map { cert($0 % 4 == 0 ? "00" : String(format: "%02x", $0)) }
        let records = (0..<64).map { issuance("w\($0)") }
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            do { _ = try replicas[i % 2].recordIssuance(attestation: records[i], certificate: certs[i]) } catch { failed.withLock { $0 += 1 } }
        }
        XCTAssertEqual(failed.withLock { $0 }, 15, "15 of the 16 writers of serial 00 fail")
        XCTAssertEqual(try replicas[1].certificates().count, 49)
        XCTAssertEqual(try replicas[0].attestations(HistoryQuery(hostID: hostID, limit: 1000)).count, 49, "no decision left by a failed issuance")
    }

    /// Revocations planned and committed on two replicas at once: each commit takes the next CRL
    /// number of its issuer (a stale plan is refused and planned again), so the numbers stored are
    /// strictly increasing, every revocation is kept, and the last CRL lists all of them.
    func testCRLNumbersStrictlyIncreaseAcrossReplicas() throws {
        let url = try database()
        let replicas = [try PostgresBrokerStore(url: url), try PostgresBrokerStore(url: url)]
        try replicas[0].saveHost(host())
        for i in 0..<24 { _ = try replicas[0].recordIssuance(attestation: issuance("i\(i)"), certificate: cert(String(format: "%02x", i))) }
        let numbers = Mutex<[UInt64]>([])
        let t0 = t0
        DispatchQueue.concurrentPerform(iterations: 24) { i in
            let store = replicas[i % 2]
            for _ in 0..<50 {
                do {
                    let plan = try store.revocationPlan(.serial(String(format: "%02x", i)), at: t0, reason: .keyCompromise)
                    let crls = plan.issuers.map { CRLRecord(issuer: $0.issuer, number: $0.number, der: Array($0.revoked.map(\.serial).joined(separator: ",").utf8),
                                                            thisUpdate: t0, nextUpdate: t0.addingTimeInterval(60)) }
                    try store.transaction { try $0.revoke(plan, crls: crls) }
                    numbers.withLock { $0.append(contentsOf: crls.map(\.number)) }
                    return
                } catch let e as VouchError where e.code == .revocationPlanStale {
                    continue
                } catch {
                    XCTFail("\(error)")
                    return
                }
            }
            XCTFail("revocation \(i) kept going stale")
        }
        XCTAssertEqual(numbers.withLock { $0 }.sorted(), Array(1...24), "each revocation took its own number")
        let last = try XCTUnwrap(replicas[1].currentCRL(issuer: "ca1"))
        XCTAssertEqual(last.number, 24)
        XCTAssertEqual(String(decoding: last.der, as: UTF8.self).split(separator: ",").count, 24, "the last CRL lists every revocation")
        XCTAssertEqual(try replicas[0].certificates().filter { $0.revokedAt == nil }, [])
    }

    /// Event ids are handed out in commit order: a reader following `events(after:)` while two
    /// replicas append never skips an event that commits after it read past its id.
    func testEventsAreReadInCommitOrderAcrossReplicas() throws {
        let url = try database()
        let replicas = [try PostgresBrokerStore(url: url), try PostgresBrokerStore(url: url)]
        let reader = try PostgresBrokerStore(url: url)
        let done = Mutex(false), seen = Mutex<[Int64]>([])
        let follower = Thread {
            var cursor: Int64 = 0
            while true {
                let finished = done.withLock { $0 }
                let batch = (try? reader.events(after: cursor, limit: 500)) ?? []
                seen.withLock { $0.append(contentsOf: batch.map(\.id)) }
                cursor = batch.last?.id ?? cursor
                if finished && batch.isEmpty { return }
            }
        }
        follower.start()
        let t0 = t0
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            for n in 0..<40 { _ = try? replicas[i % 2].appendEvent(type: .hostBlocked, data: ["n": "\(i).\(n)"], at: t0) }
        }
        done.withLock { $0 = true }
        while !follower.isFinished { usleep(10_000) }
        let all = try reader.events(after: 0, limit: 1000).map(\.id)
        XCTAssertEqual(all.count, 320)
        XCTAssertEqual(seen.withLock { $0 }, all, "the follower saw every event, in order, none skipped")
    }

    /// Two sequencers appending at the same size: one wins, the other gets `conflict`; two
    /// checkpoints of one size with different roots are never both stored.
    func testTheLogIsAppendedOnceAtEachSize() throws {
        let url = try database()
        let replicas = [try PostgresBrokerStore(url: url), try PostgresBrokerStore(url: url)]
        for n in 0..<4 { _ = try replicas[0].enqueueLogEntry(LogOutboxEntry(entry: [UInt8(n)])) }
        let pending = try replicas[1].pendingLogEntries(limit: 4)
        try replicas[0].appendLog(size: 0, entries: pending, hashes: [])
        assertCode(.conflict) { try replicas[1].appendLog(size: 0, entries: pending, hashes: []) }
        try replicas[0].publishCheckpoint(PublishedCheckpoint(size: 4, root: [1], note: "a", publishedAt: t0))
        assertCode(.conflict) { try replicas[1].publishCheckpoint(PublishedCheckpoint(size: 4, root: [2], note: "b", publishedAt: t0)) }
        XCTAssertEqual(try replicas[1].latestCheckpoint()?.root, [1])
    }

    /// The server killed (SIGKILL) and started again: the store's pooled and writer connections
    /// are replaced on their next use; what was acknowledged before the crash is there after it.
    func testTheStoreOutlivesAServerCrash() throws {
        let server = try PostgresServer(name: "crash")
        defer { server.shutdown() }
        let store = try PostgresBrokerStore(url: server.url)
        try store.saveHost(host())
        _ = try store.recordIssuance(attestation: issuance("before"), certificate: cert("01"))
        XCTAssertEqual(try store.certificates().count, 1)
        try server.kill9()
        assertCode(.database) { _ = try store.certificates() }
        try server.start()
        XCTAssertEqual(try store.certificates().map(\.serial), ["01"], "a read on a fresh connection")
        _ = try store.recordIssuance(attestation: issuance("after"), certificate: cert("02"))
        XCTAssertEqual(try store.certificates().map(\.serial), ["01", "02"])
        XCTAssertEqual(try store.host(id: hostID)?.version, 1)
    }

    /// A lease goes to one holder until it expires, is renewed in its epoch, changes hands with a
    /// new epoch; a store fenced by the old lease then writes nothing (`lease_lost`).
    func testLeasesFenceWritesOfAFormerHolder() throws {
        let url = try database()
        let a = try PostgresBrokerStore(url: url), b = try PostgresBrokerStore(url: url)
        let first = try XCTUnwrap(a.acquireLease(.logSequencer, holder: "a", ttl: 5, now: t0))
        XCTAssertEqual(first.epoch, 1)
        XCTAssertNil(try b.acquireLease(.logSequencer, holder: "b", ttl: 5, now: t0.addingTimeInterval(4)), "a holds it")
        XCTAssertEqual(try a.acquireLease(.logSequencer, holder: "a", ttl: 5, now: t0.addingTimeInterval(4))?.epoch, 1, "renewed in its epoch")
        XCTAssertNotNil(try b.acquireLease(.webhooks, holder: "b", ttl: 5, now: t0), "each job has its own lease")
        let fencedA = a.fenced(by: first)
        _ = try fencedA.enqueueLogEntry(LogOutboxEntry(entry: [1]))
        let second = try XCTUnwrap(b.acquireLease(.logSequencer, holder: "b", ttl: 5, now: t0.addingTimeInterval(9.5)), "expired: b takes it")
        XCTAssertEqual(second.epoch, 2)
        assertCode(.leaseLost) { _ = try fencedA.enqueueLogEntry(LogOutboxEntry(entry: [2])) }
        assertCode(.leaseLost) { try fencedA.appendLog(size: 0, entries: try a.pendingLogEntries(limit: 1), hashes: []) }
        XCTAssertEqual(try a.pendingLogEntries(limit: 10).count, 1, "the fenced writes changed nothing")
        try b.fenced(by: second).appendLog(size: 0, entries: try b.pendingLogEntries(limit: 1), hashes: [])
        try b.releaseLease(second)
        XCTAssertEqual(try a.acquireLease(.logSequencer, holder: "a", ttl: 5, now: t0.addingTimeInterval(10))?.epoch, 3, "released: taken at once")
    }

    /// Round claims: of two replicas claiming the same due rounds, each round goes to one; a round
    /// is claimable again once the claimant's `next` passed (it never reported back).
    func testARoundIsClaimedOnceUntilItsNextDueTime() throws {
        let url = try database()
        let a = try PostgresBrokerStore(url: url), b = try PostgresBrokerStore(url: url)
        let t0 = t0
        let rounds = (0..<20).map { RoundClaim(hostID: String(format: "%032x", $0), next: t0.addingTimeInterval(10)) }
        let got = Mutex<[String: Set<String>]>([:])
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            let store = i == 0 ? a : b
            if let claims = try? store.claimRounds(rounds, holder: "r\(i)", now: t0) { got.withLock { $0["r\(i)"] = claims.won } }
        }
        let won = got.withLock { $0 }
        XCTAssertEqual(won.count, 2)
        XCTAssertEqual(won["r0", default: []].union(won["r1", default: []]).count, 20, "every round claimed")
        XCTAssertTrue(won["r0", default: []].isDisjoint(with: won["r1", default: []]), "no round claimed twice")
        // A claim run again as it was (its answer lost, the pool's retry) finds its own claims won.
        XCTAssertEqual(try a.claimRounds(rounds, holder: "r0", now: t0).won, won["r0"], "a repeated claim is idempotent")
        // A new claim (a later tick: another `next`) before the stored due time wins nothing.
        let later = rounds.map { RoundClaim(hostID: $0.hostID, next: t0.addingTimeInterval(15)) }
        let again = try a.claimRounds(later, holder: "r0", now: t0.addingTimeInterval(5))
        XCTAssertEqual(again.won, [], "not due again before next")
        XCTAssertEqual(Set(again.elsewhere.values), [t0.addingTimeInterval(10)])
        try a.rescheduleRound(hostID: rounds[0].hostID, holder: "nobody", due: t0)
        XCTAssertEqual(try a.claimRounds([later[0]], holder: "r0", now: t0.addingTimeInterval(5)).won, [], "only the claimant reschedules")
        XCTAssertEqual(try b.claimRounds(rounds, holder: "r1", now: t0.addingTimeInterval(10)).won.count, 20, "a dead claimant's rounds come back at next")
    }

    /// A large append goes through pipelined executions (several chunks) and lands whole; one
    /// whose batch fails part-way (a subtree hash stored twice) lands not at all.
    func testPipelinedAppendsLandWholeOrNotAtAll() throws {
        let store = try PostgresBrokerStore(url: try database())
        for n in 0..<700 { _ = try store.enqueueLogEntry(LogOutboxEntry(entry: Array("e\(n)".utf8), certificate: n % 7 == 0 ? "c\(n)" : nil)) }
        let pending = try store.pendingLogEntries(limit: 1000)
        let hashes = (0..<700).map { LogNodeHash(level: 0, index: UInt64($0), hash: [UInt8(truncatingIfNeeded: $0), 1]) }
        var broken = hashes
        broken[600] = LogNodeHash(level: 0, index: 3, hash: [9])
        assertCode(.conflict) { try store.appendLog(size: 0, entries: pending, hashes: broken) }
        XCTAssertEqual(try store.logSize(), 0)
        XCTAssertEqual(try store.pendingLogEntries(limit: 1000).count, 700, "the failed append left the outbox as it was")
        try store.appendLog(size: 0, entries: pending, hashes: hashes)
        XCTAssertEqual(try store.logSize(), 700)
        XCTAssertEqual(try store.logEntries(from: 0, count: 700), (0..<700).map { Array("e\($0)".utf8) })
        XCTAssertEqual(try store.logHashRange(level: 0, from: 0, count: 700), hashes.map(\.hash))
        XCTAssertEqual(try store.logIndex(certificate: "c693"), 693)
        XCTAssertEqual(try store.pendingLogEntries(limit: 10), [])
    }
}
