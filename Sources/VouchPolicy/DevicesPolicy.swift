import Foundation
import VouchCore

extension ErrorCode {
    /// The host presents another number of GPUs than `devices.gpus.count` (or none at all).
    public static let gpuCountMismatch = ErrorCode("gpu_count_mismatch", status: 403)
    /// A GPU's project / project SKU / chip SKU (signed opaque data) is not in `devices.gpus.models`.
    public static let gpuModelNotAllowed = ErrorCode("gpu_model_not_allowed", status: 403)
    /// A GPU's driver or VBIOS version is below the policy's minimum, or does not parse as one.
    public static let gpuVersionTooOld = ErrorCode("gpu_version_too_old", status: 403)
    /// Reference values were required and a measurement has none: the RIM that covers it was not
    /// found (or is not valid at the check time).
    public static let gpuReferenceMissing = ErrorCode("gpu_reference_missing", status: 403)
    /// Reference values were required and a measurement differs from every RIM alternative (or an
    /// active reference index is absent from the evidence).
    public static let nvidiaGPUMeasurementMismatch = ErrorCode("nvidia_gpu_measurement_mismatch", status: 403)
}

/// What a policy requires of a host's devices (the `devices:` section). Pure values; the broker
/// and `vouch evidence verify --kind nvidia-gpu --policy` evaluate them on verified claims.
///
///     devices:
///       gpus:
///         count: 8                       # exactly this many GPUs (default: at least one)
///         models:                        # optional allowlist, matched on the signed opaque data
///           - {project: "1010", projectSKU: "0200", chipSKU: "882"}
///         minDriverVersion: "550.54.14"
///         minVBIOSVersion: "96.00.74.00.1A"
///         referenceValues: required      # required (default) | reported
public struct DevicesPolicy: Sendable, Equatable {
    public var gpus: GPUPolicy?
    public init(gpus: GPUPolicy? = nil) { self.gpus = gpus }

    /// Decodes the `devices:` section; unknown keys, wrong types and bad values are refused with
    /// `policy_invalid` naming file:line:column and the path.
    public static func decode(_ node: ConfigNode, path: String = "devices") throws -> DevicesPolicy {
        let m = try PolicyDecoder.Mapping(node, path: path)
        try m.allowOnly(["gpus"])
        var p = DevicesPolicy()
        if let n = m.optional("gpus") { p.gpus = try GPUPolicy.decode(n, path: m.child("gpus")) }
        return p
    }
}

/// The `devices.gpus` rules.
public struct GPUPolicy: Sendable, Equatable {
    public enum ReferenceValues: String, Sendable, Equatable {
        /// Every measurement must match its RIM: a missing or mismatched one is refused.
        case required
        /// The comparison is reported in the claims, never refused.
        case reported
    }

    /// Whether each GPU's device chain must have been shown unrevoked by OCSP.
    public enum Revocation: String, Sendable, Equatable {
        /// Every certificate of the chain below the root (the leaf, the GPU's own attestation key,
        /// aside) must have a verified, current `good` OCSP answer in the broker's store; a
        /// missing or `unknown` one is refused (`revocation_status_unknown`).
        case required
        /// A verified `revoked` answer refuses (`certificate_revoked_ocsp`); a missing one is
        /// reported in the claims (`revocation: missing`).
        case ifAvailable
    }

    /// One allowed model: the signed opaque data's project, project SKU and chip SKU (each
    /// compared exactly; nil matches any). NVIDIA's evidence names no marketing model, so these
    /// identifiers are what a policy can honestly pin.
    public struct Model: Sendable, Equatable {
        public var project: String
        public var projectSKU: String?
        public var chipSKU: String?
        public init(project: String, projectSKU: String? = nil, chipSKU: String? = nil) {
            (self.project, self.projectSKU, self.chipSKU) = (project, projectSKU, chipSKU)
        }
        public func matches(_ gpu: GPUFacts) -> Bool {
            gpu.project == project && (projectSKU.map { gpu.projectSKU == $0 } ?? true) && (chipSKU.map { gpu.chipSKU == $0 } ?? true)
        }
        public var description: String { [project, projectSKU ?? "*", chipSKU ?? "*"].joined(separator: "/") }
    }

    /// Exactly this many GPUs; nil: at least one.
    public var count: Int?
    /// Allowed models; empty: any.
    public var models: [Model] = []
    public var minDriverVersion: NvidiaVersion?
    public var minVBIOSVersion: NvidiaVersion?
    public var referenceValues: ReferenceValues = .required
    public var revocation: Revocation = .ifAvailable

    public init() {}

    public static let maxGPUs = 16
    static let maxModels = 32

    static func decode(_ node: ConfigNode, path: String) throws -> GPUPolicy {
        let m = try PolicyDecoder.Mapping(node, path: path)
        try m.allowOnly(["count", "models", "minDriverVersion", "minVBIOSVersion", "referenceValues", "revocation"])
        var p = GPUPolicy()
        if let n = m.optional("count") { p.count = try PolicyDecoder.integer(n, m.child("count"), 1...maxGPUs) }
        if let n = m.optional("models") {
            let list = try PolicyDecoder.sequence(n, path: m.child("models"))
            guard (1...maxModels).contains(list.count) else { throw PolicyDecoder.invalid(n, m.child("models"), "must list 1-\(maxModels) models") }
            p.models = try list.enumerated().map { i, entry in
                let e = try PolicyDecoder.Mapping(entry, path: "\(m.child("models"))[\(i)]")
                try e.allowOnly(["project", "projectSKU", "chipSKU"])
                func identifier(_ key: String) throws -> String? {
                    guard let v = e.optional(key) else { return nil }
                    guard let s = v.scalar, (1...16).contains(s.utf8.count), s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
                        throw PolicyDecoder.invalid(v, e.child(key), "must be 1-16 letters or digits, as the GPU's opaque data gives it (e.g. 1010)")
                    }
                    return s
                }
                guard let project = try identifier("project") else { throw PolicyDecoder.invalid(entry, e.child("project"), "is required") }
                return Model(project: project, projectSKU: try identifier("projectSKU"), chipSKU: try identifier("chipSKU"))
            }
        }
        if let n = m.optional("minDriverVersion") {
            guard let s = n.scalar, let v = NvidiaVersion(driver: s) else {
                throw PolicyDecoder.invalid(n, m.child("minDriverVersion"), "must be a driver version: 2-4 dot-separated decimal numbers, such as 550.54.14")
            }
            p.minDriverVersion = v
        }
        if let n = m.optional("minVBIOSVersion") {
            guard let s = n.scalar, let v = NvidiaVersion(vbios: s) else {
                throw PolicyDecoder.invalid(n, m.child("minVBIOSVersion"), "must be a VBIOS version: 5 dot-separated pairs of hex digits, such as 96.00.74.00.1A")
            }
            p.minVBIOSVersion = v
        }
        if let n = m.optional("referenceValues") {
            guard let s = n.scalar, let r = ReferenceValues(rawValue: s) else {
                throw PolicyDecoder.invalid(n, m.child("referenceValues"), "must be required or reported")
            }
            p.referenceValues = r
        }
        if let n = m.optional("revocation") {
            guard let s = n.scalar, let r = Revocation(rawValue: s) else {
                throw PolicyDecoder.invalid(n, m.child("revocation"), "must be required or ifAvailable")
            }
            p.revocation = r
        }
        return p
    }

    /// The violations of these rules by a host's verified GPUs, in order: the count, then per GPU
    /// its model, driver and VBIOS minimums and (with `required`) every measurement that is not
    /// matched — each violation's path names the device and, for a measurement, its index.
    public func evaluate(_ gpus: [GPUFacts]) -> [PolicyViolation] {
        var out: [PolicyViolation] = []
        if let count, gpus.count != count {
            out.append(PolicyViolation(code: .gpuCountMismatch, path: "devices.gpus.count", expected: "\(count)", actual: "\(gpus.count)"))
        } else if gpus.isEmpty {
            out.append(PolicyViolation(code: .gpuCountMismatch, path: "devices.gpus.count", expected: "at least 1", actual: "0"))
        }
        for gpu in gpus {
            if !models.isEmpty, !models.contains(where: { $0.matches(gpu) }) {
                out.append(PolicyViolation(code: .gpuModelNotAllowed, path: "\(gpu.device).model", expected: models.map(\.description).joined(separator: " | "),
                                           actual: [gpu.project ?? "?", gpu.projectSKU ?? "?", gpu.chipSKU ?? "?"].joined(separator: "/")))
            }
            if let minimum = minDriverVersion, !(NvidiaVersion(driver: gpu.driverVersion)?.isAtLeast(minimum) ?? false) {
                out.append(PolicyViolation(code: .gpuVersionTooOld, path: "\(gpu.device).driverVersion", expected: ">= \(minimum)", actual: gpu.driverVersion))
            }
            if let minimum = minVBIOSVersion, !(NvidiaVersion(vbios: gpu.vbiosVersion)?.isAtLeast(minimum) ?? false) {
                out.append(PolicyViolation(code: .gpuVersionTooOld, path: "\(gpu.device).vbiosVersion", expected: ">= \(minimum)", actual: gpu.vbiosVersion))
            }
            guard referenceValues == .required else { continue }
            for m in gpu.measurements.sorted(by: { $0.index < $1.index }) {
                switch m.result {
                case .matched, .inactive: continue
                case .missing:
                    out.append(PolicyViolation(code: .gpuReferenceMissing, path: "\(gpu.device).measurements[\(m.index)]", expected: "a RIM reference value", actual: "missing"))
                case .mismatched:
                    out.append(PolicyViolation(code: .nvidiaGPUMeasurementMismatch, path: "\(gpu.device).measurements[\(m.index)]", expected: "matched", actual: "mismatched"))
                }
            }
        }
        return out
    }
}

/// What a verified GPU report says, as the `devices.gpus` rules read it (filled by
/// `NvidiaGPUClaims.facts(device:)` from claims whose signature and chain verified).
public struct GPUFacts: Sendable, Equatable {
    public enum Reference: String, Sendable, Equatable {
        /// Equal to one of its RIM alternatives.
        case matched
        /// Differs from every alternative, or an active reference index the evidence lacks.
        case mismatched
        /// No reference: the RIM that would cover this index was not found.
        case missing
        /// Both RIMs were found and neither checks this index.
        case inactive
    }
    public struct Measurement: Sendable, Equatable {
        public var index: Int
        public var result: Reference
        public init(index: Int, result: Reference) { (self.index, self.result) = (index, result) }
    }
    /// How violations name this GPU, e.g. `gpu[3]`.
    public var device: String
    public var driverVersion: String
    public var vbiosVersion: String
    public var project: String?
    public var projectSKU: String?
    public var chipSKU: String?
    public var measurements: [Measurement]

    public init(device: String, driverVersion: String, vbiosVersion: String, project: String?, projectSKU: String?, chipSKU: String?,
                measurements: [Measurement]) {
        (self.device, self.driverVersion, self.vbiosVersion) = (device, driverVersion, vbiosVersion)
        (self.project, self.projectSKU, self.chipSKU, self.measurements) = (project, projectSKU, chipSKU, measurements)
    }
}

/// A NVIDIA driver or VBIOS version, compared segment by segment as numbers. Driver versions are
/// 2-4 dot-separated decimal numbers of 1-6 digits (`550.90.07`, `590.12`; a missing trailing
/// segment counts as 0, so `590.12` equals `590.12.0`); VBIOS versions are exactly five
/// dot-separated pairs of hex digits, either case (`96.00.74.00.1A`). The two never compare with
/// each other; anything else does not parse.
public struct NvidiaVersion: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable { case driver, vbios }
    public let kind: Kind
    public let segments: [Int]
    public let description: String

    public init?(driver text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (2...4).contains(parts.count),
              parts.allSatisfy({ (1...6).contains($0.utf8.count) && $0.utf8.allSatisfy { (0x30...0x39).contains($0) } }) else { return nil }
        (kind, description) = (.driver, text)
        segments = parts.map { Int($0)! }
    }

    public init?(vbios text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 5, parts.allSatisfy({ $0.utf8.count == 2 && $0.allSatisfy(\.isHexDigit) && $0.allSatisfy(\.isASCII) }) else { return nil }
        (kind, description) = (.vbios, text.uppercased())
        segments = parts.map { Int($0, radix: 16)! }
    }

    /// Same kind and the same numbers (`590.12` equals `590.12.0`; `96.00.74.00.1a` equals `96.00.74.00.1A`).
    public static func == (a: NvidiaVersion, b: NvidiaVersion) -> Bool { a.kind == b.kind && a.order(b) == 0 }

    /// True when both are of the same kind and `self` is `minimum` or later; a version of the
    /// other kind is never at least anything (fail closed).
    public func isAtLeast(_ minimum: NvidiaVersion) -> Bool { kind == minimum.kind && order(minimum) >= 0 }

    /// Segment-wise: -1, 0 or 1; the shorter version is padded with zeros.
    func order(_ other: NvidiaVersion) -> Int {
        let n = max(segments.count, other.segments.count)
        for i in 0..<n {
            let (x, y) = (i < segments.count ? segments[i] : 0, i < other.segments.count ? other.segments[i] : 0)
            if x != y { return x < y ? -1 : 1 }
        }
        return 0
    }
}
