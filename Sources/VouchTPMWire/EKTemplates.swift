import VouchCore

/// The endorsement-key templates of the TCG EK Credential Profile for TPM 2.0 (v2.3 and later,
/// Annex B) that Vouch accepts: the low-range RSA 2048 (L-1) and ECC P-256 (L-2) templates and the
/// high-range H-1 (RSA 2048), H-2 (ECC P-256) and H-3 (ECC P-384, what swtpm makes) templates.
///
/// Every field but the key itself (`unique`) is fixed by the template, so an EK public area whose
/// other fields differ was not made from a TCG template (or was re-encoded on its way).
public enum EKTemplate: String, Sendable, CaseIterable {
    case rsa2048 = "L-1"
    case eccP256 = "L-2"
    case rsa2048High = "H-1"
    case eccP256High = "H-2"
    case eccP384High = "H-3"

    /// The key types an attester can be asked to use, with the templates tried in order.
    public enum Kind: String, Sendable, CaseIterable {
        case rsa, ecc
        public var templates: [EKTemplate] {
            switch self {
            case .rsa: [.rsa2048, .rsa2048High]
            case .ecc: [.eccP256, .eccP256High, .eccP384High]
            }
        }
    }

    public var kind: Kind {
        switch self {
        case .rsa2048, .rsa2048High: .rsa
        case .eccP256, .eccP256High, .eccP384High: .ecc
        }
    }

    public var isHighRange: Bool { self != .rsa2048 && self != .eccP256 }

    /// NV index of the EK certificate for this template (EK Credential Profile, 2.2.1.5).
    public var certificateNVIndex: UInt32 {
        switch self {
        case .rsa2048: 0x01c0_0002
        case .eccP256: 0x01c0_000a
        case .rsa2048High: 0x01c0_0012
        case .eccP256High: 0x01c0_0014
        case .eccP384High: 0x01c0_0016
        }
    }

    /// Where the EK is usually persisted: TCG Provisioning Guidance for the low range
    /// (0x81010001, 0x81010002); for the high range, the handle matching the certificate's NV
    /// index, as swtpm uses. A TPM without a persisted EK gets it re-created from the template.
    public var persistentHandle: UInt32 {
        switch self {
        case .rsa2048: 0x8101_0001
        case .eccP256: 0x8101_0002
        case .rsa2048High: 0x8101_0012
        case .eccP256High: 0x8101_0014
        case .eccP384High: 0x8101_0016
        }
    }

    public var nameAlg: HashAlg {
        self == .eccP384High ? .sha384 : .sha256
    }

    /// fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy | restricted | decrypt, and
    /// userWithAuth for the high range.
    public var attributes: ObjectAttributes {
        let low: ObjectAttributes = [.fixedTPM, .fixedParent, .sensitiveDataOrigin, .adminWithPolicy, .restricted, .decrypt]
        return isHighRange ? low.union(.userWithAuth) : low
    }

    /// PolicyA: TPM2_PolicySecret(TPM_RH_ENDORSEMENT) with the template's name algorithm.
    public var policyA: [UInt8] {
        nameAlg == .sha384 ? EKPolicies.policyASHA384 : EKPolicies.policyASHA256
    }

    /// The EK's authPolicy: PolicyA (low range) or PolicyB = PolicyOR(PolicyA, PolicyC) (high range).
    public var authPolicy: [UInt8] {
        switch (isHighRange, nameAlg) {
        case (false, _): EKPolicies.policyASHA256
        case (true, .sha384): EKPolicies.policyBSHA384
        default: EKPolicies.policyBSHA256
        }
    }

    /// The branches a policy session ORs after PolicySecret to satisfy a high-range EK's PolicyB;
    /// empty for the low range, whose policy is PolicySecret alone.
    public var policyORBranches: [[UInt8]] {
        guard isHighRange else { return [] }
        return nameAlg == .sha384 ? [EKPolicies.policyASHA384, EKPolicies.policyCSHA384] : [EKPolicies.policyASHA256, EKPolicies.policyCSHA256]
    }

    public var symmetricKeyBits: UInt16 { self == .eccP384High ? 256 : 128 }

    public var curve: ECCCurve? {
        switch self {
        case .eccP256, .eccP256High: .nistP256
        case .eccP384High: .nistP384
        case .rsa2048, .rsa2048High: nil
        }
    }

    /// The marshaled TPMT_PUBLIC template: the low range has a zero-filled unique field of the
    /// key's size, the high range an empty one.
    public var template: [UInt8] {
        var w = ByteWriter()
        w.u16(kind == .rsa ? TPMAlg.rsa.rawValue : TPMAlg.ecc.rawValue)
        w.u16(nameAlg.tpmAlg.rawValue)
        w.u32(attributes.rawValue)
        w.sized(authPolicy)
        w.u16(TPMAlg.aes.rawValue); w.u16(symmetricKeyBits); w.u16(TPMAlg.cfb.rawValue)
        w.u16(TPMAlg.null.rawValue)                          // scheme
        if let curve {
            w.u16(curve.rawValue)
            w.u16(TPMAlg.null.rawValue)                      // kdf
            let zeros = [UInt8](repeating: 0, count: isHighRange ? 0 : curve.coordinateSize)
            w.sized(zeros); w.sized(zeros)
        } else {
            w.u16(2048)                                      // keyBits
            w.u32(0)                                         // exponent: 0 is 65537
            w.sized([UInt8](repeating: 0, count: isHighRange ? 0 : 256))
        }
        return w.bytes
    }

    /// The first field of `pub` that differs from this template, as (field, expected, got); nil
    /// when every field but the key itself matches. The RSA exponent must be encoded as 0 (the
    /// template's value, which stands for 65537): a TPM reports the exponent field of the
    /// template it created the key from, so an explicit 65537 means the area was re-encoded.
    public func mismatch(_ pub: TPMTPublic) -> (field: String, expected: String, got: String)? {
        func hex(_ v: some BinaryInteger) -> String { "0x" + String(v, radix: 16) }
        if pub.type != (kind == .rsa ? TPMAlg.rsa : .ecc) { return ("type", "\(kind)", "\(pub.type)") }
        if pub.nameAlg != nameAlg { return ("nameAlg", nameAlg.rawValue, pub.nameAlg.rawValue) }
        if pub.attributes != attributes { return ("objectAttributes", hex(attributes.rawValue), hex(pub.attributes.rawValue)) }
        if pub.authPolicy != authPolicy { return ("authPolicy", Hex.encode(authPolicy), Hex.encode(pub.authPolicy)) }
        if pub.symmetric != .aes || pub.symmetricKeyBits != symmetricKeyBits || pub.symmetricMode != TPMAlg.cfb.rawValue {
            return ("symmetric", "aes-\(symmetricKeyBits)-cfb", "\(pub.symmetric)-\(pub.symmetricKeyBits)-\(hex(pub.symmetricMode))")
        }
        if pub.scheme != .null { return ("scheme", "null", "\(pub.scheme)") }
        switch pub.key {
        case let .rsa(_, _, keyBits):
            if keyBits != 2048 { return ("keyBits", "2048", "\(keyBits)") }
            if pub.rsaExponentField != 0 { return ("exponent", "0", "\(pub.rsaExponentField)") }
        case let .ecc(curve, _, _):
            if curve != self.curve { return ("curveID", "\(self.curve.map { "\($0)" } ?? "-")", "\(curve)") }
            if pub.kdfScheme != TPMAlg.null.rawValue { return ("kdf", "null", hex(pub.kdfScheme)) }
        }
        return nil
    }

    /// The template `pub` was made from, if any.
    public static func matching(_ pub: TPMTPublic) -> EKTemplate? {
        allCases.first { $0.mismatch(pub) == nil }
    }
}

/// Policy digests of the EK Credential Profile (PolicyA = PolicySecret(TPM_RH_ENDORSEMENT);
/// PolicyC = PolicyAuthorizeNV of the EK policy index; PolicyB = PolicyOR(PolicyA, PolicyC)).
/// PolicyA and PolicyB are recomputed from their definitions in the tests.
public enum EKPolicies {
    public static let policyASHA256 = hex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
    public static let policyBSHA256 = hex("ca3d0a99a2b93906f7a3342414efcfb3a385d44cd1fd459089d19b5071c0b7a0")
    public static let policyCSHA256 = hex("3767e2edd43ff45a3a7e1eaefcef78643dca964632e7aad82c673a30d8633fde")
    public static let policyASHA384 = hex("8bbf2266537c171cb56e403c4dc1d4b64f432611dc386e6f532050c3278c930e143e8bb1133824ccb431053871c6db53")
    public static let policyBSHA384 = hex("b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419cacb47ba09699646150f9fc000f3f80e12")
    public static let policyCSHA384 = hex("d6032ce61f2fb3c240eb3cf6a33237ef2b6a16f4293c22b455e261cffd217ad5b4947c2d73e63005eed2dc2b3593d165")

    private static func hex(_ s: String) -> [UInt8] {
        // Constants above are well-formed; a typo is a programming error caught by the tests.
        (try? Hex.decode(s, field: "policy")) ?? []
    }
}
