import Foundation
import Synchronization
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchHTTPServer
import VouchTestSupport
import XCTest

/// A stand-in for the receipt signer: its "bundle" names the SHA-256 of the output it was given
/// and of salt‖request, so a test sees exactly which bytes a receipt covers. Pretty-printed (with
/// line ends) so a streamed receipt's data has to span several `data:` lines.
final class DigestReceipts: ReceiptMaking {
    struct Bundle: Codable, Equatable {
        var output: String
        var outputLength: Int
        var requestCommitment: String
        var route: String?
        var startedAt: Date
        var finishedAt: Date
    }
    static let salt = [UInt8](repeating: 0x5a, count: 16)
    let calls = Mutex(0)
    let refuses: Bool
    init(refuses: Bool = false) { self.refuses = refuses }

    func sign(output: [UInt8], request: [UInt8]?, route: String?, startedAt: Date, finishedAt: Date) throws -> (bundle: [UInt8], salt: [UInt8]) {
        calls.withLock { $0 += 1 }
        if refuses { throw VouchError(.crypto, "the test signer refuses") }
        let bundle = Bundle(output: Hex.encode(Crypto.sha256(output)), outputLength: output.count,
                            requestCommitment: Hex.encode(Crypto.sha256(Self.salt + (request ?? []))), route: route,
                            startedAt: startedAt, finishedAt: finishedAt)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (Array(try encoder.encode(bundle)), Self.salt)
    }

    static func bundle(_ bytes: [UInt8]) throws -> Bundle { try JSONDecoder().decode(Bundle.self, from: Data(bytes)) }
    static func commitment(_ request: [UInt8], salt: [UInt8]) -> String { Hex.encode(Crypto.sha256(salt + request)) }
}

/// An upstream inference server in the test process: answers with `answer`, records what it got.
final class TestUpstream: Sendable {
    final class Received: Sendable {
        let requests = Mutex<[HTTPRequest]>([])
        var first: HTTPRequest? { requests.withLock { $0.first } }
        var count: Int { requests.withLock { $0.count } }
    }
    let port: UInt16
    let server: HTTPServer
    let received = Received()

    init(_ answer: @escaping @Sendable (HTTPRequest) -> HTTPResponse) throws {
        port = try freePort()
        let received = self.received
        server = try HTTPServer(listen: .http(host: "127.0.0.1", port: port), threading: .perConnection) { request in
            received.requests.withLock { $0.append(request) }
            return answer(request)
        }
    }
    var url: String { "http://127.0.0.1:\(port)" }
}

final class ReceiptProxyTests: XCTestCase {
    let clock = ManualClock()

    /// A proxy in front of `upstream` (a base URL), served on a free port; its client.
    func proxy(_ upstream: String, receipts: DigestReceipts, maxBody: Int = 1 << 20, maxResponse: Int = 1 << 20) throws -> (HTTPServer, HTTPClient) {
        let proxy = ReceiptProxy(upstream: HTTPClient(.service(baseURL: upstream), timeoutSeconds: 60, maxResponseBytes: maxResponse),
                                 receipts: receipts, clock: clock)
        let port = try freePort()
        let server = try HTTPServer(listen: .http(host: "127.0.0.1", port: port), threading: .perConnection, maxBodyBytes: maxBody,
                                    limits: .init(requestDeadline: 30), handler: proxy.handle)
        return (server, HTTPClient(.service(baseURL: "http://127.0.0.1:\(port)"), timeoutSeconds: 60))
    }

    func code(_ response: HTTPResponse) -> String? {
        (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["code"] as? String
    }

    func testAJSONAnswerPassesThroughByteForByteWithAReceiptOverItsBody() throws {
        // Bytes a re-encoding would change: key order, spacing, an escaped slash, no final line end.
        let answer = Array(#"{"z":1,  "a":"x\/y","choices":[{"message":{"content":"héllo"}}]}"#.utf8)
        let upstream = try TestUpstream { _ in
            HTTPResponse(status: 200, headers: [("Content-Type", "application/json"), ("X-Request-Id", "r-1"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"),
                                                ("Vouch-Receipt", "forged"), ("Keep-Alive", "timeout=5")], body: answer)
        }
        let receipts = DigestReceipts()
        let (server, client) = try proxy(upstream.url, receipts: receipts)
        defer { server.stop(); upstream.server.stop() }

        let request = Array(#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.utf8)
        let r = try client.send("POST", "/v1/chat/completions?api-version=2024%2D01&x=a+b", headers: [
            "Content-Type": "application/json", "Authorization": "Bearer upstream-key", "X-Trace": "t-9",
            "Connection": "X-Hop", "X-Hop": "only this hop", "Accept": "",   // "Accept:" with no value: curl sends none
        ], body: request)

        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, answer, "the body is the upstream's, byte for byte")
        XCTAssertEqual(r.header("content-type"), "application/json")
        XCTAssertEqual(r.header("x-request-id"), "r-1")
        XCTAssertEqual(r.headers.filter { $0.0.lowercased() == "set-cookie" }.map(\.1), ["a=1", "b=2"], "repeated headers keep their order")
        XCTAssertEqual(r.header("content-length"), "\(answer.count)", "framing is the proxy's own, for the body it sends")
        XCTAssertNil(r.header("transfer-encoding"))
        XCTAssertNil(r.header("keep-alive"), "hop-by-hop headers stay on their hop")

        let bundle = try DigestReceipts.bundle(Array(try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(r.header("vouch-receipt"))))))
        XCTAssertEqual(bundle.output, Hex.encode(Crypto.sha256(answer)), "the receipt covers exactly the body")
        XCTAssertEqual(bundle.outputLength, answer.count)
        XCTAssertEqual(bundle.route, "POST /v1/chat/completions", "the receipt names the endpoint (path without the query)")
        XCTAssertEqual(r.header("vouch-receipt-salt"), Hex.encode(DigestReceipts.salt))
        XCTAssertEqual(bundle.requestCommitment, DigestReceipts.commitment(request, salt: try Hex.decode(try XCTUnwrap(r.header("vouch-receipt-salt")))),
                       "the salt opens the commitment to the exact request body")
        XCTAssertEqual(bundle.startedAt, clock.now())
        XCTAssertEqual(bundle.finishedAt, clock.now())

        let seen = try XCTUnwrap(upstream.received.first)
        XCTAssertEqual(seen.method, "POST")
        XCTAssertEqual(seen.target, "/v1/chat/completions?api-version=2024%2D01&x=a+b", "the target goes as sent, not re-encoded")
        XCTAssertEqual(seen.body, request)
        XCTAssertEqual(seen.headers["authorization"], "Bearer upstream-key")
        XCTAssertEqual(seen.headers["x-trace"], "t-9")
        XCTAssertEqual(seen.headers["content-type"], "application/json")
        XCTAssertEqual(seen.headers["content-length"], "\(request.count)")
        XCTAssertNil(seen.headers["x-hop"], "a header the client's Connection names is hop-by-hop")
        XCTAssertNil(seen.headers["accept"], "nothing the client did not send (curl's default Accept is off)")
        XCTAssertEqual(receipts.calls.withLock { $0 }, 1)
    }

    /// A route that is not an inference endpoint (here the models list) passes through unchanged
    /// and unsigned: the proxy signs only what `signedRoutes` names.
    func testAGetWithoutABodyGoesWithoutOneAndGetsNoReceipt() throws {
        let models = Array(#"{"object":"list","data":[]}"#.utf8)
        let upstream = try TestUpstream { _ in HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: models) }
        let receipts = DigestReceipts()
        let (server, client) = try proxy(upstream.url, receipts: receipts)
        defer { server.stop(); upstream.server.stop() }
        let r = try client.send("GET", "/v1/models")
        XCTAssertEqual(r.body, models)
        XCTAssertNil(r.header("vouch-receipt"))
        XCTAssertEqual(receipts.calls.withLock { $0 }, 0)
        let seen = try XCTUnwrap(upstream.received.first)
        XCTAssertEqual(seen.method, "GET")
        XCTAssertEqual(seen.body, [])
        XCTAssertNil(seen.headers["content-length"])
        XCTAssertNil(seen.headers["content-type"], "no form content type of curl's own")
    }

    /// The upstream sends its first event, then waits until the client has read it: a proxy
    /// that held the answer back until the upstream finished would never let it go (the
    /// upstream gives up after a minute and the test fails on `waitedInVain`).
    func testAStreamedAnswerReachesTheClientPieceByPieceThenTheReceiptEvent() throws {
        let first = Array("data: {\"choices\":[{\"delta\":{\"content\":\"echo:\"}}]}\n\n".utf8)
        let rest = Array("data: {\"choices\":[{\"delta\":{\"content\":\" hi\"}}]}\n\ndata: [DONE]\n\n".utf8)
        let clientHasFirst = DispatchSemaphore(value: 0)
        let waitedInVain = Mutex(false)
        let upstream = try TestUpstream { _ in
            let step = Mutex(0)
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/event-stream; charset=utf-8"), ("Cache-Control", "no-cache")],
                                stream: HTTPStream(next: {
                switch step.withLock({ s -> Int in defer { s += 1 }; return s }) {
                case 0: return first
                case 1:
                    if clientHasFirst.wait(timeout: .now() + 60) == .timedOut { waitedInVain.withLock { $0 = true } }
                    return rest
                default: return nil
                }
            }))
        }
        let receipts = DigestReceipts()
        let (server, client) = try proxy(upstream.url, receipts: receipts)
        defer { server.stop(); upstream.server.stop() }

        let request = Array(#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#.utf8)
        let answer = try client.open("POST", "/v1/chat/completions", headers: ["Content-Type": "application/json", "Accept": "text/event-stream"], body: request)
        XCTAssertEqual(answer.status, 200)
        XCTAssertEqual(answer.header("content-type"), "text/event-stream; charset=utf-8")
        XCTAssertEqual(answer.header("cache-control"), "no-cache")
        XCTAssertEqual(answer.header("transfer-encoding"), "chunked", "a stream of unknown length goes chunked")
        XCTAssertNil(answer.header("content-length"))
        XCTAssertNil(answer.header("vouch-receipt"), "a stream's receipt comes as its last event")

        var got: [UInt8] = []
        while got.count < first.count, let chunk = try answer.next() { got += chunk }
        XCTAssertEqual(got, first, "the first event arrived while the upstream was still waiting")
        XCTAssertEqual(receipts.calls.withLock { $0 }, 0)
        clientHasFirst.signal()
        while let chunk = try answer.next() { got += chunk }
        XCTAssertFalse(waitedInVain.withLock { $0 })

        let output = first + rest
        XCTAssertEqual(Array(got.prefix(output.count)), output, "every upstream byte, unchanged, before the receipt")
        let event = String(decoding: got.dropFirst(output.count), as: UTF8.self)
        XCTAssertTrue(event.hasPrefix("event: vouch-receipt\ndata: "), event)
        XCTAssertTrue(event.hasSuffix("\n\n"), event)
        let data = event.split(separator: "\n").filter { $0.hasPrefix("data: ") }.map { $0.dropFirst(6) }.joined(separator: "\n")
        let payload = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any])
        let bundle = try DigestReceipts.bundle(Array(try JSONSerialization.data(withJSONObject: try XCTUnwrap(payload["bundle"]))))
        XCTAssertEqual(bundle.output, Hex.encode(Crypto.sha256(output)), "the receipt covers exactly the forwarded bytes")
        XCTAssertEqual(bundle.outputLength, output.count)
        XCTAssertEqual(payload["salt"] as? String, Hex.encode(DigestReceipts.salt))
        XCTAssertEqual(bundle.requestCommitment, DigestReceipts.commitment(request, salt: DigestReceipts.salt))
        XCTAssertEqual(receipts.calls.withLock { $0 }, 1)
    }

    func testTheReceiptEventStandsAloneAfterAnUnfinishedLastEvent() {
        func separator(_ output: String) -> String { String(decoding: ServerSentEvents.separator(after: Array(output.utf8)), as: UTF8.self) }
        XCTAssertEqual(separator("data: x\n\n"), "")
        XCTAssertEqual(separator("data: x\r\n\r\n"), "")
        XCTAssertEqual(separator("data: x\n"), "\n")
        XCTAssertEqual(separator("data: x\r"), "\r")
        XCTAssertEqual(separator("data: x"), "\n\n")
        XCTAssertEqual(separator("data: x\n\r"), "")
        XCTAssertEqual(separator("data: x\r\n"), "\n")
        XCTAssertEqual(separator(""), "")
        XCTAssertEqual(String(decoding: ServerSentEvents.event("e", Array("{\n \"a\": 1\r\n}".utf8)), as: UTF8.self), "event: e\ndata: {\ndata:  \"a\": 1\ndata: }\n\n")
        XCTAssertEqual(String(decoding: ServerSentEvents.event("e", Array("a\n".utf8)), as: UTF8.self), "event: e\ndata: a\ndata: \n\n", "a final line end is kept")
    }

    func testAnUpstreamThatIsDownGets502JSONAndNoReceipt() throws {
        let receipts = DigestReceipts()
        let (server, client) = try proxy("http://127.0.0.1:\(try freePort())", receipts: receipts)
        defer { server.stop() }
        let r = try client.send("POST", "/v1/chat/completions", headers: ["Content-Type": "application/json"], body: Array("{}".utf8))
        XCTAssertEqual(r.status, 502)
        XCTAssertEqual(r.header("content-type"), "application/json")
        XCTAssertEqual(code(r), "upstream_unreachable")
        XCTAssertNil(r.header("vouch-receipt"))
        XCTAssertEqual(receipts.calls.withLock { $0 }, 0)
    }

    func testAnUpstreamErrorPassesThroughWithoutAReceipt() throws {
        let body = Array(#"{"error":{"message":"model overloaded"}}"#.utf8)
        let upstream = try TestUpstream { _ in HTTPResponse(status: 503, headers: [("Content-Type", "application/json"), ("Retry-After", "3")], body: body) }
        let receipts = DigestReceipts()
        let (server, client) = try proxy(upstream.url, receipts: receipts)
        defer { server.stop(); upstream.server.stop() }
        let r = try client.send("POST", "/v1/chat/completions", headers: ["Content-Type": "application/json"], body: Array("{}".utf8))
        XCTAssertEqual(r.status, 503)
        XCTAssertEqual(r.body, body)
        XCTAssertEqual(r.header("retry-after"), "3")
        XCTAssertNil(r.header("vouch-receipt"))
        XCTAssertEqual(receipts.calls.withLock { $0 }, 0)
    }

    func testAnOversizedRequestIsRefusedWith413BeforeTheUpstream() throws {
        let upstream = try TestUpstream { _ in HTTPResponse(status: 200, body: Array("{}".utf8)) }
        let receipts = DigestReceipts()
        let (server, client) = try proxy(upstream.url, receipts: receipts, maxBody: 64)
        defer { server.stop(); upstream.server.stop() }
        XCTAssertEqual(try client.send("POST", "/v1/chat/completions", headers: ["Content-Type": "application/json"], body: [UInt8](repeating: 0x20, count: 64)).status, 200)
        let r = try client.send("POST", "/v1/chat/completions", headers: ["Content-Type": "application/json"], body: [UInt8](repeating: 0x20, count: 65))
        XCTAssertEqual(r.status, 413)
        XCTAssertEqual(code(r), "body_too_large")
        XCTAssertEqual(upstream.received.count, 1, "the oversized request never reached the upstream")
        XCTAssertEqual(receipts.calls.withLock { $0 }, 1)
    }

    func testAnOversizedAnswerGets502AndNoReceipt() throws {
        let upstream = try TestUpstream { _ in HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: [UInt8](repeating: 0x20, count: 2048)) }
        let receipts = DigestReceipts()
        let (server, client) = try proxy(upstream.url, receipts: receipts, maxResponse: 1024)
        defer { server.stop(); upstream.server.stop() }
        let r = try client.send("GET", "/v1/models")
        XCTAssertEqual(r.status, 502)
        XCTAssertEqual(code(r), "upstream_response_too_large")
        XCTAssertEqual(receipts.calls.withLock { $0 }, 0)
    }

    func testAStreamThatOutgrowsTheLimitEndsWithAnErrorEventAndNoReceipt() throws {
        let event = Array("data: \(String(repeating: "x", count: 500))\n\n".utf8)
        let upstream = try TestUpstream { _ in
            let sent = Mutex(0)
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/event-stream")],
                                stream: HTTPStream(next: { sent.withLock { n -> [UInt8]? in n += 1; return n <= 4 ? event : nil } }))
        }
        let receipts = DigestReceipts()
        let (server, client) = try proxy(upstream.url, receipts: receipts, maxResponse: 1024)
        defer { server.stop(); upstream.server.stop() }
        let r = try client.send("POST", "/v1/chat/completions", headers: ["Content-Type": "application/json"], body: Array(#"{"stream":true}"#.utf8))
        XCTAssertEqual(r.status, 200, "the stream had started")
        let text = String(decoding: r.body, as: UTF8.self)
        let parts = text.components(separatedBy: "event: vouch-error\ndata: ")
        XCTAssertEqual(parts.count, 2, text)
        XCTAssertLessThanOrEqual(parts[0].utf8.count, 1024 + 2, "at most the limit was forwarded, then a separator")
        XCTAssertTrue(parts[1].hasSuffix("\n\n"))
        let refusal = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(parts[1].utf8)) as? [String: Any])
        XCTAssertEqual(refusal["code"] as? String, "upstream_response_too_large")
        XCTAssertFalse(text.contains("vouch-receipt"))
        XCTAssertEqual(receipts.calls.withLock { $0 }, 0)
    }

    func testAnAnswerThatCannotBeSignedIsWithheld() throws {
        let upstream = try TestUpstream { _ in HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: Array("{\"secret\":1}".utf8)) }
        let (server, client) = try proxy(upstream.url, receipts: DigestReceipts(refuses: true))
        defer { server.stop(); upstream.server.stop() }
        let r = try client.send("POST", "/v1/chat/completions", headers: ["Content-Type": "application/json"], body: Array("{}".utf8))
        XCTAssertEqual(r.status, 500)
        XCTAssertEqual(code(r), "receipt_failed")
        XCTAssertFalse(String(decoding: r.body, as: UTF8.self).contains("secret"))
    }

    func testUnixSocketsOnBothSides() throws {
        let dir = try TestEnv.tempDir("proxy-unix")
        defer { try? FileManager.default.removeItem(at: dir) }
        let answer = Array(#"{"ok":true}"#.utf8)
        let upstream = try HTTPServer(listen: .unix(path: dir.appendingPathComponent("model.sock").path, mode: 0o600), threading: .perConnection) { req in
            HTTPResponse(status: 200, headers: [("Content-Type", "application/json"), ("X-Target", req.target)], body: answer)
        }
        defer { upstream.stop() }
        let receipts = DigestReceipts()
        let proxy = ReceiptProxy(upstream: HTTPClient(.unix(path: dir.appendingPathComponent("model.sock").path)), receipts: receipts, clock: clock)
        let server = try HTTPServer(listen: .unix(path: dir.appendingPathComponent("proxy.sock").path, mode: 0o600), threading: .perConnection, handler: proxy.handle)
        defer { server.stop() }
        let r = try HTTPClient(.unix(path: dir.appendingPathComponent("proxy.sock").path)).send("POST", "/v1/completions?x=%20", body: Array("{}".utf8))
        XCTAssertEqual(r.body, answer)
        XCTAssertEqual(r.header("x-target"), "/v1/completions?x=%20")
        XCTAssertEqual(try DigestReceipts.bundle(Array(try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(r.header("vouch-receipt")))))).output,
                       Hex.encode(Crypto.sha256(answer)))
    }

    /// scripts/model-server.py (the test and demo model server) behind the proxy: what a client
    /// gets through the proxy is what it gets straight from the server, plus the receipt.
    func testTheLocalModelServerThroughTheProxy() throws {
        let dir = try TestEnv.tempDir("model-server")
        let port = try freePort()
        let model = try BackgroundProcess("/usr/bin/python3", [TestEnv.packageRoot.appendingPathComponent("scripts/model-server.py").path, "--listen", "127.0.0.1:\(port)"],
                                          log: dir.appendingPathComponent("model-server.log"))
        defer { model.stop() }
        XCTAssertTrue(model.waitForLog("model-server listening", timeout: 30) && TestEnv.waitForPort(port), model.log)
        let receipts = DigestReceipts()
        let (server, client) = try proxy("http://127.0.0.1:\(port)", receipts: receipts)
        defer { server.stop() }
        let direct = HTTPClient(.service(baseURL: "http://127.0.0.1:\(port)"))
        let json = ["Content-Type": "application/json"]

        let ask = Array(#"{"model":"vouch-echo","messages":[{"role":"user","content":"the quick brown fox"}]}"#.utf8)
        let plain = try client.send("POST", "/v1/chat/completions", headers: json, body: ask)
        XCTAssertEqual(plain.status, 200)
        XCTAssertEqual(plain.body, try direct.send("POST", "/v1/chat/completions", headers: json, body: ask).body)
        XCTAssertTrue(String(decoding: plain.body, as: UTF8.self).contains(#""content":"echo: fox brown quick the""#))
        let bundle = try DigestReceipts.bundle(Array(try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(plain.header("vouch-receipt"))))))
        XCTAssertEqual(bundle.output, Hex.encode(Crypto.sha256(plain.body)))

        let streamed = Array(#"{"model":"vouch-echo","stream":true,"messages":[{"role":"user","content":"the quick brown fox"}]}"#.utf8)
        let upstreamBytes = try direct.send("POST", "/v1/chat/completions", headers: json, body: streamed).body
        XCTAssertTrue(String(decoding: upstreamBytes, as: UTF8.self).hasSuffix("data: [DONE]\n\n"))
        let answer = try client.open("POST", "/v1/chat/completions", headers: json, body: streamed)
        XCTAssertEqual(answer.header("content-type"), "text/event-stream")
        var got: [UInt8] = []
        while let chunk = try answer.next() { got += chunk }
        XCTAssertEqual(Array(got.prefix(upstreamBytes.count)), upstreamBytes)
        XCTAssertTrue(String(decoding: got.dropFirst(upstreamBytes.count), as: UTF8.self).hasPrefix("event: vouch-receipt\n"))

        let models = try client.send("GET", "/v1/models")
        XCTAssertEqual(models.body, try direct.send("GET", "/v1/models").body)
        XCTAssertNil(models.header("vouch-receipt"), "the models list is not an inference endpoint: no receipt")
        XCTAssertEqual(receipts.calls.withLock { $0 }, 2)
    }

    /// `vouch-attester proxy` refuses what it cannot run with one line and exit 2.
    func testTheProxyCommandRefusesAnUnusableCommandLine() throws {
        let base = ["proxy", "--upstream", "http://127.0.0.1:8000", "--listen", "127.0.0.1:9000", "--cert", "agent.pem", "--key", "agent.key"]
        func with(_ option: String, _ value: String) -> [String] {
            var args = base
            args[args.firstIndex(of: option)! + 1] = value
            return args
        }
        for args in [["proxy", "--listen", "127.0.0.1:9000", "--cert", "agent.pem", "--key", "agent.key"], Array(base.dropLast(2)),
                     with("--upstream", "http://10.1.2.3:8000"), with("--upstream", "ftp://127.0.0.1"), with("--listen", "9000"),
                     base + ["--max-body", "0"], base + ["--max-response", "lots"], base + ["--timeout", "soon"], base + ["--unknown", "1"]] {
            let r = try TestEnv.run(TestEnv.bin("vouch-attester"), args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
        XCTAssertTrue(try TestEnv.run(TestEnv.bin("vouch-attester"), ["--help"]).stdout.contains("vouch-attester proxy --upstream URL --listen ADDR"))
    }
}
