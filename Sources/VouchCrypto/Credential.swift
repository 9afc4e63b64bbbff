import VouchCore
import VouchTPMWire

/// TPM2_MakeCredential done in software (TPM 2.0 Part 1, 24 "Credential Protection"; Part 3, 12.6).
/// The result can only be unwrapped by TPM2_ActivateCredential in the TPM holding the EK's private
/// key, and only for an object whose name is `objectName`.
public struct MadeCredential: Sendable {
    /// TPM2B_ID_OBJECT: integrityHMAC (TPM2B) followed by the encrypted TPM2B_DIGEST credential.
    public let credentialBlob: [UInt8]
    /// TPM2B_ENCRYPTED_SECRET: the seed, RSA-OAEP encrypted to the EK with label "IDENTITY".
    public let encryptedSecret: [UInt8]
}

public enum CredentialProtection {
    /// Wraps `credential` (at most the EK name algorithm's digest size) for `objectName` under `ek`.
    /// Supported EK: RSA with an AES symmetric definition (TCG EK template L-1 and the high-range RSA templates).
    public static func makeCredential(ek: TPMTPublic, objectName: [UInt8], credential: [UInt8]) throws -> MadeCredential {
        guard case .rsa = ek.key else {
            throw VouchError(.unsupported, "credential activation currently needs an RSA endorsement key", context: ["field": "ek.type", "got": "\(ek.type)"])
        }
        guard ek.symmetric == .aes, [128, 192, 256].contains(Int(ek.symmetricKeyBits)) else {
            throw VouchError(.unsupported, "EK symmetric algorithm must be AES", context: ["field": "ek.symmetric", "got": "\(ek.symmetric)"])
        }
        let nameAlg = ek.nameAlg
        guard credential.count <= nameAlg.digestSize else {
            throw VouchError(.invalidValue, "credential longer than the EK name digest", context: ["field": "credential"])
        }
        let seed = try Crypto.randomBytes(nameAlg.digestSize)
        let ekKey = try PublicKey(tpmPublic: ek)
        let encSeed = try ekKey.rsaOAEPEncrypt(seed, hash: nameAlg, label: Array("IDENTITY".utf8) + [0])

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
        secret.sized(encSeed)
        return MadeCredential(credentialBlob: blob.bytes, encryptedSecret: secret.bytes)
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
}
