import Foundation

// Closed wire types. Each encodes as its raw value, the JSON string the API sent before these
// types existed, so the wire form is byte-identical.

/// A re-attestation verdict's result: a judgement of evidence (faults are not verdicts).
public enum VerdictResult: String, Codable, Sendable, CaseIterable {
    case trusted
    case rejected

    public init(trusted: Bool) { self = trusted ? .trusted : .rejected }
    public var isTrusted: Bool {
        switch self {
        case .trusted: true
        case .rejected: false
        }
    }
}

/// An agent certificate's state at some time (`GET /v1/certificates?state=`, status output).
public enum CertificateState: String, Codable, Sendable, CaseIterable {
    case valid
    case expired
    case revoked
}
