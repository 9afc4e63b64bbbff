/// Something that carries an HTTP request and returns the response (libcurl in production).
public protocol HTTPTransport: Sendable {
    func send(_ method: String, _ path: String, headers: [String: String], body: [UInt8]?) throws -> HTTPResponse
}
