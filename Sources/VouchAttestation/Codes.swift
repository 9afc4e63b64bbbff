import VouchCore

extension ErrorCode {
    // Host registration
    public static let ekCertificateInvalid = ErrorCode("ek_certificate_invalid", status: 403)
    public static let ekUntrusted = ErrorCode("ek_untrusted", status: 403)
    public static let ekMismatch = ErrorCode("ek_mismatch", status: 403)
    /// The EK public area is not one of the TCG EK Credential Profile templates Vouch accepts.
    public static let ekTemplateMismatch = ErrorCode("ek_template_mismatch", status: 403)
    /// The EK certificate lacks what the TCG EK Credential Profile requires of it.
    public static let ekCertificateProfile = ErrorCode("ek_certificate_profile", status: 403)
    public static let akRejected = ErrorCode("ak_rejected", status: 403)
    // Quote verification
    public static let quoteMalformed = ErrorCode("quote_malformed", status: 400)
    public static let quoteSignatureInvalid = ErrorCode("quote_signature_invalid", status: 403)
    public static let quoteNotTPMGenerated = ErrorCode("quote_not_tpm_generated", status: 403)
    public static let quoteWrongType = ErrorCode("quote_wrong_type", status: 403)
    public static let qualifyingDataMismatch = ErrorCode("qualifying_data_mismatch", status: 403)
    public static let pcrDigestMismatch = ErrorCode("pcr_digest_mismatch", status: 403)
    public static let pcrBankMismatch = ErrorCode("pcr_bank_mismatch", status: 403)
}
