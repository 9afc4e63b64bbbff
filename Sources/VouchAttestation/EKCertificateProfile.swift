import VouchCore
import VouchCrypto

/// What Vouch requires of an EK certificate beyond its chain (TCG EK Credential Profile for TPM
/// 2.0, 3.2): the subjectAltName extension holds a directoryName with the TPM manufacturer
/// (2.23.133.2.1), model (2.23.133.2.2) and version (2.23.133.2.3); and if the certificate has an
/// extendedKeyUsage, it includes tcg-kp-EKCertificate (2.23.133.8.1).
///
/// The profile makes the SAN mandatory for every TPM 2.0 EK certificate, while the EKU is
/// optional (many manufacturers' certificates carry none), so requiring the EKU would refuse real
/// EK certificates; an EKU that exists but names other purposes means the CA issued the key for
/// something else, and is refused.
public enum EKCertificateProfile {
    static let tpmManufacturer: [UInt8] = [0x67, 0x81, 0x05, 0x02, 0x01]
    static let tpmModel: [UInt8] = [0x67, 0x81, 0x05, 0x02, 0x02]
    static let tpmVersion: [UInt8] = [0x67, 0x81, 0x05, 0x02, 0x03]
    static let ekCertificatePurpose: [UInt8] = [0x67, 0x81, 0x05, 0x08, 0x01]
    static let oidTag: UInt8 = 0x06

    /// The TPM attributes the certificate names.
    public struct TPMAttributes: Sendable, Equatable {
        public let manufacturer: String
        public let model: String
        public let version: String
    }

    /// Checks the profile; returns the TPM attributes, or an `ek_certificate_profile` error.
    public static func check(_ cert: Certificate) -> Result<TPMAttributes, VouchError> {
        if let eku = cert.extensionValue(oid: "2.5.29.37") {
            guard let purposes = try? oids(inSequence: eku), purposes.contains(ekCertificatePurpose) else {
                return .failure(VouchError(.ekCertificateProfile, "EK certificate's extended key usage does not include tcg-kp-EKCertificate",
                                           context: ["field": "extendedKeyUsage", "expected": "2.23.133.8.1"]))
            }
        }
        guard let san = cert.extensionValue(oid: "2.5.29.17") else {
            return .failure(VouchError(.ekCertificateProfile, "EK certificate has no subjectAltName naming the TPM",
                                       context: ["field": "subjectAltName", "expected": "directoryName with TPM manufacturer, model and version"]))
        }
        guard let attrs = try? tpmAttributes(subjectAltName: san) else {
            return .failure(VouchError(.ekCertificateProfile, "EK certificate's subjectAltName does not name the TPM manufacturer, model and version",
                                       context: ["field": "subjectAltName", "expected": "directoryName with 2.23.133.2.1, 2.23.133.2.2, 2.23.133.2.3"]))
        }
        return .success(attrs)
    }

    private static func oids(inSequence der: [UInt8]) throws -> [[UInt8]] {
        var outer = DER.Reader(der)
        var seq = try outer.sequence("extendedKeyUsage")
        guard outer.isAtEnd else { throw VouchError(.invalidValue, "trailing bytes after extendedKeyUsage") }
        var out: [[UInt8]] = []
        while !seq.isAtEnd { out.append(try seq.read(oidTag, "extendedKeyUsage.purpose")) }
        return out
    }

    /// Finds, in the SAN's GeneralNames, a directoryName ([4]) holding all three TPM attributes.
    private static func tpmAttributes(subjectAltName der: [UInt8]) throws -> TPMAttributes {
        var outer = DER.Reader(der)
        var names = try outer.sequence("subjectAltName")
        while !names.isAtEnd {
            guard let tag = names.peekTag else { break }
            let value = try names.read(tag, "subjectAltName.name")
            guard tag == 0xa4 else { continue }
            var dn = DER.Reader(value)
            var rdns = try dn.sequence("directoryName")
            var found: [[UInt8]: String] = [:]
            while !rdns.isAtEnd {
                var set = DER.Reader(try rdns.read(0x31, "directoryName.rdn"))
                while !set.isAtEnd {
                    var atv = try set.sequence("directoryName.attribute")
                    let type = try atv.read(oidTag, "directoryName.attribute.type")
                    guard let valueTag = atv.peekTag else { continue }
                    let text = try atv.read(valueTag, "directoryName.attribute.value")
                    found[type] = String(decoding: text, as: UTF8.self)
                }
            }
            if let m = found[tpmManufacturer], let model = found[tpmModel], let v = found[tpmVersion], !m.isEmpty {
                return TPMAttributes(manufacturer: m, model: model, version: v)
            }
        }
        throw VouchError(.invalidValue, "no directoryName with the TPM attributes")
    }
}

/// The host identity, derived from what the EK certificate certifies.
public enum EKIdentity {
    /// The host id for an EK certificate: the first 16 bytes of SHA-256 over the DER
    /// SubjectPublicKeyInfo of the certificate's key in canonical form (RSA: minimal INTEGERs, so
    /// no exponent encoding can differ; EC: named curve, uncompressed point), as 32 lowercase hex
    /// digits. It depends only on the certified key: re-encoding the EK public area, or a reissued
    /// certificate for the same key, gives the same id. Stored hosts can be re-keyed by calling
    /// this on their stored EK certificate.
    public static func hostID(ekCertificateDER: [UInt8]) throws -> String {
        let cert = try Certificate(der: ekCertificateDER)
        return try hostID(ekKey: cert.publicKey)
    }

    /// The host id for an EK public key (see `hostID(ekCertificateDER:)`).
    public static func hostID(ekKey: PublicKey) throws -> String {
        Hex.encode(Crypto.sha256(try ekKey.canonicalSPKIDER).prefix(16))
    }
}
