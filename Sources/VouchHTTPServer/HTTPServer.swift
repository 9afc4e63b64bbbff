internal import CMicroHTTPD
internal import CGnuTLS
internal import CVouchShims
import Foundation
import VouchCore
import VouchRuntime
#if canImport(Glibc)
import Glibc
#endif

extension ErrorCode {
    /// An answer whose headers need more than half of the connection's memory pool: sent in its
    /// place, since libmicrohttpd would close the connection with no answer at all.
    public static let responseHeadersTooLarge = ErrorCode("response_headers_too_large", status: 500)
    /// An answer with a header libmicrohttpd refuses (a line end in it): sent in its place.
    public static let responseHeaderInvalid = ErrorCode("response_header_invalid", status: 500)
}

/// An HTTP(S) server on libmicrohttpd. Requests are handed whole (body buffered up to a limit)
/// to a synchronous handler on one of the server's threads. Every listen mode has the same
/// threading, connection limits and request deadline.
public final class HTTPServer: @unchecked Sendable {
    public enum Listen: Sendable {
        /// TCP on `host` (an IPv4 literal, loopback by default) with TLS from PEM cert and key.
        case tls(host: String, port: UInt16, certificatePEM: String, keyPEM: String)
        /// TCP on `host` (an IPv4 literal) without TLS: for what needs neither confidentiality nor
        /// a client's identity, such as signed CRLs and OCSP answers (no client certificates).
        case http(host: String, port: UInt16)
        /// A Unix-domain socket at `path`, created with `mode` (plain HTTP: access is the file mode).
        case unix(path: String, mode: UInt32)
    }

    public typealias Handler = @Sendable (HTTPRequest) -> HTTPResponse

    let handler: Handler
    let maxBodyBytes: Int
    /// The most bytes a response's header fields may take (half the connection memory pool).
    let maxResponseHeaderBytes: Int
    /// Set when TLS clients are asked for a certificate chaining to `clientTrustPEM`.
    let verifiesClients: Bool
    /// `Limits.authenticatedIdleTimeout`: the idle timeout and request deadline of a connection once
    /// a response to a request with a verified client certificate said `keepsConnection`.
    let authenticatedIdleTimeout: Int?
    /// The absolute deadline for receiving each request, when one is set.
    let requestDeadline: RequestDeadline?
    private var daemon: OpaquePointer?
    private var owned: [UnsafeMutablePointer<CChar>] = []
    private var sockaddrBuffer: UnsafeMutablePointer<sockaddr_in>?
    private var listenFD: Int32 = -1
    private var unixPath: String?

    public enum Threading: Sendable {
        /// A pool of threads multiplexing connections with poll(2): for handlers that never block
        /// long. A streamed response is read on the pool thread (its `next()` holds that thread).
        ///
        /// poll, not epoll: libmicrohttpd 0.9.75's epoll mode busy-waits on a TLS handshake that
        /// waits for the client (it keeps the connection on its ready list and retries the
        /// handshake, `recv` answering EAGAIN, until the client's next flight arrives). Measured:
        /// four connections that sent a ClientHello and then nothing kept vouchd's pool at about
        /// 200 % of a core (both cores of the machine) until the request deadline, and every
        /// ordinary handshake burned its round trip; with poll, no CPU at all.
        /// (`HTTPServerLimitTests.testAStalledTLSHandshakeCostsNoCPU`.) poll's cost is a scan of
        /// the thread's connections at each wake-up (`max-connections` split among the threads).
        case pool(Int)
        /// One thread per connection: handlers and streams may block (event streams, TPM work).
        case perConnection
        /// A pool of threads multiplexing connections with poll(2), as `pool`, and a thread of its
        /// own for each streamed response (`PumpedStream`): an idle kept-alive connection costs
        /// no thread, a stream whose `next()` blocks holds only its pump thread. Handlers still
        /// run on the pool: one that blocks long holds its pool thread meanwhile.
        case poolWithStreamThreads(Int)
    }

    /// The threading the server was started with.
    public let threading: Threading
    /// Streams being pumped (`poolWithStreamThreads`), resumed before the daemon stops.
    let streams = StreamRegistry()
    /// Set for `poolWithStreamThreads`: streamed responses are pumped.
    var pumpsStreams: Bool { if case .poolWithStreamThreads = threading { true } else { false } }

    /// Connection limits. `idleTimeout` (seconds) closes connections that send nothing for that
    /// long; `requestDeadline` (seconds) closes connections that have not delivered a whole
    /// request (TLS handshake, headers, body) that long after being accepted or after their
    /// previous response, however slowly the bytes trickle (responses in progress, event streams
    /// included, are never cut); `perAddress` caps the connections open from one client address
    /// (0: no cap), `total` those open at all. `connectionMemory` (bytes; nil: libmicrohttpd's
    /// 32 KiB) is each connection's memory pool, which holds the request's headers and the
    /// response's: a response whose headers need more than half of it is replaced by 500
    /// `response_headers_too_large` (libmicrohttpd would otherwise close the connection with no
    /// answer at all). `authenticatedIdleTimeout` (seconds; nil: no difference): once a request
    /// that carried a verified client certificate was answered with `keepsConnection` (the
    /// handler authenticated the client as one it serves for long: vouchd, a host by its current
    /// host certificate), that connection's idle timeout and its request deadline between
    /// requests become this instead, with TCP keepalive — a fleet's hosts, pushing minutes apart,
    /// keep their connection for the next request, while anyone else is held to the short limits.
    public struct Limits: Sendable {
        public var idleTimeout: Int = 30
        public var requestDeadline: Int? = nil
        public var perAddress: Int = 0
        public var total: Int = 1024
        public var connectionMemory: Int? = nil
        public var authenticatedIdleTimeout: Int? = nil
        public init(idleTimeout: Int = 30, requestDeadline: Int? = nil, perAddress: Int = 0, total: Int = 1024, connectionMemory: Int? = nil,
                    authenticatedIdleTimeout: Int? = nil) {
            self.idleTimeout = idleTimeout
            self.requestDeadline = requestDeadline
            self.perAddress = perAddress
            self.total = total
            self.connectionMemory = connectionMemory
            self.authenticatedIdleTimeout = authenticatedIdleTimeout
        }
    }

    /// libmicrohttpd's connection memory pool when none is set (MHD_POOL_SIZE_DEFAULT).
    static let defaultConnectionMemory = 32 << 10

    /// `clientTrustPEM` (TLS only): CA certificates a client certificate may chain to. Clients are
    /// asked for one but not required to send it; a request carries the certificate only if it
    /// verified (`HTTPRequest.clientCertificate`), and the handler decides what needs one.
    public convenience init(listen: Listen, threads: Int = 4, threading: Threading? = nil, maxBodyBytes: Int = 1 << 20, connectionTimeout: Int = 30,
                            clientTrustPEM: String? = nil, handler: @escaping Handler) throws {
        try self.init(listen: listen, threads: threads, threading: threading, maxBodyBytes: maxBodyBytes,
                      limits: Limits(idleTimeout: connectionTimeout), clientTrustPEM: clientTrustPEM, handler: handler)
    }

    public init(listen: Listen, threads: Int = 4, threading: Threading? = nil, maxBodyBytes: Int = 1 << 20, limits: Limits,
                clientTrustPEM: String? = nil, handler: @escaping Handler) throws {
        self.handler = handler
        self.threading = threading ?? .pool(threads)
        self.maxBodyBytes = maxBodyBytes
        self.maxResponseHeaderBytes = (limits.connectionMemory ?? Self.defaultConnectionMemory) / 2
        if case .tls = listen { self.verifiesClients = clientTrustPEM != nil } else { self.verifiesClients = false }
        if let t = limits.authenticatedIdleTimeout, t < 1 {
            throw VouchError(.config, "authenticatedIdleTimeout must be at least 1 s (0 would mean no idle limit at all)", context: ["authenticatedIdleTimeout": "\(t)"])
        }
        self.authenticatedIdleTimeout = limits.authenticatedIdleTimeout
        self.requestDeadline = limits.requestDeadline.map { RequestDeadline(limit: .seconds($0)) }
        var options: [MHD_OptionItem] = []
        var flags = UInt32(MHD_USE_INTERNAL_POLLING_THREAD.rawValue | MHD_USE_ERROR_LOG.rawValue)
        func opt(_ o: MHD_OPTION, _ value: Int = 0, _ ptr: UnsafeMutableRawPointer? = nil) {
            options.append(MHD_OptionItem(option: o, value: value, ptr_value: ptr))
        }
        // libmicrohttpd's own messages (TLS handshake failures, connection limits) go through
        // Runtime.log, so they follow the process's log format. First, or the options read
        // before it are reported by its standard logger (and it warns that it was not first).
        opt(MHD_OPTION.EXTERNAL_LOGGER, unsafeBitCast(serverLog as MHD_LogCallback, to: Int.self), nil)
        switch self.threading {
        case let .pool(n):
            flags |= UInt32(MHD_USE_POLL.rawValue)
            opt(MHD_OPTION.THREAD_POOL_SIZE, n)
        case let .poolWithStreamThreads(n):
            // Suspend/resume brings an inter-thread channel (MHD_USE_ITC) with it, so a resumed
            // connection is served at once, not at the pool thread's next network event.
            flags |= UInt32(MHD_USE_POLL.rawValue) | UInt32(MHD_ALLOW_SUSPEND_RESUME.rawValue)
            opt(MHD_OPTION.THREAD_POOL_SIZE, n)
        case .perConnection:
            flags |= UInt32(MHD_USE_THREAD_PER_CONNECTION.rawValue | MHD_USE_POLL.rawValue)
        }
        opt(MHD_OPTION.CONNECTION_TIMEOUT, limits.idleTimeout)
        opt(MHD_OPTION.CONNECTION_LIMIT, limits.total)
        if let memory = limits.connectionMemory { opt(MHD_OPTION.CONNECTION_MEMORY_LIMIT, memory) }
        if limits.perAddress > 0 { opt(MHD_OPTION.PER_IP_CONNECTION_LIMIT, limits.perAddress) }
        // The request target as the client sent it (path and query, undecoded), for proxies.
        opt(MHD_OPTION.URI_LOG_CALLBACK, unsafeBitCast(uriReceived as URILogCallback, to: Int.self), nil)
        opt(MHD_OPTION.NOTIFY_COMPLETED, unsafeBitCast(requestCompleted as MHD_RequestCompletedCallback, to: Int.self),
            requestDeadline.map { Unmanaged.passUnretained($0).toOpaque() })
        if let requestDeadline {
            opt(MHD_OPTION.NOTIFY_CONNECTION, unsafeBitCast(connectionNotified as MHD_NotifyConnectionCallback, to: Int.self),
                Unmanaged.passUnretained(requestDeadline).toOpaque())
        }

        switch listen {
        case let .tls(host, port, certPEM, keyPEM):
            flags |= UInt32(MHD_USE_TLS.rawValue)
            let cert = strdup(certPEM)!, key = strdup(keyPEM)!
            let prio = strdup("NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2")!
            owned += [cert, key, prio]
            opt(MHD_OPTION.HTTPS_MEM_CERT, 0, UnsafeMutableRawPointer(cert))
            opt(MHD_OPTION.HTTPS_MEM_KEY, 0, UnsafeMutableRawPointer(key))
            opt(MHD_OPTION.HTTPS_PRIORITIES, 0, UnsafeMutableRawPointer(prio))
            if let clientTrustPEM {
                let trust = strdup(clientTrustPEM)!
                owned.append(trust)
                opt(MHD_OPTION.HTTPS_MEM_TRUST, 0, UnsafeMutableRawPointer(trust))
            }
            opt(MHD_OPTION.SOCK_ADDR, 0, UnsafeMutableRawPointer(try bindAddress(host: host, port: port)))
        case let .http(host, port):
            guard clientTrustPEM == nil else { throw VouchError(.config, "client certificates need a TLS listener", context: ["listen": listen.description]) }
            opt(MHD_OPTION.SOCK_ADDR, 0, UnsafeMutableRawPointer(try bindAddress(host: host, port: port)))
        case let .unix(path, mode):
            listenFD = try HTTPServer.bindUnix(path: path, mode: mode)
            unixPath = path
            opt(MHD_OPTION.LISTEN_SOCKET, Int(listenFD))
        }
        opt(MHD_OPTION.END)

        let port: UInt16
        switch listen {
        case let .tls(_, p, _, _), let .http(_, p): port = p
        case .unix: port = 0
        }
        daemon = options.withUnsafeBufferPointer { opts in
            vouch_mhd_start(flags, port, accessHandler, Unmanaged.passUnretained(self).toOpaque(), opts.baseAddress)
        }
        guard daemon != nil else {
            cleanup()
            throw VouchError(.http, "the HTTP server could not start (address in use, or bad TLS certificate/key)", context: ["listen": "\(listen.description)"])
        }
        requestDeadline?.start()
    }

    deinit { stop() }

    public func stop() {
        if let d = daemon {
            // libmicrohttpd must not be stopped with suspended connections: resume them first.
            streams.stopAll()
            MHD_stop_daemon(d)
            daemon = nil
        }
        requestDeadline?.stop()
        cleanup()
    }

    private func cleanup() {
        for p in owned { free(p) }
        owned.removeAll()
        sockaddrBuffer?.deallocate()
        sockaddrBuffer = nil
        if listenFD >= 0 { close(listenFD); listenFD = -1 }
        if let p = unixPath { unlink(p); unixPath = nil }
    }

    /// The IPv4 address to listen on, kept until `cleanup` (libmicrohttpd reads it at start).
    private func bindAddress(host: String, port: UInt16) throws -> UnsafeMutablePointer<sockaddr_in> {
        let addr = UnsafeMutablePointer<sockaddr_in>.allocate(capacity: 1)
        addr.initialize(to: sockaddr_in())
        addr.pointee.sin_family = sa_family_t(AF_INET)
        addr.pointee.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &addr.pointee.sin_addr) == 1 else {
            addr.deallocate()
            throw VouchError(.config, "listen address must be an IPv4 address", context: ["got": host])
        }
        sockaddrBuffer = addr
        return addr
    }

    private static func bindUnix(path: String, mode: UInt32) throws -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw VouchError(.config, "Unix socket path is too long", context: ["path": path])
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw VouchError(.io, "socket() failed", context: ["errno": "\(errno)"]) }
        let old = umask(0o177)
        defer { umask(old) }
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        guard ok, Files.setSocketMode(path, mode), listen(fd, 128) == 0 else {
            let e = errno
            close(fd)
            throw VouchError(.io, "cannot listen on Unix socket", context: ["path": path, "errno": "\(e)"])
        }
        return fd
    }
}

extension HTTPServer.Listen: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .tls(host, port, _, _): "https://\(host):\(port)"
        case let .http(host, port): "http://\(host):\(port)"
        case let .unix(path, _): "unix:\(path)"
        }
    }
}

/// Per-request state, alive from the request line until MHD reports completion.
final class RequestState {
    /// The request target as received (`/path?query`, not decoded).
    let target: String
    /// Set at the access handler's first call (which only sets up, so keep-alive stays on).
    var started = false
    var body: [UInt8] = []
    var tooLarge = false
    init(target: String) { self.target = target }
}

/// The C type of `MHD_OPTION_URI_LOG_CALLBACK`'s function (microhttpd.h names none).
typealias URILogCallback = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?, OpaquePointer?) -> UnsafeMutableRawPointer?

/// `MHD_OPTION_URI_LOG_CALLBACK`: runs once per request, with its raw target, before the
/// headers; what it returns is the request's state (released at completion).
private func uriReceived(_ cls: UnsafeMutableRawPointer?, _ uri: UnsafePointer<CChar>?, _ connection: OpaquePointer?) -> UnsafeMutableRawPointer? {
    Unmanaged.passRetained(RequestState(target: uri.map { String(cString: $0) } ?? "/")).toOpaque()
}

private func collectValue(_ cls: UnsafeMutableRawPointer?, _ kind: MHD_ValueKind, _ key: UnsafePointer<CChar>?, _ value: UnsafePointer<CChar>?) -> MHD_Result {
    guard let cls, let key else { return .YES }
    let box = Unmanaged<HeaderBox>.fromOpaque(cls).takeUnretainedValue()
    box.add(String(cString: key), value.map { String(cString: $0) } ?? "")
    return .YES
}

/// Collects connection values (headers, query arguments) through MHD's iterator.
final class HeaderBox {
    var values: [String: String] = [:]
    let lowercase: Bool
    init(lowercase: Bool) { self.lowercase = lowercase }
    func add(_ k: String, _ v: String) { values[lowercase ? k.lowercased() : k] = v }
}

private func values(_ kind: MHD_ValueKind, _ connection: OpaquePointer?, lowercase: Bool) -> [String: String] {
    let box = HeaderBox(lowercase: lowercase)
    let u = Unmanaged.passRetained(box)
    defer { u.release() }
    MHD_get_connection_values(connection, kind, collectValue, u.toOpaque())
    return box.values
}

private func accessHandler(_ cls: UnsafeMutableRawPointer?, _ connection: OpaquePointer?, _ url: UnsafePointer<CChar>?,
                           _ method: UnsafePointer<CChar>?, _ version: UnsafePointer<CChar>?, _ uploadData: UnsafePointer<CChar>?,
                           _ uploadSize: UnsafeMutablePointer<Int>?, _ reqCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> MHD_Result {
    guard let cls, let reqCls, let uploadSize else { return .NO }
    let server = Unmanaged<HTTPServer>.fromOpaque(cls).takeUnretainedValue()
    // First call for a request: note it and return (answering now would disable keep-alive).
    guard let stateRaw = reqCls.pointee else {
        let state = RequestState(target: url.map { String(cString: $0) } ?? "/")
        state.started = true
        reqCls.pointee = Unmanaged.passRetained(state).toOpaque()
        return .YES
    }
    let state = Unmanaged<RequestState>.fromOpaque(stateRaw).takeUnretainedValue()
    guard state.started else {
        state.started = true
        return .YES
    }
    if uploadSize.pointee > 0 {
        if !state.tooLarge, let uploadData {
            if state.body.count + uploadSize.pointee > server.maxBodyBytes {
                state.tooLarge = true
                state.body = []
            } else {
                uploadData.withMemoryRebound(to: UInt8.self, capacity: uploadSize.pointee) {
                    state.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: uploadSize.pointee))
                }
            }
        }
        uploadSize.pointee = 0
        return .YES
    }
    if let connection { server.requestDeadline?.requestReceived(connection) }
    var response: HTTPResponse
    if state.tooLarge {
        response = HTTPResponse(status: 413, headers: [("Content-Type", "application/json")],
                                body: Array(#"{"code":"body_too_large","message":"request body exceeds \#(server.maxBodyBytes) bytes"}"#.utf8))
    } else {
        let clientCertificate = server.verifiesClients ? verifiedClientCertificate(connection) : nil
        let request = HTTPRequest(method: method.map { String(cString: $0) } ?? "GET",
                                  path: url.map { String(cString: $0) } ?? "/", target: state.target,
                                  query: values(.GET_ARGUMENT_KIND, connection, lowercase: false),
                                  headers: values(.HEADER_KIND, connection, lowercase: true),
                                  body: state.body, peer: peerAddress(connection), clientCertificate: clientCertificate)
        response = server.handler(request)
        response.keepsConnection = response.keepsConnection && clientCertificate != nil && response.status < 400
    }
    let headerBytes = response.headers.reduce(0) { $0 + $1.0.utf8.count + $1.1.utf8.count + 4 }
    if headerBytes > server.maxResponseHeaderBytes {
        Runtime.log("http: a \(response.status) answer's headers take \(headerBytes) bytes, over \(server.maxResponseHeaderBytes): answered 500", level: "warning")
        response.stream?.onClose()
        response = internalError(.responseHeadersTooLarge, "the answer's headers exceed \(server.maxResponseHeaderBytes) bytes")
    }
    // Only an answer that goes out as the handler made it (a replacement carries no flag).
    if response.keepsConnection, let seconds = server.authenticatedIdleTimeout, let connection {
        keepAuthenticated(connection, seconds: seconds, server: server)
    }
    return queue(response, on: connection, server: server)
}

/// Gives `connection` the server's `authenticatedIdleTimeout` as idle timeout and request
/// deadline, TCP keepalive (probes after 60 s idle, every 15 s, 4 unanswered close it) and a TCP
/// user timeout of 2 minutes (sent data unacknowledged that long closes it; keepalive sends no
/// probes then), so a peer that vanished without a FIN frees its slot within about two minutes,
/// idle or not, rather than at the long timeout.
private func keepAuthenticated(_ connection: OpaquePointer, seconds: Int, server: HTTPServer) {
    _ = vouch_mhd_set_connection_timeout(connection, UInt32(clamping: seconds))
    server.requestDeadline?.extend(connection, to: .seconds(seconds))
    let fd = vouch_mhd_connection_fd(connection)
    guard fd >= 0 else { return }
    var on: Int32 = 1, idle: Int32 = 60, interval: Int32 = 15, count: Int32 = 4, userTimeout: UInt32 = 120_000
    let size = socklen_t(MemoryLayout<Int32>.size)
    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, &userTimeout, socklen_t(MemoryLayout<UInt32>.size))
    _ = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, size)
    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, &idle, size)
    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, &interval, size)
    _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, &count, size)
}

/// A 500 JSON answer made by the server itself, in place of one it cannot send.
private func internalError(_ code: ErrorCode, _ message: String) -> HTTPResponse {
    HTTPResponse(status: code.status, headers: [("Content-Type", "application/json")], body: Array(#"{"code":"\#(code.rawValue)","message":"\#(message)"}"#.utf8))
}

/// Hands `response` to libmicrohttpd. A header it refuses (a CR or LF in it, no memory) turns
/// the answer into 500 `response_header_invalid`, logged; a failure to queue is logged.
private func queue(_ response: HTTPResponse, on connection: OpaquePointer?, server: HTTPServer, fallback: Bool = false) -> MHD_Result {
    let mhdResponse: OpaquePointer?
    if let stream = response.stream, server.pumpsStreams, let connection {
        let pumped = Unmanaged.passRetained(PumpedStream(stream: stream, connection: connection, registry: server.streams))
        mhdResponse = MHD_create_response_from_callback(UInt64.max, 4096, pumpedReader, pumped.toOpaque(), pumpedFree)
        if mhdResponse == nil { pumpedFree(pumped.toOpaque()) }   // closes the stream
    } else if let stream = response.stream {
        mhdResponse = MHD_create_response_from_callback(UInt64.max, 4096, streamReader, Unmanaged.passRetained(StreamState(stream)).toOpaque(), streamFree)
    } else {
        mhdResponse = response.body.withUnsafeBytes { buf in
            MHD_create_response_from_buffer(buf.count, UnsafeMutableRawPointer(mutating: buf.baseAddress), .RESPMEM_MUST_COPY)
        }
    }
    guard let mhdResponse else {
        Runtime.log("http: no response could be made for a \(response.status) answer", level: "warning")
        return .NO
    }
    defer { MHD_destroy_response(mhdResponse) }
    for (k, v) in response.headers where MHD_add_response_header(mhdResponse, k, v) != .YES {
        Runtime.log("http: a \(response.status) answer's header \(k.prefix(100)) was refused: answered 500", level: "warning")
        guard !fallback else { return .NO }
        // The stream (if any) is freed with `mhdResponse`, which closes it.
        return queue(internalError(.responseHeaderInvalid, "the answer has a header that cannot be sent"), on: connection, server: server, fallback: true)
    }
    let queued = MHD_queue_response(connection, UInt32(response.status), mhdResponse)
    if queued != .YES { Runtime.log("http: a \(response.status) answer could not be queued", level: "warning") }
    return queued
}

private func requestCompleted(_ cls: UnsafeMutableRawPointer?, _ connection: OpaquePointer?,
                              _ reqCls: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ toe: MHD_RequestTerminationCode) {
    if let cls, let connection { Unmanaged<RequestDeadline>.fromOpaque(cls).takeUnretainedValue().responseSent(connection) }
    guard let reqCls, let raw = reqCls.pointee else { return }
    Unmanaged<RequestState>.fromOpaque(raw).release()
    reqCls.pointee = nil
}

/// A streamed body in flight: bytes produced but not yet handed to MHD.
final class StreamState {
    let stream: HTTPStream
    var pending: [UInt8] = []
    init(_ stream: HTTPStream) { self.stream = stream }
}

private func streamReader(_ cls: UnsafeMutableRawPointer?, _ pos: UInt64, _ buf: UnsafeMutablePointer<CChar>?, _ max: Int) -> Int {
    guard let cls, let buf else { return -2 }   // MHD_CONTENT_READER_END_WITH_ERROR
    let state = Unmanaged<StreamState>.fromOpaque(cls).takeUnretainedValue()
    if state.pending.isEmpty {
        guard let chunk = state.stream.next() else { return -1 }   // MHD_CONTENT_READER_END_OF_STREAM
        state.pending = chunk
    }
    let n = min(max, state.pending.count)
    state.pending.withUnsafeBytes { src in
        buf.withMemoryRebound(to: UInt8.self, capacity: n) { dst in dst.update(from: src.baseAddress!.assumingMemoryBound(to: UInt8.self), count: n) }
    }
    state.pending.removeFirst(n)
    return n
}

private func streamFree(_ cls: UnsafeMutableRawPointer?) {
    guard let cls else { return }
    let state = Unmanaged<StreamState>.fromOpaque(cls).takeRetainedValue()
    state.stream.onClose()
}

/// The client's IP address as text ("unix" for a Unix-socket peer).
private func peerAddress(_ connection: OpaquePointer?) -> String {
    guard let sa = vouch_mhd_client_addr(connection) else { return "unknown" }
    var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    switch Int32(sa.pointee.sa_family) {
    case AF_INET:
        return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
            var a = sin.pointee.sin_addr
            return inet_ntop(AF_INET, &a, &buf, socklen_t(buf.count)) != nil ? String(cString: buf) : "unknown"
        }
    case AF_INET6:
        return sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
            var a = sin.pointee.sin6_addr
            return inet_ntop(AF_INET6, &a, &buf, socklen_t(buf.count)) != nil ? String(cString: buf) : "unknown"
        }
    case AF_UNIX: return "unix"
    default: return "unknown"
    }
}

/// The client's certificate (DER) if it sent one and GnuTLS verified it against the configured trust
/// (chain, signatures, validity period); nil otherwise.
private func verifiedClientCertificate(_ connection: OpaquePointer?) -> [UInt8]? {
    guard let connection, let raw = vouch_mhd_tls_session(connection) else { return nil }
    let session = OpaquePointer(raw)
    var status: UInt32 = 0
    guard gnutls_certificate_verify_peers2(session, &status) == GNUTLS_E_SUCCESS, status == 0 else { return nil }
    var count: UInt32 = 0
    guard let list = gnutls_certificate_get_peers(session, &count), count > 0, let data = list[0].data else { return nil }
    return Array(UnsafeBufferPointer(start: data, count: Int(list[0].size)))
}

private func serverLog(_ cls: UnsafeMutableRawPointer?, _ format: UnsafePointer<CChar>?, _ args: CVaListPointer?) {
    guard let format, let args else { return }
    var buffer = [CChar](repeating: 0, count: 512)
    _ = vsnprintf(&buffer, buffer.count, format, args)
    let message = String(cString: buffer).trimmingCharacters(in: .whitespacesAndNewlines)
    if !message.isEmpty { Runtime.log("http: " + message, level: "debug") }
}
