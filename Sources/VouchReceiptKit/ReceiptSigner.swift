import Foundation
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchReceipts
import VouchTLog
import VouchTPMWire

/// Signs receipts for one agent: built once from the agent's certificate chain, its key and the
/// issuance log proof, then `sign(...)` per output (the inference proxy calls it per response;
/// concurrent calls are safe). Each receipt is a DSSE envelope of an in-toto Statement whose
/// predicate names the model, agent and attestation as the certificate's EAR attests them —
/// nothing the caller says but the output, request and times.
public final class ReceiptSigner: Sendable {
    let key: ReceiptSigningKey
    let leafKey: PublicKey
    let hash: HashAlg
    let keyID: String
    let chainPEM: String
    let ear: String
    let claims: AgentReceiptClaims
    let issuance: UnverifiedReceiptBundle.LoggedEntry?
    let random: @Sendable (Int) throws -> [UInt8]

    /// `chainPEM`: the agent certificate, then its issuing chain; `keyPEM`: its private key
    /// (PEM; P-256, P-384 or RSA, as Vouch issues agent certificates for); `issuance`: the
    /// certificate's issuance entry and proof (`GET /v1/log/proof?certificate=`), which must be
    /// that certificate's (nil: receipts without it, which verifiers refuse until it is added).
    public convenience init(chainPEM: String, keyPEM: String, issuance: UnverifiedReceiptBundle.LoggedEntry?,
                            random: @escaping @Sendable (Int) throws -> [UInt8] = { try Crypto.randomBytes($0) }) throws {
        try self.init(chainPEM: chainPEM, key: .software(try PrivateKey(pem: keyPEM)), issuance: issuance, random: random)
    }

    /// As `init(chainPEM:keyPEM:issuance:)` with the key given as a `ReceiptSigningKey` (a
    /// TPM-bound key through the attester's socket: `ReceiptSigningKey.attesterSocket`).
    public init(chainPEM: String, key: ReceiptSigningKey, issuance: UnverifiedReceiptBundle.LoggedEntry?,
                random: @escaping @Sendable (Int) throws -> [UInt8] = { try Crypto.randomBytes($0) }) throws {
        let chain = try Certificate.chain(pem: chainPEM)
        guard let leaf = chain.first else { throw VouchError(.invalidValue, "the chain holds no certificate", context: ["field": "chain"]) }
        guard try key.publicKey.isEqual(to: leaf.publicKey) else {
            throw VouchError(.invalidValue, "the key is not the agent certificate's", context: ["field": "key"])
        }
        guard let ext = leaf.extensionValue(oid: AttestationExtension.oid) else {
            throw VouchError(.attestationMissing, "the certificate carries no attestation extension (not an agent certificate)", context: ["field": "extensions"])
        }
        let ear = try AttestationExtension.ear(extensionValue: ext)
        let claims = try AttestationExtension(extensionValue: ext)
        var logged: (entry: LogEntry, index: UInt64)?
        if let issuance {
            let entry = try LogEntry(bytes: issuance.entry)
            guard entry.kind == .issuance, entry["certificate"] == (try AgentReceiptClaims.certificateDigest(leaf)) else {
                throw VouchError(.invalidValue, "the issuance entry is not this certificate's", context: ["field": "issuance"])
            }
            logged = (entry, issuance.proof.index)
        }
        self.key = key
        self.leafKey = try leaf.publicKey
        self.hash = AgentReceiptClaims.hash(for: key.publicKey)
        self.keyID = try AgentReceiptClaims.keyID(key.publicKey)
        self.chainPEM = try chain.map { try $0.pem }.joined()
        self.ear = ear
        self.claims = try AgentReceiptClaims(leaf: leaf, claims: claims, ear: ear, issuance: logged)
        self.issuance = issuance
        self.random = random
    }

    /// A receipt for `output`: the bundle's JSON bytes, and the salt of the request commitment
    /// (32 bytes for the requester, who opens the commitment with it; empty without `request`).
    /// Times are kept to the second.
    public func sign(output: [UInt8], request: [UInt8]?, startedAt: Date, finishedAt: Date) throws -> (bundle: [UInt8], salt: [UInt8]) {
        try sign(output: output, request: request, route: nil, startedAt: startedAt, finishedAt: finishedAt)
    }

    /// As `sign(output:request:startedAt:finishedAt:)`, naming the endpoint answered (`route`,
    /// "METHOD /path", with the request; `ReceiptPredicate.Request.isRoute`).
    public func sign(output: [UInt8], request: [UInt8]?, route: String?, startedAt: Date, finishedAt: Date) throws -> (bundle: [UInt8], salt: [UInt8]) {
        guard route.map(ReceiptPredicate.Request.isRoute) ?? true, route == nil || request != nil else {
            throw VouchError(.invalidValue, "the route is not \"METHOD /path\", or it comes without the request", context: ["field": "route"])
        }
        guard startedAt <= finishedAt else { throw VouchError(.invalidValue, "the receipt finishes before it starts", context: ["field": "finishedAt"]) }
        var salt: [UInt8] = []
        var commitment: ReceiptPredicate.Request?
        if let request {
            salt = try random(RequestCommitment.saltBytes)
            guard salt.count == RequestCommitment.saltBytes else { throw VouchError(.internalError, "the random source gave a short salt") }
            commitment = .init(commitment: ReceiptFormat.digest(Crypto.sha256(RequestCommitment.message(salt: salt, request: request))), route: route)
        }
        let predicate = ReceiptPredicate(model: claims.model, agent: claims.agent, attestation: claims.attestation, request: commitment,
                                         startedAt: startedAt, finishedAt: finishedAt)
        let payload = ReceiptStatement(outputSHA256: Crypto.sha256(output), predicate: predicate).json
        let pae = DSSEEnvelope.pae(type: DSSEEnvelope.inTotoPayloadType, payload: payload)
        let signature = try key.signMessage(pae, hash)
        // A key held elsewhere (the TPM, through the attester) answers bytes this process did not
        // make: they must verify under the certificate's key before a receipt carries them.
        if key.heldElsewhere, !leafKey.verify(message: pae, signature: signature, scheme: leafKey.isEC ? .ecdsa : .rsassa, hash: hash) {
            throw VouchError(.signatureInvalid, "the signature the key's holder answered does not verify under the agent certificate's key", context: ["field": "signature"])
        }
        let envelope = DSSEEnvelope(payloadType: DSSEEnvelope.inTotoPayloadType, payload: payload, signatures: [.init(keyid: keyID, sig: signature)])
        let bundle = UnverifiedReceiptBundle(envelope: envelope, chainPEM: chainPEM, ear: ear, issuance: issuance, receipt: nil)
        return (bundle.json, salt)
    }
}
