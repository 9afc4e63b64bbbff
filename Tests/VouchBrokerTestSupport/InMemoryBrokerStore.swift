import Foundation
import Synchronization
import VouchAPI
import VouchCore
import VouchEventLog
import VouchModel

/// `BrokerStore` in memory, with the semantics of `SQLiteBrokerStore` (and checked against it by
/// `StoreConformanceTests`): version-checked host writes (a blocked row is never overwritten, a
/// deleted row counts as absent), trust records written in two halves (activation: identity;
/// verdicts and faults: state, of an existing record only), used nonces recorded with the decision
/// that used them, CRL numbers per issuer, the event outbox and webhook progress. Every method is
/// atomic: it runs on a copy of the state under one lock, and the copy replaces the state only if
/// the method did not throw (a transaction's rollback). Records read back as SQLite's do
/// (`nonceExpiresAt` is not kept; the deletion's time is the wall clock's, as there).
public final class InMemoryBrokerStore: BrokerStore {
    struct Delivery { var attempts: Int; var deliveredAt: Date?; var nextAttempt: Date?; var error: String? }
    struct State {
        var hosts: [String: (record: HostRecord, deleted: Bool)] = [:]
        var trust: [String: HostTrust] = [:]
        var attestations: [AttestationRecord] = []
        /// Each host's latest CPU TEE evidence bytes, with the id of the decision they came with.
        var teeEvidence: [String: (attestationID: Int64, evidence: TEEEvidenceCopy)] = [:]
        var usedNonces: [String: (hostID: String, expiresAt: Date)] = [:]
        var certificates: [String: CertificateRecord] = [:]
        var crls: [String: CRLRecord] = [:]
        var events: [EventRecord] = []
        var subscribers: [String: Int64] = [:]
        var deliveries: [String: [Int64: Delivery]] = [:]
        var tokens: [TokenRecord] = []
        var nextAttestationID: Int64 = 1
        var nextEventID: Int64 = 1
    }
    private let state = Mutex(State())
    private let committed = Atomic<Int>(0)
    /// How many write transactions have committed (tests check that one state change is one).
    public var commits: Int { committed.load(ordering: .sequentiallyConsistent) }
    private let commitFault = Mutex<(any Error)?>(nil)
    /// The next `transaction` commits and then throws `error`, as a PostgreSQL store does when the
    /// connection is lost during COMMIT (`outcome: unknown`: it may have committed; here it did).
    public func failNextCommit(with error: any Error) { commitFault.withLock { $0 = error } }

    public init() {}

    /// Reads.
    private func read<T>(_ body: (State) throws -> T) rethrows -> T { try state.withLock { try body($0) } }
    /// A transaction: the change applies whole or (if `body` throws) not at all.
    private func write<T>(_ body: (inout State) throws -> T) throws -> T {
        try state.withLock { s in
            var copy = s
            let result = try body(&copy)
            s = copy
            committed.add(1, ordering: .sequentiallyConsistent)
            return result
        }
    }

    // MARK: hosts

    public func saveHost(_ host: HostRecord) throws { try write { try Self.writeHost(&$0, host) } }

    public func activateHost(_ host: HostRecord, trust: HostTrust, record: AttestationRecord) throws {
        try write { s in
            try Self.writeHost(&s, host)
            Self.writeTrust(&s, trust, identity: true)
            _ = try Self.insertAttestation(&s, record)
        }
    }

    public func setBlock(hostID: String, reason: String?) throws { try write { try Self.setBlock(&$0, hostID: hostID, reason: reason) } }

    static func setBlock(_ s: inout State, hostID: String, reason: String?) throws {
        guard var row = s.hosts[hostID] else { throw VouchError(.notFound, "no such host", context: ["hostId": hostID]) }
        row.record.blockedReason = reason
        row.record.version += 1
        s.hosts[hostID] = row
    }

    /// The version-checked write: the row's current version must be the record's (a deleted row
    /// counts as absent, version 0); a blocked row is never overwritten by an unblocked record.
    private static func writeHost(_ s: inout State, _ h: HostRecord) throws {
        let current = s.hosts[h.id]
        if let current, let reason = current.record.blockedReason, h.blockedReason == nil {
            throw VouchError(.hostRevoked, "this host was revoked by an operator", context: ["hostId": h.id, "reason": reason])
        }
        let stored = current.map { $0.deleted ? 0 : $0.record.version } ?? 0
        guard stored == h.version else {
            throw VouchError(.conflict, "the host changed since it was read", context: ["hostId": h.id, "expected": "\(h.version)", "got": "\(stored)"])
        }
        s.hosts[h.id] = (h.withVersion((current?.record.version ?? 0) + 1), false)
    }

    public func host(id: String) throws -> HostRecord? {
        read { s in s.hosts[id].flatMap { $0.deleted ? nil : $0.record } }
    }

    public func hosts() throws -> [HostRecord] {
        read { s in
            s.hosts.values.filter { !$0.deleted }.map(\.record)
                .sorted { ($0.registeredAt, $0.id) < ($1.registeredAt, $1.id) }
        }
    }

    public func deleteHost(id: String) throws { try write { Self.deleteHost(&$0, id: id) } }

    static func deleteHost(_ s: inout State, id: String) {
        s.trust[id] = nil
        s.teeEvidence[id] = nil
        guard var row = s.hosts[id] else { return }
        row.deleted = true
        row.record.akState = .pending
        row.record.activationDigest = nil
        s.hosts[id] = row
    }

    // MARK: trust

    /// One half of a trust record: activation (`identity`) writes how the host is reached and
    /// known, creating the record if there is none, never the state of an existing one; verdicts
    /// and faults write only the state, only of an existing record.
    static func writeTrust(_ s: inout State, _ t: HostTrust, identity: Bool = false) {
        guard var stored = s.trust[t.hostID] else {
            if identity { s.trust[t.hostID] = t }
            return
        }
        if identity {
            stored.mode = t.mode
            stored.attesterURL = t.attesterURL
            stored.hostCertificateSerial = t.hostCertificateSerial
            stored.hostKeyPin = t.hostKeyPin
            stored.simulated = t.simulated
        } else {
            stored.state = t.state
            stored.since = t.since
            stored.lastVerdictAt = t.lastVerdictAt
            stored.lastContactAt = t.lastContactAt
            stored.consecutiveFailures = t.consecutiveFailures
            stored.consecutiveFaults = t.consecutiveFaults
            stored.unreachableSince = t.unreachableSince
            stored.lastProblem = t.lastProblem
        }
        s.trust[t.hostID] = stored
    }

    public func attestableHosts() throws -> [AttestableHost] {
        read { s in
            s.hosts.values.compactMap { row -> AttestableHost? in
                let h = row.record
                guard !row.deleted, h.akState == .active, h.blockedReason == nil, let t = s.trust[h.id] else { return nil }
                return AttestableHost(id: h.id, labels: h.labels, ekIssuer: h.ekIssuer, mode: t.mode, state: t.state, platform: h.platform)
            }.sorted { $0.id < $1.id }
        }
    }

    public func trust(hostID: String) throws -> HostTrust? { read { $0.trust[hostID] } }

    public func trusts() throws -> [HostTrust] { read { s in s.trust.values.sorted { $0.hostID < $1.hostID } } }

    // MARK: nonces and attestations

    public func nonceUsed(_ nonce: String) throws -> Bool { read { $0.usedNonces[nonce] != nil } }

    /// Inserts a decision; a decision that uses up a nonce records it as used (dropping used nonces
    /// an hour past their expiry), or fails with `nonce_reused`.
    static func insertAttestation(_ s: inout State, _ a: AttestationRecord) throws -> Int64 {
        if let nonce = a.nonce, let expires = a.nonceExpiresAt {
            s.usedNonces = s.usedNonces.filter { $0.value.expiresAt >= expires.addingTimeInterval(-3600) }
            guard s.usedNonces[nonce] == nil else { throw VouchError(.nonceReused, "nonce has already been used", context: ["field": "nonce"]) }
            s.usedNonces[nonce] = (a.hostID, expires)
        }
        var stored = a
        stored.id = s.nextAttestationID
        stored.nonceExpiresAt = nil
        stored.codes = a.codes.filter { !$0.isEmpty }
        stored.teeEvidence = nil
        if let tee = a.teeEvidence { s.teeEvidence[a.hostID] = (stored.id, tee) }
        s.nextAttestationID += 1
        s.attestations.append(stored)
        return stored.id
    }

    @discardableResult
    public func recordAttestation(_ record: AttestationRecord) throws -> Int64 { try write { try Self.insertAttestation(&$0, record) } }

    public func latestAttestation(hostID: String) throws -> AttestationRecord? {
        read { s in s.attestations.last { $0.hostID == hostID } }
    }

    public func attestations(_ q: HistoryQuery) throws -> [AttestationRecord] {
        read { s in
            Array(s.attestations.reversed().lazy.filter { a in
                (q.hostID.map { a.hostID == $0 } ?? true) && (q.trusted.map { a.trusted == $0 } ?? true) && (q.kind.map { a.kind == $0 } ?? true)
                    && (q.from.map { a.at >= $0 } ?? true) && (q.until.map { a.at < $0 } ?? true) && (q.before.map { a.id < $0 } ?? true)
            }.prefix(max(1, min(q.limit, 1000))))
        }
    }

    public func latestDecisionTime() throws -> Date? { read { $0.attestations.last?.at } }

    public func latestEvidence(hostID: String) throws -> AttestationRecord? {
        read { s in
            guard var a = s.attestations.last(where: { $0.hostID == hostID && ($0.pcrs != nil || $0.claims?.tee != nil) }) else { return nil }
            if let kept = s.teeEvidence[hostID], kept.attestationID == a.id { a.teeEvidence = kept.evidence }
            return a
        }
    }

    public func lastTrustedClock(hostID: String) throws -> (clock: ClockState, at: Date)? {
        read { s in
            s.attestations.last { $0.hostID == hostID && $0.trusted && $0.claims != nil }.flatMap { a in a.claims?.clock.map { ($0, a.at) } }
        }
    }

    // MARK: tokens

    public func saveToken(_ token: TokenRecord) throws {
        try write { s in
            guard !s.tokens.contains(where: { $0.id == token.id || $0.digest == token.digest }) else {
                throw VouchError(.conflict, "token id or digest already stored", context: ["id": token.id])
            }
            s.tokens.append(token)
        }
    }

    public func token(digest: [UInt8]) throws -> TokenRecord? { read { s in s.tokens.first { $0.digest == digest } } }

    public func tokens() throws -> [TokenRecord] {
        read { s in s.tokens.sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) } }
    }

    public func revokeToken(id: String, at: Date) throws -> Bool {
        try write { s in
            guard let i = s.tokens.firstIndex(where: { $0.id == id && $0.revokedAt == nil }) else { return false }
            s.tokens[i].revokedAt = at
            return true
        }
    }

    // MARK: certificates, revocation, CRLs

    public func recordIssuance(attestation: AttestationRecord, certificate: CertificateRecord) throws -> Int64 {
        try write { try Self.recordIssuance(&$0, attestation: attestation, certificate: certificate) }
    }

    static func recordIssuance(_ s: inout State, attestation: AttestationRecord, certificate: CertificateRecord) throws -> Int64 {
        guard s.certificates[certificate.serial] == nil else {
            throw VouchError(.conflict, "certificate serial already used", context: ["serial": certificate.serial])
        }
        let id = try Self.insertAttestation(&s, attestation)
        var c = certificate
        c.attestationID = id
        c.revokedAt = nil
        c.revocationReason = nil
        s.certificates[c.serial] = c
        Self.insertEvent(&s, .certificateIssued, ["serial": c.serial, "hostId": c.hostID, "agentName": c.agentName,
                                                    "spiffeId": c.spiffeID, "notAfter": c.notAfter.iso8601], at: attestation.at)
        return id
    }

    public func certificates() throws -> [CertificateRecord] {
        read { s in s.certificates.values.sorted { ($0.notBefore, $0.serial) < ($1.notBefore, $1.serial) } }
    }

    public func certificate(serial: String) throws -> CertificateRecord? { read { $0.certificates[serial] } }

    private static func named(_ s: State, _ target: RevocationTarget) -> [CertificateRecord] {
        s.certificates.values.filter { c in
            guard c.revokedAt == nil else { return false }
            switch target {
            case let .serial(serial): return c.serial == serial
            case let .agent(hostID, agent): return c.hostID == hostID && c.agentName == agent
            case let .host(hostID): return c.hostID == hostID
            }
        }.sorted { $0.serial < $1.serial }
    }

    private static func revoked(_ s: State, issuer: String) -> [CertificateRecord] {
        s.certificates.values.filter { $0.revokedAt != nil && $0.issuer == issuer }.sorted { $0.serial < $1.serial }
    }

    public func revocationPlan(_ target: RevocationTarget, at: Date, reason: RevocationReason) throws -> RevocationPlan {
        read { s in
            RevocationPlan.make(target: target, at: at, reason: reason, named: Self.named(s, target)) { (Self.revoked(s, issuer: $0), s.crls[$0]?.number ?? 0) }
        }
    }

    public func revocations(issuer: String) throws -> IssuerRevocations {
        read { s in IssuerRevocations(issuer: issuer, revoked: Self.revoked(s, issuer: issuer), number: (s.crls[issuer]?.number ?? 0) + 1) }
    }

    public func publishCRL(_ crl: CRLRecord) throws -> CRLRecord {
        try write { s in
            if let stored = s.crls[crl.issuer], stored.number + 1 != crl.number { return stored }
            s.crls[crl.issuer] = crl
            return crl
        }
    }

    public func currentCRL(issuer: String) throws -> CRLRecord? { read { $0.crls[issuer] } }

    // MARK: the unit of work

    public func transaction<T>(_ body: (any StoreTransaction) throws -> T) throws -> T {
        let result = try write { s in
            let tx = Transaction(s)
            let result = try body(tx)
            s = tx.state
            return result
        }
        if let fault = commitFault.withLock({ f in defer { f = nil }; return f }) { throw fault }
        return result
    }

    /// A transaction's view: a copy of the state that replaces the store's only if the body returns.
    final class Transaction: StoreTransaction {
        var state: State
        init(_ state: State) { self.state = state }

        func host(id: String) throws -> HostRecord? { state.hosts[id].flatMap { $0.deleted ? nil : $0.record } }
        func trust(hostID: String) throws -> HostTrust? { state.trust[hostID] }
        func saveTrust(_ trust: HostTrust) throws { InMemoryBrokerStore.writeTrust(&state, trust) }
        func setBlock(hostID: String, reason: String?) throws { try InMemoryBrokerStore.setBlock(&state, hostID: hostID, reason: reason) }
        func deleteHost(id: String) throws { InMemoryBrokerStore.deleteHost(&state, id: id) }
        func recordAttestation(_ record: AttestationRecord) throws -> Int64 { try InMemoryBrokerStore.insertAttestation(&state, record) }
        func recordIssuance(attestation: AttestationRecord, certificate: CertificateRecord) throws -> Int64 {
            try InMemoryBrokerStore.recordIssuance(&state, attestation: attestation, certificate: certificate)
        }
        func revoke(_ plan: RevocationPlan, crls: [CRLRecord]) throws {
            try plan.checkCurrent(named: InMemoryBrokerStore.named(state, plan.target), crls: crls) { state.crls[$0]?.number ?? 0 }
            for c in plan.certificates {
                state.certificates[c.serial]?.revokedAt = plan.at
                state.certificates[c.serial]?.revocationReason = plan.reason
            }
            for (type, data) in plan.events() { InMemoryBrokerStore.insertEvent(&state, type, data, at: plan.at) }
            for crl in crls { state.crls[crl.issuer] = crl }
        }
        func revokeCertificates(_ plan: RevocationPlan) throws {
            try plan.checkNamed(InMemoryBrokerStore.named(state, plan.target))
            for c in plan.certificates {
                state.certificates[c.serial]?.revokedAt = plan.at
                state.certificates[c.serial]?.revocationReason = plan.reason
            }
            for (type, data) in plan.events() { InMemoryBrokerStore.insertEvent(&state, type, data, at: plan.at) }
        }
        func storeCRLs(_ crls: [CRLRecord]) throws {
            try RevocationPlan.checkNext(crls) { state.crls[$0]?.number ?? 0 }
            for crl in crls { state.crls[crl.issuer] = crl }
        }
        func appendEvent(type: OutboxEventType, data: [String: String], at: Date) throws -> Int64 {
            InMemoryBrokerStore.insertEvent(&state, type, data, at: at)
        }
    }

    // MARK: events and webhook deliveries

    @discardableResult
    static func insertEvent(_ s: inout State, _ type: OutboxEventType, _ data: [String: String], at: Date) -> Int64 {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let json = (try? String(decoding: encoder.encode(data), as: UTF8.self)) ?? "null"
        let id = s.nextEventID
        s.nextEventID += 1
        s.events.append(EventRecord(id: id, at: at, type: type, data: json))
        return id
    }

    @discardableResult
    public func appendEvent(type: OutboxEventType, data: [String: String], at: Date) throws -> Int64 {
        try write { Self.insertEvent(&$0, type, data, at: at) }
    }

    public func events(after id: Int64, limit: Int) throws -> [EventRecord] {
        read { s in Array(s.events.lazy.filter { $0.id > id }.prefix(max(0, limit))) }
    }

    public func latestEventID() throws -> Int64 {
        read { s in s.events.last?.id ?? 0 }
    }

    public func registerSubscriber(_ url: String) throws -> Int64 {
        try write { s in
            if let since = s.subscribers[url] { return since }
            let last = s.events.last?.id ?? 0
            s.subscribers[url] = last
            return last
        }
    }

    private static func pending(_ s: State, _ subscriber: String) -> [PendingDelivery] {
        guard let since = s.subscribers[subscriber] else { return [] }
        let done = s.deliveries[subscriber] ?? [:]
        return s.events.filter { $0.id > since && done[$0.id]?.deliveredAt == nil }
            .map { PendingDelivery(event: $0, attempts: done[$0.id]?.attempts ?? 0, nextAttempt: done[$0.id]?.nextAttempt) }
    }

    public func undelivered(subscriber: String, limit: Int) throws -> [PendingDelivery] {
        read { s in Array(Self.pending(s, subscriber).prefix(max(0, limit))) }
    }

    public func recordDelivery(subscriber: String, eventID: Int64, delivered: Bool, attempts: Int, nextAttempt: Date?, error: String?, at: Date) throws {
        try write { s in
            s.deliveries[subscriber, default: [:]][eventID] = Delivery(attempts: attempts, deliveredAt: delivered ? at : nil, nextAttempt: nextAttempt,
                                                                       error: error.map { String($0.prefix(500)) })
        }
    }

    public func undeliveredCount(subscriber: String) throws -> Int { read { Self.pending($0, subscriber).count } }
}
