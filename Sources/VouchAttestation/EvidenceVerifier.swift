import Foundation
import VouchCore
import VouchEventLog
import VouchPolicy

/// Verifies one kind of evidence: raw bytes in, a typed verified value out, or typed refusals.
/// Two stages, because the broker treats their refusals differently:
/// 1. `authenticate`: is the evidence the host's device's, and bound to this request
///    (`VerificationContext.binding`)? Signatures, key and certificate checks, binding. A
///    refusal here is a `VouchError`: nothing the evidence says is believed. At enrollment the
///    request is then still unauthenticated, so the broker records nothing durable; a
///    re-attestation report arrives over the host's own mTLS (push) or the broker's pull, so
///    there a stage-1 refusal is a failed verdict like any other.
/// 2. `verify`: what does the authenticated evidence establish? Logs replayed against signed
///    measurements, rollback against the host's `AcceptedState`, the policy's knobs for this
///    kind. A refusal here is a list of `PolicyViolation`s with the record established so far;
///    the broker records it (the request provably comes from the host).
/// Neither stage evaluates the policy's rules: `Appraiser` does that over the whole set.
/// A conformer documents its own checks in order in the doc comments of its two methods, and
/// returns only `AuthenticatedEvidence` and `VerifiedEvidence` of its own `kind` for the
/// device it was given (`EvidenceVerifiers` refuses an answer for another device or kind).
public protocol EvidenceVerifier: Sendable {
    var kind: EvidenceKind { get }
    func authenticate(_ raw: RawEvidence, context: VerificationContext) -> EvidenceAuthentication
    func verify(_ evidence: AuthenticatedEvidence, accepted: AcceptedState, context: VerificationContext) -> EvidenceVerification
}

extension EvidenceVerifier {
    /// Both stages in order. A stage-1 refusal becomes violations with the errors' codes (path
    /// `evidence.DEVICE`) and no record.
    public func verify(_ raw: RawEvidence, accepted: AcceptedState, context: VerificationContext) -> EvidenceVerification {
        switch authenticate(raw, context: context) {
        case let .authenticated(evidence): return verify(evidence, accepted: accepted, context: context)
        case let .rejected(errors): return .rejected(errors.map { $0.violation(device: raw.device) }, nil)
        }
    }
}

extension VouchError {
    /// A stage-1 refusal as a violation of the device's evidence.
    func violation(device: String) -> PolicyViolation {
        PolicyViolation(code: code, path: "evidence.\(device)", expected: context["expected"] ?? "evidence that verifies", actual: context["got"] ?? message)
    }
}

/// The pieces of a request's evidence that passed stage 1, in the order sent.
public struct AuthenticatedEvidenceSet: Sendable {
    public let devices: [AuthenticatedEvidence]

    /// The platform device's record (`EvidenceKind.isPlatform`): what the attestation trail
    /// records of a refusal after authentication.
    public var record: EvidenceRecord? { devices.first { $0.kind.isPlatform }?.record }
}

public enum SetAuthentication: Sendable {
    case authenticated(AuthenticatedEvidenceSet)
    /// The first refusal; nothing is authenticated.
    case rejected([VouchError])
}

/// The verifiers a broker accepts evidence with, one per kind. The broker's wiring builds it;
/// enrollment and re-attestation only call `authenticate`, then `appraise`, and never look at a
/// kind. A kind with no verifier here is refused (`evidence_kind_unsupported`), never passed.
public struct EvidenceVerifiers: Sendable {
    private let byKind: [EvidenceKind: any EvidenceVerifier]

    /// One verifier per kind; a later one for the same kind replaces an earlier one.
    public init(_ verifiers: [any EvidenceVerifier]) {
        var byKind: [EvidenceKind: any EvidenceVerifier] = [:]
        for v in verifiers { byKind[v.kind] = v }
        self.byKind = byKind
    }

    public func verifier(for kind: EvidenceKind) -> (any EvidenceVerifier)? { byKind[kind] }

    /// Stage 1 for a request's evidence. Checks, in order, refusing at the first failure:
    /// 1. every piece's kind has a verifier here (`evidence_kind_unsupported`);
    /// 2. no two pieces name the same device (`evidence_device_duplicate`);
    /// 3. every device the policy requires (`Appraiser.requiredDevices`, for the host's platform
    ///    kind `VerificationContext.platform`) is present
    ///    (`evidence_missing`);
    /// 4. each piece, in the order sent, passes its verifier's `authenticate`.
    public func authenticate(_ raw: [RawEvidence], context: VerificationContext) -> SetAuthentication {
        // 1
        for piece in raw where byKind[piece.kind] == nil {
            return .rejected([VouchError(.evidenceKindUnsupported, "this broker verifies no evidence of kind \(piece.kind.rawValue)",
                                         context: ["device": piece.device, "got": piece.kind.rawValue,
                                                   "expected": byKind.keys.map(\.rawValue).sorted().joined(separator: ", ")])])
        }
        // 2
        if raw.count > 1 {
            var seen = Set<String>()
            for piece in raw where !seen.insert(piece.device).inserted {
                return .rejected([VouchError(.evidenceDeviceDuplicate, "two pieces of evidence name device \(piece.device)", context: ["device": piece.device])])
            }
        }
        // 3
        for (device, kind) in Appraiser.requiredDevices(context.policy, platform: context.platform) where !raw.contains(where: { $0.device == device && $0.kind == kind }) {
            return .rejected([VouchError(.evidenceMissing, "the policy requires evidence of kind \(kind.rawValue) for device \(device)",
                                         context: ["device": device, "expected": kind.rawValue, "got": raw.map(\.device).joined(separator: ", ")])])
        }
        // 4
        var devices: [AuthenticatedEvidence] = []
        devices.reserveCapacity(raw.count)
        for piece in raw {
            switch byKind[piece.kind]!.authenticate(piece, context: context) {
            case let .authenticated(evidence):
                // A verifier answers for the piece it was given, never for another device or kind.
                guard evidence.device == piece.device, evidence.kind == piece.kind else {
                    return .rejected([VouchError(.internalError, "the \(piece.kind.rawValue) verifier answered for another device",
                                                 context: ["device": piece.device, "got": evidence.device])])
                }
                devices.append(evidence)
            case let .rejected(errors): return .rejected(errors)
            }
        }
        return .authenticated(AuthenticatedEvidenceSet(devices: devices))
    }

    /// Stage 2 for every device, in order, refusing at the first device that fails (with every
    /// violation its failing check found), then the appraisal of the verified set against the
    /// policy (`Appraiser.appraise`). The claims of a refusal are the platform device's.
    public func appraise(_ set: AuthenticatedEvidenceSet, accepted: AcceptedState, context: VerificationContext,
                         evidenceAge: TimeInterval? = nil, agentKeyType: String? = nil) -> Appraisal {
        var verified: [VerifiedEvidence] = []
        verified.reserveCapacity(set.devices.count)
        for evidence in set.devices {
            guard let verifier = byKind[evidence.kind] else {
                return .rejected([VouchError(.evidenceKindUnsupported, "this broker verifies no evidence of kind \(evidence.kind.rawValue)",
                                             context: ["got": evidence.kind.rawValue]).violation(device: evidence.device)], nil)
            }
            switch verifier.verify(evidence, accepted: accepted, context: context) {
            case let .verified(v):
                guard v.device == evidence.device, v.kind == evidence.kind else {
                    return .rejected([VouchError(.internalError, "the \(evidence.kind.rawValue) verifier answered for another device",
                                                 context: ["device": evidence.device, "got": v.device]).violation(device: evidence.device)], nil)
                }
                verified.append(v)
            case let .rejected(violations, record):
                return .rejected(violations, evidence.kind.isPlatform ? record?.claims : nil)
            }
        }
        return Appraiser.appraise(hostID: context.hostID, verified, policy: context.policy, evidenceAge: evidenceAge, agentKeyType: agentKeyType,
                                  platform: context.platform)
    }
}
