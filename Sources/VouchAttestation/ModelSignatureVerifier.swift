import Foundation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModelSigning
import VouchPolicy
import VouchTPMWire

/// An OpenSSF model signature (a Sigstore bundle written by `model-signing`) whose signer is a
/// trusted publisher and whose manifest was read from the verified payload.
public struct VerifiedModelSignature: Sendable {
    public let manifest: ModelManifest
    /// The trusted publisher that signed it (the first one in the policy's order that verifies).
    public let publisher: ModelPublisher
    /// How the signer was recognised (`ModelSignatureClaims.signer`).
    public let signer: String
    public let bundleSHA256: String
    /// For a keyless signature, the transparency log's verified integration time.
    public let signedAt: Date?

    public func claims(directory: String) -> ModelSignatureClaims {
        ModelSignatureClaims(directory: directory, model: manifest.modelName, publisher: publisher.name, signerKind: publisher.trust.kind,
                             signer: signer, subjectDigest: manifest.rootDigest, bundleSHA256: bundleSHA256,
                             signedAt: signedAt?.iso8601)
    }
}

public enum ModelSignatureVerification: Sendable {
    case verified(VerifiedModelSignature)
    case rejected([PolicyViolation])

    public var violations: [PolicyViolation] {
        if case let .rejected(v) = self { return v }
        return []
    }
}

/// Verifies OpenSSF model signatures. Checks, in order (the first stage that fails refuses, a
/// file comparison reporting every difference):
/// 1. the bundle parses: a Sigstore bundle (v0.1–v0.3) with a DSSE envelope of in-toto JSON and
///    one signature (`model_signature_malformed`, `SigstoreBundle`);
/// 2. a trusted publisher signed it — only publishers of the bundle's kind (key, certificate
///    chain, Fulcio certificate) are tried, in the order given (none: `model_signer_untrusted`):
///    - key: the bundle's key hint, when present, is the SHA-256 of the publisher key's PEM
///      (else `model_signer_untrusted`); the DSSE signature (PAE, ECDSA with the curve's hash)
///      verifies under the key (else `model_signature_invalid`);
///    - certificate: the signing certificate chains to the publisher's roots through the bundle's
///      intermediates at its own notBefore (model-signing's rule: the signature carries no trusted
///      time), is not a CA, has keyUsage digitalSignature or extendedKeyUsage codeSigning — and, when
///      it has an extendedKeyUsage, codeSigning among it (a TLS server certificate from the same CA
///      cannot sign models) —, and, when the publisher names an identity, carries it as an email,
///      URI or DNS subjectAltName (else `model_signer_untrusted`); the DSSE signature verifies
///      under its key (else `model_signature_invalid`);
///    - sigstore: `SigstoreKeylessVerifier` (Fulcio chain, SCT, Rekor entry and proof, identity and
///      issuer, the DSSE signature), its untrusted-signer refusals `model_signer_untrusted`, the rest
///      `model_signature_invalid`;
/// 3. once a publisher's signature verifies, the payload is a model-signing v1.0 manifest
///    (`model_manifest_invalid`, `ModelManifest`);
/// 4. the signed model name is one that publisher is trusted for — if not, the next publisher is
///    tried (`model_name_mismatch` when none is) —, and `expectedName` when given
///    (`model_name_mismatch`). The first publisher passing 2 and 4 is the one named. When none
///    does, the most telling refusal is reported: a name mismatch of a publisher whose signature
///    verified, else an invalid signature, else an untrusted signer;
/// 5. with `files`, the manifest lists exactly those files with those digests
///    (`model_file_modified`, `model_file_missing`, `model_file_extra`, `model_file_renamed`;
///    `ModelFileCheck`).
public enum ModelSignatureVerifier {
    public static func verify(bundle raw: [UInt8], publishers: [ModelPublisher], expectedName: String? = nil,
                              files: [ModelFileCheck.Measured]?, path: String = "model.signature") -> ModelSignatureVerification {
        func reject(_ code: ErrorCode, _ p: String, _ expected: String, _ actual: String) -> ModelSignatureVerification {
            .rejected([PolicyViolation(code: code, path: p, expected: expected, actual: actual)])
        }
        // 1
        let bundle: SigstoreBundle
        do { bundle = try SigstoreBundle(json: raw) } catch let e as VouchError {
            return reject(e.code, path, "a Sigstore bundle with a DSSE envelope (\(e.context["field"] ?? "bundle"))", e.message)
        } catch { return reject(.modelSignatureMalformed, path, "a Sigstore bundle", "unreadable") }
        // 2, 3, 4
        let candidates = publishers.filter { $0.trust.kind == kind(of: bundle) }
        var refusal: PolicyViolation? = nil
        func note(_ v: PolicyViolation) {
            func rank(_ c: ErrorCode?) -> Int { c == .modelNameMismatch ? 3 : c == .modelSignatureInvalid ? 2 : c == nil ? 0 : 1 }
            if rank(v.code) > rank(refusal?.code) { refusal = v }
        }
        var parsed: ModelManifest? = nil
        var found: (ModelPublisher, String, Date?)? = nil
        for publisher in candidates {
            switch signer(of: bundle, trustedAs: publisher.trust) {
            case let .failure(v):
                note(PolicyViolation(code: v.code, path: "\(path).signer", expected: "signed by \(publisher.name) (\(publisher.trust.kind))", actual: v.message))
            case let .success((signer, at)):
                // 3
                if parsed == nil {
                    do { parsed = try ModelManifest(statement: bundle.envelope.payload, sha256: { Crypto.sha256($0) }) } catch let e as VouchError {
                        return reject(e.code, "\(path).\(e.context["field"] ?? "statement")", "a model-signing v1.0 manifest", e.message)
                    } catch { return reject(.modelManifestInvalid, "\(path).statement", "a model-signing v1.0 manifest", "unreadable") }
                }
                // 4
                if let m = parsed, !publisher.signs(model: m.modelName) {
                    note(PolicyViolation(code: .modelNameMismatch, path: "\(path).model",
                                         expected: "a model \(publisher.name) is trusted for: [\(publisher.models.joined(separator: ", "))]", actual: m.modelName))
                } else {
                    found = (publisher, signer, at)
                }
            }
            if found != nil { break }
        }
        guard let (publisher, signer, signedAt) = found, let manifest = parsed else {
            return .rejected([refusal ?? PolicyViolation(code: .modelSignerUntrusted, path: "\(path).signer", expected: "a trusted publisher",
                                                         actual: "no publisher is trusted for \(kind(of: bundle)) signatures")])
        }
        if let expectedName, !manifest.modelName.utf8.elementsEqual(expectedName.utf8) {
            return reject(.modelNameMismatch, "\(path).model", expectedName, manifest.modelName)
        }
        // 5
        if let files {
            let violations = fileViolations(manifest, files, path: path)
            if !violations.isEmpty { return .rejected(violations) }
        }
        return .verified(VerifiedModelSignature(manifest: manifest, publisher: publisher, signer: signer,
                                                bundleSHA256: Hex.encode(Crypto.sha256(bundle.raw)), signedAt: signedAt))
    }

    /// Step 5 on its own, for a manifest already verified (`vouch model verify` verifies the
    /// signature before hashing the directory): every difference between the manifest and
    /// `files`, as violations under `path`.
    public static func fileViolations(_ manifest: ModelManifest, _ files: [ModelFileCheck.Measured], path: String = "model.signature") -> [PolicyViolation] {
        ModelFileCheck.compare(manifest, files).map { m in
            switch m {
            case let .modified(name, signed, measured):
                PolicyViolation(code: m.code, path: "\(path).files.\(name)", expected: "sha256 \(signed)", actual: "sha256 \(measured)")
            case let .missing(name):
                PolicyViolation(code: m.code, path: "\(path).files.\(name)", expected: "the signed file", actual: "absent")
            case let .extra(name):
                PolicyViolation(code: m.code, path: "\(path).files.\(name)", expected: "only signed files", actual: "a file the manifest does not list")
            case let .renamed(from, to):
                PolicyViolation(code: m.code, path: "\(path).files.\(to)", expected: "the signed name \(from)", actual: "the signed file's bytes under \(to)")
            }
        }
    }

    static func kind(of bundle: SigstoreBundle) -> String {
        switch bundle.material {
        case .publicKey: "key"
        case .certificateChain: "certificate"
        case .certificate: "sigstore"
        }
    }

    struct Refusal: Error { let code: ErrorCode; let message: String }

    /// Step 2 for one publisher: who signed, and when (keyless only), or why not this publisher.
    static func signer(of bundle: SigstoreBundle, trustedAs trust: ModelPublisher.Trust) -> Result<(String, Date?), Refusal> {
        let pae = bundle.envelope.pae
        switch (bundle.material, trust) {
        case let (.publicKey(hint), .key(spki)):
            guard let key = try? PublicKey(spkiDER: spki) else { return .failure(Refusal(code: .modelSignerUntrusted, message: "the publisher's key does not parse")) }
            guard let pem = try? key.pem, let der = try? key.spkiDER else { return .failure(Refusal(code: .modelSignerUntrusted, message: "the publisher's key does not encode")) }
            let pemDigest = Hex.encode(Crypto.sha256(Array(pem.utf8)))
            guard hint.isEmpty || hint == pemDigest else {
                return .failure(Refusal(code: .modelSignerUntrusted, message: "signed by another key (hint \(hint.prefix(64)))"))
            }
            guard let hash = ecdsaHash(key), key.verify(message: pae, signature: bundle.signature, scheme: .ecdsa, hash: hash) else {
                return .failure(Refusal(code: .modelSignatureInvalid, message: "the signature does not verify under the publisher's key"))
            }
            return .success(("sha256:" + Hex.encode(Crypto.sha256(der)), nil))
        case let (.certificateChain(ders), .certificate(rootDERs, identity)):
            let leaf: Certificate, intermediates: [Certificate], roots: [Certificate]
            do {
                leaf = try Certificate(der: ders[0])
                intermediates = try ders.dropFirst().map { try Certificate(der: $0) }
                roots = try rootDERs.map { try Certificate(der: $0) }
            } catch { return .failure(Refusal(code: .modelSignerUntrusted, message: "a certificate does not parse")) }
            if let error = leaf.verify(anchors: roots, intermediates: intermediates, at: leaf.notBefore) {
                return .failure(Refusal(code: .modelSignerUntrusted, message: "the signing certificate does not chain to the publisher's roots: \(error.message)"))
            }
            // model-signing's rule (keyUsage digitalSignature or codeSigning), and stricter: a
            // certificate with an extendedKeyUsage must list codeSigning in it.
            let hasEKU = leaf.extensionValue(oid: "2.5.29.37") != nil
            let usable = !leaf.isCA && ((leaf.extensionValue(oid: "2.5.29.15") != nil && leaf.mayDigitallySign) || leaf.hasCodeSigningEKU)
                && (!hasEKU || leaf.hasCodeSigningEKU)
            guard usable else {
                return .failure(Refusal(code: .modelSignerUntrusted, message: "the signing certificate is not for signing (no digitalSignature key usage nor codeSigning)"))
            }
            let names = leaf.emailSANs + leaf.uriSANs + leaf.dnsSANs
            if let identity, !names.contains(where: { $0.utf8.elementsEqual(identity.utf8) }) {
                return .failure(Refusal(code: .modelSignerUntrusted, message: "the signing certificate names [\(printable(names))], not \(identity)"))
            }
            guard let key = try? leaf.publicKey, let hash = ecdsaHash(key), key.verify(message: pae, signature: bundle.signature, scheme: .ecdsa, hash: hash) else {
                return .failure(Refusal(code: .modelSignatureInvalid, message: "the signature does not verify under the signing certificate's key"))
            }
            return .success((printable([leaf.subject]) + (names.isEmpty ? "" : " (\(printable(names)))"), nil))
        case let (.certificate, .sigstore(trustedRoot, identity, issuer)):
            switch SigstoreKeylessVerifier.verify(bundle: bundle, trustedRoot: trustedRoot, identity: identity, issuer: issuer) {
            case let .verified(claims):
                return .success(("\(identity) (issuer \(issuer))", claims.integratedTime))
            case let .rejected(code, message):
                return .failure(Refusal(code: code, message: message))
            }
        default:
            return .failure(Refusal(code: .modelSignerUntrusted, message: "a \(kind(of: bundle)) signature, the publisher signs with a \(trust.kind)"))
        }
    }

    /// Names a signer's certificate carries, for messages and claims that verdicts, EARs and `vouch`
    /// print: joined with ", ", each control character (C0, DEL, C1) written as `\u{XX}`, at most
    /// 1,024 characters.
    public static func printable(_ names: [String]) -> String {
        let joined = names.joined(separator: ", ")
        var out = ""
        for scalar in joined.unicodeScalars {
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                out += "\\u{" + String(scalar.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
            if out.count >= 1024 { return String(out.prefix(1024)) + "…" }
        }
        return out
    }

    /// model-signing's hash for an EC key: SHA-256 for P-256, SHA-384 for P-384, SHA-512 for P-521.
    static func ecdsaHash(_ key: PublicKey) -> HashAlg? {
        guard key.isEC else { return nil }
        switch key.bits {
        case 256: return .sha256
        case 384: return .sha384
        case 521: return .sha512
        default: return nil
        }
    }
}
