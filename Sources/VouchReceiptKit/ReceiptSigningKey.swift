import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchTPMWire

/// The key a `ReceiptSigner` signs with: a software private key, or one held elsewhere — a
/// TPM-bound agent key reached through the attester's socket (`attesterSocket`). A key held
/// elsewhere is trusted for nothing: the signer checks each of its signatures against the
/// certificate's key before a receipt leaves it.
public struct ReceiptSigningKey: Sendable {
    public let publicKey: PublicKey
    /// Signs `message` (the DSSE PAE) with `hash`: DER ECDSA, or PKCS #1 v1.5 for RSA.
    let signMessage: @Sendable (_ message: [UInt8], _ hash: HashAlg) throws -> [UInt8]
    let heldElsewhere: Bool

    /// A software key (the PEM `vouch enroll` wrote).
    public static func software(_ key: PrivateKey) throws -> ReceiptSigningKey {
        ReceiptSigningKey(publicKey: try key.publicKey, signMessage: { try key.sign($0, hash: $1) }, heldElsewhere: false)
    }

    /// A key held elsewhere that signs digests: `signDigest` gets the digest of the message under
    /// the hash named, and answers DER ECDSA (or PKCS #1 v1.5 for RSA).
    public init(publicKey: PublicKey, signDigest: @escaping @Sendable (_ digest: [UInt8], _ hash: HashAlg) throws -> [UInt8]) {
        self.init(publicKey: publicKey, signMessage: { message, hash in try signDigest(Crypto.digest(hash, message), hash) }, heldElsewhere: true)
    }

    init(publicKey: PublicKey, signMessage: @escaping @Sendable ([UInt8], HashAlg) throws -> [UInt8], heldElsewhere: Bool) {
        self.publicKey = publicKey
        self.signMessage = signMessage
        self.heldElsewhere = heldElsewhere
    }

    /// A TPM-bound agent key (`vouch enroll --tpm-key` wrote its blobs, NAME.tpm.pub and
    /// NAME.tpm.priv) that signs through `POST /v1/sign` on the host's attester socket, reached by
    /// `client`. The key never leaves the TPM; the attester loads the blobs per signature.
    public static func attesterSocket(_ client: APIClient, tpmPublic: [UInt8], tpmPrivate: [UInt8]) throws -> ReceiptSigningKey {
        let area = try TPMTPublic(tpm2bPublic: tpmPublic)
        guard KeyTemplates.isAgentKey(area) else {
            throw VouchError(.invalidValue, "not a TPM-bound agent key (vouch enroll --tpm-key makes ECC P-256 ECDSA-SHA256 keys)", context: ["field": "tpmKeyPublic"])
        }
        let publicKey = try PublicKey(tpmPublic: area)
        let pub = Base64.encode(tpmPublic), priv = Base64.encode(tpmPrivate)
        return ReceiptSigningKey(publicKey: publicKey) { digest, hash in
            guard hash == .sha256 else { throw VouchError(.unsupported, "a TPM-bound agent key signs SHA-256 digests only", context: ["got": hash.rawValue]) }
            let answer = try client.call("POST", "/v1/sign", body: AgentSignRequest(tpmKeyPublic: pub, tpmKeyPrivate: priv, digest: Hex.encode(digest)),
                                         as: AgentSignResponse.self)
            return try Base64.decode(answer.signature, field: "signature")
        }
    }
}
