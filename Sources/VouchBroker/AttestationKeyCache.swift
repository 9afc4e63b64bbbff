import Synchronization
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTPMWire

/// Hosts' attestation keys as OpenSSL keys, by the exact TPM2B_PUBLIC bytes the host registered.
/// Re-attestation verifies a quote from every host every interval; building the key from its TPM
/// public area each time (and setting up a verify context for it) cost more than the signature
/// check. Same bytes, same key: a cached entry can never stand for another AK.
final class AttestationKeyCache: Sendable {
    private let keys = Mutex<[[UInt8]: PublicKey]>([:])
    /// Far above any fleet one broker serves; past it the cache starts over rather than grow.
    static let capacity = 50_000

    /// Verifies a quote with the AK whose TPM2B_PUBLIC is `akPublic` (QuoteVerifier's checks).
    func verify(attest: [UInt8], signature: [UInt8], akPublic: [UInt8], expectedQualifyingData: [UInt8], pcrs: PCRValues) -> QuoteVerdict {
        guard let key = key(akPublic) else {
            return .rejected([VouchError(.quoteSignatureInvalid, "attestation key cannot be used for verification")])
        }
        return QuoteVerifier.verify(attest: attest, signature: signature, ak: key, expectedQualifyingData: expectedQualifyingData, pcrs: pcrs)
    }

    private func key(_ akPublic: [UInt8]) -> PublicKey? {
        if let key = keys.withLock({ $0[akPublic] }) { return key }
        guard let key = try? PublicKey(tpmPublic: try TPMTPublic(tpm2bPublic: akPublic)) else { return nil }
        keys.withLock { keys in
            if keys.count >= Self.capacity { keys.removeAll(keepingCapacity: true) }
            keys[akPublic] = key
        }
        return key
    }
}
