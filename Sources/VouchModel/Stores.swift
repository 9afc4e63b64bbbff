import Foundation
import VouchCore
import VouchEventLog

// The broker's durable state, split by concern. Each protocol is what one part of the broker
// reads and writes; `BrokerStore` is all of them plus the unit of work (`transaction`). Every
// method is atomic on its own; implementations serialize access. A method that changes several
// concerns at once (activation, issuance) is one transaction; anything else that must commit
// together goes through `transaction`.

/// Hosts: registration, activation, blocks, deletion.
public protocol HostStore: Sendable {
    /// Inserts (version 0) or updates the host if its stored version is still `host.version`;
    /// otherwise fails with `conflict`. Bumps the version.
    func saveHost(_ host: HostRecord) throws
    /// A completed credential activation, in one transaction: the host (as `saveHost`; a deleted
    /// host counts as absent and is revived) with its trust record written whole, and the
    /// decision. Fails with `host_revoked` if the host is blocked, `conflict` if it changed.
    func activateHost(_ host: HostRecord, trust: HostTrust, record: AttestationRecord) throws
    /// Sets or clears an operator's block on the host (only that column; bumps the version).
    func setBlock(hostID: String, reason: String?) throws
    func host(id: String) throws -> HostRecord?
    func hosts() throws -> [HostRecord]
    /// Deletes a host and its trust record (its certificates, attestations and events stay for audit).
    func deleteHost(id: String) throws
}

/// Continuous re-attestation: each host's trust record. Written only inside a transaction
/// (`StoreTransaction.saveTrust`) or by `activateHost`.
public protocol TrustStore: Sendable {
    func trust(hostID: String) throws -> HostTrust?
    func trusts() throws -> [HostTrust]
    /// Hosts the scheduler may re-attest — AK activated, not blocked, not deleted, with a trust
    /// record — with only what scheduling needs (no key material).
    func attestableHosts() throws -> [AttestableHost]
}

/// The audit trail of decisions.
public protocol AttestationStore: Sendable {
    /// Records a decision; returns its id.
    @discardableResult
    func recordAttestation(_ record: AttestationRecord) throws -> Int64
    func latestAttestation(hostID: String) throws -> AttestationRecord?
    /// The attestation history matching `query`, newest first.
    func attestations(_ query: HistoryQuery) throws -> [AttestationRecord]
    /// When the most recent decision of all was recorded (to notice the broker's clock going back).
    func latestDecisionTime() throws -> Date?
    /// The host's most recent attestation whose evidence verified: a TPM quote (it carries PCR
    /// values) or a CPU TEE's report or quote (its claims carry `tee`; its `teeEvidence` is the
    /// bytes kept with it, nil when none were: recorded before they were kept).
    func latestEvidence(hostID: String) throws -> AttestationRecord?
    /// The TPM clock of the host's most recent trusted attestation, and when it was recorded.
    func lastTrustedClock(hostID: String) throws -> (clock: ClockState, at: Date)?
}

/// Challenge nonces, durable only once used (see `AttestationRecord.nonceExpiresAt`).
public protocol NonceStore: Sendable {
    /// True if a decision already used this challenge nonce.
    func nonceUsed(_ nonce: String) throws -> Bool
}

/// Issued certificates, their revocation and the CRL of each issuing CA.
///
/// Revocation is planned, signed, then committed: `revocationPlan` reads what a revocation
/// names and what each issuer's next CRL must list; the caller signs those CRLs with no store
/// lock held; `StoreTransaction.revoke` commits the revocation with them, and fails with
/// `revocation_plan_stale` if the plan went stale in between (another revocation or CRL, a new certificate
/// for the target), in which case the caller plans again.
public protocol CertificateStore: Sendable {
    /// Records a trusted enrollment, the certificate issued for it and its `certificate.issued`
    /// event, atomically. Fails with `conflict` if the serial was ever used.
    func recordIssuance(attestation: AttestationRecord, certificate: CertificateRecord) throws -> Int64
    func certificates() throws -> [CertificateRecord]
    func certificate(serial: String) throws -> CertificateRecord?

    /// What revoking `target` at `at` would change (read only).
    func revocationPlan(_ target: RevocationTarget, at: Date, reason: RevocationReason) throws -> RevocationPlan
    /// What the issuer's next CRL must list, and its number (read only).
    func revocations(issuer: String) throws -> IssuerRevocations
    /// Stores `crl` if its number follows the stored one's; otherwise a concurrent revocation or
    /// refresh stored a newer CRL first, which is kept and returned.
    func publishCRL(_ crl: CRLRecord) throws -> CRLRecord
    func currentCRL(issuer: String) throws -> CRLRecord?
}

/// The durable event outbox (SSE and webhooks) and webhook deliveries.
public protocol OutboxStore: Sendable {
    @discardableResult
    func appendEvent(type: OutboxEventType, data: [String: String], at: Date) throws -> Int64
    func events(after id: Int64, limit: Int) throws -> [EventRecord]
    /// The newest event's id (0 with none): where a stream that wants only what comes next starts.
    func latestEventID() throws -> Int64
    /// The first event a webhook subscriber gets: where the outbox stood when it was first seen.
    func registerSubscriber(_ url: String) throws -> Int64
    /// The subscriber's undelivered events in order (due or not: delivery must not overtake them).
    func undelivered(subscriber: String, limit: Int) throws -> [PendingDelivery]
    func recordDelivery(subscriber: String, eventID: Int64, delivered: Bool, attempts: Int, nextAttempt: Date?, error: String?, at: Date) throws
    func undeliveredCount(subscriber: String) throws -> Int
}

/// API tokens (only their digests).
public protocol TokenStore: Sendable {
    func saveToken(_ token: TokenRecord) throws
    func token(digest: [UInt8]) throws -> TokenRecord?
    func tokens() throws -> [TokenRecord]
    /// Marks the token revoked; false if there is no such unrevoked token.
    func revokeToken(id: String, at: Date) throws -> Bool
}

/// The writes of one state change, made inside `BrokerStore.transaction`: they commit together
/// or not at all. Reads see the transaction's own writes.
public protocol StoreTransaction {
    /// The host as `HostStore.host(id:)` reads it (nil if unknown or deleted).
    func host(id: String) throws -> HostRecord?
    func trust(hostID: String) throws -> HostTrust?
    /// Writes the state of the host's existing trust record (state, since, verdict and contact
    /// times, failures, faults, the unreachable spell, the last problem); a record is created, and
    /// how the host is reached (mode, URL, pin) changed, only by `activateHost`. No record: no-op.
    func saveTrust(_ trust: HostTrust) throws
    /// As `HostStore.setBlock`.
    func setBlock(hostID: String, reason: String?) throws
    /// As `HostStore.deleteHost`.
    func deleteHost(id: String) throws
    /// Records a decision (and, with `nonceExpiresAt`, its nonce as used: `nonce_reused` if it was).
    @discardableResult
    func recordAttestation(_ record: AttestationRecord) throws -> Int64
    /// As `CertificateStore.recordIssuance`.
    @discardableResult
    func recordIssuance(attestation: AttestationRecord, certificate: CertificateRecord) throws -> Int64
    /// Revokes the certificates `plan` names, writes a `certificate.revoked` event for each and
    /// stores `crls` (one per issuer of the plan, built from it). Fails with
    /// `revocation_plan_stale` if the plan is stale: the target names other unrevoked
    /// certificates now, or an issuer's CRL number moved. A plan that names nothing is checked
    /// too (a certificate issued since must not escape a revocation meant for its host).
    func revoke(_ plan: RevocationPlan, crls: [CRLRecord]) throws
    /// One member of a batch of revocations committed in one transaction (`Revocations`):
    /// revokes the certificates `plan` names and writes a `certificate.revoked` event for each,
    /// storing no CRL — `storeCRLs` stores the batch's CRLs once every member is written. Fails
    /// with `revocation_plan_stale` if the target names other unrevoked certificates now.
    func revokeCertificates(_ plan: RevocationPlan) throws
    /// Stores a batch's CRLs (see `revokeCertificates`), each the next of its issuer: fails with
    /// `revocation_plan_stale` if an issuer's stored CRL number is not the CRL's number less one
    /// (another revocation or refresh stored a CRL since the batch was planned).
    func storeCRLs(_ crls: [CRLRecord]) throws
    @discardableResult
    func appendEvent(type: OutboxEventType, data: [String: String], at: Date) throws -> Int64
}

/// Durable broker state: every concern, and the unit of work.
public protocol BrokerStore: HostStore, TrustStore, AttestationStore, NonceStore, CertificateStore, OutboxStore, TokenStore {
    /// Runs `body` as one transaction: what it writes through the transaction commits when it
    /// returns, and nothing of it does if it throws. `body` must not block (no signing, no I/O):
    /// it runs under the store's write lock. It may run more than once (PostgreSQL runs a
    /// transaction again on a new connection when the old one was lost before it committed), so it
    /// must do nothing but read and write through the transaction it is given.
    func transaction<T>(_ body: (any StoreTransaction) throws -> T) throws -> T
}

extension BrokerStore {
    /// `StoreTransaction.saveTrust` in a transaction of its own.
    public func saveTrust(_ trust: HostTrust) throws { try transaction { try $0.saveTrust(trust) } }

    /// A verdict and the trust state it leads to, in one transaction.
    public func recordVerdict(_ record: AttestationRecord, trust: HostTrust) throws {
        try transaction { tx in
            try tx.recordAttestation(record)
            try tx.saveTrust(trust)
        }
    }
}

/// What one revocation changes: the certificates it names (as they read once revoked) and, per
/// issuer concerned, what that issuer's new CRL must list.
public struct RevocationPlan: Sendable, Equatable {
    public var target: RevocationTarget
    public var at: Date
    public var reason: RevocationReason
    /// The unrevoked certificates the target names, with `revokedAt` and `revocationReason` set.
    public var certificates: [CertificateRecord]
    /// One per issuer of `certificates`, sorted by issuer.
    public var issuers: [IssuerRevocations]
    public init(target: RevocationTarget, at: Date, reason: RevocationReason, certificates: [CertificateRecord], issuers: [IssuerRevocations]) {
        self.target = target; self.at = at; self.reason = reason; self.certificates = certificates; self.issuers = issuers
    }
    public var serials: [String] { certificates.map(\.serial) }
}

/// Everything an issuing CA has revoked, and the number its next CRL carries.
public struct IssuerRevocations: Sendable, Equatable {
    /// Subject key identifier (hex) of the CA.
    public var issuer: String
    public var revoked: [CertificateRecord]
    public var number: UInt64
    public init(issuer: String, revoked: [CertificateRecord], number: UInt64) { self.issuer = issuer; self.revoked = revoked; self.number = number }
}

extension RevocationPlan {
    /// Builds the plan from what a store read: the unrevoked certificates the target names, and per
    /// issuer concerned its revoked certificates and current CRL number (0: none yet).
    public static func make(target: RevocationTarget, at: Date, reason: RevocationReason, named: [CertificateRecord],
                            issuer: (String) throws -> (revoked: [CertificateRecord], crlNumber: UInt64)) rethrows -> RevocationPlan {
        let revoking = named.filter { $0.revokedAt == nil }.sorted { $0.serial < $1.serial }.map { c -> CertificateRecord in
            var c = c
            c.revokedAt = at
            c.revocationReason = reason
            return c
        }
        let issuers = try Set(revoking.map(\.issuer)).sorted().map { id -> IssuerRevocations in
            let (revoked, number) = try issuer(id)
            let all = (revoked + revoking.filter { $0.issuer == id }).sorted { $0.serial < $1.serial }
            return IssuerRevocations(issuer: id, revoked: all, number: number + 1)
        }
        return RevocationPlan(target: target, at: at, reason: reason, certificates: revoking, issuers: issuers)
    }

    /// Whether `named` (the target's unrevoked certificates now) and `crlNumber` (each issuer's
    /// stored CRL number now) are what the plan was made from; `conflict` otherwise.
    /// Then that `crls` are the ones signed for this plan (one per issuer, in order, with its
    /// number): a mismatch is the caller's bug (`internal_error`), not a stale plan.
    public func checkCurrent(named: [CertificateRecord], crls: [CRLRecord], crlNumber: (String) throws -> UInt64) throws {
        try checkNamed(named)
        for i in issuers where try crlNumber(i.issuer) + 1 != i.number {
            throw VouchError(.revocationPlanStale, "the CRL of \(i.issuer) changed; plan again")
        }
        for c in crlsRequired where !issuers.contains(where: { $0.issuer == c }) {
            throw VouchError(.revocationPlanStale, "no CRL planned for \(c)")
        }
        guard crls.map(\.issuer) == issuers.map(\.issuer), zip(crls, issuers).allSatisfy({ $0.number == $1.number }) else {
            throw VouchError(.internalError, "the CRLs do not match the revocation plan")
        }
    }

    /// Whether `named` (the target's unrevoked certificates now) are the ones the plan revokes;
    /// `revocation_plan_stale` otherwise.
    public func checkNamed(_ named: [CertificateRecord]) throws {
        guard named.filter({ $0.revokedAt == nil }).map(\.serial).sorted() == serials else {
            throw VouchError(.revocationPlanStale, "the certificates to revoke changed; plan again")
        }
    }

    /// Whether each of `crls` is its issuer's next (`crlNumber`: the stored number now), one per
    /// issuer; `revocation_plan_stale` otherwise (a batch's CRLs, `StoreTransaction.storeCRLs`).
    public static func checkNext(_ crls: [CRLRecord], crlNumber: (String) throws -> UInt64) throws {
        guard Set(crls.map(\.issuer)).count == crls.count else {
            throw VouchError(.internalError, "two CRLs of one issuer in one batch")
        }
        for crl in crls where try crlNumber(crl.issuer) + 1 != crl.number {
            throw VouchError(.revocationPlanStale, "the CRL of \(crl.issuer) changed; plan again")
        }
    }

    private var crlsRequired: Set<String> { Set(certificates.map(\.issuer)) }

    /// The certificate.revoked event of each revoked certificate.
    public func events() -> [(OutboxEventType, [String: String])] {
        certificates.map { c in
            (.certificateRevoked, ["serial": c.serial, "hostId": c.hostID, "agentName": c.agentName, "spiffeId": c.spiffeID,
                                   "reason": reason.name, "revokedAt": at.iso8601])
        }
    }
}

extension ErrorCode {
    /// A revocation plan no longer matches the store (another revocation or CRL of its issuer, a
    /// new certificate for its target): the broker plans again; a client sees `conflict` only if
    /// that keeps happening.
    public static let revocationPlanStale = ErrorCode("revocation_plan_stale", status: 409)
    /// A decision used a challenge nonce another decision already used (thrown by the stores).
    public static let nonceReused = ErrorCode("nonce_reused", status: 409)
    /// The host is blocked by an operator (thrown by the stores on a write that would unblock it).
    public static let hostRevoked = ErrorCode("host_revoked", status: 403)
}
