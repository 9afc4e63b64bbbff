import VouchCore
import VouchCrypto

/// The AWS Nitro Enclaves Root-G1 (CN=aws.nitro-enclaves, P-384, valid 2019-10-28..2049-10-28),
/// pinned: every attestation document's `cabundle` must open with exactly these bytes. AWS
/// publishes it with its SHA-256 fingerprint in the Nitro Enclaves User Guide ("Verifying the
/// root of trust"); the PEM is compiled in and its fingerprint checked before it is trusted.
public enum NitroRoot {
    public static let sha256Fingerprint = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"

    public static let pem = """
-----BEGIN CERTIFICATE-----
MIICETCCAZagAwIBAgIRAPkxdWgbkK/hHUbMtOTn+FYwCgYIKoZIzj0EAwMwSTEL
MAkGA1UEBhMCVVMxDzANBgNVBAoMBkFtYXpvbjEMMAoGA1UECwwDQVdTMRswGQYD
VQQDDBJhd3Mubml0cm8tZW5jbGF2ZXMwHhcNMTkxMDI4MTMyODA1WhcNNDkxMDI4
MTQyODA1WjBJMQswCQYDVQQGEwJVUzEPMA0GA1UECgwGQW1hem9uMQwwCgYDVQQL
DANBV1MxGzAZBgNVBAMMEmF3cy5uaXRyby1lbmNsYXZlczB2MBAGByqGSM49AgEG
BSuBBAAiA2IABPwCVOumCMHzaHDimtqQvkY4MpJzbolL//Zy2YlES1BR5TSksfbb
48C8WBoyt7F2Bw7eEtaaP+ohG2bnUs990d0JX28TcPQXCEPZ3BABIeTPYwEoCWZE
h8l5YoQwTcU/9KNCMEAwDwYDVR0TAQH/BAUwAwEB/zAdBgNVHQ4EFgQUkCW1DdkF
R+eWw5b6cp3PmanfS5YwDgYDVR0PAQH/BAQDAgGGMAoGCCqGSM49BAMDA2kAMGYC
MQCjfy+Rocm9Xue4YnwWmNJVA44fA0P5W2OpYow9OYCVRaEevL8uO1XYru5xtMPW
rfMCMQCi85sWBbJwKKXdS6BptQFuZbT73o/gBh1qUxl/nNr12UO8Yfwr6wPLb+6N
IwLz3/Y=
-----END CERTIFICATE-----
"""

    /// The root certificate, after its fingerprint matched (`config` if the compiled-in copy
    /// were ever altered).
    public static func certificate() throws -> Certificate {
        let cert = try Certificate(pem: pem)
        guard Hex.encode(Crypto.sha256(try cert.der)) == sha256Fingerprint else {
            throw VouchError(.config, "the compiled-in AWS Nitro Enclaves root does not have its pinned fingerprint", context: ["expected": sha256Fingerprint])
        }
        return cert
    }
}
