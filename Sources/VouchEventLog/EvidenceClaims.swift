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

    public init(boot: BootClaims?, model: ModelClaims?, clock: ClockState, rebootedSinceLastAttestation: Bool) {
        self.boot = boot; self.model = model; self.clock = clock; self.rebootedSinceLastAttestation = rebootedSinceLastAttestation
    }

    /// The claims of a CPU TEE's evidence.
    public init(tee: TEEClaims) {
        self.tee = tee
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
