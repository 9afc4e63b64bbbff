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

    /// A DER ECDSA signature as raw r ‖ s, each left-padded to `scalarBytes` (32 for P-256, as
    /// DCAP structures carry it; 48 for P-384, as SPDM does).
    static func rawSignature(der: [UInt8], scalarBytes: Int) throws -> [UInt8] {
        var outer = DER.Reader(der)
        var seq = try outer.sequence("ecdsaSignature")
        func scalar(_ field: String) throws -> [UInt8] {
            let v = Array(try seq.read(DER.integerTag, field).drop { $0 == 0 })
            guard v.count <= scalarBytes else { throw VouchError(.teeSimulationUnsupported, "not a \(scalarBytes * 8)-bit ECDSA signature", context: ["field": field]) }
            return [UInt8](repeating: 0, count: scalarBytes - v.count) + v
        }
        return try scalar("r") + scalar("s")
    }
}

/// A certificate and its private key as a simulated platform's file keeps them (PEM).
public struct StoredKeyPair: Codable, Sendable {
    public var certificate: String
    public var key: String
    public init(_ certificate: Certificate, _ key: PrivateKey) throws {
        self.certificate = try certificate.pem
        self.key = try key.pem
    }
    public var loaded: (Certificate, PrivateKey) {
        get throws { (try Certificate(pem: certificate), try PrivateKey(pem: key)) }
    }
}
