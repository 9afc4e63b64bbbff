import Foundation
import Synchronization
import VouchAPI
import VouchAttestation
import VouchCore
import VouchEventLog
import VouchModel

/// `BrokerStore` on an embedded SQLite database in WAL mode with synchronous=FULL: an
/// acknowledged write survives a crash or power loss. One writing connection, serialized by a
/// mutex, with group commit; reads on read connections of their own (`SQLiteReaders`).
public final class SQLiteBrokerStore: BrokerStore, LogStore {
    private let lock = Mutex(())
    private let db: SQLiteDatabase
    /// Nil for an in-memory database, which only its one connection can see: reads then take the
    /// writer's lock.
    private let readers: SQLiteReaders?
    /// Makes the transparency-log entry of each decision, issuance and revocation, written to the
    /// log outbox in the transaction that records it; nil: no log is kept.
    let logEntries: (any LogEntryMaker)?
    /// Migrations in order; `migrations[i]` takes a database from version i to i + 1. A database
    /// newer than this build is refused rather than misread.
    public static let migrations: [String] = [
        // 1: the walking skeleton's schema
        """
        CREATE TABLE IF NOT EXISTS hosts (
          id TEXT PRIMARY KEY, hostname TEXT NOT NULL, ek_public BLOB NOT NULL, ek_certificate BLOB NOT NULL,
          ek_issuer TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '{}', ak_public BLOB NOT NULL, ak_name BLOB NOT NULL, ak_algorithm TEXT NOT NULL,
          ak_state TEXT NOT NULL CHECK (ak_state IN ('pending','active')), activation_digest BLOB, activation_expires_at REAL,
          activation_failures INTEGER NOT NULL DEFAULT 0, registered_at REAL NOT NULL, updated_at REAL NOT NULL, blocked_reason TEXT);
        CREATE TABLE IF NOT EXISTS challenges (
          nonce TEXT PRIMARY KEY, host_id TEXT NOT NULL REFERENCES hosts(id), created_at REAL NOT NULL,
          expires_at REAL NOT NULL, used_at REAL);
        CREATE INDEX IF NOT EXISTS challenges_expiry ON challenges(expires_at);
        CREATE TABLE IF NOT EXISTS attestations (
          id INTEGER PRIMARY KEY AUTOINCREMENT, host_id TEXT NOT NULL, at REAL NOT NULL, kind TEXT NOT NULL,
          trusted INTEGER NOT NULL, codes TEXT NOT NULL, message TEXT NOT NULL, agent_name TEXT, nonce TEXT,
          policy_name TEXT, policy_version INTEGER, policy_sha256 TEXT, pcr_digest TEXT, serial TEXT, claims TEXT, pcrs TEXT);
        CREATE INDEX IF NOT EXISTS attestations_host ON attestations(host_id, id);
        CREATE TABLE IF NOT EXISTS certificates (
          serial TEXT PRIMARY KEY, host_id TEXT NOT NULL REFERENCES hosts(id), agent_name TEXT NOT NULL,
          spiffe_id TEXT NOT NULL, not_before REAL NOT NULL, not_after REAL NOT NULL, pem TEXT NOT NULL,
          attestation_id INTEGER NOT NULL REFERENCES attestations(id), revoked_at REAL, revocation_reason INTEGER,
          issuer TEXT NOT NULL DEFAULT '');
        CREATE INDEX IF NOT EXISTS certificates_agent ON certificates(host_id, agent_name);
        CREATE TABLE IF NOT EXISTS crls (
          issuer TEXT PRIMARY KEY, number INTEGER NOT NULL, der BLOB NOT NULL,
          this_update REAL NOT NULL, next_update REAL NOT NULL);
        CREATE TABLE IF NOT EXISTS events (
          id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS subscribers (url TEXT PRIMARY KEY, since_event INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS deliveries (
          subscriber TEXT NOT NULL, event_id INTEGER NOT NULL REFERENCES events(id), attempts INTEGER NOT NULL,
          delivered_at REAL, next_attempt_at REAL, last_error TEXT, PRIMARY KEY (subscriber, event_id));
        """,
        // 2: continuous re-attestation (trust state per host), host deletion, history by time
        """
        ALTER TABLE hosts ADD COLUMN deleted_at REAL;
        CREATE TABLE host_trust (
          host_id TEXT PRIMARY KEY REFERENCES hosts(id), state TEXT NOT NULL, since REAL NOT NULL, mode TEXT NOT NULL,
          attester_url TEXT, host_cert_serial TEXT, host_key_pin TEXT, simulated INTEGER NOT NULL DEFAULT 0,
          last_verdict_at REAL, last_contact_at REAL, failures INTEGER NOT NULL DEFAULT 0, faults INTEGER NOT NULL DEFAULT 0,
          unreachable_since REAL, last_problem TEXT);
        CREATE INDEX attestations_at ON attestations(at);
        """,
        // 3: scoped API tokens (only digests are stored)
        """
        CREATE TABLE tokens (
          id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL CHECK (scope IN ('read','admin')),
          digest BLOB NOT NULL UNIQUE, created_at REAL NOT NULL, revoked_at REAL);
        """,
        // 4: optimistic concurrency on hosts (a block is never lost to a concurrent activation);
        // challenge nonces are stateless until used (only used ones are stored, with the decision)
        """
        ALTER TABLE hosts ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
        DROP TABLE challenges;
        CREATE TABLE used_nonces (nonce TEXT PRIMARY KEY, host_id TEXT NOT NULL, expires_at REAL NOT NULL);
        CREATE INDEX used_nonces_expiry ON used_nonces(expires_at);
        """,
        // 5: CPU TEE hosts (SEV-SNP, TDX): what each host attests with; every host before is a TPM's
        """
        ALTER TABLE hosts ADD COLUMN platform TEXT NOT NULL DEFAULT 'tpm';
        """,
        // 6: each CPU TEE host's latest authenticated report or quote (JSON `TEEEvidenceCopy`), with
        // the decision it came with, so that it can be verified again offline
        """
        CREATE TABLE tee_evidence (
          host_id TEXT PRIMARY KEY REFERENCES hosts(id), attestation_id INTEGER NOT NULL REFERENCES attestations(id), evidence TEXT NOT NULL);
        """,
        // 7: the transparency log (SQLiteBrokerStore+Log.swift)
        logMigration,
    ]
    public static var schemaVersion: Int { migrations.count }

    public init(path: String, logEntries: (any LogEntryMaker)? = nil) throws {
        self.logEntries = logEntries
        let db = try SQLiteDatabase(path: path)
        try db.transaction {
            try db.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            let text = try db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").query { $0.text(0) }.first
            guard let version = Int(text ?? "0"), version >= 0 else {
                throw VouchError(.database, "database schema version is unreadable", context: ["got": text ?? ""])
            }
            guard version <= Self.schemaVersion else {
                throw VouchError(.database, "database schema is newer than this vouchd supports", context: ["expected": "\(Self.schemaVersion)", "got": "\(version)"])
            }
            for (i, step) in Self.migrations.enumerated().dropFirst(version) {
                try db.exec(step)
                if i + 1 == 4 { try Self.rekeyHosts(db) }
            }
            try db.prepare("INSERT INTO meta(key, value) VALUES ('schema_version', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                .run([.text("\(Self.schemaVersion)")])
        }
        self.db = db
        readers = path.isEmpty || path == ":memory:" || path.hasPrefix("file::memory:") ? nil : SQLiteReaders(path: path)
    }

    /// Migration 4's data step: host ids become the hash of the EK key as certified (see
    /// `EKIdentity.hostID`) instead of the EK public area as sent. Every host row with an EK
    /// certificate gets its new id, and its trust record, attestations, certificates and used
    /// nonces follow. Rows that were one TPM under several encodings become one host: the row that
    /// survives is the live one (not deleted), with an activated AK, most recently updated — never
    /// a deleted row nor one left pending by someone who re-registered the EK; the others' history
    /// merges into it, and a block on any of them blocks the merged host. A row whose stored EK
    /// certificate no longer parses keeps its id (no registration can reach it again).
    static func rekeyHosts(_ db: SQLiteDatabase) throws {
        try db.exec("PRAGMA defer_foreign_keys = ON")
        let rows = try db.prepare("""
        SELECT id, ek_certificate, blocked_reason FROM hosts WHERE length(ek_certificate) > 0
        ORDER BY deleted_at IS NOT NULL, ak_state != 'active', updated_at DESC, id
        """).query([]) { (id: $0.text(0), cert: $0.blob(1), blocked: $0.optionalText(2)) }
        for row in rows {
            guard let newID = try? EKIdentity.hostID(ekCertificateDER: row.cert), newID != row.id else { continue }
            let taken = try db.prepare("SELECT blocked_reason FROM hosts WHERE id = ?").query([.text(newID)]) { [$0.optionalText(0)] }.first
            if let taken {
                // Another encoding of the same TPM already holds the id: merge into it.
                if taken[0] == nil, let reason = row.blocked {
                    try db.prepare("UPDATE hosts SET blocked_reason = ?, version = version + 1 WHERE id = ?").run([.text(reason), .text(newID)])
                }
                let trusted = try db.prepare("SELECT 1 FROM host_trust WHERE host_id = ?").query([.text(newID)]) { _ in true }
                if trusted.isEmpty {
                    try db.prepare("UPDATE host_trust SET host_id = ? WHERE host_id = ?").run([.text(newID), .text(row.id)])
                } else {
                    try db.prepare("DELETE FROM host_trust WHERE host_id = ?").run([.text(row.id)])
                }
            } else {
                try db.prepare("UPDATE hosts SET id = ? WHERE id = ?").run([.text(newID), .text(row.id)])
                try db.prepare("UPDATE host_trust SET host_id = ? WHERE host_id = ?").run([.text(newID), .text(row.id)])
            }
            for table in ["attestations", "certificates", "used_nonces"] {
                try db.prepare("UPDATE \(table) SET host_id = ? WHERE host_id = ?").run([.text(newID), .text(row.id)])
            }
            if taken != nil { try db.prepare("DELETE FROM hosts WHERE id = ?").run([.text(row.id)]) }
        }
    }

    /// Reads: a read connection, in a read transaction (one snapshot of the last commit).
    func with<T>(_ body: (SQLiteDatabase) throws -> T) throws -> T {
        if let readers { return try readers.with(body) }
        return try lock.withLock { _ in try body(db) }
    }

    private let group = GroupCommit()
    /// Writes: through group commit, so writers arriving together share one transaction and one
    /// fsync (each still atomic on its own, and acknowledged only once committed).
    func write<T>(_ body: @escaping (SQLiteDatabase) throws -> T) throws -> T {
        try group.write(connection: lock, db: db, body)
    }

    // MARK: hosts

    public func saveHost(_ h: HostRecord) throws {
        try write { db in try db.transaction { try Self.writeHost(db, h) } }
    }

    public func activateHost(_ host: HostRecord, trust: HostTrust, record: AttestationRecord) throws {
        try write { [self] db in
            try db.transaction {
                try Self.writeHost(db, host)
                try writeTrust(db, trust, identity: true)
                _ = try insertAttestation(db, record, logged: true)
            }
        }
    }

    public func setBlock(hostID: String, reason: String?) throws {
        try write { db in try Self.setBlock(db, hostID: hostID, reason: reason) }
    }

    static func setBlock(_ db: SQLiteDatabase, hostID: String, reason: String?) throws {
        try db.prepare("UPDATE hosts SET blocked_reason = ?, version = version + 1 WHERE id = ?")
            .run([reason.map { .text($0) } ?? .null, .text(hostID)])
        guard db.changes == 1 else { throw VouchError(.notFound, "no such host", context: ["hostId": hostID]) }
    }

    /// The version-checked write (inside a transaction): the row's current version must be the
    /// record's (a deleted row counts as absent, version 0); a blocked row is never overwritten.
    private static func writeHost(_ db: SQLiteDatabase, _ h: HostRecord) throws {
        let current = try db.prepare("SELECT version, deleted_at IS NOT NULL, blocked_reason FROM hosts WHERE id = ?")
            .query([.text(h.id)]) { r in (version: r.int(0), deleted: r.int(1) != 0, blocked: r.optionalText(2)) }.first
        if let current, let reason = current.blocked, h.blockedReason == nil {
            throw VouchError(.hostRevoked, "this host was revoked by an operator", context: ["hostId": h.id, "reason": reason])
        }
        let stored = current.map { $0.deleted ? 0 : $0.version } ?? 0
        guard stored == h.version else {
            throw VouchError(.conflict, "the host changed since it was read", context: ["hostId": h.id, "expected": "\(h.version)", "got": "\(stored)"])
        }
        try db.prepare("""
        INSERT INTO hosts (id, hostname, ek_public, ek_certificate, ek_issuer, labels, ak_public, ak_name, ak_algorithm, ak_state,
          activation_digest, activation_expires_at, activation_failures, registered_at, updated_at, blocked_reason, platform, version)
        VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1)
        ON CONFLICT(id) DO UPDATE SET hostname=excluded.hostname, ek_public=excluded.ek_public, ek_certificate=excluded.ek_certificate,
          ek_issuer=excluded.ek_issuer, labels=excluded.labels, ak_public=excluded.ak_public, ak_name=excluded.ak_name, ak_algorithm=excluded.ak_algorithm,
          ak_state=excluded.ak_state, activation_digest=excluded.activation_digest, activation_expires_at=excluded.activation_expires_at,
          activation_failures=excluded.activation_failures, registered_at=excluded.registered_at, updated_at=excluded.updated_at,
          blocked_reason=excluded.blocked_reason, platform=excluded.platform, deleted_at=NULL, version=hosts.version + 1
        """).run([.text(h.id), .text(h.hostname), .blob(h.ekPublic), .blob(h.ekCertificate), .text(h.ekIssuer), .text(StoredJSON.encode(h.labels)), .blob(h.akPublic),
                  .blob(h.akName), .text(h.akAlgorithm), .text(h.akState.rawValue), h.activationDigest.map { .blob($0) } ?? .null,
                  h.activationExpiresAt.map { .real($0.timeIntervalSince1970) } ?? .null, .int(Int64(h.activationFailures)),
                  .real(h.registeredAt.timeIntervalSince1970), .real(h.updatedAt.timeIntervalSince1970), h.blockedReason.map { .text($0) } ?? .null,
                  .text(h.platform.rawValue)])
    }

    public func host(id: String) throws -> HostRecord? {
        try with { db in try db.prepare("SELECT \(StoredRecords.hostColumns) FROM hosts WHERE id = ? AND deleted_at IS NULL").query([.text(id)], StoredRecords.host).first }
    }

    public func hosts() throws -> [HostRecord] {
        try with { db in try db.prepare("SELECT \(StoredRecords.hostColumns) FROM hosts WHERE deleted_at IS NULL ORDER BY registered_at, id").query([], StoredRecords.host) }
    }

    public func deleteHost(id: String) throws {
        try write { db in try db.transaction { try Self.deleteHost(db, id: id) } }
    }

    static func deleteHost(_ db: SQLiteDatabase, id: String) throws {
        try db.prepare("DELETE FROM host_trust WHERE host_id = ?").run([.text(id)])
        try db.prepare("DELETE FROM tee_evidence WHERE host_id = ?").run([.text(id)])
        try db.prepare("UPDATE hosts SET deleted_at = ?, ak_state = 'pending', activation_digest = NULL WHERE id = ?")
            .run([.real(Date().timeIntervalSince1970), .text(id)])
    }

    // MARK: trust

    /// Writes a trust record, one half of it. Activation (`identity`) writes how the host is reached
    /// and known — mode, attester URL, host certificate serial, key pin, simulated — and creates the
    /// record if there is none; it never writes the state, so no activation (however often a ticket
    /// is replayed) can put back a state a verdict replaced. Verdicts and faults write only the state
    /// columns, and only of an existing record, so a verdict decided before a concurrent activation
    /// never puts back an old URL or pin, nor recreates the record of a deleted host.
    func writeTrust(_ db: SQLiteDatabase, _ t: HostTrust, identity: Bool = false) throws {
        let state: [SQLValue] = [.text(t.state.rawValue), .real(t.since.timeIntervalSince1970),
                                    t.lastVerdictAt.map { .real($0.timeIntervalSince1970) } ?? .null, t.lastContactAt.map { .real($0.timeIntervalSince1970) } ?? .null,
                                    .int(Int64(t.consecutiveFailures)), .int(Int64(t.consecutiveFaults)),
                                    t.unreachableSince.map { .real($0.timeIntervalSince1970) } ?? .null, t.lastProblem.map { .text($0) } ?? .null]
        guard identity else {
            try db.prepare("""
            UPDATE host_trust SET state = ?, since = ?, last_verdict_at = ?, last_contact_at = ?, failures = ?, faults = ?,
              unreachable_since = ?, last_problem = ? WHERE host_id = ?
            """).run(state + [.text(t.hostID)])
            return
        }
        let known: [SQLValue] = [.text(t.mode.rawValue), t.attesterURL.map { .text($0) } ?? .null, t.hostCertificateSerial.map { .text($0) } ?? .null,
                                    t.hostKeyPin.map { .text($0) } ?? .null, .int(t.simulated ? 1 : 0)]
        try db.prepare("""
        INSERT INTO host_trust (host_id, mode, attester_url, host_cert_serial, host_key_pin, simulated, state, since,
          last_verdict_at, last_contact_at, failures, faults, unreachable_since, last_problem) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)
        ON CONFLICT(host_id) DO UPDATE SET mode = excluded.mode, attester_url = excluded.attester_url,
          host_cert_serial = excluded.host_cert_serial, host_key_pin = excluded.host_key_pin, simulated = excluded.simulated
        """).run([.text(t.hostID)] + known + state)
    }

    public func trust(hostID: String) throws -> HostTrust? {
        try with { db in try db.prepare("SELECT \(StoredRecords.trustColumns) FROM host_trust WHERE host_id = ?").query([.text(hostID)], StoredRecords.trust).first }
    }

    public func attestableHosts() throws -> [AttestableHost] {
        try with { db in
            try db.prepare(StoredRecords.attestableQuery).query([], StoredRecords.attestable)
        }
    }

    public func trusts() throws -> [HostTrust] {
        try with { db in try db.prepare("SELECT \(StoredRecords.trustColumns) FROM host_trust ORDER BY host_id").query([], StoredRecords.trust) }
    }

    // MARK: nonces

    public func nonceUsed(_ nonce: String) throws -> Bool {
        try with { db in !(try db.prepare("SELECT 1 FROM used_nonces WHERE nonce = ?").query([.text(nonce)]) { _ in true }).isEmpty }
    }

    /// Records a challenge nonce as used (inside the decision's transaction); used nonces are kept
    /// until they would have expired anyway, then dropped.
    private static func useNonce(_ db: SQLiteDatabase, _ nonce: String, hostID: String, expiresAt: Date) throws {
        try db.prepare("DELETE FROM used_nonces WHERE expires_at < ?").run([.real(expiresAt.timeIntervalSince1970 - 3600)])
        try db.prepare("INSERT INTO used_nonces (nonce, host_id, expires_at) VALUES (?,?,?) ON CONFLICT(nonce) DO NOTHING")
            .run([.text(nonce), .text(hostID), .real(expiresAt.timeIntervalSince1970)])
        guard db.changes == 1 else { throw VouchError(.nonceReused, "nonce has already been used", context: ["field": "nonce"]) }
    }

    // MARK: attestations and certificates

    /// Inserts a decision; `logged`: with its verdict entry in the log outbox (an issuance's
    /// decision is logged by its issuance entry instead).
    func insertAttestation(_ db: SQLiteDatabase, _ a: AttestationRecord, logged: Bool) throws -> Int64 {
        if let nonce = a.nonce, let expires = a.nonceExpiresAt { try Self.useNonce(db, nonce, hostID: a.hostID, expiresAt: expires) }
        try db.prepare("""
        INSERT INTO attestations (host_id, at, kind, trusted, codes, message, agent_name, nonce, policy_name, policy_version,
          policy_sha256, pcr_digest, serial, claims, pcrs) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
        """).run([.text(a.hostID), .real(a.at.timeIntervalSince1970), .text(a.kind.rawValue), .int(a.trusted ? 1 : 0),
                  .text(a.codes.joined(separator: ",")), .text(a.message), a.agentName.map { .text($0) } ?? .null,
                  a.nonce.map { .text($0) } ?? .null, a.policyName.map { .text($0) } ?? .null,
                  a.policyVersion.map { .int(Int64($0)) } ?? .null, a.policySHA256.map { .text($0) } ?? .null,
                  a.pcrDigest.map { .text($0) } ?? .null, a.serial.map { .text($0) } ?? .null,
                  a.claims.map { .text(StoredJSON.claims($0)) } ?? .null, a.pcrs.map { .text(StoredJSON.encode($0)) } ?? .null])
        let id = db.lastInsertID
        if let tee = a.teeEvidence {
            try db.prepare("""
            INSERT INTO tee_evidence (host_id, attestation_id, evidence) VALUES (?,?,?)
            ON CONFLICT(host_id) DO UPDATE SET attestation_id = excluded.attestation_id, evidence = excluded.evidence
            """).run([.text(a.hostID), .int(id), .text(StoredJSON.encode(tee))])
        }
        if logged {
            var recorded = a
            recorded.id = id
            try enqueue(db) { try $0.verdict(recorded) }
        }
        return id
    }

    @discardableResult
    public func recordAttestation(_ record: AttestationRecord) throws -> Int64 {
        try write { [self] db in try db.transaction { try insertAttestation(db, record, logged: true) } }
    }

    public func latestAttestation(hostID: String) throws -> AttestationRecord? {
        try attestation(hostID: hostID, where: "")
    }

    public func latestDecisionTime() throws -> Date? {
        try with { db in try db.prepare("SELECT at FROM attestations ORDER BY id DESC LIMIT 1").query([]) { $0.date(0) }.first }
    }

    public func latestEvidence(hostID: String) throws -> AttestationRecord? {
        try with { db in
            try db.prepare("""
            SELECT \(StoredRecords.attestationColumns),
              (SELECT evidence FROM tee_evidence t WHERE t.host_id = attestations.host_id AND t.attestation_id = attestations.id)
            FROM attestations WHERE host_id = ? AND (pcrs IS NOT NULL OR json_extract(claims, '$.tee') IS NOT NULL) ORDER BY id DESC LIMIT 1
            """).query([.text(hostID)]) { r in
                var a = StoredRecords.attestation(r)
                a.teeEvidence = r.optionalText(16).flatMap(StoredJSON.decode)
                return a
            }.first
        }
    }

    private func attestation(hostID: String, where extra: String) throws -> AttestationRecord? {
        try with { db in
            try db.prepare("SELECT \(StoredRecords.attestationColumns) FROM attestations WHERE host_id = ? \(extra) ORDER BY id DESC LIMIT 1")
                .query([.text(hostID)], StoredRecords.attestation).first
        }
    }

    public func attestations(_ q: HistoryQuery) throws -> [AttestationRecord] {
        var clauses: [String] = [], args: [SQLValue] = []
        if let h = q.hostID { clauses.append("host_id = ?"); args.append(.text(h)) }
        if let t = q.trusted { clauses.append("trusted = ?"); args.append(.int(t ? 1 : 0)) }
        if let k = q.kind { clauses.append("kind = ?"); args.append(.text(k.rawValue)) }
        if let f = q.from { clauses.append("at >= ?"); args.append(.real(f.timeIntervalSince1970)) }
        if let u = q.until { clauses.append("at < ?"); args.append(.real(u.timeIntervalSince1970)) }
        if let b = q.before { clauses.append("id < ?"); args.append(.int(b)) }
        args.append(.int(Int64(max(1, min(q.limit, 1000)))))
        let whereSQL = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        return try with { db in
            try db.prepare("SELECT \(StoredRecords.attestationColumns) FROM attestations \(whereSQL) ORDER BY id DESC LIMIT ?").query(args, StoredRecords.attestation)
        }
    }

    public func lastTrustedClock(hostID: String) throws -> (clock: ClockState, at: Date)? {
        try with { db in
            // Only the clock object is read out of the stored claims (SQLite's JSON1): decoding the
            // whole claims document per re-attestation round cost more than the query.
            try db.prepare("""
            SELECT json_extract(claims, '$.clock'), at FROM attestations WHERE host_id = ? AND trusted = 1 AND claims IS NOT NULL
            ORDER BY id DESC LIMIT 1
            """).query([.text(hostID)]) { r -> (ClockState, Date)? in
                guard let text = r.optionalText(0), let clock: ClockState = StoredJSON.decode(text) else { return nil }
                return (clock, r.date(1))
            }.first.flatMap { $0 }
        }
    }

    public func recordIssuance(attestation: AttestationRecord, certificate c: CertificateRecord) throws -> Int64 {
        try write { [self] db in try db.transaction { try recordIssuance(db, attestation: attestation, certificate: c) } }
    }

    func recordIssuance(_ db: SQLiteDatabase, attestation: AttestationRecord, certificate c: CertificateRecord) throws -> Int64 {
        let exists = try db.prepare("SELECT 1 FROM certificates WHERE serial = ?").query([.text(c.serial)]) { _ in true }
        guard exists.isEmpty else { throw VouchError(.conflict, "certificate serial already used", context: ["serial": c.serial]) }
        let id = try insertAttestation(db, attestation, logged: false)
        try db.prepare("""
        INSERT INTO certificates (serial, host_id, agent_name, spiffe_id, not_before, not_after, pem, attestation_id, issuer)
        VALUES (?,?,?,?,?,?,?,?,?)
        """).run([.text(c.serial), .text(c.hostID), .text(c.agentName), .text(c.spiffeID), .real(c.notBefore.timeIntervalSince1970),
                  .real(c.notAfter.timeIntervalSince1970), .text(c.pem), .int(id), .text(c.issuer)])
        try insertEvent(db, .certificateIssued, ["serial": c.serial, "hostId": c.hostID, "agentName": c.agentName,
                                                   "spiffeId": c.spiffeID, "notAfter": c.notAfter.iso8601], at: attestation.at)
        var recorded = attestation
        recorded.id = id
        var issued = c
        issued.attestationID = id
        try enqueue(db) { try $0.issuance(recorded, certificate: issued) }
        return id
    }

    public func certificate(serial: String) throws -> CertificateRecord? {
        try with { db in try db.prepare("SELECT \(StoredRecords.certificateColumns) FROM certificates WHERE serial = ?").query([.text(serial)], StoredRecords.certificate).first }
    }

    public func certificates() throws -> [CertificateRecord] {
        try with { db in try db.prepare("SELECT \(StoredRecords.certificateColumns) FROM certificates ORDER BY not_before, serial").query([], StoredRecords.certificate) }
    }

    // MARK: events and webhook deliveries

    /// Events stored before event data was written by `StoredJSON.event` keep their old form.
    func insertEvent(_ db: SQLiteDatabase, _ type: OutboxEventType, _ data: [String: String], at: Date) throws {
        try db.prepare("INSERT INTO events (at, type, data) VALUES (?,?,?)").run([.real(at.timeIntervalSince1970), .text(type.rawValue), .text(StoredJSON.event(data))])
    }

    @discardableResult
    public func appendEvent(type: OutboxEventType, data: [String: String], at: Date) throws -> Int64 {
        try write { [self] db in
            try insertEvent(db, type, data, at: at)
            return db.lastInsertID
        }
    }

    public func events(after id: Int64, limit: Int) throws -> [EventRecord] {
        try with { db in try db.prepare("SELECT id, at, type, data FROM events WHERE id > ? ORDER BY id LIMIT ?").query([.int(id), .int(Int64(limit))], StoredRecords.event) }
    }

    public func latestEventID() throws -> Int64 {
        try with { db in try db.prepare("SELECT COALESCE(MAX(id), 0) FROM events").query([], { $0.int(0) }).first ?? 0 }
    }

    public func registerSubscriber(_ url: String) throws -> Int64 {
        try write { db in
            try db.transaction {
                if let since = try db.prepare("SELECT since_event FROM subscribers WHERE url = ?").query([.text(url)], { $0.int(0) }).first { return since }
                let last = try db.prepare("SELECT COALESCE(MAX(id), 0) FROM events").query([], { $0.int(0) }).first ?? 0
                try db.prepare("INSERT INTO subscribers (url, since_event) VALUES (?,?)").run([.text(url), .int(last)])
                return last
            }
        }
    }

    public func undelivered(subscriber: String, limit: Int) throws -> [PendingDelivery] {
        try with { db in
            try db.prepare("""
            SELECT e.id, e.at, e.type, e.data, COALESCE(d.attempts, 0), d.next_attempt_at FROM events e
            JOIN subscribers s ON s.url = ?
            LEFT JOIN deliveries d ON d.subscriber = s.url AND d.event_id = e.id
            WHERE e.id > s.since_event AND d.delivered_at IS NULL
            ORDER BY e.id LIMIT ?
            """).query([.text(subscriber), .int(Int64(limit))]) { r in
                PendingDelivery(event: StoredRecords.event(r), attempts: Int(r.int(4)), nextAttempt: r.optionalDate(5))
            }
        }
    }

    public func recordDelivery(subscriber: String, eventID: Int64, delivered: Bool, attempts: Int, nextAttempt: Date?, error: String?, at: Date) throws {
        try write { db in
            try db.prepare("""
            INSERT INTO deliveries (subscriber, event_id, attempts, delivered_at, next_attempt_at, last_error) VALUES (?,?,?,?,?,?)
            ON CONFLICT(subscriber, event_id) DO UPDATE SET attempts=excluded.attempts, delivered_at=excluded.delivered_at,
              next_attempt_at=excluded.next_attempt_at, last_error=excluded.last_error
            """).run([.text(subscriber), .int(eventID), .int(Int64(attempts)), delivered ? .real(at.timeIntervalSince1970) : .null,
                      nextAttempt.map { .real($0.timeIntervalSince1970) } ?? .null, error.map { .text(String($0.prefix(500))) } ?? .null])
        }
    }

    public func undeliveredCount(subscriber: String) throws -> Int {
        try with { db in
            Int(try db.prepare("""
            SELECT COUNT(*) FROM events e JOIN subscribers s ON s.url = ?
            LEFT JOIN deliveries d ON d.subscriber = s.url AND d.event_id = e.id
            WHERE e.id > s.since_event AND d.delivered_at IS NULL
            """).query([.text(subscriber)]) { $0.int(0) }.first ?? 0)
        }
    }
}
