import VouchTPMWire

/// TPMS_CLOCK_INFO as tracked per host between attestations.
public struct ClockState: Sendable, Codable, Equatable {
    public var resetCount: UInt32
    public var restartCount: UInt32
    public var clock: UInt64
    public var safe: Bool

    public init(resetCount: UInt32, restartCount: UInt32, clock: UInt64, safe: Bool) {
        self.resetCount = resetCount; self.restartCount = restartCount; self.clock = clock; self.safe = safe
    }

    public init(_ info: ClockInfo) {
        self.init(resetCount: info.resetCount, restartCount: info.restartCount, clock: info.clock, safe: info.safe)
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
