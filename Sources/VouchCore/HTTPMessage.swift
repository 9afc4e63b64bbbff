/// An HTTP request as the service layer sees it, independent of the server library.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The path, percent-decoded.
    public var path: String
    /// The request target as the client sent it: path and query, not decoded (what a proxy
    /// forwards). `path` when the request was made some other way.
    public var target: String
    public var query: [String: String]
    /// Header names are lowercased.
    public var headers: [String: String]
    public var body: [UInt8]
    /// The client's address ("127.0.0.1", "::1", "unix"), for per-client limits.
    public var peer: String
    /// The TLS client certificate (DER), present only when the server verified it against its
    /// client trust anchors.
    public var clientCertificate: [UInt8]?

    public init(method: String, path: String, target: String? = nil, query: [String: String] = [:], headers: [String: String] = [:], body: [UInt8] = [],
                peer: String = "", clientCertificate: [UInt8]? = nil) {
        self.clientCertificate = clientCertificate
        self.method = method
        self.path = path
        self.target = target ?? path
        self.query = query
        self.headers = headers
        self.body = body
        self.peer = peer
    }
}

/// A response body produced while the connection stays open (Server-Sent Events). `next` may
/// block until it has bytes; it returns nil to end the stream. `onClose` runs once when the
/// connection ends, however it ends.
public final class HTTPStream: Sendable {
    public let next: @Sendable () -> [UInt8]?
    public let onClose: @Sendable () -> Void
    public init(next: @escaping @Sendable () -> [UInt8]?, onClose: @escaping @Sendable () -> Void = {}) {
        self.next = next
        self.onClose = onClose
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// When set, the body is streamed from it instead of `body`.
    public var stream: HTTPStream?
    /// The handler authenticated the client by its TLS client certificate as one whose
    /// connection may stay open between requests far apart (a host); the server then applies its
    /// `authenticatedIdleTimeout` to the connection. Never set for anonymous requests.
    public var keepsConnection = false

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = [], stream: HTTPStream? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }
}
