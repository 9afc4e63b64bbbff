import VouchCore

// Wire formats of CPU TEE evidence: AMD SEV-SNP attestation reports (SNPReport.swift) and Intel
// TDX DCAP quotes with their collateral (TDXQuote.swift, TDXCollateral.swift). Pure parsing with
// bounded readers: nothing here checks a signature, so every value parsed here is still
// unverified; the verifiers in VouchAttestation decide what is believed.

extension ErrorCode {
    /// TEE evidence (a report, a quote, its collateral) that does not parse: short, a length field
    /// past the end, an unknown version or type. Refused before any check reads it.
    public static let teeEvidenceMalformed = ErrorCode("tee_evidence_malformed", status: 400)
}
