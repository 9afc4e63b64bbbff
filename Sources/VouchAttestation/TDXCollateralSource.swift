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
/// `IntelPCSFetcher` keeps them) holding the files a PCS client saves (`pcsFiles(names:ca:read:)`:
/// with both `pck_crl_platform.der` and `pck_crl_processor.der` there, the one of the CA that
/// issued the quote's PCK certificate). A link is followed once per read, and every file is read
/// from the directory it named then: a fetcher swapping in a new generation meanwhile is not
/// seen until the next read, never half. Read-only: nothing here writes or fetches. A file is
/// re-read when its size or modification time changes (or the link names another directory);
/// parsed collateral is kept in memory otherwise.
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
        let file = directory.appendingPathComponent(name + ".json")
        if FileManager.default.fileExists(atPath: file.path) {
            return try cached(name, stamp: [Self.stamp(file)]) {
                try TDXCollateral(dcapQVLJSON: try Self.read(file, limit: TDXCollateral.maxDocumentBytes))
            }
        }
        guard let folder = Self.resolved(directory.appendingPathComponent(name, isDirectory: true)) else { return nil }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).sorted()
        let stamp = [folder.path] + names.map { Self.stamp(folder.appendingPathComponent($0)) }
        return try cached("\(name)/\(ca?.rawValue ?? "")", stamp: stamp) {
            try Self.pcsFiles(names: Set(names), ca: ca) { try Self.read(folder.appendingPathComponent($0), limit: TDXCollateral.maxFieldBytes) }
        }
    }

    /// The directory `folder` is, or names when it is a symbolic link (read once: a relative
    /// target is taken in `folder`'s parent); nil when that is not a directory.
    public static func resolved(_ folder: URL) -> URL? {
        var target = folder
        if let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: folder.path) {
            target = destination.hasPrefix("/") ? URL(fileURLWithPath: destination, isDirectory: true)
                : folder.deletingLastPathComponent().appendingPathComponent(destination, isDirectory: true)
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: target.path, isDirectory: &isDirectory), isDirectory.boolValue else { return nil }
        return target
    }

    /// PCS files (`names`: those there; `read` gives one's bytes) as the collateral for a PCK
    /// certificate issued by `ca` (`TDXCollateral.pcsFiles`). With `ca`'s PCK CRL there, the other
    /// CA's is hidden; without it (or with no `ca`), the first there of the platform CA's and the
    /// processor CA's is taken. The PCK CRL's issuer chain is `pck_crl_issuer_chain_<ca>.pem` of the
    /// CA whose CRL is taken when there (a fetcher keeps one per CA), else `pck_crl_issuer_chain.pem`.
    public static func pcsFiles(names: Set<String>, ca: TDXPCKCA?, read: (String) throws -> [UInt8]?) throws -> TDXCollateral {
        func crl(_ ca: TDXPCKCA) -> String { "pck_crl_\(ca.rawValue).der" }
        let taken = ca.flatMap { names.contains(crl($0)) ? $0 : nil } ?? TDXPCKCA.allCases.first { names.contains(crl($0)) }
        let hidden = Set(TDXPCKCA.allCases.filter { $0 != taken }.map(crl))
        return try TDXCollateral.pcsFiles { file in
            var file = file
            if file == "pck_crl_issuer_chain.pem", let taken, names.contains("pck_crl_issuer_chain_\(taken.rawValue).pem") {
                file = "pck_crl_issuer_chain_\(taken.rawValue).pem"
            }
            guard names.contains(file), !hidden.contains(file) else { return nil }
            return try read(file)
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
