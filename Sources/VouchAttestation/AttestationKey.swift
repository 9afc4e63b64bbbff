import VouchCore
import VouchCrypto
import VouchTPMWire

extension ErrorCode {
    /// The AK's public area fixes no signing scheme Vouch verifies with (TPM_ALG_NULL, or a scheme
    /// that does not fit its key type), or fixes SHA-1 where SHA-1 is not explicitly allowed.
    public static let akSchemeNotAllowed = ErrorCode("ak_scheme_not_allowed", status: 403)
    /// A TPMT_SIGNATURE names another scheme or hash than the one the AK's public area fixes.
    public static let quoteSignatureSchemeMismatch = ErrorCode("quote_signature_scheme_mismatch", status: 403)
}

/// An attestation key with the one signing scheme and hash its TPMT_PUBLIC fixes. A restricted
/// signing key's template names its scheme and hash, and the TPM signs only with those (TPM2_Quote
/// and TPM2_Certify refuse another `inScheme`), so signatures are verified with the key's scheme
/// and hash, never with whatever the signature names.
public struct AttestationKey: Sendable {
    public let publicKey: PublicKey
    public let scheme: SignatureScheme
    public let hash: HashAlg

    /// The AK from its public area: the area's scheme and hash decide. Throws `ak_scheme_not_allowed`
    /// for a TPM_ALG_NULL scheme or one that does not fit the key type; `quote_signature_invalid`
    /// for a key that cannot be used.
    public init(tpmPublic: TPMTPublic) throws {
        let scheme: SignatureScheme
        switch (tpmPublic.type, tpmPublic.scheme) {
        case (.rsa, .rsassa): scheme = .rsassa
        case (.rsa, .rsapss): scheme = .rsapss
        case (.ecc, .ecdsa): scheme = .ecdsa
        default:
            throw VouchError(.akSchemeNotAllowed, "the attestation key's public area fixes no usable signing scheme",
                             context: ["expected": "RSASSA or RSA-PSS (RSA), ECDSA (ECC)", "got": "\(tpmPublic.type)/\(tpmPublic.scheme)"])
        }
        guard let hash = tpmPublic.schemeHash else {
            throw VouchError(.akSchemeNotAllowed, "the attestation key's scheme names no hash", context: ["got": "\(tpmPublic.scheme)"])
        }
        let key: PublicKey
        do { key = try PublicKey(tpmPublic: tpmPublic) } catch {
            throw VouchError(.quoteSignatureInvalid, "attestation key cannot be used for verification")
        }
        try self.init(publicKey: key, scheme: scheme, hash: hash)
    }

    /// A key whose public area is not at hand (a PEM key), with the scheme and hash its owner
    /// states. The scheme must fit the key type (`ak_scheme_not_allowed`).
    public init(publicKey: PublicKey, scheme: SignatureScheme, hash: HashAlg) throws {
        guard scheme == .ecdsa ? publicKey.isEC : publicKey.isRSA else {
            throw VouchError(.akSchemeNotAllowed, "the signing scheme does not fit the attestation key's type",
                             context: ["expected": publicKey.isRSA ? "rsassa or rsapss" : "ecdsa", "got": scheme.rawValue])
        }
        self.publicKey = publicKey
        self.scheme = scheme
        self.hash = hash
    }

    /// `ak_scheme_not_allowed` when the key's hash is SHA-1 and SHA-1 is not allowed; nil otherwise.
    public func refusal(allowSHA1: Bool) -> VouchError? {
        guard hash == .sha1, !allowSHA1 else { return nil }
        return VouchError(.akSchemeNotAllowed, "the attestation key signs with SHA-1, which is not allowed here",
                          context: ["expected": "sha256, sha384 or sha512 (or SHA-1 explicitly allowed)", "got": "\(scheme.rawValue)/sha1"])
    }
}
