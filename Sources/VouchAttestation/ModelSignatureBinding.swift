import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModelSigning
import VouchPolicy
import VouchTPMWire

/// Binds the model signatures a host measured (`vouch-model-signature` records of its model log,
/// already replayed to the quoted PCR 23) to the files measured with them, under a policy's
/// `model.publishers`. `TPMEvidenceVerifier`'s stage 2 (and through it an Azure CVM's vTPM quote).
public enum ModelSignatureBinding {
    public enum Outcome: Sendable, Equatable {
        /// The verified signatures' claims; nil when none was verified (or judged).
        case bound([ModelSignatureClaims]?)
        case refused([PolicyViolation])
    }

    /// Checks, in order (step 1 refuses alone; steps 3 and 4 are reported together, every
    /// violation of each):
    /// 1. each signature record's `sha256` is the SHA-256 of its bundle (`model_log_mismatch`):
    ///    the PCR was extended with the digest, so the bundle must be the bytes measured — with or
    ///    without publishers;
    /// 2. with no publisher in the policy, nothing more: no signature is judged (nil);
    /// 3. each signature verifies under a publisher of the policy and its manifest lists exactly
    ///    the measured artefacts under its directory, by their names relative to it
    ///    (`ModelSignatureVerifier`: `model_signature_malformed`, `model_signer_untrusted`,
    ///    `model_signature_invalid`, `model_manifest_invalid`, `model_name_mismatch`,
    ///    `model_file_modified`, `model_file_missing`, `model_file_extra`, `model_file_renamed`);
    /// 4. when the log holds any signature, every artefact lies under some signature's directory
    ///    (`model_file_extra`): a file beside a signed model is unsigned.
    /// Steps 3 and 4 refuse nothing for a manifest on `model.allowed` (and not on `model.denied`):
    /// the policy admits it without a signature, and a signature that verifies is still named.
    /// `Policy.evaluate` then requires a verified signature (`model_unsigned`) of any model the
    /// allowlist does not admit.
    public static func verify(_ log: ModelLog, manifestDigest: String, policy: Policy,
                              digester: Digester) -> Outcome {
        let signatures = log.signatures
        // 1
        let mismatched = log.mismatchedSignatures(using: digester).map { i in
            PolicyViolation(code: .modelLogMismatch, path: "modelLog.signature(\(signatures[i].name)).sha256", expected: "the SHA-256 of the recorded bundle",
                            actual: signatures[i].sha256)
        }
        guard mismatched.isEmpty else { return .refused(mismatched) }
        // 2
        let publishers = policy.model.publishers
        guard !publishers.isEmpty, !signatures.isEmpty else { return .bound(nil) }
        // 3
        let artefacts = log.artefacts
        var verified: [ModelSignatureClaims] = []
        var violations: [PolicyViolation] = []
        for s in signatures {
            let files = artefacts.filter { s.covers($0.name) }.map { ModelFileCheck.Measured(name: s.relativeName($0.name), sha256: $0.sha256) }
            switch ModelSignatureVerifier.verify(bundle: s.bundle, publishers: publishers, files: files, path: "model.signature(\(s.name))") {
            case let .verified(signature): verified.append(signature.claims(directory: s.directory))
            case let .rejected(v): violations += v
            }
        }
        // 4
        for a in artefacts where !signatures.contains(where: { $0.covers(a.name) }) {
            violations.append(PolicyViolation(code: .modelFileExtra, path: "model.files.\(a.name)", expected: "a file under a signed model's directory",
                                              actual: "a file no measured signature covers"))
        }
        let admitted = policy.model.allowed.contains { $0.manifest == manifestDigest } && !policy.model.denied.contains(manifestDigest)
        if !violations.isEmpty && !admitted { return .refused(violations) }
        return .bound(verified.isEmpty ? nil : verified)
    }
}
