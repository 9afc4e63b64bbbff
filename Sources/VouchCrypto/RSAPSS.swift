internal import COpenSSL
internal import CVouchShims
import Foundation
import VouchCore
import VouchTPMWire

// RSASSA-PSS with fixed parameters, as AMD's SEV-SNP key certificates use it (SHA-384, MGF1 with
// SHA-384, salt 48): verification that refuses any other salt length, RSA key generation, and
// certificates and CRLs signed that way (for the software TEE's test chains).

extension PublicKey {
    /// Verifies an RSASSA-PSS signature with `hash`, MGF1 over the same hash, and exactly
    /// `saltLength` bytes of salt (not OpenSSL's "auto", which takes any salt length). True only
    /// when OpenSSL says exactly 1; any error or a non-RSA key is false.
    public func verifyRSAPSS(message: [UInt8], signature: [UInt8], hash: HashAlg, saltLength: Int) -> Bool {
        guard isRSA, let md = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(md) }
        var pctx: OpaquePointer? = nil
        let ok = EVP_DigestVerifyInit(md, &pctx, evpMD(hash), nil, pkey) == 1 && pctx != nil
            && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1
            && EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, evpMD(hash)) == 1
            && EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, Int32(saltLength)) == 1
            && EVP_DigestVerify(md, signature, signature.count, message, message.count) == 1
        ERR_clear_error()
        return ok
    }
}

extension PrivateKey {
    /// Generates an RSA key of `bits` bits (exponent 65537).
    public static func generateRSA(bits: Int) throws -> PrivateKey {
        let ctx = try notNil(EVP_PKEY_CTX_new_from_name(nil, "RSA", nil), "EVP_PKEY_CTX_new_from_name")
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_keygen_init(ctx), "EVP_PKEY_keygen_init")
        try check(EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, Int32(bits)), "EVP_PKEY_CTX_set_rsa_keygen_bits")
        var pkey: OpaquePointer? = nil
        try check(EVP_PKEY_generate(ctx, &pkey), "EVP_PKEY_generate")
        return PrivateKey(owning: try notNil(pkey, "EVP_PKEY_generate"))
    }
}

/// Certificates and CRLs signed with RSASSA-PSS (`hash`, MGF1 with `hash`, `saltLength`), in the
/// shape of AMD's SEV-SNP key hierarchy: for test chains only; Vouch issues its own certificates
/// with `CertificateAuthority`.
public enum RSAPSSIssuer {
    /// One extension to write: dotted OID, criticality, DER extnValue content.
    public struct Extension: Sendable {
        public var oid: String
        public var critical: Bool
        public var der: [UInt8]
        public init(oid: String, critical: Bool = false, der: [UInt8]) {
            self.oid = oid
            self.critical = critical
            self.der = der
        }
    }

    /// Issues a v3 certificate for `publicKey`, signed by `signingKey` (an RSA key) with PSS.
    /// `issuer` nil makes it self-issued (issuer name = subject). A CA gets basicConstraints
    /// CA:TRUE and keyUsage keyCertSign, cRLSign (both critical); `extensions` follow, in order.
    /// `serial` is the big-endian magnitude (`[0]` writes serial 0, as AMD's VCEKs have).
    public static func issue(subject: [(attribute: String, value: String)], publicKey: PublicKey, issuer: Certificate?, signingKey: PrivateKey,
                             serial: [UInt8], notBefore: Date, notAfter: Date, isCA: Bool, extensions: [Extension] = [],
                             hash: HashAlg = .sha384, saltLength: Int = 48) throws -> Certificate {
        let (x, cert) = try CertificateAuthority.newCertificate(subject: subject.map { ($0.attribute, $0.value) }, issuer: issuer?.x509,
                                                                publicKey: publicKey.pkey, serial: serial, notBefore: notBefore, notAfter: notAfter)
        var all: [CertificateExtension] = []
        if isCA {
            all.append(.keyUsage([.keyCertSign, .cRLSign], critical: true))
            all.append(.basicConstraints(isCA: true, critical: true))
        }
        for e in extensions {
            guard let oid = OID(dotted: e.oid) else {
                throw VouchError(.invalidValue, "an extension's OID is not in dotted decimal form", context: ["field": "extensions", "got": e.oid])
            }
            all.append(CertificateExtension(oid: oid, critical: e.critical, value: e.der))
        }
        try addExtensions(x, all)
        try withPSSContext(signingKey, hash: hash, saltLength: saltLength) { md in
            guard X509_sign_ctx(x, md) > 0 else { throw opensslError("X509_sign_ctx") }
        }
        // Re-parse, so the result is exactly what a reader of the DER sees.
        return try Certificate(der: cert.der)
    }

    /// A v2 CRL issued by `issuer` (signed with PSS by `signingKey`) listing `revokedSerials`
    /// (big-endian magnitudes), all revoked at `thisUpdate`.
    public static func makeCRL(issuer: Certificate, signingKey: PrivateKey, revokedSerials: [[UInt8]], thisUpdate: Date, nextUpdate: Date,
                               hash: HashAlg = .sha384, saltLength: Int = 48) throws -> [UInt8] {
        let crl = try notNil(X509_CRL_new(), "X509_CRL_new")
        defer { X509_CRL_free(crl) }
        try check(X509_CRL_set_version(crl, 1), "X509_CRL_set_version")
        try check(X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer.x509)), "X509_CRL_set_issuer_name")
        func time(_ d: Date, _ set: (UnsafeMutablePointer<ASN1_TIME>) -> Int32, _ op: String) throws {
            let t = try notNil(ASN1_TIME_new(), "ASN1_TIME_new")
            defer { ASN1_TIME_free(t) }
            guard ASN1_TIME_set(t, time_t(d.timeIntervalSince1970)) != nil else { throw opensslError("ASN1_TIME_set") }
            try check(set(t), op)
        }
        try time(thisUpdate, { X509_CRL_set1_lastUpdate(crl, $0) }, "X509_CRL_set1_lastUpdate")
        try time(nextUpdate, { X509_CRL_set1_nextUpdate(crl, $0) }, "X509_CRL_set1_nextUpdate")
        for serial in revokedSerials {
            let rev = try notNil(X509_REVOKED_new(), "X509_REVOKED_new")
            do {
                let bn = try notNil(BN_bin2bn(serial, Int32(serial.count), nil), "BN_bin2bn")
                defer { BN_free(bn) }
                let ai = try notNil(BN_to_ASN1_INTEGER(bn, nil), "BN_to_ASN1_INTEGER")
                defer { ASN1_INTEGER_free(ai) }
                try check(X509_REVOKED_set_serialNumber(rev, ai), "X509_REVOKED_set_serialNumber")
                try time(thisUpdate, { X509_REVOKED_set_revocationDate(rev, $0) }, "X509_REVOKED_set_revocationDate")
                try check(X509_CRL_add0_revoked(crl, rev), "X509_CRL_add0_revoked")
            } catch {
                X509_REVOKED_free(rev)
                throw error
            }
        }
        try check(X509_CRL_sort(crl), "X509_CRL_sort")
        try withPSSContext(signingKey, hash: hash, saltLength: saltLength) { md in
            guard X509_CRL_sign_ctx(crl, md) > 0 else { throw opensslError("X509_CRL_sign_ctx") }
        }
        return try derEncode("i2d_X509_CRL") { i2d_X509_CRL(crl, $0) }
    }

    /// Runs `body` with a digest-sign context set up for PSS with `key`.
    private static func withPSSContext(_ key: PrivateKey, hash: HashAlg, saltLength: Int, _ body: (OpaquePointer) throws -> Void) throws {
        let md = try notNil(EVP_MD_CTX_new(), "EVP_MD_CTX_new")
        defer { EVP_MD_CTX_free(md) }
        var pctx: OpaquePointer? = nil
        try check(EVP_DigestSignInit(md, &pctx, evpMD(hash), nil, key.pkey), "EVP_DigestSignInit")
        try check(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), "EVP_PKEY_CTX_set_rsa_padding")
        try check(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, evpMD(hash)), "EVP_PKEY_CTX_set_rsa_mgf1_md")
        try check(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, Int32(saltLength)), "EVP_PKEY_CTX_set_rsa_pss_saltlen")
        try body(md)
    }
}
