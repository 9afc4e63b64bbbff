import Foundation

/// Broker → attester (pull mode, `POST /v1/quote` on the attester, mTLS both ways): quote these
/// PCRs over SHA-256(nonce ‖ SHA-256("vouch re-attestation v1")).
public struct QuoteRequest: Codable, Sendable {
    public var nonce: String            // hex, 32 bytes
    public var pcrSelection: [PCRSelectionBody]
    public init(nonce: String, pcrSelection: [PCRSelectionBody]) { self.nonce = nonce; self.pcrSelection = pcrSelection }
}

/// Attester → broker (push mode, `POST /v1/hosts/{id}/attestations`, host certificate as TLS
/// client certificate): a quote over a nonce from `POST /v1/challenges` with purpose `attestation`.
public struct AttestationReport: Codable, Sendable {
    public var nonce: String
    public var quote: QuoteBody
    public init(nonce: String, quote: QuoteBody) { self.nonce = nonce; self.quote = quote }
}

/// A re-attestation verdict and the host's trust state after it.
public struct AttestationVerdict: Codable, Sendable {
    public var hostId: String
    public var at: String
    /// `trusted` or `rejected` (a verdict on evidence; faults are not verdicts).
    public var result: String
    public var codes: [String]
    public var message: String
    public var state: String
    /// Certificates revoked because of this verdict.
    public var revoked: [String]?
    public init(hostId: String, at: String, result: String, codes: [String], message: String, state: String, revoked: [String]? = nil) {
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
