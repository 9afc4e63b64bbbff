import Foundation

/// Where a host stands in continuous re-attestation.
public enum TrustState: String, Sendable, Codable, CaseIterable {
    /// Registered, no verdict yet.
    case unknown
    /// The latest verdict was good.
    case trusted
    /// A verdict failed (after `afterFailures`), or the host stayed unreachable past the grace.
    case untrusted
    /// No evidence lately (timeouts, refused connections, TPM busy, missed push reports). Not a
    /// verdict: the host becomes untrusted only when the policy's grace ends.
    case unreachable
}

/// How evidence reaches the broker.
public enum AttestationMode: String, Sendable, Codable {
    /// The broker asks the attester for quotes over mTLS (the attester listens).
    case pull
    /// The attester fetches nonces and posts reports on its own schedule (hosts behind NAT).
    case push
}

/// A host's continuous-attestation record (kept beside `HostRecord`, one per host).
public struct HostTrust: Sendable, Equatable {
    public var hostID: String
    public var state: TrustState
    /// When the host entered `state`.
    public var since: Date
    public var mode: AttestationMode
    /// Pull mode: the attester's HTTPS base URL.
    public var attesterURL: String?
    /// The host certificate issued at activation: its serial (hex) and SPKI SHA-256 (base64), which
    /// the broker pins when it pulls and requires when the host pushes.
    public var hostCertificateSerial: String?
    public var hostKeyPin: String?
    /// A software host from `vouch-attester --simulate` (no TPM).
    public var simulated: Bool
    public var lastVerdictAt: Date?
    public var lastContactAt: Date?
    /// Consecutive failed verdicts (reset by a good one).
    public var consecutiveFailures: Int
    /// Consecutive faults (unreachable, timeout, TPM busy), for backoff.
    public var consecutiveFaults: Int
    /// When the current unreachable spell began.
    public var unreachableSince: Date?
    public var lastProblem: String?

    public init(hostID: String, state: TrustState = .unknown, since: Date, mode: AttestationMode, attesterURL: String? = nil,
                hostCertificateSerial: String? = nil, hostKeyPin: String? = nil, simulated: Bool = false, lastVerdictAt: Date? = nil,
                lastContactAt: Date? = nil, consecutiveFailures: Int = 0, consecutiveFaults: Int = 0, unreachableSince: Date? = nil,
                lastProblem: String? = nil) {
        self.hostID = hostID; self.state = state; self.since = since; self.mode = mode; self.attesterURL = attesterURL
        self.hostCertificateSerial = hostCertificateSerial; self.hostKeyPin = hostKeyPin; self.simulated = simulated
        self.lastVerdictAt = lastVerdictAt; self.lastContactAt = lastContactAt; self.consecutiveFailures = consecutiveFailures
        self.consecutiveFaults = consecutiveFaults; self.unreachableSince = unreachableSince; self.lastProblem = lastProblem
    }

    /// Moves to `state`, restarting `since` only when the state changes.
    public mutating func enter(_ new: TrustState, at now: Date) {
        if state != new { state = new; since = now }
    }
}
