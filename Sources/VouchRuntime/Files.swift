import Foundation
import VouchCore
#if canImport(Glibc)
import Glibc
#endif

/// File I/O for the executables and the targets that keep state on disk (CA material, tokens,
/// host certificates, policy files, model logs). Not in VouchCore, which touches no filesystem.
public enum Files {
    /// Writes `bytes` to a new file with `mode` (0600 for secrets), atomically: the data goes to
    /// a temporary file in the same directory that is fsynced and renamed into place.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644) throws {
        let tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw VouchError(.io, "cannot create \(tmp)", context: ["errno": "\(errno)"]) }
        var ok = fchmod(fd, mode) == 0
        var written = 0
        while ok && written < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
            if n <= 0 { ok = false } else { written += n }
        }
        ok = ok && fsync(fd) == 0
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            let e = errno
            unlink(tmp)
            throw VouchError(.io, "cannot write \(path)", context: ["errno": "\(e)"])
        }
    }

    public static func read(_ path: String) throws -> [UInt8] {
        guard let d = FileManager.default.contents(atPath: path) else {
            throw VouchError(.io, "cannot read \(path)", context: ["path": path])
        }
        return [UInt8](d)
    }

    public static func readString(_ path: String) throws -> String {
        String(decoding: try read(path), as: UTF8.self)
    }

    public static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    public static func makeDirectory(_ path: String, mode: Int = 0o700) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: mode])
        } catch {
            throw VouchError(.io, "cannot create directory \(path)", context: ["path": path])
        }
    }
}
