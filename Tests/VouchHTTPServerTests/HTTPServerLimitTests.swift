import Foundation
import Synchronization
import XCTest
import VouchCore
import VouchHTTPClient
import VouchTestSupport
@testable import VouchHTTPServer

/// The server's connection limits (`HTTPServer.Limits`), each with the smallest setup: connections
/// per client address and in all (held open by raw sockets), the idle timeout, and the absolute
/// request deadline (`RequestDeadline`). The deadline's bookkeeping is checked on an explicit
/// clock; the few tests that need the real one take about a second each.
final class HTTPServerLimitTests: PKITestCase {

    /// Requests to /hold wait in the handler until released: a connection that is certainly
    /// accepted and counted (a raw socket could be closed by the server a moment later).
    final class Gate: @unchecked Sendable {
        let arrived = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        var held = 0

        var handler: HTTPServer.Handler {
            { [self] req in
                if req.path == "/hold" { arrived.signal(); release.wait() }
                return echoHandler(req)
            }
        }

        /// Sends GET /hold from a thread (again while the server refuses it: libcurl's previous
        /// connection may not be closed on the server's side yet) and waits until it is held.
        func hold(_ client: HTTPClient) -> Bool {
            held += 1
            Thread { [self] in
                let end = Date().addingTimeInterval(10)
                while Date() < end, (try? client.send("GET", "/hold"))?.status != 200 { usleep(20_000) }
                done.signal()
            }.start()
            return arrived.wait(timeout: .now() + 10) == .success
        }

        /// Lets one held request finish.
        func releaseOne() {
            guard held > 0 else { return }
            held -= 1
            release.signal()
            _ = done.wait(timeout: .now() + 10)
        }

        func releaseAll() { while held > 0 { releaseOne() } }
    }

    func tlsServer(_ limits: HTTPServer.Limits, gate: Gate = Gate()) throws -> (HTTPServer, UInt16, HTTPClient) {
        let tls = try pki.server()
        // One thread per connection, as vouchd runs it (a thread pool splits `total` between its threads).
        let (server, port) = try startTLSServer(certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM, threading: .perConnection, limits: limits,
                                                handler: gate.handler)
        // A fresh connection per request, so no connection kept by libcurl counts against the limits.
        let client = HTTPClient(.https(baseURL: "https://127.0.0.1:\(port)", caFile: try pki.caFile()), timeoutSeconds: 10, freshConnections: true)
        return (server, port, client)
    }

    func served(_ client: HTTPClient) -> Bool { (try? client.send("GET", "/"))?.status == 200 }

    // MARK: Connections per address and in all

    func testConnectionsPerAddressAreCapped() throws {
        let gate = Gate()
        let (server, port, client) = try tlsServer(.init(perAddress: 1), gate: gate)
        defer { gate.releaseAll(); server.stop() }
        XCTAssertTrue(eventually { served(client) })

        // Another address's connection does not count against 127.0.0.1 (nothing else comes from
        // 127.0.0.2, so nothing may close this one).
        let other = try RawSocket(tcpPort: port, from: "127.0.0.2")
        XCTAssertFalse(other.closedByServer(within: 0.2), "the first connection from 127.0.0.2 is kept")

        XCTAssertTrue(gate.hold(client), "one connection from 127.0.0.1 is served")
        let second = try RawSocket(tcpPort: port)
        XCTAssertTrue(second.closedByServer(within: 5), "a second one is closed at once")
        XCTAssertThrowsError(try client.send("GET", "/")) { error in
            XCTAssertEqual((error as? VouchError)?.code, .http, "the client's connection is closed before any answer")
        }
        XCTAssertFalse(other.closedByServer(within: 0), "127.0.0.2's connection is still open")
        gate.releaseOne()
        XCTAssertTrue(eventually { served(client) }, "the slot frees when the held connection closes")
    }

    func testConnectionsInAllAreCapped() throws {
        let gate = Gate()
        let (server, port, client) = try tlsServer(.init(perAddress: 0, total: 2), gate: gate)
        defer { gate.releaseAll(); server.stop() }
        XCTAssertTrue(gate.hold(client))
        XCTAssertTrue(gate.hold(client))
        let third = try RawSocket(tcpPort: port, from: "127.0.0.3")   // from anywhere
        if streamThreadsUnderTest {
            // A pool splits the total among its threads, and a thread at its share stops
            // accepting: the third connection waits in the kernel's accept queue, unserved.
            XCTAssertTrue(third.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
            XCTAssertTrue(third.receive(timeout: 2).isEmpty, "a third connection is over the total")
            return
        }
        XCTAssertTrue(third.closedByServer(within: 5), "a third connection is over the total")
        XCTAssertThrowsError(try client.send("GET", "/"))
        gate.releaseOne()
        XCTAssertTrue(eventually { served(client) })
    }

    func testNoPerAddressCapByDefault() throws {
        let (server, port, client) = try tlsServer(.init())
        defer { server.stop() }
        let held = try (0..<8).map { _ in try RawSocket(tcpPort: port) }
        XCTAssertTrue(served(client))
        XCTAssertFalse(held.contains { $0.closedByServer(within: 0) }, "none of them was closed")
    }

    // MARK: Idle timeout

    func testAnIdleConnectionIsClosedAfterTheIdleTimeout() throws {
        let path = scratch.file("idle.sock")
        let server = try HTTPServer(listen: .unix(path: path, mode: 0o600), threading: underTest(.perConnection), limits: .init(idleTimeout: 1), handler: echoHandler)
        defer { server.stop() }
        let raw = try RawSocket(unixPath: path)
        let start = ContinuousClock.now
        XCTAssertTrue(raw.closedByServer(within: 5), "closed after about 1 s of silence")
        XCTAssertGreaterThan(ContinuousClock.now - start, .milliseconds(500), "not before the timeout")
    }

    // MARK: Request deadline, through the server

    /// With a 1 s deadline and a 30 s idle timeout: a client that trickles a request a byte at a
    /// time is cut about a second after its previous response, while a response that takes longer
    /// than the deadline to produce is not cut. Both run at once, so the test takes ~1.5 s.
    func testTheRequestDeadlineCutsTricklingClientsButNotSlowResponses() throws {
        let path = scratch.file("deadline.sock")
        let server = try HTTPServer(listen: .unix(path: path, mode: 0o600), threading: underTest(.perConnection),
                                    limits: .init(idleTimeout: 30, requestDeadline: 1), handler: { req in
            if req.path == "/slow" && streamThreadsUnderTest {
                // A pool thread blocked in a handler would stall the other connections it polls
                // (the trickling one among them): in that mode slow answers are streams.
                let sent = Mutex(false)
                return HTTPResponse(status: 200, stream: HTTPStream(next: {
                    guard !sent.withLock({ s in defer { s = true }; return s }) else { return nil }
                    usleep(1_500_000)
                    return Array("done \(req.path)".utf8)
                }))
            }
            if req.path == "/slow" { usleep(1_500_000) }
            return HTTPResponse(status: 200, body: Array("done \(req.path)".utf8))
        })
        defer { server.stop() }

        let slow = Mutex<Result<HTTPResponse, any Error>?>(nil)
        let slowDone = DispatchSemaphore(value: 0)
        Thread {
            let client = HTTPClient(.unix(path: path), timeoutSeconds: 10, freshConnections: true)
            let r = Result { try client.send("GET", "/slow") }
            slow.withLock { $0 = r }
            slowDone.signal()
        }.start()

        // A whole first request on a kept-alive connection is answered; then the next one trickles.
        let raw = try RawSocket(unixPath: path)
        XCTAssertTrue(raw.send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n"))
        XCTAssertTrue(raw.read(until: "done /first", timeout: 5))
        let answered = ContinuousClock.now
        XCTAssertTrue(raw.send("GET /second HTTP/1.1\r\nHost: x\r\n"))
        var cut = false
        while ContinuousClock.now - answered < .seconds(6) {
            if !raw.send("X-Trickle: y\r\n") || raw.closedByServer(within: 0.1) { cut = true; break }
        }
        let after = ContinuousClock.now - answered
        XCTAssertTrue(cut, "the trickling connection is shut down")
        XCTAssertGreaterThanOrEqual(after, .milliseconds(500), "not long before the deadline (1 s from the previous response; the margin is for a slow reader on a busy machine)")

        XCTAssertEqual(slowDone.wait(timeout: .now() + 10), .success)
        let r = try XCTUnwrap(slow.withLock { $0 }).get()
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(String(decoding: r.body, as: UTF8.self), "done /slow", "a response in progress is never cut")
    }

    /// `authenticatedIdleTimeout`: with a 1 s idle timeout and request deadline, a client whose
    /// verified certificate the handler accepted (`keepsConnection` on its answer) finds its kept
    /// connection open 2.5 s later (no new connection). A client with a verified certificate whose
    /// answer did not say so, and an anonymous client asking the same path, were closed after 1 s
    /// and connect again. About 2.5 s.
    func testOnlyAConnectionTheHandlerAuthenticatedOutlivesTheShortLimits() throws {
        let tls = try pki.server()
        let (server, port) = try startTLSServer(certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM, threading: .pool(4),
                                                limits: .init(idleTimeout: 1, requestDeadline: 1, authenticatedIdleTimeout: 30),
                                                clientTrustPEM: try pki.caPEM) { req in
            var response = echoHandler(req)
            response.keepsConnection = req.path == "/host" && req.clientCertificate != nil
            return response
        }
        defer { server.stop() }
        let base = "https://127.0.0.1:\(port)", caFile = try pki.caFile()
        func client(_ identity: HTTPClient.ClientIdentity?) -> HTTPClient {
            HTTPClient(.https(baseURL: base, caFile: caFile), timeoutSeconds: 10, identity: identity, keepAliveSeconds: 1800, ownConnection: true)
        }
        let host = client(try pki.client().identity), notKept = client(try pki.client().identity), anonymous = client(nil)
        /// Connections `client` opened for one request to `path`.
        func connections(_ client: HTTPClient, _ path: String) throws -> Int {
            let before = HTTPClient.connectionsOpened
            XCTAssertEqual(try client.send("GET", path).status, 200)
            return HTTPClient.connectionsOpened - before
        }
        XCTAssertEqual(try connections(host, "/host"), 1)
        XCTAssertEqual(try connections(notKept, "/other"), 1)
        XCTAssertEqual(try connections(anonymous, "/host"), 1)
        usleep(2_500_000)
        XCTAssertEqual(try connections(host, "/host"), 0, "the authenticated connection outlived the 1 s limits")
        XCTAssertEqual(try connections(notKept, "/other"), 1, "a verified certificate alone does not keep a connection")
        XCTAssertEqual(try connections(anonymous, "/host"), 1, "nor does the path without a certificate")
    }

    /// A TLS 1.3 ClientHello (225 bytes), made once by Python's ssl module (OpenSSL 3, verification
    /// off) into a memory BIO and written down here: a client that starts a handshake and then
    /// sends nothing more. Its random and key share are fixed; the server answers it all the same.
    static let clientHello: [UInt8] = {
        let hex = [
        "16030100dc010000d803036bb64a25cb7ab3bb1be1a6583dcd53fedbc1b62df556bc8baef632ba814cbc6d20bbc0d09c",
        "681859ffa130f854e73c5b172f1a8fa38f6725a302f2fac04529b100000813021303130100ff01000087000b00040300",
        "0102000a00160014001d0017001e0019001801000101010201030104002300000016000000170000000d001e001c0403",
        "05030603080708080809080a080b080408050806040105010601002b0003020304002d00020101003300260024001d00",
        "20e70a602ed0690e6ed34ac4b0fe343f7793e61831688e5f1c30bbe7ed95d3aa50"
        ].joined()
        return try! Hex.decode(hex, field: "clientHello")
    }()

    /// Two clients that sent a ClientHello and then nothing: the pool threads wait for their next
    /// flight without spinning. This process's CPU over 1.5 s of that stays under 0.5 s: under
    /// libmicrohttpd's epoll mode each stalled handshake kept a pool thread retrying `recv` (about
    /// a core each, 3 s of CPU here), which is what this guards against, with a wide margin for
    /// whatever else the machine runs. It asserts the absence of a busy loop, not a speed.
    func testAStalledTLSHandshakeCostsNoCPU() throws {
        let tls = try pki.server()
        let (server, port) = try startTLSServer(certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM, threading: .pool(4),
                                                limits: .init(idleTimeout: 30, requestDeadline: 30), clientTrustPEM: try pki.caPEM)
        defer { server.stop() }
        let stalled = try (0..<2).map { _ in try RawSocket(tcpPort: port) }
        for s in stalled {
            XCTAssertTrue(s.send(bytes: Self.clientHello))
            XCTAssertFalse(s.receive(timeout: 5).isEmpty, "the server answers the ClientHello (ServerHello and the rest of its flight)")
        }
        func cpuSeconds() -> Double {
            var usage = rusage()
            getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
            return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        }
        let before = cpuSeconds()
        usleep(1_500_000)
        let used = cpuSeconds() - before
        XCTAssertLessThan(used, 0.5, "CPU used while two handshakes wait for their clients: \(used) s")
        XCTAssertEqual(try HTTPClient(.https(baseURL: "https://127.0.0.1:\(port)", caFile: try pki.caFile()), timeoutSeconds: 10).send("GET", "/x").status, 200,
                       "others are served meanwhile")
    }

    /// The plain-HTTP listener as vouchd runs its publication listener (a thread pool) has the
    /// same per-address cap and request deadline.
    func testThePlainHTTPListenerHasTheSameLimits() throws {
        let port = try freePort()
        let server = try HTTPServer(listen: .http(host: "127.0.0.1", port: port), threading: underTest(.pool(4)),
                                    limits: .init(idleTimeout: 30, requestDeadline: 1, perAddress: 1), handler: echoHandler)
        defer { server.stop() }
        let first = try RawSocket(tcpPort: port)
        XCTAssertTrue(first.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"))
        XCTAssertTrue(first.read(until: "200 OK", timeout: 5))
        let second = try RawSocket(tcpPort: port)
        XCTAssertTrue(second.closedByServer(within: 5), "a second connection from the address is closed at once")
        // The kept-alive first connection trickles its next request: cut by the deadline.
        let answered = ContinuousClock.now
        XCTAssertTrue(first.send("GET /b HTTP/1.1\r\nHost: x\r\n"))
        var cut = false
        while ContinuousClock.now - answered < .seconds(6) {
            if !first.send("X-Trickle: y\r\n") || first.closedByServer(within: 0.1) { cut = true; break }
        }
        XCTAssertTrue(cut, "the trickling connection is shut down")
    }

    // MARK: Request deadline, its bookkeeping on an explicit clock

    /// A connected socket pair: the deadline shuts `fd` down; `peer` sees end of file.
    struct SocketPair {
        let fd: Int32, peer: Int32
        init() {
            var fds: [Int32] = [0, 0]
            precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
            (fd, peer) = (fds[0], fds[1])
        }
        /// True once `fd` was shut down (the peer reads end of file).
        var shutDown: Bool {
            var byte: UInt8 = 0
            return recv(peer, &byte, 1, Int32(MSG_DONTWAIT)) == 0
        }
        func close() { _ = Glibc.close(fd); _ = Glibc.close(peer) }
    }

    func connection(_ n: Int) -> OpaquePointer { OpaquePointer(bitPattern: 0x1000 * n)! }

    func testTheDeadlineCountsFromAcceptUntilTheRequestIsWhole() {
        let d = RequestDeadline(limit: .seconds(2))
        let t0 = ContinuousClock.now
        let a = SocketPair(), b = SocketPair()
        defer { a.close(); b.close() }
        d.connectionStarted(connection(1), fd: a.fd, now: t0)
        d.connectionStarted(connection(2), fd: b.fd, now: t0 + .seconds(1))
        XCTAssertEqual(d.sweep(now: t0 + .seconds(2)), 0, "exactly at the limit is not past it")
        XCTAssertFalse(a.shutDown)
        XCTAssertEqual(d.sweep(now: t0 + .milliseconds(2001)), 1)
        XCTAssertTrue(a.shutDown)
        XCTAssertFalse(b.shutDown)
        XCTAssertEqual(d.sweep(now: t0 + .seconds(10)), 1, "the other one, later; an expired one is not shut down twice")
        XCTAssertTrue(b.shutDown)
        XCTAssertEqual(d.sweep(now: t0 + .seconds(100)), 0)
    }

    func testTheClockStopsWhileAResponseIsProducedAndRestartsWhenItIsSent() {
        let d = RequestDeadline(limit: .seconds(2))
        let t0 = ContinuousClock.now
        let a = SocketPair()
        defer { a.close() }
        d.connectionStarted(connection(1), fd: a.fd, now: t0)
        d.requestReceived(connection(1))
        XCTAssertEqual(d.sweep(now: t0 + .seconds(60)), 0, "a slow handler or a long event stream is never cut")
        d.responseSent(connection(1), now: t0 + .seconds(60))
        XCTAssertEqual(d.sweep(now: t0 + .seconds(62)), 0, "the next request has the whole limit again")
        XCTAssertEqual(d.sweep(now: t0 + .milliseconds(62_001)), 1)
        XCTAssertTrue(a.shutDown)
        // Once expired, a late completion does not start the clock again.
        d.responseSent(connection(1), now: t0 + .seconds(63))
        XCTAssertEqual(d.sweep(now: t0 + .seconds(100)), 0)
    }

    func testAnExtendedConnectionHasItsOwnLimit() {
        let d = RequestDeadline(limit: .seconds(1))
        let t0 = ContinuousClock.now
        let a = SocketPair(), b = SocketPair()
        defer { a.close(); b.close() }
        d.connectionStarted(connection(1), fd: a.fd, now: t0)
        d.connectionStarted(connection(2), fd: b.fd, now: t0)
        d.requestReceived(connection(1))
        d.extend(connection(1), to: .seconds(10))
        d.responseSent(connection(1), now: t0)
        XCTAssertEqual(d.sweep(now: t0 + .seconds(5)), 1, "only the connection on the server's 1 s limit")
        XCTAssertTrue(b.shutDown)
        XCTAssertFalse(a.shutDown)
        XCTAssertEqual(d.sweep(now: t0 + .milliseconds(10_001)), 1)
        XCTAssertTrue(a.shutDown)
    }

    func testAClosedConnectionIsForgottenAndUnknownOnesAreIgnored() {
        let d = RequestDeadline(limit: .seconds(1))
        let t0 = ContinuousClock.now
        let a = SocketPair()
        defer { a.close() }
        d.connectionStarted(connection(1), fd: a.fd, now: t0)
        d.connectionClosed(connection(1))
        XCTAssertEqual(d.sweep(now: t0 + .seconds(5)), 0, "a closed connection's descriptor is never touched (it may be reused)")
        XCTAssertFalse(a.shutDown)
        d.requestReceived(connection(7))
        d.responseSent(connection(7))
        d.connectionClosed(connection(7))
        XCTAssertEqual(d.sweep(now: t0 + .seconds(5)), 0)
    }

    func testTheWatchdogStopsOnce() {
        let d = RequestDeadline(limit: .seconds(1))
        d.start()
        d.stop()
        d.stop()
    }
}
