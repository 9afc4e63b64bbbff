import Foundation

// Closed types of what the broker stores. Each raw value is exactly the string (or integer) the
// SQLite columns held before these types existed, so a database from before reads the same and
// the wire and JSON forms stay byte-identical. The store reads and writes raw values only.
//
// Unknown stored values: the broker never writes one, so it can only come from a damaged or
// hand-edited database. Reading it must not trap nor lose the row (attestations are the audit
// trail; an outbox event skipped would be a hole in every subscriber's sequence; a revoked
// certificate must stay revoked), so each type has a documented fallback (`init(stored:)`).

/// What an attestation record records (`attestations.kind`).
public enum AttestationKind: String, Sendable, CaseIterable {
    /// Written by brokers before registration became stateless; read from old databases only.
    case registration
    /// A completed credential activation, or a CPU TEE host's registration (its report is the proof).
    case activation
    /// An agent enrollment: trusted (a certificate was issued) or refused.
    case enrollment
    /// A re-attestation verdict (pull or push).
    case reattestation
    /// No evidence came (unreachable, timeout, TPM busy); not a verdict.
    case fault
    /// An operator deleted the host.
    case deregistration
    /// Fallback for a stored kind this broker does not know. Never written by the broker; the
    /// row is kept (and listed) rather than skipped, and the history filter does not accept it.
    case unrecognized

    /// The kind a stored column holds; `.unrecognized` for an unknown value.
    public init(stored: String) { self = AttestationKind(rawValue: stored) ?? .unrecognized }

    /// Whether `GET /v1/attestations?kind=` accepts it.
    public var isFilterable: Bool {
        switch self {
        case .registration, .activation, .enrollment, .reattestation, .fault, .deregistration: true
        case .unrecognized: false
        }
    }
}

/// The type of an outbox event (`events.type`; the SSE `event:` line and the webhook
/// `X-Vouch-Event` header carry the raw value).
public enum OutboxEventType: String, Sendable, CaseIterable {
    case certificateIssued = "certificate.issued"
    case certificateRevoked = "certificate.revoked"
    case attestationRejected = "attestation.rejected"
    case hostBlocked = "host.blocked"
    case hostUnblocked = "host.unblocked"
    case hostDeleted = "host.deleted"
    case hostTrusted = "host.trusted"
    case hostUntrusted = "host.untrusted"
    case hostUnreachable = "host.unreachable"
    /// Fallback for a stored type this broker does not know. Never written by the broker; the
    /// event is still delivered (as `unrecognized`) so no subscriber's sequence has a hole.
    case unrecognized

    /// The type a stored column holds; `.unrecognized` for an unknown value.
    public init(stored: String) { self = OutboxEventType(rawValue: stored) ?? .unrecognized }
}

/// RFC 5280 CRLReason (section 5.3.1): the raw value is the code in CRL entries, OCSP answers and
/// `certificates.revocation_reason`; `name` is the ASN.1 name the API and the CLI (`--reason`) use.
public enum RevocationReason: Int, Sendable, CaseIterable {
    case unspecified = 0
    case keyCompromise = 1
    case cACompromise = 2
    case affiliationChanged = 3
    case superseded = 4
    case cessationOfOperation = 5
    case certificateHold = 6
    // 7 is not used.
    case removeFromCRL = 8
    case privilegeWithdrawn = 9
    case aACompromise = 10

    public var name: String {
        switch self {
        case .unspecified: "unspecified"
        case .keyCompromise: "keyCompromise"
        case .cACompromise: "cACompromise"
        case .affiliationChanged: "affiliationChanged"
        case .superseded: "superseded"
        case .cessationOfOperation: "cessationOfOperation"
        case .certificateHold: "certificateHold"
        case .removeFromCRL: "removeFromCRL"
        case .privilegeWithdrawn: "privilegeWithdrawn"
        case .aACompromise: "aACompromise"
        }
    }

    /// Whether an operator may revoke with it. The broker revokes for good and signs only its own
    /// end-entity certificates: not a hold (nor its delta-CRL removal), and not a CA or AA compromise.
    public var isRequestable: Bool {
        switch self {
        case .unspecified, .keyCompromise, .affiliationChanged, .superseded, .cessationOfOperation, .privilegeWithdrawn: true
        case .cACompromise, .certificateHold, .removeFromCRL, .aACompromise: false
        }
    }

    /// The reason with this name, if any.
    public init?(name: String) {
        guard let reason = RevocationReason.allCases.first(where: { $0.name == name }) else { return nil }
        self = reason
    }

    /// The reason a stored column holds. An unknown code (not RFC 5280's) reads as `.unspecified`:
    /// the certificate stays revoked; only the reason is lost.
    public init(stored code: Int64) {
        self = Int(exactly: code).flatMap(RevocationReason.init(rawValue:)) ?? .unspecified
    }
}
