internal import COpenSSL
import Foundation
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

/// Reading a certificate's DER fields without OpenSSL, for certificates this broker issued and
/// stored (a log entry from a certificate record): d2i_X509 decodes the subject key through
/// OpenSSL 3's provider decoders, about 6 % of an enrollment's CPU, for two fields that need no key.
public enum CertificateDER {
    /// The DER of the first CERTIFICATE block of `pem`.
    public static func fromPEM(_ pem: String) throws -> [UInt8] {
        guard let der = PEMBlock.first(Array(pem.utf8), labels: ["CERTIFICATE"]) else {
            throw VouchError(.invalidValue, "not a PEM certificate", context: ["field": "certificate"])
        }
        return der
    }

    /// The value (the OCTET STRING's content) of the extension with dotted `oid`, or nil when the
    /// certificate has no such extension. Throws when the DER is not a certificate's shape.
    public static func extensionValue(_ der: [UInt8], oid: String) throws -> [UInt8]? {
        guard let wanted = DER.objectIdentifier(dotted: oid) else {
            throw VouchError(.invalidValue, "not an OID", context: ["field": "oid", "got": oid])
        }
        var whole = DER.Reader(der)
        var certificate = try whole.sequence("certificate")
        var tbs = try certificate.sequence("certificate.tbsCertificate")
        while let tag = tbs.peekTag, tag != DER.contextTag(3, constructed: true) { _ = try tbs.element("certificate.tbsCertificate field") }
        guard !tbs.isAtEnd else { return nil }
        var wrapper = DER.Reader(try tbs.read(DER.contextTag(3, constructed: true), "certificate.extensions"))
        var extensions = try wrapper.sequence("certificate.extensions")
        while !extensions.isAtEnd {
            var ext = try extensions.sequence("certificate.extension")
            guard try ext.element("certificate.extension.id") == wanted else { continue }
            if ext.peekTag == DER.booleanTag { _ = try ext.boolean("certificate.extension.critical") }
            return try ext.octetString("certificate.extension.value")
        }
        return nil
    }
}
