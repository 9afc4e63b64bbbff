import Foundation
import VouchCore
import VouchModel

// The unit of work, revocation and CRLs of the SQLite store.

extension SQLiteBrokerStore {
    /// Runs `body` in one transaction through group commit (its own savepoint inside the group's
    /// transaction: it commits whole or not at all, and is acknowledged only once on disk).
    public func transaction<T>(_ body: (any StoreTransaction) throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { body in
            try write { [self] db in try db.transaction { try body(SQLiteTransaction(store: self, db: db)) } }
        }
    }

    // MARK: revocation and CRL

    /// The unrevoked certificates `target` names.
    static func named(_ db: SQLiteDatabase, _ target: RevocationTarget) throws -> [CertificateRecord] {
        let (clause, args): (String, [SQLValue])
        switch target {
        case let .serial(s): (clause, args) = ("serial = ?", [.text(s)])
        case let .agent(h, a): (clause, args) = ("host_id = ? AND agent_name = ?", [.text(h), .text(a)])
        case let .host(h): (clause, args) = ("host_id = ?", [.text(h)])
        }
        return try db.prepare("SELECT \(StoredRecords.certificateColumns) FROM certificates WHERE \(clause) AND revoked_at IS NULL ORDER BY serial").query(args, StoredRecords.certificate)
    }

    static func revoked(_ db: SQLiteDatabase, issuer: String) throws -> [CertificateRecord] {
        try db.prepare("SELECT \(StoredRecords.certificateColumns) FROM certificates WHERE revoked_at IS NOT NULL AND issuer = ? ORDER BY serial").query([.text(issuer)], StoredRecords.certificate)
    }

    static func crlNumber(_ db: SQLiteDatabase, issuer: String) throws -> UInt64 {
        try db.prepare("SELECT number FROM crls WHERE issuer = ?").query([.text(issuer)]) { UInt64($0.int(0)) }.first ?? 0
    }

    public func revocationPlan(_ target: RevocationTarget, at: Date, reason: RevocationReason) throws -> RevocationPlan {
        try with { db in
            try RevocationPlan.make(target: target, at: at, reason: reason, named: try Self.named(db, target)) { issuer in
                (try Self.revoked(db, issuer: issuer), try Self.crlNumber(db, issuer: issuer))
            }
        }
    }

    public func revocations(issuer: String) throws -> IssuerRevocations {
        try with { db in
            IssuerRevocations(issuer: issuer, revoked: try Self.revoked(db, issuer: issuer), number: try Self.crlNumber(db, issuer: issuer) + 1)
        }
    }

    public func publishCRL(_ crl: CRLRecord) throws -> CRLRecord {
        try write { db in
            try db.transaction {
                if let stored = try Self.loadCRL(db, issuer: crl.issuer), stored.number + 1 != crl.number { return stored }
                try Self.storeCRL(db, crl)
                return crl
            }
        }
    }

    public func currentCRL(issuer: String) throws -> CRLRecord? {
        try with { db in try Self.loadCRL(db, issuer: issuer) }
    }

    static func loadCRL(_ db: SQLiteDatabase, issuer: String) throws -> CRLRecord? {
        try db.prepare("SELECT \(StoredRecords.crlColumns) FROM crls WHERE issuer = ?").query([.text(issuer)], StoredRecords.crl).first
    }

    static func storeCRL(_ db: SQLiteDatabase, _ crl: CRLRecord) throws {
        try db.prepare("""
        INSERT INTO crls (issuer, number, der, this_update, next_update) VALUES (?,?,?,?,?)
        ON CONFLICT(issuer) DO UPDATE SET number=excluded.number, der=excluded.der, this_update=excluded.this_update, next_update=excluded.next_update
        """).run([.text(crl.issuer), .int(Int64(crl.number)), .blob(crl.der), .real(crl.thisUpdate.timeIntervalSince1970), .real(crl.nextUpdate.timeIntervalSince1970)])
    }
}

/// One transaction on the store's connection (used only inside `SQLiteBrokerStore.transaction`,
/// under the connection lock).
struct SQLiteTransaction: StoreTransaction {
    let store: SQLiteBrokerStore
    let db: SQLiteDatabase

    func host(id: String) throws -> HostRecord? {
        try db.prepare("SELECT \(StoredRecords.hostColumns) FROM hosts WHERE id = ? AND deleted_at IS NULL").query([.text(id)], StoredRecords.host).first
    }

    func trust(hostID: String) throws -> HostTrust? {
        try db.prepare("SELECT \(StoredRecords.trustColumns) FROM host_trust WHERE host_id = ?").query([.text(hostID)], StoredRecords.trust).first
    }

    func saveTrust(_ trust: HostTrust) throws { try store.writeTrust(db, trust) }

    func setBlock(hostID: String, reason: String?) throws { try SQLiteBrokerStore.setBlock(db, hostID: hostID, reason: reason) }

    func deleteHost(id: String) throws { try SQLiteBrokerStore.deleteHost(db, id: id) }

    func recordAttestation(_ record: AttestationRecord) throws -> Int64 { try store.insertAttestation(db, record, logged: true) }

    func recordIssuance(attestation: AttestationRecord, certificate: CertificateRecord) throws -> Int64 {
        try store.recordIssuance(db, attestation: attestation, certificate: certificate)
    }

    func revoke(_ plan: RevocationPlan, crls: [CRLRecord]) throws {
        try plan.checkCurrent(named: try SQLiteBrokerStore.named(db, plan.target), crls: crls) { try SQLiteBrokerStore.crlNumber(db, issuer: $0) }
        let update = try db.prepare("UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ?")
        for c in plan.certificates {
            try update.run([.real(plan.at.timeIntervalSince1970), .int(Int64(plan.reason.rawValue)), .text(c.serial)])
        }
        for (type, data) in plan.events() { try store.insertEvent(db, type, data, at: plan.at) }
        for c in plan.certificates { try store.enqueue(db) { try $0.revocation(c) } }
        for crl in crls { try SQLiteBrokerStore.storeCRL(db, crl) }
    }

    func revokeCertificates(_ plan: RevocationPlan) throws {
        try plan.checkNamed(try SQLiteBrokerStore.named(db, plan.target))
        let update = try db.prepare("UPDATE certificates SET revoked_at = ?, revocation_reason = ? WHERE serial = ?")
        for c in plan.certificates {
            try update.run([.real(plan.at.timeIntervalSince1970), .int(Int64(plan.reason.rawValue)), .text(c.serial)])
        }
        for (type, data) in plan.events() { try store.insertEvent(db, type, data, at: plan.at) }
        for c in plan.certificates { try store.enqueue(db) { try $0.revocation(c) } }
    }

    func storeCRLs(_ crls: [CRLRecord]) throws {
        try RevocationPlan.checkNext(crls) { try SQLiteBrokerStore.crlNumber(db, issuer: $0) }
        for crl in crls { try SQLiteBrokerStore.storeCRL(db, crl) }
    }

    func appendEvent(type: OutboxEventType, data: [String: String], at: Date) throws -> Int64 {
        try store.insertEvent(db, type, data, at: at)
        return db.lastInsertID
    }
}
