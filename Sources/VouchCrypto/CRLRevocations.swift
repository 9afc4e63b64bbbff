internal import COpenSSL
import Foundation
import VouchCore

extension CRL {
    /// When the CRL says the certificate with serial `serialHex` (as `Certificate.serialHex` and
    /// `revokedSerials` write it) was revoked; nil when it does not list it.
    public func revocationDate(serialHex: String) -> Date? { revocation(serialHex: serialHex)?.date }

    /// When and why (the CRL entry's reasonCode, RFC 5280 5.3.1; nil when the entry has none)
    /// the CRL says the certificate with serial `serialHex` was revoked; nil when it does not list it.
    public func revocation(serialHex: String) -> (date: Date, reason: Int?)? {
        guard let stack = X509_CRL_get_REVOKED(crl) else { return nil }
        for i in 0..<OPENSSL_sk_num(stack) {
            guard let rev = OPENSSL_sk_value(stack, i).map({ OpaquePointer($0) }),
                  let bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(rev), nil) else { continue }
            var bytes = [UInt8](repeating: 0, count: Int((BN_num_bits(bn) + 7) / 8))
            BN_bn2bin(bn, &bytes)
            BN_free(bn)
            let hex = Hex.encode(bytes)
            if (hex.isEmpty ? "0" : hex) == serialHex {
                var reason: Int?
                if let ext = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, nil, nil) {
                    let enumerated = ext.assumingMemoryBound(to: ASN1_ENUMERATED.self)
                    reason = Int(ASN1_ENUMERATED_get(enumerated))
                    ASN1_ENUMERATED_free(enumerated)
                }
                return (asn1Date(X509_REVOKED_get0_revocationDate(rev)), reason)
            }
        }
        return nil
    }
}
