import VouchCore
import VouchCrypto
import VouchTEEWire

// The software TEE: SEV-SNP reports and TDX quotes in the real wire formats, signed by test
// chains (a test ARK/ASK/VCEK, a test Intel-style root/PCK chain with matching collateral) made
// here. For tests, the demo and the simulated fleet only: the attester selects it by an explicit
// simulation flag, and a broker trusts its roots only when its configuration names them (a
// production configuration refuses them; see docs/evidence.md).

extension ErrorCode {
    /// The software TEE was asked for something it cannot make (an unknown product, a report
    /// version it does not write).
    public static let teeSimulationUnsupported = ErrorCode("tee_simulation_unsupported", status: 400)
}

/// Marks what the software TEE makes, so a reader of a chain can tell it apart: every test root
/// it creates carries this in its subject's organisation.
public enum TEESimulation {
    public static let organization = "Vouch software TEE (simulation only)"
    static let wireCode = ErrorCode.teeEvidenceMalformed
    static func digest(_ bytes: [UInt8]) -> [UInt8] { Crypto.sha256(bytes) }
}
