import Foundation
import Synchronization
import VouchCore
import VouchCrypto
import VouchTEEWire
import VouchTPMWire

/// Bytes as a dictionary key: equal only when every byte is equal (memcmp); hashed in bulk over
/// the count and at most the first 512 bytes (`Hasher` is seeded per process; `[UInt8]`'s own
/// hashing feeds it one byte at a time), so a lookup costs a short hash and one comparison rather
/// than a digest of the whole. For tables of what verified (or of keys no longer than the prefix):
/// unverified bytes made to share a prefix would all land in one bucket.
struct ExactBytes: Hashable, Sendable {
    static let hashedPrefix = 512
    let bytes: [UInt8]

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    static func == (a: ExactBytes, b: ExactBytes) -> Bool {
        a.bytes.count == b.bytes.count && a.bytes.withUnsafeBytes { x in
            b.bytes.withUnsafeBytes { y in x.isEmpty || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
        }
    }

    func hash(into h: inout Hasher) {
        h.combine(bytes.count)
        bytes.withUnsafeBytes { h.combine(bytes: UnsafeRawBufferPointer(rebasing: $0.prefix(Self.hashedPrefix))) }
    }
}

/// A verified PCK chain's place in the cache: the chain's exact bytes and the verified collateral
/// it was checked against (its CRLs decide revocation), named by that collateral's serial; nil
/// when checked without collateral.
struct TDXChainKey: Hashable, Sendable {
    let chain: ExactBytes
    let collateral: UInt64?
}

/// A QE report and its signature, verified with the key of one verified PCK chain: the QE's
/// endorsement of the attestation key its REPORTDATA binds (the last link from the PCK key to the
/// key that signs quotes, as a VCEK is for SEV-SNP). Equal only when all three are; hashed by the
/// collateral's serial and the signature.
struct TDXEndorsementKey: Hashable, Sendable {
    let chain: TDXChainKey
    let report: ExactBytes
    let signature: ExactBytes

    func hash(into h: inout Hasher) {
        h.combine(chain.collateral)
        h.combine(signature)
    }
}

/// What a `TDXVerifier` has verified, kept only within the window its verdict holds (CRLs',
/// collateral's and certificates' validity, by the caller's clock), so repeated quotes from one
/// platform cost the quote's own signature rather than every chain, CRL and collateral signature:
/// - collateral, by its exact bytes: an entry keeps the collateral it checked and a lookup
///   compares the whole of it (`==`, constant time when the caller passes the same storage, as
///   the broker's collateral source does; a full comparison otherwise), so no digest of 15 KB is
///   taken per call and no other bytes can match; each entry has a serial, never reused;
/// - PCK chains, by their exact bytes and the serial of the collateral (CRLs) they were checked
///   against;
/// - QE report signatures, by the verified chain and the exact report and signature bytes;
/// - parsed attestation keys, by their exact bytes (parsing only: the quote signature is
///   verified on every call).
/// Each table is bounded and emptied when full.
final class TDXVerificationCache: Sendable {
    static let maxCollateral = 64, maxChains = 4096, maxEndorsements = 4096, maxKeys = 4096
    private struct CollateralEntry: Sendable {
        let collateral: TDXCollateral
        let outcome: TDXCollateralOutcome
    }
    private let collateral = ReadMostly<[CollateralEntry]>([])
    private let serials = Atomic<UInt64>(0)
    private let chains = ReadMostly<[TDXChainKey: TDXVerifiedPCK]>([:])
    private let endorsements = ReadMostly<[TDXEndorsementKey: TDXWindow]>([:])
    private let attestationKeys = ReadMostly<[ExactBytes: PublicKey]>([:])

    /// A serial for a collateral check, unique for this cache's lifetime.
    func nextSerial() -> UInt64 { serials.wrappingAdd(1, ordering: .relaxed).newValue }

    /// The outcome stored for exactly these bytes, if its window holds at `now`.
    func collateral(_ c: TDXCollateral, at now: Date) -> TDXCollateralOutcome? {
        guard let hit = collateral.read({ $0.first { $0.collateral == c } }), hit.outcome.window?.contains(now) == true else { return nil }
        return hit.outcome
    }

    /// Keeps an outcome whose every part verified (it replaces any entry for the same bytes).
    func store(_ outcome: TDXCollateralOutcome, for c: TDXCollateral) {
        guard outcome.window != nil else { return }
        collateral.write { entries in
            entries.removeAll { $0.collateral == c }
            if entries.count >= Self.maxCollateral { entries.removeAll() }
            entries.append(CollateralEntry(collateral: c, outcome: outcome))
        }
    }

    func chain(_ key: TDXChainKey, at now: Date) -> TDXVerifiedPCK? {
        chains.read { $0[key] }.flatMap { $0.window.contains(now) ? $0 : nil }
    }

    func store(chain: TDXVerifiedPCK, key: TDXChainKey) {
        chains.write { c in
            if c.count >= Self.maxChains { c.removeAll() }
            c[key] = chain
        }
    }

    /// True when exactly this QE report and signature verified with this chain's key and the
    /// chain's window holds at `now`.
    func endorsed(_ key: TDXEndorsementKey, at now: Date) -> Bool {
        endorsements.read { $0[key] }?.contains(now) == true
    }

    func store(endorsement key: TDXEndorsementKey, window: TDXWindow) {
        endorsements.write { c in
            if c.count >= Self.maxEndorsements { c.removeAll() }
            c[key] = window
        }
    }

    /// The attestation key (x‖y on P-256) as a public key, parsed once.
    func attestationKey(_ xy: [UInt8]) -> PublicKey? {
        let key = ExactBytes(xy)
        if let k = attestationKeys.read({ $0[key] }) { return k }
        guard xy.count == 64, let k = try? PublicKey(ecPoint: .ecc(curve: .nistP256, x: Array(xy[0..<32]), y: Array(xy[32..<64]))) else { return nil }
        attestationKeys.write { c in
            if c.count >= Self.maxKeys { c.removeAll() }
            c[key] = k
        }
        return k
    }
}
