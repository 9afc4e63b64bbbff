internal import CCurl
import VouchCore

/// Why a request got no HTTP response: the `cause` of the `http` `VouchError` that
/// `HTTPClient.send` throws when the transfer fails. Closed (a struct over a private enum), so
/// callers switch over the static members with a default case and the set can grow:
///
///     if let failure = error.cause as? HTTPClientError {
///         switch failure { case .timedOut: …; case .connectionRefused: …; default: … }
///     }
public struct HTTPClientError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Reason: Hashable, Sendable { case connectionRefused, timedOut, nameResolution, tls, responseTooLarge, invalidRequest, cancelled, other }
    private let reason: Reason
    /// libcurl's CURLcode, for diagnostics.
    public let curlCode: Int

    private init(_ reason: Reason, curlCode: Int) {
        self.reason = reason
        self.curlCode = curlCode
    }

    /// Nothing accepted the connection (CURLE_COULDNT_CONNECT).
    public static let connectionRefused = HTTPClientError(.connectionRefused, curlCode: Int(CURLE_COULDNT_CONNECT.rawValue))
    /// The request or its connection ran past the client's timeout (CURLE_OPERATION_TIMEDOUT).
    public static let timedOut = HTTPClientError(.timedOut, curlCode: Int(CURLE_OPERATION_TIMEDOUT.rawValue))
    /// The host name did not resolve (CURLE_COULDNT_RESOLVE_HOST).
    public static let nameResolution = HTTPClientError(.nameResolution, curlCode: Int(CURLE_COULDNT_RESOLVE_HOST.rawValue))
    /// The TLS handshake or the peer's certificate, key pin or trust failed.
    public static let tls = HTTPClientError(.tls, curlCode: Int(CURLE_SSL_CONNECT_ERROR.rawValue))
    /// The response body outgrew the client's `maxResponseBytes` (the transfer was cut off).
    public static let responseTooLarge = HTTPClientError(.responseTooLarge, curlCode: Int(CURLE_WRITE_ERROR.rawValue))
    /// The request was refused before anything was sent: a path that is not origin-form (`/…`)
    /// for a client with a base URL, a URL that would reach another host than the base's, or a
    /// header with a control character.
    public static let invalidRequest = HTTPClientError(.invalidRequest, curlCode: Int(CURLE_URL_MALFORMAT.rawValue))
    /// The reader cancelled the transfer (`StreamedResponse.cancel`); the body is not whole.
    public static let cancelled = HTTPClientError(.cancelled, curlCode: 42)   // CURLE_ABORTED_BY_CALLBACK
    /// Any other transfer failure (the connection dropped, a malformed response, …).
    public static let other = HTTPClientError(.other, curlCode: Int(CURLE_RECV_ERROR.rawValue))

    init(curlCode rc: CURLcode) {
        let reason: Reason
        switch rc {
        case CURLE_COULDNT_CONNECT: reason = .connectionRefused
        case CURLE_OPERATION_TIMEDOUT: reason = .timedOut
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: reason = .nameResolution
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
             CURLE_SSL_ENGINE_NOTFOUND, CURLE_SSL_ENGINE_SETFAILED, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
             CURLE_SSL_CRL_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CLIENTCERT:
            reason = .tls
        default: reason = .other
        }
        self.init(reason, curlCode: Int(rc.rawValue))
    }

    /// Two failures are the same when their reasons are; the curl code is detail.
    public static func == (a: HTTPClientError, b: HTTPClientError) -> Bool { a.reason == b.reason }
    public func hash(into h: inout Hasher) { h.combine(reason) }

    /// The word the error's context has carried as "kind" (kept for logs and the context's
    /// readers outside Swift): "timeout", "refused" or "transport".
    var kind: String {
        switch reason {
        case .timedOut: "timeout"
        case .connectionRefused: "refused"
        case .nameResolution, .tls, .responseTooLarge, .invalidRequest, .cancelled, .other: "transport"
        }
    }

    public var description: String {
        switch reason {
        case .connectionRefused: "connection refused"
        case .timedOut: "timed out"
        case .nameResolution: "host name did not resolve"
        case .tls: "TLS failure"
        case .responseTooLarge: "response too large"
        case .invalidRequest: "request refused before sending"
        case .cancelled: "transfer cancelled"
        case .other: "transfer failed"
        }
    }
}
