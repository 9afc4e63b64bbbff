import Foundation
import VouchCore
import VouchRuntime
#if canImport(Glibc)
import Glibc
#endif

/// The fetchers' on-disk cache: directories 0700, files 0600, each file written under a temporary
/// name, fsynced and renamed into place (`Files.writeAtomically`). A set of files that must change
/// together (a TDX platform's collateral: TCB info and QE identity name the same TCB evaluation
/// data number) is a generation: a new hidden directory `.<name>.<seconds>.<random>` written whole,
/// then `<name>` — a symbolic link to it — replaced by a rename, so a reader that follows the link
/// once and reads every file from the directory it named (`TDXCollateralDirectory`: this broker,
/// or another `vouchd --tdx-collateral` on the same directory) sees the old set or the new one,
/// never a mix. The seconds are the broker's clock when it fetched (what `refreshAfter` counts
/// from); the previous generation is kept for a reader still inside it, older ones are removed.
enum CacheFiles {
    static func write(_ bytes: [UInt8], to url: URL) throws {
        try Files.makeDirectory(url.deletingLastPathComponent().path, mode: 0o700)
        try Files.writeAtomically(bytes, to: url.path, mode: 0o600)
    }

    /// A file's bytes, or nil when it is absent, unreadable or larger than `limit`.
    static func read(_ url: URL, limit: Int) -> [UInt8]? {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return nil }
        defer { try? handle.close() }
        guard let data = try? handle.read(upToCount: limit + 1), data.count <= limit else { return nil }
        return [UInt8](data)
    }

    /// Replaces the generation `name` in `directory` by one holding `files`, fetched at `fetchedAt`.
    static func publish(_ files: [String: [UInt8]], as name: String, in directory: URL, fetchedAt: Date) throws {
        try Files.makeDirectory(directory.path, mode: 0o700)
        let random = Hex.encode((0..<4).map { _ in UInt8.random(in: 0...255) })
        let generation = ".\(name).\(Int64(fetchedAt.timeIntervalSince1970.rounded(.down))).\(random)"
        let folder = directory.appendingPathComponent(generation)
        try Files.makeDirectory(folder.path, mode: 0o700)
        for (file, bytes) in files { try Files.writeAtomically(bytes, to: folder.appendingPathComponent(file).path, mode: 0o600) }
        let link = directory.appendingPathComponent(".\(name).link-\(random)").path
        guard symlink(generation, link) == 0 else { throw VouchError(.io, "cannot create \(link)", context: ["errno": "\(errno)"]) }
        guard rename(link, directory.appendingPathComponent(name).path) == 0 else {
            let e = errno
            unlink(link)
            throw VouchError(.io, "cannot replace \(directory.appendingPathComponent(name).path) (an operator's directory is never replaced)",
                             context: ["errno": "\(e)"])
        }
        let older = generations(of: name, in: directory).filter { $0.name != generation }.dropFirst()
        for old in older { try? FileManager.default.removeItem(at: directory.appendingPathComponent(old.name)) }
    }

    /// When a generation directory (its name, as the link `name` named it) was fetched; nil when
    /// it is not one of `name`'s.
    static func fetchedAt(generation: String, of name: String) -> Date? { parse(generation, of: name) }

    /// The generation directories of `name`, newest first.
    private static func generations(of name: String, in directory: URL) -> [(name: String, at: Date)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return entries.compactMap { e in parse(e, of: name).map { (e, $0) } }.sorted { $0.at > $1.at }
    }

    private static func parse(_ entry: String, of name: String) -> Date? {
        let parts = entry.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0].isEmpty, parts[1] == name, let seconds = Int64(parts[2]) else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }
}
