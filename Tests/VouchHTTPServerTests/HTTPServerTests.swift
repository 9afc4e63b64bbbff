import Foundation
import Synchronization
import XCTest
import VouchCore
import VouchHTTPClient
import VouchHTTPServer
import VouchTestSupport

/// The HTTP server in this process, over a Unix socket, plain HTTP and TLS on 127.0.0.1, with
/// small handlers, hit by the package's own libcurl client: what reaches the handler, what the
/// server answers by itself (body, URL and header limits), and streamed bodies.
/// Limits that need time and raw connections are in `HTTPServerLimitTests`, TLS in `HTTPServerTLSTests`.
final class HTTPServerTests: XCTestCase {
    var scratch: Scratch!
    override func setUpWithError() throws { scratch = try Scratch() }
    override func tearDown() { scratch.remove() }

    /// A server on a Unix socket in the scratch directory and a client for it.
    func unixServer(maxBodyBytes: Int = 1 << 20, threading: HTTPServer.Threading = .pool(2),
                    handler: @escaping HTTPServer.Handler = echoHandler) throws -> (HTTPServer, HTTPClient) {
        let path = scratch.file("s.sock")
        let server = try HTTPServer(listen: .unix(path: path, mode: 0o600), threading: underTest(threading), maxBodyBytes: maxBodyBytes, limits: .init(),
                                    handler: handler)
        return (server, HTTPClient(.unix(path: path), timeoutSeconds: 10))
    }

    func echo(_ r: HTTPResponse, file: StaticString = #filePath, line: UInt = #line) throws -> Echo {
        XCTAssertEqual(r.status, 200, String(decoding: r.body, as: UTF8.self), file: file, line: line)
        return try JSONDecoder().decode(Echo.self, from: Data(r.body))
    }

    func testMethodPathQueryHeadersAndBodyReachTheHandler() throws {
        let (server, client) = try unixServer()
        defer { server.stop() }
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let body: [UInt8]? = method == "GET" || method == "OPTIONS" ? nil : Array("{\"m\":\"\(method)\"}".utf8)
            let e = try echo(client.send(method, "/v1/things/42?a=1&b=two%20words", headers: ["X-Test-Header": "Value"], body: body))
            XCTAssertEqual(e.method, method)
            XCTAssertEqual(e.path, "/v1/things/42", "the query is not part of the path")
            XCTAssertEqual(e.query, ["a": "1", "b": "two words"], "query arguments are decoded")
            XCTAssertEqual(e.headers["x-test-header"], "Value", "header names are lowercased, values kept")
            XCTAssertNil(e.headers["X-Test-Header"])
            XCTAssertEqual(e.body, body.map { String(decoding: $0, as: UTF8.self) } ?? "")
            XCTAssertEqual(e.peer, "unix", "a Unix-socket peer is named unix")
            XCTAssertNil(e.clientCertificate, "no client certificate without TLS")
        }
    }

    func testThePathReachesTheHandlerPercentDecodedAndUnnormalised() throws {
        let (server, client) = try unixServer()
        defer { server.stop() }
        // libmicrohttpd unescapes the path before the handler sees it; BrokerAPI's OCSP GET decodes again (harmless for base64).
        XCTAssertEqual(try echo(client.send("GET", "/v1/ocsp/ab%2Bcd%2F%3D")).path, "/v1/ocsp/ab+cd/=")
        XCTAssertEqual(try echo(client.send("GET", "//v1//health/")).path, "//v1//health/", "empty segments are the router's business")
    }

    func testTheHandlersStatusHeadersAndBodyAreSentAsGiven() throws {
        let (server, client) = try unixServer { req in
            HTTPResponse(status: Int(req.path.dropFirst()) ?? 500, headers: [("Content-Type", "application/x-test"), ("X-Extra", "1"), ("Retry-After", "5")],
                         body: Array("status \(req.path)".utf8))
        }
        defer { server.stop() }
        for status in [200, 201, 204, 304, 400, 401, 404, 405, 409, 429, 500, 503] {
            let r = try client.send("GET", "/\(status)")
            XCTAssertEqual(r.status, status)
            if status == 204 || status == 304 {
                XCTAssertTrue(r.body.isEmpty, "\(status) has no body")
            } else {
                XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "status /\(status)")
                XCTAssertEqual(r.header("content-type"), "application/x-test")
            }
            XCTAssertEqual(r.header("X-Extra"), "1")
            XCTAssertEqual(r.header("retry-after"), "5")
        }
    }

    func testABodyOverTheLimitIsRefusedWith413AsJSONWithoutReachingTheHandler() throws {
        let calls = Mutex(0)
        let (server, client) = try unixServer(maxBodyBytes: 64) { req in
            calls.withLock { $0 += 1 }
            return echoHandler(req)
        }
        defer { server.stop() }
        let exact = [UInt8](repeating: UInt8(ascii: "x"), count: 64)
        XCTAssertEqual(try echo(client.send("POST", "/upload", body: exact)).body.count, 64, "a body of exactly the limit is accepted")
        XCTAssertEqual(calls.withLock { $0 }, 1)

        for size in [65, 4096, 300_000] {   // over the limit in one read and in many
            let r = try client.send("POST", "/upload", body: [UInt8](repeating: UInt8(ascii: "y"), count: size))
            XCTAssertEqual(r.status, 413, "\(size) bytes")
            XCTAssertEqual(r.header("content-type"), "application/json")
            let e = try XCTUnwrap(errorBody(r), String(decoding: r.body, as: UTF8.self))
            XCTAssertEqual(e.code, "body_too_large")
            XCTAssertFalse(e.message.isEmpty)
            XCTAssertEqual(e.keys, ["code", "message"])
        }
        XCTAssertEqual(calls.withLock { $0 }, 1, "refused bodies never reach the handler")
        // The connection is still usable afterwards.
        XCTAssertEqual(try echo(client.send("POST", "/after", body: Array("ok".utf8))).body, "ok")
    }

    func testTheDefaultBodyLimitIsOneMebibyte() throws {
        let (server, client) = try unixServer { req in HTTPResponse(status: 200, body: Array("\(req.body.count)".utf8)) }
        defer { server.stop() }
        let ok = try client.send("POST", "/", body: [UInt8](repeating: 1, count: 1 << 20))
        XCTAssertEqual(ok.status, 200)
        XCTAssertEqual(String(decoding: ok.body, as: UTF8.self), "\(1 << 20)")
        XCTAssertEqual(try client.send("POST", "/", body: [UInt8](repeating: 1, count: (1 << 20) + 1)).status, 413)
    }

    /// The server sets no URL or header limit of its own: libmicrohttpd's per-connection memory
    /// (32 KiB by default) is the limit, and it answers by itself, before the handler, in HTML.
    func testAnOversizedURLOrHeaderIsRefusedByLibmicrohttpdBeforeTheHandler() throws {
        let calls = Mutex(0)
        let (server, client) = try unixServer { req in
            calls.withLock { $0 += 1 }
            return echoHandler(req)
        }
        defer { server.stop() }
        XCTAssertEqual(try echo(client.send("GET", "/" + String(repeating: "a", count: 8000))).path.count, 8001, "an 8 KB path is fine")
        let longURL = try client.send("GET", "/" + String(repeating: "a", count: 40_000))
        XCTAssertEqual(longURL.status, 414)
        let bigHeader = try client.send("GET", "/h", headers: ["X-Big": String(repeating: "b", count: 40_000)])
        XCTAssertEqual(bigHeader.status, 431)
        XCTAssertNil(errorBody(bigHeader), "libmicrohttpd's own refusals are not the API's JSON errors")
        XCTAssertEqual(calls.withLock { $0 }, 1)
    }

    func testAStreamedBodyIsSentChunkByChunkAndClosedOnce() throws {
        let closed = Mutex(0)
        let (server, client) = try unixServer(threading: .perConnection) { _ in
            let chunks = Mutex(["data: 1\n\n", "data: 2\n\n", String(repeating: "z", count: 10_000) + "\n"])
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/event-stream")], stream: HTTPStream(next: {
                chunks.withLock { $0.isEmpty ? nil : Array($0.removeFirst().utf8) }
            }, onClose: { closed.withLock { $0 += 1 } }))
        }
        defer { server.stop() }
        let r = try client.send("GET", "/events")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.header("content-type"), "text/event-stream")
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "data: 1\n\ndata: 2\n\n" + String(repeating: "z", count: 10_000) + "\n")
        XCTAssertTrue(eventually { closed.withLock { $0 } == 1 }, "onClose runs once the stream ends")
    }

    func testManyConcurrentRequestsAreAllAnswered() throws {
        let (server, client) = try unixServer(threading: .pool(2))
        defer { server.stop() }
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            do {
                let r = try client.send("POST", "/n/\(i)", body: Array("\(i)".utf8))
                let e = try JSONDecoder().decode(Echo.self, from: Data(r.body))
                if e.path != "/n/\(i)" || e.body != "\(i)" { failures.withLock { $0.append("\(i): \(e)") } }
            } catch {
                failures.withLock { $0.append("\(i): \(error)") }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, [])
    }

    func testStopRemovesTheSocketAndRefusesLaterRequests() throws {
        let (server, client) = try unixServer()
        XCTAssertEqual(try client.send("GET", "/").status, 200)
        server.stop()
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.file("s.sock")))
        XCTAssertThrowsError(try client.send("GET", "/")) { error in
            XCTAssertEqual((error as? VouchError)?.code, .http)
        }
        server.stop()   // idempotent
    }

    func testAUnixSocketIsCreatedWithTheGivenMode() throws {
        let path = scratch.file("m.sock")
        let server = try HTTPServer(listen: .unix(path: path, mode: 0o660), threads: 1, handler: echoHandler)
        defer { server.stop() }
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o660)
    }

    func testPlainTCPServesHTTPWithoutTLSOrClientCertificates() throws {
        let port = try freePort()
        let server = try HTTPServer(listen: .http(host: "127.0.0.1", port: port), threading: underTest(.pool(2)),
                                    limits: .init(requestDeadline: 5, perAddress: 4), handler: echoHandler)
        defer { server.stop() }
        let client = HTTPClient(.anyURL(caFile: nil), timeoutSeconds: 10)
        let e = try echo(client.send("POST", "http://127.0.0.1:\(port)/v1/ocsp?x=1", headers: ["Content-Type": "application/ocsp-request"], body: [0x30, 0x00]))
        XCTAssertEqual(e.method, "POST")
        XCTAssertEqual(e.path, "/v1/ocsp")
        XCTAssertEqual(e.query, ["x": "1"])
        XCTAssertEqual(e.peer, "127.0.0.1")
        XCTAssertNil(e.clientCertificate)
        XCTAssertEqual("\(HTTPServer.Listen.http(host: "127.0.0.1", port: port))", "http://127.0.0.1:\(port)")
        // A TLS client finds no TLS there.
        XCTAssertThrowsError(try client.send("GET", "https://127.0.0.1:\(port)/"))
        // Client certificates need TLS: asking for them on plain TCP is a configuration error.
        let pki = try TestPKI(scratch: scratch)
        XCTAssertThrowsError(try HTTPServer(listen: .http(host: "127.0.0.1", port: try freePort()), limits: .init(), clientTrustPEM: try pki.caPEM,
                                            handler: echoHandler)) { error in
            XCTAssertEqual((error as? VouchError)?.code, .config)
        }
        XCTAssertThrowsError(try HTTPServer(listen: .http(host: "::1", port: 1), limits: .init(), handler: echoHandler)) { error in
            XCTAssertEqual((error as? VouchError)?.code, .config, "the host must be an IPv4 literal")
        }
    }

    func testBadListenAddressesAreConfigErrors() throws {
        let pki = try TestPKI(scratch: scratch)
        let tls = try pki.server()
        XCTAssertThrowsError(try HTTPServer(listen: .tls(host: "localhost", port: 1, certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM),
                                            limits: .init(), handler: echoHandler)) { error in
            XCTAssertEqual((error as? VouchError)?.code, .config, "the host must be an IPv4 literal")
        }
        XCTAssertThrowsError(try HTTPServer(listen: .unix(path: "/tmp/" + String(repeating: "s", count: 200), mode: 0o600),
                                            limits: .init(), handler: echoHandler)) { error in
            XCTAssertEqual((error as? VouchError)?.code, .config, "sun_path holds 107 bytes")
        }
        XCTAssertThrowsError(try HTTPServer(listen: .tls(host: "127.0.0.1", port: try freePort(), certificatePEM: "not a certificate", keyPEM: tls.keyPEM),
                                            limits: .init(), handler: echoHandler)) { error in
            XCTAssertEqual((error as? VouchError)?.code, .http)
        }
    }
}

/// libmicrohttpd's own messages go through `Runtime.log` (so they follow the process's log
/// format, JSON included), from the first one on: none goes to its standard logger.
final class HTTPServerLogTests: XCTestCase {
    /// What the process writes to standard error while `body` runs.
    func standardError(during body: () throws -> Void) rethrows -> String {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        let saved = dup(2)
        dup2(fds[1], 2)
        close(fds[1])
        defer {
            dup2(saved, 2)
            close(saved)
        }
        try body()
        dup2(saved, 2)
        var out: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fds[0], &buffer, buffer.count)
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        close(fds[0])
        return String(decoding: out, as: UTF8.self)
    }

    func testLibmicrohttpdMessagesGoThroughTheProcessLog() throws {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let text = try standardError {
            // A pool of one thread makes libmicrohttpd warn while it reads the options.
            let server = try HTTPServer(listen: .unix(path: scratch.file("log.sock"), mode: 0o600), threading: underTest(.pool(1)), limits: .init(), handler: echoHandler)
            server.stop()
        }
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertFalse(lines.isEmpty, "the pool warning is logged")
        for line in lines {
            XCTAssertTrue(line.contains(" http: "), "not through Runtime.log: \(line)")
            XCTAssertFalse(line.contains("not the first option"), line)
        }
    }
}
