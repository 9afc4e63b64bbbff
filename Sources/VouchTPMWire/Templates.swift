import VouchCore

/// TPMT_PUBLIC templates for the keys Vouch asks a TPM to create.
public enum KeyTemplates {
    /// Attributes of an attestation key: a restricted signing key that never leaves this TPM.
    public static let akAttributes: ObjectAttributes = [.fixedTPM, .fixedParent, .sensitiveDataOrigin, .userWithAuth, .restricted, .sign]

    public enum AKKind: String, Sendable, Codable, CaseIterable {
        case eccP256 = "ecc-p256"
        case rsa2048 = "rsa-2048"
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
