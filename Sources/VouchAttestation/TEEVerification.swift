import VouchCore
import VouchPolicy
import VouchTEEWire

/// What a CPU TEE verifier (SEV-SNP, TDX, Azure SNP vTPM) returns: the verified claims with any
/// warnings the policy lets through, or the refusals (with the claims established before the
/// first refusal, when authenticity was established). Only `.verified` claims reach policy
/// appraisal and issuance.
public enum TEEVerification<Claims: Sendable>: Sendable {
    case verified(Claims, warnings: [TEEWarning])
    case rejected([PolicyViolation], claims: Claims?)

    public var isVerified: Bool {
        if case .verified = self { return true }
        return false
    }

    /// The warnings of a verified result (none for a refusal).
    public var warnings: [TEEWarning] {
        if case let .verified(_, warnings) = self { return warnings }
        return []
    }

    public var violations: [PolicyViolation] {
        if case let .rejected(violations, _) = self { return violations }
        return []
    }
}

/// Something a verifier accepted but a relying party should know (a TCB status that needs
/// software hardening and the advisories it names, a configuration-needed platform).
public struct TEEWarning: Sendable, Equatable, Codable {
    public var code: String
    public var message: String
    /// Advisory ids (e.g. INTEL-SA-00837) the warning is about, if any.
    public var advisories: [String]

    public init(code: String, message: String, advisories: [String] = []) {
        self.code = code
        self.message = message
        self.advisories = advisories
    }
}

extension ErrorCode {
    /// Keeps the TEE wire target's codes reachable from verifiers' callers.
    static let teeMalformed = ErrorCode.teeEvidenceMalformed
}
