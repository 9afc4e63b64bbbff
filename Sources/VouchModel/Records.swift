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

/// What a host attests with (`hosts.platform`): its TPM, or the CPU TEE it registered with. The
/// raw values are the evidence kinds' (`EvidenceKind`).
public enum HostPlatform: String, Sendable, CaseIterable {
    case tpm
    case sevSNP = "sev-snp"
    case tdx
    /// An Azure confidential VM: SEV-SNP with the paravisor's vTPM (its HCL report and TPM quotes).
    case azureSNPVTPM = "azure-snp-vtpm"

    /// The platform a stored column holds; `.tpm` for an unknown value (a TEE host read as a TPM
    /// one has no AK its evidence could verify with: refused, never passed).
    public init(stored: String) { self = HostPlatform(rawValue: stored) ?? .tpm }
}

/// A registered host. For a CPU TEE host (`platform` not `.tpm`) the TPM fields hold what plays
/// their part: `ekPublic` the chip pin every later report is checked against (SEV-SNP registered
/// with a VCEK: CHIP_ID; an Azure confidential VM: its vTPM's endorsement key, the DER
/// SubjectPublicKeyInfo of the runtime claims' `HCLEkPub`; empty otherwise), `ekCertificate` nothing, `ekIssuer` the issuer of the
/// certificate that endorsed its registration report (what `match.ekIssuer` matches), `akPublic`
/// the host key (canonical DER SubjectPublicKeyInfo, the key of its host certificate and the
/// host's identity: every later piece of evidence carries its signature), `akName`
/// its SHA-256, `akAlgorithm` its type (`ec-p256`, `ec-p384`), `akState` active.
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
    /// What the host attests with.
    public var platform: HostPlatform = .tpm

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
    /// A CPU TEE's evidence bytes, as authenticated for this decision. The store keeps only the
    /// host's latest (written with the record, in its transaction) and returns it only from
    /// `latestEvidence`, when that record is the one it came with.
    public var teeEvidence: TEEEvidenceCopy?
    /// Set when this decision uses up a challenge nonce (`nonce`): the store records the nonce as
    /// used, until this time, in the same transaction, and fails with `nonce_reused` if it was.
    public var nonceExpiresAt: Date?

    public init(id: Int64 = 0, hostID: String, at: Date, kind: AttestationKind, trusted: Bool, codes: [String], message: String,
                agentName: String? = nil, nonce: String? = nil, policyName: String? = nil, policyVersion: Int? = nil,
                policySHA256: String? = nil, pcrDigest: String? = nil, serial: String? = nil, claims: EvidenceClaims? = nil,
                pcrs: [String: [String: String]]? = nil, teeEvidence: TEEEvidenceCopy? = nil, nonceExpiresAt: Date? = nil) {
        self.id = id; self.hostID = hostID; self.at = at; self.kind = kind; self.trusted = trusted; self.codes = codes
        self.message = message; self.agentName = agentName; self.nonce = nonce; self.policyName = policyName
        self.policyVersion = policyVersion; self.policySHA256 = policySHA256; self.pcrDigest = pcrDigest; self.serial = serial
        self.claims = claims
        self.pcrs = pcrs
        self.teeEvidence = teeEvidence
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

/// A host as the re-attestation scheduler sees it.
public struct AttestableHost: Sendable, Equatable {
    public var id: String
    public var labels: [String: String]
    public var ekIssuer: String
    public var mode: AttestationMode
    public var state: TrustState
    /// What the host attests with: the policy that applies depends on it.
    public var platform: HostPlatform
    public init(id: String, labels: [String: String], ekIssuer: String, mode: AttestationMode, state: TrustState, platform: HostPlatform = .tpm) {
        self.id = id; self.labels = labels; self.ekIssuer = ekIssuer; self.mode = mode; self.state = state; self.platform = platform
    }
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

    public func withPlatform(_ platform: HostPlatform) -> HostRecord {
        var h = self
        h.platform = platform
        return h
    }
}
