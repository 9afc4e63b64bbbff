import VouchCrypto

/// NVIDIA's device-identity root for Hopper GPUs, compiled in so that a verifier needs no files to
/// trust it: the same bytes as Tests/Fixtures/nvidia-gpu/roots/nvidia_device_identity_ca.pem (a test
/// checks they are equal), which the corpus took from NVIDIA/nvtrust's local GPU verifier
/// (`verifier/certs/verifier_device_root.pem`, Apache-2.0).
public enum NvidiaRoots {
    /// CN=NVIDIA Device Identity CA (self-signed, ECDSA P-384, valid until 9999-12-31).
    public static let deviceIdentityCAPEM = """
-----BEGIN CERTIFICATE-----
MIICCzCCAZCgAwIBAgIQLTZwscoQBBHB/sDoKgZbVDAKBggqhkjOPQQDAzA1MSIw
IAYDVQQDDBlOVklESUEgRGV2aWNlIElkZW50aXR5IENBMQ8wDQYDVQQKDAZOVklE
SUEwIBcNMjExMTA1MDAwMDAwWhgPOTk5OTEyMzEyMzU5NTlaMDUxIjAgBgNVBAMM
GU5WSURJQSBEZXZpY2UgSWRlbnRpdHkgQ0ExDzANBgNVBAoMBk5WSURJQTB2MBAG
ByqGSM49AgEGBSuBBAAiA2IABA5MFKM7+KViZljbQSlgfky/RRnEQScW9NDZF8SX
gAW96r6u/Ve8ZggtcYpPi2BS4VFu6KfEIrhN6FcHG7WP05W+oM+hxj7nyA1r1jkB
2Ry70YfThX3Ba1zOryOP+MJ9vaNjMGEwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8B
Af8EBAMCAQYwHQYDVR0OBBYEFFeF/4PyY8xlfWi3Olv0jUrL+0lfMB8GA1UdIwQY
MBaAFFeF/4PyY8xlfWi3Olv0jUrL+0lfMAoGCCqGSM49BAMDA2kAMGYCMQCPeFM3
TASsKQVaT+8S0sO9u97PVGCpE9d/I42IT7k3UUOLSR/qvJynVOD1vQKVXf0CMQC+
EY55WYoDBvs2wPAH1Gw4LbcwUN8QCff8bFmV4ZxjCRr4WXTLFHBKjbfneGSBWwA=
-----END CERTIFICATE-----
"""

    /// The pinned root as a certificate (the PEM above is a constant; it parses).
    public static let deviceIdentityCA: Certificate = {
        guard let c = try? Certificate(pem: deviceIdentityCAPEM) else { preconditionFailure("the compiled-in NVIDIA Device Identity CA does not parse") }
        return c
    }()
}
