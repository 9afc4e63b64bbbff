import Foundation
import VouchCore

extension ErrorCode {
    /// The kernel's configfs-tsm report interface is missing, refused a request, or answered
    /// something unusable (no provider, an empty report).
    public static let tsmUnavailable = ErrorCode("tsm_unavailable", status: 503)
    /// Another process wrote the same report instance between our write and our read (the
    /// instance's `generation` moved by more than our write): the report may not be ours.
    public static let tsmConflict = ErrorCode("tsm_conflict", status: 409)
}

/// A report from the Linux configfs-tsm interface (Documentation/ABI/testing/configfs-tsm-report,
/// Linux 6.7+): the common path for SEV-SNP (`provider` `sev_guest`) and TDX (`tdx_guest`) guests.
public struct TSMReport: Sendable, Equatable {
    /// `sev_guest` (outblob: an SNP ATTESTATION_REPORT; auxblob: the certificate table) or
    /// `tdx_guest` (outblob: a DCAP quote).
    public var provider: String
    public var outblob: [UInt8]
    public var auxblob: [UInt8]?
}

/// The file operations the report protocol needs, so that the protocol can be exercised where
/// there is no confidential-computing kernel (tests give their own).
public protocol TSMFileSystem: Sendable {
    func makeDirectory(_ path: String) throws
    func removeDirectory(_ path: String) throws
    func write(_ bytes: [UInt8], to path: String) throws
    /// nil when the attribute does not exist (auxblob on a provider without one).
    func read(_ path: String) throws -> [UInt8]?
}

/// The real configfs: mkdir/rmdir create and drop a report instance; attributes are files.
public struct ConfigFS: TSMFileSystem {
    public init() {}
    public func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o700) == 0 else { throw VouchError(.tsmUnavailable, "cannot create \(path): \(String(cString: strerror(errno)))") }
    }
    public func removeDirectory(_ path: String) throws { _ = rmdir(path) }
    public func write(_ bytes: [UInt8], to path: String) throws {
        guard let handle = FileHandle(forWritingAtPath: path) else { throw VouchError(.tsmUnavailable, "cannot open \(path) for writing") }
        defer { try? handle.close() }
        do { try handle.write(contentsOf: Data(bytes)) } catch { throw VouchError(.tsmUnavailable, "the kernel refused the write to \(path): \(error)") }
    }
    public func read(_ path: String) throws -> [UInt8]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        // A report is produced when outblob is read; the kernel may fail the read (e.g. the
        // hypervisor refused the guest request).
        guard let handle = FileHandle(forReadingAtPath: path) else { throw VouchError(.tsmUnavailable, "cannot open \(path)") }
        defer { try? handle.close() }
        do { return [UInt8](try handle.readToEnd() ?? Data()) } catch { throw VouchError(.tsmUnavailable, "the kernel refused the read of \(path): \(error)") }
    }
}

/// Asks the kernel for a TEE report bound to 64 bytes of our choosing, through configfs-tsm:
/// 1. create a fresh report instance (`mkdir ROOT/vouch-RANDOM`), dropped afterwards;
/// 2. write `privlevel` when asked (SEV-SNP VMPL);
/// 3. read `generation`, write `inblob` (exactly 64 bytes: the report data), read `outblob`,
///    `auxblob` (optional), `provider`, and `generation` again;
/// 4. refuse the answer unless `generation` moved by exactly our one write (`tsm_conflict`:
///    another writer touched the instance, the report may carry their data) and the provider
///    is one Vouch reads.
public struct TSMReportSource: Sendable {
    public static let defaultRoot = "/sys/kernel/config/tsm/report"
    public static let providers: Set<String> = ["sev_guest", "tdx_guest"]
    let root: String
    let fs: TSMFileSystem

    public init(root: String = TSMReportSource.defaultRoot, fileSystem: TSMFileSystem = ConfigFS()) {
        self.root = root
        self.fs = fileSystem
    }

    public func report(reportData: [UInt8], privilegeLevel: Int? = nil) throws -> TSMReport {
        guard reportData.count == 64 else { throw VouchError(.invalidValue, "report data must be 64 bytes", context: ["field": "reportData"]) }
        if let level = privilegeLevel, !(0...3).contains(level) {
            throw VouchError(.invalidValue, "privilege level must be 0-3", context: ["field": "privlevel"])
        }
        var suffix = [UInt8](repeating: 0, count: 8)
        for i in suffix.indices { suffix[i] = UInt8.random(in: 0...255) }
        let dir = "\(root)/vouch-\(Hex.encode(suffix))"
        try fs.makeDirectory(dir)
        defer { try? fs.removeDirectory(dir) }
        if let level = privilegeLevel { try fs.write(Array("\(level)".utf8), to: dir + "/privlevel") }
        let before = try generation(dir)
        try fs.write(reportData, to: dir + "/inblob")
        guard let outblob = try fs.read(dir + "/outblob"), !outblob.isEmpty else {
            throw VouchError(.tsmUnavailable, "the kernel returned no report", context: ["path": dir + "/outblob"])
        }
        let auxblob = try fs.read(dir + "/auxblob").flatMap { $0.isEmpty ? nil : $0 }
        guard let raw = try fs.read(dir + "/provider") else { throw VouchError(.tsmUnavailable, "the report instance names no provider") }
        let provider = String(decoding: raw, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let after = try generation(dir)
        guard after == before + 1 else {
            throw VouchError(.tsmConflict, "the report instance changed while we used it (generation \(before) → \(after))")
        }
        guard Self.providers.contains(provider) else {
            throw VouchError(.tsmUnavailable, "the TSM provider is not one Vouch reads", context: ["got": String(provider.prefix(32))])
        }
        return TSMReport(provider: provider, outblob: outblob, auxblob: auxblob)
    }

    private func generation(_ dir: String) throws -> UInt64 {
        guard let raw = try fs.read(dir + "/generation"),
              let n = UInt64(String(decoding: raw, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw VouchError(.tsmUnavailable, "the report instance has no readable generation", context: ["path": dir + "/generation"])
        }
        return n
    }
}
