import VouchCore

extension ErrorCode {
    // Host registration
    public static let ekCertificateInvalid = ErrorCode("ek_certificate_invalid")
    public static let ekUntrusted = ErrorCode("ek_untrusted")
    public static let ekMismatch = ErrorCode("ek_mismatch")
    /// The EK public area is not one of the TCG EK Credential Profile templates Vouch accepts.
    public static let ekTemplateMismatch = ErrorCode("ek_template_mismatch")
    /// The EK certificate lacks what the TCG EK Credential Profile requires of it.
    public static let ekCertificateProfile = ErrorCode("ek_certificate_profile")
    public static let akRejected = ErrorCode("ak_rejected")
    // Quote verification
    public static let quoteMalformed = ErrorCode("quote_malformed")
    public static let quoteSignatureInvalid = ErrorCode("quote_signature_invalid")
    public static let quoteNotTPMGenerated = ErrorCode("quote_not_tpm_generated")
    public static let quoteWrongType = ErrorCode("quote_wrong_type")
    public static let qualifyingDataMismatch = ErrorCode("qualifying_data_mismatch")
    public static let pcrDigestMismatch = ErrorCode("pcr_digest_mismatch")
    public static let pcrBankMismatch = ErrorCode("pcr_bank_mismatch")
}
