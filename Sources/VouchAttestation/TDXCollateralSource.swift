import Foundation
import Synchronization
import VouchCore
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
/// (`TDXCollateral(dcapQVLJSON:)`), or a directory `<fmspc>/` holding the files a PCS client saves
/// (`TDXCollateral.pcsFiles`). Read-only: nothing here writes or fetches. A file is re-read when
/// its size or modification time changes; parsed collateral is kept in memory otherwise.
public final class TDXCollateralDirectory: TDXCollateralSource {
    public let directory: URL
    private struct Entry { let stamp: [String]; let collateral: TDXCollateral }
    private let cache = Mutex<[String: Entry]>([:])

    public init(directory: URL) { self.directory = directory }

    public func collateral(fmspc: [UInt8]) throws -> TDXCollateral? {
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
        let stamp = names.map { Self.stamp(folder.appendingPathComponent($0)) }
        return try cached(name, stamp: stamp) {
            try TDXCollateral.pcsFiles { file in
                let url = folder.appendingPathComponent(file)
                guard fm.fileExists(atPath: url.path) else { return nil }
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
