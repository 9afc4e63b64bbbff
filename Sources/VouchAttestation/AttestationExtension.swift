import Foundation
import VouchCore

/// The non-critical X.509 extension that tells a relying party what Vouch verified before issuing
/// a certificate. OID 2.25.60286659441808924600910299526305292412 (from UUID
/// 2d5ac9cb-d71b-4696-96de-99b70c82207c, per ITU-T X.667). DER:
///
///     VouchAttestation ::= SEQUENCE {
///       version          INTEGER (1),
///       hostId           UTF8String,      -- 32 hex digits: SHA-256(EK public area)[0..16]
///       attestedAt       GeneralizedTime, -- when the broker decided
///       evidenceType     UTF8String,      -- "tpm2-quote"
///       evidenceDigest   OCTET STRING,    -- SHA-256 of the signed TPMS_ATTEST
///       pcrBank          UTF8String,      -- "sha256", ...
///       pcrDigest        OCTET STRING,    -- the quote's signed PCR digest
///       policyName       UTF8String,
///       policyVersion    INTEGER,
///       policyDigest     OCTET STRING,    -- SHA-256 of the policy file
///       modelManifests   SEQUENCE OF OCTET STRING,  -- SHA-256 manifest digests (empty: no model measured)
///       secureBoot       BOOLEAN OPTIONAL -- from the firmware event log, when one was verified
///     }
public struct AttestationExtension: Sendable, Equatable, Codable {
    public static let oid = "2.25.60286659441808924600910299526305292412"

    public var hostId: String
    public var attestedAt: Date
    public var evidenceType: String
    public var evidenceDigest: [UInt8]
    public var pcrBank: String
    public var pcrDigest: [UInt8]
    public var policyName: String
    public var policyVersion: Int
    public var policyDigest: [UInt8]
    public var modelManifests: [[UInt8]]
    public var secureBoot: Bool?

    public init(hostId: String, attestedAt: Date, evidenceType: String, evidenceDigest: [UInt8], pcrBank: String, pcrDigest: [UInt8],
                policyName: String, policyVersion: Int, policyDigest: [UInt8], modelManifests: [[UInt8]], secureBoot: Bool?) {
        self.hostId = hostId; self.attestedAt = attestedAt; self.evidenceType = evidenceType; self.evidenceDigest = evidenceDigest
        self.pcrBank = pcrBank; self.pcrDigest = pcrDigest; self.policyName = policyName; self.policyVersion = policyVersion
        self.policyDigest = policyDigest; self.modelManifests = modelManifests; self.secureBoot = secureBoot
    }

    public var der: [UInt8] {
        var items = [DER.integer(1), DER.utf8(hostId), DER.generalizedTime(attestedAt), DER.utf8(evidenceType), DER.octetString(evidenceDigest),
                     DER.utf8(pcrBank), DER.octetString(pcrDigest), DER.utf8(policyName), DER.integer(policyVersion),
                     DER.octetString(policyDigest), DER.sequence(modelManifests.map(DER.octetString))]
        if let secureBoot { items.append(DER.boolean(secureBoot)) }
        return DER.sequence(items)
    }

    /// Decodes the extension value; any deviation from the structure above is an `invalid_value` error.
    public init(der: [UInt8]) throws {
        guard der.count <= 64 * 1024 else { throw VouchError(.invalidValue, "attestation extension is too large") }
        var outer = DER.Reader(der)
        var r = try outer.sequence("VouchAttestation")
        guard outer.isAtEnd else { throw VouchError(.trailingBytes, "bytes follow the attestation extension") }
        let version = try r.integer("version")
        guard version == 1 else { throw VouchError(.unsupported, "attestation extension version \(version) is not supported") }
        hostId = try r.utf8("hostId")
        attestedAt = try r.generalizedTime("attestedAt")
        evidenceType = try r.utf8("evidenceType")
        evidenceDigest = try r.octetString("evidenceDigest")
        pcrBank = try r.utf8("pcrBank")
        pcrDigest = try r.octetString("pcrDigest")
        policyName = try r.utf8("policyName")
        policyVersion = try r.integer("policyVersion")
        policyDigest = try r.octetString("policyDigest")
        var models = try r.sequence("modelManifests")
        var list: [[UInt8]] = []
        while !models.isAtEnd { list.append(try models.octetString("modelManifests[\(list.count)]")) }
        modelManifests = list
        secureBoot = r.isAtEnd ? nil : try r.boolean("secureBoot")
        guard r.isAtEnd else { throw VouchError(.trailingBytes, "unknown fields in the attestation extension") }
    }
}
