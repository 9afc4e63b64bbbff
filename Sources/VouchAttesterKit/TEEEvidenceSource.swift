import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchRuntime
import VouchTEEWire
import VouchTPMWire

/// The CPU TEE a confidential VM runs on, named as the broker names the evidence kind.
public enum TEEKind: String, Sendable, CaseIterable {
    case sevSNP = "sev-snp"
    case tdx
    /// An Azure confidential VM: the paravisor's HCL report and the vTPM's quotes.
    case azureSNPVTPM = "azure-snp-vtpm"
}

/// A CPU TEE's evidence for one REPORT_DATA, in the broker's wire form, and what the attester
/// must know of it to name the host it stands for.
public struct TEEEvidence: Sendable {
    public var fields: TEEEvidenceFields
    /// SEV-SNP: the CHIP_ID of a VCEK-signed report (the host is then its chip); nil for a
    /// VLEK-signed report and for TDX (the host is then its host key).
    public var chipID: [UInt8]?

    public init(fields: TEEEvidenceFields, chipID: [UInt8]?) {
        self.fields = fields
        self.chipID = chipID
    }
}

/// Where a confidential VM's reports come from: the kernel (`TSMEvidenceSource`), an Azure CVM's
/// vTPM (`AzureVTPMEvidenceSource`) or, for tests and demos only, the software TEE
/// (`SimulatedTEE`, `SimulatedAzureCVM`).
public protocol TEEEvidenceSource: Sendable {
    var kind: TEEKind { get }
    /// A report (SEV-SNP, with its endorsement) or quote (TDX) whose REPORT_DATA is `reportData`
    /// (64 bytes).
    func evidence(reportData: [UInt8]) throws -> TEEEvidence
    /// The evidence for one request's binding: by default a report whose REPORT_DATA is
    /// `EnrollmentBinding.teeReportData(binding:)`. An Azure CVM's also carries a vTPM quote
    /// with qualifying data `binding` over `pcrSelection` (nil, at registration: SHA-256 PCRs 0–7).
    func evidence(binding: [UInt8], pcrSelection: PCRSelection?) throws -> TEEEvidence
}

extension TEEEvidenceSource {
    public func evidence(binding: [UInt8], pcrSelection: PCRSelection?) throws -> TEEEvidence {
        try evidence(reportData: EnrollmentBinding.teeReportData(binding: binding))
    }
}

extension PCRSelection {
    /// What an Azure CVM's vTPM quotes at registration, when the broker names no PCRs.
    public static let azureRegistration = PCRSelection(banks: [PCRBankSelection(hash: .sha256, pcrs: Array(0...7))])
}

/// A confidential VM's reports from configfs-tsm (`TSMReportSource`):
/// - SEV-SNP: the ATTESTATION_REPORT (`outblob`), endorsed by the VCEK or VLEK certificate given
///   (`endorsement`: `vouch-attester --vcek FILE`, DER or PEM) or else by the certificate table
///   the host hands out with an extended report (`auxblob`), which must hold the certificate of
///   the key the report names;
/// - TDX: the DCAP quote (`outblob`), with the CC event log when a file is named.
/// The provider must be the kind's (`sev_guest`, `tdx_guest`); anything else is `tsm_unavailable`.
/// The report is parsed here only to learn who signed it (for the host id); the broker verifies it.
public struct TSMEvidenceSource: TEEEvidenceSource {
    public let kind: TEEKind
    let tsm: TSMReportSource
    let endorsement: [UInt8]?
    let eventLogPath: String?

    public init(kind: TEEKind, tsm: TSMReportSource = TSMReportSource(), endorsement: [UInt8]? = nil, eventLogPath: String? = nil) {
        self.kind = kind
        self.tsm = tsm
        self.endorsement = endorsement
        self.eventLogPath = eventLogPath
    }

    public func evidence(reportData: [UInt8]) throws -> TEEEvidence {
        guard kind != .azureSNPVTPM else {
            throw VouchError(.tsmUnavailable, "an Azure CVM's reports come from its vTPM, not configfs-tsm")
        }
        let report = try tsm.report(reportData: reportData)
        let provider = kind == .sevSNP ? "sev_guest" : "tdx_guest"
        guard report.provider == provider else {
            throw VouchError(.tsmUnavailable, "the kernel's TSM provider is \(report.provider), not \(provider): this guest is not \(kind.rawValue)",
                             context: ["expected": provider, "got": report.provider])
        }
        switch kind {
        case .sevSNP:
            let parsed = try SNPReport(bytes: report.outblob)
            let chipID = parsed.signingKey == .vcek ? parsed.chipID : nil
            if let endorsement {
                return TEEEvidence(fields: TEEEvidenceFields(report: Base64.encode(report.outblob), endorsement: Base64.encode(endorsement)), chipID: chipID)
            }
            guard let table = report.auxblob else {
                throw VouchError(.tsmUnavailable, "the host handed out no certificate table (auxblob) with the report: give the VCEK or VLEK certificate with --vcek FILE")
            }
            let wanted: SNPCertificateTable.Kind = parsed.signingKey == .vlek ? .vlek : .vcek
            guard (try SNPCertificateTable(table)).certificate(wanted) != nil else {
                throw VouchError(.tsmUnavailable, "the host's certificate table holds no \(wanted == .vlek ? "VLEK" : "VCEK"): give it with --vcek FILE",
                                 context: ["expected": wanted == .vlek ? "vlek" : "vcek"])
            }
            return TEEEvidence(fields: TEEEvidenceFields(report: Base64.encode(report.outblob), certificateTable: Base64.encode(table)), chipID: chipID)
        case .tdx, .azureSNPVTPM:
            let log = try eventLogPath.map { try Files.read($0) }
            return TEEEvidence(fields: TEEEvidenceFields(quote: Base64.encode(report.outblob), eventLog: log.map(Base64.encode)), chipID: nil)
        }
    }
}
