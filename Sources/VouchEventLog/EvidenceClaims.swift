import VouchTPMWire

/// TPMS_CLOCK_INFO, and the TPM's firmwareVersion from the same TPMS_ATTEST, as tracked per host
/// between attestations.
public struct ClockState: Sendable, Codable, Equatable {
    public var resetCount: UInt32
    public var restartCount: UInt32
    public var clock: UInt64
    public var safe: Bool
    /// TPMS_ATTEST.firmwareVersion (vendor-defined, compared as an unsigned integer). Optional:
    /// records stored before it was kept have none.
    public var firmwareVersion: UInt64?

    public init(resetCount: UInt32, restartCount: UInt32, clock: UInt64, safe: Bool, firmwareVersion: UInt64? = nil) {
        self.resetCount = resetCount; self.restartCount = restartCount; self.clock = clock; self.safe = safe
        self.firmwareVersion = firmwareVersion
    }

    public init(_ info: ClockInfo, firmwareVersion: UInt64? = nil) {
        self.init(resetCount: info.resetCount, restartCount: info.restartCount, clock: info.clock, safe: info.safe, firmwareVersion: firmwareVersion)
    }
}

/// Everything a verified attestation established about a host, for policy, status and audit.
/// A TPM quote's claims have `clock` (and boot and model claims when logs were sent); a CPU
/// TEE's (SEV-SNP, TDX) have `tee` and no TPM clock.
public struct EvidenceClaims: Sendable, Codable, Equatable {
    public var boot: BootClaims?
    public var model: ModelClaims?
    /// The TPM clock of the quote; nil for a CPU TEE's evidence (it has none).
    public var clock: ClockState?
    /// The TPM was reset or restarted since this host's previous accepted attestation.
    public var rebootedSinceLastAttestation: Bool
    /// What a CPU TEE's report or quote established; nil for a TPM quote.
    public var tee: TEEClaims?
    /// The host's other devices (GPUs) whose evidence was verified with the platform's, under the
    /// same binding, in the order sent; nil when the host presented none.
    public var devices: [DeviceClaims]?

    public init(boot: BootClaims?, model: ModelClaims?, clock: ClockState, rebootedSinceLastAttestation: Bool) {
        self.boot = boot; self.model = model; self.clock = clock; self.rebootedSinceLastAttestation = rebootedSinceLastAttestation
    }

    /// The claims of a CPU TEE's evidence.
    public init(tee: TEEClaims) {
        self.tee = tee
        rebootedSinceLastAttestation = false
    }

    /// The claims of devices presented beside a platform, alone (a device's own record).
    public init(devices: [DeviceClaims]) {
        self.devices = devices
        rebootedSinceLastAttestation = false
    }
}

/// The summary of a verified CPU TEE report (SEV-SNP) or quote (TDX) that the attestation trail,
/// `vouch status` and the EAR carry (the verifier's full claims are `SNPClaims` / `TDXClaims`).
/// Byte strings are lowercase hex.
public struct TEEClaims: Sendable, Codable, Equatable {
    /// The evidence kind: `sev-snp` or `tdx`.
    public var kind: String
    /// The launch measurement: SEV-SNP MEASUREMENT, TDX MRTD (48 bytes).
    public var measurement: String
    /// The policy's name for the measurement, when its allowlist has it.
    public var measurementName: String?
    /// The TCB as the evidence states it: SEV-SNP REPORTED_TCB (16 hex digits), TDX TEE_TCB_SVN.
    public var tcb: String
    /// TDX: the converged TCB status from the collateral ("Unknown" without it); SEV-SNP: nil
    /// (the VCEK/VLEK certifies REPORTED_TCB; minimums are the policy's `snp.minimumTCB`).
    public var tcbStatus: String?
    /// The guest is debuggable (SEV-SNP POLICY.DEBUG, TDX TDATTRIBUTES.DEBUG).
    public var debug: Bool
    /// Who signed: `vcek` or `vlek` (SEV-SNP), `pck` (TDX).
    public var signer: String
    /// SEV-SNP: the product line (Milan, Genoa, Turin); TDX: the platform's FMSPC.
    public var platform: String
    /// TDX: RTMR0–3; nil for SEV-SNP.
    public var rtmrs: [String]?
    /// SEV-SNP HOST_DATA; TDX MRCONFIGID.
    public var configId: String?
    /// The REPORT_DATA / REPORTDATA the evidence carries (the request's binding).
    public var reportData: String
    /// Codes of the warnings the verifier let through (e.g. `snp_revocation_not_checked`,
    /// `tdx_tcb_sw_hardening_needed`).
    public var warnings: [String]
    /// The evidence was signed under the software TEE's test roots (a simulated host).
    public var simulated: Bool

    public init(kind: String, measurement: String, measurementName: String?, tcb: String, tcbStatus: String?, debug: Bool, signer: String,
                platform: String, rtmrs: [String]?, configId: String?, reportData: String, warnings: [String], simulated: Bool) {
        self.kind = kind; self.measurement = measurement; self.measurementName = measurementName; self.tcb = tcb; self.tcbStatus = tcbStatus
        self.debug = debug; self.signer = signer; self.platform = platform; self.rtmrs = rtmrs; self.configId = configId
        self.reportData = reportData; self.warnings = warnings; self.simulated = simulated
    }
}

/// What a device's evidence established besides the platform's (an NVIDIA GPU's SPDM
/// measurements), as the attestation trail, the EAR and the certificate carry it. Byte strings
/// are lowercase hex.
public struct DeviceClaims: Sendable, Codable, Equatable {
    /// The device's name in the request (`gpu0` … `gpu15`): its EAR submodule.
    public var device: String
    /// The evidence kind: `nvidia-gpu`.
    public var kind: String
    /// SHA-256 of the device's evidence as bound into the platform's (`EnrollmentBinding.deviceDigest`).
    public var sha256: String
    public var driverVersion: String
    public var vbiosVersion: String
    /// The signed opaque data's project, project SKU and chip SKU, when present.
    public var project: String?
    public var projectSKU: String?
    public var chipSKU: String?
    /// The FWID the device certificate names.
    public var fwid: String
    /// SHA-256 of the device's leaf public key (DER SubjectPublicKeyInfo), hex: which GPU this is
    /// (the FWID names its firmware, shared by a board's GPUs). Nil in claims recorded before it was kept.
    public var deviceKey: String?
    /// The reference-value comparison of the device's measurements: `matched` (every measurement
    /// equals one of its RIM's alternatives), `mismatched` (at least one differs or an active
    /// reference index is absent) or `missing` (no RIM for a measurement, none mismatched).
    public var referenceValues: String
    /// The driver and VBIOS RIMs the measurements were compared with (`tagId`s); empty when none.
    public var rims: [String]
    /// The device chains to the software GPU's test root (a simulated device).
    public var simulated: Bool
    /// The OCSP status of the device chain below its root, from the broker's store: `good` (every
    /// certificate checked answered good), `missing` (some had no verified, current answer) or
    /// `none` (the chain has nothing between the GPU's own leaf and the root to ask about); nil
    /// where it was not looked at (offline tools).
    public var revocation: String?

    public init(device: String, kind: String, sha256: String, driverVersion: String, vbiosVersion: String, project: String?, projectSKU: String?,
                chipSKU: String?, fwid: String, referenceValues: String, rims: [String], simulated: Bool) {
        self.device = device; self.kind = kind; self.sha256 = sha256; self.driverVersion = driverVersion; self.vbiosVersion = vbiosVersion
        self.project = project; self.projectSKU = projectSKU; self.chipSKU = chipSKU; self.fwid = fwid; self.referenceValues = referenceValues
        self.rims = rims; self.simulated = simulated
    }
}
