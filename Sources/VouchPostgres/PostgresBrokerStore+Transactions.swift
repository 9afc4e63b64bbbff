import Foundation
import VouchCore
import VouchModel

// The unit of work, revocation and CRLs, events and webhook deliveries, and API tokens of the
// PostgreSQL store.

extension PostgresBrokerStore {
    /// Runs `body` as one write transaction (see `PGWriter`). On PostgreSQL `body` may run more
    /// than once — again on a new connection when the old one was lost before COMMIT — so it must
    /// do nothing but read and write through the transaction it is given.
    public func transaction<T>(_ body: (any StoreTransaction) throws -> T) throws -> T {
        try withoutActuallyEscaping(body) { body in
            let run = UnsafeSendableBox(body)
            return try write { [self] c in try run.value(PostgresTransaction(store: self, c: c)) }
        }
    }

    // MARK: revocation and CRL

    /// The unrevoked certificates `target` names.
    static func named(_ c: PGConnection, _ target: RevocationTarget) throws -> [CertificateRecord] {
        let (clause, args): (String, [PGValue])
        switch target {
        case let .serial(s): (clause, args) = ("serial = $1", [.text(s)])
        case let .agent(h, a): (clause, args) = ("host_id = $1 AND agent_name = $2", [.text(h), .text(a)])
        case let .host(h): (clause, args) = ("host_id = $1", [.text(h)])
        }
        return try c.query("SELECT \(StoredRecords.certificateColumns) FROM certificates WHERE \(clause) AND revoked_at IS NULL ORDER BY serial", args, StoredRecords.certificate)
    }

    static func revoked(_ c: PGConnection, issuer: String) throws -> [CertificateRecord] {
        try c.query("SELECT \(StoredRecords.certificateColumns) FROM certificates WHERE revoked_at IS NOT NULL AND issuer = $1 ORDER BY serial", [.text(issuer)], StoredRecords.certificate)
    }

    static func crlNumber(_ c: PGConnection, issuer: String) throws -> UInt64 {
        try c.query("SELECT number FROM crls WHERE issuer = $1", [.text(issuer)]) { UInt64($0.int(0)) }.first ?? 0
    }

    public func revocationPlan(_ target: RevocationTarget, at: Date, reason: RevocationReason) throws -> RevocationPlan {
        // One snapshot for the whole plan (REPEATABLE READ, read only): the certificates named and
        // each issuer's revocations and CRL number as of one moment. `revoke` checks it again
        // under the write lock.
        try read { c in
            try c.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            defer { try? c.exec("COMMIT") }
            return try RevocationPlan.make(target: target, at: at, reason: reason, named: try Self.named(c, target)) { issuer in
                (try Self.revoked(c, issuer: issuer), try Self.crlNumber(c, issuer: issuer))
            }
        }
    }

    public func revocations(issuer: String) throws -> IssuerRevocations {
        try read { c in
            try c.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            defer { try? c.exec("COMMIT") }
            return IssuerRevocations(issuer: issuer, revoked: try Self.revoked(c, issuer: issuer), number: try Self.crlNumber(c, issuer: issuer) + 1)
        }
    }

    public func publishCRL(_ crl: CRLRecord) throws -> CRLRecord {
        try write { c in
            if let stored = try Self.loadCRL(c, issuer: crl.issuer), stored.number + 1 != crl.number { return stored }
            try Self.storeCRL(c, crl)
            return crl
        }
    }

    public func currentCRL(issuer: String) throws -> CRLRecord? {
        try read { c in try Self.loadCRL(c, issuer: issuer) }
    }

    static func loadCRL(_ c: PGConnection, issuer: String) throws -> CRLRecord? {
        try c.query("SELECT \(StoredRecords.crlColumns) FROM crls WHERE issuer = $1", [.text(issuer)], StoredRecords.crl).first
    }

    static func storeCRL(_ c: PGConnection, _ crl: CRLRecord) throws {
        try notifyChange(c)
        try c.run("""
        INSERT INTO crls (issuer, number, der, this_update, next_update) VALUES ($1,$2,$3,$4,$5)
        ON CONFLICT (issuer) DO UPDATE SET number=excluded.number, der=excluded.der, this_update=excluded.this_update, next_update=excluded.next_update
        """, [.text(crl.issuer), .int(Int64(crl.number)), .bytes(crl.der), .date(crl.thisUpdate), .date(crl.nextUpdate)])
    }

    // MARK: events and webhook deliveries

    @discardableResult
    func insertEvent(_ c: PGConnection, _ type: OutboxEventType, _ data: [String: String], at: Date) throws -> Int64 {
        try Self.notifyChange(c)
        return try c.query("INSERT INTO events (at, type, data) VALUES ($1,$2,$3) RETURNING id", [.date(at), .text(type.rawValue), .text(StoredJSON.event(data))]) {
            $0.int(0)
        }[0]
    }

    @discardableResult
    public func appendEvent(type: OutboxEventType, data: [String: String], at: Date) throws -> Int64 {
        try write { [self] c in try insertEvent(c, type, data, at: at) }
    }

    public func events(after id: Int64, limit: Int) throws -> [EventRecord] {
        try read { c in try c.query("SELECT id, at, type, data FROM events WHERE id > $1 ORDER BY id LIMIT $2", [.int(id), .int(Int64(limit))], StoredRecords.event) }
    }

    public func latestEventID() throws -> Int64 {
        try read { c in try c.query("SELECT COALESCE(MAX(id), 0) FROM events") { $0.int(0) }.first ?? 0 }
    }

    public func registerSubscriber(_ url: String) throws -> Int64 {
        try write { c in
            if let since = try c.query("SELECT since_event FROM subscribers WHERE url = $1", [.text(url)], { $0.int(0) }).first { return since }
            let last = try c.query("SELECT COALESCE(MAX(id), 0) FROM events") { $0.int(0) }.first ?? 0
            try c.run("INSERT INTO subscribers (url, since_event) VALUES ($1,$2)", [.text(url), .int(last)])
            return last
        }
    }

    public func undelivered(subscriber: String, limit: Int) throws -> [PendingDelivery] {
        try read { c in
            try c.query("""
            SELECT e.id, e.at, e.type, e.data, COALESCE(d.attempts, 0), d.next_attempt_at FROM events e
            JOIN subscribers s ON s.url = $1
            LEFT JOIN deliveries d ON d.subscriber = s.url AND d.event_id = e.id
            WHERE e.id > s.since_event AND d.delivered_at IS NULL
            ORDER BY e.id LIMIT $2
            """, [.text(subscriber), .int(Int64(limit))]) { r in
                PendingDelivery(event: StoredRecords.event(r), attempts: Int(r.int(4)), nextAttempt: r.optionalDate(5))
            }
        }
    }

    public func recordDelivery(subscriber: String, eventID: Int64, delivered: Bool, attempts: Int, nextAttempt: Date?, error: String?, at: Date) throws {
        try write { c in
            try c.run("""
            INSERT INTO deliveries (subscriber, event_id, attempts, delivered_at, next_attempt_at, last_error) VALUES ($1,$2,$3,$4,$5,$6)
            ON CONFLICT (subscriber, event_id) DO UPDATE SET attempts=excluded.attempts, delivered_at=excluded.delivered_at,
              next_attempt_at=excluded.next_attempt_at, last_error=excluded.last_error
            """, [.text(subscriber), .int(eventID), .int(Int64(attempts)), delivered ? .date(at) : .null, .date(nextAttempt),
                  .textOrNull(error.map { String($0.prefix(500)) })])
        }
    }

    public func undeliveredCount(subscriber: String) throws -> Int {
        try read { c in
            Int(try c.query("""
            SELECT COUNT(*) FROM events e JOIN subscribers s ON s.url = $1
            LEFT JOIN deliveries d ON d.subscriber = s.url AND d.event_id = e.id
            WHERE e.id > s.since_event AND d.delivered_at IS NULL
            """, [.text(subscriber)]) { $0.int(0) }.first ?? 0)
        }
    }

    // MARK: tokens

    public func saveToken(_ t: TokenRecord) throws {
        try write { c in
            try c.run("INSERT INTO tokens (id, name, scope, digest, created_at, revoked_at) VALUES ($1,$2,$3,$4,$5,$6)",
                      [.text(t.id), .text(t.name), .text(t.scope.rawValue), .bytes(t.digest), .date(t.createdAt), .date(t.revokedAt)])
        }
    }

    public func token(digest: [UInt8]) throws -> TokenRecord? {
        try read { c in try c.query("SELECT id, name, scope, digest, created_at, revoked_at FROM tokens WHERE digest = $1", [.bytes(digest)], StoredRecords.token).first }
    }

    public func tokens() throws -> [TokenRecord] {
        try read { c in try c.query("SELECT id, name, scope, digest, created_at, revoked_at FROM tokens ORDER BY created_at, id", [], StoredRecords.token) }
    }

    public func revokeToken(id: String, at: Date) throws -> Bool {
        try write { c in
            try c.run("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", [.date(at), .text(id)]) > 0
        }
    }
}

/// A non-Sendable closure carried into the writer, which runs it on the caller's behalf while the
/// caller waits (`transaction` returns only after it ran).
struct UnsafeSendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// One transaction on the writer's connection (only inside `PostgresBrokerStore.transaction`).
struct PostgresTransaction: StoreTransaction {
    let store: PostgresBrokerStore
    let c: PGConnection

    func host(id: String) throws -> HostRecord? {
        try c.query(PostgresBrokerStore.hostByID, [.text(id)], StoredRecords.host).first
    }

    func trust(hostID: String) throws -> HostTrust? {
        try c.query(PostgresBrokerStore.trustByHost, [.text(hostID)], StoredRecords.trust).first
    }

    func saveTrust(_ trust: HostTrust) throws { try PostgresBrokerStore.writeTrust(c, trust) }

    func setBlock(hostID: String, reason: String?) throws { try PostgresBrokerStore.setBlock(c, hostID: hostID, reason: reason) }

    func deleteHost(id: String) throws { try PostgresBrokerStore.deleteHost(c, id: id) }

    func recordAttestation(_ record: AttestationRecord) throws -> Int64 { try store.insertAttestation(c, record, logged: true) }

    func recordIssuance(attestation: AttestationRecord, certificate: CertificateRecord) throws -> Int64 {
        try store.recordIssuance(c, attestation: attestation, certificate: certificate)
    }

    func revoke(_ plan: RevocationPlan, crls: [CRLRecord]) throws {
        try plan.checkCurrent(named: try PostgresBrokerStore.named(c, plan.target), crls: crls) { try PostgresBrokerStore.crlNumber(c, issuer: $0) }
        try c.runBatch("UPDATE certificates SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3",
                       plan.certificates.map { [.date(plan.at), .int(Int64(plan.reason.rawValue)), .text($0.serial)] })
        for (type, data) in plan.events() { _ = try store.insertEvent(c, type, data, at: plan.at) }
        for cert in plan.certificates { try store.enqueue(c) { try $0.revocation(cert) } }
        for crl in crls { try PostgresBrokerStore.storeCRL(c, crl) }
    }

    func revokeCertificates(_ plan: RevocationPlan) throws {
        try plan.checkNamed(try PostgresBrokerStore.named(c, plan.target))
        try c.runBatch("UPDATE certificates SET revoked_at = $1, revocation_reason = $2 WHERE serial = $3",
                       plan.certificates.map { [.date(plan.at), .int(Int64(plan.reason.rawValue)), .text($0.serial)] })
        for (type, data) in plan.events() { _ = try store.insertEvent(c, type, data, at: plan.at) }
        for cert in plan.certificates { try store.enqueue(c) { try $0.revocation(cert) } }
    }

    func storeCRLs(_ crls: [CRLRecord]) throws {
        try RevocationPlan.checkNext(crls) { try PostgresBrokerStore.crlNumber(c, issuer: $0) }
        for crl in crls { try PostgresBrokerStore.storeCRL(c, crl) }
    }

    func appendEvent(type: OutboxEventType, data: [String: String], at: Date) throws -> Int64 {
        try store.insertEvent(c, type, data, at: at)
    }
}
