internal import CCurl
internal import CVouchShims
import Foundation
import Synchronization
import VouchCore

private let curlGlobalInit: Void = { _ = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

/// An HTTP client on libcurl: HTTPS that trusts only a given CA (TLS 1.2 minimum), plain HTTP
/// over a Unix-domain socket, or a public service's HTTPS under the system's trust store. Each request takes its own easy handle (from a pool), so a client
/// may be shared across threads.
public final class HTTPClient: HTTPTransport {
    public enum Transport: Sendable {
        case https(baseURL: String, caFile: String)
        case unix(path: String)
        /// Any http(s) URL given whole as the request path (webhooks); HTTPS verified against
        /// `caFile`, or the system's trust store when nil.
        case anyURL(caFile: String?)
        /// An https URL given whole as the request path, whose server must present a certificate
        /// chaining to the trust anchors `tls` installs, with the public key `publicKeyPin`
        /// ("sha256//BASE64" of its SubjectPublicKeyInfo); `tls` also installs the client identity.
        /// The key pin stands in for the host name check.
        case pinned(tls: PreloadedTLS, publicKeyPin: String)
        /// A public service (Intel PCS, AMD KDS) at `baseURL`, the request path appended: https
        /// verified against the system's trust store, or plain http only when the base URL's host
        /// is a loopback address (tests). `HTTPClient.serviceBaseURLProblem` says what is accepted;
        /// anything else fails every request.
        case service(baseURL: String)
    }

    /// Installs trust anchors and a client identity into a connection's SSL_CTX (OpenSSL; given
    /// as a raw pointer) before the handshake. Returning false fails the request.
    public struct PreloadedTLS: Sendable {
        let hook: SSLContextHook
        public init(_ install: @escaping @Sendable (UnsafeMutableRawPointer) -> Bool) { hook = SSLContextHook(install) }
    }

    /// A TLS client certificate and its key (PEM files) presented for mutual TLS.
    public struct ClientIdentity: Sendable {
        public var certificateFile: String
        public var keyFile: String
        public init(certificateFile: String, keyFile: String) { self.certificateFile = certificateFile; self.keyFile = keyFile }
    }

    public let transport: Transport
    public let timeout: Int
    public let identity: ClientIdentity?
    /// Close the connection after each request (a fresh TCP and TLS handshake every time, as a
    /// broker pulling from many hosts gets anyway); otherwise idle connections are kept for reuse.
    public let freshConnections: Bool
    /// A response body larger than this fails the transfer (an `http` error, kind transport).
    public let maxResponseBytes: Int
    /// For a `.pinned` transport: kept-alive connections (and per-attester TLS sessions) to reuse
    /// instead of a fresh connection per request; `freshConnections` is then ignored. Other
    /// transports ignore it.
    public let connections: PinnedConnectionPool?
    /// How long (seconds) a kept connection may sit idle and still be reused (curl's
    /// CURLOPT_MAXAGE_CONN; nil: curl's 118 s). A client that sends every few minutes (an
    /// attester's pushes) sets it above its period, or every request opens a new connection.
    public let keepAliveSeconds: Int?
    /// Set (`ownConnection`): this client keeps an easy handle of its own between requests instead
    /// of taking one from the process-wide pool, so its kept connection is its own — what a process
    /// with one client identity gets from the pool anyway, and what many identities in one process
    /// (a simulated fleet, each host its own attester) need for each to keep its connection.
    private let ownHandle: OwnHandle?

    /// Connections libcurl opened for requests of any client in this process (CURLINFO_NUM_CONNECTS
    /// summed; a request on a kept connection adds nothing): what tells reuse from a handshake.
    public static var connectionsOpened: Int { opened.load(ordering: .relaxed) }
    private static let opened = Atomic<Int>(0)

    public init(_ transport: Transport, timeoutSeconds: Int = 30, identity: ClientIdentity? = nil, freshConnections: Bool = false,
                maxResponseBytes: Int = 16 << 20, connections: PinnedConnectionPool? = nil, keepAliveSeconds: Int? = nil,
                ownConnection: Bool = false) {
        _ = curlGlobalInit
        self.transport = transport
        self.timeout = timeoutSeconds
        self.identity = identity
        self.freshConnections = freshConnections
        self.maxResponseBytes = maxResponseBytes
        self.connections = connections
        self.keepAliveSeconds = keepAliveSeconds
        self.ownHandle = ownConnection ? OwnHandle() : nil
    }

    /// Why `url` cannot be a `.service` base URL, or nil when it can: `https://` or — for a host
    /// that is a loopback address (127.0.0.0/8, `[::1]`, `localhost`) only — `http://`, then a
    /// host, an optional port and path; no user info, query or fragment, no trailing slash.
    public static func serviceBaseURLProblem(_ url: String) -> String? {
        guard let c = URLComponents(string: url), let scheme = c.scheme, let host = c.host, !host.isEmpty else { return "not an absolute URL" }
        guard c.user == nil, c.password == nil, c.query == nil, c.fragment == nil else { return "no user info, query or fragment" }
        guard !url.hasSuffix("/") else { return "no trailing slash" }
        switch scheme {
        case "https": return nil
        case "http":
            let loopback = host == "localhost" || host == "::1" || host == "[::1]" || (host.hasPrefix("127.") && host.split(separator: ".").count == 4
                && host.split(separator: ".").allSatisfy { UInt8($0) != nil })
            return loopback ? nil : "plain http only to a loopback address"
        default: return "https:// (or http:// to a loopback address)"
        }
    }

    /// Sends a request; transport failures throw `http` errors whose `cause` is an
    /// `HTTPClientError`, HTTP statuses are returned as they are.
    /// Easy handles come from a process-wide pool and are reset after use, which keeps curl's
    /// caches (connections, TLS sessions, the parsed CA store) across requests and clients; a
    /// `.pinned` client with `connections` takes its handle from that pool instead.
    public func send(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8]? = nil) throws -> HTTPResponse {
        if let connections, case let .pinned(tls, pin) = transport {
            let key = PinnedConnectionPool.Key(origin: Self.origin(of: path) ?? path, pin: pin, hook: tls.hook)
            let handle = try connections.checkOut(key)
            var ok = false
            defer { connections.checkIn(handle, transferOK: ok, newConnections: Self.countConnects(handle.raw)) }
            let response = try perform(handle.raw, method, path, headers: headers, body: body, kept: connections)
            ok = true
            return response
        }
        if let ownHandle {
            // A second request while one is in flight gets a handle of its own; whichever finishes
            // first is kept, the other dropped. A handle whose transfer failed is dropped with its
            // connection (its state is unknown).
            let handle = try ownHandle.slot.withLock { $0.take() } ?? EasyHandle.make()
            var ok = false
            defer {
                _ = Self.countConnects(handle.raw)
                if ok {
                    curl_easy_reset(handle.raw)
                    ownHandle.slot.withLock { if $0 == nil { $0 = handle } }
                }
            }
            let response = try perform(handle.raw, method, path, headers: headers, body: body, kept: nil)
            ok = true
            return response
        }
        let handle = try EasyHandle.checkOut()
        defer {
            _ = Self.countConnects(handle.raw)
            handle.checkIn()
        }
        return try perform(handle.raw, method, path, headers: headers, body: body, kept: nil)
    }

    /// The connections the last transfer on `h` opened, added to `connectionsOpened`.
    private static func countConnects(_ h: UnsafeMutableRawPointer) -> Int {
        var connects = 0
        _ = vouch_curl_getinfo_long(h, CURLINFO_NUM_CONNECTS, &connects)
        if connects > 0 { opened.add(connects, ordering: .relaxed) }
        return connects
    }

    /// One request on the easy handle `h` (configured here; the caller resets or discards it).
    private func perform(_ h: UnsafeMutableRawPointer, _ method: String, _ path: String, headers: [String: String], body: [UInt8]?,
                         kept: PinnedConnectionPool?) throws -> HTTPResponse {
        let transfer = try configure(h, method, path, headers: headers, body: body, kept: kept)
        let sink = ResponseSink(limit: maxResponseBytes)
        let unmanaged = Unmanaged.passRetained(sink)
        defer { unmanaged.release() }
        try curlCheck(vouch_curl_setopt_write(h, writeBody, unmanaged.toOpaque()), "WRITEFUNCTION")
        try curlCheck(vouch_curl_setopt_write_header(h, writeHeader, unmanaged.toOpaque()), "HEADERFUNCTION")

        // The TLS hook lives as long as the transport; what curl points at, as long as `transfer`.
        let rc = withExtendedLifetime((transport, transfer)) { curl_easy_perform(h) }
        guard rc == CURLE_OK else { throw transfer.failure(rc, tooLarge: sink.overLimit) }
        var status = 0
        _ = vouch_curl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        return HTTPResponse(status: status, headers: sink.headers, body: sink.body)
    }

    /// Sets every option of one request on `h` (transport, identity, URL, method, timeouts,
    /// headers, body) except where the response goes; what curl keeps pointers to is returned
    /// and must outlive the transfer.
    /// `kept`: the handle is one of that pool's (dedicated to one attester, pin and TLS material),
    /// so its connection and its own TLS session cache may be kept.
    func configure(_ h: UnsafeMutableRawPointer, _ method: String, _ path: String, headers: [String: String], body: [UInt8]?,
                   kept: PinnedConnectionPool? = nil) throws -> TransferResources {
        if freshConnections && kept == nil { try curlCheck(vouch_curl_setopt_long(h, CURLOPT_FORBID_REUSE, 1), "FORBID_REUSE") }
        if let keepAliveSeconds, kept == nil { try curlCheck(vouch_curl_setopt_long(h, CURLOPT_MAXAGE_CONN, keepAliveSeconds), "MAXAGE_CONN") }
        let url: String
        switch transport {
        case let .https(base, caFile):
            url = try Self.join(base: base, path: path)
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_CAINFO, caFile), "CAINFO")
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_CAPATH, nil), "CAPATH")
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 1), "SSL_VERIFYPEER")
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 2), "SSL_VERIFYHOST")
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2), "SSLVERSION")
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_PROTOCOLS_STR, "https"), "PROTOCOLS_STR")
        case let .unix(socketPath):
            url = try Self.join(base: "http://localhost", path: path)
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_UNIX_SOCKET_PATH, socketPath), "UNIX_SOCKET_PATH")
        case let .anyURL(caFile):
            url = path
            if let caFile { try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_CAINFO, caFile), "CAINFO") }
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 1), "SSL_VERIFYPEER")
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 2), "SSL_VERIFYHOST")
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2), "SSLVERSION")
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_PROTOCOLS_STR, "http,https"), "PROTOCOLS_STR")
        case let .service(base):
            if let problem = Self.serviceBaseURLProblem(base) {
                throw VouchError(.http, "service base URL refused: \(problem)", context: ["url": base])
            }
            url = try Self.join(base: base, path: path)
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 1), "SSL_VERIFYPEER")
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 2), "SSL_VERIFYHOST")
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2), "SSLVERSION")
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_PROTOCOLS_STR, base.hasPrefix("https://") ? "https" : "http"), "PROTOCOLS_STR")
        case let .pinned(tls, pin):
            url = path
            // No CA file or directory for curl to load: the hook replaces the whole trust store.
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_CAINFO, nil), "CAINFO")
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_CAPATH, nil), "CAPATH")
            try curlCheck(vouch_curl_setopt_ssl_ctx(h, installPreloadedTLS, Unmanaged.passUnretained(tls.hook).toOpaque()), "SSL_CTX_FUNCTION")
            // curl keys its caches by its own options, which cannot see what the hook installs, and
            // easy handles are pooled across clients. Its CA-store cache (7.87+) would put a store
            // an earlier connection used back in place of this one (measured: a connection trusting
            // only another CA then verified), and a resumed TLS session would skip verification.
            // So: no CA cache, no session cache; every connection is fully verified against `tls`.
            // A pool's handle serves one attester, pin and TLS material only (`PinnedConnectionPool`):
            // its own session cache holds nothing another key could be offered, so it is on there,
            // and its one connection is kept (idle or not) up to the pool's maximum age.
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_CA_CACHE_TIMEOUT, 0), "CA_CACHE_TIMEOUT")
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSL_SESSIONID_CACHE, kept == nil ? 0 : 1), "SSL_SESSIONID_CACHE")
            if let kept {
                try curlCheck(vouch_curl_setopt_long(h, CURLOPT_MAXCONNECTS, 1), "MAXCONNECTS")
                try curlCheck(vouch_curl_setopt_long(h, CURLOPT_MAXLIFETIME_CONN, kept.maxConnectionAge), "MAXLIFETIME_CONN")
                try curlCheck(vouch_curl_setopt_long(h, CURLOPT_MAXAGE_CONN, kept.maxConnectionAge), "MAXAGE_CONN")
            }
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 1), "SSL_VERIFYPEER")
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 0), "SSL_VERIFYHOST")
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_PINNEDPUBLICKEY, pin), "PINNEDPUBLICKEY")
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2), "SSLVERSION")
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_PROTOCOLS_STR, "https"), "PROTOCOLS_STR")
        }
        if let identity {
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_SSLCERT, identity.certificateFile), "SSLCERT")
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_SSLKEY, identity.keyFile), "SSLKEY")
        }
        try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_URL, url), "URL")
        try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_CUSTOMREQUEST, method), "CUSTOMREQUEST")
        // A HEAD answer has no body: without NOBODY curl would wait for the one its headers announce.
        if method == "HEAD" { try curlCheck(vouch_curl_setopt_long(h, CURLOPT_NOBODY, 1), "NOBODY") }
        try curlCheck(vouch_curl_setopt_long(h, CURLOPT_TIMEOUT, timeout), "TIMEOUT")
        try curlCheck(vouch_curl_setopt_long(h, CURLOPT_CONNECTTIMEOUT, min(timeout, 10)), "CONNECTTIMEOUT")
        try curlCheck(vouch_curl_setopt_long(h, CURLOPT_NOSIGNAL, 1), "NOSIGNAL")
        try curlCheck(vouch_curl_setopt_long(h, CURLOPT_FOLLOWLOCATION, 0), "FOLLOWLOCATION")

        if Self.headerProblem(method, "") != nil {
            throw VouchError(.http, "request refused: the method is not a token", cause: HTTPClientError.invalidRequest)
        }
        for (k, v) in headers {
            if let problem = Self.headerProblem(k, v) {
                throw VouchError(.http, "request refused: \(problem)", context: ["header": String(k.prefix(100))], cause: HTTPClientError.invalidRequest)
            }
        }
        let resources = TransferResources(method: method, url: url)
        for (k, v) in headers { resources.headerList = curl_slist_append(resources.headerList, "\(k): \(v)") }
        resources.headerList = curl_slist_append(resources.headerList, "Expect:")
        try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_HTTPHEADER, resources.headerList), "HTTPHEADER")
        try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_ERRORBUFFER, resources.errorBuffer), "ERRORBUFFER")
        if let body {
            let copy = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(body.count, 1))
            _ = copy.initialize(from: body)
            resources.body = copy
            try curlCheck(vouch_curl_setopt_long(h, CURLOPT_POSTFIELDSIZE, body.count), "POSTFIELDSIZE")
            try curlCheck(vouch_curl_setopt_ptr(h, CURLOPT_POSTFIELDS, copy.baseAddress), "POSTFIELDS")
        }
        return resources
    }
}

/// What curl keeps pointers to during one transfer (the header list, the error buffer, a copy of
/// the body), freed when the transfer is over.
final class TransferResources: @unchecked Sendable {
    let method: String
    let url: String
    var headerList: UnsafeMutablePointer<curl_slist>?
    let errorBuffer: UnsafeMutablePointer<CChar>
    var body: UnsafeMutableBufferPointer<UInt8>?

    init(method: String, url: String) {
        self.method = method
        self.url = url
        errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
    }

    deinit {
        curl_slist_free_all(headerList)
        errorBuffer.deallocate()
        body?.deallocate()
    }

    /// The `http` error for a failed transfer; `tooLarge` when it failed because the response
    /// outgrew the client's limit.
    func failure(_ rc: CURLcode, tooLarge: Bool) -> VouchError {
        let detail = String(cString: errorBuffer)
        let text = tooLarge ? "the response exceeds the client's size limit" : detail.isEmpty ? String(cString: curl_easy_strerror(rc)) : detail
        let failure = tooLarge ? HTTPClientError.responseTooLarge : HTTPClientError(curlCode: rc)
        return VouchError(.http, "\(method) \(url) failed: \(text)", context: ["curl": "\(rc.rawValue)", "kind": failure.kind], cause: failure)
    }
}

/// A libcurl easy handle, owned by the pool while idle and by one request while in use.
final class EasyHandle: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer
    private init(_ raw: UnsafeMutableRawPointer) { self.raw = raw }
    deinit { curl_easy_cleanup(raw) }

    private static let idle = Mutex<[EasyHandle]>([])
    /// Idle handles kept; more are cleaned up on check-in.
    static let poolSize = 64

    static func checkOut() throws -> EasyHandle {
        if let h = idle.withLock({ $0.popLast() }) { return h }
        return try make()
    }

    /// A new handle, not from the pool (the caller keeps it or lets it go).
    static func make() throws -> EasyHandle {
        guard let raw = curl_easy_init() else { throw VouchError(.http, "curl_easy_init failed") }
        return EasyHandle(raw)
    }

    /// Resets every option (each request sets its own) and returns the handle to the pool.
    func checkIn() {
        curl_easy_reset(raw)
        Self.idle.withLock { pool in if pool.count < Self.poolSize { pool.append(self) } }
    }
}

/// The idle easy handle of an `ownConnection` client (nil while a request has it).
final class OwnHandle: Sendable {
    let slot = Mutex<EasyHandle?>(nil)
}

/// The closure of a `PreloadedTLS`, boxed for curl's callback data pointer.
final class SSLContextHook: Sendable {
    let install: @Sendable (UnsafeMutableRawPointer) -> Bool
    init(_ install: @escaping @Sendable (UnsafeMutableRawPointer) -> Bool) { self.install = install }
}

/// CURLOPT_SSL_CTX_FUNCTION: runs once per new connection, after curl set up its SSL_CTX and
/// before the handshake. An error here makes curl fail the transfer.
private func installPreloadedTLS(_ curl: UnsafeMutableRawPointer?, _ sslContext: UnsafeMutableRawPointer?, _ data: UnsafeMutableRawPointer?) -> CURLcode {
    guard let sslContext, let data else { return CURLE_SSL_CERTPROBLEM }
    return Unmanaged<SSLContextHook>.fromOpaque(data).takeUnretainedValue().install(sslContext) ? CURLE_OK : CURLE_SSL_CERTPROBLEM
}

func curlCheck(_ rc: CURLcode, _ option: String) throws {
    guard rc == CURLE_OK else {
        throw VouchError(.http, "curl option \(option) failed: \(String(cString: curl_easy_strerror(rc)))", context: ["curl": "\(rc.rawValue)"])
    }
}

final class ResponseSink {
    var body: [UInt8] = []
    var headers: [(String, String)] = []
    /// Set when the body outgrew `limit` (the transfer was cut off).
    var overLimit = false
    /// Responses larger than this are cut off (the transfer fails).
    let limit: Int
    init(limit: Int) { self.limit = limit }
}

private func writeBody(_ ptr: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ ctx: UnsafeMutableRawPointer?) -> Int {
    guard let ptr, let ctx else { return 0 }
    let sink = Unmanaged<ResponseSink>.fromOpaque(ctx).takeUnretainedValue()
    let n = size * count
    guard sink.body.count + n <= sink.limit else { sink.overLimit = true; return 0 }
    ptr.withMemoryRebound(to: UInt8.self, capacity: n) { sink.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: n)) }
    return n
}

private func writeHeader(_ ptr: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ ctx: UnsafeMutableRawPointer?) -> Int {
    guard let ptr, let ctx else { return 0 }
    let sink = Unmanaged<ResponseSink>.fromOpaque(ctx).takeUnretainedValue()
    let n = size * count
    switch HeaderLine(ptr, count: n) {
    case let .field(name, value): sink.headers.append((name, value))
    case .status: sink.headers.removeAll()   // a new response (after 100-continue or similar)
    case .end, .other: break
    }
    return n
}

/// One line curl hands a header callback: a response's status line, a header field, or the
/// empty line that ends the header block.
enum HeaderLine: Equatable {
    case status(Int)
    case field(String, String)
    case end
    case other

    init(_ ptr: UnsafeMutablePointer<CChar>, count n: Int) {
        self = ptr.withMemoryRebound(to: UInt8.self, capacity: n) { Self.parse(UnsafeBufferPointer(start: $0, count: n)) }
    }

    /// Reads the line as bytes (ASCII spaces, tabs, CR and LF trimmed): Foundation's character
    /// sets cost a pull round more than its header block's worth of work.
    static func parse(_ line: UnsafeBufferPointer<UInt8>) -> HeaderLine {
        func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0A }
        func trimmed(_ range: Range<Int>) -> String {
            var lo = range.lowerBound, hi = range.upperBound
            while lo < hi, isSpace(line[lo]) { lo += 1 }
            while hi > lo, isSpace(line[hi - 1]) { hi -= 1 }
            return String(decoding: UnsafeBufferPointer(rebasing: line[lo..<hi]), as: UTF8.self)
        }
        if line.starts(with: "HTTP/".utf8) {
            // "HTTP/1.1 200 OK": the code is the digits after the first space.
            guard let space = line.firstIndex(of: 0x20) else { return .status(0) }
            var code = 0, i = space + 1, digits = 0
            while i < line.count, digits < 4, line[i] >= 0x30, line[i] <= 0x39 { code = code * 10 + Int(line[i] - 0x30); i += 1; digits += 1 }
            return .status(digits == 3 ? code : 0)
        }
        if let colon = line.firstIndex(of: UInt8(ascii: ":")) {
            return .field(trimmed(0..<colon), trimmed((colon + 1)..<line.count))
        }
        return line.allSatisfy(isSpace) ? .end : .other
    }
}
