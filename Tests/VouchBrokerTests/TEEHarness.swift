import Foundation
import VouchAPI
import VouchAttestation
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEESim
import VouchTEEWire
import VouchTPMWire
import XCTest

/// The software TEE platforms the broker tests share (making one costs RSA key generation), the
/// collateral of the TDX one around the test clock's start (2026-01-01), and the roots a broker
/// that allows simulated hosts is given.
enum SoftwareTEEs {
    static let snp = try! SoftwareSNP()
    static let tdx = try! SoftwareTDX(notBefore: Date.parseRFC3339("2025-01-01T00:00:00Z")!, notAfter: Date.parseRFC3339("2030-01-01T00:00:00Z")!)
    static let collateral: TDXCollateral = {
        let issue = Date.parseRFC3339("2025-12-20T00:00:00Z")!, next = Date.parseRFC3339("2026-02-20T00:00:00Z")!
        let tcbDate = Date.parseRFC3339("2025-11-12T00:00:00Z")!
        return try! tdx.collateral(tcbInfo: SoftwareTDX.json(tdx.defaultTCBInfo(issueDate: issue, nextUpdate: next, tcbDate: tcbDate)),
                                   qeIdentity: tdx.json(tdx.defaultQEIdentity(issueDate: issue, nextUpdate: next, tcbDate: tcbDate)),
                                   crlThisUpdate: issue, crlNextUpdate: next)
    }()

    /// AMD's and Intel's pinned roots, the software TEE's test roots, and its TDX collateral.
    static var trust: TEETrust {
        TEETrust(tdxCollateral: TDXCollateralSet([Hex.encode(tdx.platform.fmspc): collateral]))
            .trustingSimulation(snp: try! SNPTrustStore(pemFiles: [("sim.pem", try! snp.rootsPEM)], source: "software TEE", pinning: .asLoaded),
                                tdxRoots: tdx.roots)
    }

    /// A second chip of the software SEV-SNP platform: its CHIP_ID and a VCEK for it under the same ASK.
    static let otherChip: (id: [UInt8], key: PrivateKey, vcek: Certificate) = {
        let id = [UInt8](repeating: 0x5a, count: 64), key = try! PrivateKey.generate(.p384)
        return (id, key, try! snp.issueEndorsement(.vcek, key: key, extensions: SoftwareSNP.extensions(product: snp.product, tcb: snp.tcb, hwID: id)))
    }()

    /// An RSA key that is no Azure guest's vTPM AK.
    static let otherAK = try! PrivateKey.generateRSA(bits: 2048)

    /// The measurement the test policy allows (SEV-SNP MEASUREMENT, TDX MRTD).
    static let good = [UInt8](repeating: 0x6a, count: 48)
    /// The Azure CVMs' paravisor launch the test policy allows.
    static let paravisor = [UInt8](repeating: 0x9d, count: 48)

    /// `Broker.policy()` with `snp:` and `tdx:` sections allowing `good` only, and `paravisor`
    /// for Azure CVMs only.
    static func policy() -> Policy {
        var p = Broker.policy()
        var snp = SNPPolicy()
        snp.measurements = [SNPPolicy.Measurement(name: "guest-v1", value: good)]
        snp.paravisorMeasurements = [SNPPolicy.Measurement(name: "paravisor-v1", value: paravisor)]
        p.snp = snp
        var tdx = TDXPolicy()
        tdx.mrtd = [TDXPolicy.NamedValue(name: "td-v1", value: good)]
        p.tdx = tdx
        return p
    }
}

/// A confidential VM on the software TEE, as an attester would run it: a host key made in the
/// guest, reports and quotes whose REPORT_DATA binds what the broker asks, and the host key's
/// signature over the binding. An Azure CVM (`.azure`) runs the software paravisor and its own
/// software vTPM (`SimulatedAzureCVM`, RSA AK and EK made per guest).
struct SoftwareTEEGuest {
    enum Kind { case snpVCEK, snpVLEK, tdx, azure }
    let kind: Kind
    var hostKey: PrivateKey
    /// The launch measurement (an Azure CVM's: its paravisor's).
    var measurement: [UInt8]
    var debug = false
    /// SEV-SNP with a VCEK: run on `SoftwareTEEs.otherChip` instead of the platform's chip.
    var onOtherChip = false
    /// An Azure CVM's paravisor and vTPM.
    var azure: SimulatedAzureCVM?
    /// An Azure CVM's vTPM SHA-256 PCR values (absent: zeros).
    var pcrs: [Int: [UInt8]] = [:]
    /// An Azure CVM: its quotes signed by another AK than its HCL report names.
    var quoteByAnotherAK = false

    init(_ kind: Kind) throws {
        self.kind = kind
        hostKey = try PrivateKey.generate(.p256)
        measurement = kind == .azure ? SoftwareTEEs.paravisor : SoftwareTEEs.good
        if kind == .azure { try replaceVTPM() }
    }

    /// An Azure CVM: a new vTPM (AK and EK) under the same host key.
    mutating func replaceVTPM() throws {
        azure = try SimulatedAzureCVM(snp: SoftwareTEEs.snp, attestationKey: try PrivateKey.generateRSA(bits: 2048),
                                      endorsementKey: try PrivateKey.generateRSA(bits: 2048).publicKey, optionsPath: nil, madeAt: Date(timeIntervalSince1970: 0))
    }

    var evidenceKind: String { kindOfEvidence.rawValue }
    var kindOfEvidence: EvidenceKind {
        switch kind {
        case .snpVCEK, .snpVLEK: return .sevSNP
        case .tdx: return .tdx
        case .azure: return .azureSNPVTPM
        }
    }
    var hostKeySPKI: [UInt8] { get throws { try hostKey.publicKey.canonicalSPKIDER } }

    /// The host id the guest will have: its host key's.
    var hostID: String {
        get throws { TEEHostIdentity.hostID(kind: kindOfEvidence, hostKeySPKI: try hostKeySPKI) }
    }

    /// A report (SEV-SNP) or quote (TDX) whose REPORT_DATA is `teeReportData(binding:)`.
    func fields(binding: [UInt8]) throws -> TEEEvidenceFields {
        let data = EnrollmentBinding.teeReportData(binding: binding)
        switch kind {
        case .snpVCEK, .snpVLEK:
            let snp = SoftwareTEEs.snp
            var report = snp.report(signer: kind == .snpVLEK ? .vlek : .vcek, reportData: data)
            report.measurement = measurement
            if debug { report.policy = SNPGuestPolicy.with([SNPGuestPolicy.smtBit, SNPGuestPolicy.debugBit]) }
            if onOtherChip, kind == .snpVCEK {
                let other = SoftwareTEEs.otherChip
                report.chipID = other.id
                return TEEEvidenceFields(report: Base64.encode(try SoftwareSNP.sign(report, key: other.key)), endorsement: Base64.encode(try other.vcek.der))
            }
            return TEEEvidenceFields(report: Base64.encode(try snp.sign(report)), endorsement: Base64.encode(try (kind == .snpVLEK ? snp.vlek : snp.vcek).der))
        case .tdx:
            let body = SoftwareTDX.body(tdAttributes: debug ? [1, 0, 0, 0x10, 0, 0, 0, 0] : [0, 0, 0, 0x10, 0, 0, 0, 0], mrTD: measurement, reportData: data)
            return TEEEvidenceFields(quote: Base64.encode(try SoftwareTEEs.tdx.quote(body)))
        case .azure:
            var options = SimulatedTEEOptions()
            options.measurement = measurement
            options.debug = debug
            options.pcrs = pcrs
            let cvm = try XCTUnwrap(azure)
            var fields = try cvm.evidence(binding: binding, pcrSelection: nil, options: options).fields
            if quoteByAnotherAK {
                let other = try SimulatedAzureCVM(snp: SoftwareTEEs.snp, attestationKey: SoftwareTEEs.otherAK, endorsementKey: cvm.endorsementKey,
                                                  optionsPath: nil, madeAt: Date(timeIntervalSince1970: 0))
                fields.vtpmQuote = try other.evidence(binding: binding, pcrSelection: nil, options: options).fields.vtpmQuote
            }
            return fields
        }
    }

    /// Evidence for enrollment or re-attestation, signed by the host key over the binding.
    func evidence(binding: [UInt8], signed: Bool = true) throws -> TEEEvidenceBody {
        TEEEvidenceBody(kind: evidenceKind, evidence: try fields(binding: binding),
                        hostKeySignature: signed ? Base64.encode(try hostKey.sign(TEEHostIdentity.signedMessage(binding: binding), hash: .sha256)) : nil)
    }

    /// The registration body for a registration challenge's nonce, signed by the host key over
    /// its binding (`signer`: another key's signature, in the attacks; `signed: false`: none).
    func registration(nonce: String, signed: Bool = true, signer: PrivateKey? = nil) throws -> TEERegistrationBody {
        let binding = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(nonce), agentSPKI: try hostKeySPKI)
        let signature = signed ? Base64.encode(try (signer ?? hostKey).sign(TEEHostIdentity.signedMessage(binding: binding), hash: .sha256)) : nil
        return TEERegistrationBody(kind: evidenceKind, hostKey: Base64.encode(try hostKeySPKI), nonce: nonce, evidence: try fields(binding: binding),
                                   hostKeySignature: signature)
    }
}

extension Broker {
    /// Registers a software TEE guest the way its attester would: a registration challenge for
    /// the host id it will have, then its report (with `attesterURL`: in pull mode).
    @discardableResult
    func register(_ guest: SoftwareTEEGuest, attesterURL: String? = nil) throws -> RegisterHostResponse {
        let challenge = try service.enrollment.createChallenge(ChallengeRequest(hostId: try guest.hostID, purpose: "registration"))
        var request = RegisterHostRequest(tee: try guest.registration(nonce: challenge.nonce), hostname: "cvm-1")
        request.attesterURL = attesterURL
        return try service.registration.registerHost(request)
    }

    /// Enrolls an agent on a TEE host: an enrollment challenge, a fresh P-256 key and CSR, evidence
    /// binding both (`bindingKey`: the key the evidence binds, if not the CSR's).
    func enroll(_ guest: SoftwareTEEGuest, agent: String, bindingKey: PrivateKey? = nil, signed: Bool = true,
                nonce reuse: ChallengeResponse? = nil) throws -> EnrollResponse {
        let host = try guest.hostID
        let challenge = try reuse ?? service.enrollment.createChallenge(ChallengeRequest(hostId: host))
        let key = try PrivateKey.generate(.p256)
        let csr = try CSR.create(key: key, commonName: agent)
        let binding = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(challenge.nonce), agentSPKI: try (bindingKey ?? key).publicKey.spkiDER)
        return try service.enrollment.enroll(EnrollRequest(hostId: host, nonce: challenge.nonce, agentName: agent, csr: csr.pem,
                                                           tee: try guest.evidence(binding: binding, signed: signed)))
    }

    /// A push re-attestation report from a TEE host.
    func report(_ guest: SoftwareTEEGuest) throws -> AttestationVerdict {
        let host = try guest.hostID
        let challenge = try service.enrollment.createChallenge(ChallengeRequest(hostId: host, purpose: "attestation"))
        let binding = EnrollmentBinding.reattestationData(nonce: try Hex.decode(challenge.nonce))
        return try service.reattestation.judgeReport(hostID: host, AttestationReport(nonce: challenge.nonce, tee: try guest.evidence(binding: binding)))
    }
}

/// The EAR claims set a certificate carries (its signature is the broker's; read unverified).
func earPayload(_ pem: String) throws -> [String: Any] {
    let cert = try Certificate(pem: pem)
    let token = try AttestationExtension.ear(extensionValue: try XCTUnwrap(cert.extensionValue(oid: AttestationExtension.oid)))
    let payload = try JWSSigner.base64URLDecode(String(token.split(separator: ".")[1]), field: "payload")
    return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any])
}
