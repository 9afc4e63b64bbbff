import Foundation
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy

// `vouch evidence verify --kind nvidia-gpu`: NVIDIA Hopper GPU evidence, offline. The FILEs are
// one SPDM transcript (hex text as NVIDIA's tools write it, or binary) with its device chain (PEM,
// leaf first), or one PPCIe bundle (a JSON array of several GPUs' evidence). Every device must
// verify. No reference values are given here yet, so every measurement is reported "missing".

/// The claims `--json` prints for nvidia-gpu: one entry per device, in the files' order.
struct NvidiaGPUDevices: Codable, Sendable {
    var devices: [NvidiaGPUClaims]
}

func verifyNvidiaGPU(_ files: EvidenceFiles, at: Date, nonce: [UInt8]?, roots: RootsOption?) throws -> EvidenceReport {
    let devices = try gpuDevices(files)
    if let nonce, nonce.count != SPDMNonceLength.bytes {
        throw VouchError(.usage, "--nonce for nvidia-gpu is the SPDM request nonce: 32 bytes of hex")
    }
    let verifier = NvidiaGPUVerifier(roots: try nvidiaRoots(roots))
    var verified: [NvidiaGPUClaims] = []
    var violations: [PolicyViolation] = []
    for (i, device) in devices.enumerated() {
        switch verifier.verify(device, at: at, expectedNonce: nonce) {
        case let .verified(claims, _): verified.append(claims)
        case let .rejected(v, claims):
            if let claims { verified.append(claims) }
            violations += v.map { PolicyViolation(code: $0.code, path: devices.count == 1 ? $0.path : "gpu[\(i)].\($0.path)", expected: $0.expected, actual: $0.actual) }
        }
    }
    let claims = NvidiaGPUDevices(devices: verified)
    let result: TEEVerification<NvidiaGPUDevices> = violations.isEmpty ? .verified(claims, warnings: []) : .rejected(violations, claims: verified.isEmpty ? nil : claims)
    return EvidenceReport(kind: "nvidia-gpu", result: result) { c in
        c.devices.enumerated().map { i, d in
            let counts = Dictionary(grouping: d.measurements, by: \.reference).mapValues(\.count)
            return "gpu[\(i)]     driver \(d.driverVersion)  VBIOS \(d.vbiosVersion)  project \(d.project ?? "?")/\(d.projectSKU ?? "?") chip \(d.chipSKU ?? "?")  "
                + "references: \(counts[.matched] ?? 0) matched, \(counts[.mismatched] ?? 0) mismatched, \(counts[.missing] ?? 0) missing"
        }
    }
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
private func nvidiaRoots(_ option: RootsOption?) throws -> [Certificate] {
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
