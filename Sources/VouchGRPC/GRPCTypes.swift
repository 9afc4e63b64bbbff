import VouchCore

extension ErrorCode {
    /// The gRPC server could not create, bind or listen on its Unix socket, or start HTTP/2.
    public static let grpcListen = ErrorCode("grpc_listen", status: 500)
}

/// Who is on the other end of a Unix-socket connection, as the kernel reported it
/// (`SO_PEERCRED`) when the connection was accepted: the process that called `connect`.
public struct PeerCredentials: Sendable, Equatable {
    public let pid: Int32
    public let uid: UInt32
    public let gid: UInt32
    /// The process's start time (field 22 of /proc/PID/stat) read when the connection was
    /// accepted, nil when unreadable: a handler that reads /proc later compares it, so a process
    /// that exited and whose pid was reused is never taken for the one that connected.
    public let startTime: String?

    public init(pid: Int32, uid: UInt32, gid: UInt32, startTime: String? = nil) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.startTime = startTime
    }

    /// Field 22 (starttime) of `/proc/PID/stat`, after the command name (which may hold spaces
    /// and parentheses); nil when the process cannot be read.
    public static func processStartTime(pid: Int32, procRoot: String = "/proc") -> String? {
        guard pid > 0, let stat = try? String(contentsOfFile: "\(procRoot)/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? String(fields[19]) : nil
    }
}

/// A gRPC status: what a call ends with (`grpc-status`, `grpc-message`). Handlers throw it to end
/// a call with that code; `GRPCResponseStream.send` throws it (`.cancelled`) once the client has
/// gone.
public struct GRPCStatus: Error, Sendable, Equatable {
    /// The status codes of grpc/doc/statuscodes.md, with their numbers on the wire.
    public enum Code: Int, Sendable {
        case ok = 0, cancelled = 1, unknown = 2, invalidArgument = 3, deadlineExceeded = 4, notFound = 5, alreadyExists = 6,
             permissionDenied = 7, resourceExhausted = 8, failedPrecondition = 9, aborted = 10, outOfRange = 11,
             unimplemented = 12, internalError = 13, unavailable = 14, dataLoss = 15, unauthenticated = 16
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `message` as `grpc-message` carries it (the gRPC HTTP/2 protocol's Percent-Encoded): UTF-8
    /// bytes 0x20–0x7E except `%` as they are, every other byte as `%XX`.
    var percentEncodedMessage: String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(message.utf8.count)
        for b in message.utf8 {
            if b >= 0x20 && b <= 0x7E && b != 0x25 {
                out.append(b)
            } else {
                out += [0x25, hex[Int(b >> 4)], hex[Int(b & 0x0F)]]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// One call as the handler sees it: the method, the request's metadata and its one message.
public struct GRPCRequest: Sendable {
    /// The `:path`, for example "/SpiffeWorkloadAPI/FetchX509SVID".
    public let method: String
    /// The request's header fields, names lowercased (HTTP/2 requires it), pseudo-headers
    /// excluded, values as sent (`-bin` values stay base64).
    public let metadata: [String: [String]]
    /// The one request message (unary and server-streaming calls), without its 5-byte prefix.
    public let message: [UInt8]
    /// The process that opened the connection the call came on.
    public let peer: PeerCredentials

    public init(method: String, metadata: [String: [String]], message: [UInt8], peer: PeerCredentials) {
        self.method = method
        self.metadata = metadata
        self.message = message
        self.peer = peer
    }

    /// The first value of header `name` (any case), or nil.
    public func header(_ name: String) -> String? {
        metadata[name.lowercased()]?.first
    }
}
