import Foundation
import Synchronization
import VouchAPI
import VouchCore
import VouchCrypto
import VouchTPM
import VouchTPMWire

/// An Azure confidential VM's evidence from its vTPM (`vouch-attester --tee azure-snp-vtpm`), as
/// Microsoft's guest attestation documents it: the request's user data (64 bytes,
/// `EnrollmentBinding.teeReportData(binding:)`) is written into NV index 0x01400002 — undefined if
/// it exists, defined as an ordinary 64-byte index with owner and auth read/write, then written
/// under the owner hierarchy — and the paravisor's fresh HCL report, whose runtime claims carry
/// that user data and the vTPM's AK and EK (`HCLAkPub`, `HCLEkPub`), is read whole from NV index
/// 0x01400001. The vTPM's AK, persisted at 0x81000003, then quotes the PCRs with the request's
/// binding as qualifying data. The VCEK is given (`--vcek`): the HCL report does not carry it.
/// The firmware event log and the model log go with the quote as on a TPM host. The vTPM is
/// opened per piece of evidence and used by one request at a time.
public final class AzureVTPMEvidenceSource: TEEEvidenceSource {
    public var kind: TEEKind { .azureSNPVTPM }
    /// Where the paravisor publishes the HCL report.
    public static let hclReportIndex: UInt32 = 0x0140_0001
    /// Where the guest writes the user data the next HCL report binds.
    public static let userDataIndex: UInt32 = 0x0140_0002
    /// The vTPM's attestation key, provisioned by Azure.
    public static let attestationKeyHandle: UInt32 = 0x8100_0003

    let tcti: String
    let endorsement: [UInt8]
    let eventLogPath: String?
    let modelLogPath: String?
    private let lock = Mutex(())

    public init(tcti: String, endorsement: [UInt8], eventLogPath: String?, modelLogPath: String?) {
        self.tcti = tcti
        self.endorsement = endorsement
        self.eventLogPath = eventLogPath
        self.modelLogPath = modelLogPath
    }

    /// An Azure CVM's evidence needs the request's binding (its vTPM quote's qualifying data).
    public func evidence(reportData: [UInt8]) throws -> TEEEvidence {
        throw VouchError(.unsupported, "an Azure CVM's evidence is made for a binding (its vTPM quote's qualifying data)")
    }

    public func evidence(binding: [UInt8], pcrSelection: PCRSelection?) throws -> TEEEvidence {
        let (report, quote) = try lock.withLock { _ in
            let tpm = try TPMDevice(tcti: tcti)
            defer { tpm.close() }
            try tpm.defineAndWriteNV(Self.userDataIndex, EnrollmentBinding.teeReportData(binding: binding))
            let report = try tpm.readNV(Self.hclReportIndex)
            let (ak, _) = try tpm.persistentKey(handle: Self.attestationKeyHandle)
            return (report, try Attester.quote(tpm: tpm, ak: ak, qualifyingData: binding, selection: pcrSelection ?? .azureRegistration))
        }
        return TEEEvidence(fields: TEEEvidenceFields(report: Base64.encode(report), endorsement: Base64.encode(endorsement),
                                                     vtpmQuote: try Attester.quoteBody(quote, eventLogPath: eventLogPath, modelLogPath: modelLogPath)),
                           chipID: nil)
    }
}
