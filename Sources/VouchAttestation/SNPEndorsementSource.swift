import Foundation
import VouchCore
import VouchTEEWire

extension ErrorCode {
    /// An SEV-SNP report came without the VCEK that signed it and the broker could not get one:
    /// it fetches none, the report is VLEK-signed (VLEKs are not fetchable: AMD hands them to
    /// cloud providers only) or hides its chip (MASK_CHIP_ID), or AMD's KDS gave none (not
    /// reachable, refused, over the broker's fetch rate, nothing cached).
    public static let snpVCEKUnavailable = ErrorCode("snp_vcek_unavailable", status: 403)
}

/// What the broker asks an `SNPEndorsementSource` for when a report comes without its VCEK: the
/// VCEK of the chip the report names at the TCB it reports. Read from the unverified report: a
/// source only fetches, and `SNPVerifier` then checks what it got (the VCEK's hwID and SPLs must
/// equal the report's CHIP_ID and REPORTED_TCB, its chain AMD's pinned ARK).
public struct SNPVCEKRequest: Sendable, Hashable {
    /// The product lines to ask for, in order.
    public let products: [SNPProduct]
    /// The report's CHIP_ID, 64 bytes.
    public let chipID: [UInt8]
    public let reportedTCB: SNPTCBVersion

    public init(products: [SNPProduct], chipID: [UInt8], reportedTCB: SNPTCBVersion) {
        self.products = products
        self.chipID = chipID
        self.reportedTCB = reportedTCB
    }

    /// The request for a VCEK-signed report: the product line its CPUID names (report version 3
    /// and later), else — a version 2 report, which names none and which Turin never makes —
    /// Milan, then Genoa. Nil for a VLEK-signed report, a CHIP_ID that is all zero (masked), or
    /// a CPUID Vouch does not know.
    public init?(report: SNPReport) {
        guard report.signingKey == .vcek, report.chipID.contains(where: { $0 != 0 }) else { return nil }
        let products: [SNPProduct]
        if let cpuid = report.cpuid {
            guard let product = SNPProduct(cpuidFamily: cpuid.family, model: cpuid.model) else { return nil }
            products = [product]
        } else {
            products = [.milan, .genoa]
        }
        self.init(products: products, chipID: report.chipID, reportedTCB: report.reportedTCB)
    }
}

/// Where the broker gets AMD's endorsements that evidence did not bring: a VCEK for a report sent
/// without one, and the product line's CRL when none was sent. What a source returns is
/// unverified: `SNPVerifier` checks the VCEK's chain, hwID and TCB, and the CRL's signature and
/// window. `AMDKDSFetcher` (VouchCollateral) fetches from AMD's Key Distribution Service.
public protocol SNPEndorsementSource: Sendable {
    /// The VCEK (DER) for `request` at `now` (the broker's clock), or nil when none is to be had.
    func vcek(_ request: SNPVCEKRequest, at now: Date) -> [UInt8]?
    /// AMD's CRL for `product` (DER) that is current at `now`, or nil (revocation is then not
    /// checked, as for evidence without a CRL).
    func crl(product: SNPProduct, at now: Date) -> [UInt8]?
}
