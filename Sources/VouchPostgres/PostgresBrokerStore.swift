import Foundation
import VouchAPI
import VouchCore
import VouchEventLog
import VouchModel

/// `BrokerStore` on PostgreSQL, for several vouchd replicas sharing one database (and for one
/// vouchd whose state must live off its machine).
///
/// - Reads run on a pool of connections (each used by one thread at a time), one statement each.
/// - Writes are serial across every replica: each transaction takes one advisory lock first and
///   runs at READ COMMITTED, so what the SQLite store checks under its one connection holds here
///   across processes (`PGWriter`). Within a replica, writers arriving together share one
///   commit (group commit, each in its own savepoint).
/// - Statements are prepared once per connection; a lost connection is replaced, a read is run
///   again on the new one, and a write group before its COMMIT is run again whole.
/// - The schema is versioned (`migrations`); replicas starting together migrate one at a time
///   (under the same lock), and a database newer than this build is refused.
/// Values are stored as the SQLite store stores them (times as seconds since 1970 in `double
/// precision`, JSON as text written by `StoredJSON`), so `vouch store copy` moves a database
/// between the two without translation.
public final class PostgresBrokerStore: BrokerStore, LogStore, SharedStore {
    let pool: PGPool
    let writer: PGWriter
    /// The LISTEN connection `waitForChange` waits on.
    let listener: PGListener
    /// Set on a store made by `fenced(by:)`: every write first checks the lease still holds.
    let fence: Lease?
    /// Makes the transparency-log entry of each decision, issuance and revocation (see
    /// `SQLiteBrokerStore.logEntries`); nil: no log is kept.
    let logEntries: (any LogEntryMaker)?
    /// Where the store connects, with any password masked.
    public let target: String

    /// Migrations in order; `migrations[i]` takes a database from version i to i + 1.
    public static let migrations: [String] = [
        // 1: the schema of SQLite version 7 (hosts, trust, decisions, certificates, CRLs, events,
        // webhook deliveries, tokens, used nonces, TEE evidence, the transparency log)
        """
        CREATE TABLE hosts (
          id TEXT PRIMARY KEY, hostname TEXT NOT NULL, ek_public BYTEA NOT NULL, ek_certificate BYTEA NOT NULL,
          ek_issuer TEXT NOT NULL, labels TEXT NOT NULL DEFAULT '{}', ak_public BYTEA NOT NULL, ak_name BYTEA NOT NULL, ak_algorithm TEXT NOT NULL,
          ak_state TEXT NOT NULL CHECK (ak_state IN ('pending','active')), activation_digest BYTEA, activation_expires_at DOUBLE PRECISION,
          activation_failures INTEGER NOT NULL DEFAULT 0, registered_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
          blocked_reason TEXT, deleted_at DOUBLE PRECISION, version BIGINT NOT NULL DEFAULT 1, platform TEXT NOT NULL DEFAULT 'tpm');
        CREATE TABLE host_trust (
          host_id TEXT PRIMARY KEY REFERENCES hosts(id), state TEXT NOT NULL, since DOUBLE PRECISION NOT NULL, mode TEXT NOT NULL,
          attester_url TEXT, host_cert_serial TEXT, host_key_pin TEXT, simulated INTEGER NOT NULL DEFAULT 0,
          last_verdict_at DOUBLE PRECISION, last_contact_at DOUBLE PRECISION, failures INTEGER NOT NULL DEFAULT 0,
          faults INTEGER NOT NULL DEFAULT 0, unreachable_since DOUBLE PRECISION, last_problem TEXT);
        CREATE TABLE attestations (
          id BIGSERIAL PRIMARY KEY, host_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL,
          trusted INTEGER NOT NULL, codes TEXT NOT NULL, message TEXT NOT NULL, agent_name TEXT, nonce TEXT,
          policy_name TEXT, policy_version INTEGER, policy_sha256 TEXT, pcr_digest TEXT, serial TEXT, claims TEXT, pcrs TEXT);
        CREATE INDEX attestations_host ON attestations(host_id, id);
        CREATE INDEX attestations_at ON attestations(at);
        CREATE TABLE certificates (
          serial TEXT PRIMARY KEY, host_id TEXT NOT NULL REFERENCES hosts(id), agent_name TEXT NOT NULL,
          spiffe_id TEXT NOT NULL, not_before DOUBLE PRECISION NOT NULL, not_after DOUBLE PRECISION NOT NULL, pem TEXT NOT NULL,
          attestation_id BIGINT NOT NULL REFERENCES attestations(id), revoked_at DOUBLE PRECISION, revocation_reason INTEGER,
          issuer TEXT NOT NULL DEFAULT '');
        CREATE INDEX certificates_agent ON certificates(host_id, agent_name);
        CREATE INDEX certificates_revoked ON certificates(issuer, serial) WHERE revoked_at IS NOT NULL;
        CREATE TABLE crls (
          issuer TEXT PRIMARY KEY, number BIGINT NOT NULL, der BYTEA NOT NULL,
          this_update DOUBLE PRECISION NOT NULL, next_update DOUBLE PRECISION NOT NULL);
        CREATE TABLE events (id BIGSERIAL PRIMARY KEY, at DOUBLE PRECISION NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL);
        CREATE TABLE subscribers (url TEXT PRIMARY KEY, since_event BIGINT NOT NULL);
        CREATE TABLE deliveries (
          subscriber TEXT NOT NULL, event_id BIGINT NOT NULL REFERENCES events(id), attempts INTEGER NOT NULL,
          delivered_at DOUBLE PRECISION, next_attempt_at DOUBLE PRECISION, last_error TEXT, PRIMARY KEY (subscriber, event_id));
        CREATE TABLE tokens (
          id TEXT PRIMARY KEY, name TEXT NOT NULL, scope TEXT NOT NULL CHECK (scope IN ('read','admin')),
          digest BYTEA NOT NULL UNIQUE, created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION);
        CREATE TABLE used_nonces (nonce TEXT PRIMARY KEY, host_id TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL);
        CREATE INDEX used_nonces_expiry ON used_nonces(expires_at);
        CREATE TABLE tee_evidence (
          host_id TEXT PRIMARY KEY REFERENCES hosts(id), attestation_id BIGINT NOT NULL REFERENCES attestations(id), evidence TEXT NOT NULL);
        CREATE TABLE log_outbox (id BIGSERIAL PRIMARY KEY, entry BYTEA NOT NULL, certificate TEXT);
        CREATE INDEX log_outbox_certificate ON log_outbox(certificate) WHERE certificate IS NOT NULL;
        CREATE TABLE log_entries (idx BIGINT PRIMARY KEY, entry BYTEA NOT NULL, certificate TEXT, outbox_id BIGINT NOT NULL UNIQUE);
        CREATE INDEX log_entries_certificate ON log_entries(certificate) WHERE certificate IS NOT NULL;
        CREATE TABLE log_hashes (level INTEGER NOT NULL, idx BIGINT NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY (level, idx));
        CREATE TABLE log_checkpoints (size BIGINT PRIMARY KEY, root BYTEA NOT NULL, note TEXT NOT NULL,
          cosignatures TEXT NOT NULL DEFAULT '', published_at DOUBLE PRECISION NOT NULL);
        """,
        // 2: leases of the singleton jobs (log sequencing, webhook delivery), with their fencing epoch
        """
        CREATE TABLE vouch_leases (job TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch BIGINT NOT NULL, expires_at DOUBLE PRECISION NOT NULL);
        """,
        // 3: re-attestation rounds claimed across replicas (`claimRounds`)
        """
        CREATE TABLE host_rounds (host_id TEXT PRIMARY KEY, next_due DOUBLE PRECISION NOT NULL, claimed_by TEXT);
        """,
    ]
    public static var schemaVersion: Int { migrations.count }

    /// Connects to `url` (`postgres://user@host1,host2/db?target_session_attrs=read-write`, or a
    /// key=value string) and brings the schema up to date. `readConnections` bounds the read pool.
    public init(url: String, logEntries: (any LogEntryMaker)? = nil, readConnections: Int = 8) throws {
        self.logEntries = logEntries
        pool = PGPool(url: url, size: readConnections)
        writer = PGWriter(url: url)
        listener = PGListener(url: url, channel: Self.changeChannel)
        fence = nil
        target = redactedURL(url)
        try writer.write { c in
            try c.exec("CREATE TABLE IF NOT EXISTS vouch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            let text = try c.query("SELECT value FROM vouch_meta WHERE key = 'schema_version'") { $0.text(0) }.first
            guard let version = Int(text ?? "0"), version >= 0 else {
                throw VouchError(.database, "database schema version is unreadable", context: ["got": text ?? ""])
            }
            guard version <= Self.schemaVersion else {
                throw VouchError(.database, "database schema is newer than this vouchd supports", context: ["expected": "\(Self.schemaVersion)", "got": "\(version)"])
            }
            for step in Self.migrations.dropFirst(version) { try c.exec(step) }
            try c.run("INSERT INTO vouch_meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                      [.text("\(Self.schemaVersion)")])
        }
    }

    /// The same connections, with every write fenced by `lease`.
    init(sharing store: PostgresBrokerStore, fence: Lease) {
        pool = store.pool; writer = store.writer; listener = store.listener; logEntries = store.logEntries; target = store.target
        self.fence = fence
    }

    /// Reads: a pooled connection.
    func read<T>(_ body: (PGConnection) throws -> T) throws -> T { try pool.with(body) }

    /// Writes: one transaction through the writer (see `PGWriter`).
    /// On a fenced store, the lease is checked first, in the same transaction.
    @discardableResult
    func write<T>(_ body: @escaping (PGConnection) throws -> T) throws -> T {
        guard let fence else { return try writer.write(body) }
        return try writer.write { c in
            try Self.checkFence(c, fence)
            return try body(c)
        }
    }

    // MARK: hosts

    public func saveHost(_ h: HostRecord) throws {
        try write { c in try Self.writeHost(c, h) }
    }

    public func activateHost(_ host: HostRecord, trust: HostTrust, record: AttestationRecord) throws {
        try write { [self] c in
            try Self.writeHost(c, host)
            try Self.writeTrust(c, trust, identity: true)
            _ = try insertAttestation(c, record, logged: true)
        }
    }

    public func setBlock(hostID: String, reason: String?) throws {
        try write { c in try Self.setBlock(c, hostID: hostID, reason: reason) }
    }

    static func setBlock(_ c: PGConnection, hostID: String, reason: String?) throws {
        let changed = try c.run("UPDATE hosts SET blocked_reason = $1, version = version + 1 WHERE id = $2", [.textOrNull(reason), .text(hostID)])
        guard changed == 1 else { throw VouchError(.notFound, "no such host", context: ["hostId": hostID]) }
    }

    /// The version-checked write: the row's current version must be the record's (a deleted row
    /// counts as absent, version 0); a blocked row is never overwritten.
    static func writeHost(_ c: PGConnection, _ h: HostRecord) throws {
        let current = try c.query("SELECT version, deleted_at IS NOT NULL, blocked_reason FROM hosts WHERE id = $1", [.text(h.id)]) { r in
            (version: r.int(0), deleted: r.text(1) == "t", blocked: r.optionalText(2))
        }.first
        if let current, let reason = current.blocked, h.blockedReason == nil {
            throw VouchError(.hostRevoked, "this host was revoked by an operator", context: ["hostId": h.id, "reason": reason])
        }
        let stored = current.map { $0.deleted ? 0 : $0.version } ?? 0
        guard stored == h.version else {
            throw VouchError(.conflict, "the host changed since it was read", context: ["hostId": h.id, "expected": "\(h.version)", "got": "\(stored)"])
        }
        try c.run("""
        INSERT INTO hosts (id, hostname, ek_public, ek_certificate, ek_issuer, labels, ak_public, ak_name, ak_algorithm, ak_state,
          activation_digest, activation_expires_at, activation_failures, registered_at, updated_at, blocked_reason, platform, version)
        VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,1)
        ON CONFLICT (id) DO UPDATE SET hostname=excluded.hostname, ek_public=excluded.ek_public, ek_certificate=excluded.ek_certificate,
          ek_issuer=excluded.ek_issuer, labels=excluded.labels, ak_public=excluded.ak_public, ak_name=excluded.ak_name, ak_algorithm=excluded.ak_algorithm,
          ak_state=excluded.ak_state, activation_digest=excluded.activation_digest, activation_expires_at=excluded.activation_expires_at,
          activation_failures=excluded.activation_failures, registered_at=excluded.registered_at, updated_at=excluded.updated_at,
          blocked_reason=excluded.blocked_reason, platform=excluded.platform, deleted_at=NULL, version=hosts.version + 1
        """, [.text(h.id), .text(h.hostname), .bytes(h.ekPublic), .bytes(h.ekCertificate), .text(h.ekIssuer), .text(StoredJSON.encode(h.labels)),
              .bytes(h.akPublic), .bytes(h.akName), .text(h.akAlgorithm), .text(h.akState.rawValue), h.activationDigest.map { .bytes($0) } ?? .null,
              .date(h.activationExpiresAt), .int(Int64(h.activationFailures)), .date(h.registeredAt), .date(h.updatedAt),
              .textOrNull(h.blockedReason), .text(h.platform.rawValue)])
    }

    static let hostByID = "SELECT \(StoredRecords.hostColumns) FROM hosts WHERE id = $1 AND deleted_at IS NULL"

    public func host(id: String) throws -> HostRecord? {
        try read { c in try c.query(Self.hostByID, [.text(id)], StoredRecords.host).first }
    }

    public func hosts() throws -> [HostRecord] {
        try read { c in try c.query("SELECT \(StoredRecords.hostColumns) FROM hosts WHERE deleted_at IS NULL ORDER BY registered_at, id", [], StoredRecords.host) }
    }

    public func deleteHost(id: String) throws {
        try write { c in try Self.deleteHost(c, id: id) }
    }

    static func deleteHost(_ c: PGConnection, id: String) throws {
        try c.run("DELETE FROM host_trust WHERE host_id = $1", [.text(id)])
        try c.run("DELETE FROM tee_evidence WHERE host_id = $1", [.text(id)])
        try c.run("UPDATE hosts SET deleted_at = $1, ak_state = 'pending', activation_digest = NULL WHERE id = $2", [.date(Date()), .text(id)])
    }

    // MARK: trust

    /// Writes one half of a trust record, as `SQLiteBrokerStore.writeTrust` does: activation
    /// (`identity`) writes how the host is reached and creates the record; verdicts and faults write
    /// only the state columns of an existing record.
    static func writeTrust(_ c: PGConnection, _ t: HostTrust, identity: Bool = false) throws {
        let state: [PGValue] = [.text(t.state.rawValue), .date(t.since), .date(t.lastVerdictAt), .date(t.lastContactAt),
                                .int(Int64(t.consecutiveFailures)), .int(Int64(t.consecutiveFaults)), .date(t.unreachableSince), .textOrNull(t.lastProblem)]
        guard identity else {
            try c.run("""
            UPDATE host_trust SET state = $1, since = $2, last_verdict_at = $3, last_contact_at = $4, failures = $5, faults = $6,
              unreachable_since = $7, last_problem = $8 WHERE host_id = $9
            """, state + [.text(t.hostID)])
            return
        }
        let known: [PGValue] = [.text(t.mode.rawValue), .textOrNull(t.attesterURL), .textOrNull(t.hostCertificateSerial), .textOrNull(t.hostKeyPin), .int(t.simulated ? 1 : 0)]
        try c.run("""
        INSERT INTO host_trust (host_id, mode, attester_url, host_cert_serial, host_key_pin, simulated, state, since,
          last_verdict_at, last_contact_at, failures, faults, unreachable_since, last_problem) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14)
        ON CONFLICT (host_id) DO UPDATE SET mode = excluded.mode, attester_url = excluded.attester_url,
          host_cert_serial = excluded.host_cert_serial, host_key_pin = excluded.host_key_pin, simulated = excluded.simulated
        """, [.text(t.hostID)] + known + state)
    }

    static let trustByHost = "SELECT \(StoredRecords.trustColumns) FROM host_trust WHERE host_id = $1"

    public func trust(hostID: String) throws -> HostTrust? {
        try read { c in try c.query(Self.trustByHost, [.text(hostID)], StoredRecords.trust).first }
    }

    public func attestableHosts() throws -> [AttestableHost] {
        try read { c in
            try c.query(StoredRecords.attestableQuery, [], StoredRecords.attestable)
        }
    }

    public func trusts() throws -> [HostTrust] {
        try read { c in try c.query("SELECT \(StoredRecords.trustColumns) FROM host_trust ORDER BY host_id", [], StoredRecords.trust) }
    }

    // MARK: nonces

    public func nonceUsed(_ nonce: String) throws -> Bool {
        try read { c in !(try c.query("SELECT 1 FROM used_nonces WHERE nonce = $1", [.text(nonce)]) { _ in true }).isEmpty }
    }

    /// Records a challenge nonce as used (inside the decision's transaction); used nonces are kept
    /// until they would have expired anyway, then dropped.
    private static func useNonce(_ c: PGConnection, _ nonce: String, hostID: String, expiresAt: Date) throws {
        try c.run("DELETE FROM used_nonces WHERE expires_at < $1", [.real(expiresAt.timeIntervalSince1970 - 3600)])
        let inserted = try c.run("INSERT INTO used_nonces (nonce, host_id, expires_at) VALUES ($1,$2,$3) ON CONFLICT (nonce) DO NOTHING",
                                 [.text(nonce), .text(hostID), .date(expiresAt)])
        guard inserted == 1 else { throw VouchError(.nonceReused, "nonce has already been used", context: ["field": "nonce"]) }
    }

    // MARK: attestations

    /// Inserts a decision; `logged`: with its verdict entry in the log outbox (an issuance's
    /// decision is logged by its issuance entry instead).
    func insertAttestation(_ c: PGConnection, _ a: AttestationRecord, logged: Bool) throws -> Int64 {
        if let nonce = a.nonce, let expires = a.nonceExpiresAt { try Self.useNonce(c, nonce, hostID: a.hostID, expiresAt: expires) }
        let id = try c.query("""
        INSERT INTO attestations (host_id, at, kind, trusted, codes, message, agent_name, nonce, policy_name, policy_version,
          policy_sha256, pcr_digest, serial, claims, pcrs) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) RETURNING id
        """, [.text(a.hostID), .date(a.at), .text(a.kind.rawValue), .int(a.trusted ? 1 : 0), .text(a.codes.joined(separator: ",")), .text(a.message),
              .textOrNull(a.agentName), .textOrNull(a.nonce), .textOrNull(a.policyName), .intOrNull(a.policyVersion.map(Int64.init)), .textOrNull(a.policySHA256),
              .textOrNull(a.pcrDigest), .textOrNull(a.serial), .textOrNull(a.claims.map(StoredJSON.claims)), .textOrNull(a.pcrs.map(StoredJSON.encode))]) { $0.int(0) }[0]
        if let tee = a.teeEvidence {
            try c.run("""
            INSERT INTO tee_evidence (host_id, attestation_id, evidence) VALUES ($1,$2,$3)
            ON CONFLICT (host_id) DO UPDATE SET attestation_id = excluded.attestation_id, evidence = excluded.evidence
            """, [.text(a.hostID), .int(id), .text(StoredJSON.encode(tee))])
        }
        if logged {
            var recorded = a
            recorded.id = id
            try enqueue(c) { try $0.verdict(recorded) }
        }
        return id
    }

    @discardableResult
    public func recordAttestation(_ record: AttestationRecord) throws -> Int64 {
        try write { [self] c in try insertAttestation(c, record, logged: true) }
    }

    public func latestAttestation(hostID: String) throws -> AttestationRecord? {
        try read { c in
            try c.query("SELECT \(StoredRecords.attestationColumns) FROM attestations WHERE host_id = $1 ORDER BY id DESC LIMIT 1", [.text(hostID)], StoredRecords.attestation).first
        }
    }

    public func latestDecisionTime() throws -> Date? {
        try read { c in try c.query("SELECT at FROM attestations ORDER BY id DESC LIMIT 1") { $0.date(0) }.first }
    }

    public func latestEvidence(hostID: String) throws -> AttestationRecord? {
        try read { c in
            try c.query("""
            SELECT \(StoredRecords.attestationColumns),
              (SELECT evidence FROM tee_evidence t WHERE t.host_id = attestations.host_id AND t.attestation_id = attestations.id)
            FROM attestations WHERE host_id = $1
              AND (pcrs IS NOT NULL OR COALESCE(json_typeof(claims::json -> 'tee'), 'null') <> 'null') ORDER BY id DESC LIMIT 1
            """, [.text(hostID)]) { r in
                var a = StoredRecords.attestation(r)
                a.teeEvidence = r.optionalText(16).flatMap(StoredJSON.decode)
                return a
            }.first
        }
    }

    public func attestations(_ q: HistoryQuery) throws -> [AttestationRecord] {
        var clauses: [String] = [], args: [PGValue] = []
        func add(_ clause: String, _ value: PGValue) { args.append(value); clauses.append(clause.replacingOccurrences(of: "?", with: "$\(args.count)")) }
        if let h = q.hostID { add("host_id = ?", .text(h)) }
        if let t = q.trusted { add("trusted = ?::integer", .int(t ? 1 : 0)) }
        if let k = q.kind { add("kind = ?", .text(k.rawValue)) }
        if let f = q.from { add("at >= ?", .date(f)) }
        if let u = q.until { add("at < ?", .date(u)) }
        if let b = q.before { add("id < ?", .int(b)) }
        args.append(.int(Int64(max(1, min(q.limit, 1000)))))
        let whereSQL = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
        return try read { c in
            try c.query("SELECT \(StoredRecords.attestationColumns) FROM attestations \(whereSQL) ORDER BY id DESC LIMIT $\(args.count)", args, StoredRecords.attestation)
        }
    }

    public func lastTrustedClock(hostID: String) throws -> (clock: ClockState, at: Date)? {
        try read { c in
            // Only the clock object is read out of the stored claims (see the SQLite store).
            try c.query("""
            SELECT (claims::json -> 'clock')::text, at FROM attestations WHERE host_id = $1 AND trusted = 1 AND claims IS NOT NULL
            ORDER BY id DESC LIMIT 1
            """, [.text(hostID)]) { r -> (ClockState, Date)? in
                guard let text = r.optionalText(0), let clock: ClockState = StoredJSON.decode(text) else { return nil }
                return (clock, r.date(1))
            }.first.flatMap { $0 }
        }
    }

    // MARK: certificates

    public func recordIssuance(attestation: AttestationRecord, certificate c: CertificateRecord) throws -> Int64 {
        try write { [self] conn in try recordIssuance(conn, attestation: attestation, certificate: c) }
    }

    func recordIssuance(_ conn: PGConnection, attestation: AttestationRecord, certificate c: CertificateRecord) throws -> Int64 {
        let exists = try conn.query("SELECT 1 FROM certificates WHERE serial = $1", [.text(c.serial)]) { _ in true }
        guard exists.isEmpty else { throw VouchError(.conflict, "certificate serial already used", context: ["serial": c.serial]) }
        let id = try insertAttestation(conn, attestation, logged: false)
        try conn.run("""
        INSERT INTO certificates (serial, host_id, agent_name, spiffe_id, not_before, not_after, pem, attestation_id, issuer)
        VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
        """, [.text(c.serial), .text(c.hostID), .text(c.agentName), .text(c.spiffeID), .date(c.notBefore), .date(c.notAfter), .text(c.pem), .int(id), .text(c.issuer)])
        try insertEvent(conn, .certificateIssued, ["serial": c.serial, "hostId": c.hostID, "agentName": c.agentName,
                                                   "spiffeId": c.spiffeID, "notAfter": c.notAfter.iso8601], at: attestation.at)
        var recorded = attestation
        recorded.id = id
        var issued = c
        issued.attestationID = id
        try enqueue(conn) { try $0.issuance(recorded, certificate: issued) }
        return id
    }

    public func certificate(serial: String) throws -> CertificateRecord? {
        try read { c in try c.query("SELECT \(StoredRecords.certificateColumns) FROM certificates WHERE serial = $1", [.text(serial)], StoredRecords.certificate).first }
    }

    public func certificates() throws -> [CertificateRecord] {
        try read { c in try c.query("SELECT \(StoredRecords.certificateColumns) FROM certificates ORDER BY not_before, serial", [], StoredRecords.certificate) }
    }
}
