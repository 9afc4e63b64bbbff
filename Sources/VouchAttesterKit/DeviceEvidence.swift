import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto

// Devices beside the platform (GPUs): their evidence is collected for the challenge nonce first,
// then the platform's evidence (a TPM quote, a CPU TEE report) binds the digest of every
// device's (`EnrollmentBinding.composite`), so the broker can tell that no device was dropped,
// added, swapped or replayed (docs/evidence.md, "Composite evidence").

extension Attester {
    /// The devices' evidence for one request, named `gpu0` … in the order the source gives
    /// them, and the binding the platform's evidence must then carry: `binding` itself when the
    /// host has no GPUs, else `EnrollmentBinding.composite` of it and their digests.
    func deviceEvidence(nonce: [UInt8], binding: [UInt8]) throws -> (devices: [DeviceEvidenceBody]?, binding: [UInt8]) {
        guard let gpus = config.gpus else { return (nil, binding) }
        let evidence = try gpus.gpuEvidence(nonce: nonce)
        guard !evidence.isEmpty else {
            throw VouchError(.config, "this host is configured with GPUs but its GPU source reported none")
        }
        let kind = EvidenceKind.nvidiaGPU.rawValue
        let named = evidence.enumerated().map { ("gpu\($0.offset)", $0.element) }
        return (named.map { DeviceEvidenceBody(device: $0.0, kind: kind, evidence: Base64.encode($0.1.transcript), certificateChain: $0.1.certificateChainPEM) },
                EnrollmentBinding.composite(binding: binding, devices: named.map { ($0.0, kind, $0.1.bindingDigest) }))
    }
}
