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
    /// The evidence does not come from the host registered under this id: no valid signature by
    /// the registered host key, or (SEV-SNP registered with a VCEK) another chip than the one
    /// pinned at registration.
    public static let teeHostMismatch = ErrorCode("tee_host_mismatch", status: 403)
    /// A TEE host key is not a DER SubjectPublicKeyInfo of an ECDSA P-256 or P-384 key.
    /// 403 like `ek_certificate_invalid`: the body is well formed; the key in it is not one a host
    /// may hold (a schema cannot say which DER is an EC key).
    public static let teeHostKeyInvalid = ErrorCode("tee_host_key_invalid", status: 403)
}

/// SEV-SNP evidence as a host sends it, unverified.
public struct SNPRawEvidence: Sendable {
    /// Where the VCEK or VLEK comes from.
    public enum Endorsement: Sendable {
        /// The VCEK or VLEK certificate itself (DER or PEM).
        case certificate([UInt8])
        /// The certificate table of the extended guest request (configfs-tsm `auxblob`), holding it.
        case certificateTable([UInt8])
        /// Neither: the broker gets the VCEK from its `SNPEndorsementSource`, when it has one.
        case absent
    }

    /// The 1184-byte ATTESTATION_REPORT.
    public var report: [UInt8]
    public var endorsement: Endorsement
    /// AMD's CRL for the product line, if sent.
    public var crl: [UInt8]?
    /// The host key's signature over the request's binding (`TEEHostIdentity.signedMessage`):
    /// required of every TEE host after registration.
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

/// A CPU TEE host as registered: its kind, the host key the attester generated in the guest
/// and bound into the registration report, and — for SEV-SNP registered with a VCEK-signed report
/// — the chip it ran on. Every TEE host is identified by its host key: a report or quote alone
/// cannot say which guest made it (every guest on one chip shares CHIP_ID; a TDX quote has no
/// per-guest identity), so the host key's signature over each request's binding is what ties
/// evidence to the registered host. The host id is the first 16 bytes of
/// SHA-256("vouch tee host-key v1" ‖ 0 ‖ kind ‖ 0 ‖ SPKI), kind `sev-snp` or `tdx` (ASCII), SPKI
/// the canonical DER SubjectPublicKeyInfo (`checkedHostKey`): 32 lowercase hex digits, like TPM
/// host ids. CHIP_ID, when registered, is an extra pin: every later report must be VCEK-signed
/// with it. An Azure confidential VM (kind `azure-snp-vtpm`) is identified the same way, by its
/// host key; its vTPM's endorsement key (the HCL report's `HCLEkPub`, which lives in the VM's
/// persisted guest state and so survives a move to another chip, unlike CHIP_ID) is its pin:
/// every later HCL report must name it. The endorsement's issuer and whether the evidence was the
/// software TEE's are fixed at registration too: later evidence must match both.
public struct TEEHostIdentity: Sendable, Equatable {
    public var kind: EvidenceKind
    /// The host key, canonical DER SubjectPublicKeyInfo.
    public var hostKey: [UInt8]
    /// SEV-SNP with a VCEK: the CHIP_ID (64 bytes) of the registration report; nil otherwise.
    public var chipID: [UInt8]?
    /// An Azure CVM: its vTPM's endorsement key (DER SubjectPublicKeyInfo of `HCLEkPub`); nil otherwise.
    public var vtpmEndorsementKey: [UInt8]?
    /// The issuer (RFC 2253) of the certificate that endorsed the registration evidence, from its
    /// verified chain: the VCEK's or VLEK's (the ASK or ASVK), the PCK certificate's.
    public var endorsementIssuer: String
    /// The registration evidence chained to the software TEE's roots.
    public var simulated: Bool

    public init(kind: EvidenceKind, hostKey: [UInt8], chipID: [UInt8]? = nil, vtpmEndorsementKey: [UInt8]? = nil, endorsementIssuer: String, simulated: Bool) {
        self.kind = kind
        self.hostKey = hostKey
        self.chipID = chipID
        self.vtpmEndorsementKey = vtpmEndorsementKey
        self.endorsementIssuer = endorsementIssuer
        self.simulated = simulated
    }

    public static let hostKeyTag = Array("vouch tee host-key v1\u{0}".utf8)
    /// The domain tag of a host-key signature (`signedMessage`).
    public static let signatureTag = Array("vouch tee host-key signature v1\u{0}".utf8)

    public var hostID: String { Self.hostID(kind: kind, hostKeySPKI: hostKey) }

    /// What the host record keeps as the host's pin (`HostRecord.ekPublic`): the CHIP_ID or the
    /// vTPM's endorsement key; empty for none.
    public var pin: [UInt8] { chipID ?? vtpmEndorsementKey ?? [] }

    /// For the canonical SPKI (`checkedHostKey`) of a host of `kind`.
    public static func hostID(kind: EvidenceKind, hostKeySPKI: [UInt8]) -> String {
        Hex.encode(Crypto.sha256(hostKeyTag + Array(kind.rawValue.utf8) + [0] + hostKeySPKI).prefix(16))
    }

    /// What a TEE host signs with its host key, at registration and with each piece of evidence
    /// after it: the tag and the request's binding (`VerificationContext.binding`; at registration
    /// SHA-256(nonce ‖ SHA-256(host key SPKI))), signed ECDSA with SHA-256 (P-256 key) or SHA-384
    /// (P-384 key), DER signature.
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

    /// Verifies a host-key signature over `binding` (`signedMessage`) with `spki`.
    public static func verify(signature: [UInt8]?, binding: [UInt8], spki: [UInt8]) -> Bool {
        guard let signature, let key = try? PublicKey(spkiDER: spki), key.isEC else { return false }
        return key.verify(message: signedMessage(binding: binding), signature: signature, scheme: .ecdsa, hash: key.bits > 256 ? .sha384 : .sha256)
    }

    /// The host check of a TEE verifier's stage 1, in order: the host registered a TEE identity
    /// of this kind; `signature` (the evidence's `hostKeySignature`) verifies with its host key over
    /// `signedMessage(binding: context.binding)`; a registered CHIP_ID equals `chipID`, the
    /// CHIP_ID of the verified report when VCEK-signed (nil otherwise); `endorsementIssuer`, from
    /// the verified chain, is the registered one; `simulated` (the evidence chained to the software
    /// TEE's roots) is as registered; a registered vTPM endorsement key (Azure) equals
    /// `vtpmEndorsementKey`, the verified HCL report's. Nil when all hold, else `tee_host_mismatch`
    /// naming what differs.
    static func check(_ registered: TEEHostIdentity?, kind: EvidenceKind, signature: [UInt8]?, chipID: [UInt8]?, vtpmEndorsementKey: [UInt8]? = nil,
                      endorsementIssuer: String, simulated: Bool, context: VerificationContext) -> VouchError? {
        func mismatch(_ expected: String, _ got: String) -> VouchError {
            VouchError(.teeHostMismatch, "the \(kind.evidenceName) is not from the host registered as \(context.hostID)",
                       context: ["hostId": context.hostID, "expected": expected, "got": got])
        }
        guard let registered, registered.kind == kind else {
            return mismatch("a host registered with \(kind.rawValue) evidence", registered.map { "a \($0.kind.rawValue) host" } ?? "a host without TEE identity")
        }
        guard verify(signature: signature, binding: context.binding, spki: registered.hostKey) else {
            return mismatch("hostKeySignature by the registered host key", signature == nil ? "no hostKeySignature" : "a signature that does not verify")
        }
        if let pinned = registered.chipID {
            guard let chipID, constantTimeEqual(chipID, pinned) else {
                return mismatch("a VCEK-signed report from the registered chip", chipID == nil ? "a report not signed by a VCEK" : "a report from another chip")
            }
        }
        if let pinned = registered.vtpmEndorsementKey {
            guard let vtpmEndorsementKey, constantTimeEqual(vtpmEndorsementKey, pinned) else {
                return mismatch("an HCL report naming the registered vTPM endorsement key", "one naming another")
            }
        }
        guard endorsementIssuer == registered.endorsementIssuer else {
            return mismatch("an endorsement issued by \(registered.endorsementIssuer)", "one issued by \(endorsementIssuer)")
        }
        guard simulated == registered.simulated else {
            return mismatch(registered.simulated ? "the software TEE's evidence" : "evidence under AMD's or Intel's roots",
                            simulated ? "the software TEE's evidence" : "evidence under AMD's or Intel's roots")
        }
        return nil
    }
}

/// The summary of verified (or authenticated) CPU TEE evidence that the attestation trail and the
/// EAR carry, the SHA-256 of the report or quote it came from, and the bytes it was verified from.
public struct VerifiedTEE: Sendable, Equatable {
    public let claims: TEEClaims
    public let evidenceDigest: [UInt8]
    public let evidence: TEEEvidenceBytes
}

/// The bytes a CPU TEE's evidence was authenticated from, kept (the latest per host) so that it
/// can be verified again offline (`GET /v1/hosts/{id}/evidence`, `vouch policy capture --host`):
/// SEV-SNP, the report, the VCEK or VLEK that verified it (DER; taken out of the certificate table
/// when the host sent one) and the AMD CRL revocation was checked with (the broker's or the host's); TDX, the quote, the CCEL log when sent, and the
/// collateral the broker judged it with (dcap-qvl `QuoteCollateralV3` JSON). Only the TEE
/// verifiers make one, from evidence they authenticated.
public struct TEEEvidenceBytes: Sendable, Equatable {
    public let kind: EvidenceKind
    /// The 1184-byte ATTESTATION_REPORT or the DCAP quote, as sent.
    public let report: [UInt8]
    /// SEV-SNP: the VCEK or VLEK, DER.
    public let endorsement: [UInt8]?
    /// SEV-SNP: AMD's CRL revocation was checked with (the broker's own when it fetched one,
    /// else the host's, as sent).
    public let crl: [UInt8]?
    /// TDX: the CCEL event log, as sent.
    public let eventLog: [UInt8]?
    /// TDX: the collateral the quote was judged with.
    public let collateral: [UInt8]?
    /// The evidence chains to the software TEE's roots.
    public let simulated: Bool
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

/// The roots CPU TEE evidence is verified under, and where TDX collateral and missing SEV-SNP
/// endorsements come from. By default
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
    /// Where VCEKs for reports sent without one, and AMD's CRLs for evidence sent without one,
    /// come from (AMD's KDS through `AMDKDSFetcher`); nil: nowhere (the default).
    public var snpEndorsements: (any SNPEndorsementSource)?
    /// GPU evidence presented beside the platform: NVIDIA's pinned Device Identity CA and the
    /// broker's RIMs (and the software GPU's, kept apart, when simulated hosts are allowed).
    public var gpu = GPUTrust()

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

    public var trustsSimulation: Bool { simulatedSNP != nil || simulatedTDXRoots != nil || gpu.simulatedDeviceRoots != nil }

    /// Without the software TEE's (and software GPU's) roots.
    public var pinnedOnly: TEETrust {
        var t = trustingSimulation(snp: nil, tdxRoots: nil)
        t.gpu.simulatedDeviceRoots = nil
        t.gpu.simulatedRIMRoots = nil
        t.gpu.simulatedReferences = nil
        return t
    }

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
