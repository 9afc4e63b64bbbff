import Foundation

/// Broker → attester (pull mode, mTLS both ways): `POST /v1/quote` on a TPM host's attester —
/// quote these PCRs over SHA-256(nonce ‖ SHA-256("vouch re-attestation v1")), answered with a
/// `QuoteBody` — or `POST /v1/evidence` on a CPU TEE host's, answered with an `AttestationReport`
/// for this nonce (its evidence bound as a push report's; `pcrSelection` is a TPM's).
public struct QuoteRequest: Codable, Sendable {
    public var nonce: String            // hex, 32 bytes
    public var pcrSelection: [PCRSelectionBody]
    public init(nonce: String, pcrSelection: [PCRSelectionBody]) { self.nonce = nonce; self.pcrSelection = pcrSelection }
}

/// Attester → broker (push mode, `POST /v1/hosts/{id}/attestations`, host certificate as TLS
/// client certificate): a quote over a nonce from `POST /v1/challenges` with purpose `attestation`.
/// A CPU TEE host reports its evidence in `tee` instead (exactly one of `quote` and `tee`).
/// The same body answers the broker's pull (`POST /v1/evidence` on the attester, `nonce` the
/// request's).
public struct AttestationReport: Codable, Sendable {
    public var nonce: String
    public var quote: QuoteBody?
    public var tee: TEEEvidenceBody?
    /// Other devices' evidence (GPUs), as at enrollment.
    public var devices: [DeviceEvidenceBody]?
    public init(nonce: String, quote: QuoteBody) { self.nonce = nonce; self.quote = quote }
    public init(nonce: String, tee: TEEEvidenceBody) { self.nonce = nonce; self.tee = tee }
}

/// A re-attestation verdict and the host's trust state after it.
public struct AttestationVerdict: Codable, Sendable {
    public var hostId: String
    public var at: String
    /// `trusted` or `rejected` (a verdict on evidence; faults are not verdicts).
    public var result: VerdictResult
    public var codes: [String]
    public var message: String
    public var state: String
    /// Certificates revoked because of this verdict.
    public var revoked: [String]?
    public init(hostId: String, at: String, result: VerdictResult, codes: [String], message: String, state: String, revoked: [String]? = nil) {
        self.hostId = hostId; self.at = at; self.result = result; self.codes = codes; self.message = message; self.state = state
        self.revoked = revoked
    }
}

/// A host's continuous-attestation state.
public struct HostTrustStatus: Codable, Sendable, Equatable {
    /// `unknown` (no verdict yet), `trusted`, `untrusted`, or `unreachable` (no evidence lately;
    /// not a verdict until the policy's grace ends).
    public var state: String
    public var since: String
    /// `pull` or `push`.
    public var mode: String
    public var simulated: Bool?
    public var lastVerdictAt: String?
    public var lastContactAt: String?
    public var consecutiveFailures: Int
    /// The last fault (unreachable, timeout, TPM busy) or refusal code.
    public var lastProblem: String?
    public var attesterURL: String?
    public init(state: String, since: String, mode: String, simulated: Bool? = nil, lastVerdictAt: String? = nil, lastContactAt: String? = nil,
                consecutiveFailures: Int, lastProblem: String? = nil, attesterURL: String? = nil) {
        self.state = state; self.since = since; self.mode = mode; self.simulated = simulated; self.lastVerdictAt = lastVerdictAt
        self.lastContactAt = lastContactAt; self.consecutiveFailures = consecutiveFailures; self.lastProblem = lastProblem
        self.attesterURL = attesterURL
    }
}

/// `POST /v1/tokens` (admin): a named token with a scope.
public struct TokenCreateRequest: Codable, Sendable {
    public var name: String
    /// `read` or `admin`.
    public var scope: String
    public init(name: String, scope: String) { self.name = name; self.scope = scope }
}

public struct TokenInfo: Codable, Sendable {
    public var id: String
    public var name: String
    public var scope: String
    public var createdAt: String
    public var revokedAt: String?
    /// The bearer token itself: only in the response that creates it.
    public var token: String?
    public init(id: String, name: String, scope: String, createdAt: String, revokedAt: String? = nil, token: String? = nil) {
        self.id = id; self.name = name; self.scope = scope; self.createdAt = createdAt; self.revokedAt = revokedAt; self.token = token
    }
}

/// One entry of the attestation history (the audit trail).
public struct AttestationEntry: Codable, Sendable {
    public var id: Int64
    public var hostId: String
    public var at: String
    /// registration, activation, enrollment, reattestation, fault, deregistration
    public var kind: String
    /// trusted, rejected, or info (registration/activation steps)
    public var result: String
    public var codes: [String]
    public var message: String
    public var agentName: String?
    public var policy: String?
    public var policySha256: String?
    public var pcrDigest: String?
    public var serial: String?
    public init(id: Int64, hostId: String, at: String, kind: String, result: String, codes: [String], message: String, agentName: String? = nil,
                policy: String? = nil, policySha256: String? = nil, pcrDigest: String? = nil, serial: String? = nil) {
        self.id = id; self.hostId = hostId; self.at = at; self.kind = kind; self.result = result; self.codes = codes; self.message = message
        self.agentName = agentName; self.policy = policy; self.policySha256 = policySha256; self.pcrDigest = pcrDigest; self.serial = serial
    }
}

/// A page of history, newest first; `next` is the cursor (`before=`) for the following page.
public struct AttestationPage: Codable, Sendable {
    public var items: [AttestationEntry]
    public var next: String?
    public init(items: [AttestationEntry], next: String?) { self.items = items; self.next = next }
}

/// `GET /v1/summary`: counts for dashboards and health checks.
public struct StatusSummary: Codable, Sendable {
    public var trustDomain: String
    public var hostsByState: [String: Int]
    public var hostsByAKState: [String: Int]
    public var certificatesByState: [String: Int]
    public var crlNumber: UInt64
    public var policies: Int
    public var policyReloadError: String?
    public init(trustDomain: String, hostsByState: [String: Int], hostsByAKState: [String: Int], certificatesByState: [String: Int], crlNumber: UInt64,
                policies: Int, policyReloadError: String? = nil) {
        self.trustDomain = trustDomain; self.hostsByState = hostsByState; self.hostsByAKState = hostsByAKState
        self.certificatesByState = certificatesByState; self.crlNumber = crlNumber; self.policies = policies; self.policyReloadError = policyReloadError
    }
}

/// Attester → broker (pull mode, `POST /v1/hosts/{id}/hint`, host certificate as TLS client
/// certificate): "my measurements changed, pull now". Optional; the hint may be body-less. It
/// carries no evidence and is trusted for nothing but scheduling a pull round, whose nonce the
/// broker chooses.
public struct HintRequest: Codable, Sendable {
    /// Why the host hints (logged by the broker, at most 128 characters), e.g. `pcr_changed`.
    public var reason: String?
    public init(reason: String? = nil) { self.reason = reason }
}

/// The broker's answer to a hint (202): when the pull round it scheduled is due.
public struct HintResponse: Codable, Sendable, Equatable {
    public var hostId: String
    /// `scheduled` (this hint scheduled a round) or `coalesced` (a hinted round was already
    /// pending: this hint adds nothing).
    public var round: String
    /// When the round is due (RFC 3339): now, or one second after the last hinted round began.
    public var at: String
    public init(hostId: String, round: String, at: String) { self.hostId = hostId; self.round = round; self.at = at }
}
