import Foundation
import VouchAttestation
import VouchCore
import VouchTEESim

extension ErrorCode {
    /// No GPU evidence can be collected here: NVML (libnvidia-ml.so.1) or one of its functions is
    /// missing, it finds no GPU, or the GPU's confidential-computing mode is off (NVML answers
    /// "not supported").
    public static let gpuUnavailable = ErrorCode("gpu_unavailable", status: 503)
    /// NVML failed while collecting a GPU's attestation report or certificate chain (its return
    /// code is in the context), or answered sizes outside its own buffers.
    public static let gpuEvidenceFailed = ErrorCode("gpu_evidence_failed", status: 502)
}

/// Where a host's GPU evidence comes from: each GPU's SPDM GET_MEASUREMENTS transcript for the
/// verifier's 32-byte nonce, with its device certificate chain (unverified: the broker decides).
public protocol GPUEvidenceSource: Sendable {
    func gpuEvidence(nonce: [UInt8]) throws -> [NvidiaGPUEvidence]
}

extension GPUEvidenceSource {
    /// The evidence for `nonce` as a PPCIe JSON bundle (`NvidiaGPUEvidence.bundleJSON`).
    public func gpuEvidenceBundle(nonce: [UInt8]) throws -> [UInt8] {
        try NvidiaGPUEvidence.bundleJSON(try gpuEvidence(nonce: nonce))
    }
}

/// The software GPU board (`SimulatedGPUPlatform`, INSECURE by design): evidence signed by the
/// board's software Device Identity CA, which a broker trusts only when configured with the
/// platform's roots. The options file is read at every call (`gpuK.blockB=HEX` lines; the
/// software TEE's own keys in the same file are left to it), so a test or demo can make one GPU
/// drift while the attester runs.
public struct SimulatedGPUEvidenceSource: GPUEvidenceSource {
    public let platform: SimulatedGPUPlatform
    public let optionsFile: String?

    public init(platformDirectory: String, count: Int, optionsFile: String?) throws {
        platform = try SimulatedGPUPlatform(directory: platformDirectory, count: count)
        self.optionsFile = optionsFile
    }

    public func gpuEvidence(nonce: [UInt8]) throws -> [NvidiaGPUEvidence] {
        let options = try SimulatedTEEOptions.read(optionsFile)
        return try platform.evidence(nonce: nonce, options: options.gpu).map {
            NvidiaGPUEvidence(transcript: $0.transcript, certificateChainPEM: $0.certificateChainPEM)
        }
    }
}

extension NvidiaGPUEvidence {
    /// Several GPUs' evidence as NVIDIA's PPCIe tooling writes it and `bundle(json:)` reads it: a
    /// JSON array of {"evidence": base64 transcript, "certificate": base64 PEM chain}.
    public static func bundleJSON(_ devices: [NvidiaGPUEvidence]) throws -> [UInt8] {
        struct Entry: Encodable { var evidence: String; var certificate: String }
        let entries = devices.map { Entry(evidence: Base64.encode($0.transcript), certificate: Base64.encode(Array($0.certificateChainPEM.utf8))) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(entries)) + [0x0a]
    }
}
