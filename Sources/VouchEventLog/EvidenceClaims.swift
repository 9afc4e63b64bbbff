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
public struct EvidenceClaims: Sendable, Codable, Equatable {
    public var boot: BootClaims?
    public var model: ModelClaims?
    public var clock: ClockState
    /// The TPM was reset or restarted since this host's previous accepted attestation.
    public var rebootedSinceLastAttestation: Bool

    public init(boot: BootClaims?, model: ModelClaims?, clock: ClockState, rebootedSinceLastAttestation: Bool) {
        self.boot = boot; self.model = model; self.clock = clock; self.rebootedSinceLastAttestation = rebootedSinceLastAttestation
    }
}
