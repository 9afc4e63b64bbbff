import Foundation
import Synchronization
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchHTTPServer
import VouchTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Kept-alive pull connections (`PinnedConnectionPool`) against the real TLS server (mutual TLS,
/// the broker's client certificate verified) and `openssl s_server`: rounds to one attester share
/// one connection; another pin, other TLS material or another CA never ride on it; a connection
/// the server closed is replaced within the round; the pool stays within its capacity and age; and
/// a resumed TLS session does not get past the key pin.
final class PinnedConnectionPoolTests: PKITestCase {
    /// A server certificate (chain PEM, key PEM) for 127.0.0.1 and the pin of its key.
    func serverIdentity() throws -> (certificatePEM: String, keyPEM: String, pin: String) {
        let key = try PrivateKey.generate(.p256)
        let cert = try pki.ca.issue(publicKey: try key.publicKey, profile: LeafProfile(
            subjectCommonName: "attester", ipSANs: ["127.0.0.1"], notBefore: pki.now.addingTimeInterval(-60), notAfter: pki.now.addingTimeInterval(3600),
            usage: .tlsServer))
        return (try cert.pem + (try pki.ca.certificate.pem), try key.pem, "sha256//" + Base64.encode(Crypto.sha256(try cert.publicKey.spkiDER)))
    }

    /// The broker's side: trust anchors `trustPEM` and a client certificate from the test CA,
    /// installed per connection as vouchd does.
    func material(trusting trustPEM: String? = nil) throws -> HTTPClient.PreloadedTLS {
        let key = try PrivateKey.generate(.p256)
        let cert = try pki.ca.issue(publicKey: try key.publicKey, profile: LeafProfile(
            subjectCommonName: "broker", notBefore: pki.now.addingTimeInterval(-60), notAfter: pki.now.addingTimeInterval(3600), usage: .brokerClient))
        let m = try TLSClientMaterial(trustPEM: try trustPEM ?? pki.caPEM, certificateChainPEM: try cert.pem, keyPEM: try key.pem)
        return HTTPClient.PreloadedTLS { m.install(into: $0) }
    }

    /// A pull round's request (POST /v1/quote), or a GET of `path` (what `openssl s_server -www` answers).
    func pull(_ pool: PinnedConnectionPool, _ tls: HTTPClient.PreloadedTLS, pin: String, port: UInt16, path: String? = nil) throws -> HTTPResponse {
        let client = HTTPClient(.pinned(tls: tls, publicKeyPin: pin), timeoutSeconds: 10, connections: pool)
        if let path { return try client.send("GET", "https://127.0.0.1:\(port)\(path)") }
        return try client.send("POST", "https://127.0.0.1:\(port)/v1/quote", headers: ["Content-Type": "application/json"], body: Array("{}".utf8))
    }

    func assertTLSFailure(_ expression: @autoclosure () throws -> HTTPResponse, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) {
            XCTAssertEqual(($0 as? VouchError)?.code, .http, file: file, line: line)
            XCTAssertEqual(($0 as? VouchError)?.cause as? HTTPClientError, .tls, file: file, line: line)
        }
    }

    func testRoundsToOneAttesterShareOneConnection() throws {
        let id = try serverIdentity()
        let (server, port) = try startTLSServer(certificatePEM: id.certificatePEM, keyPEM: id.keyPEM, clientTrustPEM: try pki.caPEM)
        defer { server.stop() }
        let pool = PinnedConnectionPool(capacity: 4)
        let tls = try material()
        let before = HTTPClient.connectionsOpened
        for _ in 0..<5 {
            let r = try pull(pool, tls, pin: id.pin, port: port)
            XCTAssertEqual(r.status, 200)
            XCTAssertNotNil(try JSONDecoder().decode(Echo.self, from: Data(r.body)).clientCertificate, "the broker's certificate was verified")
        }
        let stats = pool.statistics
        XCTAssertEqual(stats.requests, 5)
        XCTAssertEqual(stats.connections, 1, "one handshake, then four rounds on the same connection (CURLINFO_NUM_CONNECTS 0)")
        XCTAssertEqual(stats.idle, 1)
        XCTAssertEqual(HTTPClient.connectionsOpened - before, 1)
    }

    func testAnotherPinOtherTLSMaterialOrAnotherCANeverRideOnAKeptConnection() throws {
        let id = try serverIdentity()
        let (server, port) = try startTLSServer(certificatePEM: id.certificatePEM, keyPEM: id.keyPEM, clientTrustPEM: try pki.caPEM)
        defer { server.stop() }
        let pool = PinnedConnectionPool(capacity: 8)
        let tls = try material()
        XCTAssertEqual(try pull(pool, tls, pin: id.pin, port: port).status, 200)
        XCTAssertEqual(pool.statistics.connections, 1)

        // Another key pinned for the same attester: a handshake of its own, which fails the pin.
        let otherPin = "sha256//" + Base64.encode(Crypto.sha256(Array("not the attester's key".utf8)))
        assertTLSFailure(try pull(pool, tls, pin: otherPin, port: port))
        XCTAssertEqual(pool.statistics.connections, 2)
        XCTAssertEqual(pool.statistics.discarded, 1, "the failed handle is not kept")

        // TLS material trusting only another CA: a new handshake, refused.
        let stranger = try TestPKI(scratch: scratch, name: "another CA")
        assertTLSFailure(try pull(pool, try material(trusting: try stranger.caPEM), pin: id.pin, port: port))
        XCTAssertEqual(pool.statistics.connections, 3)

        // New material with the same trust (a rebuilt bundle): verified anew, not the old connection.
        XCTAssertEqual(try pull(pool, try material(), pin: id.pin, port: port).status, 200)
        XCTAssertEqual(pool.statistics.connections, 4)

        // The first key's connection is still there and still used.
        XCTAssertEqual(try pull(pool, tls, pin: id.pin, port: port).status, 200)
        XCTAssertEqual(pool.statistics.connections, 4)
    }

    func testAConnectionTheServerClosedIsReplacedWithinTheRound() throws {
        let id = try serverIdentity()
        let (server, port) = try startTLSServer(certificatePEM: id.certificatePEM, keyPEM: id.keyPEM, clientTrustPEM: try pki.caPEM)
        let pool = PinnedConnectionPool(capacity: 4)
        let tls = try material()
        XCTAssertEqual(try pull(pool, tls, pin: id.pin, port: port).status, 200)
        // The attester closes the kept connection (here: it restarts on the same port).
        server.stop()
        let again = try HTTPServer(listen: .tls(host: "127.0.0.1", port: port, certificatePEM: id.certificatePEM, keyPEM: id.keyPEM),
                                   threading: .perConnection, limits: .init(), clientTrustPEM: try pki.caPEM, handler: echoHandler)
        defer { again.stop() }
        XCTAssertEqual(try pull(pool, tls, pin: id.pin, port: port).status, 200, "the round still succeeds")
        XCTAssertEqual(pool.statistics.connections, 2)
        XCTAssertEqual(pool.statistics.discarded, 0)
    }

    func testCapacityEvictsTheLeastRecentlyUsedAndAgeEndsAConnection() throws {
        let id = try serverIdentity()
        var servers: [(HTTPServer, UInt16)] = []
        defer { for (s, _) in servers { s.stop() } }
        for _ in 0..<3 { servers.append(try startTLSServer(certificatePEM: id.certificatePEM, keyPEM: id.keyPEM, clientTrustPEM: try pki.caPEM)) }
        let pool = PinnedConnectionPool(capacity: 2)
        let tls = try material()
        for (_, port) in servers { XCTAssertEqual(try pull(pool, tls, pin: id.pin, port: port).status, 200) }
        XCTAssertEqual(pool.statistics.idle, 2)
        XCTAssertEqual(pool.statistics.evicted, 1)
        XCTAssertEqual(pool.statistics.connections, 3)
        // The first attester's connection was the least recently used: closed, so a new one.
        XCTAssertEqual(try pull(pool, tls, pin: id.pin, port: servers[0].1).status, 200)
        XCTAssertEqual(pool.statistics.connections, 4)
        // The third is still kept (the second went to make room).
        XCTAssertEqual(try pull(pool, tls, pin: id.pin, port: servers[2].1).status, 200)
        XCTAssertEqual(pool.statistics.connections, 4)
        XCTAssertEqual(pool.statistics.idle, 2)

        // A pool whose handles age out after a second: the next round makes a new handshake.
        let short = PinnedConnectionPool(capacity: 2, maxConnectionAge: 1)
        XCTAssertEqual(try pull(short, tls, pin: id.pin, port: servers[0].1).status, 200)
        usleep(1_200_000)
        XCTAssertEqual(try pull(short, tls, pin: id.pin, port: servers[0].1).status, 200)
        XCTAssertEqual(short.statistics.connections, 2)
        XCTAssertEqual(short.statistics.discarded, 1)
    }

    func testConcurrentRoundsToOneAttesterGetHandlesOfTheirOwn() throws {
        let id = try serverIdentity()
        let arrived = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        // A thread per connection whatever VOUCH_TEST_HTTP_THREADING says: both handlers block at
        // once here, which a pool thread serving both connections could not do.
        let port = try freePort()
        let server = try HTTPServer(listen: .tls(host: "127.0.0.1", port: port, certificatePEM: id.certificatePEM, keyPEM: id.keyPEM),
                                    threading: .perConnection, limits: .init(), clientTrustPEM: try pki.caPEM) { req in
            arrived.signal()
            _ = release.wait(timeout: .now() + 10)
            return echoHandler(req)
        }
        defer { server.stop() }
        let pool = PinnedConnectionPool(capacity: 4)
        let tls = try material()
        let group = DispatchGroup()
        let statuses = Mutex<[Int]>([])
        for _ in 0..<2 {
            DispatchQueue.global().async(group: group) {
                let client = HTTPClient(.pinned(tls: tls, publicKeyPin: id.pin), timeoutSeconds: 10, connections: pool)
                let status = (try? client.send("POST", "https://127.0.0.1:\(port)/v1/quote", body: Array("{}".utf8)).status) ?? 0
                statuses.withLock { $0.append(status) }
            }
        }
        // Both requests are in the handler at once: two connections, not one shared.
        XCTAssertEqual(arrived.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(arrived.wait(timeout: .now() + 10), .success)
        release.signal()
        release.signal()
        XCTAssertEqual(group.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(statuses.withLock { $0 }, [200, 200])
        XCTAssertEqual(pool.statistics.connections, 2)
        XCTAssertEqual(pool.statistics.idle, 2, "both kept for later rounds")
    }

    /// Push mode: each report builds its client anew (as `Attester.pushReport` does), over the
    /// process-wide handle pool; sequential reports with the host certificate share one connection.
    func testPushesOverTheSharedHandlePoolReuseOneConnection() throws {
        let id = try serverIdentity()
        let (server, port) = try startTLSServer(certificatePEM: id.certificatePEM, keyPEM: id.keyPEM, clientTrustPEM: try pki.caPEM)
        defer { server.stop() }
        let caFile = try pki.caFile(), host = try pki.client()
        let before = HTTPClient.connectionsOpened
        for _ in 0..<4 {
            let client = HTTPClient(.https(baseURL: "https://127.0.0.1:\(port)", caFile: caFile), identity: host.identity, keepAliveSeconds: 1800)
            let r = try client.send("POST", "/v1/hosts/h/attestations", body: Array("{}".utf8))
            XCTAssertEqual(r.status, 200)
            XCTAssertNotNil(try JSONDecoder().decode(Echo.self, from: Data(r.body)).clientCertificate)
        }
        XCTAssertEqual(HTTPClient.connectionsOpened - before, 1, "one TLS handshake for four pushes")
    }

    /// A reconnect to the same attester resumes its TLS session (the handle's own cache), and a
    /// server that has another key since cannot: curl still enforces the pin, so the round fails.
    func testAResumedSessionDoesNotGetPastThePin() throws {
        let first = try serverIdentity(), second = try serverIdentity()
        let port = try freePort()
        let pool = PinnedConnectionPool(capacity: 4)
        let tls = try material()
        var server = try SServer(scratch: scratch, port: port, identity: first, clientCA: try pki.caPEM)
        defer { server.stop() }
        // s_server -www answers HTTP/1.0 and closes: every request is a new connection.
        let new = try pull(pool, tls, pin: first.pin, port: port, path: "/")
        XCTAssertTrue(String(decoding: new.body, as: UTF8.self).contains("New, "), String(decoding: new.body, as: UTF8.self))
        let resumed = try pull(pool, tls, pin: first.pin, port: port, path: "/")
        XCTAssertTrue(String(decoding: resumed.body, as: UTF8.self).contains("Reused, "), "the same attester and trust resume the session")
        XCTAssertEqual(pool.statistics.connections, 2)

        server.stop()
        server = try SServer(scratch: scratch, port: port, identity: second, clientCA: try pki.caPEM)
        assertTLSFailure(try pull(pool, tls, pin: first.pin, port: port, path: "/"))
        // The new key pinned: a full handshake of its own (another pool key, no session to offer).
        let fresh = try pull(pool, tls, pin: second.pin, port: port, path: "/")
        XCTAssertTrue(String(decoding: fresh.body, as: UTF8.self).contains("New, "))
    }
}

/// `openssl s_server -www` on 127.0.0.1 demanding a client certificate from `clientCA`: its
/// status page says whether the session was new or resumed ("New, " / "Reused, ").
struct SServer {
    let process: Process

    init(scratch: Scratch, port: UInt16, identity: (certificatePEM: String, keyPEM: String, pin: String), clientCA: String) throws {
        let tag = UUID().uuidString.prefix(8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = ["s_server", "-accept", "127.0.0.1:\(port)", "-www", "-cert", try scratch.write("s-\(tag).pem", identity.certificatePEM),
                       "-key", try scratch.write("s-\(tag).key", identity.keyPEM), "-CAfile", try scratch.write("s-ca-\(tag).pem", clientCA),
                       "-Verify", "1", "-verify_return_error"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        for _ in 0..<200 {
            if loopbackPort(port, bind: false) { return }
            usleep(25_000)
        }
        p.terminate()
        throw VouchError(.io, "openssl s_server did not start", context: ["port": "\(port)"])
    }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }
}
