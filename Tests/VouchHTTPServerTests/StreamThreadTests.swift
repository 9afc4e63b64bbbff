import Foundation
import Synchronization
import XCTest
import VouchCore
import VouchHTTPClient
import VouchHTTPServer
import VouchTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// `Threading.poolWithStreamThreads`: ordinary requests are served by a small pool, each
/// streamed response by a pump thread of its own, and a connection waiting for its stream is
/// suspended rather than holding a pool thread.
final class StreamThreadTests: XCTestCase {
    /// A plain-HTTP server on 127.0.0.1 with a pool of `threads`: `/stream` answers what
    /// `stream()` makes, anything else a short "ok".
    func server(threads: Int = 2, limits: HTTPServer.Limits = .init(), stream: @escaping @Sendable () -> HTTPStream) throws -> (HTTPServer, UInt16) {
        let port = try freePort()
        let server = try HTTPServer(listen: .http(host: "127.0.0.1", port: port), threading: .poolWithStreamThreads(threads), limits: limits) { req in
            req.path == "/stream" ? HTTPResponse(status: 200, headers: [("Content-Type", "text/event-stream")], stream: stream())
                : HTTPResponse(status: 200, headers: [("Content-Type", "text/plain")], body: Array("ok".utf8))
        }
        return (server, port)
    }

    /// The names of this process's threads (`/proc/self/task/*/comm`).
    static func threadNames() -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    static func pumpThreads() -> Int { threadNames().filter { $0 == "vouch.http.pump" }.count }

    func testStreamsThatBlockDoNotHoldUpOrdinaryRequests() throws {
        let release = DispatchSemaphore(value: 0)
        let closed = Mutex(0)
        let (server, port) = try server {
            let step = Mutex(0)
            return HTTPStream(next: {
                switch step.withLock({ s -> Int in defer { s += 1 }; return s }) {
                case 0: return Array("data: first\n\n".utf8)
                case 1:
                    _ = release.wait(timeout: .now() + 60)
                    return Array("data: last\n\n".utf8)
                default: return nil
                }
            }, onClose: { closed.withLock { $0 += 1 } })
        }
        defer { server.stop() }
        let client = HTTPClient(.service(baseURL: "http://127.0.0.1:\(port)"), timeoutSeconds: 60)
        // 8 streams, each now blocked in next(), with 2 pool threads.
        var streams: [StreamedResponse] = []
        for _ in 0..<8 {
            let answer = try client.open("GET", "/stream")
            XCTAssertEqual(answer.status, 200)
            XCTAssertEqual(String(decoding: try answer.next() ?? [], as: UTF8.self), "data: first\n\n")
            streams.append(answer)
        }
        let answered = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 20) { _ in
            if let r = try? client.send("GET", "/healthz"), r.status == 200, r.body == Array("ok".utf8) { answered.withLock { $0 += 1 } }
        }
        XCTAssertEqual(answered.withLock { $0 }, 20, "every ordinary request is answered while 8 streams block")
        XCTAssertEqual(closed.withLock { $0 }, 0)
        for _ in streams { release.signal() }
        for answer in streams {
            var rest: [UInt8] = []
            while let piece = try answer.next() { rest += piece }
            XCTAssertEqual(String(decoding: rest, as: UTF8.self), "data: last\n\n")
        }
        XCTAssertTrue(eventually { closed.withLock { $0 } == 8 }, "onClose runs once per stream")
        XCTAssertTrue(eventually { Self.pumpThreads() == 0 }, "the pump threads end with their streams")
    }

    /// The client leaves while its connection is suspended and the pump is inside next().
    func testAClientLeavingMidStreamClosesItOnceAndEndsThePump() throws {
        let closed = Mutex(0)
        let callsAfterClose = Mutex(0)
        let (server, port) = try server {
            let isClosed = Mutex(false)
            return HTTPStream(next: {
                if isClosed.withLock({ $0 }) { callsAfterClose.withLock { $0 += 1 } }
                usleep(100_000)
                return Array(": tick\n\n".utf8)
            }, onClose: {
                isClosed.withLock { $0 = true }
                closed.withLock { $0 += 1 }
            })
        }
        defer { server.stop() }
        do {
            let socket = try RawSocket(tcpPort: port)
            XCTAssertTrue(socket.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"))
            XCTAssertTrue(socket.read(until: ": tick\n\n", timeout: 10))
            XCTAssertTrue(eventually { Self.pumpThreads() == 1 }, "\(Self.threadNames())")
        }   // the socket closes here
        XCTAssertTrue(eventually(within: 20) { closed.withLock { $0 } == 1 }, "the server notices the client left")
        XCTAssertTrue(eventually { Self.pumpThreads() == 0 }, "the pump ends after its next() returns")
        XCTAssertLessThanOrEqual(callsAfterClose.withLock { $0 }, 1, "no next() after the pump saw the close")
        XCTAssertEqual(closed.withLock { $0 }, 1, "onClose runs exactly once")
    }

    func testStoppingTheServerWithOpenStreamsClosesEach() throws {
        let release = DispatchSemaphore(value: 0)
        let closed = Mutex(0)
        let (server, port) = try server {
            let first = Mutex(true)
            return HTTPStream(next: {
                if first.withLock({ f in defer { f = false }; return f }) { return Array("data: first\n\n".utf8) }
                _ = release.wait(timeout: .now() + 60)
                return nil
            }, onClose: { closed.withLock { $0 += 1 } })
        }
        let sockets = try (0..<4).map { _ in try RawSocket(tcpPort: port) }
        for socket in sockets {
            XCTAssertTrue(socket.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"))
            XCTAssertTrue(socket.read(until: "data: first\n\n", timeout: 10))
        }
        XCTAssertEqual(Self.pumpThreads(), 4)
        server.stop()   // returns although every stream is suspended and its pump blocked
        XCTAssertEqual(closed.withLock { $0 }, 4, "stopping closes every stream")
        for socket in sockets { XCTAssertTrue(socket.closedByServer(within: 5)) }
        for _ in 0..<4 { release.signal() }
        XCTAssertTrue(eventually { Self.pumpThreads() == 0 })
        server.stop()   // idempotent
    }

    /// Streams that produce quickly, clients that leave and a server that stops, all at once,
    /// round after round: every stream is closed exactly once and every pump ends.
    func testStreamsClientsAndStopRacing() throws {
        let opened = Mutex(0), closed = Mutex(0)
        for round in 0..<20 {
            let (server, port) = try server(threads: 2) {
                opened.withLock { $0 += 1 }
                let n = Mutex(0)
                return HTTPStream(next: {
                    let i = n.withLock { v -> Int in defer { v += 1 }; return v }
                    if i % 3 == 2 { usleep(UInt32(1_000 * (i % 7))) }   // sometimes the queue runs dry
                    return i < 200 ? Array("data: \(i)\n\n".utf8) : nil
                }, onClose: { closed.withLock { $0 += 1 } })
            }
            var sockets: [RawSocket] = []
            for i in 0..<8 {
                let socket = try RawSocket(tcpPort: port)
                XCTAssertTrue(socket.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"))
                XCTAssertTrue(socket.read(until: "data: 0", timeout: 10), "round \(round) stream \(i)")
                sockets.append(socket)
            }
            sockets.removeFirst(round % 8)   // some clients leave mid-stream
            server.stop()
        }
        XCTAssertTrue(eventually { Self.pumpThreads() == 0 })
        XCTAssertEqual(opened.withLock { $0 }, 160)
        XCTAssertEqual(closed.withLock { $0 }, 160, "each stream closed once")
    }

    /// A client that does not read: the pump stops calling next() once the queue is full (the
    /// socket buffers and the bounded queue hold what was produced, not everything it could make).
    func testASlowReaderHoldsThePumpBack() throws {
        let produced = Mutex(0)
        let chunk = [UInt8](repeating: UInt8(ascii: "z"), count: 16 << 10)
        let (server, port) = try server {
            HTTPStream(next: {
                produced.withLock { $0 += chunk.count }
                return chunk
            })
        }
        defer { server.stop() }
        let socket = try RawSocket(tcpPort: port)
        XCTAssertTrue(socket.send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"))
        var last = -1
        XCTAssertTrue(eventually(within: 20) {
            let now = produced.withLock { $0 }
            defer { last = now }
            usleep(200_000)
            return now == last
        }, "production stops while the client does not read")
        XCTAssertLessThan(produced.withLock { $0 }, 64 << 20, "what was produced is bounded by buffers, not by the producer")
        XCTAssertTrue(socket.read(until: "zzzz", timeout: 5), "reading resumes the stream")
    }

    /// libmicrohttpd does not time out a suspended connection, and the request deadline does not
    /// cut a response: a stream that sends less often than the idle timeout stays open.
    func testAStreamQuieterThanTheIdleTimeoutIsNotCut() throws {
        let (server, port) = try server(limits: .init(idleTimeout: 1, requestDeadline: 1)) {
            let step = Mutex(0)
            return HTTPStream(next: {
                let n = step.withLock { s -> Int in defer { s += 1 }; return s }
                guard n < 3 else { return nil }
                if n > 0 { usleep(2_500_000) }
                return Array("data: \(n)\n\n".utf8)
            })
        }
        defer { server.stop() }
        let client = HTTPClient(.service(baseURL: "http://127.0.0.1:\(port)"), timeoutSeconds: 30)
        let r = try client.send("GET", "/stream")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "data: 0\n\ndata: 1\n\ndata: 2\n\n")
    }

    func testAHeadRequestClosesTheStreamWithoutPumpingIt() throws {
        let closed = Mutex(0), calls = Mutex(0)
        let (server, port) = try server {
            HTTPStream(next: { calls.withLock { $0 += 1 }; return nil }, onClose: { closed.withLock { $0 += 1 } })
        }
        defer { server.stop() }
        let socket = try RawSocket(tcpPort: port)
        XCTAssertTrue(socket.send("HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n"))
        XCTAssertTrue(socket.read(until: "\r\n\r\n", timeout: 10))
        XCTAssertTrue(eventually { closed.withLock { $0 } == 1 })
        XCTAssertEqual(calls.withLock { $0 }, 0)
    }

    /// 2,000 kept-alive connections, each having had one answer, cost the server no thread each.
    func testIdleKeptAliveConnectionsHoldNoThreads() throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        guard limit.rlim_max >= 4400 else { throw TestFailure("RLIMIT_NOFILE hard limit \(limit.rlim_max) is below the 2 × 2,000 sockets needed: raise it (ulimit -Hn)") }
        if limit.rlim_cur < 4400 {
            limit.rlim_cur = limit.rlim_max
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let (server, port) = try server(threads: 2, limits: .init(total: 4096)) { HTTPStream(next: { nil }) }
        defer { server.stop() }
        let before = Self.threadNames().count
        var sockets: [RawSocket] = []
        for _ in 0..<2000 {
            let socket = try RawSocket(tcpPort: port)
            XCTAssertTrue(socket.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
            guard socket.read(until: "\r\n\r\nok", timeout: 10) else { return XCTFail("connection \(sockets.count) got no answer") }
            sockets.append(socket)
        }
        let during = Self.threadNames().count
        XCTAssertLessThan(during - before, 20, "2,000 idle connections: \(before) threads before, \(during) with them open")
        // They are all still open and served.
        var served = 0
        for socket in sockets where socket.send("GET /again HTTP/1.1\r\nHost: x\r\n\r\n") && socket.read(until: "\r\n\r\nok", timeout: 10) { served += 1 }
        XCTAssertEqual(served, 2000)
    }
}
