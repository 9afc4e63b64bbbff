import Foundation
import VouchCore

/// A refusal or failure the remote side answered with: its HTTP status and JSON error body.
public struct APIFailure: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let error: APIError

    public init(status: Int, error: APIError) { self.status = status; self.error = error }

    public var description: String {
        var s = "\(error.code): \(error.message)"
        for v in error.violations ?? [] { s += "\n  - \(v.path): expected \(v.expected), got \(v.actual)" }
        return s
    }
}

/// Typed calls to the Vouch API over any transport.
public struct APIClient: Sendable {
    public let transport: HTTPTransport
    public var bearerToken: String?

    public init(transport: HTTPTransport, bearerToken: String? = nil) {
        self.transport = transport
        self.bearerToken = bearerToken
    }

    /// Sends JSON, decodes a 2xx JSON answer as `T`, and throws `APIFailure` for any other status.
    public func call<T: Decodable>(_ method: String, _ path: String, body: (some Encodable)? = nil as String?, as: T.Type) throws -> T {
        let response = try raw(method, path, body: body.map { JSONCodec.encode($0) })
        return try JSONCodec.decode(T.self, from: response.body)
    }

    /// Sends a request and returns a 2xx response as is; throws `APIFailure` otherwise.
    public func raw(_ method: String, _ path: String, body: [UInt8]? = nil) throws -> HTTPResponse {
        var headers = ["Accept": "application/json"]
        if body != nil { headers["Content-Type"] = "application/json" }
        if let bearerToken { headers["Authorization"] = "Bearer \(bearerToken)" }
        let response = try transport.send(method, path, headers: headers, body: body)
        guard (200..<300).contains(response.status) else {
            let err = (try? JSONDecoder().decode(APIError.self, from: Data(response.body)))
                ?? APIError(code: "http_\(response.status)", message: "HTTP \(response.status) with no Vouch error body")
            throw APIFailure(status: response.status, error: err)
        }
        return response
    }
}
