import Foundation
import VouchAPI
import VouchCore
import VouchEventLog

public enum AKState: String, Sendable, Codable {
    /// Registered; credential activation not yet proven.
    case pending
    /// Credential activation proved the AK lives in the TPM holding the certified EK.
    case active
}

public struct HostRecord: Sendable, Equatable {
    public var id: String
    public var hostname: String
    public var ekPublic: [UInt8]
    public var ekCertificate: [UInt8]
    public var ekIssuer: String
    /// Labels the host registered with (policy `match.labels`, `{label:NAME}` in SPIFFE templates).
    public var labels: [String: String]
    public var akPublic: [UInt8]
    public var akName: [UInt8]
    public var akAlgorithm: String
    public var akState: AKState
    /// SHA-256 of the activation secret while `pending`.
    public var activationDigest: [UInt8]?
    public var activationExpiresAt: Date?
    public var activationFailures: Int
    /// Set when an operator revoked the host as a whole: the reason and time.
    public var blockedReason: String? = nil
    public var registeredAt: Date
    public var updatedAt: Date
    /// Optimistic concurrency: the stored row's version when read (0: not stored). A write of a
    /// record whose version is no longer the stored one fails with `conflict`.
    public var version: Int64 = 0

    public init(id: String, hostname: String, ekPublic: [UInt8], ekCertificate: [UInt8], ekIssuer: String, labels: [String: String] = [:], akPublic: [UInt8],
                akName: [UInt8], akAlgorithm: String, akState: AKState, activationDigest: [UInt8]?, activationExpiresAt: Date?,
                activationFailures: Int, registeredAt: Date, updatedAt: Date) {
        self.id = id; self.hostname = hostname; self.ekPublic = ekPublic; self.ekCertificate = ekCertificate; self.ekIssuer = ekIssuer
        self.labels = labels
        self.akPublic = akPublic; self.akName = akName; self.akAlgorithm = akAlgorithm; self.akState = akState
        self.activationDigest = activationDigest; self.activationExpiresAt = activationExpiresAt; self.activationFailures = activationFailures
        self.registeredAt = registeredAt; self.updatedAt = updatedAt
    }
}

/// One attestation decision, kept as the audit trail ("what was this host's state at that time?").
public struct AttestationRecord: Sendable, Equatable {
    public var id: Int64
    public var hostID: String
    public var at: Date
    public var kind: AttestationKind
    public var trusted: Bool
    public var codes: [String]
    public var message: String
    public var agentName: String?
    public var nonce: String?
    public var policyName: String?
    public var policyVersion: Int?
    public var policySHA256: String?
    public var pcrDigest: String?
    public var serial: String?
    /// What a trusted attestation established (boot and model claims, TPM clock); for refusals,
    /// what was established before the refusal.
    public var claims: EvidenceClaims?
    /// The PCR values of a verified quote (bank -> index -> hex), kept for `vouch policy test`.
    public var pcrs: [String: [String: String]]?
    /// Set when this decision uses up a challenge nonce (`nonce`): the store records the nonce as
    /// used, until this time, in the same transaction, and fails with `nonce_reused` if it was.
    public var nonceExpiresAt: Date?

    public init(id: Int64 = 0, hostID: String, at: Date, kind: AttestationKind, trusted: Bool, codes: [String], message: String,
                agentName: String? = nil, nonce: String? = nil, policyName: String? = nil, policyVersion: Int? = nil,
                policySHA256: String? = nil, pcrDigest: String? = nil, serial: String? = nil, claims: EvidenceClaims? = nil,
                pcrs: [String: [String: String]]? = nil, nonceExpiresAt: Date? = nil) {
        self.id = id; self.hostID = hostID; self.at = at; self.kind = kind; self.trusted = trusted; self.codes = codes
        self.message = message; self.agentName = agentName; self.nonce = nonce; self.policyName = policyName
        self.policyVersion = policyVersion; self.policySHA256 = policySHA256; self.pcrDigest = pcrDigest; self.serial = serial
        self.claims = claims
        self.pcrs = pcrs
        self.nonceExpiresAt = nonceExpiresAt
    }
}

public struct CertificateRecord: Sendable, Equatable {
    public var serial: String
    public var hostID: String
    public var agentName: String
    public var spiffeID: String
    public var notBefore: Date
    public var notAfter: Date
    public var pem: String
    public var attestationID: Int64
    public var revokedAt: Date?
    public var revocationReason: RevocationReason?
    /// Subject key identifier (hex) of the CA that issued it.
    public var issuer: String = ""

    public init(serial: String, hostID: String, agentName: String, spiffeID: String, notBefore: Date, notAfter: Date, pem: String,
                attestationID: Int64, revokedAt: Date? = nil, revocationReason: RevocationReason? = nil, issuer: String = "") {
        self.serial = serial; self.hostID = hostID; self.agentName = agentName; self.spiffeID = spiffeID
        self.notBefore = notBefore; self.notAfter = notAfter; self.pem = pem; self.attestationID = attestationID
        self.revokedAt = revokedAt; self.revocationReason = revocationReason; self.issuer = issuer
    }
}

public struct CRLRecord: Sendable, Equatable {
    /// Subject key identifier (hex) of the CA that signs this CRL.
    public var issuer: String
    public var number: UInt64
    public var der: [UInt8]
    public var thisUpdate: Date
    public var nextUpdate: Date
    public init(issuer: String = "", number: UInt64, der: [UInt8], thisUpdate: Date, nextUpdate: Date) {
        self.issuer = issuer; self.number = number; self.der = der; self.thisUpdate = thisUpdate; self.nextUpdate = nextUpdate
    }
}

/// One entry of the durable event outbox (pushed to webhooks and the SSE stream).
public struct EventRecord: Sendable, Equatable {
    public var id: Int64
    public var at: Date
    public var type: OutboxEventType
    /// The event's data as a JSON object.
    public var data: String
    public init(id: Int64, at: Date, type: OutboxEventType, data: String) { self.id = id; self.at = at; self.type = type; self.data = data }
}

/// A webhook delivery that is due: the event, and how many attempts came before.
public struct PendingDelivery: Sendable, Equatable {
    public var event: EventRecord
    public var attempts: Int
    /// When a failed delivery may be retried (nil: never attempted).
    public var nextAttempt: Date?
    public init(event: EventRecord, attempts: Int, nextAttempt: Date?) { self.event = event; self.attempts = attempts; self.nextAttempt = nextAttempt }
}

/// What a bearer token may do: `read` (status, hosts, history, certificates, EAR) or `admin`
/// (also revoke, block, delete, reload policies, rotate the CA, manage tokens).
public enum TokenScope: String, Sendable, Codable, CaseIterable {
    case read, admin
    public func allows(_ needed: TokenScope) -> Bool { self == .admin || needed == .read }
}

/// An API token. Only its SHA-256 is stored; the token itself is shown once, at creation.
public struct TokenRecord: Sendable, Equatable {
    public var id: String
    public var name: String
    public var scope: TokenScope
    public var digest: [UInt8]
    public var createdAt: Date
    public var revokedAt: Date?
    public init(id: String, name: String, scope: TokenScope, digest: [UInt8], createdAt: Date, revokedAt: Date? = nil) {
        self.id = id; self.name = name; self.scope = scope; self.digest = digest; self.createdAt = createdAt; self.revokedAt = revokedAt
    }
}

/// Filters for the attestation history (newest first; `before` is the id to continue below).
public struct HistoryQuery: Sendable, Equatable {
    public var hostID: String?
    public var trusted: Bool?
    public var kind: AttestationKind?
    public var from: Date?
    public var until: Date?
    public var before: Int64?
    public var limit: Int
    public init(hostID: String? = nil, trusted: Bool? = nil, kind: AttestationKind? = nil, from: Date? = nil, until: Date? = nil, before: Int64? = nil, limit: Int = 100) {
        self.hostID = hostID; self.trusted = trusted; self.kind = kind; self.from = from; self.until = until; self.before = before; self.limit = limit
    }
}

/// Which certificates a revocation names.
public enum RevocationTarget: Sendable, Equatable {
    case serial(String)
    case agent(hostID: String, agentName: String)
    case host(String)
}

/// Builds the signed CRL of one issuing CA (by key identifier) for its revoked certificates and
/// CRL number (called inside the store's transaction, so a revocation and the CRL that lists it
/// commit together).
public typealias CRLBuilder = (_ issuer: String, _ revoked: [CertificateRecord], _ number: UInt64) throws -> CRLRecord

/// A host as the re-attestation scheduler sees it.
public struct AttestableHost: Sendable, Equatable {
    public var id: String
    public var labels: [String: String]
    public var ekIssuer: String
    public var mode: AttestationMode
    public var state: TrustState
    public init(id: String, labels: [String: String], ekIssuer: String, mode: AttestationMode, state: TrustState) {
        self.id = id; self.labels = labels; self.ekIssuer = ekIssuer; self.mode = mode; self.state = state
    }
}

/// Durable broker state. Every method is atomic; implementations serialize access.
public protocol BrokerStore: Sendable {
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

    /// Writes the state of the host's existing trust record (state, since, verdict and contact
    /// times, failures, faults, the unreachable spell, the last problem); a record is created, and
    /// how the host is reached (mode, URL, pin) changed, only by `activateHost`. No record: no-op.
    func saveTrust(_ trust: HostTrust) throws
    /// Hosts the scheduler may re-attest — AK activated, not blocked, not deleted, with a trust
    /// record — with only what scheduling needs (no key material; read every second).
    func attestableHosts() throws -> [AttestableHost]
    /// Records a verdict and the trust state it leads to (as `saveTrust`), in one transaction.
    func recordVerdict(_ record: AttestationRecord, trust: HostTrust) throws
    func trust(hostID: String) throws -> HostTrust?
    func trusts() throws -> [HostTrust]

    /// True if a decision already used this challenge nonce (see `AttestationRecord.nonceExpiresAt`).
    func nonceUsed(_ nonce: String) throws -> Bool

    /// Records a decision; returns its id.
    @discardableResult
    func recordAttestation(_ record: AttestationRecord) throws -> Int64
    func latestAttestation(hostID: String) throws -> AttestationRecord?
    /// The attestation history matching `query`, newest first.
    func attestations(_ query: HistoryQuery) throws -> [AttestationRecord]

    func saveToken(_ token: TokenRecord) throws
    func token(digest: [UInt8]) throws -> TokenRecord?
    func tokens() throws -> [TokenRecord]
    /// Marks the token revoked; false if there is no such unrevoked token.
    func revokeToken(id: String, at: Date) throws -> Bool
    /// When the most recent decision of all was recorded (to notice the broker's clock going back).
    func latestDecisionTime() throws -> Date?
    /// The host's most recent attestation whose quote verified (it carries PCR values).
    func latestEvidence(hostID: String) throws -> AttestationRecord?
    /// The TPM clock of the host's most recent trusted attestation, and when it was recorded.
    func lastTrustedClock(hostID: String) throws -> (clock: ClockState, at: Date)?

    /// Records a trusted enrollment and the certificate issued for it, atomically. Fails with
    /// `conflict` if the serial was ever used.
    func recordIssuance(attestation: AttestationRecord, certificate: CertificateRecord) throws -> Int64
    func certificates() throws -> [CertificateRecord]
    func certificate(serial: String) throws -> CertificateRecord?

    /// Revokes every unrevoked certificate `target` names and, for each issuer concerned, stores the
    /// CRL `buildCRL` makes with that issuer's next CRL number, in one transaction.
    func revoke(_ target: RevocationTarget, at: Date, reason: RevocationReason, buildCRL: CRLBuilder) throws -> (serials: [String], crls: [CRLRecord])
    // Event outbox. Revocation and issuance events are written by `revoke` and `recordIssuance`
    // in their own transactions; others through `appendEvent`.
    @discardableResult
    func appendEvent(type: OutboxEventType, data: [String: String], at: Date) throws -> Int64
    func events(after id: Int64, limit: Int) throws -> [EventRecord]
    /// The first event a webhook subscriber gets: where the outbox stood when it was first seen.
    func registerSubscriber(_ url: String) throws -> Int64
    /// The subscriber's undelivered events in order (due or not: delivery must not overtake them).
    func undelivered(subscriber: String, limit: Int) throws -> [PendingDelivery]
    func recordDelivery(subscriber: String, eventID: Int64, delivered: Bool, attempts: Int, nextAttempt: Date?, error: String?, at: Date) throws
    func undeliveredCount(subscriber: String) throws -> Int

    /// Stores a freshly built CRL (with the next number) when none exists or it is due.
    func refreshCRL(issuer: String, buildCRL: CRLBuilder) throws -> CRLRecord
    func currentCRL(issuer: String) throws -> CRLRecord?
}

extension CertificateRecord {
    /// Revoked, expired or valid at `now`.
    public func state(at now: Date) -> CertificateState { revokedAt != nil ? .revoked : (notAfter <= now ? .expired : .valid) }
}

extension HostRecord {
    public func withBlock(_ reason: String?) -> HostRecord {
        var h = self
        h.blockedReason = reason
        return h
    }

    public func withVersion(_ version: Int64) -> HostRecord {
        var h = self
        h.version = version
        return h
    }

    public func withLabels(_ labels: [String: String]?) -> HostRecord {
        var h = self
        h.labels = labels ?? [:]
        return h
    }
}
