import Foundation
import VouchCore
import VouchTEEWire

extension ErrorCode {
    /// An SEV-SNP report came without the VCEK that signed it and the broker could not get one:
    /// it fetches none, the report is VLEK-signed (VLEKs are not fetchable: AMD hands them to
    /// cloud providers only) or hides its chip (MASK_CHIP_ID), or AMD's KDS gave none (not
    /// reachable, refused, over the broker's fetch rate, nothing cached).
    public static let snpVCEKUnavailable = ErrorCode("snp_vcek_unavailable", status: 403)
    /// The broker fetches AMD's endorsements and had no current CRL for the evidence's product
    /// line and signer (AMD's KDS not reachable or refusing, nothing cached is current): the
    /// ASK's/ASVK's revocation cannot be checked, and a broker that fetches never passes evidence
    /// unchecked.
    public static let snpCRLUnavailable = ErrorCode("snp_crl_unavailable", status: 403)
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
/// without one, and the product line's CRL. What a source returns is unverified: `SNPVerifier`
/// checks the VCEK's chain, hwID and TCB, and the CRL's signature and window.
/// `AMDKDSFetcher` (VouchCollateral) fetches from AMD's Key Distribution Service. A broker with a
/// source requires its CRL of every report verified under AMD's roots (`snp_crl_unavailable`).
public protocol SNPEndorsementSource: Sendable {
    /// The VCEK (DER) for `request` at `now` (the broker's clock), or nil when none is to be had.
    func vcek(_ request: SNPVCEKRequest, at now: Date) -> [UInt8]?
    /// AMD's CRL (DER) for `product` and the key kind that signed the report — for `.vcek` the
    /// ARK's list of revoked ASKs, for `.vlek` its list of revoked ASVKs (AMD publishes them
    /// apart; both are the ARK's, and nothing in them tells one from the other) — current at
    /// `now`, or nil when none is to be had.
    func crl(product: SNPProduct, signer: SNPSigningKey, at now: Date) -> [UInt8]?
}
