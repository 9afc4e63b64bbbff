import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchModel
@testable import VouchStore

/// Migration 4 re-keys hosts: the id becomes the hash of the EK key as certified, and hosts that
/// were one TPM under several encodings of its EK public area become one.
final class MigrationTests: XCTestCase {
    func testHostsAreRekeyedAndReencodingsMergeKeepingTheirBlock() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-migration-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("vouch.db").path
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let ca = try CertificateAuthority.create(commonName: "EK CA", key: try PrivateKey.generate(), notBefore: now, notAfter: now.addingTimeInterval(86400))
        let ekKey = try PrivateKey.generate()
        let ekCert = try ca.issue(publicKey: try ekKey.publicKey, profile: LeafProfile(subjectCommonName: "ek", notBefore: now,
                                                                                        notAfter: now.addingTimeInterval(3600), usage: .tlsServer)).der
        let newID = try EKIdentity.hostID(ekCertificateDER: ekCert)

        // Four rows for one TPM (ids from encodings of its EK public area, the old derivation): an
        // older one blocked by an operator, the live active one, a newer one left pending by an
        // attacker who re-registered the EK (the old flow allowed it), and the newest, deleted.
        // Each has history and a certificate.
        _ = try SQLiteBrokerStore(path: path)
        let db = try SQLiteDatabase(path: path)
        let oldIDs = ["1", "2", "3", "4"].map { String(repeating: $0, count: 32) }
        for (i, id) in oldIDs.enumerated() {
            try db.prepare("""
            INSERT INTO hosts (id, hostname, ek_public, ek_certificate, ek_issuer, ak_public, ak_name, ak_algorithm, ak_state,
              activation_failures, registered_at, updated_at, blocked_reason, deleted_at) VALUES (?,?,?,?,?,?,?,?,?,0,?,?,?,?)
            """).run([.text(id), .text("h\(i)"), .blob([UInt8(i)]), .blob(ekCert), .text("CN=EK CA"), .blob([1]), .blob([2]), .text("ecc-p256"),
                      .text(i == 2 ? "pending" : "active"), .real(now.timeIntervalSince1970), .real(now.timeIntervalSince1970 + Double(i)),
                      i == 0 ? .text("keyCompromise") : .null, i == 3 ? .real(now.timeIntervalSince1970) : .null])
            try db.prepare("INSERT INTO host_trust (host_id, state, since, mode) VALUES (?, 'trusted', ?, 'push')").run([.text(id), .real(now.timeIntervalSince1970)])
            try db.prepare("INSERT INTO attestations (host_id, at, kind, trusted, codes, message) VALUES (?, ?, 'enrollment', 1, '', 'm')")
                .run([.text(id), .real(now.timeIntervalSince1970)])
            try db.prepare("""
            INSERT INTO certificates (serial, host_id, agent_name, spiffe_id, not_before, not_after, pem, attestation_id)
            VALUES (?, ?, 'a', 's', 0, 1, 'PEM', ?)
            """).run([.text("serial\(i)"), .text(id), .int(db.lastInsertID)])
        }
        try db.transaction { try SQLiteBrokerStore.rekeyHosts(db) }

        let store = try SQLiteBrokerStore(path: path)
        let hosts = try store.hosts()
        XCTAssertEqual(hosts.map(\.id), [newID], "one TPM, one live host")
        XCTAssertEqual(hosts.first?.hostname, "h1", "the live, activated row survives, not the pending or the deleted one")
        XCTAssertNotNil(hosts.first?.blockedReason, "a block on any encoding blocks the merged host")
        XCTAssertEqual(Set(try store.certificates().map(\.hostID)), [newID])
        XCTAssertEqual(try store.certificates().count, 4)
        XCTAssertEqual(try store.attestations(HistoryQuery(hostID: newID)).count, 4)
        XCTAssertEqual(try store.trusts().map(\.hostID), [newID])
        XCTAssertEqual(try db.prepare("PRAGMA foreign_key_check").query([]) { $0.text(0) }, [])
    }
}

/// Migration 5 adds what each host attests with: every host before is a TPM's, and a CPU TEE
/// host's platform round-trips.
final class PlatformMigrationTests: XCTestCase {
    func testHostsBeforeAreTPMsAndATEEHostKeepsItsPlatform() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-migration5-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("vouch.db").path
        // A database at schema 4 with one host.
        let db = try SQLiteDatabase(path: path)
        try db.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for step in SQLiteBrokerStore.migrations.prefix(4) { try db.exec(step) }
        try db.exec("INSERT INTO meta VALUES ('schema_version', '4')")
        let tpmID = String(repeating: "1", count: 32), teeID = String(repeating: "2", count: 32)
        try db.prepare("""
        INSERT INTO hosts (id, hostname, ek_public, ek_certificate, ek_issuer, ak_public, ak_name, ak_algorithm, ak_state,
          activation_failures, registered_at, updated_at) VALUES (?, 'old', x'01', x'02', 'CN=EK CA', x'03', x'04', 'ecc-p256', 'active', 0, 0, 0)
        """).run([.text(tpmID)])

        let store = try SQLiteBrokerStore(path: path)
        XCTAssertEqual(try store.host(id: tpmID)?.platform, .tpm)
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var tee = HostRecord(id: teeID, hostname: "cvm", ekPublic: [UInt8](repeating: 7, count: 64), ekCertificate: [], ekIssuer: "CN=SEV-Milan",
                             akPublic: [0x30], akName: [1], akAlgorithm: "ec-p256", akState: .active, activationDigest: nil, activationExpiresAt: nil,
                             activationFailures: 0, registeredAt: now, updatedAt: now)
        tee.platform = .sevSNP
        try store.saveHost(tee)
        XCTAssertEqual(try store.host(id: teeID)?.platform, .sevSNP)
        XCTAssertEqual(try store.host(id: teeID)?.ekPublic, tee.ekPublic)
        XCTAssertEqual(try db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").query([]) { $0.text(0) }, ["\(SQLiteBrokerStore.schemaVersion)"])
        XCTAssertEqual(HostPlatform(stored: "nitro"), .tpm, "an unknown stored platform reads as a TPM host (its evidence cannot verify)")
    }
}
