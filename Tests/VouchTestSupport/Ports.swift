import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A TCP port on 127.0.0.1 nothing listens on or holds right now, such that the next
/// `count - 1` ports are free too.
///
/// Ports come from below the kernel's ephemeral range (net.ipv4.ip_local_port_range), so an
/// outgoing connection of this or another process cannot take the port between this check and
/// the server's bind (a port the kernel hands out for port 0 is in that range).
public func freePort(count: Int = 1) throws -> UInt16 {
    for _ in 0..<500 {
        let p = UInt16.random(in: 10000...(ephemeralPortsStart - 1 - UInt16(count)))
        if (0..<count).allSatisfy({ loopbackPort(p + UInt16($0), bind: true) }) { return p }
    }
    throw POSIXError(.EADDRINUSE)
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
let ephemeralPortsStart: UInt16 = {
    let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
    let low = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first.flatMap { UInt16($0) } ?? 32768
    return max(low, 12000)
}()

/// 127.0.0.1:`port` as a socket address.
public func loopback(_ port: UInt16) -> sockaddr_in {
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    return addr
}

/// Whether 127.0.0.1:`port` accepts a TCP connection (`bind` false) or can be bound (`bind` true).
public func loopbackPort(_ port: UInt16, bind binding: Bool) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = loopback(port)
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in
            let size = socklen_t(MemoryLayout<sockaddr_in>.size)
            return (binding ? bind(fd, a, size) : connect(fd, a, size)) == 0
        }
    }
}
