import Foundation
import VouchCore
import VouchHTTPClient
import VouchHTTPServer
import VouchTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// What the HTTP client refuses to send and the server refuses to answer (the review of #18):
/// no request path can take a client with a base URL to another host, no header can carry a
/// line end, and an answer the server cannot send whole is a 500, never an empty reply.
final class RequestTargetTests: XCTestCase {
    func server(_ limits: HTTPServer.Limits = .init(), _ handler: @escaping HTTPServer.Handler) throws -> (HTTPServer, HTTPClient) {
        let port = try freePort()
        let server = try HTTPServer(listen: .http(host: "127.0.0.1", port: port), threading: underTest(.perConnection), limits: limits, handler: handler)
        return (server, HTTPClient(.service(baseURL: "http://127.0.0.1:\(port)"), timeoutSeconds: 30))
    }

    func refusal(_ body: () throws -> Any) -> HTTPClientError? {
        do { _ = try body(); return nil } catch { return (error as? VouchError)?.cause as? HTTPClientError }
    }

    func testAPathThatIsNotOriginFormIsRefusedBeforeAnythingIsSent() throws {
        let (base, client) = try server { _ in HTTPResponse(status: 200, body: Array("base".utf8)) }
        let p = try freePort()
        let other = try HTTPServer(listen: .http(host: "127.0.0.1", port: p), threading: underTest(.perConnection), limits: .init()) { _ in
            HTTPResponse(status: 200, body: Array("other".utf8))
        }
        defer { base.stop(); other.stop() }
        for path in ["@127.0.0.1:\(p)/x", ":\(p)/x", ".localhost/x", "http://127.0.0.1:\(p)/x", "x", "", "/a b", "/a\r\nX: 1", "/a\\b"] {
            XCTAssertEqual(refusal { try client.send("GET", path) }, .invalidRequest, path)
            XCTAssertEqual(refusal { try client.open("GET", path) }, .invalidRequest, path)
        }
        XCTAssertEqual(String(decoding: try client.send("GET", "/x?u=a@b").body, as: UTF8.self), "base")
    }

    func testTheJoinedURLMustReachTheBaseOrigin() {
        XCTAssertEqual(HTTPClient.originFormProblem("/v1/models?a=%40"), nil)
        XCTAssertNotNil(HTTPClient.originFormProblem("//evil/x"))
        XCTAssertNil(HTTPClient.originFormProblem("//evil/x", allowingDoubleSlash: true))
        XCTAssertNotNil(HTTPClient.originFormProblem("@evil/x"))
    }

    func testAHeaderWithALineEndOrAMethodThatIsNotATokenIsRefused() throws {
        let (s, client) = try server { _ in HTTPResponse(status: 200) }
        defer { s.stop() }
        XCTAssertEqual(refusal { try client.send("GET", "/", headers: ["X-A": "1\r\nX-Injected: 2"]) }, .invalidRequest)
        XCTAssertEqual(refusal { try client.send("GET", "/", headers: ["X-A": "1\rX-Injected: 2"]) }, .invalidRequest)
        XCTAssertEqual(refusal { try client.send("GET", "/", headers: ["X A": "1"]) }, .invalidRequest)
        XCTAssertEqual(refusal { try client.send("GET / HTTP/1.1\r\nX:", "/") }, .invalidRequest)
        XCTAssertEqual(try client.send("GET", "/", headers: ["X-A": "tab\tok", "Accept": ""]).status, 200)
    }

    func testReadingACancelledStreamThrowsCancelled() throws {
        let (s, client) = try server { _ in HTTPResponse(status: 200, stream: HTTPStream(next: { Array("x".utf8) })) }
        defer { s.stop() }
        let answer = try client.open("GET", "/")
        answer.cancel()
        XCTAssertEqual(refusal { try answer.next() as Any }, .cancelled, "a cancelled body never looks whole")
    }

    func testHeadersTooLargeForTheConnectionMemoryAre500JSONNotAnEmptyReply() throws {
        let big = String(repeating: "a", count: 40 << 10)
        let (small, smallClient) = try server { _ in HTTPResponse(status: 200, headers: [("X-Big", big)], body: Array("ok".utf8)) }
        defer { small.stop() }
        let r = try smallClient.send("GET", "/")
        XCTAssertEqual(r.status, 500)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])?["code"] as? String, "response_headers_too_large")

        let (large, largeClient) = try server(.init(connectionMemory: 256 << 10)) { _ in HTTPResponse(status: 200, headers: [("X-Big", big)], body: Array("ok".utf8)) }
        defer { large.stop() }
        let ok = try largeClient.send("GET", "/")
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(ok.header("x-big"), big)
        XCTAssertEqual(ok.body, Array("ok".utf8))
    }

    func testAHeaderLibmicrohttpdRefusesMakesA500() throws {
        let (s, client) = try server { _ in HTTPResponse(status: 200, headers: [("X-Bad", "a\r\nX-Injected: 1")], body: Array("secret".utf8)) }
        defer { s.stop() }
        let r = try client.send("GET", "/")
        XCTAssertEqual(r.status, 500)
        XCTAssertNil(r.header("x-injected"))
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])?["code"] as? String, "response_header_invalid")
    }

    /// A server that sends its head and then nothing: a cancelled transfer must let go of the
    /// connection while the server stays silent (curl's progress callback), not only at the next
    /// bytes or the client's 120 s timeout. The server sees the connection close.
    func testACancelledTransferClosesItsConnectionWhileTheServerIsSilent() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        XCTAssertTrue(withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && listen(listener, 1) == 0 && getsockname(listener, $0, &length) == 0 }
        })
        let port = UInt16(bigEndian: addr.sin_port)
        let closed = DispatchSemaphore(value: 0)
        Thread {
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = recv(fd, &buffer, buffer.count, 0)
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n"
            _ = head.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            while recv(fd, &buffer, buffer.count, 0) > 0 {}
            close(fd)
            closed.signal()
        }.start()
        let client = HTTPClient(.service(baseURL: "http://127.0.0.1:\(port)"), timeoutSeconds: 120)
        let answer = try client.open("GET", "/")
        XCTAssertEqual(answer.status, 200)
        XCTAssertEqual(try answer.next(), Array("x".utf8))
        answer.cancel()
        XCTAssertEqual(closed.wait(timeout: .now() + 60), .success, "the client let go of the connection before its own timeout")
    }
}
