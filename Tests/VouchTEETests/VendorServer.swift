import Foundation
import Synchronization
import VouchCore
import VouchHTTPClient
import VouchHTTPServer
import VouchTestSupport

/// A stand-in for Intel PCS and AMD KDS: plain HTTP on 127.0.0.1 (an ephemeral port), answering
/// the vendors' paths with fixed responses (404 for anything else) and recording every request.
/// `stop()` takes it down (connections are then refused).
final class VendorServer: Sendable {
    let port: UInt16
    private let state: State
    private let server: Mutex<HTTPServer?>

    private final class State: Sendable {
        let routes: Mutex<[String: HTTPResponse]>
        let seen = Mutex<[String]>([])
        init(_ routes: [String: HTTPResponse]) { self.routes = Mutex(routes) }

        func answer(_ request: HTTPRequest) -> HTTPResponse {
            let key = VendorServer.canonical(request.path + (request.query.isEmpty ? "" : "?" + request.query.map { "\($0.key)=\($0.value)" }.joined(separator: "&")))
            seen.withLock { $0.append(key) }
            return routes.withLock { $0[key] } ?? HTTPResponse(status: 404, body: Array("not found".utf8))
        }
    }

    init(_ routes: [String: HTTPResponse] = [:]) throws {
        port = try freePort()
        let state = State(Dictionary(uniqueKeysWithValues: routes.map { (Self.canonical($0.key), $0.value) }))
        self.state = state
        server = Mutex(try HTTPServer(listen: .http(host: "127.0.0.1", port: port), threads: 2) { state.answer($0) })
    }

    var baseURL: String { "http://127.0.0.1:\(port)" }
    /// A client for this server as vouchd makes one (`.service`).
    var client: HTTPClient { HTTPClient(.service(baseURL: baseURL), timeoutSeconds: 5) }

    /// The requests so far, path and sorted query.
    var requests: [String] { state.seen.withLock { $0 } }
    func resetRequests() { state.seen.withLock { $0.removeAll() } }

    func serve(_ target: String, _ response: HTTPResponse) { state.routes.withLock { $0[Self.canonical(target)] = response } }

    func stop() { server.withLock { $0?.stop(); $0 = nil } }

    /// A path with its query items sorted, so routes match however the query is ordered.
    static func canonical(_ target: String) -> String {
        guard let q = target.firstIndex(of: "?") else { return target }
        let items = target[target.index(after: q)...].split(separator: "&").map(String.init).sorted()
        return String(target[..<q]) + "?" + items.joined(separator: "&")
    }

    /// A 200 with `body` and headers.
    static func ok(_ body: [UInt8], _ headers: [(String, String)] = []) -> HTTPResponse { HTTPResponse(status: 200, headers: headers, body: body) }

    /// A PEM chain as PCS sends it in an `*-Issuer-Chain` header: URL-encoded.
    static func urlEncoded(_ pem: String) -> String {
        pem.addingPercentEncoding(withAllowedCharacters: CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_.~"))) ?? pem
    }
}
