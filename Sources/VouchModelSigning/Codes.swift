import VouchCore

/// Error and violation codes of OpenSSF model signatures (the `model-signing` format), in the
/// order `ModelSignatureVerifier` checks them.
extension ErrorCode {
    /// The signature file is not a Sigstore bundle holding a DSSE envelope this verifier reads.
    public static let modelSignatureMalformed = ErrorCode("model_signature_malformed", status: 400)
    /// The bundle's signer is none the verifier trusts: another key, a certificate that does not
    /// chain to the trusted roots or names another identity, a Sigstore identity or issuer not
    /// expected.
    public static let modelSignerUntrusted = ErrorCode("model_signer_untrusted", status: 403)
    /// The signer is the trusted one, but the signature (or its transparency-log proof, or its
    /// certificate's timestamps) does not verify.
    public static let modelSignatureInvalid = ErrorCode("model_signature_invalid", status: 403)
    /// The signed statement is not an in-toto Statement with the model-signing v1.0 predicate, its
    /// subject's digest is not the digest of its resources, or it uses a serialization Vouch does
    /// not compare (shards, another hash).
    public static let modelManifestInvalid = ErrorCode("model_manifest_invalid", status: 403)
    /// The signed model name is not the one expected (a manifest for a different model).
    public static let modelNameMismatch = ErrorCode("model_name_mismatch", status: 403)
    /// A file's digest differs from the signed one.
    public static let modelFileModified = ErrorCode("model_file_modified", status: 403)
    /// A signed file is absent.
    public static let modelFileMissing = ErrorCode("model_file_missing", status: 403)
    /// A file is present that the manifest does not list (nor ignore).
    public static let modelFileExtra = ErrorCode("model_file_extra", status: 403)
    /// A signed file is present under another name (same digest, other path).
    public static let modelFileRenamed = ErrorCode("model_file_renamed", status: 403)
}
