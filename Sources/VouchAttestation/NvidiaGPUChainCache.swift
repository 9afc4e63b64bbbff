import Foundation
import VouchCore
import VouchCrypto

/// What an `NvidiaGPUVerifier` has verified of GPU certificate chains, so that repeated evidence
/// from the same GPU costs the leaf→issuer step and the SPDM signature rather than every
/// certificate signature up to the NVIDIA Device Identity CA.
///
/// An entry is the SHA-256 digest of a chain's certificates above the leaf (each DER, length
/// first), stored once that chain, with a leaf under it, verified in full to one of the verifier's
/// pinned roots and its first certificate was shown to have issued that leaf directly. It holds
/// only within the window where every one of those certificates, and every pinned root, is valid;
/// outside it a lookup misses and the chain is verified in full again. A hit never stands for the
/// leaf: the verifier still checks the leaf's own shape (not a CA, may sign), its signature by
/// the cached issuer and its validity at the check time (`Certificate.verify` with the issuer as a
/// partial-chain anchor), and then the SPDM signature, FWID, nonce and versions as on a miss.
/// Bounded; emptied when full. Shared by copies of the verifier that made it.
final class NvidiaGPUChainCache: Sendable {
    static let maxChains = 4096
    private let chains = ReadMostly<[[UInt8]: TDXWindow]>([:])

    /// The key of `intermediates` (the chain without its leaf).
    static func key(_ intermediates: [Certificate]) -> [UInt8]? {
        var bytes: [UInt8] = []
        for c in intermediates {
            guard let der = try? c.der else { return nil }
            withUnsafeBytes(of: UInt32(der.count).bigEndian) { bytes += $0 }
            bytes += der
        }
        return Crypto.sha256(bytes)
    }

    /// True when these intermediates verified earlier and every certificate among them (and every
    /// pinned root) is valid at `now`.
    func verified(_ key: [UInt8], at now: Date) -> Bool {
        chains.read { $0[key] }?.contains(now) == true
    }

    func store(_ key: [UInt8], window: TDXWindow) {
        chains.write { c in
            if c.count >= Self.maxChains { c.removeAll() }
            c[key] = window
        }
    }

    var count: Int { chains.read { $0.count } }
}
