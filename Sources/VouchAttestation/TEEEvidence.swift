import Foundation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTEEWire

// CPU TEE hosts (SEV-SNP, TDX) in the broker: what such a host sends (unverified), how it is
// identified, the roots its evidence is verified under, and what the two TEE evidence verifiers
// (`SNPEvidenceVerifier`, `TDXEvidenceVerifier`) share. docs/evidence.md, "CPU TEE hosts",
// lists the checks in order.

extension ErrorCode {
    /// The evidence is the software TEE's (its chain names the simulation's organisation) and this
    /// broker does not allow simulated hosts.
    public static let teeSimulationRefused = ErrorCode("tee_simulation_refused", status: 403)
    /// The evidence does not come from the host registered under this id: another chip (SEV-SNP
    /// VCEK), or no valid signature by the registered host key (VLEK, TDX).
    public static let teeHostMismatch = ErrorCode("tee_host_mismatch", status: 403)
    /// A TEE host key is not a DER SubjectPublicKeyInfo of an ECDSA P-256 or P-384 key.
    public static let teeHostKeyInvalid = ErrorCode("tee_host_key_invalid", status: 400)
}

/// SEV-SNP evidence as a host sends it, unverified.
public struct SNPRawEvidence: Sendable {
    /// Where the VCEK or VLEK comes from.
    public enum Endorsement: Sendable {
        /// The VCEK or VLEK certificate itself (DER or PEM).
        case certificate([UInt8])
        /// The certificate table of the extended guest request (configfs-tsm `auxblob`), holding it.
        case certificateTable([UInt8])
    }

    /// The 1184-byte ATTESTATION_REPORT.
    public var report: [UInt8]
    public var endorsement: Endorsement
    /// AMD's CRL for the product line, if sent.
    public var crl: [UInt8]?
    /// A host-key host's signature over its binding (`TEEHostIdentity.signedMessage`).
    public var hostKeySignature: [UInt8]?

    public init(report: [UInt8], endorsement: Endorsement, crl: [UInt8]? = nil, hostKeySignature: [UInt8]? = nil) {
        self.report = report
        self.endorsement = endorsement
        self.crl = crl
        self.hostKeySignature = hostKeySignature
    }
}

/// TDX evidence as a host sends it, unverified.
public struct TDXRawEvidence: Sendable {
    /// The DCAP quote (v4 or v5).
    public var quote: [UInt8]
    /// The CC event log (CCEL), if sent: it must then replay to RTMR0–3.
    public var eventLog: [UInt8]?
    /// The host key's signature over its binding (`TEEHostIdentity.signedMessage`).
    public var hostKeySignature: [UInt8]?

    public init(quote: [UInt8], eventLog: [UInt8]? = nil, hostKeySignature: [UInt8]? = nil) {
        self.quote = quote
        self.eventLog = eventLog
        self.hostKeySignature = hostKeySignature
    }
}

/// How a CPU TEE host is identified, fixed when it registers:
/// - SEV-SNP with a VCEK: its chip. The host id is the first 16 bytes of SHA-256("vouch tee
///   chip-id v1" ‖ 0 ‖ CHIP_ID), and every later report must carry that CHIP_ID. (A host is then a
///   chip: guests on one chip share its id.)
/// - SEV-SNP with a VLEK (CHIP_ID masked) and TDX (no per-guest identity): a host key the
///   attester generates, bound into the registration report. The host id is the first 16 bytes of
///   SHA-256("vouch tee host-key v1" ‖ 0 ‖ SPKI), SPKI the canonical DER SubjectPublicKeyInfo;
///   every later piece of evidence carries the host key's signature over its binding.
/// Both ids are 32 lowercase hex digits, like TPM host ids.
public enum TEEHostIdentity: Sendable, Equatable {
    /// SEV-SNP VCEK: CHIP_ID (64 bytes).
    case chip([UInt8])
    /// VLEK or TDX: the host key, canonical DER SubjectPublicKeyInfo.
    case hostKey([UInt8])

    public static let chipTag = Array("vouch tee chip-id v1\u{0}".utf8)
    public static let hostKeyTag = Array("vouch tee host-key v1\u{0}".utf8)
    /// The domain tag of a host-key signature (`signedMessage`).
    public static let signatureTag = Array("vouch tee host-key signature v1\u{0}".utf8)

    public var hostID: String {
        switch self {
        case let .chip(id): return Self.hostID(chipID: id)
        case let .hostKey(spki): return Self.hostID(hostKeySPKI: spki)
        }
    }

    public static func hostID(chipID: [UInt8]) -> String { Hex.encode(Crypto.sha256(chipTag + chipID).prefix(16)) }

    /// For the canonical SPKI (`checkedHostKey`).
    public static func hostID(hostKeySPKI: [UInt8]) -> String { Hex.encode(Crypto.sha256(hostKeyTag + hostKeySPKI).prefix(16)) }

    /// What a host-key host signs with each piece of evidence after registration: the tag and the
    /// request's binding (`VerificationContext.binding`), signed ECDSA with SHA-256 (P-256 key) or
    /// SHA-384 (P-384 key), DER signature.
    public static func signedMessage(binding: [UInt8]) -> [UInt8] { signatureTag + binding }

    /// A host key as sent (DER SubjectPublicKeyInfo): an ECDSA P-256 or P-384 key, returned in
    /// canonical form with its type (`ec-p256`, `ec-p384`); else `tee_host_key_invalid`.
    public static func checkedHostKey(_ spki: [UInt8]) throws -> (spki: [UInt8], key: PublicKey, type: String) {
        guard spki.count <= 1024, let key = try? PublicKey(spkiDER: spki), key.isEC, key.bits == 256 || key.bits == 384,
              let canonical = try? key.canonicalSPKIDER else {
            throw VouchError(.teeHostKeyInvalid, "the host key must be the DER SubjectPublicKeyInfo of an ECDSA P-256 or P-384 key",
                             context: ["field": "tee.hostKey"])
        }
        return (canonical, key, "ec-p\(key.bits)")
    }

    /// The host ids a registration may stand for, read from the unverified request only to check
    /// its nonce before anything is verified: the host key's (when it is a usable key) and, for
    /// SEV-SNP, the chip's its report names (when the report parses). Verification then decides
    /// which identity the evidence establishes; its id must be the nonce's.
    public static func candidateHostIDs(_ raw: RawEvidence, hostKey: [UInt8]) -> [String] {
        var ids: [String] = []
        if let key = try? checkedHostKey(hostKey) { ids.append(hostID(hostKeySPKI: key.spki)) }
        if case let .sevSNP(e) = raw.payload, let report = try? SNPReport(bytes: e.report), report.signingKey == .vcek {
            ids.append(hostID(chipID: report.chipID))
        }
        return ids
    }

    /// Verifies a host-key signature over `binding` (`signedMessage`) with `spki`.
    static func verify(signature: [UInt8]?, binding: [UInt8], spki: [UInt8]) -> Bool {
        guard let signature, let key = try? PublicKey(spkiDER: spki), key.isEC else { return false }
        return key.verify(message: signedMessage(binding: binding), signature: signature, scheme: .ecdsa, hash: key.bits > 256 ? .sha384 : .sha256)
    }
}

/// The summary of verified (or authenticated) CPU TEE evidence that the attestation trail and the
/// EAR carry, and the SHA-256 of the report or quote it came from.
public struct VerifiedTEE: Sendable, Equatable {
    public let claims: TEEClaims
    public let evidenceDigest: [UInt8]
}

/// What registration learns from a CPU TEE's evidence (`TEEEvidenceVerifier.identify`).
public struct TEEIdentification: Sendable {
    public let kind: EvidenceKind
    public let identity: TEEHostIdentity
    public var hostID: String { identity.hostID }
    /// The issuer of the certificate that endorses the evidence (VCEK/VLEK issuer, PCK
    /// certificate issuer), RFC 2253: what a policy's `match.ekIssuer` matches for a TEE host.
    public let endorsementIssuer: String
    /// The evidence chains to the software TEE's test roots.
    public let simulated: Bool
    public let summary: VerifiedTEE
}

/// A CPU TEE evidence verifier: the two stages of `EvidenceVerifier`, and registration.
public protocol TEEEvidenceVerifier: EvidenceVerifier {
    /// At registration: the evidence is authentic, its REPORT_DATA is exactly
    /// `EnrollmentBinding.teeReportData(binding:)`, and it establishes an identity (`TEEHostIdentity`)
    /// for a host presenting `hostKey` (canonical SPKI). Refusals are stage-1 `VouchError`s.
    func identify(_ raw: RawEvidence, binding: [UInt8], hostKey: [UInt8], at now: Date) -> Result<TEEIdentification, VouchError>
}

/// The roots CPU TEE evidence is verified under, and where TDX collateral comes from. By default
/// AMD's and Intel's compiled-in pinned roots only (`AMDRoots`, `IntelSGXRoot`). The software
/// TEE's test roots are kept apart (`simulatedSNP`, `simulatedTDXRoots`): evidence whose chain
/// names the simulation's organisation is verified under them only, and refused
/// (`tee_simulation_refused`) when there are none — the broker drops them unless its
/// configuration allows simulated hosts.
public struct TEETrust: Sendable {
    /// The organisation every certificate of the software TEE (`VouchTEESim`) names.
    public static let simulationOrganization = "Vouch software TEE (simulation only)"

    public var snp: SNPTrustStore
    public var tdxRoots: [Certificate]
    public var simulatedSNP: SNPTrustStore?
    public var simulatedTDXRoots: [Certificate]?
    public var tdxCollateral: any TDXCollateralSource

    /// AMD's and Intel's pinned roots (a root that fails to load leaves that kind trusting
    /// nothing: every piece of its evidence is refused).
    public init(tdxCollateral: any TDXCollateralSource = TDXCollateralSet([:])) {
        snp = Self.amd ?? SNPTrustStore(products: [:])
        tdxRoots = Self.intel.map { [$0] } ?? []
        self.tdxCollateral = tdxCollateral
    }

    private static let amd = try? AMDRoots.trustStore()
    private static let intel = try? IntelSGXRoot.certificate()

    /// The software TEE's roots besides the pinned ones (for tests and the demo only).
    public func trustingSimulation(snp: SNPTrustStore?, tdxRoots: [Certificate]?) -> TEETrust {
        var t = self
        t.simulatedSNP = snp
        t.simulatedTDXRoots = tdxRoots
        return t
    }

    public var trustsSimulation: Bool { simulatedSNP != nil || simulatedTDXRoots != nil }

    /// Without the software TEE's roots.
    public var pinnedOnly: TEETrust { trustingSimulation(snp: nil, tdxRoots: nil) }

    /// True when an issuer name (RFC 2253) is the software TEE's.
    static func isSimulation(issuer: String) -> Bool {
        issuer.split(separator: ",").contains { $0 == "O=\(simulationOrganization)" }
    }
}

extension PolicyViolation {
    /// A TEE verifier's refusal before authenticity (or binding) was established, as a stage-1 error.
    var stageOneError: VouchError {
        VouchError(code, "\(path): expected \(expected), got \(actual)", context: ["path": path, "expected": expected, "got": actual])
    }
}
