internal import COpenSSL
import Foundation
import VouchCore

// Certificates in the shape of Intel's SGX/TDX PKI (a root, a PCK CA, PCK and TCB signing
// certificates with chosen subjects and extensions), for the software TEE only: its roots are
// trusted only where a configuration names them.

extension CertificateAuthority {
    /// A self-signed root CA with `subject` (attribute short names and values, in order):
    /// CA:TRUE pathlen 1, keyCertSign and cRLSign, SKI and AKI.
    public static func tdxSimulationRoot(subject: [(String, String)], key: PrivateKey, notBefore: Date, notAfter: Date) throws -> CertificateAuthority {
        let (x, cert) = try newCertificate(subject: subject, issuer: nil, publicKey: key.pkey, serial: try randomSerial(), notBefore: notBefore, notAfter: notAfter)
        let keyID = try keyIdentifier(ofCertificate: x)
        try addExtensions(x, caExtensions(pathLength: 1, keyID: keyID, issuerKeyID: keyID))
        guard X509_sign(x, key.pkey, EVP_sha256()) > 0 else { throw opensslError("X509_sign") }
        return try CertificateAuthority(key: key, certificate: cert)
    }

    /// An intermediate CA under this one with `subject` (CA:TRUE pathlen 0, keyCertSign, cRLSign).
    public func tdxSimulationCA(subject: [(String, String)], key: PrivateKey, notBefore: Date, notAfter: Date) throws -> CertificateAuthority {
        let (x, cert) = try Self.newCertificate(subject: subject, issuer: certificate.x509, publicKey: key.pkey, serial: try randomSerial(),
                                                notBefore: notBefore, notAfter: notAfter)
        try addExtensions(x, Self.caExtensions(pathLength: 0, keyID: try keyIdentifier(ofCertificate: x),
                                               issuerKeyID: try authorityKeyIdentifier(ofIssuer: certificate.x509)))
        guard X509_sign(x, self.key.pkey, EVP_sha256()) > 0 else { throw opensslError("X509_sign") }
        return try CertificateAuthority(key: key, certificate: cert)
    }

    /// An end-entity certificate with `subject` for `publicKey`: basicConstraints (critical, not a
    /// CA), SKI, AKI, keyUsage digitalSignature and nonRepudiation (critical), then `extensions`
    /// (dotted OID, DER value; non-critical), as Intel's PCK and TCB signing certificates have.
    /// With `digitalSignature` false the keyUsage is keyAgreement only (a certificate that may not sign, for tests).
    public func tdxSimulationLeaf(subject: [(String, String)], publicKey: PublicKey, notBefore: Date, notAfter: Date,
                                  extensions: [(oid: String, der: [UInt8])] = [], digitalSignature: Bool = true) throws -> Certificate {
        let (x, cert) = try Self.newCertificate(subject: subject, issuer: certificate.x509, publicKey: publicKey.pkey, serial: try randomSerial(),
                                                notBefore: notBefore, notAfter: notAfter)
        var exts: [CertificateExtension] = [
            .basicConstraints(isCA: false, critical: true),
            .subjectKeyIdentifier(try keyIdentifier(ofCertificate: x)),
            .authorityKeyIdentifier(keyID: try authorityKeyIdentifier(ofIssuer: certificate.x509)),
            .keyUsage(digitalSignature ? [.digitalSignature, .nonRepudiation] : [.keyAgreement], critical: true),
        ]
        for (dotted, der) in extensions {
            guard let oid = OID(dotted: dotted) else {
                throw VouchError(.invalidValue, "an extension's OID is not in dotted decimal form", context: ["field": "extensions", "got": dotted])
            }
            exts.append(CertificateExtension(oid: oid, critical: false, value: der))
        }
        try addExtensions(x, exts)
        guard X509_sign(x, key.pkey, EVP_sha256()) > 0 else { throw opensslError("X509_sign") }
        return cert
    }
}
