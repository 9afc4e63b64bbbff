internal import COpenSSL
import Foundation
import VouchCore
import VouchTPMWire

/// Why a name or URL cannot be written into a certificate extension. Closed (a struct over a
/// private enum): callers compare with the static members and keep a default case, so the set
/// can grow. Carried as the `cause` of a `VouchError` with code `invalid_value`.
public struct CertificateNameError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Reason: Hashable, Sendable { case empty, nonASCII, controlCharacter, whitespace, notAnIPAddress }
    private let reason: Reason
    private init(_ reason: Reason) { self.reason = reason }

    /// The name or URL is empty.
    public static let empty = CertificateNameError(.empty)
    /// A character outside ASCII: an IA5String (URI, DNS name) cannot hold it.
    public static let nonASCII = CertificateNameError(.nonASCII)
    /// A control character (U+0000–U+001F, U+007F).
    public static let controlCharacter = CertificateNameError(.controlCharacter)
    /// A space: no URI or DNS name holds one (RFC 3986, RFC 1034).
    public static let whitespace = CertificateNameError(.whitespace)
    /// An IP SAN that is neither a dotted IPv4 address nor an IPv6 address.
    public static let notAnIPAddress = CertificateNameError(.notAnIPAddress)

    public var description: String {
        switch reason {
        case .empty: "empty"
        case .nonASCII: "non-ASCII character"
        case .controlCharacter: "control character"
        case .whitespace: "space"
        case .notAnIPAddress: "not an IP address"
        }
    }
}

/// An OBJECT IDENTIFIER: its dotted form and its DER encoding.
struct OID: Hashable, Sendable, CustomStringConvertible {
    let description: String
    /// The whole TLV (tag 06).
    let der: [UInt8]
    init(_ arcs: UInt...) {
        description = arcs.map(String.init).joined(separator: ".")
        der = DER.objectIdentifier(arcs)
    }
    /// From dotted decimal, arcs of any size; nil if it is not a valid OID.
    init?(dotted: String) {
        guard let der = DER.objectIdentifier(dotted: dotted) else { return nil }
        description = dotted
        self.der = der
    }
    static func == (a: OID, b: OID) -> Bool { a.der == b.der }
    func hash(into h: inout Hasher) { h.combine(der) }

    static let basicConstraints = OID(2, 5, 29, 19)
    static let keyUsage = OID(2, 5, 29, 15)
    static let extendedKeyUsage = OID(2, 5, 29, 37)
    static let subjectAltName = OID(2, 5, 29, 17)
    static let crlDistributionPoints = OID(2, 5, 29, 31)
    static let subjectKeyIdentifier = OID(2, 5, 29, 14)
    static let authorityKeyIdentifier = OID(2, 5, 29, 35)
    static let authorityInfoAccess = OID(1, 3, 6, 1, 5, 5, 7, 1, 1)
    static let ocsp = OID(1, 3, 6, 1, 5, 5, 7, 48, 1)
    static let serverAuth = OID(1, 3, 6, 1, 5, 5, 7, 3, 1)
    static let clientAuth = OID(1, 3, 6, 1, 5, 5, 7, 3, 2)
}

/// An IA5String checked to be printable ASCII without spaces (what a URI or DNS name may hold).
struct IA5Name: Hashable, Sendable {
    let value: String

    /// `field` names the profile field in the error ("uriSAN", "crlDistributionPoint", …).
    init(_ value: String, field: String) throws {
        var problem: CertificateNameError? = value.isEmpty ? .empty : nil
        for b in value.utf8 where problem == nil {
            if b >= 0x80 { problem = .nonASCII } else if b < 0x20 || b == 0x7f { problem = .controlCharacter } else if b == 0x20 { problem = .whitespace }
        }
        if let problem {
            throw VouchError(.invalidValue, "\(field) contains characters not allowed in a certificate name", context: ["field": field, "got": value],
                             cause: problem)
        }
        self.value = value
    }
}

/// An IP address in network byte order: 4 bytes (IPv4) or 16 (IPv6), as iPAddress holds it.
struct IPAddressName: Hashable, Sendable {
    let bytes: [UInt8]

    init(_ text: String, field: String) throws {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
        } else {
            throw VouchError(.invalidValue, "\(field) contains characters not allowed in a certificate name", context: ["field": field, "got": text],
                             cause: CertificateNameError.notAnIPAddress)
        }
    }
}

/// GeneralName (RFC 5280 4.2.1.6), the choices Vouch writes.
enum GeneralName: Hashable, Sendable {
    case uniformResourceIdentifier(IA5Name)
    case dnsName(IA5Name)
    case ipAddress(IPAddressName)

    /// Each choice is an IMPLICIT context tag over a primitive type.
    var der: [UInt8] {
        switch self {
        case let .dnsName(n): DER.ia5String(n.value, tag: DER.contextTag(2, constructed: false))
        case let .uniformResourceIdentifier(u): DER.ia5String(u.value, tag: DER.contextTag(6, constructed: false))
        case let .ipAddress(ip): DER.tlv(DER.contextTag(7, constructed: false), ip.bytes)
        }
    }
}

/// KeyUsage named bits (RFC 5280 4.2.1.3).
struct KeyUsage: OptionSet, Hashable, Sendable {
    let rawValue: UInt16
    static let digitalSignature = KeyUsage(rawValue: 1 << 0)
    static let nonRepudiation = KeyUsage(rawValue: 1 << 1)
    static let keyEncipherment = KeyUsage(rawValue: 1 << 2)
    static let dataEncipherment = KeyUsage(rawValue: 1 << 3)
    static let keyAgreement = KeyUsage(rawValue: 1 << 4)
    static let keyCertSign = KeyUsage(rawValue: 1 << 5)
    static let cRLSign = KeyUsage(rawValue: 1 << 6)
    static let encipherOnly = KeyUsage(rawValue: 1 << 7)
    static let decipherOnly = KeyUsage(rawValue: 1 << 8)

    /// The named-bit BIT STRING: bit n of the ASN.1 value is `1 << n` here.
    var der: [UInt8] { DER.namedBits(Set((0..<9).filter { rawValue & (1 << $0) != 0 })) }
}

/// One X.509 v3 extension as a value: its OID, criticality and the DER of its extnValue.
struct CertificateExtension: Hashable, Sendable {
    let oid: OID
    let critical: Bool
    let value: [UInt8]

    /// SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL }; DER omits a
    /// FALSE cA, so an end entity's value is the empty SEQUENCE.
    static func basicConstraints(isCA: Bool, pathLength: Int? = nil, critical: Bool) -> Self {
        precondition(isCA || pathLength == nil)
        var items: [[UInt8]] = []
        if isCA { items.append(DER.boolean(true)) }
        if let pathLength { items.append(DER.integer(pathLength)) }
        return Self(oid: .basicConstraints, critical: critical, value: DER.sequence(items))
    }

    static func keyUsage(_ usage: KeyUsage, critical: Bool) -> Self {
        Self(oid: .keyUsage, critical: critical, value: usage.der)
    }

    /// SEQUENCE OF KeyPurposeId, in the order given.
    static func extendedKeyUsage(_ purposes: [OID], critical: Bool = false) -> Self {
        Self(oid: .extendedKeyUsage, critical: critical, value: DER.sequence(purposes.map(\.der)))
    }

    static func subjectAltName(_ names: [GeneralName], critical: Bool = false) -> Self {
        Self(oid: .subjectAltName, critical: critical, value: DER.sequence(names.map(\.der)))
    }

    /// One DistributionPoint per URL, each a distributionPoint [0] { fullName [0] { URI } }
    /// (DistributionPointName is a CHOICE, so its tag is explicit; GeneralNames is implicit).
    static func crlDistributionPoints(_ urls: [IA5Name], critical: Bool = false) -> Self {
        let points = urls.map { url in
            let fullName = DER.tlv(DER.contextTag(0, constructed: true), GeneralName.uniformResourceIdentifier(url).der)
            return DER.sequence([DER.tlv(DER.contextTag(0, constructed: true), fullName)])
        }
        return Self(oid: .crlDistributionPoints, critical: critical, value: DER.sequence(points))
    }

    /// AccessDescription { id-ad-ocsp, URI } per responder.
    static func authorityInfoAccess(ocsp urls: [IA5Name], critical: Bool = false) -> Self {
        let descriptions = urls.map { DER.sequence([OID.ocsp.der, GeneralName.uniformResourceIdentifier($0).der]) }
        return Self(oid: .authorityInfoAccess, critical: critical, value: DER.sequence(descriptions))
    }

    static func subjectKeyIdentifier(_ keyID: [UInt8]) -> Self {
        Self(oid: .subjectKeyIdentifier, critical: false, value: DER.octetString(keyID))
    }

    /// SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING } (no issuer name or serial).
    static func authorityKeyIdentifier(keyID: [UInt8]) -> Self {
        Self(oid: .authorityKeyIdentifier, critical: false, value: DER.sequence([DER.tlv(DER.contextTag(0, constructed: false), keyID)]))
    }

    /// The key identifier of RFC 5280 4.2.1.2 method 1 (what OpenSSL's "hash" computes): SHA-1
    /// of the subjectPublicKey BIT STRING's bytes, from a DER SubjectPublicKeyInfo.
    static func keyIdentifier(spki: [UInt8]) throws -> [UInt8] {
        var outer = DER.Reader(spki)
        var body = try outer.sequence("subjectPublicKeyInfo")
        _ = try body.element("subjectPublicKeyInfo.algorithm")
        let key = try body.wholeByteBitString("subjectPublicKeyInfo.subjectPublicKey")
        guard body.isAtEnd, outer.isAtEnd else {
            throw VouchError(.trailingBytes, "subjectPublicKeyInfo has bytes after the key", context: ["field": "subjectPublicKeyInfo"])
        }
        return Crypto.digest(.sha1, key)
    }

    /// An X509_EXTENSION for this value; the caller frees it.
    func openSSLExtension() throws -> OpaquePointer {
        let object: OpaquePointer? = oid.der.withUnsafeBufferPointer { buf in
            var p: UnsafePointer<UInt8>? = buf.baseAddress
            return d2i_ASN1_OBJECT(nil, &p, buf.count)
        }
        let obj = try notNil(object, "d2i_ASN1_OBJECT(\(oid))")
        defer { ASN1_OBJECT_free(obj) }
        let data = try notNil(ASN1_OCTET_STRING_new(), "ASN1_OCTET_STRING_new")
        defer { ASN1_OCTET_STRING_free(data) }
        try check(ASN1_OCTET_STRING_set(data, value, Int32(value.count)), "ASN1_OCTET_STRING_set")
        return try notNil(X509_EXTENSION_create_by_OBJ(nil, obj, critical ? 1 : 0, data), "X509_EXTENSION_create_by_OBJ")
    }
}

/// Adds `extensions` to a certificate, in order.
func addExtensions(_ x: OpaquePointer, _ extensions: [CertificateExtension]) throws {
    for e in extensions {
        let ext = try e.openSSLExtension()
        defer { X509_EXTENSION_free(ext) }
        try check(X509_add_ext(x, ext, -1), "X509_add_ext")
    }
}

/// The certificate's own key identifier, computed from its SubjectPublicKeyInfo.
func keyIdentifier(ofCertificate x: OpaquePointer) throws -> [UInt8] {
    try CertificateExtension.keyIdentifier(spki: derEncode("i2d_X509_PUBKEY") { i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), $0) })
}

/// The issuer's key identifier for an AKI: the issuer certificate's SKI extension, read from
/// the extension itself as OpenSSL's "keyid:always" reads it. An issuer without one is refused,
/// as OpenSSL refused it.
func authorityKeyIdentifier(ofIssuer issuer: OpaquePointer) throws -> [UInt8] {
    var critical: Int32 = 0
    guard let raw = X509_get_ext_d2i(issuer, NID_subject_key_identifier, &critical, nil) else {
        ERR_clear_error()
        throw VouchError(.crypto, "the issuing CA certificate has no subject key identifier", context: ["field": "authorityKeyIdentifier"])
    }
    let ski = raw.assumingMemoryBound(to: ASN1_OCTET_STRING.self)
    defer { ASN1_OCTET_STRING_free(ski) }
    guard let p = ASN1_STRING_get0_data(ski), ASN1_STRING_length(ski) > 0 else {
        throw VouchError(.crypto, "the issuing CA certificate's subject key identifier is empty", context: ["field": "authorityKeyIdentifier"])
    }
    return Array(UnsafeBufferPointer(start: p, count: Int(ASN1_STRING_length(ski))))
}
