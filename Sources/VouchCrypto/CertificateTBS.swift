internal import COpenSSL
import VouchCore

extension Certificate {
    /// The DER TBSCertificate with the extension `oid` removed, re-encoded — what a CT log signed
    /// for a precertificate whose final certificate embeds the SCT list (RFC 6962 section 3.2:
    /// the precertificate's TBSCertificate without that extension). Throws `invalid_value` when
    /// the certificate has no such extension.
    public func tbsCertificate(removingExtension oid: String) throws -> [UInt8] {
        let copy = Certificate(owning: try notNil(X509_dup(x509), "X509_dup"))
        guard let obj = OBJ_txt2obj(oid, 1) else { ERR_clear_error(); throw VouchError(.invalidValue, "not an OID", context: ["field": "oid", "got": oid]) }
        defer { ASN1_OBJECT_free(obj) }
        let i = X509_get_ext_by_OBJ(copy.x509, obj, -1)
        guard i >= 0, let removed = X509_delete_ext(copy.x509, i) else {
            throw VouchError(.invalidValue, "the certificate has no such extension", context: ["field": "extensions", "expected": oid])
        }
        X509_EXTENSION_free(removed)
        return try derEncode("i2d_re_X509_tbs") { i2d_re_X509_tbs(copy.x509, $0) }
    }
}
