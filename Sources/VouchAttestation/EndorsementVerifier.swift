import Foundation
import VouchCore
import VouchCrypto
import VouchTPMWire

/// A TPM whose endorsement key is certified by a trusted manufacturer CA.
/// Only `EndorsementVerifier` creates one.
public struct VerifiedEndorsement: Sendable {
    public let ekPublic: TPMTPublic
    public let ekCertificateSubject: String
    public let ekCertificateIssuer: String
    /// The TCG EK template the public area matches.
    public let ekTemplate: EKTemplate
    /// The TPM manufacturer, model and version the certificate names.
    public let tpm: EKCertificateProfile.TPMAttributes
    /// Stable host identity, from the certified key: `EKIdentity.hostID(ekKey:)` (the first 16
    /// bytes of SHA-256 over the canonical DER SubjectPublicKeyInfo, 32 lowercase hex digits).
    public let hostID: String
}

/// TPM manufacturer trust anchors: every PEM certificate under a directory. Self-signed
/// certificates are anchors; the others are intermediates offered for path building.
public struct EKTrustStore: Sendable {
    public let anchors: [Certificate]
    public let intermediates: [Certificate]

    public init(anchors: [Certificate], intermediates: [Certificate]) {
        self.anchors = anchors
        self.intermediates = intermediates
    }

    public init(directory: URL) throws {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory.path) else {
            throw VouchError(.config, "EK trust directory cannot be read", context: ["path": directory.path])
        }
        var anchors: [Certificate] = []
        var intermediates: [Certificate] = []
        for name in names.sorted() where name.hasSuffix(".pem") || name.hasSuffix(".crt") {
            let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            for cert in try Certificate.chain(pem: text) {
                if cert.subject == cert.issuer { anchors.append(cert) } else { intermediates.append(cert) }
            }
        }
        guard !anchors.isEmpty else {
            throw VouchError(.config, "EK trust directory holds no self-signed root certificate", context: ["path": directory.path])
        }
        self.init(anchors: anchors, intermediates: intermediates)
    }
}

extension TPMTPublic {
    var eccCurve: ECCCurve? {
        if case let .ecc(curve, _, _) = key { return curve }
        return nil
    }
}

public enum EndorsementVerifier {
    /// Checks, in order:
    /// 1. the EK certificate parses as DER X.509;
    /// 2. it chains to an anchor of `trust` at `now` (through the store's intermediates);
    /// 3. it follows the TCG EK certificate profile (`EKCertificateProfile`);
    /// 4. the EK public area parses and is a restricted decryption key fixed to its TPM;
    /// 5. every field but the key matches a TCG EK template (`EKTemplate`);
    /// 6. the certificate's public key is exactly the EK public key.
    /// The host id derives from the certified key, never from the public area's encoding.
    public static func verify(ekCertificateDER: [UInt8], ekPublic ekPublicBytes: [UInt8], trust: EKTrustStore, now: Date) -> Result<VerifiedEndorsement, VouchError> {
        guard let cert = try? Certificate(der: ekCertificateDER) else {
            return .failure(VouchError(.ekCertificateInvalid, "EK certificate is not DER X.509"))
        }
        if let err = cert.verify(anchors: trust.anchors, intermediates: trust.intermediates, at: now) {
            return .failure(VouchError(.ekUntrusted, "EK certificate does not chain to a trusted TPM manufacturer: \(err.message)", context: err.context))
        }
        let tpm: EKCertificateProfile.TPMAttributes
        switch EKCertificateProfile.check(cert) {
        case let .success(attrs): tpm = attrs
        case let .failure(error): return .failure(error)
        }
        let ek: TPMTPublic
        do { ek = try TPMTPublic(tpm2bPublic: ekPublicBytes) } catch let e as VouchError {
            return .failure(VouchError(.ekMismatch, "EK public area is malformed: \(e.message)", context: e.context))
        } catch {
            return .failure(VouchError(.ekMismatch, "EK public area is malformed"))
        }
        let required: ObjectAttributes = [.fixedTPM, .fixedParent, .restricted, .decrypt]
        guard ek.attributes.isSuperset(of: required), !ek.attributes.contains(.sign) else {
            return .failure(VouchError(.ekMismatch, "EK public area lacks endorsement-key attributes",
                                       context: ["expected": "fixedTPM|fixedParent|restricted|decrypt, not sign", "got": String(ek.attributes.rawValue, radix: 16)]))
        }
        guard let template = EKTemplate.matching(ek) else {
            // Report the difference from the template of the same key type and range closest to it.
            let candidates = EKTemplate.allCases.filter { ($0.kind == .rsa) == (ek.type == .rsa) && $0.curve == ek.eccCurve }
            let closest = candidates.first { $0.isHighRange == ek.attributes.contains(.userWithAuth) } ?? candidates.first
            var context = ["field": "ekPublic"]
            if let closest, let diff = closest.mismatch(ek) {
                context = ["field": "ekPublic.\(diff.field)", "expected": diff.expected, "got": diff.got, "template": closest.rawValue]
            }
            return .failure(VouchError(.ekTemplateMismatch, "EK public area does not match a TCG EK Credential Profile template", context: context))
        }
        guard let certKey = try? cert.publicKey, let ekKey = try? PublicKey(tpmPublic: ek), certKey.isEqual(to: ekKey) else {
            return .failure(VouchError(.ekMismatch, "EK certificate certifies a different key than the TPM's EK"))
        }
        guard let hostID = try? EKIdentity.hostID(ekKey: certKey) else {
            return .failure(VouchError(.ekCertificateInvalid, "EK certificate's key cannot be encoded"))
        }
        return .success(VerifiedEndorsement(ekPublic: ek, ekCertificateSubject: cert.subject, ekCertificateIssuer: cert.issuer,
                                            ekTemplate: template, tpm: tpm, hostID: hostID))
    }

    /// Checks that an AK public area is a restricted signing key that cannot leave its TPM,
    /// with a key type in `allowed`. Returns the AK's TPM name.
    public static func checkAttestationKey(_ akPublicBytes: [UInt8], allowed: [KeyTemplates.AKKind],
                                           allowSHA1: Bool = false) -> Result<(TPMTPublic, KeyTemplates.AKKind), VouchError> {
        let ak: TPMTPublic
        do { ak = try TPMTPublic(tpm2bPublic: akPublicBytes) } catch let e as VouchError {
            return .failure(VouchError(.akRejected, "AK public area is malformed: \(e.message)", context: e.context))
        } catch {
            return .failure(VouchError(.akRejected, "AK public area is malformed"))
        }
        let required: ObjectAttributes = [.fixedTPM, .fixedParent, .sensitiveDataOrigin, .restricted, .sign]
        guard ak.attributes.isSuperset(of: required), !ak.attributes.contains(.decrypt) else {
            return .failure(VouchError(.akRejected, "AK must be a restricted signing key created in and fixed to the TPM",
                                       context: ["expected": "fixedTPM|fixedParent|sensitiveDataOrigin|restricted|sign, not decrypt", "got": String(ak.attributes.rawValue, radix: 16)]))
        }
        let kind: KeyTemplates.AKKind
        switch ak.key {
        case let .ecc(curve, _, _) where curve == .nistP256: kind = .eccP256
        case let .rsa(_, _, bits) where bits == 2048: kind = .rsa2048
        default:
            return .failure(VouchError(.akRejected, "AK key type is not supported", context: ["got": "\(ak.type)"]))
        }
        guard allowed.contains(kind) else {
            return .failure(VouchError(.akRejected, "AK algorithm is not allowed by policy", context: ["got": kind.rawValue, "expected": allowed.map(\.rawValue).joined(separator: ",")]))
        }
        // The AK's scheme and hash decide how its quotes are verified: it must name one, and SHA-1
        // only where the policy allows it.
        do {
            if let refusal = try AttestationKey(tpmPublic: ak).refusal(allowSHA1: allowSHA1) { throw refusal }
        } catch let e as VouchError {
            return .failure(VouchError(.akRejected, e.message, context: e.context))
        } catch { return .failure(VouchError(.akRejected, "AK cannot be used for verification")) }
        return .success((ak, kind))
    }
}
