import Foundation
import Synchronization
import VouchCore
import VouchCrypto
import VouchTEEWire

/// Where the broker finds the collateral (TCB info, QE identity, CRLs) for a TDX platform, by the
/// FMSPC its PCK certificate names. What a source returns is unverified: `TDXVerifier` checks
/// every signature, chain and validity window, and that the TCB info's FMSPC is the PCK
/// certificate's.
public protocol TDXCollateralSource: Sendable {
    /// The collateral for `fmspc` (6 bytes), or nil when the source has none (the quote's TCB is
    /// then unknown, which the policy refuses unless `tdx.tcb.allowUnknown`). Throws
    /// `tee_evidence_malformed` for collateral that is there but unreadable.
    func collateral(fmspc: [UInt8]) throws -> TDXCollateral?

    /// The collateral for the platform a quote's PCK certificate names, as the broker asks at
    /// `now` (its clock). The default is `collateral(fmspc:)`; a source that fetches uses the rest
    /// of the request (which PCK CRL, the PCK chain check before it asks a vendor) and `now`
    /// (what has expired).
    func collateral(for request: TDXCollateralRequest, at now: Date) throws -> TDXCollateral?
}

extension TDXCollateralSource {
    public func collateral(for request: TDXCollateralRequest, at now: Date) throws -> TDXCollateral? {
        try collateral(fmspc: request.fmspc)
    }
}

/// Which Intel CA issued a PCK certificate, as PCS names it (`pckcrl?ca=`): the PCK CRL to use.
public enum TDXPCKCA: String, Sendable, CaseIterable {
    case platform
    case processor

    /// The CA an issuer name (RFC 2253) names: CN "Intel SGX PCK Platform CA" or "… Processor CA"
    /// (the software TEE's "Simulated SGX PCK Platform CA" too). Nil for anything else.
    public init?(issuer: String) {
        let cn = SNPTrustStore.commonName(issuer) ?? ""
        if cn.hasSuffix("SGX PCK Platform CA") { self = .platform } else if cn.hasSuffix("SGX PCK Processor CA") { self = .processor } else { return nil }
    }
}

/// What the broker asks a `TDXCollateralSource` for: the FMSPC and issuing CA an (unverified) PCK
/// certificate names, and a check that its chain verifies to the verifier's roots. A source that
/// would ask a vendor's service runs `pckChainVerifies` first, so a quote with a made-up PCK
/// certificate cannot make the broker fetch anything.
public struct TDXCollateralRequest: Sendable {
    /// 6 bytes.
    public let fmspc: [UInt8]
    /// Nil when the issuer is neither of Intel's PCK CAs.
    public let pckCA: TDXPCKCA?
    public let pckChainVerifies: @Sendable () -> Bool

    public init(fmspc: [UInt8], pckCA: TDXPCKCA?, pckChainVerifies: @escaping @Sendable () -> Bool) {
        self.fmspc = fmspc
        self.pckCA = pckCA
        self.pckChainVerifies = pckChainVerifies
    }

    /// The request for a quote's PCK certificate chain (leaf first, as the quote carries it), its
    /// chain checked against `roots` at `now` when the source asks. Nil when there is no leaf or it
    /// has no readable SGX extension (the quote's TCB is then unknown).
    public init?(pckChain chain: [Certificate], roots: [Certificate], at now: Date) {
        guard let leaf = chain.first, let der = leaf.extensionValue(oid: SGXPCKExtension.oid), let sgx = try? SGXPCKExtension(der: der) else { return nil }
        let intermediates = Array(chain.dropFirst())
        self.init(fmspc: sgx.fmspc, pckCA: TDXPCKCA(issuer: leaf.issuer),
                  pckChainVerifies: { leaf.verify(anchors: roots, intermediates: intermediates, at: now) == nil })
    }
}

/// Collateral held in memory, by FMSPC (for tests and the software TEE).
public struct TDXCollateralSet: TDXCollateralSource {
    public let byFMSPC: [String: TDXCollateral]

    /// `byFMSPC`: lowercase hex FMSPC → collateral.
    public init(_ byFMSPC: [String: TDXCollateral]) { self.byFMSPC = byFMSPC }

    public func collateral(fmspc: [UInt8]) throws -> TDXCollateral? { byFMSPC[Hex.encode(fmspc)] }
}

/// Collateral read from a directory an operator (or a fetcher) fills, one entry per FMSPC
/// (lowercase hex, 12 digits): `<fmspc>.json`, dcap-qvl's `QuoteCollateralV3` JSON
/// (`TDXCollateral(dcapQVLJSON:)`), or a directory `<fmspc>/` (or a symbolic link to one, as
/// `IntelPCSFetcher` keeps them) holding the files a PCS client saves (`TDXCollateral.pcsFiles`;
/// with both `pck_crl_platform.der` and `pck_crl_processor.der` there, the one of the CA that
/// issued the quote's PCK certificate). Read-only: nothing here writes or fetches. A file is
/// re-read when its size or modification time changes; parsed collateral is kept in memory otherwise.
public final class TDXCollateralDirectory: TDXCollateralSource {
    public let directory: URL
    private struct Entry { let stamp: [String]; let collateral: TDXCollateral }
    private let cache = Mutex<[String: Entry]>([:])

    public init(directory: URL) { self.directory = directory }

    public func collateral(fmspc: [UInt8]) throws -> TDXCollateral? { try load(fmspc: fmspc, ca: nil) }

    public func collateral(for request: TDXCollateralRequest, at now: Date) throws -> TDXCollateral? {
        try load(fmspc: request.fmspc, ca: request.pckCA)
    }

    private func load(fmspc: [UInt8], ca: TDXPCKCA?) throws -> TDXCollateral? {
        guard fmspc.count == 6 else { return nil }
        let name = Hex.encode(fmspc)
        let fm = FileManager.default
        let file = directory.appendingPathComponent(name + ".json")
        let folder = directory.appendingPathComponent(name, isDirectory: true)
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: file.path) {
            return try cached(name, stamp: [Self.stamp(file)]) {
                try TDXCollateral(dcapQVLJSON: try Self.read(file, limit: TDXCollateral.maxDocumentBytes))
            }
        }
        guard fm.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else { return nil }
        let names = ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).sorted()
        // The other CA's CRL is hidden when this CA's is there (pcsFiles takes the platform's first).
        var hidden: String?
        if let ca, names.contains("pck_crl_\(ca.rawValue).der"), let other = TDXPCKCA.allCases.first(where: { $0 != ca }) {
            hidden = "pck_crl_\(other.rawValue).der"
        }
        let stamp = [hidden ?? ""] + names.map { Self.stamp(folder.appendingPathComponent($0)) }
        return try cached(name, stamp: stamp) {
            try TDXCollateral.pcsFiles { file in
                let url = folder.appendingPathComponent(file)
                guard file != hidden, fm.fileExists(atPath: url.path) else { return nil }
                return try Self.read(url, limit: TDXCollateral.maxFieldBytes)
            }
        }
    }

    private func cached(_ name: String, stamp: [String], _ load: () throws -> TDXCollateral) throws -> TDXCollateral {
        if let hit = cache.withLock({ $0[name] }), hit.stamp == stamp { return hit.collateral }
        let collateral = try load()
        cache.withLock { c in
            if c.count >= 256 { c.removeAll() }
            c[name] = Entry(stamp: stamp, collateral: collateral)
        }
        return collateral
    }

    /// Name, size and modification time: what makes a file be read again.
    private static func stamp(_ url: URL) -> String {
        let a = try? FileManager.default.attributesOfItem(atPath: url.path)
        let size = (a?[.size] as? NSNumber)?.int64Value ?? -1
        let modified = (a?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1
        return "\(url.lastPathComponent):\(size):\(modified)"
    }

    /// A file of at most `limit` bytes (larger: `tee_evidence_malformed`, unread).
    private static func read(_ url: URL, limit: Int) throws -> [UInt8] {
        guard let handle = try? FileHandle(forReadingFrom: url) else {
            throw VouchError(.teeEvidenceMalformed, "TDX collateral file cannot be read", context: ["field": url.lastPathComponent])
        }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: limit + 1)) ?? Data()
        guard data.count <= limit else {
            throw VouchError(.teeEvidenceMalformed, "TDX collateral file is larger than allowed", context: ["field": url.lastPathComponent, "expected": "<= \(limit)"])
        }
        return [UInt8](data)
    }
}
