internal import COpenSSL
internal import CVouchShims
import Foundation
import VouchCore

/// What a leaf certificate says. The authority adds issuer, AKI/SKI and signs.
///
/// Identities never stand for one another: agent and host certificates (X509-SVIDs) carry their
/// SPIFFE ID as the only name — subject `O=Vouch, OU=agent|host`, no common name, no DNS or IP
/// SAN — so no caller-chosen name can ever match a host name; only `tlsServer` certificates name
/// hosts, and the broker's own certificates come from its separate broker CA.
public struct LeafProfile: Sendable {
    public enum Usage: Sendable {
        /// An agent's X509-SVID: serverAuth + clientAuth (agents serve mTLS to each other).
        case agent
        /// A host's X509-SVID (attester ⇄ broker mTLS): serverAuth + clientAuth.
        case host
        /// The broker's client identity (pulls, signed results): clientAuth only.
        case brokerClient
        /// A TLS server certificate that names host names (DNS/IP SANs): serverAuth only.
        case tlsServer

        /// True for SPIFFE workload identities, which may carry no CN and no DNS/IP SAN.
        var isWorkload: Bool { self == .agent || self == .host }
    }
    /// The subject's CN; nil (and required nil) for agent and host certificates.
    public var subjectCommonName: String?
    public var uriSANs: [String] = []
    public var dnsSANs: [String] = []
    public var ipSANs: [String] = []
    public var notBefore: Date
    public var notAfter: Date
    public var usage: Usage
    public var crlDistributionPoint: String?
    /// Authority Information Access: the OCSP responder's URL.
    public var ocspURL: String?
    /// Further non-critical extensions: dotted OID and DER value.
    public var extensions: [(oid: String, der: [UInt8])] = []

    public init(subjectCommonName: String? = nil, uriSANs: [String] = [], dnsSANs: [String] = [], ipSANs: [String] = [],
                notBefore: Date, notAfter: Date, usage: Usage, crlDistributionPoint: String? = nil, ocspURL: String? = nil,
                extensions: [(oid: String, der: [UInt8])] = []) {
        self.subjectCommonName = subjectCommonName
        self.uriSANs = uriSANs
        self.dnsSANs = dnsSANs
        self.ipSANs = ipSANs
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.usage = usage
        self.crlDistributionPoint = crlDistributionPoint
        self.ocspURL = ocspURL
        self.extensions = extensions
    }
}

/// One entry of a CRL.
public struct RevokedEntry: Sendable, Equatable {
    public var serialHex: String
    public var revokedAt: Date
    /// RFC 5280 CRLReason code (0 unspecified, 1 keyCompromise, 4 superseded, 5 cessationOfOperation, ...).
    public var reason: Int
    public init(serialHex: String, revokedAt: Date, reason: Int) {
        self.serialHex = serialHex
        self.revokedAt = revokedAt
        self.reason = reason
    }
}

/// The issuing CA: its key and certificate. Signs agent and server certificates and CRLs.
public final class CertificateAuthority: @unchecked Sendable {
    public let key: PrivateKey
    public let certificate: Certificate

    public init(key: PrivateKey, certificate: Certificate) throws {
        guard try key.publicKey.isEqual(to: certificate.publicKey) else {
            throw VouchError(.config, "CA key does not match the CA certificate")
        }
        self.key = key
        self.certificate = certificate
    }

    /// Creates a self-signed CA (basicConstraints CA:TRUE with `pathLength`; keyCertSign, cRLSign):
    /// pathlen 0 for a CA that issues agent certificates itself, 1 for an offline root above intermediates.
    public static func create(commonName: String, key: PrivateKey, notBefore: Date, notAfter: Date, pathLength: Int = 0) throws -> CertificateAuthority {
        let (x, cert) = try newCertificate(subject: [("O", "Vouch"), ("CN", commonName)], issuer: nil, publicKey: key.pkey, serial: try randomSerial(),
                                           notBefore: notBefore, notAfter: notAfter)
        let keyID = try keyIdentifier(ofCertificate: x)
        try addExtensions(x, caExtensions(pathLength: pathLength, keyID: keyID, issuerKeyID: keyID))
        guard X509_sign(x, key.pkey, EVP_sha256()) > 0 else { throw opensslError("X509_sign") }
        return try CertificateAuthority(key: key, certificate: cert)
    }

    /// Issues an intermediate CA certificate for `key` (CA:TRUE, pathlen 0; keyCertSign, cRLSign).
    public func issueIntermediate(commonName: String, key: PrivateKey, notBefore: Date, notAfter: Date) throws -> CertificateAuthority {
        let (x, cert) = try Self.newCertificate(subject: [("O", "Vouch"), ("CN", commonName)], issuer: certificate.x509, publicKey: key.pkey, serial: try randomSerial(),
                                                notBefore: notBefore, notAfter: notAfter)
        try addExtensions(x, Self.caExtensions(pathLength: 0, keyID: try keyIdentifier(ofCertificate: x),
                                               issuerKeyID: try authorityKeyIdentifier(ofIssuer: certificate.x509)))
        guard X509_sign(x, self.key.pkey, EVP_sha256()) > 0 else { throw opensslError("X509_sign") }
        return try CertificateAuthority(key: key, certificate: cert)
    }

    /// Issues a certificate for `publicKey`. The serial is 127 random bits (RFC 5280 allows 20 octets);
    /// callers check it is unused in their store before publishing.
    public func issue(publicKey: PublicKey, profile: LeafProfile, serial: [UInt8]? = nil) throws -> Certificate {
        var subject: [(String, String)] = [("O", "Vouch")]
        switch profile.usage {
        case .agent, .host:
            guard profile.subjectCommonName == nil, profile.dnsSANs.isEmpty, profile.ipSANs.isEmpty, profile.uriSANs.count == 1,
                  profile.uriSANs[0].hasPrefix("spiffe://") else {
                throw VouchError(.invalidValue, "an agent or host certificate names exactly one SPIFFE ID and no CN, DNS or IP name",
                                 context: ["field": "profile"])
            }
            subject.append(("OU", profile.usage == .agent ? "agent" : "host"))
        case .brokerClient, .tlsServer:
            guard let cn = profile.subjectCommonName else {
                throw VouchError(.invalidValue, "a broker or server certificate needs a common name", context: ["field": "profile"])
            }
            subject.append(("CN", cn))
        }
        let (x, cert) = try Self.newCertificate(subject: subject, issuer: certificate.x509, publicKey: publicKey.pkey,
                                                serial: try serial ?? randomSerial(), notBefore: profile.notBefore, notAfter: profile.notAfter,
                                                fieldsOnlyKey: true)

        try addExtensions(x, try Self.leafExtensions(profile, keyID: try keyIdentifier(ofCertificate: x),
                                                     issuerKeyID: try authorityKeyIdentifier(ofIssuer: certificate.x509)))
        guard X509_sign(x, key.pkey, EVP_sha256()) > 0 else { throw opensslError("X509_sign") }
        return cert
    }

    /// Builds and signs a v2 CRL (RFC 5280 5.1) with CRL number, AKI and per-entry reason codes.
    public func makeCRL(entries: [RevokedEntry], number: UInt64, thisUpdate: Date, nextUpdate: Date) throws -> [UInt8] {
        let crl = try notNil(X509_CRL_new(), "X509_CRL_new")
        defer { X509_CRL_free(crl) }
        try check(X509_CRL_set_version(crl, 1), "X509_CRL_set_version")
        try check(X509_CRL_set_issuer_name(crl, X509_get_subject_name(certificate.x509)), "X509_CRL_set_issuer_name")
        try withTime(thisUpdate) { try check(X509_CRL_set1_lastUpdate(crl, $0), "X509_CRL_set1_lastUpdate") }
        try withTime(nextUpdate) { try check(X509_CRL_set1_nextUpdate(crl, $0), "X509_CRL_set1_nextUpdate") }
        for entry in entries {
            let rev = try notNil(X509_REVOKED_new(), "X509_REVOKED_new")
            do {
                let serial = try asn1Integer(Hex.decode(entry.serialHex.count % 2 == 1 ? "0" + entry.serialHex : entry.serialHex, field: "serial"))
                defer { ASN1_INTEGER_free(serial) }
                try check(X509_REVOKED_set_serialNumber(rev, serial), "X509_REVOKED_set_serialNumber")
                try withTime(entry.revokedAt) { try check(X509_REVOKED_set_revocationDate(rev, $0), "X509_REVOKED_set_revocationDate") }
                let reason = try notNil(ASN1_ENUMERATED_new(), "ASN1_ENUMERATED_new")
                defer { ASN1_ENUMERATED_free(reason) }
                try check(ASN1_ENUMERATED_set(reason, entry.reason), "ASN1_ENUMERATED_set")
                try check(X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, UnsafeMutableRawPointer(reason), 0, 0), "X509_REVOKED_add1_ext_i2d")
                try check(X509_CRL_add0_revoked(crl, rev), "X509_CRL_add0_revoked")
            } catch {
                X509_REVOKED_free(rev)
                throw error
            }
        }
        var nbytes: [UInt8] = []
        var n = number
        repeat { nbytes.insert(UInt8(n & 0xff), at: 0); n >>= 8 } while n > 0
        let crlNumber = try asn1Integer(nbytes)
        defer { ASN1_INTEGER_free(crlNumber) }
        try check(X509_CRL_add1_ext_i2d(crl, NID_crl_number, UnsafeMutableRawPointer(crlNumber), 0, 0), "X509_CRL_add1_ext_i2d")
        let aki = try CertificateExtension.authorityKeyIdentifier(keyID: authorityKeyIdentifier(ofIssuer: certificate.x509)).openSSLExtension()
        defer { X509_EXTENSION_free(aki) }
        try check(X509_CRL_add_ext(crl, aki, -1), "X509_CRL_add_ext")
        try check(X509_CRL_sort(crl), "X509_CRL_sort")
        guard X509_CRL_sign(crl, key.pkey, EVP_sha256()) > 0 else { throw opensslError("X509_CRL_sign") }
        return try derEncode("i2d_X509_CRL") { i2d_X509_CRL(crl, $0) }
    }
}

/// A parsed CRL, for clients that display or check one.
public final class CRL: @unchecked Sendable {
    let crl: OpaquePointer
    init(owning crl: OpaquePointer) { self.crl = crl }
    deinit { X509_CRL_free(crl) }

    public convenience init(der: [UInt8]) throws {
        let c: OpaquePointer? = der.withUnsafeBufferPointer { buf in
            var p: UnsafePointer<UInt8>? = buf.baseAddress
            return d2i_X509_CRL(nil, &p, buf.count)
        }
        guard let c else { ERR_clear_error(); throw VouchError(.invalidValue, "not a DER CRL", context: ["field": "crl"]) }
        self.init(owning: c)
    }

    public var thisUpdate: Date { asn1Date(X509_CRL_get0_lastUpdate(crl)) }
    public var nextUpdate: Date { asn1Date(X509_CRL_get0_nextUpdate(crl)) }
    public var issuer: String { nameString(X509_CRL_get_issuer(crl)) }

    public var number: UInt64? {
        var crit: Int32 = 0
        guard let raw = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, nil) else { return nil }
        let ai = raw.assumingMemoryBound(to: ASN1_INTEGER.self)
        defer { ASN1_INTEGER_free(ai) }
        var v: UInt64 = 0
        guard ASN1_INTEGER_get_uint64(&v, ai) == 1 else { return nil }
        return v
    }

    public var revokedSerials: [String] {
        guard let stack = X509_CRL_get_REVOKED(crl) else { return [] }
        var out: [String] = []
        for i in 0..<OPENSSL_sk_num(stack) {
            guard let rev = OPENSSL_sk_value(stack, i),
                  let bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(OpaquePointer(rev)), nil) else { continue }
            var bytes = [UInt8](repeating: 0, count: Int((BN_num_bits(bn) + 7) / 8))
            BN_bn2bin(bn, &bytes)
            BN_free(bn)
            out.append(Hex.encode(bytes))
        }
        return out
    }

    /// True only if the CRL's signature verifies with `issuer`'s key.
    public func isSigned(by issuer: Certificate) -> Bool {
        guard let k = X509_get0_pubkey(issuer.x509) else { return false }
        let rc = X509_CRL_verify(crl, k)
        ERR_clear_error()
        return rc == 1
    }
}

// MARK: - helpers

extension CertificateAuthority {
    /// A CA certificate's extensions: basicConstraints (critical, CA, `pathLength`), keyUsage
    /// (critical: keyCertSign, cRLSign), SKI, AKI.
    static func caExtensions(pathLength: Int, keyID: [UInt8], issuerKeyID: [UInt8]) -> [CertificateExtension] {
        [.basicConstraints(isCA: true, pathLength: pathLength, critical: true),
         .keyUsage([.keyCertSign, .cRLSign], critical: true),
         .subjectKeyIdentifier(keyID),
         .authorityKeyIdentifier(keyID: issuerKeyID)]
    }

    /// A leaf's extensions, in this order: basicConstraints (critical, not a CA), SKI, AKI,
    /// keyUsage (critical) and extendedKeyUsage by usage, subjectAltName (URIs, DNS names, IP
    /// addresses) when it names any, cRLDistributionPoints, authorityInfoAccess (OCSP), then the
    /// profile's own extensions (non-critical). Names are checked here: URIs and DNS names are
    /// printable ASCII without spaces, IP addresses parse.
    static func leafExtensions(_ profile: LeafProfile, keyID: [UInt8], issuerKeyID: [UInt8]) throws -> [CertificateExtension] {
        var names: [GeneralName] = []
        for u in profile.uriSANs { names.append(.uniformResourceIdentifier(try IA5Name(u, field: "uriSAN"))) }
        for d in profile.dnsSANs { names.append(.dnsName(try IA5Name(d, field: "dnsSAN"))) }
        for i in profile.ipSANs { names.append(.ipAddress(try IPAddressName(i, field: "ipSAN"))) }
        let usage: KeyUsage, purposes: [OID]
        switch profile.usage {
        case .agent, .host: (usage, purposes) = (.digitalSignature, [.serverAuth, .clientAuth])
        case .brokerClient: (usage, purposes) = (.digitalSignature, [.clientAuth])
        case .tlsServer: (usage, purposes) = ([.digitalSignature, .keyEncipherment], [.serverAuth])
        }
        var exts: [CertificateExtension] = [
            .basicConstraints(isCA: false, critical: true),
            .subjectKeyIdentifier(keyID),
            .authorityKeyIdentifier(keyID: issuerKeyID),
            .keyUsage(usage, critical: true),
            .extendedKeyUsage(purposes),
        ]
        if !names.isEmpty { exts.append(.subjectAltName(names)) }
        if let crl = profile.crlDistributionPoint { exts.append(.crlDistributionPoints([try IA5Name(crl, field: "crlDistributionPoint")])) }
        if let ocsp = profile.ocspURL { exts.append(.authorityInfoAccess(ocsp: [try IA5Name(ocsp, field: "ocspURL")])) }
        for (dotted, der) in profile.extensions {
            guard let oid = OID(dotted: dotted) else {
                throw VouchError(.invalidValue, "an extension's OID is not in dotted decimal form", context: ["field": "extensions", "got": dotted])
            }
            exts.append(CertificateExtension(oid: oid, critical: false, value: der))
        }
        return exts
    }

    /// A v3 certificate body: serial, `subject` (attribute short name, UTF-8 value, in order), issuer (`nil`: self-issued),
    /// validity and public key. The caller adds extensions and signs.
    /// `fieldsOnlyKey`: set the SubjectPublicKeyInfo from the key's parameters (leaf certificates;
    /// see `setSubjectPublicKey`) rather than through X509_set_pubkey (CA certificates, whose
    /// in-memory object must hold a decoded key for verifying what they sign).
    static func newCertificate(subject: [(String, String)], issuer: OpaquePointer?, publicKey: OpaquePointer, serial: [UInt8],
                               notBefore: Date, notAfter: Date, fieldsOnlyKey: Bool = false) throws -> (OpaquePointer, Certificate) {
        let x = try notNil(X509_new(), "X509_new")
        let cert = Certificate(owning: x)
        try check(X509_set_version(x, 2), "X509_set_version")
        try setSerial(x, serial)
        let name = try notNil(X509_NAME_new(), "X509_NAME_new")
        defer { X509_NAME_free(name) }
        for (attribute, value) in subject {
            try check(X509_NAME_add_entry_by_txt(name, attribute, MBSTRING_UTF8, value, -1, -1, 0), "X509_NAME_add_entry_by_txt")
        }
        try check(X509_set_subject_name(x, name), "X509_set_subject_name")
        try check(X509_set_issuer_name(x, issuer.map { X509_get_subject_name($0) } ?? name), "X509_set_issuer_name")
        try setValidity(x, notBefore, notAfter)
        if fieldsOnlyKey { try setSubjectPublicKey(x, publicKey) } else { try check(X509_set_pubkey(x, publicKey), "X509_set_pubkey") }
        return (x, cert)
    }
}

/// Sets the certificate's SubjectPublicKeyInfo. OpenSSL 3's X509_set_pubkey encodes the key to
/// DER and decodes it again through the provider encoder and decoder machinery (13 % of an
/// enrollment's CPU); for EC and RSA keys the two SPKI fields are set straight from the key's
/// parameters instead — id-ecPublicKey with the named curve and the encoded point, or
/// rsaEncryption (NULL parameters) with RSAPublicKey { n, e }. Any other key, or any failure to
/// read a parameter, takes X509_set_pubkey. The in-memory certificate then has no decoded key
/// (X509_get0_pubkey is NULL); `Certificate.publicKey` decodes it from the encoded fields.
private func setSubjectPublicKey(_ x: OpaquePointer, _ pkey: OpaquePointer) throws {
    if let spki = X509_get_X509_PUBKEY(x), let (algorithm, parameterType, parameter, key) = spkiFields(pkey) {
        let owned = try notNil(vouch_openssl_malloc(max(key.count, 1)), "OPENSSL_malloc").assumingMemoryBound(to: UInt8.self)
        owned.initialize(from: key, count: key.count)
        if X509_PUBKEY_set0_param(spki, algorithm, parameterType, parameter, owned, Int32(key.count)) == 1 { return }
        vouch_openssl_free(owned)
        ERR_clear_error()
    }
    try check(X509_set_pubkey(x, pkey), "X509_set_pubkey")
}

private func spkiFields(_ pkey: OpaquePointer) -> (OpaquePointer, Int32, UnsafeMutableRawPointer?, [UInt8])? {
    if EVP_PKEY_is_a(pkey, "EC") == 1 {
        var name = [CChar](repeating: 0, count: 80)
        var nameLength = 0
        var pointLength = 0
        guard EVP_PKEY_get_utf8_string_param(pkey, "group", &name, name.count, &nameLength) == 1,
              case let curve = OBJ_txt2nid(name), curve != NID_undef, let curveOID = OBJ_nid2obj(curve),
              EVP_PKEY_get_octet_string_param(pkey, "encoded-pub-key", nil, 0, &pointLength) == 1, pointLength > 0 else {
            ERR_clear_error()
            return nil
        }
        var point = [UInt8](repeating: 0, count: pointLength)
        guard EVP_PKEY_get_octet_string_param(pkey, "encoded-pub-key", &point, point.count, &pointLength) == 1,
              let algorithm = OBJ_nid2obj(NID_X9_62_id_ecPublicKey) else {
            ERR_clear_error()
            return nil
        }
        return (algorithm, V_ASN1_OBJECT, UnsafeMutableRawPointer(curveOID), Array(point.prefix(pointLength)))
    }
    if EVP_PKEY_is_a(pkey, "RSA") == 1 {
        func magnitude(_ name: String) -> [UInt8]? {
            var bn: OpaquePointer? = nil
            guard EVP_PKEY_get_bn_param(pkey, name, &bn) == 1, let bn else { return nil }
            defer { BN_free(bn) }
            var out = [UInt8](repeating: 0, count: Int((BN_num_bits(bn) + 7) / 8))
            return BN_bn2bin(bn, &out) == Int32(out.count) ? out : nil
        }
        guard let n = magnitude("n"), let e = magnitude("e"), let algorithm = OBJ_nid2obj(NID_rsaEncryption) else {
            ERR_clear_error()
            return nil
        }
        return (algorithm, V_ASN1_NULL, nil, DER.sequence([DER.unsignedInteger(n), DER.unsignedInteger(e)]))
    }
    return nil
}

func randomSerial() throws -> [UInt8] {
    var s = try Crypto.randomBytes(16)
    s[0] &= 0x7f          // positive
    s[0] |= 0x40          // fixed length, never a leading zero
    return s
}

private func setSerial(_ x: OpaquePointer, _ bytes: [UInt8]) throws {
    let ai = try asn1Integer(bytes)
    defer { ASN1_INTEGER_free(ai) }
    try check(X509_set_serialNumber(x, ai), "X509_set_serialNumber")
}

private func asn1Integer(_ bytes: [UInt8]) throws -> UnsafeMutablePointer<ASN1_INTEGER> {
    let bn = try notNil(BN_bin2bn(bytes, Int32(bytes.count), nil), "BN_bin2bn")
    defer { BN_free(bn) }
    return try notNil(BN_to_ASN1_INTEGER(bn, nil), "BN_to_ASN1_INTEGER")
}

private func withTime(_ date: Date, _ body: (UnsafeMutablePointer<ASN1_TIME>) throws -> Void) throws {
    let t = try notNil(ASN1_TIME_new(), "ASN1_TIME_new")
    defer { ASN1_TIME_free(t) }
    guard ASN1_TIME_set(t, time_t(date.timeIntervalSince1970)) != nil else { throw opensslError("ASN1_TIME_set") }
    try body(t)
}

private func setValidity(_ x: OpaquePointer, _ notBefore: Date, _ notAfter: Date) throws {
    guard ASN1_TIME_set(X509_getm_notBefore(x), time_t(notBefore.timeIntervalSince1970)) != nil,
          ASN1_TIME_set(X509_getm_notAfter(x), time_t(notAfter.timeIntervalSince1970)) != nil else {
        throw opensslError("ASN1_TIME_set")
    }
}
