import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchTPM
import VouchTPMWire

extension Attester {
    /// `POST /v1/sign` on the local socket: a TPM-bound agent key signs one SHA-256 digest (what
    /// `vouch receipt sign --socket` and the receipt proxy ask for a key made by `vouch enroll
    /// --tpm-key`). Returns a DER ECDSA signature.
    ///
    /// The checks, in order (each a 400 `tpm_key_invalid` before the TPM is touched):
    /// 1. the public blob is a TPM2B_PUBLIC of the agent-key template the attester creates
    ///    (`KeyTemplates.isAgentKey`: ECC P-256, ECDSA with SHA-256, name algorithm SHA-256, no
    ///    policy, attributes fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | noDA |
    ///    sign) — so no restricted key (an AK) or decryption key is used here;
    /// 2. the digest is 32 bytes (hex);
    /// 3. the TPM loads the private blob under the SRK (a blob wrapped by another TPM, or for
    ///    another public area, fails there: 400 `tpm_key_invalid`) and signs with TPM2_Sign;
    /// 4. the TPM's TPMT_SIGNATURE parses as ECDSA with SHA-256.
    /// The caller checks the signature against its certificate's key before using it.
    public func signWithAgentKey(_ req: AgentSignRequest) throws -> AgentSignResponse {
        func invalid(_ message: String, _ field: String) -> VouchError {
            VouchError(.tpmKeyInvalid, message, context: ["field": field])
        }
        guard config.tee == nil else { throw VouchError(.unsupported, "this attester is a confidential VM's: it holds no TPM-bound agent keys", context: ["field": "tpmKeyPublic"]) }
        guard let pub = try? Base64.decode(req.tpmKeyPublic, field: "tpmKeyPublic"), pub.count <= 1024 else { throw invalid("the public blob is not base64 of at most 1024 bytes", "tpmKeyPublic") }
        guard let priv = try? Base64.decode(req.tpmKeyPrivate, field: "tpmKeyPrivate"), !priv.isEmpty, priv.count <= 1024 else {
            throw invalid("the private blob is not base64 of 1 to 1024 bytes", "tpmKeyPrivate")
        }
        guard let area = try? TPMTPublic(tpm2bPublic: pub), KeyTemplates.isAgentKey(area) else {
            throw invalid("the public blob is not a TPM-bound agent key (ECC P-256, ECDSA-SHA256, an unrestricted signing key)", "tpmKeyPublic")
        }
        guard let digest = try? Hex.decode(req.digest), digest.count == 32 else { throw invalid("the digest is not 32 bytes of hex (SHA-256)", "digest") }
        let raw = try withTPM { tpm in
            let srk = try tpm.storageRootKey()
            let key: TPMObject
            // A format-one response code (bit 7) names a parameter: the blobs. Warnings (object
            // memory, retry) are the TPM's state and stay `tpm` errors.
            do { key = try tpm.load(parent: srk, private: priv, public: pub) } catch let e as VouchError
                where e.code == .tpm && (e.context["rc"].flatMap { UInt32($0.dropFirst(2), radix: 16) }.map { $0 & 0x80 != 0 } ?? false) {
                throw VouchError(.tpmKeyInvalid, "this TPM does not load the key blobs (wrapped by another TPM, or not one key's pair)",
                                 context: ["field": "tpmKeyPrivate", "rc": e.context["rc"] ?? ""])
            }
            return try tpm.sign(key: key, digest: digest)
        }
        guard case let .ecdsa(hash, r, s) = try TPMTSignature(bytes: raw).value, hash == .sha256 else {
            throw VouchError(.tpm, "the TPM answered a signature that is not ECDSA-SHA256")
        }
        return AgentSignResponse(signature: Base64.encode(try ecdsaSignatureDER(r: r, s: s)))
    }
}

extension ErrorCode {
    /// The attester's `POST /v1/sign`: the blobs are not a TPM-bound agent key's, or the digest not SHA-256's.
    public static let tpmKeyInvalid = ErrorCode("tpm_key_invalid", status: 400)
}
