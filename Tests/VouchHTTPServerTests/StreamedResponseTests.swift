import Foundation
import Synchronization
import XCTest
import VouchCore
import VouchHTTPClient
import VouchHTTPServer
import VouchTestSupport

/// What a proxy needs of the two HTTP libraries: the request target as the client sent it
/// (`HTTPRequest.target`), and answers read while they arrive (`HTTPClient.open`).
final class StreamedResponseTests: XCTestCase {
    func server(maxResponseBytes: Int = 16 << 20, _ handler: @escaping HTTPServer.Handler) throws -> (HTTPServer, HTTPClient) {
        let port = try freePort()
        let server = try HTTPServer(listen: .http(host: "127.0.0.1", port: port), threading: underTest(.perConnection), limits: .init(), handler: handler)
        return (server, HTTPClient(.service(baseURL: "http://127.0.0.1:\(port)"), timeoutSeconds: 30, maxResponseBytes: maxResponseBytes))
    }

    func testTheRequestTargetIsKeptAsSent() throws {
        let (server, client) = try server { req in HTTPResponse(status: 200, body: Array("\(req.path)\n\(req.target)".utf8)) }
        defer { server.stop() }
        for target in ["/v1/chat/completions", "/a%20b/c%2Fd?x=1&x=2&y=%2F+z", "/v1/models?"] {
            let lines = String(decoding: try client.send("GET", target).body, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
            XCTAssertEqual(String(lines[1]), target)
        }
        XCTAssertEqual(String(decoding: try client.send("GET", "/a%20b?q=1").body, as: UTF8.self), "/a b\n/a%20b?q=1", "path decoded, target not")
        XCTAssertEqual(HTTPRequest(method: "GET", path: "/x").target, "/x", "made in code, the target is the path")
    }

    /// The server sends one piece, then waits until the client has it: `open` must return with
    /// the head and hand out that piece while the server is still waiting.
    func testPiecesAreReadWhileTheyArrive() throws {
        let clientHasFirst = DispatchSemaphore(value: 0)
        let waitedInVain = Mutex(false)
        let (server, client) = try server { _ in
            let step = Mutex(0)
            return HTTPResponse(status: 201, headers: [("Content-Type", "text/plain"), ("X-A", "1"), ("X-A", "2")], stream: HTTPStream(next: {
                switch step.withLock({ s -> Int in defer { s += 1 }; return s }) {
                case 0: return Array("first".utf8)
                case 1:
                    if clientHasFirst.wait(timeout: .now() + 60) == .timedOut { waitedInVain.withLock { $0 = true } }
                    return Array("second".utf8)
                default: return nil
                }
            }))
        }
        defer { server.stop() }
        let answer = try client.open("GET", "/")
        XCTAssertEqual(answer.status, 201)
        XCTAssertEqual(answer.header("content-type"), "text/plain")
        XCTAssertEqual(answer.headers.filter { $0.0 == "X-A" }.map(\.1), ["1", "2"])
        var got: [UInt8] = []
        while got.count < 5, let piece = try answer.next() { got += piece }
        XCTAssertEqual(String(decoding: got, as: UTF8.self), "first")
        clientHasFirst.signal()
        while let piece = try answer.next() { got += piece }
        XCTAssertEqual(String(decoding: got, as: UTF8.self), "firstsecond")
        XCTAssertFalse(waitedInVain.withLock { $0 })
        XCTAssertNil(try answer.next(), "the end stays the end")
    }

    func testALargeBodyPassesThroughTheBoundedBuffer() throws {
        let piece = [UInt8](repeating: 0x61, count: 64 << 10)
        let (server, client) = try server { _ in
            let sent = Mutex(0)
            return HTTPResponse(status: 200, stream: HTTPStream(next: { sent.withLock { n -> [UInt8]? in n += 1; return n <= 64 ? piece : nil } }))
        }
        defer { server.stop() }
        let answer = try client.open("GET", "/")
        var total = 0
        while let p = try answer.next() { total += p.count }
        XCTAssertEqual(total, 64 * piece.count, "4 MiB through a 1 MiB buffer: the transfer waits for the reader")
    }

    func testFailuresBeforeAndAfterTheHead() throws {
        XCTAssertThrowsError(try HTTPClient(.service(baseURL: "http://127.0.0.1:\(try freePort())")).open("GET", "/")) { e in
            XCTAssertEqual((e as? VouchError)?.cause as? HTTPClientError, .connectionRefused, "\(e)")
        }
        let (server, client) = try server(maxResponseBytes: 1000) { _ in
            let sent = Mutex(0)
            return HTTPResponse(status: 200, stream: HTTPStream(next: { sent.withLock { n -> [UInt8]? in n += 1; return n <= 3 ? [UInt8](repeating: 0x62, count: 600) : nil } }))
        }
        defer { server.stop() }
        let answer = try client.open("GET", "/")
        XCTAssertEqual(answer.status, 200)
        var got = 0
        XCTAssertThrowsError(try { while let p = try answer.next() { got += p.count } }()) { e in
            XCTAssertEqual((e as? VouchError)?.cause as? HTTPClientError, .responseTooLarge, "\(e)")
        }
        XCTAssertLessThanOrEqual(got, 1000)
    }

    func testAnErrorStatusAndAHeadRequest() throws {
        let (server, client) = try server { req in
            req.method == "HEAD" ? HTTPResponse(status: 200, headers: [("X-Head", "yes")], body: Array("not sent".utf8))
                : HTTPResponse(status: 404, headers: [("Content-Type", "application/json")], body: Array(#"{"code":"not_found"}"#.utf8))
        }
        defer { server.stop() }
        let missing = try client.open("POST", "/nothing", body: [])
        XCTAssertEqual(missing.status, 404)
        var body: [UInt8] = []
        while let p = try missing.next() { body += p }
        XCTAssertEqual(String(decoding: body, as: UTF8.self), #"{"code":"not_found"}"#)
        let head = try client.open("HEAD", "/")
        XCTAssertEqual(head.header("x-head"), "yes")
        XCTAssertNil(try head.next(), "a HEAD answer has no body, and curl does not wait for one")
    }
}
