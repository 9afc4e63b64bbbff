import VouchCore
import VouchTPMWire

/// TPM2_MakeCredential done in software (TPM 2.0 Part 1, 24 "Credential Protection"; Part 3, 12.6).
/// The result can only be unwrapped by TPM2_ActivateCredential in the TPM holding the EK's private
/// key, and only for an object whose name is `objectName`.
public struct MadeCredential: Sendable {
    /// TPM2B_ID_OBJECT: integrityHMAC (TPM2B) followed by the encrypted TPM2B_DIGEST credential.
    public let credentialBlob: [UInt8]
    /// TPM2B_ENCRYPTED_SECRET: for an RSA EK the seed, RSA-OAEP encrypted to the EK with label
    /// "IDENTITY"; for an ECC EK the ephemeral public point (TPMS_ECC_POINT) the seed derives from.
    public let encryptedSecret: [UInt8]
}

public enum CredentialProtection {
    /// Wraps `credential` (at most the EK name algorithm's digest size) for `objectName` under `ek`.
    /// Supported EKs: RSA (the seed is RSA-OAEP encrypted with label "IDENTITY") and ECC on the NIST
    /// curves (the seed is shared by ECDH with an ephemeral key: Part 1, 11.4.10.3 KDFe and Annex
    /// C.6.1), each with an AES symmetric definition, as every TCG EK template has.
    public static func makeCredential(ek: TPMTPublic, objectName: [UInt8], credential: [UInt8]) throws -> MadeCredential {
        guard ek.symmetric == .aes, [128, 192, 256].contains(Int(ek.symmetricKeyBits)) else {
            throw VouchError(.unsupported, "EK symmetric algorithm must be AES", context: ["field": "ek.symmetric", "got": "\(ek.symmetric)"])
        }
        let nameAlg = ek.nameAlg
        guard credential.count <= nameAlg.digestSize else {
            throw VouchError(.invalidValue, "credential longer than the EK name digest", context: ["field": "credential"])
        }
        let (seed, encryptedSecret) = try shareSeed(ek: ek)

        let symKey = Crypto.kdfa(nameAlg, key: seed, label: "STORAGE", contextU: objectName, contextV: [], bits: Int(ek.symmetricKeyBits))
        var plain = ByteWriter()
        plain.sized(credential)
        let encIdentity = try Crypto.aesCFBEncrypt(key: symKey, plain.bytes)
        let hmacKey = Crypto.kdfa(nameAlg, key: seed, label: "INTEGRITY", contextU: [], contextV: [], bits: nameAlg.digestSize * 8)
        let integrity = Crypto.hmac(nameAlg, key: hmacKey, encIdentity + objectName)

        var idObject = ByteWriter()
        idObject.sized(integrity)
        idObject.raw(encIdentity)
        var blob = ByteWriter()
        blob.sized(idObject.bytes)
        var secret = ByteWriter()
        secret.sized(encryptedSecret)
        return MadeCredential(credentialBlob: blob.bytes, encryptedSecret: secret.bytes)
    }

    /// A fresh seed of the EK name algorithm's digest size, and what lets only the EK's TPM
    /// recover it (the contents of the TPM2B_ENCRYPTED_SECRET).
    static func shareSeed(ek: TPMTPublic) throws -> (seed: [UInt8], encrypted: [UInt8]) {
        let nameAlg = ek.nameAlg
        switch ek.key {
        case .rsa:
            let seed = try Crypto.randomBytes(nameAlg.digestSize)
            let encSeed = try PublicKey(tpmPublic: ek).rsaOAEPEncrypt(seed, hash: nameAlg, label: Array("IDENTITY".utf8) + [0])
            return (seed, encSeed)
        case let .ecc(curve, ekX, _):
            let keyType: PrivateKey.KeyType
            switch curve {
            case .nistP256: keyType = .p256
            case .nistP384: keyType = .p384
            case .nistP521: keyType = .p521
            }
            let ephemeral = try PrivateKey.generate(keyType)
            let z = try ephemeral.ecdhSharedX(with: PublicKey(tpmPublic: ek))
            guard let point = try ephemeral.publicKey.ecJWKParameters, point.x.count == curve.coordinateSize else {
                throw VouchError(.crypto, "ephemeral ECC key has no uncompressed point")
            }
            let seed = Crypto.kdfe(nameAlg, z: z, label: "IDENTITY", partyUInfo: point.x, partyVInfo: ekX, bits: nameAlg.digestSize * 8)
            var w = ByteWriter()            // TPMS_ECC_POINT
            w.sized(point.x)
            w.sized(point.y)
            return (seed, w.bytes)
        }
    }

    /// The TPM name of an object: nameAlg (2 bytes) followed by H_nameAlg(TPMT_PUBLIC).
    public static func name(of pub: TPMTPublic) -> [UInt8] {
        var w = ByteWriter()
        w.u16(pub.nameAlg.tpmAlg.rawValue)
        w.raw(Crypto.digest(pub.nameAlg, pub.raw))
        return w.bytes
    }
}

/// How an enrollment quote binds the challenge and the agent's key.
public enum EnrollmentBinding {
    /// SHA-256(nonce ‖ SHA-256(DER SubjectPublicKeyInfo of the agent key)): the quote's qualifying data.
    public static func qualifyingData(nonce: [UInt8], agentSPKI: [UInt8]) -> [UInt8] {
        Crypto.sha256(nonce + Crypto.sha256(agentSPKI))
    }

    /// The label re-attestation quotes bind in place of an agent key, so an enrollment quote and a
    /// re-attestation quote can never stand for each other.
    public static let reattestationLabel = Array("vouch re-attestation v1".utf8)

    /// SHA-256(nonce ‖ SHA-256("vouch re-attestation v1")): a re-attestation quote's qualifying data.
    public static func reattestationData(nonce: [UInt8]) -> [UInt8] {
        Crypto.sha256(nonce + Crypto.sha256(reattestationLabel))
    }

    /// The domain tag of a CPU TEE report's REPORT_DATA (`teeReportData`).
    public static let teeReportDataTag = Array("vouch tee report-data v1\u{0}".utf8)

    /// The 64 bytes a CPU TEE report (SEV-SNP REPORT_DATA, TDX REPORTDATA) carries for the same
    /// binding a TPM quote carries as qualifying data: SHA-512(tag ‖ binding), `binding` being
    /// `qualifyingData(nonce:agentSPKI:)` at enrollment or `reattestationData(nonce:)` at
    /// re-attestation. The tag keeps a TEE report's data from ever equalling a TPM quote's or any
    /// other protocol's use of the same nonce.
    public static func teeReportData(binding: [UInt8]) -> [UInt8] {
        Crypto.digest(.sha512, teeReportDataTag + binding)
    }

    /// The domain tag of a composite binding (`composite`).
    public static let compositeTag = Array("vouch composite evidence v1\u{0}".utf8)
    /// The domain tag of a device evidence digest (`deviceDigest`).
    public static let deviceDigestTag = Array("vouch device evidence v1\u{0}".utf8)

    /// The digest a device's evidence is bound by: SHA-256(tag ‖ kind ‖ 0 ‖ for each part, its
    /// length as 4 bytes big-endian ‖ the part). An NVIDIA GPU's parts are the SPDM transcript
    /// (request ‖ response) and its PEM certificate chain, as sent.
    public static func deviceDigest(kind: String, parts: [[UInt8]]) -> [UInt8] {
        var bytes = deviceDigestTag + Array(kind.utf8) + [0]
        for part in parts {
            let n = UInt32(clamping: part.count)
            bytes += [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + part
        }
        return Crypto.sha256(bytes)
    }

    /// The binding a host's platform evidence (TPM qualifying data, SEV-SNP/TDX REPORT_DATA via
    /// `teeReportData`) carries when the request holds other devices' evidence too:
    /// SHA-256(tag ‖ binding ‖ count (1 byte) ‖ for each device in the order sent: length of its
    /// name (1 byte) ‖ name ‖ length of its kind (1 byte) ‖ kind ‖ its 32-byte `deviceDigest`).
    /// `binding` is `qualifyingData` (the nonce and the agent key) or `reattestationData` (the
    /// nonce), so the platform's signature covers the nonce, the agent key and every device's
    /// evidence: no device can be dropped, added, swapped, renamed or replayed from another
    /// request. Without devices the binding is `binding` itself (a platform-only request is
    /// unchanged). At most 255 devices; names and kinds at most 255 bytes (callers bound them
    /// far lower).
    public static func composite(binding: [UInt8], devices: [(name: String, kind: String, digest: [UInt8])]) -> [UInt8] {
        guard !devices.isEmpty else { return binding }
        var bytes = compositeTag + binding + [UInt8(clamping: devices.count)]
        for d in devices {
            let name = Array(d.name.utf8.prefix(255)), kind = Array(d.kind.utf8.prefix(255))
            bytes += [UInt8(name.count)] + name + [UInt8(kind.count)] + kind + d.digest
        }
        return Crypto.sha256(bytes)
    }
}
