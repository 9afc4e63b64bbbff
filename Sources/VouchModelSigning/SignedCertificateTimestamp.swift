import VouchCore

/// An RFC 6962 signed certificate timestamp (v1) as a certificate embeds it: a CT log's promise,
/// signed, to publish the precertificate. Fulcio embeds one per certificate it issues, from
/// Sigstore's CT log. Parsing is bounded and checks the TLS encoding only; the signature is
/// verified by the caller over `signedData(issuerKeyHash:tbsCertificate:)`.
public struct SignedCertificateTimestamp: Sendable, Equatable {
    /// The X.509 extension that carries the list (RFC 6962 section 3.3).
    public static let extensionOID = "1.3.6.1.4.1.11129.2.4.2"
    /// Most SCTs read from one list.
    public static let maxCount = 16

    /// TLS HashAlgorithm and SignatureAlgorithm codes (RFC 5246 7.4.1.4.1).
    public static let hashSHA256: UInt8 = 4
    public static let signatureRSA: UInt8 = 1
    public static let signatureECDSA: UInt8 = 3

    /// The log's ID: the SHA-256 of its key's DER SubjectPublicKeyInfo.
    public let logID: [UInt8]
    /// Milliseconds since the epoch.
    public let timestamp: UInt64
    public let extensions: [UInt8]
    public let hashAlgorithm: UInt8
    public let signatureAlgorithm: UInt8
    public let signature: [UInt8]

    /// The SCTs of the extension's value (the DER of the extnValue's contents: an OCTET STRING
    /// holding the TLS `SignedCertificateTimestampList`). Throws `invalid_value` for anything
    /// else, `truncated` or `trailing_bytes` for a bad length; an SCT of a version other than v1
    /// is refused.
    public static func list(extensionValue der: [UInt8]) throws -> [SignedCertificateTimestamp] {
        var outer = DER.Reader(der)
        let tls = try outer.octetString("signedCertificateTimestampList")
        guard outer.isAtEnd else { throw VouchError(.trailingBytes, "bytes after the SCT list", context: ["field": "signedCertificateTimestampList"]) }
        var list = ByteReader(tls)
        var items = ByteReader(try list.sized("signedCertificateTimestampList"))
        try list.expectEnd("signedCertificateTimestampList")
        var out: [SignedCertificateTimestamp] = []
        while !items.isAtEnd {
            guard out.count < maxCount else { throw bad("more than \(maxCount) SCTs") }
            var r = ByteReader(try items.sized("serializedSCT"))
            guard try r.u8("sct.version") == 0 else { throw bad("an SCT is not v1") }
            let logID = try r.bytes(32, "sct.logID")
            let timestamp = try r.u64("sct.timestamp")
            let extensions = try r.sized("sct.extensions")
            let hash = try r.u8("sct.signature.hash")
            let sigAlg = try r.u8("sct.signature.signature")
            let signature = try r.sized("sct.signature", max: 1024)
            try r.expectEnd("sct")
            out.append(SignedCertificateTimestamp(logID: logID, timestamp: timestamp, extensions: extensions, hashAlgorithm: hash,
                                                  signatureAlgorithm: sigAlg, signature: signature))
        }
        guard !out.isEmpty else { throw bad("the SCT list is empty") }
        return out
    }

    /// What the log signed for a precertificate entry (RFC 6962 section 3.2): version v1,
    /// signature type certificate_timestamp, the timestamp, entry type precert_entry, the
    /// SHA-256 of the issuer's SubjectPublicKeyInfo, the TBSCertificate without the SCT
    /// extension (24-bit length) and the extensions (16-bit length).
    public func signedData(issuerKeyHash: [UInt8], tbsCertificate tbs: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.u8(0)          // sct_version v1
        w.u8(0)          // signature_type certificate_timestamp
        w.u64(timestamp)
        w.u16(1)         // entry_type precert_entry
        w.raw(issuerKeyHash)
        w.raw([UInt8(tbs.count >> 16 & 0xff), UInt8(tbs.count >> 8 & 0xff), UInt8(tbs.count & 0xff)])
        w.raw(tbs)
        w.sized(extensions)
        return w.bytes
    }

    static func bad(_ message: String) -> VouchError {
        VouchError(.invalidValue, message, context: ["field": "signedCertificateTimestampList"])
    }
}
