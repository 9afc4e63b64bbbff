import Foundation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTPMWire

extension ErrorCode {
    public static let eventLogMalformed = ErrorCode("event_log_malformed", status: 400)
    public static let modelLogMalformed = ErrorCode("model_log_malformed", status: 400)
    public static let modelLogMismatch = ErrorCode("model_log_mismatch", status: 403)
    public static let clockRegressed = ErrorCode("clock_regressed", status: 403)
    public static let clockNotSafe = ErrorCode("clock_not_safe", status: 403)
    /// The TPM's firmwareVersion is below the host's last accepted one.
    public static let firmwareDowngraded = ErrorCode("firmware_downgraded", status: 403)
    /// The TPM's firmwareVersion is below the policy's `tpm.minimumFirmwareVersion`.
    public static let firmwareTooOld = ErrorCode("firmware_too_old", status: 403)
}

/// Evidence that passed every device's verification and the policy: the only input certificate
/// issuance accepts. Only `Appraiser` creates one.
public struct TrustedEvidence: Sendable {
    public let hostID: String
    /// Every device's verified evidence, in the order presented; each affirmed by the policy.
    public let devices: [VerifiedEvidence]
    /// One result per device (an EAR submodule each), all affirming.
    public let results: [DeviceAppraisal]
    /// The platform device (`EvidenceKind.isPlatform`): what the attestation record and the
    /// certificate's attestation extension describe.
    public let platform: VerifiedEvidence
    public let policyName: String
    public let policyVersion: Int
    public let policySHA256: String
    public let pcrBank: HashAlg
    /// The policy's TTL, capped at its re-attestation interval plus grace.
    public let certificateTTL: Double

    /// The platform device's claims, with every other device's summary (`devices`), as the
    /// attestation record stores them.
    public var claims: EvidenceClaims { Appraiser.withDevices(platform.evidenceClaims, devices) }

    /// What the attestation trail records of the platform device's evidence (its claims listing
    /// the other devices).
    public var record: EvidenceRecord {
        var r = platform.record
        r.claims = r.claims.map { Appraiser.withDevices($0, devices) }
        return r
    }

    /// The summaries of the devices besides the platform, in the order presented.
    public var deviceClaims: [DeviceClaims] { devices.compactMap(\.deviceClaims) }

    /// The certificate extension telling relying parties what was verified before issuance.
    public func attestationExtension(attestedAt: Date) -> AttestationExtension {
        var ext = platformExtension(attestedAt: attestedAt)
        let devices = deviceClaims
        ext.devices = devices.isEmpty ? nil : devices
        return ext
    }

    /// The publishers' signatures the broker verified over the measured model, as the EAR names
    /// them, each distinct one once (one bundle copied beside several directories is one entry);
    /// nil when none was.
    static func signedModels(_ claims: EvidenceClaims) -> [AttestationExtension.SignedModel]? {
        guard let signatures = claims.model?.signatures, !signatures.isEmpty else { return nil }
        var out: [AttestationExtension.SignedModel] = []
        for m in signatures.map(AttestationExtension.SignedModel.init) where !out.contains(m) { out.append(m) }
        return out
    }

    private func platformExtension(attestedAt: Date) -> AttestationExtension {
        switch platform.claims {
        case let .tpm(quote, claims):
            return AttestationExtension(
                hostId: hostID, attestedAt: attestedAt, evidenceType: "tpm2-quote", evidenceDigest: Crypto.sha256(quote.attest.raw),
                pcrBank: pcrBank.rawValue, pcrDigest: quote.pcrDigest, policyName: policyName, policyVersion: policyVersion,
                policyDigest: (try? Hex.decode(policySHA256)) ?? [], modelManifests: claims.model.map { [(try? Hex.decode($0.manifestDigest)) ?? []] } ?? [],
                secureBoot: claims.boot?.secureBoot, models: Self.signedModels(claims))
        case let .azureSNPVTPM(quote, claims, _, _, summary):
            // The vTPM quote's PCRs and the SEV-SNP report's summary, side by side.
            return AttestationExtension(
                hostId: hostID, attestedAt: attestedAt, evidenceType: EvidenceKind.azureSNPVTPM.rawValue, evidenceDigest: summary.evidenceDigest,
                pcrBank: pcrBank.rawValue, pcrDigest: quote.pcrDigest, policyName: policyName, policyVersion: policyVersion,
                policyDigest: (try? Hex.decode(policySHA256)) ?? [], modelManifests: claims.model.map { [(try? Hex.decode($0.manifestDigest)) ?? []] } ?? [],
                secureBoot: claims.boot?.secureBoot, tee: summary.claims, models: Self.signedModels(claims))
        case let .sevSNP(_, _, summary), let .tdx(_, _, summary):
            // A CPU TEE has no PCR bank or digest: the EAR carries its summary (`tee`) instead.
            return AttestationExtension(
                hostId: hostID, attestedAt: attestedAt, evidenceType: platform.kind == .tdx ? "tdx-quote" : "sev-snp-report",
                evidenceDigest: summary.evidenceDigest, pcrBank: "", pcrDigest: [], policyName: policyName, policyVersion: policyVersion,
                policyDigest: (try? Hex.decode(policySHA256)) ?? [], modelManifests: [], secureBoot: nil, tee: summary.claims)
        case .nvidiaGPU:
            // Never: the platform is a platform kind (`Appraiser.appraise` picks it so).
            return AttestationExtension(hostId: hostID, attestedAt: attestedAt, evidenceType: platform.kind.rawValue, evidenceDigest: [], pcrBank: "",
                                        pcrDigest: [], policyName: policyName, policyVersion: policyVersion,
                                        policyDigest: (try? Hex.decode(policySHA256)) ?? [], modelManifests: [], secureBoot: nil)
        }
    }
}

/// The policy's judgement of one device's verified evidence: one EAR submodule.
public struct DeviceAppraisal: Sendable {
    public enum Status: String, Sendable {
        case affirming, contraindicated
    }
    public let device: String
    public let kind: EvidenceKind
    public let status: Status
    /// Every rule the device's evidence violates (empty when affirming).
    public let violations: [PolicyViolation]
}

public enum Appraisal: Sendable {
    case trusted(TrustedEvidence)
    /// Every violation found, and the claims established before the refusal (for the audit trail
    /// and `vouch policy test`), if the logs got that far.
    case rejected([PolicyViolation], EvidenceClaims?)
}

public enum Appraiser {
    /// The devices every host must present evidence for under `policy`, by device name and kind.
    /// Every policy requires the host's platform device: its TPM, or the CPU TEE it registered
    /// with (`platform`); a policy with a `devices.gpus` section also `gpu0` … `gpuN-1` (N its
    /// `count`, else 1) of kind `nvidia-gpu`.
    public static func requiredDevices(_ policy: Policy, platform: EvidenceKind = .tpm) -> [(device: String, kind: EvidenceKind)] {
        let base = platformOnly[platform] ?? [(platform.defaultDevice, platform)]
        guard let gpus = policy.devices?.gpus else { return base }
        return base + (0..<max(1, gpus.count ?? 1)).map { ("gpu\($0)", EvidenceKind.nvidiaGPU) }
    }

    /// Built once: the quote path allocates nothing for it.
    private static let platformOnly: [EvidenceKind: [(device: String, kind: EvidenceKind)]] =
        Dictionary(uniqueKeysWithValues: EvidenceKind.allCases.filter(\.isPlatform).map { ($0, [($0.defaultDevice, $0)]) })

    /// Appraises a set of verified evidence (one per device) against the policy. Checks, in order:
    /// 1. the set holds a platform device and every required device (`evidence_missing`; the
    ///    broker's `EvidenceVerifiers.authenticate` refuses such a set before this) — with a
    ///    `devices.gpus` section, `gpu0` … up to its count (at least `gpu0`);
    /// 2. each device's evidence against the policy (`Policy.evaluate`), every violation of every
    ///    device reported: for a TPM, freshness, agent key type, PCRs, event-log claims and model
    ///    rules; for a CPU TEE (whose own rules, the `snp:`/`tdx:` sections, its verifier applied),
    ///    the same rules without `pcrs.values` (`teeRules`): a CPU TEE's evidence carries no
    ///    firmware event log and no model log, so a policy that requires either refuses it
    ///    (`event_log_missing`, `model_missing`) rather than dropping the rule; freshness and the
    ///    agent key type are judged once, with the platform device; for an Azure CVM (whose
    ///    `snp:` section its verifier applied), every rule a TPM quote meets, on its vTPM quote;
    /// 3. the GPUs as a set: no GPU twice (the same leaf key under two names,
    ///    `nvidia_gpu_duplicate_device`), then `devices.gpus` (`GPUPolicy.evaluate`: count, models,
    ///    driver and VBIOS minimums, reference values), each violation also contraindicating its device.
    /// Trusted only when every device affirms.
    public static func appraise(hostID: String, _ evidence: [VerifiedEvidence], policy: Policy, evidenceAge: TimeInterval? = nil,
                                agentKeyType: String? = nil, platform platformKind: EvidenceKind = .tpm) -> Appraisal {
        // 1
        // The platform is the device the policy requires of a platform kind (the host's TPM or
        // CPU TEE), never merely the first platform-kind piece in the request.
        let required = requiredDevices(policy, platform: platformKind).filter { $0.kind.isPlatform }
        guard let platform = evidence.first(where: { e in required.contains { $0.device == e.device && $0.kind == e.kind } }) else {
            return .rejected([PolicyViolation(code: .evidenceMissing, path: "evidence", expected: "the platform's evidence", actual: "none")], nil)
        }
        let platformClaims = platform.evidenceClaims
        for (device, kind) in requiredDevices(policy, platform: platformKind) where !evidence.contains(where: { $0.device == device && $0.kind == kind }) {
            return .rejected([PolicyViolation(code: .evidenceMissing, path: "evidence.\(device)", expected: "evidence of kind \(kind.rawValue)", actual: "none")],
                             platformClaims)
        }
        // 2
        var results: [DeviceAppraisal] = []
        results.reserveCapacity(evidence.count)
        var violations: [PolicyViolation] = []
        for device in evidence {
            let isPlatform = device.device == platform.device
            let decision: PolicyDecision
            switch device.claims {
            case let .tpm(quote, claims), let .azureSNPVTPM(quote, claims, _, _, _):
                decision = policy.evaluate(PolicyInput(pcrs: quote.pcrs, claims: claims, evidenceAge: isPlatform ? evidenceAge : nil,
                                                       agentKeyType: isPlatform ? agentKeyType : nil))
            case .sevSNP, .tdx:
                decision = teeRules(policy).evaluate(PolicyInput(pcrs: PCRValues(), evidenceAge: isPlatform ? evidenceAge : nil,
                                                                 agentKeyType: isPlatform ? agentKeyType : nil))
            case .nvidiaGPU:
                // Judged as a set below (`devices.gpus`): counts and models are the set's.
                decision = .satisfied
            }
            switch decision {
            case .satisfied:
                results.append(DeviceAppraisal(device: device.device, kind: device.kind, status: .affirming, violations: []))
            case let .violated(v):
                results.append(DeviceAppraisal(device: device.device, kind: device.kind, status: .contraindicated, violations: v))
                violations += v
            }
        }
        // The devices as a set. One GPU never counts twice: two devices with the same leaf key
        // are one GPU presented under two names (the FWID names firmware, not a GPU).
        var firstByKey: [String: String] = [:]
        for e in evidence {
            guard let d = e.deviceClaims, let key = d.deviceKey else { continue }
            if let first = firstByKey[key] {
                let v = PolicyViolation(code: .nvidiaGPUDuplicateDevice, path: "\(d.device).deviceKey", expected: "a GPU other than \(first)", actual: "the same GPU as \(first)")
                if let i = results.firstIndex(where: { $0.device == d.device }) {
                    results[i] = DeviceAppraisal(device: d.device, kind: .nvidiaGPU, status: .contraindicated, violations: results[i].violations + [v])
                }
                violations.append(v)
            } else {
                firstByKey[key] = d.device
            }
        }
        // The policy's `devices.gpus` rules over every verified GPU.
        if let rules = policy.devices?.gpus {
            let gpus = evidence.compactMap { e -> GPUFacts? in
                if case let .nvidiaGPU(claims, _) = e.claims { return claims.facts(device: e.device) }
                return nil
            }
            let found = rules.evaluate(gpus)
            for (i, r) in results.enumerated() where r.kind == .nvidiaGPU {
                let own = found.filter { $0.path.hasPrefix(r.device + ".") }
                if !own.isEmpty { results[i] = DeviceAppraisal(device: r.device, kind: r.kind, status: .contraindicated, violations: r.violations + own) }
            }
            violations += found
        }
        guard violations.isEmpty else { return .rejected(violations, withDevices(platformClaims, evidence)) }
        return .trusted(TrustedEvidence(hostID: hostID, devices: evidence, results: results, platform: platform,
                                        policyName: policy.name, policyVersion: policy.version, policySHA256: policy.sha256,
                                        pcrBank: policy.pcrBank,
                                        certificateTTL: min(policy.certificateTTL, policy.reattestation.interval + policy.reattestation.grace)))
    }

    /// `claims` (the platform's) with the summaries of the other devices in `evidence`, when any.
    static func withDevices(_ claims: EvidenceClaims, _ evidence: [VerifiedEvidence]) -> EvidenceClaims {
        let devices = evidence.compactMap(\.deviceClaims)
        guard !devices.isEmpty else { return claims }
        var c = claims
        c.devices = devices
        return c
    }

    /// The rules of `policy` that apply to a CPU TEE's evidence in the appraisal: all but
    /// `pcrs.values` (a TPM host's, left out of policies for confidential VMs only: the TEE's own
    /// measurements are its section's, which its verifier applied). Event-log and model rules stay: evaluated without
    /// claims, a required log or model is missing, so such a policy refuses the host.
    static func teeRules(_ policy: Policy) -> Policy {
        var p = policy
        p.pcrValues = [:]
        return p
    }

    /// The TPM path for a quote already verified (`QuoteVerifier`): `TPMEvidenceVerifier`'s
    /// stage 2 (event log, model log, clock and firmware, in that order), then the appraisal of
    /// that one device against the policy. For tools, benchmarks and tests; the broker goes
    /// through `EvidenceVerifiers`. With `eventLogs`, the event log goes through that cache under
    /// `hostID` (`VerifiedLogCache`).
    public static func appraise(hostID: String, quote: VerifiedQuote, eventLog: [UInt8]?, modelLog: [UInt8]?,
                                previousClock: ClockState?, clockTolerance: UInt64 = 0, policy: Policy, evidenceAge: TimeInterval? = nil,
                                agentKeyType: String? = nil, digester: Digester, eventLogs: VerifiedLogCache? = nil) -> Appraisal {
        switch TPMEvidenceVerifier.verifyQuoted(device: EvidenceKind.tpm.defaultDevice, quote: quote, eventLog: eventLog, modelLog: modelLog,
                                                accepted: AcceptedState(clock: previousClock, clockTolerance: clockTolerance),
                                                policy: policy, digester: digester, eventLogs: eventLogs.map { ($0, hostID) }) {
        case let .verified(evidence):
            return appraise(hostID: hostID, [evidence], policy: policy, evidenceAge: evidenceAge, agentKeyType: agentKeyType)
        case let .rejected(violations, record):
            return .rejected(violations, record?.claims)
        }
    }
}
