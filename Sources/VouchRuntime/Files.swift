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

    /// Gives the Unix socket this process just bound at `path` the file mode `mode`, without
    /// following a link: the path is opened O_PATH|O_NOFOLLOW, must be a socket owned by this
    /// user, and is changed through /proc/self/fd (the very inode opened). A plain chmod(path)
    /// would follow a symlink someone swapped in meanwhile, in a directory others may write.
    public static func setSocketMode(_ path: String, _ mode: mode_t) -> Bool {
        let oPath: Int32 = 0o10000000   // O_PATH (Linux; Glibc's module leaves the _GNU_SOURCE flag out)
        let fd = open(path, oPath | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK, st.st_uid == geteuid() else { return false }
        return chmod("/proc/self/fd/\(fd)", mode) == 0
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

    /// Creates `path` holding `bytes` (mode `mode`) only if nothing is there yet, atomically: the
    /// data is written and fsynced under a temporary name, then hard-linked into place, which fails
    /// when `path` exists. Returns false (and leaves the existing file) when it does; of two
    /// processes creating the same file at once, exactly one wins.
    public static func createOnce(_ bytes: [UInt8], at path: String, mode: mode_t = 0o600) throws -> Bool {
        let tmp = path + ".new-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try writeAtomically(bytes, to: tmp, mode: mode)
        defer { unlink(tmp) }
        if link(tmp, path) == 0 { return true }
        let e = errno
        if e == EEXIST { return false }
        throw VouchError(.io, "cannot create \(path)", context: ["errno": "\(e)"])
    }

    /// Reads a secret file: a regular file (not a symbolic link), owned by this process's user,
    /// unreadable by group and others; anything else is refused (`config`), since a secret that
    /// someone else could have written or read cannot be trusted.
    public static func readSecret(_ path: String, maxBytes: Int = 1 << 20) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            throw VouchError(e == ELOOP ? .config : .io, e == ELOOP ? "\(path) is a symbolic link, not the secret file itself" : "cannot read \(path)",
                             context: ["path": path, "errno": "\(e)"])
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw VouchError(.config, "\(path) is not a regular file", context: ["path": path])
        }
        guard st.st_uid == geteuid(), st.st_mode & 0o077 == 0 else {
            throw VouchError(.config, "\(path) must belong to this user and be readable by nobody else (mode 0600)", context: ["path": path])
        }
        guard st.st_size <= maxBytes else { throw VouchError(.config, "\(path) is too large for a secret", context: ["path": path]) }
        let size = Int(st.st_size)
        var out = [UInt8](repeating: 0, count: size)
        var got = 0
        while got < size {
            let n = out.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + got, size - got) }
            guard n > 0 else { throw VouchError(.io, "cannot read \(path)", context: ["path": path]) }
            got += n
        }
        return out
    }

    public static func makeDirectory(_ path: String, mode: Int = 0o700) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: mode])
        } catch {
            throw VouchError(.io, "cannot create directory \(path)", context: ["path": path])
        }
    }
}
