import Foundation
import Synchronization
@testable import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchHTTPServer
import VouchTestSupport
import XCTest

/// A signer whose bundle is `size` bytes of JSON, for receipts too large for a header.
final class LargeReceipts: ReceiptMaking {
    let size: Int
    init(size: Int) { self.size = size }
    func sign(output: [UInt8], request: [UInt8]?, route: String?, startedAt: Date, finishedAt: Date) throws -> (bundle: [UInt8], salt: [UInt8]) {
        (Array(#"{"pad":""#.utf8) + [UInt8](repeating: 0x61, count: size) + Array(#""}"#.utf8), [1, 2])
    }
}

/// The receipt proxy against hostile requests and upstreams (the adversarial review of #18).
final class ReceiptProxyHardeningTests: XCTestCase {
    let clock = ManualClock()

    func proxy(_ upstream: TestUpstream, receipts: any ReceiptMaking = DigestReceipts(), maxInFlightBytes: Int = 1 << 20,
               signedRoutes: Set<String> = ReceiptProxy.defaultSignedRoutes) -> ReceiptProxy {
        ReceiptProxy(upstream: HTTPClient(.service(baseURL: upstream.url), timeoutSeconds: 60), receipts: receipts, clock: clock, maxInFlightBytes: maxInFlightBytes,
                     signedRoutes: signedRoutes)
    }

    func code(_ response: HTTPResponse) -> String? {
        (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])?["code"] as? String
    }

    /// An upstream whose event stream is `output` in one piece.
    func streamingUpstream(_ output: [UInt8]) throws -> TestUpstream {
        try TestUpstream { _ in
            let sent = Mutex(false)
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/event-stream")],
                                stream: HTTPStream(next: { sent.withLock { s in defer { s = true }; return s ? nil : output } }))
        }
    }

    /// All a stream's bytes, as the HTTP server would read them.
    func drain(_ response: HTTPResponse) -> [UInt8] {
        guard let stream = response.stream else { return response.body }
        var out: [UInt8] = []
        while let chunk = stream.next() { out += chunk }
        stream.onClose()
        return out
    }

    func testATargetThatIsNotOriginFormIsRefusedAndReachesNoHost() throws {
        let upstream = try TestUpstream { _ in HTTPResponse(status: 200, body: Array("{}".utf8)) }
        let elsewhere = try TestUpstream { _ in HTTPResponse(status: 200, body: Array("{\"metadata\":1}".utf8)) }
        defer { upstream.server.stop(); elsewhere.server.stop() }
        let receipts = DigestReceipts()
        let p = proxy(upstream, receipts: receipts)
        for target in ["@127.0.0.1:\(elsewhere.port)/latest/meta-data", ":\(elsewhere.port)/x", ".localhost:\(elsewhere.port)/x",
                       "http://127.0.0.1:\(elsewhere.port)/x", "//127.0.0.1:\(elsewhere.port)/x", "*", "", "/a b", "/a\\b", "/a#b", "/\u{7f}"] {
            let r = p.handle(HTTPRequest(method: "GET", path: target, target: target))
            XCTAssertEqual(r.status, 400, target)
            XCTAssertEqual(code(r), "request_target_invalid", target)
            XCTAssertNil(r.header("vouch-receipt"))
        }
        XCTAssertEqual(elsewhere.received.count, 0, "no request reached another host")
        XCTAssertEqual(upstream.received.count, 0)
        XCTAssertEqual(receipts.calls.withLock { $0 }, 0, "nothing was signed")
        XCTAssertEqual(p.handle(HTTPRequest(method: "GET", path: "/v1/models", target: "/v1/models?a=%40b")).status, 200)
        XCTAssertEqual(upstream.received.first?.target, "/v1/models?a=%40b")
    }

    func testAControlCharacterInARequestHeaderIsRefused() throws {
        let upstream = try TestUpstream { _ in HTTPResponse(status: 200, body: Array("{}".utf8)) }
        defer { upstream.server.stop() }
        let p = proxy(upstream)
        for (name, value) in [("x-a", "1\rX-Injected: 2"), ("x-a", "1\nX-Injected: 2"), ("x-a", "a\u{0}b"), ("x-a", "a\u{7f}"), ("x a", "1"), ("x\ra", "1")] {
            let r = p.handle(HTTPRequest(method: "GET", path: "/v1/models", headers: [name: value]))
            XCTAssertEqual(r.status, 400, value)
            XCTAssertEqual(code(r), "request_header_invalid", value)
        }
        XCTAssertEqual(upstream.received.count, 0)
        XCTAssertEqual(p.handle(HTTPRequest(method: "GET", path: "/v1/models", headers: ["x-a": "tab\there"])).status, 200, "HTAB is allowed")
    }

    func testTheUpstreamIsAskedForIdentityAndAnEncodedAnswerGetsNoReceipt() throws {
        let upstream = try TestUpstream { request in
            request.path == "/gzip" ? HTTPResponse(status: 200, headers: [("Content-Type", "application/json"), ("Content-Encoding", "gzip")], body: [0x1f, 0x8b, 0])
                : HTTPResponse(status: 200, headers: [("Content-Type", "application/json"), ("Content-Encoding", "identity")], body: Array("{}".utf8))
        }
        defer { upstream.server.stop() }
        let receipts = DigestReceipts()
        let p = proxy(upstream, receipts: receipts, signedRoutes: ["GET /plain", "GET /gzip"])
        let plain = p.handle(HTTPRequest(method: "GET", path: "/plain", headers: ["accept-encoding": "gzip, br"]))
        XCTAssertEqual(plain.status, 200)
        XCTAssertNotNil(plain.header("vouch-receipt"))
        XCTAssertEqual(upstream.received.first?.headers["accept-encoding"], "identity", "the client's Accept-Encoding is replaced")
        let r = p.handle(HTTPRequest(method: "GET", path: "/gzip", headers: ["accept-encoding": "gzip"]))
        XCTAssertEqual(r.status, 502)
        XCTAssertEqual(code(r), "upstream_encoded")
        XCTAssertNil(r.header("vouch-receipt"))
        XCTAssertEqual(receipts.calls.withLock { $0 }, 1)
    }

    func testAReceiptTooLargeForAHeaderIsServedByReference() throws {
        let upstream = try TestUpstream { _ in HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: Array("{}".utf8)) }
        defer { upstream.server.stop() }
        let p = proxy(upstream, receipts: LargeReceipts(size: 60 << 10))
        let r = p.handle(HTTPRequest(method: "POST", path: "/v1/chat/completions", body: Array("{}".utf8)))
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.body, Array("{}".utf8), "the body stays byte-exact")
        XCTAssertNil(r.header("vouch-receipt"))
        XCTAssertEqual(r.header("vouch-receipt-salt"), "0102")
        let ref = try XCTUnwrap(r.header("vouch-receipt-ref"))
        let path = "/.well-known/vouch/receipts/" + ref
        let fetched = p.handle(HTTPRequest(method: "GET", path: path))
        XCTAssertEqual(fetched.status, 200)
        XCTAssertEqual(fetched.header("content-type"), "application/vnd.vouch.receipt.v1+json")
        XCTAssertEqual(fetched.body.count, (60 << 10) + 10)
        XCTAssertEqual(code(p.handle(HTTPRequest(method: "GET", path: "/.well-known/vouch/receipts/00"))), "receipt_not_found")
        clock.advance(by: 601)
        let expired = p.handle(HTTPRequest(method: "GET", path: path))
        XCTAssertEqual(expired.status, 404)
        XCTAssertEqual(code(expired), "receipt_not_found")
        XCTAssertEqual(upstream.received.count, 1, "receipt fetches stay in the proxy")
    }

    func testTheShelfKeepsABoundedNumberOfReceipts() throws {
        let shelf = ReceiptShelf(capacity: 2, lifetime: 60)
        let now = Date(timeIntervalSince1970: 1_000_000)
        let a = try shelf.put([1], now: now), b = try shelf.put([2], now: now), c = try shelf.put([3], now: now)
        XCTAssertNil(shelf.get(a, now: now), "the oldest was dropped")
        XCTAssertEqual(shelf.get(b, now: now), [2])
        XCTAssertEqual(shelf.get(c, now: now), [3])
    }

    func testTheProxyWaitsOnIdleClientConnectionsAsLongAsOnTheUpstream() {
        XCTAssertGreaterThanOrEqual(ReceiptProxy.connectionIdleTimeout(upstreamTimeout: 600), 600)
        XCTAssertGreaterThanOrEqual(ReceiptProxy.connectionIdleTimeout(upstreamTimeout: 5), 30)
    }

    func testTheReceiptEventNamesTheCoveredLength() throws {
        let output = Array("data: {\"a\":1}\n\ndata: [DONE]\n\n".utf8)
        let upstream = try streamingUpstream(output)
        defer { upstream.server.stop() }
        let got = drain(proxy(upstream).handle(HTTPRequest(method: "POST", path: "/v1/chat/completions", body: Array("{}".utf8))))
        XCTAssertEqual(Array(got.prefix(output.count)), output)
        let event = String(decoding: got.dropFirst(output.count), as: UTF8.self)
        XCTAssertTrue(event.hasPrefix("event: vouch-receipt\n"), event)
        let data = event.split(separator: "\n").filter { $0.hasPrefix("data: ") }.map { $0.dropFirst(6) }.joined(separator: "\n")
        let payload = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any])
        XCTAssertEqual(payload["length"] as? String, "\(output.count)")
    }

    func testAnUpstreamStreamWithAReceiptEventOfItsOwnEndsWithAnError() throws {
        let first = Array("data: {\"a\":1}\n\n".utf8)
        for forged in ["event: vouch-receipt\ndata: {\"bundle\":{}}\n\n", "event:vouch-error\r\ndata: {}\r\n\r\n"] {
            let upstream = try TestUpstream { _ in
                let step = Mutex(0)
                return HTTPResponse(status: 200, headers: [("Content-Type", "text/event-stream")], stream: HTTPStream(next: {
                    step.withLock { s -> [UInt8]? in defer { s += 1 }; return [first, Array(forged.utf8)].indices.contains(s) ? [first, Array(forged.utf8)][s] : nil }
                }))
            }
            defer { upstream.server.stop() }
            let receipts = DigestReceipts()
            let text = String(decoding: drain(proxy(upstream, receipts: receipts).handle(HTTPRequest(method: "POST", path: "/v1/chat/completions"))), as: UTF8.self)
            XCTAssertTrue(text.hasPrefix(String(decoding: first, as: UTF8.self) + "event: vouch-error\ndata: "), text)
            XCTAssertFalse(text.contains(forged), "the upstream's own event is not forwarded")
            XCTAssertFalse(text.contains("event: vouch-receipt"))
            XCTAssertTrue(text.contains("\"upstream_failed\""), text)
            XCTAssertEqual(receipts.calls.withLock { $0 }, 0)
        }
    }

    func testAStreamEndingInsideAForgedReceiptEventLineEndsWithNothingMore() throws {
        // Without a line end, the proxy's separator would finish the upstream's event.
        let output = Array("data: {\"bundle\":\"forged\"}\nevent: vouch-receipt".utf8)
        let upstream = try streamingUpstream(output)
        defer { upstream.server.stop() }
        let receipts = DigestReceipts()
        XCTAssertEqual(drain(proxy(upstream, receipts: receipts).handle(HTTPRequest(method: "POST", path: "/v1/chat/completions"))), output,
                       "no separator, no event: the client drops the unfinished event")
        XCTAssertEqual(receipts.calls.withLock { $0 }, 0)
    }

    func testTheBytesInFlightAcrossConnectionsAreCapped() throws {
        let upstream = try TestUpstream { _ in HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: [UInt8](repeating: 0x20, count: 600)) }
        defer { upstream.server.stop() }
        let p = proxy(upstream, maxInFlightBytes: 1000)
        let big = p.handle(HTTPRequest(method: "POST", path: "/v1/chat/completions", body: [UInt8](repeating: 0x20, count: 1001)))
        XCTAssertEqual(big.status, 503)
        XCTAssertEqual(code(big), "proxy_busy")
        XCTAssertEqual(upstream.received.count, 0)
        let over = p.handle(HTTPRequest(method: "POST", path: "/v1/chat/completions", body: [UInt8](repeating: 0x20, count: 500)))
        XCTAssertEqual(over.status, 503, "request and answer together are over the budget")
        XCTAssertEqual(code(over), "proxy_busy")
        XCTAssertEqual(p.budget.inUse, 0, "everything held was given back")
        XCTAssertEqual(p.handle(HTTPRequest(method: "POST", path: "/v1/chat/completions", body: [UInt8](repeating: 0x20, count: 100))).status, 200)
        XCTAssertEqual(p.budget.inUse, 0)
    }
}
