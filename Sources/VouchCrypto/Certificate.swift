internal import COpenSSL
internal import CVouchShims
import Foundation
import VouchCore

/// An X.509 certificate (X509*). Immutable once built.
public final class Certificate: @unchecked Sendable {
    let x509: OpaquePointer

    init(owning x509: OpaquePointer) { self.x509 = x509 }
    deinit { X509_free(x509) }

    public convenience init(der: [UInt8]) throws {
        let cert: OpaquePointer? = der.withUnsafeBufferPointer { buf in
            var p: UnsafePointer<UInt8>? = buf.baseAddress
            return d2i_X509(nil, &p, buf.count)
        }
        self.init(owning: try notNil(cert, "d2i_X509"))
    }

    public convenience init(pem: String) throws {
        let bio = try MemoryBIO(Array(pem.utf8))
        self.init(owning: try notNil(PEM_read_bio_X509(bio.bio, nil, nil, nil), "PEM_read_bio_X509"))
    }

    /// Every certificate in a PEM bundle, in order. Throws if there is none.
    public static func chain(pem: String) throws -> [Certificate] {
        let bio = try MemoryBIO(Array(pem.utf8))
        var out: [Certificate] = []
        while let x = PEM_read_bio_X509(bio.bio, nil, nil, nil) { out.append(Certificate(owning: x)) }
        ERR_clear_error()
        guard !out.isEmpty else { throw VouchError(.invalidValue, "no PEM certificate found") }
        return out
    }

    public var der: [UInt8] {
        get throws { try derEncode("i2d_X509") { i2d_X509(x509, $0) } }
    }

    public var pem: String {
        get throws {
            let bio = try MemoryBIO()
            try check(PEM_write_bio_X509(bio.bio, x509), "PEM_write_bio_X509")
            return bio.string
        }
    }

    /// Serial number as lowercase hex without leading zeros (the form `openssl` prints, lowercased).
    public var serialHex: String {
        guard let bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x509), nil) else { return "" }
        defer { BN_free(bn) }
        var bytes = [UInt8](repeating: 0, count: Int((BN_num_bits(bn) + 7) / 8))
        BN_bn2bin(bn, &bytes)
        let hex = Hex.encode(bytes)
        return hex.isEmpty ? "0" : hex
    }

    public var notBefore: Date { asn1Date(X509_get0_notBefore(x509)) }
    public var notAfter: Date { asn1Date(X509_get0_notAfter(x509)) }
    public var subject: String { nameString(X509_get_subject_name(x509)) }
    public var issuer: String { nameString(X509_get_issuer_name(x509)) }

    public var publicKey: PublicKey {
        get throws {
            if let key = X509_get_pubkey(x509) { return PublicKey(owning: key) }
            // A leaf issued here holds its SPKI as encoded fields only (see setSubjectPublicKey).
            ERR_clear_error()
            return try PublicKey(spkiDER: try derEncode("i2d_X509_PUBKEY") { i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x509), $0) })
        }
    }

    /// The subject key identifier, lowercase hex (empty if the certificate has none).
    public var subjectKeyID: String {
        guard let ski = X509_get0_subject_key_id(x509), let p = ASN1_STRING_get0_data(ski) else { return "" }
        return Hex.encode(UnsafeBufferPointer(start: p, count: Int(ASN1_STRING_length(ski))))
    }

    /// The authority key identifier's keyIdentifier, lowercase hex (empty if absent): the issuing
    /// CA's subject key identifier, which names its CRL at `/v1/crl/{keyid}`.
    public var authorityKeyID: String {
        guard let akid = X509_get0_authority_key_id(x509), let p = ASN1_STRING_get0_data(akid) else { return "" }
        return Hex.encode(UnsafeBufferPointer(start: p, count: Int(ASN1_STRING_length(akid))))
    }

    public var isSelfSigned: Bool { subject == issuer }

    /// True if basicConstraints says CA:TRUE.
    public var isCA: Bool { X509_get_extension_flags(x509) & UInt32(EXFLAG_CA) != 0 }

    /// True if the certificate may make digital signatures: no keyUsage extension, or one with
    /// digitalSignature.
    public var mayDigitallySign: Bool {
        X509_get_extension_flags(x509) & UInt32(EXFLAG_KUSAGE) == 0 || X509_get_key_usage(x509) & UInt32(KU_DIGITAL_SIGNATURE) != 0
    }

    /// The DER value of the extension with dotted `oid`, if present.
    public func extensionValue(oid: String) -> [UInt8]? {
        guard let obj = OBJ_txt2obj(oid, 1) else { ERR_clear_error(); return nil }
        defer { ASN1_OBJECT_free(obj) }
        let i = X509_get_ext_by_OBJ(x509, obj, -1)
        guard i >= 0, let ext = X509_get_ext(x509, i), let data = X509_EXTENSION_get_data(ext),
              let p = ASN1_STRING_get0_data(data) else { return nil }
        return Array(UnsafeBufferPointer(start: p, count: Int(ASN1_STRING_length(data))))
    }

    /// URI subjectAltNames (SPIFFE IDs).
    public var uriSANs: [String] { altNames(GEN_URI) }
    /// rfc822Name (email) subjectAltNames.
    public var emailSANs: [String] { altNames(GEN_EMAIL) }
    /// dNSName subjectAltNames.
    public var dnsSANs: [String] { altNames(GEN_DNS) }

    /// The IA5String subjectAltNames of one GENERAL_NAME type (URI, email and DNS share the layout).
    private func altNames(_ type: Int32) -> [String] {
        var crit: Int32 = 0
        guard let names = X509_get_ext_d2i(x509, NID_subject_alt_name, &crit, nil) else { ERR_clear_error(); return [] }
        let stack = OpaquePointer(names)
        defer { GENERAL_NAMES_free(stack) }
        var out: [String] = []
        for i in 0..<OPENSSL_sk_num(stack) {
            guard let raw = OPENSSL_sk_value(stack, i) else { continue }
            let gn = raw.assumingMemoryBound(to: GENERAL_NAME.self)
            guard gn.pointee.type == type, let ia5 = gn.pointee.d.ia5, let data = ASN1_STRING_get0_data(ia5) else { continue }
            out.append(String(decoding: UnsafeBufferPointer(start: data, count: Int(ASN1_STRING_length(ia5))), as: UTF8.self))
        }
        return out
    }

    /// True if an extendedKeyUsage extension is present and lists codeSigning.
    public var hasCodeSigningEKU: Bool {
        X509_get_extension_flags(x509) & UInt32(EXFLAG_XKUSAGE) != 0 && X509_get_extended_key_usage(x509) & UInt32(XKU_CODE_SIGN) != 0
    }

    /// Verifies this certificate up to one of `anchors`, through `intermediates`, at time `at`.
    /// With `crls`, also checks revocation of every certificate in the chain (CRLs must cover it).
    /// With `partialChain`, an anchor need not be self-signed: a verified intermediate may stand as
    /// the anchor (every certificate up to it is still checked: signature, validity, CA constraints).
    /// Returns nil when valid, otherwise the verification error.
    public func verify(anchors: [Certificate], intermediates: [Certificate] = [], crls: [CRL] = [], at: Date,
                       partialChain: Bool = false) -> VouchError? {
        verifyPath(anchors: anchors, intermediates: intermediates, crls: crls, at: at, partialChain: partialChain, path: nil)
    }

    /// The path OpenSSL verified from this certificate to one of `anchors` through
    /// `intermediates` at `at`, this certificate first and the anchor last — whatever order the
    /// intermediates came in, and without any that were not used — or why it does not verify.
    public func verifiedPath(anchors: [Certificate], intermediates: [Certificate] = [], at: Date) -> Result<[Certificate], VouchError> {
        var path: [Certificate] = []
        if let error = verifyPath(anchors: anchors, intermediates: intermediates, crls: [], at: at, partialChain: false, path: &path) { return .failure(error) }
        return .success(path)
    }

    private func verifyPath(anchors: [Certificate], intermediates: [Certificate], crls: [CRL], at: Date, partialChain: Bool,
                            path: UnsafeMutablePointer<[Certificate]>?) -> VouchError? {
        guard let store = X509_STORE_new() else { return opensslError("X509_STORE_new") }
        defer { X509_STORE_free(store) }
        for a in anchors where X509_STORE_add_cert(store, a.x509) != 1 { return opensslError("X509_STORE_add_cert") }
        for c in crls where X509_STORE_add_crl(store, c.crl) != 1 { return opensslError("X509_STORE_add_crl") }
        guard let untrusted = OPENSSL_sk_new_null() else { return opensslError("sk_new") }
        defer { OPENSSL_sk_free(untrusted) }
        for i in intermediates { OPENSSL_sk_push(untrusted, UnsafeRawPointer(i.x509)) }
        guard let ctx = X509_STORE_CTX_new() else { return opensslError("X509_STORE_CTX_new") }
        defer { X509_STORE_CTX_free(ctx) }
        guard X509_STORE_CTX_init(ctx, store, x509, untrusted) == 1 else { return opensslError("X509_STORE_CTX_init") }
        X509_STORE_CTX_set_time(ctx, 0, time_t(at.timeIntervalSince1970))
        if !crls.isEmpty {
            X509_STORE_CTX_set_flags(ctx, UInt(X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL))
        }
        if partialChain { X509_STORE_CTX_set_flags(ctx, UInt(X509_V_FLAG_PARTIAL_CHAIN)) }
        let rc = X509_verify_cert(ctx)
        if rc == 1 {
            if let path, let chain = X509_STORE_CTX_get0_chain(ctx) {
                for i in 0..<OPENSSL_sk_num(chain) {
                    guard let x = OPENSSL_sk_value(chain, i).map({ OpaquePointer($0) }), X509_up_ref(x) == 1 else {
                        return opensslError("X509_STORE_CTX_get0_chain")
                    }
                    path.pointee.append(Certificate(owning: x))
                }
            }
            return nil
        }
        let err = X509_STORE_CTX_get_error(ctx)
        let reason = String(cString: X509_verify_cert_error_string(Int(err)))
        ERR_clear_error()
        return VouchError(.invalidValue, "certificate does not verify: \(reason)",
                          context: ["subject": subject, "issuer": issuer, "x509_error": "\(err)"])
    }
}

func asn1Date(_ t: UnsafePointer<ASN1_TIME>?) -> Date {
    var tm = tm()
    guard let t, ASN1_TIME_to_tm(t, &tm) == 1 else { return Date(timeIntervalSince1970: 0) }
    return Date(timeIntervalSince1970: TimeInterval(timegm(&tm)))
}

func nameString(_ name: OpaquePointer?) -> String {
    guard let name, let bio = try? MemoryBIO() else { return "" }
    X509_NAME_print_ex(bio.bio, name, 0, vouch_XN_FLAG_RFC2253)
    return bio.string
}

/// A PKCS#10 certificate signing request (X509_REQ*).
public final class CSR: @unchecked Sendable {
    let req: OpaquePointer

    init(owning req: OpaquePointer) { self.req = req }
    deinit { X509_REQ_free(req) }

    /// Parses a PEM or DER CSR. Hostile input is bounded: a CSR larger than 64 KiB is refused.
    public convenience init(pemOrDER bytes: [UInt8]) throws {
        guard bytes.count <= 65536 else {
            throw VouchError(.invalidValue, "CSR is larger than 64 KiB", context: ["field": "csr", "got": "\(bytes.count)"])
        }
        if bytes.starts(with: Array("-----BEGIN".utf8)) {
            let bio = try MemoryBIO(bytes)
            guard let r = PEM_read_bio_X509_REQ(bio.bio, nil, nil, nil) else {
                ERR_clear_error()
                throw VouchError(.invalidValue, "CSR is not a valid PEM certificate request", context: ["field": "csr"])
            }
            self.init(owning: r)
        } else {
            let r: OpaquePointer? = bytes.withUnsafeBufferPointer { buf in
                var p: UnsafePointer<UInt8>? = buf.baseAddress
                return d2i_X509_REQ(nil, &p, buf.count)
            }
            guard let r else {
                ERR_clear_error()
                throw VouchError(.invalidValue, "CSR is not a valid DER certificate request", context: ["field": "csr"])
            }
            self.init(owning: r)
        }
    }

    /// Creates a CSR for `key` with subject CN=`commonName`, self-signed with SHA-256.
    public static func create(key: PrivateKey, commonName: String) throws -> CSR {
        let req = try notNil(X509_REQ_new(), "X509_REQ_new")
        let csr = CSR(owning: req)
        try check(X509_REQ_set_version(req, 0), "X509_REQ_set_version")
        let name = X509_REQ_get_subject_name(req)
        try check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, commonName, -1, -1, 0), "X509_NAME_add_entry_by_txt")
        try check(X509_REQ_set_pubkey(req, key.pkey), "X509_REQ_set_pubkey")
        guard X509_REQ_sign(req, key.pkey, EVP_sha256()) > 0 else { throw opensslError("X509_REQ_sign") }
        return csr
    }

    public var pem: String {
        get throws {
            let bio = try MemoryBIO()
            try check(PEM_write_bio_X509_REQ(bio.bio, req), "PEM_write_bio_X509_REQ")
            return bio.string
        }
    }

    public var publicKey: PublicKey {
        get throws {
            guard let k = X509_REQ_get_pubkey(req) else {
                ERR_clear_error()
                throw VouchError(.invalidValue, "CSR carries no usable public key", context: ["field": "csr.publicKey"])
            }
            return PublicKey(owning: k)
        }
    }

    /// True only if the CSR's self-signature verifies with its own key (proof of possession).
    public var signatureIsValid: Bool {
        guard let k = X509_REQ_get0_pubkey(req) else { ERR_clear_error(); return false }
        let rc = X509_REQ_verify(req, k)
        ERR_clear_error()
        return rc == 1
    }

    public var subject: String { nameString(X509_REQ_get_subject_name(req)) }

    public var der: [UInt8] {
        get throws { try derEncode("i2d_X509_REQ") { i2d_X509_REQ(req, $0) } }
    }
}
