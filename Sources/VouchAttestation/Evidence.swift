import Foundation
import VouchCore
import VouchEventLog
import VouchPolicy
import VouchTPMWire

extension ErrorCode {
    /// Evidence of a kind this broker has no verifier for: refused, never passed.
    public static let evidenceKindUnsupported = ErrorCode("evidence_kind_unsupported", status: 400)
    /// Two pieces of evidence in one request name the same device.
    public static let evidenceDeviceDuplicate = ErrorCode("evidence_device_duplicate", status: 400)
    /// A device the policy requires presented no evidence.
    public static let evidenceMissing = ErrorCode("evidence_missing", status: 403)
}

/// The kinds of evidence Vouch verifies. Closed: the raw value is the stable name a submodule,
/// a record and the wire use; every kind has exactly one verifier (`EvidenceVerifier`).
public enum EvidenceKind: String, Sendable, CaseIterable, Codable {
    /// A TPM 2.0 quote (TPMS_ATTEST + TPMT_SIGNATURE by the host's activated AK), with the PCR
    /// values, the firmware event log and the model log it covers.
    case tpm
    /// An AMD SEV-SNP attestation report with the VCEK or VLEK that signed it (`SNPEvidenceVerifier`).
    case sevSNP = "sev-snp"
    /// An Intel TDX DCAP quote, verified with the collateral for its platform (`TDXEvidenceVerifier`).
    case tdx
    /// An Azure confidential VM: the paravisor's HCL report (an SEV-SNP report binding the vTPM's
    /// keys) and a quote by that vTPM's AK (`AzureEvidenceVerifier`).
    case azureSNPVTPM = "azure-snp-vtpm"
    /// An NVIDIA Hopper GPU's SPDM GET_MEASUREMENTS transcript with its device certificate chain
    /// (`NvidiaGPUEvidenceVerifier`): a device presented beside the platform, bound through it.
    case nvidiaGPU = "nvidia-gpu"

    /// The submodule (EAR `submods` key) a host's single device of this kind is named by.
    public var defaultDevice: String { rawValue }

    /// True for the evidence of the host's platform — the root every other device's evidence is
    /// presented under (a TPM or a CPU TEE). Its record is the one the attestation trail and
    /// the certificate's attestation extension carry.
    public var isPlatform: Bool {
        switch self {
        case .tpm, .sevSNP, .tdx, .azureSNPVTPM: return true
        case .nvidiaGPU: return false
        }
    }

    /// The platform a policy is selected for (`PolicySet.select`); nil for a device that is no
    /// platform (a GPU is judged under its host's policy).
    public var policyPlatform: PolicyPlatform? {
        switch self {
        case .tpm: return .tpm
        case .sevSNP: return .sevSNP
        case .tdx: return .tdx
        case .azureSNPVTPM: return .azureSNPVTPM
        case .nvidiaGPU: return nil
        }
    }

    /// What the evidence is called in records and messages.
    public var evidenceName: String {
        switch self {
        case .tpm: return "quote"
        case .sevSNP: return "SEV-SNP report"
        case .tdx: return "TDX quote"
        case .azureSNPVTPM: return "Azure CVM HCL report and vTPM quote"
        case .nvidiaGPU: return "NVIDIA GPU evidence"
        }
    }
}

/// Unverified evidence for one device, as the host sent it. Nothing in it is believed until its
/// kind's verifier has checked it.
public struct RawEvidence: Sendable {
    /// The submodule this evidence speaks for (`tpm`, `sev-snp`, …; a GPU `gpu0` … `gpu15`); unique within a set.
    public let device: String
    public let payload: Payload
    public var kind: EvidenceKind { payload.kind }

    /// The bytes and fields each kind needs, still unverified.
    public enum Payload: Sendable {
        case tpm(TPMQuoteEvidence)
        case sevSNP(SNPRawEvidence)
        case tdx(TDXRawEvidence)
        case azureSNPVTPM(AzureRawEvidence)
        case nvidiaGPU(NvidiaGPUEvidence)

        public var kind: EvidenceKind {
            switch self {
            case .tpm: return .tpm
            case .sevSNP: return .sevSNP
            case .tdx: return .tdx
            case .azureSNPVTPM: return .azureSNPVTPM
            case .nvidiaGPU: return .nvidiaGPU
            }
        }

        /// The digest this piece is bound by when it is not the platform's
        /// (`EnrollmentBinding.deviceDigest`); nil for platform evidence, which carries the binding.
        public var deviceDigest: [UInt8]? {
            switch self {
            case let .nvidiaGPU(gpu): return gpu.bindingDigest
            case .tpm, .sevSNP, .tdx, .azureSNPVTPM: return nil
            }
        }
    }

    public init(device: String, payload: Payload) {
        self.device = device
        self.payload = payload
    }

    /// A host's TPM quote, under the TPM's default device name.
    public static func tpm(_ quote: TPMQuoteEvidence) -> RawEvidence {
        RawEvidence(device: EvidenceKind.tpm.defaultDevice, payload: .tpm(quote))
    }
}

/// What a host sends for a TPM quote, decoded but unverified.
public struct TPMQuoteEvidence: Sendable {
    /// TPMS_ATTEST, the signed bytes.
    public let attest: [UInt8]
    /// TPMT_SIGNATURE over `attest`.
    public let signature: [UInt8]
    /// The PCR values the host claims for the quoted selection.
    public let pcrs: PCRValues
    /// The TCG PC Client firmware event log, if sent.
    public let eventLog: [UInt8]?
    /// The model log (CEL JSON, PCR 23), if sent.
    public let modelLog: [UInt8]?

    public init(attest: [UInt8], signature: [UInt8], pcrs: PCRValues, eventLog: [UInt8]?, modelLog: [UInt8]?) {
        self.attest = attest
        self.signature = signature
        self.pcrs = pcrs
        self.eventLog = eventLog
        self.modelLog = modelLog
    }
}

/// The keys a host enrolled with the broker, by which its evidence is authenticated.
public struct EnrolledKeys: Sendable {
    /// The activated AK's TPM2B_PUBLIC, exactly as registered.
    public var akPublic: [UInt8]?
    /// A CPU TEE host's registered identity (its host key, and its chip pin for SEV-SNP with a VCEK).
    public var tee: TEEHostIdentity?

    public init(akPublic: [UInt8]? = nil, tee: TEEHostIdentity? = nil) {
        self.akPublic = akPublic
        self.tee = tee
    }
}

/// What the broker expects of a host's evidence this time. Built by the broker before anything
/// is verified; it holds no state read for the evidence (see `AcceptedState`).
public struct VerificationContext: Sendable {
    public var hostID: String
    /// The 32 bytes every piece of evidence must be bound to: SHA-256(nonce ‖ SHA-256(agent
    /// SPKI)) at enrollment, SHA-256(nonce ‖ SHA-256("vouch re-attestation v1")) at
    /// re-attestation (`EnrollmentBinding`). Each kind documents where its evidence carries it
    /// (TPM: the quote's extraData).
    public var binding: [UInt8]
    /// The request's challenge nonce (32 bytes), which a device's own evidence carries (an
    /// NVIDIA GPU's SPDM request nonce); nil where the caller has none (a device then fails).
    public var nonce: [UInt8]?
    public var enrolled: EnrolledKeys
    /// The policy that applies to the host: its knobs for verification (SHA-1 AKs, firmware,
    /// safe clock) and, in the appraisal, its rules.
    public var policy: Policy
    public var digester: Digester
    /// The kind of the host's platform device, which the policy requires evidence of
    /// (`Appraiser.requiredDevices`): `tpm`, or the CPU TEE the host registered with.
    public var platform: EvidenceKind
    /// The time certificates, CRLs and collateral are checked at (CPU TEE evidence).
    public var now: Date

    public init(hostID: String, binding: [UInt8], nonce: [UInt8]? = nil, enrolled: EnrolledKeys, policy: Policy, digester: Digester,
                platform: EvidenceKind = .tpm, now: Date = Date()) {
        self.hostID = hostID
        self.binding = binding
        self.nonce = nonce
        self.enrolled = enrolled
        self.policy = policy
        self.digester = digester
        self.platform = platform
        self.now = now
    }
}

/// What the broker accepted from the host before, read only once the evidence is authenticated
/// (a request nobody has authenticated costs no store read).
public struct AcceptedState: Sendable {
    /// The TPM clock (and firmware version) of the host's last accepted quote.
    public var clock: ClockState?
    /// How far (ms) the TPM clock may lag `clock` within one boot (quotes made in clock order may
    /// reach the broker out of order).
    public var clockTolerance: UInt64

    public init(clock: ClockState? = nil, clockTolerance: UInt64 = 0) {
        self.clock = clock
        self.clockTolerance = clockTolerance
    }

    /// Nothing accepted before.
    public static let none = AcceptedState()
}

/// What the attestation trail records of a device's evidence (the attestation record's PCR
/// digest, PCR values and claims), in the stored formats.
public struct EvidenceRecord: Sendable, Equatable {
    /// TPM: the signed pcrDigest, hex. CPU TEE: SHA-256 of the report or quote, hex.
    public var measurementDigest: String?
    /// TPM: bank → PCR index → hex value, of the quoted PCRs.
    public var measurements: [String: [String: String]]?
    /// The claims established, if the verification got that far.
    public var claims: EvidenceClaims?
    /// CPU TEE: the bytes the evidence was authenticated from (`TEEEvidenceBytes`).
    public var tee: TEEEvidenceBytes?

    public init(measurementDigest: String? = nil, measurements: [String: [String: String]]? = nil, claims: EvidenceClaims? = nil,
                tee: TEEEvidenceBytes? = nil) {
        self.measurementDigest = measurementDigest
        self.measurements = measurements
        self.claims = claims
        self.tee = tee
    }
}

/// Evidence whose signature and binding have been checked (stage 1 of `EvidenceVerifier`): it
/// provably comes from the host's device and answers this request, but what it says is not yet
/// judged. Only verifiers in this module create one.
public struct AuthenticatedEvidence: Sendable {
    public let device: String
    public let kind: EvidenceKind
    let payload: Payload

    enum Payload: Sendable {
        case tpm(VerifiedQuote, eventLog: [UInt8]?, modelLog: [UInt8]?)
        /// An authenticated SEV-SNP report, bound and from the registered host (stage 2 applies the policy).
        case sevSNP(AuthenticatedSNP)
        /// An authentic TDX quote, bound and from the registered host, with the verifier's verdict
        /// under the policy already reached (stage 2 reveals it).
        case tdx(AuthenticatedTDX)
        /// An Azure CVM's HCL report and vTPM quote, authenticated together (stage 2 replays the
        /// quote's logs and applies the `snp:` section).
        case azureSNPVTPM(AuthenticatedAzure)
        /// An NVIDIA GPU's evidence: chain, signature, FWID, nonce and versions checked (stage 2
        /// compares its measurements with the reference values).
        case nvidiaGPU(AuthenticatedGPU)
    }

    init(device: String, payload: Payload) {
        self.device = device
        self.payload = payload
        switch payload {
        case .tpm: kind = .tpm
        case .sevSNP: kind = .sevSNP
        case .tdx: kind = .tdx
        case .azureSNPVTPM: kind = .azureSNPVTPM
        case .nvidiaGPU: kind = .nvidiaGPU
        }
    }

    /// What the attestation trail records of it before it is judged further.
    public var record: EvidenceRecord {
        switch payload {
        case let .tpm(quote, _, _): return EvidenceRecord(measurementDigest: Hex.encode(quote.pcrDigest), measurements: quote.pcrs.hexMap)
        case let .sevSNP(snp): return snp.record
        case let .tdx(tdx): return tdx.record
        case let .azureSNPVTPM(azure): return azure.record
        case let .nvidiaGPU(gpu): return EvidenceRecord(measurementDigest: Hex.encode(gpu.digest))
        }
    }
}

/// Evidence for one device that passed every check of its kind's verifier: a typed value the
/// appraisal judges against the policy. Only verifiers in this module create one.
public struct VerifiedEvidence: Sendable {
    public let device: String
    public let kind: EvidenceKind
    public let claims: Claims

    /// What the verifier established, by kind.
    public enum Claims: Sendable {
        /// The verified quote, and the claims its logs and clock established.
        case tpm(VerifiedQuote, EvidenceClaims)
        /// A verified SEV-SNP report: the verifier's claims, its warnings, and the summary recorded.
        case sevSNP(SNPClaims, warnings: [TEEWarning], summary: VerifiedTEE)
        /// A verified TDX quote: the verifier's claims, its warnings, and the summary recorded.
        case tdx(TDXClaims, warnings: [TEEWarning], summary: VerifiedTEE)
        /// A verified Azure CVM: the vTPM quote and what its logs and clock established (with the
        /// SEV-SNP summary as their `tee`), and the SEV-SNP report's claims.
        case azureSNPVTPM(VerifiedQuote, EvidenceClaims, snp: SNPClaims, warnings: [TEEWarning], summary: VerifiedTEE)
        /// A verified NVIDIA GPU: the verifier's claims, with each measurement compared to the
        /// reference values, and the summary recorded.
        case nvidiaGPU(NvidiaGPUClaims, summary: DeviceClaims)
    }

    init(device: String, claims: Claims) {
        self.device = device
        self.claims = claims
        switch claims {
        case .tpm: kind = .tpm
        case .sevSNP: kind = .sevSNP
        case .tdx: kind = .tdx
        case .azureSNPVTPM: kind = .azureSNPVTPM
        case .nvidiaGPU: kind = .nvidiaGPU
        }
    }

    /// A device's summary (`DeviceClaims`), for evidence that is not the platform's.
    public var deviceClaims: DeviceClaims? {
        if case let .nvidiaGPU(_, summary) = claims { return summary }
        return nil
    }

    /// The claims the attestation trail stores (`EvidenceClaims`; for a CPU TEE, its `tee` summary;
    /// for an Azure CVM both the vTPM's and the `tee` summary).
    public var evidenceClaims: EvidenceClaims {
        switch claims {
        case let .tpm(_, claims), let .azureSNPVTPM(_, claims, _, _, _): return claims
        case let .sevSNP(_, _, summary), let .tdx(_, _, summary): return EvidenceClaims(tee: summary.claims)
        case let .nvidiaGPU(_, summary):
            return EvidenceClaims(devices: [summary])
        }
    }

    /// What the attestation trail records of it.
    public var record: EvidenceRecord {
        switch claims {
        case let .tpm(quote, claims):
            return EvidenceRecord(measurementDigest: Hex.encode(quote.pcrDigest), measurements: quote.pcrs.hexMap, claims: claims)
        case let .azureSNPVTPM(quote, claims, _, _, summary):
            return EvidenceRecord(measurementDigest: Hex.encode(quote.pcrDigest), measurements: quote.pcrs.hexMap, claims: claims, tee: summary.evidence)
        case let .sevSNP(_, _, summary), let .tdx(_, _, summary):
            return EvidenceRecord(measurementDigest: Hex.encode(summary.evidenceDigest), claims: EvidenceClaims(tee: summary.claims), tee: summary.evidence)
        case .nvidiaGPU(_, let summary):
            return EvidenceRecord(measurementDigest: summary.sha256, claims: evidenceClaims)
        }
    }
}

/// The outcome of stage 1 (`EvidenceVerifier.authenticate`).
public enum EvidenceAuthentication: Sendable {
    case authenticated(AuthenticatedEvidence)
    /// The evidence is not the device's, or not for this request: nothing it says is believed,
    /// and the request is as unauthenticated as before.
    case rejected([VouchError])
}

/// The outcome of stage 2 (`EvidenceVerifier.verify`), or of both stages.
public enum EvidenceVerification: Sendable {
    case verified(VerifiedEvidence)
    /// Every violation the failing check found, and the record established before the refusal
    /// (for the audit trail).
    case rejected([PolicyViolation], EvidenceRecord?)
}
