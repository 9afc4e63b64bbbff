import Synchronization
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTPMWire

/// Hosts' attestation keys as OpenSSL keys with the scheme and hash their public areas fix, by the
/// exact TPM2B_PUBLIC bytes the host registered. Re-attestation verifies a quote from every host
/// every interval; building the key from its TPM public area each time (and setting up a verify
/// context for it) cost more than the signature check. Same bytes, same key and scheme: a cached
/// entry can never stand for another AK.
final class AttestationKeyCache: Sendable {
    private let keys = Mutex<[[UInt8]: AttestationKey]>([:])
    /// Far above any fleet one broker serves; past it the cache starts over rather than grow.
    static let capacity = 50_000

    /// Verifies a quote with the AK whose TPM2B_PUBLIC is `akPublic` (QuoteVerifier's checks), with
    /// SHA-1 only where the host's policy allows it.
    func verify(attest: [UInt8], signature: [UInt8], akPublic: [UInt8], expectedQualifyingData: [UInt8], pcrs: PCRValues,
                allowSHA1: Bool) -> QuoteVerdict {
        switch key(akPublic) {
        case let .success(key):
            return QuoteVerifier.verify(attest: attest, signature: signature, ak: key, expectedQualifyingData: expectedQualifyingData,
                                        pcrs: pcrs, allowSHA1: allowSHA1)
        case let .failure(e): return .rejected([e])
        }
    }

    /// The AK whose TPM2B_PUBLIC is `akPublic`, with the scheme and hash it fixes.
    func key(_ akPublic: [UInt8]) -> Result<AttestationKey, VouchError> {
        if let key = keys.withLock({ $0[akPublic] }) { return .success(key) }
        let key: AttestationKey
        do { key = try AttestationKey(tpmPublic: try TPMTPublic(tpm2bPublic: akPublic)) } catch let e as VouchError where e.code == .akSchemeNotAllowed {
            return .failure(e)
        } catch {
            return .failure(VouchError(.quoteSignatureInvalid, "attestation key cannot be used for verification"))
        }
        keys.withLock { keys in
            if keys.count >= Self.capacity { keys.removeAll(keepingCapacity: true) }
            keys[akPublic] = key
        }
        return .success(key)
    }
}
