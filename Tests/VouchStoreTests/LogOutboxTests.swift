import Foundation
import XCTest
import VouchBrokerTestSupport
import VouchCore
import VouchModel
import VouchPostgres
import VouchStore
import VouchTestSupport

/// The transparency log's outbox is written in the transaction of the thing it records, and the
/// log takes outbox rows only in order, at consecutive indices.
final class LogOutboxTests: XCTestCase {
    /// Entries named after what they record, so tests can read the outbox back.
    struct NamingMaker: LogEntryMaker {
        func issuance(_ a: AttestationRecord, certificate: CertificateRecord) throws -> LogOutboxEntry {
            LogOutboxEntry(entry: Array("issuance \(certificate.serial) \(a.id)".utf8), certificate: "cert-" + certificate.serial)
        }
        func verdict(_ r: AttestationRecord) throws -> LogOutboxEntry { LogOutboxEntry(entry: Array("verdict \(r.id) \(r.trusted)".utf8)) }
        func revocation(_ c: CertificateRecord) throws -> LogOutboxEntry { LogOutboxEntry(entry: Array("revocation \(c.serial)".utf8)) }
    }

    var dir: URL!
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let hostID = String(repeating: "a", count: 32)

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-outbox-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// Every test runs on both stores.
    static let kinds = ["sqlite", "postgres"]

    func open(_ kind: String) throws -> any BrokerStore & LogStore {
        let s: any BrokerStore & LogStore = kind == "sqlite"
            ? try SQLiteBrokerStore(path: dir.appendingPathComponent("vouch.db").path, logEntries: NamingMaker())
            : try PostgresBrokerStore(url: try PostgresServer.shared.get().createDatabase("outbox_\(UInt64.random(in: 0...UInt64.max))"),
                                      logEntries: NamingMaker())
        try s.saveHost(HostRecord(id: hostID, hostname: "h", ekPublic: [1], ekCertificate: [2], ekIssuer: "CN=x", akPublic: [3], akName: [4],
                                  akAlgorithm: "ecc-p256", akState: .active, activationDigest: nil, activationExpiresAt: nil,
                                  activationFailures: 0, registeredAt: t0, updatedAt: t0))
        return s
    }

    func outbox(_ s: any LogStore) throws -> [String] {
        try s.pendingLogEntries(limit: 100).map { String(decoding: $0.entry.entry, as: UTF8.self) }
    }

    func decision(trusted: Bool, nonce: String? = nil) -> AttestationRecord {
        AttestationRecord(hostID: hostID, at: t0, kind: .enrollment, trusted: trusted, codes: trusted ? [] : ["pcr_mismatch"], message: "m",
                          nonce: nonce, nonceExpiresAt: nonce.map { _ in t0.addingTimeInterval(60) })
    }

    func certificate(_ serial: String) -> CertificateRecord {
        CertificateRecord(serial: serial, hostID: hostID, agentName: "a", spiffeID: "spiffe://t/a", notBefore: t0, notAfter: t0.addingTimeInterval(900),
                          pem: "PEM", attestationID: 0, issuer: "ca1")
    }

    /// Every verdict, issuance and revocation leaves exactly its entry; an issuance's decision is
    /// logged once, by its issuance entry.
    func testEveryDecisionIssuanceAndRevocationIsQueued() throws {
        for kind in Self.kinds {
            let s = try open(kind)
            let refused = try s.recordAttestation(decision(trusted: false))
            let issued = try s.recordIssuance(attestation: decision(trusted: true), certificate: certificate("01"))
            let plan = try s.revocationPlan(.serial("01"), at: t0, reason: .keyCompromise)
            try s.transaction { tx in
                try tx.revoke(plan, crls: [CRLRecord(issuer: "ca1", number: 1, der: [1], thisUpdate: t0, nextUpdate: t0.addingTimeInterval(60))])
            }
            XCTAssertEqual(try outbox(s), ["verdict \(refused) false", "issuance 01 \(issued)", "revocation 01"])
        }
    }

    /// A transaction that fails leaves no entry: a decision refused by the store (reused nonce),
    /// and a unit of work that throws after recording a decision.
    func testAFailedTransactionLeavesNoEntry() throws {
        for kind in Self.kinds {
            let s = try open(kind)
            try s.recordAttestation(decision(trusted: false, nonce: "n1"))
            XCTAssertThrowsError(try s.recordAttestation(decision(trusted: false, nonce: "n1")))
            struct Abort: Error {}
            XCTAssertThrowsError(try s.transaction { tx in
                try tx.recordAttestation(decision(trusted: false))
                throw Abort()
            })
            _ = try s.recordIssuance(attestation: decision(trusted: true), certificate: certificate("02"))
            XCTAssertThrowsError(try s.recordIssuance(attestation: decision(trusted: true), certificate: certificate("02")), "serial reused")
            XCTAssertEqual(try outbox(s).count, 2, "only the committed decision and issuance are queued")
        }
    }

    /// The log takes the oldest outbox rows at the next indices, and nothing else.
    func testSequencingIsInOrderAndContiguous() throws {
        for kind in Self.kinds {
            let s = try open(kind)
            for n in 0..<5 { _ = try s.enqueueLogEntry(LogOutboxEntry(entry: [UInt8(n)])) }
            let pending = try s.pendingLogEntries(limit: 3)
            XCTAssertThrowsError(try s.appendLog(size: 1, entries: pending, hashes: [])) { XCTAssertEqual(($0 as? VouchError)?.code, .conflict) }
            XCTAssertThrowsError(try s.appendLog(size: 0, entries: Array(pending.dropFirst()), hashes: [])) {
                XCTAssertEqual(($0 as? VouchError)?.code, .conflict, "not the oldest rows")
            }
            try s.appendLog(size: 0, entries: pending, hashes: [LogNodeHash(level: 0, index: 0, hash: [9])])
            XCTAssertThrowsError(try s.appendLog(size: 0, entries: try s.pendingLogEntries(limit: 2), hashes: [])) {
                XCTAssertEqual(($0 as? VouchError)?.code, .conflict, "the log grew")
            }
            try s.appendLog(size: 3, entries: try s.pendingLogEntries(limit: 10), hashes: [])
            XCTAssertEqual(try s.logSize(), 5)
            XCTAssertEqual(try s.logEntries(from: 0, count: 10), (0..<5).map { [UInt8($0)] })
            XCTAssertEqual(try s.pendingLogEntries(limit: 10), [])
            XCTAssertEqual(try s.logHashes([(0, 0), (0, 1)]), [[9], nil])
        }
    }
}
