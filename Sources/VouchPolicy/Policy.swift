import Foundation
import VouchCore
import VouchTPMWire

/// A trust policy: what a host's evidence must show before its agents get certificates.
/// See docs/policy.md for the file format. Values here are already validated.
public struct Policy: Sendable, Equatable {
    public var name: String
    public var version: Int
    public var description: String
    /// AK algorithms accepted at registration.
    public var akAlgorithms: [KeyTemplates.AKKind]
    /// The PCR bank quotes must use, and the allowed digests per PCR index.
    public var pcrBank: HashAlg
    public var pcrValues: [Int: [[UInt8]]]
    /// Certificate lifetime for agents on hosts that satisfy this policy.
    public var certificateTTL: TimeInterval
    /// Refuse quotes whose TPM clock is not marked safe (after an unorderly shutdown).
    public var requireSafeClock: Bool = false
    /// Model rules: whether a measured model is required, which manifests are allowed (with a
    /// human name each; empty = any) and which are denied.
    public var model = ModelRules()

    public struct ModelRules: Sendable, Equatable {
        public var required = false
        public var allowed: [(name: String, manifest: String)] = []
        public var denied: [String] = []
        public init() {}

        public static func == (a: ModelRules, b: ModelRules) -> Bool {
            a.required == b.required && a.denied == b.denied && a.allowed.map(\.name) == b.allowed.map(\.name) && a.allowed.map(\.manifest) == b.allowed.map(\.manifest)
        }
    }
    /// SHA-256 of the policy file's bytes, recorded with every decision.
    public var sha256: String

    public init(name: String, version: Int, description: String = "", akAlgorithms: [KeyTemplates.AKKind] = KeyTemplates.AKKind.allCases,
                pcrBank: HashAlg, pcrValues: [Int: [[UInt8]]], certificateTTL: TimeInterval, sha256: String = "") {
        self.name = name
        self.version = version
        self.description = description
        self.akAlgorithms = akAlgorithms
        self.pcrBank = pcrBank
        self.pcrValues = pcrValues
        self.certificateTTL = certificateTTL
        self.sha256 = sha256
    }

    /// The human name the policy gives a model manifest, if it lists it.
    public func modelName(for manifest: String) -> String? {
        model.allowed.first { $0.manifest == manifest }?.name
    }

    /// The PCRs a quote must cover: every PCR the policy constrains.
    public var pcrSelection: PCRSelection {
        PCRSelection(banks: [PCRBankSelection(hash: pcrBank, pcrs: pcrValues.keys.sorted())])
    }
}

/// One failed rule: the rule's path in the policy, what it expects and what the evidence shows.
public struct PolicyViolation: Sendable, Equatable, Codable {
    public var code: ErrorCode
    public var path: String
    public var expected: String
    public var actual: String

    public init(code: ErrorCode, path: String, expected: String, actual: String) {
        self.code = code
        self.path = path
        self.expected = expected
        self.actual = actual
    }

    public var message: String { "\(path): expected \(expected), got \(actual)" }
}

extension ErrorCode {
    public static let pcrNotAllowed = ErrorCode("pcr_not_allowed")
    public static let pcrMissing = ErrorCode("pcr_missing")
    public static let modelMissing = ErrorCode("model_missing")
    public static let modelNotAllowed = ErrorCode("model_not_allowed")
    public static let modelDenied = ErrorCode("model_denied")
    public static let policyInvalid = ErrorCode("policy_invalid")
}

/// The outcome of evaluating evidence against a policy: pure and total.
public enum PolicyDecision: Sendable, Equatable {
    case satisfied
    case violated([PolicyViolation])
}

extension Policy {
    /// Evaluates PCR values (from a verified quote) against the policy. Every rule is checked;
    /// the result lists every violation, not just the first.
    public func evaluate(pcrs: PCRValues, modelManifest: String? = nil) -> PolicyDecision {
        var violations: [PolicyViolation] = []
        if let manifest = modelManifest {
            if model.denied.contains(manifest) {
                violations.append(PolicyViolation(code: .modelDenied, path: "model.denied", expected: "a manifest not on the deny list", actual: manifest))
            } else if !model.allowed.isEmpty && !model.allowed.contains(where: { $0.manifest == manifest }) {
                violations.append(PolicyViolation(code: .modelNotAllowed, path: "model.allowed",
                                                  expected: "one of [\(model.allowed.map { "\($0.name) \($0.manifest)" }.joined(separator: ", "))]", actual: manifest))
            }
        } else if model.required || !model.allowed.isEmpty {
            violations.append(PolicyViolation(code: .modelMissing, path: model.required ? "model.required" : "model.allowed",
                                              expected: "a measured model (vouch-attester measure-model)", actual: "no model log"))
        }
        for index in pcrValues.keys.sorted() {
            let path = "pcrs.values.\(index)"
            guard let actual = pcrs.values[pcrBank]?[index] else {
                violations.append(PolicyViolation(code: .pcrMissing, path: path, expected: "PCR \(index) in bank \(pcrBank.rawValue) quoted", actual: "not quoted"))
                continue
            }
            let allowed = pcrValues[index] ?? []
            if !allowed.contains(actual) {
                violations.append(PolicyViolation(code: .pcrNotAllowed, path: path,
                                                  expected: "one of [\(allowed.map { Hex.encode($0) }.joined(separator: ", "))]",
                                                  actual: Hex.encode(actual)))
            }
        }
        return violations.isEmpty ? .satisfied : .violated(violations)
    }
}
