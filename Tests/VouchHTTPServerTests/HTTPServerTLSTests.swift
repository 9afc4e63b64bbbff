import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchHTTPServer
import VouchTestSupport

/// The server over TLS on 127.0.0.1 with a certificate from a CA made here: the handshake against
/// the client's pinned CA, and client certificates (asked for, never required; passed to the
/// handler only when they verify against the configured trust).
final class HTTPServerTLSTests: PKITestCase {

    func client(_ port: UInt16, caFile: String, identity: HTTPClient.ClientIdentity? = nil) -> HTTPClient {
        HTTPClient(.https(baseURL: "https://127.0.0.1:\(port)", caFile: caFile), timeoutSeconds: 10, identity: identity, freshConnections: true)
    }

    func echo(_ r: HTTPResponse) throws -> Echo {
        XCTAssertEqual(r.status, 200, String(decoding: r.body, as: UTF8.self))
        return try JSONDecoder().decode(Echo.self, from: Data(r.body))
    }

    func testRequestsOverTLSReachTheHandlerWithThePeerAddress() throws {
        let tls = try pki.server()
        let (server, port) = try startTLSServer(certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM, threading: .pool(2))
        defer { server.stop() }
        let e = try echo(client(port, caFile: try pki.caFile()).send("POST", "/v1/x?q=1", headers: ["Authorization": "Bearer t"], body: Array("b".utf8)))
        XCTAssertEqual(e.method, "POST")
        XCTAssertEqual(e.path, "/v1/x")
        XCTAssertEqual(e.query, ["q": "1"])
        XCTAssertEqual(e.headers["authorization"], "Bearer t")
        XCTAssertEqual(e.body, "b")
        XCTAssertEqual(e.peer, "127.0.0.1")
        XCTAssertNil(e.clientCertificate, "no client trust configured: no certificate is passed")
    }

    func testAClientTrustingAnotherCAFailsTheHandshake() throws {
        let tls = try pki.server()
        let (server, port) = try startTLSServer(certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM)
        defer { server.stop() }
        let other = try TestPKI(scratch: scratch, name: "another CA")
        XCTAssertThrowsError(try client(port, caFile: try other.caFile()).send("GET", "/")) { error in
            XCTAssertEqual((error as? VouchError)?.code, .http)
            XCTAssertEqual((error as? VouchError)?.cause as? HTTPClientError, .tls)
        }
    }

    func testAVerifiedClientCertificateReachesTheHandlerAndOthersDoNot() throws {
        let tls = try pki.server()
        let (server, port) = try startTLSServer(certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM, clientTrustPEM: try pki.caPEM)
        defer { server.stop() }
        let caFile = try pki.caFile()

        let good = try pki.client()
        XCTAssertEqual(try echo(client(port, caFile: caFile, identity: good.identity).send("GET", "/")).clientCertificate, Hex.encode(good.der))

        // Asked for, not required: a client without one is served, with no certificate.
        XCTAssertNil(try echo(client(port, caFile: caFile).send("GET", "/")).clientCertificate)

        // A certificate from another CA, or an expired one, is not passed on.
        let stranger = try TestPKI(scratch: scratch, name: "stranger CA").client()
        XCTAssertNil(try echo(client(port, caFile: caFile, identity: stranger.identity).send("GET", "/")).clientCertificate)
        let expired = try pki.client(notBefore: -7200, notAfter: -3600)
        XCTAssertNil(try echo(client(port, caFile: caFile, identity: expired.identity).send("GET", "/")).clientCertificate)
    }

    func testWithoutClientTrustAClientCertificateIsIgnored() throws {
        let tls = try pki.server()
        let (server, port) = try startTLSServer(certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM)
        defer { server.stop() }
        let good = try pki.client()
        XCTAssertNil(try echo(client(port, caFile: try pki.caFile(), identity: good.identity).send("GET", "/")).clientCertificate)
    }

    func testBodyLimitOverTLS() throws {
        let tls = try pki.server()
        let (server, port) = try startTLSServer(certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM, maxBodyBytes: 100)
        defer { server.stop() }
        let r = try client(port, caFile: try pki.caFile()).send("POST", "/", body: [UInt8](repeating: 0, count: 101))
        XCTAssertEqual(r.status, 413)
        XCTAssertEqual(errorBody(r)?.code, "body_too_large")
    }

    func testAPlainHTTPRequestToTheTLSPortGetsNoHTTPAnswer() throws {
        let tls = try pki.server()
        let (server, port) = try startTLSServer(certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM)
        defer { server.stop() }
        let raw = try RawSocket(tcpPort: port)
        raw.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertFalse(raw.readAll(timeout: 3).contains("HTTP/1.1 200"))
    }
}
