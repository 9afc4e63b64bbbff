import Foundation
import Synchronization
import VouchCore
import VouchCrypto
import VouchModelSigning
import VouchTPMWire

/// Sigstore keyless verification of a model signature, offline, against a trusted root
/// (`trusted_root.json`): the bundle's Fulcio certificate names the signer's OIDC identity, and
/// its Rekor entry proves when it was logged — the only time the verifier trusts, since the
/// certificate is valid for ten minutes.
///
/// Checks, in order; the first that fails refuses, with `model_signer_untrusted` when the
/// signer is not the one trusted (the trusted root, the chain to a Fulcio CA, the identity, the
/// issuer) and `model_signature_invalid` for everything cryptographic or temporal:
/// 1. the trusted root parses (`SigstoreTrustedRoot`) and the bundle carries one Fulcio
///    certificate that parses (untrusted when it names a key or a chain instead), naming the
///    expected identity and issuer (step 8's check, made first so that a bundle of anyone else
///    costs no log or chain work; what the certificate names counts only once step 6 chains it);
/// 2. the bundle has exactly one transparency-log entry, of kind `dsse` version `0.0.1`, from a
///    Rekor log of the trusted root: its log ID is the SHA-256 of one of the root's Rekor keys'
///    DER;
/// 3. the entry's signed entry timestamp (the inclusion promise) verifies under that key (ECDSA,
///    the curve's hash) over the canonical JSON of the body, integrated time, log ID and index;
///    only then is the integrated time trusted, and it must lie within the key's `validFor`. A
///    bundle without a SET (or without an integrated time) is refused: RFC 3161 timestamps are
///    not read;
/// 4. the inclusion proof verifies (RFC 6962 leaf hash of the canonicalized body, audit path,
///    tree size, root hash), and its checkpoint — a signed note whose signature line carries the
///    log ID's first 4 bytes — is signed by the same key and names that tree size and root;
/// 5. the canonicalized body binds this bundle: a `dsse` 0.0.1 entry whose SHA-256 payload hash
///    is the envelope payload's, one of whose signatures is the bundle's signature with, as its
///    verifier, the bundle's certificate (PEM, compared as DER);
/// 6. the certificate was valid at the integrated time (invalid otherwise), and chains at that
///    time to a certificate authority of the trusted root whose `validFor` covers it (the
///    root's last certificate the anchor, the others intermediates), is not a CA and has the
///    codeSigning extended key usage (untrusted otherwise);
/// 7. an embedded SCT verifies: a CT log of the trusted root (log ID = SHA-256 of its key)
///    valid at the SCT's time signed, with SHA-256 (ECDSA or RSA), the precertificate entry —
///    the issuing CA's key hash and the certificate's TBSCertificate without the SCT list;
/// 8. (made at step 1) `identity` is one of the certificate's email or URI subjectAltNames, and `issuer` is its
///    Fulcio OIDC issuer (extension 1.3.6.1.4.1.57264.1.8, a UTF8String; when absent, the
///    legacy 1.3.6.1.4.1.57264.1.1, raw bytes);
/// 9. the DSSE signature (PAE of the payload type and payload) verifies under the certificate's
///    key (ECDSA with the curve's hash).
/// Not checked: RFC 3161 timestamps, the entry's `envelopeHash` (Rekor hashed the envelope's
/// JSON as it was sent, which a bundle does not keep), revocation (Fulcio certificates live ten
/// minutes and have none).
public enum SigstoreKeylessVerifier {
    public struct Claims: Sendable {
        /// The Fulcio signing certificate.
        public let certificate: Certificate
        /// When Rekor logged the signature (from the verified signed entry timestamp).
        public let integratedTime: Date
        /// The entry's global index in the log.
        public let logIndex: UInt64
    }
    public enum Result: Sendable {
        case verified(Claims)
        case rejected(ErrorCode, String)
    }

    /// Fulcio's certificate extensions naming the OIDC issuer (RFC 5280 values; see the Fulcio
    /// OID registry): the DER UTF8String one, and the legacy raw-bytes one.
    static let issuerOID = "1.3.6.1.4.1.57264.1.8"
    static let legacyIssuerOID = "1.3.6.1.4.1.57264.1.1"

    struct Refusal: Error {
        let code: ErrorCode
        let message: String
        static func untrusted(_ m: String) -> Refusal { Refusal(code: .modelSignerUntrusted, message: m) }
        static func invalid(_ m: String) -> Refusal { Refusal(code: .modelSignatureInvalid, message: m) }
    }

    public static func verify(bundle: SigstoreBundle, trustedRoot: [UInt8], identity: String, issuer: String) -> Result {
        do {
            return .verified(try check(bundle: bundle, trustedRoot: trustedRoot, identity: identity, issuer: issuer))
        } catch let r as Refusal {
            return .rejected(r.code, r.message)
        } catch {
            return .rejected(.modelSignatureInvalid, "\(error)")
        }
    }

    /// Step 8: an email or URI subjectAltName is `identity` and the OIDC issuer extension is
    /// `issuer`, both compared as bytes (Unicode-equivalent spellings are other identities).
    static func checkIdentity(_ leaf: Certificate, identity: String, issuer: String) throws {
        let names = leaf.emailSANs + leaf.uriSANs
        guard names.contains(where: { $0.utf8.elementsEqual(identity.utf8) }) else {
            throw Refusal.untrusted("the certificate names [\(ModelSignatureVerifier.printable(names))], not \(identity)")
        }
        guard let certIssuer = oidcIssuer(leaf), certIssuer.utf8.elementsEqual(issuer.utf8) else {
            throw Refusal.untrusted("the certificate's OIDC issuer is \(oidcIssuer(leaf).map { ModelSignatureVerifier.printable([$0]) } ?? "absent"), not \(issuer)")
        }
    }

    static func check(bundle: SigstoreBundle, trustedRoot: [UInt8], identity: String, issuer: String) throws -> Claims {
        // 1
        let root: SigstoreTrustedRoot
        do { root = try TrustedRootCache.shared.root(trustedRoot) } catch let e as VouchError {
            throw Refusal.untrusted("the publisher's trusted root does not parse (\(e.context["field"] ?? "trustedRoot")): \(e.message)")
        }
        guard case let .certificate(leafDER) = bundle.material else { throw Refusal.untrusted("not a keyless signature: the bundle carries no Fulcio certificate") }
        guard let leaf = try? Certificate(der: leafDER) else { throw Refusal.invalid("the signing certificate does not parse") }
        try checkIdentity(leaf, identity: identity, issuer: issuer)
        // 2
        let entries: [SigstoreLogEntry]
        do { entries = try SigstoreLogEntry.entries(bundle: bundle.raw) } catch let e as VouchError {
            throw Refusal.invalid("the transparency-log entry does not parse (\(e.context["field"] ?? "tlogEntries")): \(e.message)")
        }
        guard entries.count == 1, let entry = entries.first else { throw Refusal.invalid("the bundle has \(entries.count) transparency-log entries, not one") }
        guard entry.kind == "dsse", entry.version == "0.0.1" else {
            throw Refusal.invalid("the log entry is a \(entry.kind.prefix(32)) \(entry.version.prefix(32)) entry, not dsse 0.0.1")
        }
        guard let log = root.rekorLog(id: entry.logID, sha256: { Crypto.sha256($0) }) else {
            throw Refusal.invalid("the entry is from a log the trusted root does not list (log ID \(Hex.encode(entry.logID)))")
        }
        guard let logKey = try? PublicKey(spkiDER: log.publicKey), let logHash = ModelSignatureVerifier.ecdsaHash(logKey) else {
            throw Refusal.invalid("the Rekor key of \(log.baseURL) is not an ECDSA key on a NIST curve")
        }
        // 3
        guard let set = entry.signedEntryTimestamp, let setPayload = entry.signedEntryTimestampPayload, let seconds = entry.integratedTime else {
            throw Refusal.invalid("the entry has no signed entry timestamp: its integrated time cannot be trusted")
        }
        guard logKey.verify(message: setPayload, signature: set, scheme: .ecdsa, hash: logHash) else {
            throw Refusal.invalid("the signed entry timestamp does not verify under the Rekor key of \(log.baseURL)")
        }
        let time = Date(timeIntervalSince1970: TimeInterval(seconds))
        guard log.validFor.contains(time) else { throw Refusal.invalid("the Rekor key of \(log.baseURL) was not valid at the integrated time \(time.iso8601)") }
        // 4
        try checkInclusion(entry, key: logKey, hash: logHash)
        // 5
        try checkBody(entry.canonicalizedBody, bundle: bundle, leafDER: leafDER)
        // 6
        guard leaf.notBefore <= time, time <= leaf.notAfter else {
            throw Refusal.invalid("the signing certificate (valid \(leaf.notBefore.iso8601) to \(leaf.notAfter.iso8601)) was not valid at the integrated time \(time.iso8601)")
        }
        let path = try fulcioPath(leaf, root: root, at: time)
        // 7
        try checkSCT(leaf, issuer: path[1], root: root)
        // 8: checked at step 1 (`checkIdentity`), on the certificate step 6 has now chained.
        // 9
        guard let key = try? leaf.publicKey, let hash = ModelSignatureVerifier.ecdsaHash(key),
              key.verify(message: bundle.envelope.pae, signature: bundle.signature, scheme: .ecdsa, hash: hash) else {
            throw Refusal.invalid("the DSSE signature does not verify under the signing certificate's key")
        }
        return Claims(certificate: leaf, integratedTime: time, logIndex: entry.logIndex)
    }

    /// Step 4: the inclusion proof, and the checkpoint that signs its tree.
    static func checkInclusion(_ entry: SigstoreLogEntry, key: PublicKey, hash: HashAlg) throws {
        guard let proof = entry.inclusionProof else { throw Refusal.invalid("the entry has no inclusion proof") }
        do { try entry.verifyInclusion(sha256: { Crypto.sha256($0) }) } catch let e as VouchError {
            throw Refusal.invalid("the inclusion proof does not verify: \(e.message)")
        }
        let checkpoint: RekorCheckpoint
        do { checkpoint = try RekorCheckpoint(envelope: proof.checkpoint) } catch let e as VouchError {
            throw Refusal.invalid("the checkpoint does not parse: \(e.message)")
        }
        guard checkpoint.size == proof.treeSize, checkpoint.rootHash == proof.rootHash else {
            throw Refusal.invalid("the checkpoint is for tree size \(checkpoint.size), not the proof's tree \(proof.treeSize) and root")
        }
        // The signer is known by name and key hash both (C2SP signed-note): the log's name is the
        // checkpoint origin's first word (Rekor's "rekor.sigstore.dev - <tree id>").
        let hint = Array(entry.logID.prefix(4))
        let origin = String(decoding: checkpoint.text.prefix { $0 != 0x0A }, as: UTF8.self)
        func named(_ name: String) -> Bool { origin == name || origin.hasPrefix(name + " - ") }
        guard let signature = checkpoint.signatures.first(where: { $0.keyHint == hint && named($0.name) }) else {
            throw Refusal.invalid("the checkpoint carries no signature by the entry's log")
        }
        guard key.verify(message: checkpoint.text, signature: signature.signature, scheme: .ecdsa, hash: hash) else {
            throw Refusal.invalid("the checkpoint's signature does not verify under the Rekor key")
        }
    }

    /// Step 5: the logged body names this envelope's payload, signature and certificate.
    static func checkBody(_ json: [UInt8], bundle: SigstoreBundle, leafDER: [UInt8]) throws {
        let body: RekorDSSEBody
        do { body = try RekorDSSEBody(json: json) } catch let e as VouchError {
            throw Refusal.invalid("the log entry's body does not parse (\(e.context["field"] ?? "body")): \(e.message)")
        }
        let payloadHash = Hex.encode(Crypto.sha256(bundle.envelope.payload))
        guard body.payloadHashAlgorithm == "sha256", body.payloadHash == payloadHash else {
            throw Refusal.invalid("the logged payload hash is not the envelope payload's SHA-256 (\(payloadHash))")
        }
        let bound = body.signatures.contains { s in
            guard s.signature == bundle.signature, let cert = try? Certificate(pem: s.verifierPEM) else { return false }
            return (try? cert.der) == leafDER
        }
        guard bound else { throw Refusal.invalid("the log entry does not record this signature by this certificate") }
    }

    /// Step 6: the certificate's path to a Fulcio CA of the root valid at `time`, the certificate
    /// first and the anchor last (so at least two certificates: Fulcio signs nothing self-signed).
    static func fulcioPath(_ leaf: Certificate, root: SigstoreTrustedRoot, at time: Date) throws -> [Certificate] {
        var anchors: [Certificate] = [], intermediates: [Certificate] = []
        for ca in root.certificateAuthorities where ca.validFor.contains(time) {
            guard let certs = try? ca.certificates.map({ try Certificate(der: $0) }), let last = certs.last else {
                throw Refusal.untrusted("a certificate of the trusted root's CA \(ca.uri) does not parse")
            }
            anchors.append(last)
            intermediates += certs.dropLast()
        }
        guard !anchors.isEmpty else { throw Refusal.untrusted("the trusted root has no Fulcio CA valid at \(time.iso8601)") }
        let path: [Certificate]
        switch leaf.verifiedPath(anchors: anchors, intermediates: intermediates, at: time) {
        case let .success(p): path = p
        case let .failure(e): throw Refusal.untrusted("the signing certificate does not chain to a Fulcio CA of the trusted root: \(e.message)")
        }
        guard path.count >= 2 else { throw Refusal.untrusted("the signing certificate is itself an anchor") }
        guard !leaf.isCA, leaf.hasCodeSigningEKU else { throw Refusal.untrusted("the signing certificate is not a codeSigning end-entity certificate") }
        return path
    }

    /// Step 7: one embedded SCT verifies under a CT log of the root.
    static func checkSCT(_ leaf: Certificate, issuer: Certificate, root: SigstoreTrustedRoot) throws {
        guard let value = leaf.extensionValue(oid: SignedCertificateTimestamp.extensionOID) else {
            throw Refusal.invalid("the signing certificate has no embedded SCT")
        }
        let scts: [SignedCertificateTimestamp]
        do { scts = try SignedCertificateTimestamp.list(extensionValue: value) } catch let e as VouchError {
            throw Refusal.invalid("the certificate's SCT list does not parse: \(e.message)")
        }
        guard let issuerKey = try? issuer.publicKey.spkiDER,
              let tbs = try? leaf.tbsCertificate(removingExtension: SignedCertificateTimestamp.extensionOID) else {
            throw Refusal.invalid("the precertificate the CT log signed cannot be rebuilt")
        }
        let issuerKeyHash = Crypto.sha256(issuerKey)
        for sct in scts {
            guard let log = root.ctLog(id: sct.logID, sha256: { Crypto.sha256($0) }),
                  log.validFor.contains(Date(timeIntervalSince1970: TimeInterval(sct.timestamp / 1000))),
                  sct.hashAlgorithm == SignedCertificateTimestamp.hashSHA256,
                  let key = try? PublicKey(spkiDER: log.publicKey) else { continue }
            let scheme: SignatureScheme
            switch sct.signatureAlgorithm {
            case SignedCertificateTimestamp.signatureECDSA: scheme = .ecdsa
            case SignedCertificateTimestamp.signatureRSA: scheme = .rsassa
            default: continue
            }
            if key.verify(message: sct.signedData(issuerKeyHash: issuerKeyHash, tbsCertificate: tbs), signature: sct.signature, scheme: scheme, hash: .sha256) {
                return
            }
        }
        throw Refusal.invalid("no embedded SCT verifies under a CT log key of the trusted root")
    }

    /// The Fulcio OIDC issuer of the certificate: extension 1.3.6.1.4.1.57264.1.8 (UTF8String),
    /// else the legacy 1.3.6.1.4.1.57264.1.1 (the bytes as they are).
    static func oidcIssuer(_ cert: Certificate) -> String? {
        if let der = cert.extensionValue(oid: issuerOID) {
            var r = DER.Reader(der)
            guard let s = try? r.utf8("issuer"), r.isAtEnd else { return nil }
            return s
        }
        return cert.extensionValue(oid: legacyIssuerOID).map { String(decoding: $0, as: UTF8.self) }
    }
}

/// Parsed trusted roots by the SHA-256 of their JSON: a policy's publishers hand the same bytes on
/// every re-attestation. At most 16 are kept (a policy set holds few); the oldest goes first.
final class TrustedRootCache: Sendable {
    static let shared = TrustedRootCache()
    private let entries = Mutex<[(digest: [UInt8], root: SigstoreTrustedRoot)]>([])

    func root(_ json: [UInt8]) throws -> SigstoreTrustedRoot {
        let digest = Crypto.sha256(json)
        if let hit = entries.withLock({ $0.first { $0.digest == digest }?.root }) { return hit }
        let root = try SigstoreTrustedRoot(json: json)
        entries.withLock {
            $0.append((digest, root))
            if $0.count > 16 { $0.removeFirst() }
        }
        return root
    }
}
