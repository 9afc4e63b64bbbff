import Foundation
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy

// `vouch evidence verify --kind nvidia-gpu [--rims DIR] [--rim-roots PEM] [--policy FILE]`:
// NVIDIA Hopper GPU evidence, offline. The FILEs are one SPDM transcript (hex text as NVIDIA's
// tools write it, or binary) with its device chain (PEM, leaf first), or one PPCIe bundle (a JSON
// array of several GPUs' evidence). Every device must verify. With `--rims DIR` each device's
// measurements are compared with the driver and VBIOS RIMs of DIR (`NvidiaRIMStore`, verified at
// `--at`); without it every measurement is "missing". With `--policy`, its `devices.gpus` rules.

/// The claims `--json` prints for nvidia-gpu: one entry per device, in the files' order, and per
/// device the RIMs used and missing (empty without `--rims`).
struct NvidiaGPUDevices: Codable, Sendable {
    struct RIMUsed: Codable, Sendable { var component, version, file, tagId: String }
    struct RIMMissing: Codable, Sendable { var component, version, reason: String }
    struct References: Codable, Sendable {
        var device: String
        var used: [RIMUsed]
        var missing: [RIMMissing]
    }
    var devices: [NvidiaGPUClaims]
    var references: [References]
}

/// The options nvidia-gpu reads besides the common ones.
struct GPUOptions {
    var rims: String?
    var rimRoots: String?
    var testRoots: Bool
    var gpus: GPUPolicy?
}

func verifyNvidiaGPU(_ files: EvidenceFiles, at: Date, nonce: [UInt8]?, roots: RootsOption?, options: GPUOptions) throws -> EvidenceReport {
    let devices = try gpuDevices(files)
    if let nonce, nonce.count != SPDMNonceLength.bytes {
        throw VouchError(.usage, "--nonce for nvidia-gpu is the SPDM request nonce: 32 bytes of hex")
    }
    var warnings: [TEEWarning] = []
    if nonce == nil {
        warnings.append(TEEWarning(code: "nonce_not_checked", message: "no --nonce: the evidence's freshness is not proven (it may be a replay)"))
    }
    let store = try rimStore(options, at: at)
    for failure in store?.failures ?? [] {
        warnings.append(TEEWarning(code: failure.code.rawValue, message: "RIM \(failure.file) not used: \(CLI.oneLine(failure.message))"))
    }
    let verifier = NvidiaGPUVerifier(roots: try nvidiaRoots(roots))
    var verified: [NvidiaGPUClaims] = []
    var facts: [GPUFacts] = []
    var references: [NvidiaGPUDevices.References] = []
    var violations: [PolicyViolation] = []
    for (i, device) in devices.enumerated() {
        let name = "gpu[\(i)]"
        let result: TEEVerification<NvidiaGPUClaims>
        if let store {
            let outcome = verifier.verify(device, at: at, expectedNonce: nonce, rims: store)
            result = outcome.result
            if let lookup = outcome.lookup { references.append(gpuReferences(name, lookup)) }
        } else {
            result = verifier.verify(device, at: at, expectedNonce: nonce)
        }
        switch result {
        case let .verified(claims, _):
            verified.append(claims)
            facts.append(claims.facts(device: name))
        case let .rejected(v, claims):
            if let claims { verified.append(claims) }
            violations += v.map { PolicyViolation(code: $0.code, path: devices.count == 1 ? $0.path : "\(name).\($0.path)", expected: $0.expected, actual: $0.actual) }
        }
    }
    // One GPU given twice is refused (the same leaf key), whatever the policy.
    violations += NvidiaGPUEvidence.duplicateViolations(devices.enumerated().map { ("gpu[\($0.offset)]", $0.element) })
    // The policy's rules read only devices that verified; a device that did not is already refused.
    if let gpus = options.gpus, violations.isEmpty { violations += gpus.evaluate(facts) }
    let claims = NvidiaGPUDevices(devices: verified, references: references)
    let result: TEEVerification<NvidiaGPUDevices> = violations.isEmpty ? .verified(claims, warnings: []) : .rejected(violations, claims: verified.isEmpty ? nil : claims)
    for w in warnings { CLI.error("vouch evidence: warning: \(w.code): \(w.message)") }
    var report = EvidenceReport(kind: "nvidia-gpu", result: result) { c in
        c.devices.enumerated().map { i, d in
            let counts = Dictionary(grouping: d.measurements, by: \.reference).mapValues(\.count)
            return "gpu[\(i)]     driver \(d.driverVersion)  VBIOS \(d.vbiosVersion)  project \(d.project ?? "?")/\(d.projectSKU ?? "?") chip \(d.chipSKU ?? "?")  "
                + "references: \(counts[.matched] ?? 0) matched, \(counts[.mismatched] ?? 0) mismatched, \(counts[.missing] ?? 0) missing, \(counts[.inactive] ?? 0) inactive"
        } + c.references.map { r in
            "\(r.device) RIMs  used: \(r.used.map { "\($0.component) \($0.version) (\($0.file))" }.joined(separator: ", ").ifEmpty("none"))"
                + (r.missing.isEmpty ? "" : "  missing: " + r.missing.map { "\($0.component) \($0.version)" }.joined(separator: ", "))
        }
    }
    report.warnings = warnings
    return report
}

private extension String {
    func ifEmpty(_ other: String) -> String { isEmpty ? other : self }
}

private func gpuReferences(_ device: String, _ lookup: NvidiaRIMStore.Lookup) -> NvidiaGPUDevices.References {
    NvidiaGPUDevices.References(
        device: device,
        used: lookup.used.map { .init(component: $0.rim.identity.component.rawValue, version: $0.rim.identity.version, file: $0.file, tagId: $0.rim.identity.tagId) },
        missing: lookup.missing.map { .init(component: $0.component.rawValue, version: $0.version, reason: $0.reason) })
}

/// `--rims DIR` loaded at `at` with the compiled-in CoRIM signing root, or `--rim-roots PEM`'s
/// self-signed certificates (each the pinned root unless `--test-roots`).
func rimStore(_ options: GPUOptions, at: Date) throws -> NvidiaRIMStore? {
    guard let directory = options.rims else {
        guard options.rimRoots == nil else { throw VouchError(.usage, "--rim-roots needs --rims DIR") }
        return nil
    }
    var roots: [Certificate]?
    if let file = options.rimRoots {
        let found = try Certificate.chain(pem: String(decoding: try readEvidenceFile(file), as: UTF8.self)).filter(\.isSelfSigned)
        guard !found.isEmpty else { throw VouchError(.config, "\(file) holds no self-signed root certificate") }
        if !options.testRoots {
            let pinned = try Certificate(pem: NvidiaRoots.coRIMSigningRootPEM).der
            for root in found where try root.der != pinned {
                throw VouchError(.config, "\(file) holds a root that is not the NVIDIA CoRIM signing Root CA (\(root.subject)); --test-roots trusts other roots")
            }
        }
        roots = found
    }
    return try NvidiaRIMStore(directory: URL(fileURLWithPath: directory), verifier: try NvidiaRIMVerifier(roots: roots), at: at)
}

enum SPDMNonceLength { static let bytes = 32 }

/// The devices among `files`: one transcript with one chain, or one PPCIe bundle.
private func gpuDevices(_ files: EvidenceFiles) throws -> [NvidiaGPUEvidence] {
    if let bundle = try files.atMostOne(.gpuEvidenceBundle, "GPU evidence bundle (JSON)") {
        guard files.all(.spdmTranscript).isEmpty, files.all(.certificate).isEmpty else {
            throw VouchError(.usage, "give either a GPU evidence bundle or one SPDM transcript with its certificate chain, not both")
        }
        do { return try NvidiaGPUEvidence.bundle(json: bundle) } catch let e as VouchError {
            throw VouchError(.io, "the GPU evidence bundle does not parse: \(e.message)")
        }
    }
    let transcript = try files.one(.spdmTranscript, "an SPDM GET_MEASUREMENTS transcript (hex or binary) or a GPU evidence bundle")
    let chain = try files.one(.certificate, "the GPU's certificate chain (PEM, leaf first)")
    return [NvidiaGPUEvidence(transcript: transcript, certificateChainPEM: String(decoding: chain, as: UTF8.self))]
}

/// `--roots DIR`: its self-signed certificates, each the pinned NVIDIA Device Identity CA unless
/// `--test-roots`; the compiled-in root without `--roots`.
func nvidiaRoots(_ option: RootsOption?) throws -> [Certificate] {
    guard let option else { return [NvidiaRoots.deviceIdentityCA] }
    let out = try selfSignedRoots(in: option.directory)
    if option.pinned {
        let pinned = try NvidiaRoots.deviceIdentityCA.der
        for root in out where try root.der != pinned {
            throw VouchError(.config, "\(option.directory) holds a root that is not the NVIDIA Device Identity CA (\(root.subject)); --test-roots trusts other roots")
        }
    }
    return out
}

extension EvidenceFiles {
    /// An SPDM 1.1 GET_MEASUREMENTS request (0x11 0xE0) opening the bytes, or their hex text.
    static func spdmTranscriptBytes(_ b: [UInt8]) -> [UInt8]? {
        if b.starts(with: [0x11, 0xE0]) { return b }
        guard b.starts(with: Array("11e0".utf8)) || b.starts(with: Array("11E0".utf8)), b.count <= 256 << 10 else { return nil }
        let text = String(decoding: b, as: UTF8.self).filter { !$0.isWhitespace }.lowercased()
        return try? Hex.decode(text, field: "transcript")
    }
}
