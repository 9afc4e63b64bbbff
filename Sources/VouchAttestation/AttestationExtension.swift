import Foundation
import VouchCore
import VouchCrypto
import VouchEventLog

/// What Vouch verified before issuing an agent certificate, as the certificate carries it: the
/// broker's attestation result for that decision — an EAR (draft-ietf-rats-ear) in a JWT signed
/// ES256 by the broker's result signer (`x5c` up to the broker CA) — wrapped in a JSON CMW record
/// (RFC 9999) in the non-critical CMW extension `id-pe-cmw` (1.3.6.1.5.5.7.1.35):
///
///     ["application/eat+jwt; eat_profile=\"tag:github.com,2023:veraison/ear\"", base64url(JWT), 8]
///
/// The EAR's claims (besides `eat_profile`, `iat`, `exp`, `ear.verifier-id` and one submodule per
/// device with `ear.status`, `ear.trustworthiness-vector` and `ear.appraisal-policy-id`):
///
///     "vouch.host":     { "hostId": 32 hex digits: SHA-256(EK public area)[0..16] }
///     "vouch.evidence": { "device": "tpm", "type": "tpm2-quote",
///                         "sha256": SHA-256 of the signed TPMS_ATTEST (hex),
///                         "pcrBank": "sha256", ..., "pcrDigest": the quote's signed PCR digest (hex),
///                         "modelManifests": [SHA-256 manifest digests (hex)] (empty: no model measured),
///                         "models": (only when the broker verified a publisher's signature over the
///                           measured model) [{ "model": the signed model name, "publisher": as
///                           the policy names it, "signer": the key's `sha256:` SPKI digest, the
///                           certificate's subject and names, or the Sigstore identity and issuer,
///                           "subjectDigest": the signed SHA-256 over the files' digests (hex) }],
///                         "secureBoot": from the firmware event log, when one was verified }
///                       a CPU TEE's: { "device": "sev-snp" or "tdx", "type": "sev-snp-report" or
///                         "tdx-quote", "sha256": SHA-256 of the report or quote (hex),
///                         "modelManifests": [], "tee": its summary (`TEEClaims`: kind,
///                         measurement, tcb, tcbStatus, debug, signer, platform, …) } — no PCRs
///                       an Azure CVM's: { "device": "azure-snp-vtpm", "type": "azure-snp-vtpm",
///                         "sha256": SHA-256 of the HCL report, the vTPM quote's "pcrBank" and
///                         "pcrDigest", "modelManifests", "models", "secureBoot", and "tee" (kind
///                         "azure-snp-vtpm": the SEV-SNP report's summary) }
///     "vouch.devices":  (only when devices besides the platform were verified) one object per
///                       device in the order presented (`DeviceClaims`): { "device": "gpu0", "kind":
///                       "nvidia-gpu", "sha256": the digest the platform's evidence bound,
///                       "driverVersion", "vbiosVersion", "project", "projectSKU", "chipSKU",
///                       "fwid", "referenceValues": matched | mismatched | missing, "rims":
///                       [RIM tagIds], "simulated" }; each is also an EAR submodule
///     "vouch.policy":   { "name", "version", "sha256": SHA-256 of the policy file (hex) }
///     "vouch.subject":  { "spiffeId": the certificate's SPIFFE ID,
///                         "spkiSha256": SHA-256 of its SubjectPublicKeyInfo, DER, EC keys
///                                       with the named curve and the uncompressed point (hex) }
///     "vouch.kind":     "certificate-issuance"
///
/// `iat` is when the broker decided (`attestedAt`). `vouch.subject` binds the EAR to the
/// certificate it was issued in (a copy in another certificate does not verify with
/// `verified(certificate:...)`), and `vouch.kind` tells it apart from a host's current EAR
/// (`GET /v1/hosts/{id}/ear`, kind `host-status`, with the relying party's `eat_nonce`): an EAR
/// lifted out of a certificate says what was true at issuance, never what is true now.
public struct AttestationExtension: Sendable, Equatable, Codable {
    /// id-pe-cmw (RFC 9999 section 6).
    public static let oid = CMWRecord.extensionOID
    /// The EAT profile of draft-ietf-rats-ear.
    public static let earProfile = "tag:github.com,2023:veraison/ear"
    /// The record's type: the EAT media type (RFC 9782) of a JWT EAR.
    public static let earMediaType = "application/eat+jwt; eat_profile=\"\(earProfile)\""

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
    /// The publishers' signatures verified over the measured model (`vouch.evidence.models`);
    /// nil when none was (and in certificates issued before signatures were verified).
    public var models: [SignedModel]?
    public var secureBoot: Bool?
    /// A CPU TEE's summary (no `pcrBank`/`pcrDigest` then: both empty).
    public var tee: TEEClaims?
    /// The devices verified beside the platform (GPUs), in the order presented; nil for none.
    public var devices: [DeviceClaims]?
    /// The certificate the decision issued; nil only before the certificate is made (the EAR
    /// reader requires it).
    public var subject: Subject?
    /// Each EAR submodule's `ear.status` (device name → `affirming`, `warning`, ...), as read
    /// from an EAR; empty for claims not read from one. `warning` marks a simulated host or device,
    /// a GPU whose measurements did not all match, or one whose revocation was not shown good.
    public var statuses: [String: String] = [:]

    /// A publisher's signature over the measured model, as the EAR names it.
    public struct SignedModel: Sendable, Equatable, Codable {
        /// The signed model name (the signature's in-toto subject).
        public var model: String
        /// The publisher, as the policy names it.
        public var publisher: String
        /// Who signed (`ModelSignatureClaims.signer`).
        public var signer: String
        /// The signed subject digest: SHA-256 over the files' digests (lowercase hex).
        public var subjectDigest: String
        public init(model: String, publisher: String, signer: String, subjectDigest: String) {
            self.model = model; self.publisher = publisher; self.signer = signer; self.subjectDigest = subjectDigest
        }
        public init(_ claims: ModelSignatureClaims) {
            self.init(model: claims.model, publisher: claims.publisher, signer: claims.signer, subjectDigest: claims.subjectDigest)
        }
    }

    /// What a certificate's EAR is bound to.
    public struct Subject: Sendable, Equatable, Codable {
        public var spiffeId: String
        public var spkiSHA256: [UInt8]
        public init(spiffeId: String, spkiSHA256: [UInt8]) {
            self.spiffeId = spiffeId
            self.spkiSHA256 = spkiSHA256
        }
        /// The subject of a certificate for `publicKey` naming `spiffeId`.
        public init(spiffeId: String, publicKey: PublicKey) throws {
            self.init(spiffeId: spiffeId, spkiSHA256: Crypto.sha256(try publicKey.canonicalSPKIDER))
        }
    }

    /// `vouch.kind` of a certificate's EAR.
    public static let certificateKind = "certificate-issuance"
    /// `vouch.kind` of a host's current EAR (`GET /v1/hosts/{id}/ear`).
    public static let hostStatusKind = "host-status"

    public init(hostId: String, attestedAt: Date, evidenceType: String, evidenceDigest: [UInt8], pcrBank: String, pcrDigest: [UInt8],
                policyName: String, policyVersion: Int, policyDigest: [UInt8], modelManifests: [[UInt8]], secureBoot: Bool?,
                tee: TEEClaims? = nil, subject: Subject? = nil, models: [SignedModel]? = nil) {
        self.hostId = hostId; self.attestedAt = attestedAt; self.evidenceType = evidenceType; self.evidenceDigest = evidenceDigest
        self.pcrBank = pcrBank; self.pcrDigest = pcrDigest; self.policyName = policyName; self.policyVersion = policyVersion
        self.policyDigest = policyDigest; self.modelManifests = modelManifests; self.secureBoot = secureBoot
        self.tee = tee
        self.subject = subject
        self.models = models
    }

    /// The trustworthiness vector's `executables` for affirmed evidence: 2 unless it is a CPU
    /// TEE's whose measurement no allowlist matched (0, no claim).
    public static func executablesClaim(tee: TEEClaims?) -> Int {
        guard let tee else { return 2 }
        return tee.measurementName == nil ? 0 : 2
    }

    /// The policy as EAR names it (`ear.appraisal-policy-id`), as the host's EAR does.
    public var appraisalPolicyID: String { "vouch:policy:\(policyName):v\(policyVersion):sha256:\(Hex.encode(policyDigest))" }

    /// The EAR claims set (JSON) to sign. `devices`: one submodule each (the platform device,
    /// whose evidence this describes, first); `simulated`: a host without a TPM (warning, no
    /// hardware claim), as the host's EAR reports it — and, whatever the caller says, a CPU TEE
    /// whose verified evidence is the software TEE's (`tee.simulated`). `subject` must be set: the
    /// certificate the EAR goes into. The trustworthiness vector's `executables` is 2 (affirming) for a TPM quote
    /// and for a CPU TEE whose measurement matched an allowlist of the policy (`tee.measurementName`
    /// set); a CPU TEE admitted under `allowAnyMeasurement` gets 0 (no claim).
    public func earPayload(device: String, devices: [String], verifierBuild: String, expiresAt: Date, simulated: Bool) throws -> [UInt8] {
        guard let subject else { throw VouchError(.internalError, "a certificate's EAR needs the certificate's subject") }
        let simulated = simulated || tee?.simulated == true
        let appraisal: [String: Any] = [
            "ear.status": simulated ? "warning" : "affirming",
            "ear.trustworthiness-vector": ["instance-identity": 2, "hardware": simulated ? 0 : 2,
                                           "executables": Self.executablesClaim(tee: tee), "configuration": 2],
            "ear.appraisal-policy-id": appraisalPolicyID,
        ]
        var evidence: [String: Any] = ["device": device, "type": evidenceType, "sha256": Hex.encode(evidenceDigest),
                                       "modelManifests": modelManifests.map { Hex.encode($0) }]
        if !pcrBank.isEmpty {
            evidence["pcrBank"] = pcrBank
            evidence["pcrDigest"] = Hex.encode(pcrDigest)
        }
        if let secureBoot { evidence["secureBoot"] = secureBoot }
        if let models, !models.isEmpty {
            evidence["models"] = models.map { ["model": $0.model, "publisher": $0.publisher, "signer": $0.signer, "subjectDigest": $0.subjectDigest] }
        }
        if let tee, let data = try? JSONEncoder().encode(tee), let object = try? JSONSerialization.jsonObject(with: data) {
            evidence["tee"] = object
        }
        var payload: [String: Any] = [
            "eat_profile": Self.earProfile,
            "iat": Int(attestedAt.timeIntervalSince1970),
            "exp": Int(expiresAt.timeIntervalSince1970),
            "ear.verifier-id": ["developer": "Vouch", "build": verifierBuild],
            "submods": Self.submods(devices: devices, appraisal: appraisal, verified: self.devices ?? []),
            "vouch.host": ["hostId": hostId],
            "vouch.evidence": evidence,
            "vouch.policy": ["name": policyName, "version": policyVersion, "sha256": Hex.encode(policyDigest)],
            "vouch.subject": ["spiffeId": subject.spiffeId, "spkiSha256": Hex.encode(subject.spkiSHA256)],
            "vouch.kind": Self.certificateKind,
        ]
        if let verified = self.devices, !verified.isEmpty, let data = try? JSONEncoder().encode(verified), let object = try? JSONSerialization.jsonObject(with: data) {
            payload["vouch.devices"] = object
        }
        return [UInt8](try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys, .withoutEscapingSlashes]))
    }

    /// One EAR submodule per device name, each with the host's `appraisal`, except that a device
    /// verified beside the platform (`verified`, a GPU) gets its own judgement of what it showed:
    /// `executables` 2 only when every measurement matched its RIM (else 0, no claim),
    /// `hardware` 0 for the software GPU, and `ear.status` `warning` (not `affirming`) when it is
    /// simulated, its measurements did not all match, or its chain's revocation was not shown good
    /// (`revocation` other than `good`) — what a policy let through is not presented as more than it is.
    /// (Under a refusal there is no EAR: every device affirmed as far as the policy asked.)
    public static func submods(devices: [String], appraisal: [String: Any], verified: [DeviceClaims]) -> [String: Any] {
        var submods: [String: Any] = [:]
        for device in devices where submods[device] == nil {
            guard appraisal["ear.status"] as? String != "contraindicated", appraisal["ear.status"] as? String != "none",
                  let d = verified.first(where: { $0.device == device }) else {
                submods[device] = appraisal
                continue
            }
            var own = appraisal
            let matched = d.referenceValues == "matched"
            var vector = (appraisal["ear.trustworthiness-vector"] as? [String: Int]) ?? [:]
            vector["executables"] = matched ? 2 : 0
            if d.simulated { vector["hardware"] = 0 }
            own["ear.trustworthiness-vector"] = vector
            if d.simulated || !matched || d.revocation != "good" { own["ear.status"] = "warning" }
            submods[device] = own
        }
        return submods
    }

    /// The claims of an EAR claims set that this type reads (others are ignored).
    private struct Claims: Decodable {
        struct Host: Decodable { let hostId: String }
        struct Evidence: Decodable {
            let type, sha256: String
            /// Absent for a CPU TEE's evidence.
            let pcrBank, pcrDigest: String?
            let modelManifests: [String]
            let models: [SignedModel]?
            let secureBoot: Bool?
            let tee: TEEClaims?
        }
        struct Policy: Decodable { let name: String; let version: Int; let sha256: String }
        struct Subject: Decodable { let spiffeId: String; let spkiSha256: String }
        let profile: String
        let kind: String?
        let subject: Subject?
        let iat: Int64
        let host: Host
        let evidence: Evidence
        let policy: Policy
        let devices: [DeviceClaims]?
        struct Submodule: Decodable {
            let status: String?
            enum CodingKeys: String, CodingKey { case status = "ear.status" }
        }
        let submods: [String: Submodule]?
        enum CodingKeys: String, CodingKey {
            case profile = "eat_profile", iat, host = "vouch.host", evidence = "vouch.evidence", policy = "vouch.policy"
            case kind = "vouch.kind", subject = "vouch.subject", devices = "vouch.devices", submods
        }
    }

    /// Reads the claims back from an EAR claims set; a missing or mistyped claim is `invalid_value`
    /// naming it (`field`: its dotted path). `vouch.evidence.type` decides which evidence claims
    /// are required: `tpm2-quote` needs `pcrBank` and `pcrDigest` (and no `tee`), `sev-snp-report`
    /// and `tdx-quote` need `tee` of their kind (and no PCRs), `azure-snp-vtpm` needs both the PCRs
    /// and a `tee` of its kind; another type is `unsupported`.
    public init(earPayload: [UInt8]) throws {
        let c: Claims
        do {
            c = try JSONDecoder().decode(Claims.self, from: Data(earPayload))
        } catch let e as DecodingError {
            let path: [CodingKey]
            switch e {
            case let .keyNotFound(key, context): path = context.codingPath + [key]
            case let .typeMismatch(_, context), let .valueNotFound(_, context), let .dataCorrupted(context): path = context.codingPath
            @unknown default: path = []
            }
            let field = path.isEmpty ? "ear" : path.map(\.stringValue).joined(separator: ".")
            throw VouchError(.invalidValue, "the EAR claim \(field) is missing or mistyped", context: ["field": field])
        }
        guard c.profile == Self.earProfile else {
            throw VouchError(.unsupported, "the EAR does not name the EAR profile \(Self.earProfile)", context: ["field": "eat_profile", "got": c.profile])
        }
        // Certificates issued before 0.9.1 carry neither vouch.kind nor vouch.subject: their
        // claims still read, but `verified(certificate:)` refuses them (nothing binds them).
        if let kind = c.kind, kind != Self.certificateKind {
            throw VouchError(.unsupported, "the EAR is not a certificate's (vouch.kind \(Self.certificateKind))",
                             context: ["field": "vouch.kind", "got": String(kind.prefix(32))])
        }
        // A host id is 32 lowercase hex digits (`EKIdentity.hostID`): nothing else is printed or
        // put into a URL by the readers of this claim.
        guard Hex.isLowercase(c.host.hostId, length: 32...32) else {
            throw VouchError(.invalidValue, "the EAR claim vouch.host.hostId is not a host id", context: ["field": "vouch.host.hostId"])
        }
        // The evidence fields its type needs, and none of the other's: a TPM quote's PCR bank and
        // digest, a CPU TEE's summary of its own kind.
        switch c.evidence.type {
        case "tpm2-quote":
            guard c.evidence.pcrBank != nil, c.evidence.pcrDigest != nil else {
                let field = c.evidence.pcrBank == nil ? "vouch.evidence.pcrBank" : "vouch.evidence.pcrDigest"
                throw VouchError(.invalidValue, "the EAR claim \(field) is missing or mistyped", context: ["field": field])
            }
            guard c.evidence.tee == nil else {
                throw VouchError(.invalidValue, "a TPM quote's EAR carries no CPU TEE summary", context: ["field": "vouch.evidence.tee"])
            }
        case "sev-snp-report", "tdx-quote":
            guard let tee = c.evidence.tee else {
                throw VouchError(.invalidValue, "the EAR claim vouch.evidence.tee is missing or mistyped", context: ["field": "vouch.evidence.tee"])
            }
            guard tee.kind == (c.evidence.type == "tdx-quote" ? "tdx" : "sev-snp") else {
                throw VouchError(.invalidValue, "the EAR's CPU TEE summary is of another kind than its evidence", context: ["field": "vouch.evidence.tee.kind"])
            }
            guard c.evidence.pcrBank == nil, c.evidence.pcrDigest == nil else {
                throw VouchError(.invalidValue, "a CPU TEE's EAR carries no PCRs", context: ["field": "vouch.evidence.pcrBank"])
            }
        case "azure-snp-vtpm":
            // An Azure CVM: its vTPM quote's PCRs and its SEV-SNP report's summary.
            guard c.evidence.pcrBank != nil, c.evidence.pcrDigest != nil else {
                let field = c.evidence.pcrBank == nil ? "vouch.evidence.pcrBank" : "vouch.evidence.pcrDigest"
                throw VouchError(.invalidValue, "the EAR claim \(field) is missing or mistyped", context: ["field": field])
            }
            guard c.evidence.tee?.kind == "azure-snp-vtpm" else {
                throw VouchError(.invalidValue, "the EAR claim vouch.evidence.tee is missing or of another kind", context: ["field": "vouch.evidence.tee"])
            }
        default:
            throw VouchError(.unsupported, "the EAR describes evidence of an unknown type", context: ["field": "vouch.evidence.type", "got": String(c.evidence.type.prefix(32))])
        }
        hostId = c.host.hostId
        attestedAt = Date(timeIntervalSince1970: TimeInterval(c.iat))
        evidenceType = c.evidence.type
        evidenceDigest = try Hex.decode(c.evidence.sha256, field: "vouch.evidence.sha256")
        pcrBank = c.evidence.pcrBank ?? ""
        pcrDigest = try Hex.decode(c.evidence.pcrDigest ?? "", field: "vouch.evidence.pcrDigest")
        tee = c.evidence.tee
        devices = c.devices
        statuses = (c.submods ?? [:]).reduce(into: [:]) { $0[$1.key] = $1.value.status ?? "none" }
        modelManifests = try c.evidence.modelManifests.map { try Hex.decode($0, field: "vouch.evidence.modelManifests") }
        // Absent before signatures were verified (and when none was): such EARs read as before.
        if let models = c.evidence.models {
            guard models.count <= 64, models.allSatisfy({ Hex.isLowercase($0.subjectDigest, length: 64...64) }) else {
                throw VouchError(.invalidValue, "the EAR claim vouch.evidence.models is not a list of signed models with SHA-256 subject digests",
                                 context: ["field": "vouch.evidence.models"])
            }
        }
        models = c.evidence.models
        secureBoot = c.evidence.secureBoot
        policyName = c.policy.name
        policyVersion = c.policy.version
        policyDigest = try Hex.decode(c.policy.sha256, field: "vouch.policy.sha256")
        if let s = c.subject {
            let spki = try Hex.decode(s.spkiSha256, field: "vouch.subject.spkiSha256")
            guard spki.count == 32, s.spiffeId.hasPrefix("spiffe://"), s.spiffeId.utf8.count <= 2048 else {
                throw VouchError(.invalidValue, "the EAR claim vouch.subject is not a SPIFFE ID and a SHA-256 digest", context: ["field": "vouch.subject"])
            }
            subject = Subject(spiffeId: s.spiffeId, spkiSHA256: spki)
        } else {
            subject = nil
        }
    }

    /// The extension value for a signed EAR (`token`, a compact JWS).
    public static func extensionValue(ear token: String) -> [UInt8] {
        CMWRecord(type: earMediaType, value: Array(token.utf8), indicator: CMWRecord.attestationResults).extensionValue
    }

    /// The signed EAR (compact JWS) in an extension value: a JSON CMW record of the EAR media type.
    public static func ear(extensionValue der: [UInt8]) throws -> String {
        let record = try CMWRecord(extensionValue: der)
        guard record.type == earMediaType else {
            throw VouchError(.unsupported, "the CMW holds \(record.type), not an EAR (\(earMediaType))", context: ["field": "cmw.type"])
        }
        if let ind = record.indicator, ind & CMWRecord.attestationResults == 0 {
            throw VouchError(.invalidValue, "the CMW indicator does not mark an attestation result", context: ["field": "cmw.ind"])
        }
        guard let token = String(bytes: record.value, encoding: .utf8), token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).count == 3 else {
            throw VouchError(.invalidValue, "the CMW value is not a compact JWS", context: ["field": "cmw.value"])
        }
        return token
    }

    /// The claims of the EAR in an extension value, without checking its signature (the issuing
    /// CA's signature over the certificate covers them; `verified` also checks the broker's).
    public init(extensionValue der: [UInt8]) throws {
        let parts = try Self.ear(extensionValue: der).split(separator: ".", omittingEmptySubsequences: false)
        try self.init(earPayload: try JWSSigner.base64URLDecode(String(parts[1]), field: "ear.payload"))
    }

    /// The claims of the EAR in an extension value whose signature verifies: signed by `signer`
    /// (its only URI SAN) with a certificate chaining to `anchors` (the broker CA) at `now`.
    public static func verified(extensionValue der: [UInt8], anchors: [Certificate], signer: String, at now: Date) throws -> AttestationExtension {
        try AttestationExtension(earPayload: try JWSSigner.verify(try ear(extensionValue: der), anchors: anchors, signer: signer, at: now))
    }

    /// The claims of the EAR `certificate` carries, verified as `verified(extensionValue:...)`
    /// does and bound to that certificate: `vouch.subject` names its public key (SHA-256 of its
    /// SubjectPublicKeyInfo, canonical form) and its only URI SAN, byte for byte. A copy of the
    /// extension in another certificate, or an EAR that names no certificate (issued before
    /// 0.9.1), is refused (`attestation_subject_mismatch`). This does not check who issued
    /// the certificate: verify its chain to the issuing CA as well (TLS does; `vouch cert inspect
    /// --issuer`).
    public static func verified(certificate: Certificate, anchors: [Certificate], signer: String, at now: Date) throws -> AttestationExtension {
        guard let der = certificate.extensionValue(oid: oid) else {
            throw VouchError(.attestationMissing, "the certificate carries no attestation extension", context: ["field": "extensions"])
        }
        return try verified(certificate: certificate, ear: try ear(extensionValue: der), anchors: anchors, signer: signer, at: now)
    }

    /// As `verified(certificate:anchors:signer:at:)`, for a caller that has already read the EAR
    /// out of `certificate`'s extension with `ear(extensionValue:)` (it must be that EAR: the
    /// binding below only proves the EAR names this certificate, not that it came from it).
    public static func verified(certificate: Certificate, ear token: String, anchors: [Certificate], signer: String, at now: Date) throws -> AttestationExtension {
        let claims = try AttestationExtension(earPayload: try JWSSigner.verify(token, anchors: anchors, signer: signer, at: now))
        let sans = certificate.uriSANs
        guard let subject = claims.subject, subject.spkiSHA256 == Crypto.sha256(try certificate.publicKey.canonicalSPKIDER),
              sans.count == 1, Array(sans[0].utf8) == Array(subject.spiffeId.utf8) else {
            throw VouchError(.attestationSubjectMismatch, "the attestation was issued for another certificate (its key or SPIFFE ID differs)",
                             context: ["field": "vouch.subject"])
        }
        return claims
    }
}

extension ErrorCode {
    /// A certificate's attestation names another certificate's key or SPIFFE ID (copied).
    public static let attestationSubjectMismatch = ErrorCode("attestation_subject_mismatch", status: 400)
    /// A certificate without the attestation extension where one is required.
    public static let attestationMissing = ErrorCode("attestation_missing", status: 400)
}
