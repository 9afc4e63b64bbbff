internal import COpenSSL
import VouchCore
import VouchTPMWire

/// The three parts of a certificate's signature, read from its DER (RFC 5280 4.1): the
/// tbsCertificate exactly as signed, the outer signatureAlgorithm, the signature algorithm the
/// tbsCertificate names, and the signature value.
public struct CertificateSignedParts: Sendable {
    /// The whole tbsCertificate TLV: the signed bytes.
    public let tbs: [UInt8]
    /// The outer signatureAlgorithm TLV.
    public let signatureAlgorithm: [UInt8]
    /// The tbsCertificate's own `signature` AlgorithmIdentifier TLV (must equal the outer one).
    public let innerSignatureAlgorithm: [UInt8]
    /// The signatureValue BIT STRING's bytes.
    public let signature: [UInt8]
}

/// RSASSA-PSS parameters (RFC 4055 3.1) as an AlgorithmIdentifier names them, with the defaults
/// filled in.
public struct RSAPSSParameters: Sendable, Equatable {
    public var hash: HashAlg
    public var mgf1Hash: HashAlg
    public var saltLength: Int
    public var trailerField: Int

    public init(hash: HashAlg, mgf1Hash: HashAlg, saltLength: Int, trailerField: Int = 1) {
        self.hash = hash
        self.mgf1Hash = mgf1Hash
        self.saltLength = saltLength
        self.trailerField = trailerField
    }

    static let rsassaPSS = OID(1, 2, 840, 113_549, 1, 1, 10)
    static let mgf1 = OID(1, 2, 840, 113_549, 1, 1, 8)
    static let hashes: [(OID, HashAlg)] = [(OID(1, 3, 14, 3, 2, 26), .sha1), (OID(2, 16, 840, 1, 101, 3, 4, 2, 1), .sha256),
                                           (OID(2, 16, 840, 1, 101, 3, 4, 2, 2), .sha384), (OID(2, 16, 840, 1, 101, 3, 4, 2, 3), .sha512)]

    /// The parameters of an AlgorithmIdentifier TLV, or nil when it is not id-RSASSA-PSS with
    /// well-formed parameters (a hash algorithm with absent or NULL parameters, MGF1 over such a
    /// hash). Absent fields take RFC 4055's defaults (SHA-1, MGF1-SHA-1, 20, 1).
    public init?(algorithmIdentifier der: [UInt8]) {
        guard let parsed = try? Self.parse(der) else { return nil }
        self = parsed
    }

    private static func parse(_ der: [UInt8]) throws -> RSAPSSParameters {
        var outer = DER.Reader(der)
        var algorithm = try outer.sequence("signatureAlgorithm")
        guard outer.isAtEnd, try algorithm.element("algorithm") == rsassaPSS.der else { throw VouchError(.invalidValue, "not RSASSA-PSS") }
        var result = RSAPSSParameters(hash: .sha1, mgf1Hash: .sha1, saltLength: 20)
        if !algorithm.isAtEnd {
            var params = try algorithm.sequence("parameters")
            guard algorithm.isAtEnd else { throw VouchError(.invalidValue, "bytes after the PSS parameters") }
            if params.peekTag == DER.contextTag(0, constructed: true) {
                var h = DER.Reader(try params.read(DER.contextTag(0, constructed: true), "hashAlgorithm"))
                result.hash = try hashAlgorithm(&h)
                guard h.isAtEnd else { throw VouchError(.invalidValue, "bytes after hashAlgorithm") }
            }
            if params.peekTag == DER.contextTag(1, constructed: true) {
                var m = DER.Reader(try params.read(DER.contextTag(1, constructed: true), "maskGenAlgorithm"))
                var mgf = try m.sequence("maskGenAlgorithm")
                guard m.isAtEnd, try mgf.element("mgf") == mgf1.der else { throw VouchError(.invalidValue, "mask generation is not MGF1") }
                result.mgf1Hash = try hashAlgorithm(&mgf)
                guard mgf.isAtEnd else { throw VouchError(.invalidValue, "bytes after MGF1's hash") }
            }
            if params.peekTag == DER.contextTag(2, constructed: true) {
                var s = DER.Reader(try params.read(DER.contextTag(2, constructed: true), "saltLength"))
                result.saltLength = try s.integer("saltLength")
                guard s.isAtEnd else { throw VouchError(.invalidValue, "bytes after saltLength") }
            }
            if params.peekTag == DER.contextTag(3, constructed: true) {
                var t = DER.Reader(try params.read(DER.contextTag(3, constructed: true), "trailerField"))
                result.trailerField = try t.integer("trailerField")
                guard t.isAtEnd else { throw VouchError(.invalidValue, "bytes after trailerField") }
            }
            guard params.isAtEnd else { throw VouchError(.invalidValue, "unknown PSS parameter") }
        }
        return result
    }

    /// AlgorithmIdentifier { hash OID, parameters absent or NULL }.
    private static func hashAlgorithm(_ r: inout DER.Reader) throws -> HashAlg {
        var seq = try r.sequence("hash")
        let oid = try seq.element("hash.algorithm")
        if !seq.isAtEnd { guard try seq.element("hash.parameters") == [0x05, 0x00], seq.isAtEnd else { throw VouchError(.invalidValue, "hash parameters") } }
        guard let match = hashes.first(where: { $0.0.der == oid }) else { throw VouchError(.invalidValue, "unknown hash") }
        return match.1
    }
}

extension Certificate {
    /// The signed parts of this certificate's DER. Throws `invalid_value` when the DER is not
    /// shaped as RFC 5280 says.
    public func signedParts() throws -> CertificateSignedParts {
        var outer = DER.Reader(try der)
        var certificate = try outer.sequence("certificate")
        let tbs = try certificate.element("tbsCertificate")
        let algorithm = try certificate.element("signatureAlgorithm")
        let signature = try certificate.wholeByteBitString("signatureValue")
        guard certificate.isAtEnd, outer.isAtEnd else {
            throw VouchError(.trailingBytes, "certificate has bytes after its signature", context: ["field": "certificate"])
        }
        var tbsOuter = DER.Reader(tbs)
        var body = try tbsOuter.sequence("tbsCertificate")
        if body.peekTag == DER.contextTag(0, constructed: true) { _ = try body.element("tbsCertificate.version") }
        _ = try body.element("tbsCertificate.serialNumber")
        let inner = try body.element("tbsCertificate.signature")
        return CertificateSignedParts(tbs: tbs, signatureAlgorithm: algorithm, innerSignatureAlgorithm: inner, signature: signature)
    }

    /// The serial number's big-endian magnitude (`[]` for serial 0).
    public var serialBytes: [UInt8] {
        guard let bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x509), nil) else { return [] }
        defer { BN_free(bn) }
        var bytes = [UInt8](repeating: 0, count: Int((BN_num_bits(bn) + 7) / 8))
        BN_bn2bin(bn, &bytes)
        return bytes
    }
}

/// The signed parts of a DER CRL (RFC 5280 5.1: CertificateList { tbsCertList, signatureAlgorithm,
/// signatureValue }, the tbsCertList's own `signature` algorithm inside), so that a verifier can
/// require one exact signature algorithm instead of whatever the CRL names. Throws
/// `invalid_value`/`trailing_bytes` when the DER is not shaped so.
public func crlSignedParts(der: [UInt8]) throws -> CertificateSignedParts {
    var outer = DER.Reader(der)
    var list = try outer.sequence("certificateList")
    let tbs = try list.element("tbsCertList")
    let algorithm = try list.element("signatureAlgorithm")
    let signature = try list.wholeByteBitString("signatureValue")
    guard list.isAtEnd, outer.isAtEnd else {
        throw VouchError(.trailingBytes, "CRL has bytes after its signature", context: ["field": "crl"])
    }
    var tbsOuter = DER.Reader(tbs)
    var body = try tbsOuter.sequence("tbsCertList")
    if body.peekTag == 0x02 { _ = try body.element("tbsCertList.version") }
    let inner = try body.element("tbsCertList.signature")
    return CertificateSignedParts(tbs: tbs, signatureAlgorithm: algorithm, innerSignatureAlgorithm: inner, signature: signature)
}

/// r and s (big-endian magnitudes) of a DER ECDSA-Sig-Value; the inverse of `ecdsaSignatureDER`.
public func ecdsaSignatureComponents(der: [UInt8]) throws -> (r: [UInt8], s: [UInt8]) {
    let sig: OpaquePointer? = der.withUnsafeBufferPointer { buf in
        var p: UnsafePointer<UInt8>? = buf.baseAddress
        return d2i_ECDSA_SIG(nil, &p, buf.count)
    }
    let s = try notNil(sig, "d2i_ECDSA_SIG")
    defer { ECDSA_SIG_free(s) }
    func bytes(_ bn: OpaquePointer?) -> [UInt8] {
        guard let bn else { return [] }
        var out = [UInt8](repeating: 0, count: Int((BN_num_bits(bn) + 7) / 8))
        BN_bn2bin(bn, &out)
        return out
    }
    return (bytes(ECDSA_SIG_get0_r(s)), bytes(ECDSA_SIG_get0_s(s)))
}
