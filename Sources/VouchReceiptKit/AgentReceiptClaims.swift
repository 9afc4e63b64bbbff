import Foundation
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchReceipts
import VouchTLog
import VouchTPMWire

/// What a receipt's predicate says about its signer, derived from the agent certificate, the EAR
/// it carries and the issuance log entry — the one derivation the signer writes and the verifier
/// recomputes and compares.
struct AgentReceiptClaims {
    let model: ReceiptPredicate.Model
    let agent: ReceiptPredicate.Agent
    let attestation: ReceiptPredicate.Attestation

    /// `claims`: the EAR's (read by the signer from its own certificate, verified by the verifier);
    /// `ear`: the compact JWS; `issuance`: the issuance entry and its log index, when known.
    init(leaf: Certificate, claims: AttestationExtension, ear: String, issuance: (entry: LogEntry, index: UInt64)?) throws {
        model = .init(manifests: claims.modelManifests.map(ReceiptFormat.digest))
        agent = .init(spiffeId: leaf.uriSANs.first ?? "", certificate: try Self.certificateDigest(leaf), serial: leaf.serialHex)
        var evidence = [ReceiptPredicate.Evidence(device: "platform", type: claims.evidenceType, digest: ReceiptFormat.digest(claims.evidenceDigest))]
        for d in claims.devices ?? [] {
            evidence.append(.init(device: d.device, type: d.kind, digest: "sha256:" + d.sha256.lowercased()))
        }
        attestation = .init(record: issuance?.entry["attestation"], ear: ReceiptFormat.digest(Crypto.sha256(Array(ear.utf8))),
                            issuanceIndex: issuance.map { String($0.index) }, evidence: evidence,
                            policy: ReceiptFormat.digest(claims.policyDigest), appraisedAt: claims.attestedAt.iso8601)
    }

    /// The issuance entry's fields that must agree with the certificate and its EAR, as
    /// (name, expected value) pairs (`attestation`, the record id, is taken from the entry).
    var issuanceFields: [(String, String)] {
        [("spiffe", agent.spiffeId), ("serial", agent.serial), ("certificate", agent.certificate),
         ("ear-digest", attestation.ear), ("policy-digest", attestation.policy)]
    }

    /// The hash a signature by `key` uses: SHA-384 for P-384, SHA-256 otherwise (P-256, RSA).
    static func hash(for key: PublicKey) -> HashAlg { key.isEC && key.bits == 384 ? .sha384 : .sha256 }

    /// The DSSE key id Vouch writes: SHA-256 of the signer's SubjectPublicKeyInfo (a hint only).
    static func keyID(_ key: PublicKey) throws -> String { ReceiptFormat.digest(Crypto.sha256(try key.spkiDER)) }

    /// `sha256:` and the hex SHA-256 of a certificate's DER, as log entries name certificates.
    static func certificateDigest(_ cert: Certificate) throws -> String { ReceiptFormat.digest(Crypto.sha256(try cert.der)) }
}
