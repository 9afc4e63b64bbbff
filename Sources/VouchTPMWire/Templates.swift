import VouchCore

/// TPMT_PUBLIC templates for the keys Vouch asks a TPM to create.
public enum KeyTemplates {
    /// Attributes of an attestation key: a restricted signing key that never leaves this TPM.
    public static let akAttributes: ObjectAttributes = [.fixedTPM, .fixedParent, .sensitiveDataOrigin, .userWithAuth, .restricted, .sign]

    /// Attributes of a TPM-bound agent key: an unrestricted signing key that never leaves its TPM.
    public static let agentKeyAttributes: ObjectAttributes = [.fixedTPM, .fixedParent, .sensitiveDataOrigin, .userWithAuth, .noDA, .sign]

    /// The TCG storage root key template (ECC P-256, AES-128-CFB, zero-filled unique; TCG
    /// Provisioning Guidance), persisted at 0x81000001 as parent of TPM-bound agent keys.
    public static let srkHandle: UInt32 = 0x8100_0001
    public static var storageRootKey: [UInt8] {
        var w = ByteWriter()
        w.u16(TPMAlg.ecc.rawValue)
        w.u16(TPMAlg.sha256.rawValue)
        w.u32(ObjectAttributes([.fixedTPM, .fixedParent, .sensitiveDataOrigin, .userWithAuth, .noDA, .restricted, .decrypt]).rawValue)
        w.sized([])
        w.u16(TPMAlg.aes.rawValue); w.u16(128); w.u16(TPMAlg.cfb.rawValue)
        w.u16(TPMAlg.null.rawValue)
        w.u16(ECCCurve.nistP256.rawValue)
        w.u16(TPMAlg.null.rawValue)
        w.sized([UInt8](repeating: 0, count: 32))
        w.sized([UInt8](repeating: 0, count: 32))
        return w.bytes
    }

    /// Whether `area` has the agent-key template's shape: ECC P-256, name algorithm SHA-256, the
    /// agent-key attributes (an unrestricted signing key that never leaves its TPM), ECDSA with
    /// SHA-256, no auth policy. (The unique field — the public point — is the key's own.)
    public static func isAgentKey(_ area: TPMTPublic) -> Bool {
        guard area.type == .ecc, area.nameAlg == .sha256, area.attributes == agentKeyAttributes, area.authPolicy.isEmpty,
              area.scheme == .ecdsa, area.schemeHash == .sha256, case .ecc(.nistP256, _, _) = area.key else { return false }
        return true
    }

    /// A TPM-bound agent key: ECC P-256, ECDSA with SHA-256.
    public static var agentKey: [UInt8] {
        var w = ByteWriter()
        w.u16(TPMAlg.ecc.rawValue)
        w.u16(TPMAlg.sha256.rawValue)
        w.u32(agentKeyAttributes.rawValue)
        w.sized([])
        w.u16(TPMAlg.null.rawValue)
        w.u16(TPMAlg.ecdsa.rawValue); w.u16(TPMAlg.sha256.rawValue)
        w.u16(ECCCurve.nistP256.rawValue)
        w.u16(TPMAlg.null.rawValue)
        w.sized([]); w.sized([])
        return w.bytes
    }

    public enum AKKind: String, Sendable, Codable, CaseIterable {
        case eccP256 = "ecc-p256"
        case rsa2048 = "rsa-2048"
    }

    /// TPMT_PUBLIC of an ECC P-256 AK with its public point: what a TPM returns for the template
    /// below. Used by simulated hosts, whose AK is a software key.
    public static func eccP256AttestationKey(x: [UInt8], y: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        let template = attestationKey(.eccP256)
        w.raw(Array(template.dropLast(4)))   // everything but the two empty unique fields
        w.sized(x)
        w.sized(y)
        return w.bytes
    }

    /// Marshaled TPMT_PUBLIC of an AK template with an empty unique field, so that
    /// TPM2_CreatePrimary under the endorsement hierarchy re-creates the same key every time.
    public static func attestationKey(_ kind: AKKind) -> [UInt8] {
        var w = ByteWriter()
        switch kind {
        case .eccP256:
            w.u16(TPMAlg.ecc.rawValue)
            w.u16(TPMAlg.sha256.rawValue)
            w.u32(akAttributes.rawValue)
            w.sized([])                          // authPolicy
            w.u16(TPMAlg.null.rawValue)          // symmetric
            w.u16(TPMAlg.ecdsa.rawValue)         // scheme
            w.u16(TPMAlg.sha256.rawValue)        //   hashAlg
            w.u16(ECCCurve.nistP256.rawValue)    // curveID
            w.u16(TPMAlg.null.rawValue)          // kdf
            w.sized([])                          // unique.x
            w.sized([])                          // unique.y
        case .rsa2048:
            w.u16(TPMAlg.rsa.rawValue)
            w.u16(TPMAlg.sha256.rawValue)
            w.u32(akAttributes.rawValue)
            w.sized([])
            w.u16(TPMAlg.null.rawValue)
            w.u16(TPMAlg.rsassa.rawValue)
            w.u16(TPMAlg.sha256.rawValue)
            w.u16(2048)                          // keyBits
            w.u32(0)                             // exponent (default 65537)
            w.sized([])                          // unique.rsa
        }
        return w.bytes
    }
}
