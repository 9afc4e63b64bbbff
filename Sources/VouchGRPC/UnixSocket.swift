import Foundation
import VouchCore
import VouchRuntime
#if canImport(Glibc)
import Glibc
#endif

/// The socket calls the server makes: a listening Unix socket, accepted connections set
/// non-blocking, the peer's credentials, and a self-pipe that wakes `poll`.
enum UnixSocket {
    /// Binds and listens on `path` with file mode `mode`. A socket file left at `path` (by a
    /// server that did not remove it) is removed first; any other kind of file is refused.
    /// Connections the kernel queues before they are accepted: a host's workloads may all
    /// connect at once (a boot), and a full queue fails a non-blocking connect at once.
    static let backlog: Int32 = 1024

    static func listen(path: String, mode: UInt16) throws -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: addr.sun_path), !bytes.contains(0) else {
            throw VouchError(.config, "the gRPC socket path is empty or too long for a Unix socket", context: ["path": path])
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else {
                throw VouchError(.grpcListen, "a file that is not a socket is in the way of the gRPC socket", context: ["path": path])
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw VouchError(.grpcListen, "socket() failed", context: ["errno": "\(errno)"]) }
        // Owner-only while it is created, then the requested mode: never wider than asked.
        let old = umask(0o177)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        umask(old)
        guard bound, Files.setSocketMode(path, mode_t(mode)), Glibc.listen(fd, backlog) == 0, setNonBlocking(fd) else {
            let e = errno
            close(fd)
            if bound { unlink(path) }
            throw VouchError(.grpcListen, "cannot listen on the gRPC Unix socket", context: ["path": path, "errno": "\(e)"])
        }
        return fd
    }

    /// The next pending connection (non-blocking, close-on-exec), nil when none is waiting
    /// (or accept failed for this one connection).
    static func accept(_ listenFD: Int32) -> Int32? {
        while true {
            let fd = Glibc.accept(listenFD, nil, nil)
            if fd >= 0 {
                guard setNonBlocking(fd) else { close(fd); return nil }
                return fd
            }
            if errno == EINTR { continue }
            // Out of descriptors: the listening socket stays readable, so back off rather than
            // spin (the connections already open keep being served after the pause).
            if errno == EMFILE || errno == ENFILE { usleep(100_000) }
            return nil
        }
    }

    /// O_NONBLOCK and FD_CLOEXEC on `fd`.
    static func setNonBlocking(_ fd: Int32) -> Bool {
        let flags = fcntl(fd, F_GETFL)
        return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) == 0
    }

    /// The connecting process's pid, uid and gid (SO_PEERCRED: `struct ucred`, three 32-bit
    /// fields), or nil if the kernel does not say.
    static func peerCredentials(_ fd: Int32) -> PeerCredentials? {
        var cred: [Int32] = [0, 0, 0]
        var length = socklen_t(MemoryLayout<Int32>.size * 3)
        let rc = cred.withUnsafeMutableBytes { getsockopt(fd, SOL_SOCKET, SO_PEERCRED, $0.baseAddress, &length) }
        guard rc == 0, length == socklen_t(MemoryLayout<Int32>.size * 3) else { return nil }
        return PeerCredentials(pid: cred[0], uid: UInt32(bitPattern: cred[1]), gid: UInt32(bitPattern: cred[2]),
                               startTime: PeerCredentials.processStartTime(pid: cred[0]))
    }
}

/// A pipe whose read end `poll` watches: `signal()` from any thread wakes the event loop. Both
/// ends are closed in deinit, so whoever may still signal must hold it.
final class WakePipe: @unchecked Sendable {
    let readFD: Int32
    private let writeFD: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw VouchError(.grpcListen, "pipe() failed", context: ["errno": "\(errno)"]) }
        readFD = fds[0]
        writeFD = fds[1]
        guard UnixSocket.setNonBlocking(readFD), UnixSocket.setNonBlocking(writeFD) else {
            close(readFD)
            close(writeFD)
            throw VouchError(.grpcListen, "cannot make the wake-up pipe non-blocking", context: ["errno": "\(errno)"])
        }
    }

    deinit {
        close(readFD)
        close(writeFD)
    }

    /// A full pipe already holds a wake-up, so a failed write loses nothing.
    func signal() {
        var byte: UInt8 = 1
        _ = write(writeFD, &byte, 1)
    }

    func drain() {
        var buffer = [UInt8](repeating: 0, count: 256)
        while read(readFD, &buffer, buffer.count) > 0 {}
    }
}
