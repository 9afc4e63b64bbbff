import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A raw client socket, for what libcurl will not do: hold a connection open without a request,
/// or trickle a request byte by byte.
public final class RawSocket {
    public let fd: Int32

    /// Connects to 127.0.0.1:`port`, from `source` (another loopback address) when given.
    public init(tcpPort port: UInt16, from source: String? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            guard bound else { close(fd); throw POSIXError(.EADDRNOTAVAIL) }
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard fd >= 0, ok else { close(fd); throw POSIXError(.ECONNREFUSED) }
    }

    /// Connects to the Unix socket at `path`.
    public init(unixPath path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        guard fd >= 0, ok else { close(fd); throw POSIXError(.ECONNREFUSED) }
    }

    deinit { close(fd) }

    /// Sends bytes; false once the server has closed or shut down the connection (no SIGPIPE).
    @discardableResult
    public func send(_ text: String) -> Bool {
        send(bytes: Array(text.utf8))
    }

    /// Sends `bytes`; false once the server has closed or shut down the connection (no SIGPIPE).
    @discardableResult
    public func send(bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Waits up to `timeout` seconds for the server to close the connection: true when it did
    /// (end of file or reset), false if it is still open. Bytes the server sends meanwhile are read.
    public func closedByServer(within timeout: TimeInterval) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        repeat {   // at least once: `within: 0` asks whether it is closed now
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ms = Int32(max(0, min(100, end.timeIntervalSinceNow * 1000)))
            guard poll(&p, 1, ms) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { return true }
        } while Date() < end
        return false
    }

    /// The bytes of the first read that returns any within `timeout` seconds (empty if none came,
    /// or the server closed the connection first).
    public func receive(timeout: TimeInterval) -> [UInt8] {
        let end = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < end {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            return n > 0 ? Array(buffer[0..<n]) : []
        }
        return []
    }

    /// Reads until what arrived contains `marker` (true) or `timeout` passes (false).
    public func read(until marker: String, timeout: TimeInterval) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        var out: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < end {
            if String(decoding: out, as: UTF8.self).contains(marker) { return true }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return String(decoding: out, as: UTF8.self).contains(marker)
    }

    /// Everything the server sends until it closes the connection (or `timeout` passes).
    public func readAll(timeout: TimeInterval) -> String {
        let end = Date().addingTimeInterval(timeout)
        var out: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < end {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Polls `condition` every 20 ms for up to `timeout` seconds (for the server to notice a closed
/// connection, which takes it a moment on a busy machine); returns its last answer.
public func eventually(within timeout: TimeInterval = 5, _ condition: () -> Bool) -> Bool {
    let end = Date().addingTimeInterval(timeout)
    while Date() < end {
        if condition() { return true }
        usleep(20_000)
    }
    return condition()
}
