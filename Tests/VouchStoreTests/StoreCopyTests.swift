import Foundation
import XCTest
import VouchAPI
import VouchBrokerTestSupport
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel
import VouchPostgres
@testable import VouchStore
import VouchTestSupport

/// `vouch store copy`'s two halves: a SQLite broker filled through the store API (every table),
/// exported read-only and imported into a fresh PostgreSQL database, reads back the same through
/// every read API of the PostgreSQL store; serials continue above the copied ids; a second copy is
/// refused and changes nothing; a source at another schema, or with a value of the wrong type, is
/// refused by name.
final class StoreCopyTests: XCTestCase {
    /// Log entries named after what they record.
    typealias Maker = LogOutboxTests.NamingMaker

    var dir: URL!
    var path: String { dir.appendingPathComponent("vouch.db").path }
    /// Times with a fraction that a double must carry exactly.
    let t0 = Date(timeIntervalSince1970: 1_800_000_000.123456789)
    /// Host ids whose byte order differs from a case-insensitive order.
    let hostA = "A" + String(repeating: "a", count: 31), hostB = String(repeating: "b", count: 32), hostGone = "Z" + String(repeating: "z", count: 31)

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-copy-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func host(_ id: String, platform: HostPlatform = .tpm) -> HostRecord {
        HostRecord(id: id, hostname: "host-\(id.prefix(4))", ekPublic: [], ekCertificate: [0, 1, 0xFF], ekIssuer: "CN=EK CA, O=Ünïcode",
                   labels: ["env": "prod", "rack": "r1"], akPublic: [3], akName: [4, 0], akAlgorithm: "ecc-p256", akState: .active,
                   activationDigest: nil, activationExpiresAt: nil, activationFailures: 0, registeredAt: t0, updatedAt: t0.addingTimeInterval(0.5))
            .withPlatform(platform)
    }

    func decision(_ hostID: String, _ kind: AttestationKind, trusted: Bool = true, at seconds: Double) -> AttestationRecord {
        AttestationRecord(hostID: hostID, at: t0.addingTimeInterval(seconds), kind: kind, trusted: trusted, codes: trusted ? [] : ["pcr_mismatch", "policy"],
                          message: trusted ? "ok" : "PCR 7 differs", policyName: "production", policyVersion: 3, policySHA256: "sha256:" + String(repeating: "e", count: 64))
    }

    func certificate(_ serial: String, _ hostID: String) -> CertificateRecord {
        CertificateRecord(serial: serial, hostID: hostID, agentName: "agent-\(serial)", spiffeID: "spiffe://vouch.test/host/\(hostID)/agent/\(serial)",
                          notBefore: t0, notAfter: t0.addingTimeInterval(900.25), pem: "-----BEGIN CERTIFICATE-----\n\(serial)\n-----END CERTIFICATE-----\n",
                          attestationID: 0, issuer: "ca1")
    }

    /// A broker's database with rows in every copied table, written through the store API.
    func fill(_ s: SQLiteBrokerStore) throws -> (lastOutboxID: Int64, eventID: Int64) {
        try s.activateHost(host(hostA), trust: HostTrust(hostID: hostA, since: t0, mode: .pull, attesterURL: "https://a.test:9443", hostCertificateSerial: "0c",
                                                         hostKeyPin: "pin=", simulated: true), record: decision(hostA, .activation, at: 0))
        try s.activateHost(host(hostB, platform: .tdx), trust: HostTrust(hostID: hostB, since: t0, mode: .push), record: decision(hostB, .activation, at: 0.25))
        try s.saveHost(host(hostGone))
        try s.deleteHost(id: hostGone)
        try s.setBlock(hostID: hostB, reason: "keyCompromise")
        // Decisions: one using a nonce, one with claims and PCRs, a CPU TEE's with its evidence, a refusal.
        var verdict = decision(hostA, .reattestation, at: 1)
        verdict.nonce = String(repeating: "1", count: 64)
        verdict.nonceExpiresAt = t0.addingTimeInterval(61)
        try s.recordVerdict(verdict, trust: HostTrust(hostID: hostA, state: .trusted, since: t0.addingTimeInterval(1), mode: .pull, lastVerdictAt: t0.addingTimeInterval(1),
                                                       consecutiveFaults: 2, unreachableSince: t0, lastProblem: "timeout"))
        var claimed = decision(hostA, .reattestation, at: 2)
        claimed.claims = EvidenceClaims(boot: nil, model: nil, clock: ClockState(resetCount: 1, restartCount: 2, clock: 42, safe: true), rebootedSinceLastAttestation: false)
        claimed.pcrs = ["sha256": ["0": "00", "7": String(repeating: "ab", count: 32)]]
        claimed.pcrDigest = "cd"
        try s.recordAttestation(claimed)
        var tee = decision(hostB, .reattestation, at: 3)
        tee.claims = EvidenceClaims(tee: TEEClaims(kind: "tdx", measurement: "6a", measurementName: nil, tcb: "00", tcbStatus: "UpToDate", debug: false,
                                                   signer: "pck", platform: "00806f050000", rtmrs: nil, configId: nil, reportData: "00", warnings: [], simulated: true))
        tee.teeEvidence = TEEEvidenceCopy(kind: "tdx", evidence: TEEEvidenceFields(quote: "AQ=="), collateral: "e30=", simulated: true)
        try s.recordAttestation(tee)
        try s.recordAttestation(decision(hostA, .reattestation, trusted: false, at: 4))
        // Issuances, a revocation with its CRL and events.
        for serial in ["0a", "0b"] {
            var issued = decision(hostA, .enrollment, at: 5)
            issued.agentName = "agent-\(serial)"
            issued.serial = serial
            _ = try s.recordIssuance(attestation: issued, certificate: certificate(serial, hostA))
        }
        _ = try s.revoke(.serial("0a"), at: t0.addingTimeInterval(6), reason: .keyCompromise) { issuer, revoked, number in
            CRLRecord(issuer: issuer, number: number, der: [0x30, 0x03] + revoked.map { UInt8($0.serial, radix: 16)! }, thisUpdate: self.t0.addingTimeInterval(6),
                      nextUpdate: self.t0.addingTimeInterval(3606))
        }
        let eventID = try s.appendEvent(type: .hostBlocked, data: ["hostId": hostB, "reason": "keyCompromise"], at: t0.addingTimeInterval(7))
        _ = try s.registerSubscriber("https://hooks.test/vouch")
        _ = try s.appendEvent(type: .hostTrusted, data: ["hostId": hostA], at: t0.addingTimeInterval(8))
        try s.recordDelivery(subscriber: "https://hooks.test/vouch", eventID: eventID + 1, delivered: false, attempts: 2, nextAttempt: t0.addingTimeInterval(9),
                             error: "HTTP 503", at: t0.addingTimeInterval(8))
        // Tokens, one revoked.
        try s.saveToken(TokenRecord(id: "tok1", name: "ci", scope: .read, digest: Crypto.sha256(Array("one".utf8)), createdAt: t0))
        try s.saveToken(TokenRecord(id: "tok2", name: "admin", scope: .admin, digest: Crypto.sha256(Array("two".utf8)), createdAt: t0.addingTimeInterval(1)))
        XCTAssertTrue(try s.revokeToken(id: "tok2", at: t0.addingTimeInterval(2)))
        // The log: part of the outbox sequenced (its rows leave the outbox), a checkpoint with a cosignature.
        let extra = try s.enqueueLogEntry(LogOutboxEntry(entry: [0, 0xFF], certificate: "receipt:" + String(repeating: "f", count: 64)))
        let pending = try s.pendingLogEntries(limit: 100)
        let sequenced = Array(pending.prefix(pending.count - 2))
        try s.appendLog(size: 0, entries: sequenced, hashes: sequenced.indices.map { LogNodeHash(level: 0, index: UInt64($0), hash: Crypto.sha256([UInt8($0)])) }
                        + [LogNodeHash(level: 1, index: 0, hash: Crypto.sha256([0xAA]))])
        try s.publishCheckpoint(PublishedCheckpoint(size: UInt64(sequenced.count), root: Crypto.sha256([1]), note: "vouch.test/vouch-log\n\(sequenced.count)\nroot\n\n— sig\n",
                                                    publishedAt: t0.addingTimeInterval(10)))
        try s.addCosignature(size: UInt64(sequenced.count), line: "— witness.test cosig\n")
        return (extra, eventID + 1)
    }

    /// Every read API of the two stores agrees.
    func assertSameReads(_ a: any BrokerStore & LogStore, _ b: any BrokerStore & LogStore, file: StaticString = #filePath, line: UInt = #line) throws {
        func same<T: Equatable>(_ x: T, _ y: T, _ what: String) { XCTAssertEqual(x, y, what, file: file, line: line) }
        same(try a.hosts(), try b.hosts(), "hosts")
        XCTAssertEqual(try a.hosts().count, 2, file: file, line: line)
        for id in [hostA, hostB, hostGone] {
            same(try a.host(id: id), try b.host(id: id), "host \(id)")
            same(try a.trust(hostID: id), try b.trust(hostID: id), "trust \(id)")
            same(try a.latestAttestation(hostID: id), try b.latestAttestation(hostID: id), "latest attestation \(id)")
            same(try a.latestEvidence(hostID: id), try b.latestEvidence(hostID: id), "latest evidence \(id)")
            same(try a.lastTrustedClock(hostID: id)?.clock, try b.lastTrustedClock(hostID: id)?.clock, "clock \(id)")
            same(try a.lastTrustedClock(hostID: id)?.at, try b.lastTrustedClock(hostID: id)?.at, "clock time \(id)")
        }
        same(try a.trusts(), try b.trusts(), "trusts")
        same(try a.attestableHosts(), try b.attestableHosts(), "attestable hosts")
        same(try a.attestations(HistoryQuery(limit: 1000)), try b.attestations(HistoryQuery(limit: 1000)), "attestations")
        same(try a.attestations(HistoryQuery(hostID: hostA, trusted: false)), try b.attestations(HistoryQuery(hostID: hostA, trusted: false)), "refusals")
        same(try a.latestDecisionTime(), try b.latestDecisionTime(), "latest decision time")
        same(try a.nonceUsed(String(repeating: "1", count: 64)), try b.nonceUsed(String(repeating: "1", count: 64)), "nonce")
        same(try a.certificates(), try b.certificates(), "certificates")
        same(try a.certificate(serial: "0a"), try b.certificate(serial: "0a"), "revoked certificate")
        same(try a.currentCRL(issuer: "ca1"), try b.currentCRL(issuer: "ca1"), "CRL")
        same(try a.revocations(issuer: "ca1"), try b.revocations(issuer: "ca1"), "revocations")
        same(try a.events(after: 0, limit: 1000), try b.events(after: 0, limit: 1000), "events")
        same(try a.latestEventID(), try b.latestEventID(), "latest event")
        same(try a.undelivered(subscriber: "https://hooks.test/vouch", limit: 100), try b.undelivered(subscriber: "https://hooks.test/vouch", limit: 100), "undelivered")
        same(try a.undeliveredCount(subscriber: "https://hooks.test/vouch"), try b.undeliveredCount(subscriber: "https://hooks.test/vouch"), "undelivered count")
        same(try a.tokens(), try b.tokens(), "tokens")
        same(try a.token(digest: Crypto.sha256(Array("one".utf8))), try b.token(digest: Crypto.sha256(Array("one".utf8))), "token by digest")
        let size = try a.logSize()
        same(size, try b.logSize(), "log size")
        same(try a.logEntries(from: 0, count: 100), try b.logEntries(from: 0, count: 100), "log entries")
        same(try a.logHashRange(level: 0, from: 0, count: 100), try b.logHashRange(level: 0, from: 0, count: 100), "log hashes")
        same(try a.logHashes([(1, 0), (0, 1), (2, 0)]), try b.logHashes([(1, 0), (0, 1), (2, 0)]), "log nodes")
        same(try a.pendingLogEntries(limit: 100), try b.pendingLogEntries(limit: 100), "outbox")
        same(try a.logIndex(certificate: "cert-0b"), try b.logIndex(certificate: "cert-0b"), "issuance index")
        same(try a.pendingLogEntry(key: "receipt:" + String(repeating: "f", count: 64)), try b.pendingLogEntry(key: "receipt:" + String(repeating: "f", count: 64)), "pending key")
        for id in Int64(1)...12 { same(try a.logIndex(outboxID: id), try b.logIndex(outboxID: id), "index of outbox row \(id)") }
        same(try a.latestCheckpoint(), try b.latestCheckpoint(), "latest checkpoint")
        same(try a.checkpoint(size: size), try b.checkpoint(size: size), "checkpoint")
        XCTAssertEqual(try a.latestCheckpoint()?.cosignatures.count, 1, file: file, line: line)
    }

    /// A fresh database; `icu`: one whose text sorts by ICU's root collation ('b' before 'Z'), not
    /// by bytes, as a production database's locale would.
    func newDatabase(icu: Bool = false) throws -> (url: String, name: String) {
        let name = "copy_\(UInt64.random(in: 0...UInt64.max))"
        let server = try PostgresServer.shared.get()
        guard icu else { return (try server.createDatabase(name), name) }
        try server.psql("CREATE DATABASE \(name) TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und'", database: "postgres")
        return (server.url(database: name), name)
    }

    func testACopyReadsBackTheSameThroughEveryReadAPIAndSerialsContinueAboveIt() throws {
        let sqlite = try SQLiteBrokerStore(path: path, logEntries: Maker())
        let (lastOutboxID, lastEventID) = try fill(sqlite)
        let source = try SQLiteBrokerStore.Export(path: path)
        var dryRun = StoreCopyTally(sha256: Crypto.sha256)
        _ = try source.exportRows(chunkSize: 2) { dryRun.add($0, $1) }
        XCTAssertEqual(dryRun.tables.filter { $0.rows == 0 }.map(\.table), [], "the fixture fills every table")
        XCTAssertEqual(dryRun.tables.first { $0.table == "hosts" }?.rows, 3, "a deleted host's row is copied too")

        let (url, name) = try newDatabase(icu: true)
        let postgres = try PostgresBrokerStore(url: url, logEntries: Maker())
        // Chunks of 2 rows: every table of more than two rows continues from a keyset — hosts'
        // by text keys this database's collation orders otherwise than SQLite does.
        let copied = try postgres.importCopy(from: source, sha256: Crypto.sha256, chunkSize: 2)
        XCTAssertEqual(copied, dryRun.tables, "the copy's counts and digests are the source's, however it is chunked")
        XCTAssertEqual(try PostgresServer.shared.get().psql("SELECT string_agg(left(id, 1), '' ORDER BY id) FROM hosts", database: name), "AbZ")
        try assertSameReads(sqlite, postgres)

        // Serials continue above every copied id — the outbox's above the ids of rows already
        // sequenced and gone from it — and the log sequences the new row after the copied ones.
        let maxAttestation = try XCTUnwrap(sqlite.attestations(HistoryQuery(limit: 1)).first?.id)
        let attestation = try postgres.recordAttestation(decision(hostA, .reattestation, at: 20))
        XCTAssertGreaterThan(attestation, maxAttestation)
        XCTAssertEqual(try postgres.appendEvent(type: .hostUntrusted, data: ["hostId": hostA], at: t0.addingTimeInterval(21)), lastEventID + 1)
        let outbox = try postgres.enqueueLogEntry(LogOutboxEntry(entry: [7]))
        XCTAssertEqual(outbox, lastOutboxID + 2, "after the verdict's entry, which follows the last copied id")
        let size = try postgres.logSize()
        let pending = try postgres.pendingLogEntries(limit: 100)
        try postgres.appendLog(size: size, entries: pending, hashes: [])
        XCTAssertEqual(try postgres.logIndex(outboxID: outbox), size + UInt64(pending.count) - 1)
    }

    /// With the whole outbox sequenced (its rows deleted, so no copied row holds the largest id
    /// it gave out), the next outbox row still gets a new id: never one a log entry points at.
    func testTheOutboxSerialContinuesAboveRowsTheSourceAlreadyDeleted() throws {
        let sqlite = try SQLiteBrokerStore(path: path, logEntries: Maker())
        let (lastOutboxID, _) = try fill(sqlite)
        try sqlite.appendLog(size: try sqlite.logSize(), entries: try sqlite.pendingLogEntries(limit: 100), hashes: [])
        XCTAssertEqual(try sqlite.pendingLogEntries(limit: 100), [])
        let (url, _) = try newDatabase()
        let postgres = try PostgresBrokerStore(url: url)
        _ = try postgres.importCopy(from: try SQLiteBrokerStore.Export(path: path), sha256: Crypto.sha256)
        let next = try postgres.enqueueLogEntry(LogOutboxEntry(entry: [8]))
        XCTAssertEqual(next, lastOutboxID + 1)
        XCTAssertNil(try postgres.logIndex(outboxID: next))
        try postgres.appendLog(size: try postgres.logSize(), entries: try postgres.pendingLogEntries(limit: 10), hashes: [])
        XCTAssertEqual(try postgres.logIndex(outboxID: next), try sqlite.logSize())
    }

    func testASecondCopyIsRefusedAndChangesNothing() throws {
        _ = try fill(try SQLiteBrokerStore(path: path, logEntries: Maker()))
        let source = try SQLiteBrokerStore.Export(path: path)
        let (url, name) = try newDatabase()
        let postgres = try PostgresBrokerStore(url: url)
        _ = try postgres.importCopy(from: source, sha256: Crypto.sha256)
        let server = try PostgresServer.shared.get()
        let census = "SELECT " + StoreCopy.tables.map { "(SELECT count(*) FROM \($0.name))" }.joined(separator: " || ',' || ")
            + " || ',' || (SELECT last_value FROM events_id_seq) || ',' || (SELECT last_value FROM log_outbox_id_seq)"
        let before = try server.psql(census, database: name)
        XCTAssertThrowsError(try postgres.importCopy(from: source, sha256: Crypto.sha256)) { XCTAssertEqual(($0 as? VouchError)?.code, .conflict, "\($0)") }
        XCTAssertEqual(try server.psql(census, database: name), before)

        // One row anywhere is enough to refuse: a database holding only a token.
        let (other, _) = try newDatabase()
        let used = try PostgresBrokerStore(url: other)
        try used.saveToken(TokenRecord(id: "t", name: "n", scope: .read, digest: [1], createdAt: t0))
        XCTAssertThrowsError(try used.importCopy(from: source, sha256: Crypto.sha256)) { XCTAssertEqual(($0 as? VouchError)?.code, .conflict, "\($0)") }
        XCTAssertEqual(try used.tokens().count, 1)
        XCTAssertEqual(try used.hosts(), [])
    }

    func testTheSourceIsRefusedAtAnotherSchemaOrWithAValueOfTheWrongType() throws {
        XCTAssertThrowsError(try SQLiteBrokerStore.Export(path: path)) { XCTAssertEqual(($0 as? VouchError)?.code, .notFound, "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "nothing is created")

        // A database at schema 6 (the current vouchd would migrate it first).
        let old = try SQLiteDatabase(path: path)
        try old.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for step in SQLiteBrokerStore.migrations.prefix(6) { try old.exec(step) }
        try old.exec("INSERT INTO meta VALUES ('schema_version', '6')")
        XCTAssertThrowsError(try SQLiteBrokerStore.Export(path: path)) { e in
            XCTAssertEqual((e as? VouchError)?.code, .database, "\(e)")
            XCTAssertEqual((e as? VouchError)?.context["got"], "6")
        }

        // Migrated: exported; then a time written as text is refused, naming its column.
        _ = try SQLiteBrokerStore(path: path)
        try old.prepare("INSERT INTO tokens (id, name, scope, digest, created_at) VALUES ('t', 'n', 'read', x'01', 'yesterday')").run()
        let source = try SQLiteBrokerStore.Export(path: path)
        XCTAssertThrowsError(try source.exportRows(chunkSize: 10) { _, _ in }) { e in
            XCTAssertEqual((e as? VouchError)?.code, .database, "\(e)")
            XCTAssertEqual((e as? VouchError)?.context["column"], "created_at")
        }
        let (url, _) = try newDatabase()
        let postgres = try PostgresBrokerStore(url: url)
        XCTAssertThrowsError(try postgres.importCopy(from: source, sha256: Crypto.sha256)) { XCTAssertEqual(($0 as? VouchError)?.code, .database, "\($0)") }
        XCTAssertEqual(try postgres.tokens(), [], "the failed copy left nothing")
    }
}

/// The pure parts: how a source's values are checked against their columns, and the digest.
final class StoreCopyModelTests: XCTestCase {
    func testValuesAreCoercedOnlyWhereNothingChanges() {
        XCTAssertEqual(StoredColumnType.real.coerce(.int(5)), .real(5))
        XCTAssertEqual(StoredColumnType.integer.coerce(.real(5)), .int(5))
        XCTAssertNil(StoredColumnType.integer.coerce(.real(5.5)))
        XCTAssertNil(StoredColumnType.text.coerce(.bytes([0x41])))
        XCTAssertNil(StoredColumnType.bytes.coerce(.text("A")))
        XCTAssertEqual(StoredColumnType.bytes.coerce(.null), .null)
        let table = StoreCopy.tables.first { $0.name == "log_hashes" }!
        XCTAssertThrowsError(try table.checked([.null, .int(0), .bytes([1])])) { XCTAssertEqual(($0 as? VouchError)?.context["column"], "level") }
        XCTAssertThrowsError(try table.checked([.int(0), .int(0)])) { XCTAssertEqual(($0 as? VouchError)?.code, .database) }
    }

    func testTheDigestCoversOrderTypesAndBoundariesButNotChunking() {
        let table = StoreCopy.tables.first { $0.name == "subscribers" }!
        let rows: [[StoredValue]] = [[.text("a"), .int(1)], [.text("b"), .int(2)], [.text("c"), .int(3)]]
        func tally(_ chunks: [[[StoredValue]]]) -> TableTally {
            var t = StoreCopyTally(sha256: Crypto.sha256)
            for chunk in chunks { t.add(table, chunk) }
            return t.tables.first { $0.table == "subscribers" }!
        }
        let whole = tally([rows])
        XCTAssertEqual(whole.rows, 3)
        XCTAssertEqual(tally([Array(rows.prefix(1)), Array(rows.dropFirst())]), whole)
        XCTAssertNotEqual(tally([rows.reversed()]).digest, whole.digest)
        XCTAssertNotEqual(StoreCopy.encode([.int(1)]), StoreCopy.encode([.real(1)]))
        XCTAssertNotEqual(StoreCopy.encode([.text("ab"), .text("")]), StoreCopy.encode([.text("a"), .text("b")]))
        XCTAssertNotEqual(StoreCopy.encode([.null]), StoreCopy.encode([.bytes([])]))
        var a = StoreCopyTally(sha256: Crypto.sha256), b = StoreCopyTally(sha256: Crypto.sha256)
        a.add(table, rows)
        b.add(table, rows.dropLast() + [[.text("c"), .int(4)]])
        XCTAssertThrowsError(try a.verify(against: b)) { XCTAssertEqual(($0 as? VouchError)?.context["check"], "digest") }
        b.add(table, [[.text("d"), .int(5)]])
        XCTAssertThrowsError(try a.verify(against: b)) { XCTAssertEqual(($0 as? VouchError)?.context["check"], "rows") }
        XCTAssertNoThrow(try a.verify(against: a))
    }
}
