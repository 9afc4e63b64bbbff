import Foundation
import VouchCore
import VouchPolicy

extension ErrorCode {
    /// The same GPU appears twice among the evidence (the same leaf certificate or the same leaf
    /// key): one device must not count as two.
    public static let nvidiaGPUDuplicateDevice = ErrorCode("nvidia_gpu_duplicate_device", status: 403)
}

/// The verdicts on a set of GPUs (a PPCIe bundle, the GPUs of one host): one per device, in the
/// evidence's order, each violation's path prefixed `gpu[i].`.
public struct NvidiaGPUDeviceResults: Sendable {
    public var devices: [TEEVerification<NvidiaGPUClaims>]

    /// Every device's violations, in device order.
    public var violations: [PolicyViolation] { devices.flatMap(\.violations) }
    /// True when there is at least one device and every device verified.
    public var isVerified: Bool { !devices.isEmpty && devices.allSatisfy(\.isVerified) }
    /// The claims of every device that yielded claims, in order.
    public var claims: [NvidiaGPUClaims] {
        devices.compactMap { d in
            switch d {
            case let .verified(c, _): return c
            case let .rejected(_, c): return c
            }
        }
    }
}

extension NvidiaGPUVerifier {
    /// Verifies every GPU of one set, each as `verify` does (with the references `references(i)`
    /// gives device i), then refuses a device that repeats an earlier verified one — the same
    /// leaf certificate (DER) or the same leaf public key (the GPU's DICE alias key, derived from
    /// its device secret and firmware) — with `nvidia_gpu_duplicate_device`, so that a bundle
    /// cannot count one GPU twice. The first occurrence keeps its verdict. The FWID is no device
    /// identity: it names the firmware, and the corpus's eight PPCIe GPUs all carry the same one.
    public func verifyAll(_ evidence: [NvidiaGPUEvidence], at now: Date, expectedNonce: [UInt8]? = nil,
                          references: (Int) -> NvidiaGPUReferenceValues? = { _ in nil },
                          requireReferences: Bool = false) -> NvidiaGPUDeviceResults {
        var seenLeaves: [[UInt8]: Int] = [:], seenKeys: [[UInt8]: Int] = [:]
        var devices: [TEEVerification<NvidiaGPUClaims>] = []
        for (i, device) in evidence.enumerated() {
            let (result, leaf) = verifyDevice(device, at: now, expectedNonce: expectedNonce, references: references(i),
                                              requireReferences: requireReferences)
            var violations = result.violations
            var claims: NvidiaGPUClaims?
            switch result {
            case let .verified(c, _): claims = c
            case let .rejected(_, c): claims = c
            }
            if claims != nil, let leaf, let der = try? leaf.der, let key = Self.deviceKey(of: leaf) {
                let earlier = seenLeaves[der].map { ($0, "the same leaf certificate") } ?? seenKeys[key].map { ($0, "the same leaf key") }
                if let (first, what) = earlier {
                    violations.append(PolicyViolation(code: .nvidiaGPUDuplicateDevice, path: "device", expected: "a GPU not already in the set",
                                                      actual: "\(what) as gpu[\(first)]"))
                } else {
                    seenLeaves[der] = i
                    seenKeys[key] = i
                }
            }
            let prefixed = violations.map { PolicyViolation(code: $0.code, path: "gpu[\(i)].\($0.path)", expected: $0.expected, actual: $0.actual) }
            devices.append(prefixed.isEmpty ? result : .rejected(prefixed, claims: claims))
        }
        return NvidiaGPUDeviceResults(devices: devices)
    }
}
