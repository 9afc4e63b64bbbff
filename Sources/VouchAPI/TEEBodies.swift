import Foundation

// The JSON bodies of CPU TEE hosts (SEV-SNP, TDX): the evidence they send in place of a TPM
// quote, and their one-step registration. Binary values are base64; which fields a kind needs
// is the broker's to check (docs/api.md, docs/evidence.md "CPU TEE hosts").

/// A CPU TEE's evidence, base64. SEV-SNP: `report` and either `endorsement` (the VCEK or VLEK
/// certificate, DER or PEM) or `certificateTable` (the extended guest request's table, configfs-tsm
/// `auxblob`), optionally `crl` (AMD's CRL for the product line). TDX: `quote`, optionally
/// `eventLog` (the CC event log, CCEL). Azure confidential VM (`azure-snp-vtpm`): `report` (the
/// HCL report from the vTPM's NV index 0x01400001), `endorsement` (the VCEK), optionally `crl`, and
/// `vtpmQuote` (the vTPM's quote by the AK the HCL report names, with its PCR values and logs).
/// Fields of another kind must be absent.
public struct TEEEvidenceFields: Codable, Sendable, Equatable {
    public var report: String?
    public var endorsement: String?
    public var certificateTable: String?
    public var crl: String?
    public var quote: String?
    public var eventLog: String?
    public var vtpmQuote: QuoteBody?
    public init(report: String? = nil, endorsement: String? = nil, certificateTable: String? = nil, crl: String? = nil,
                quote: String? = nil, eventLog: String? = nil, vtpmQuote: QuoteBody? = nil) {
        self.report = report; self.endorsement = endorsement; self.certificateTable = certificateTable; self.crl = crl
        self.quote = quote; self.eventLog = eventLog; self.vtpmQuote = vtpmQuote
    }
}

/// A CPU TEE host's evidence at enrollment and re-attestation, in place of `quote`: REPORT_DATA
/// (SEV-SNP) or REPORTDATA (TDX) is SHA-512("vouch tee report-data v1" ‖ 0 ‖ binding), the
/// binding being the one a quote's qualifying data would be.
public struct TEEEvidenceBody: Codable, Sendable, Equatable {
    /// `sev-snp`, `tdx` or `azure-snp-vtpm`.
    public var kind: String
    public var evidence: TEEEvidenceFields
    /// Base64 DER ECDSA signature by the host key over "vouch tee host-key signature v1" ‖ 0 ‖
    /// binding (SHA-256 for a P-256 key, SHA-384 for P-384): required of every TEE host (SEV-SNP
    /// with a VCEK or a VLEK, TDX); without it the evidence is refused (`tee_host_mismatch`).
    public var hostKeySignature: String?
    public init(kind: String, evidence: TEEEvidenceFields, hostKeySignature: String? = nil) {
        self.kind = kind; self.evidence = evidence; self.hostKeySignature = hostKeySignature
    }
}

/// A CPU TEE host's registration, in place of the EK and AK fields of `RegisterHostRequest`: one
/// step, no credential activation — the report, bound to a registration challenge and the host
/// key, is the proof.
public struct TEERegistrationBody: Codable, Sendable, Equatable {
    /// `sev-snp`, `tdx` or `azure-snp-vtpm`.
    public var kind: String
    /// Base64 DER SubjectPublicKeyInfo of the host key (ECDSA P-256 or P-384), generated in the
    /// guest: the key of its host certificate and, for VLEK and TDX hosts, its identity.
    public var hostKey: String
    /// A challenge nonce issued with purpose `registration` to the host id the host will have
    /// (`POST /v1/challenges`).
    public var nonce: String
    /// REPORT_DATA / REPORTDATA = SHA-512("vouch tee report-data v1" ‖ 0 ‖ SHA-256(nonce ‖
    /// SHA-256(hostKey))).
    public var evidence: TEEEvidenceFields
    /// Required: base64 DER ECDSA signature by the host key over "vouch tee host-key signature
    /// v1" ‖ 0 ‖ SHA-256(nonce ‖ SHA-256(hostKey)) (the registration's binding; SHA-256 for a
    /// P-256 key, SHA-384 for P-384): proof that the registering guest holds the key its report
    /// binds. Missing: `bad_request`; not verifying: `tee_host_mismatch`.
    public var hostKeySignature: String?
    public init(kind: String, hostKey: String, nonce: String, evidence: TEEEvidenceFields, hostKeySignature: String? = nil) {
        self.kind = kind; self.hostKey = hostKey; self.nonce = nonce; self.evidence = evidence; self.hostKeySignature = hostKeySignature
    }
}

/// A CPU TEE host's latest authenticated evidence as the broker keeps and serves it (`tee` of
/// `GET /v1/hosts/{id}/evidence`), enough to verify it again offline: `evidence` holds SEV-SNP's
/// `report`, `endorsement` (the VCEK or VLEK that verified it, DER) and `crl` when the host sent
/// one, or TDX's `quote` and `eventLog` when sent; `collateral` (TDX) is the collateral the broker
/// judged the quote with, base64 of dcap-qvl `QuoteCollateralV3` JSON.
public struct TEEEvidenceCopy: Codable, Sendable, Equatable {
    /// `sev-snp` or `tdx`.
    public var kind: String
    public var evidence: TEEEvidenceFields
    public var collateral: String?
    /// The evidence chains to the software TEE's test roots.
    public var simulated: Bool
    public init(kind: String, evidence: TEEEvidenceFields, collateral: String? = nil, simulated: Bool) {
        self.kind = kind; self.evidence = evidence; self.collateral = collateral; self.simulated = simulated
    }
}

/// A device's evidence beside the platform's (an NVIDIA GPU's). The platform's evidence binds
/// it: its binding is `EnrollmentBinding.composite` of the request's binding and every device's
/// digest, in the order sent (docs/evidence.md, "Composite evidence").
public struct DeviceEvidenceBody: Codable, Sendable, Equatable {
    /// The device's name: `gpu0` … `gpu15` (`namePattern`), unique in the request; its EAR submodule.
    public var device: String
    /// What a device name must match (as docs/openapi.yaml's `DeviceEvidenceBody.device`).
    public static let namePattern = "^gpu([0-9]|1[0-5])$"
    /// `nvidia-gpu`.
    public var kind: String
    /// Base64 of the SPDM GET_MEASUREMENTS request ‖ MEASUREMENTS response, whose request nonce
    /// is the challenge nonce.
    public var evidence: String
    /// The device certificate chain, PEM, leaf first (as NVML returns it).
    public var certificateChain: String
    public init(device: String, kind: String, evidence: String, certificateChain: String) {
        self.device = device; self.kind = kind; self.evidence = evidence; self.certificateChain = certificateChain
    }
}
