import Foundation
import XCTest
import VouchCore
import VouchHTTPClient
import VouchHTTPServer
import VouchTestSupport

/// The client's `.service` transport (how vouchd reaches Intel PCS and AMD KDS): https under the
/// system's trust store only, plain http only to a loopback address, and a response-size cap.
final class ServiceTransportTests: PKITestCase {
    func testOnlyHTTPSOrLoopbackHTTPBaseURLsAreAccepted() {
        for ok in ["https://api.trustedservices.intel.com", "https://kdsintf.amd.com", "https://pccs.example.net:8081/pcs",
                   "http://127.0.0.1:8080", "http://127.0.0.9", "http://localhost:1", "http://[::1]:9"] {
            XCTAssertNil(HTTPClient.serviceBaseURLProblem(ok), ok)
        }
        for refused in ["http://kdsintf.amd.com", "http://10.0.0.1", "http://127.0.0.1.example.com", "ftp://127.0.0.1", "https://a.b/",
                        "https://user@a.b", "https://a.b?x=1", "https://a.b#f", "kdsintf.amd.com", ""] {
            XCTAssertNotNil(HTTPClient.serviceBaseURLProblem(refused), refused)
        }
    }

    func testAPlainHTTPBaseURLElsewhereThanLoopbackIsRefusedBeforeConnecting() {
        XCTAssertThrowsError(try HTTPClient(.service(baseURL: "http://192.0.2.1")).send("GET", "/x")) { e in
            XCTAssertEqual((e as? VouchError)?.code, .http)
            XCTAssertNil((e as? VouchError)?.cause, "no transfer was attempted")
        }
    }

    /// A server whose certificate chains to a CA the system does not trust fails the handshake:
    /// nothing but the system's trust store is used.
    func testHTTPSIsVerifiedAgainstTheSystemTrustStore() throws {
        let tls = try pki.server()
        let (server, port) = try startTLSServer(certificatePEM: tls.certificatePEM, keyPEM: tls.keyPEM)
        defer { server.stop() }
        XCTAssertThrowsError(try HTTPClient(.service(baseURL: "https://127.0.0.1:\(port)"), timeoutSeconds: 5).send("GET", "/x")) { e in
            XCTAssertEqual((e as? VouchError)?.cause as? HTTPClientError, .tls, "\(e)")
        }
    }

    func testAResponseLargerThanTheCapFailsTheTransfer() throws {
        let port = try freePort()
        let server = try HTTPServer(listen: .http(host: "127.0.0.1", port: port), threads: 1) { _ in
            HTTPResponse(status: 200, body: [UInt8](repeating: 0x61, count: 4096))
        }
        defer { server.stop() }
        XCTAssertEqual(try HTTPClient(.service(baseURL: "http://127.0.0.1:\(port)"), maxResponseBytes: 4096).send("GET", "/").body.count, 4096)
        XCTAssertThrowsError(try HTTPClient(.service(baseURL: "http://127.0.0.1:\(port)"), maxResponseBytes: 4095).send("GET", "/")) { e in
            XCTAssertEqual((e as? VouchError)?.cause as? HTTPClientError, .responseTooLarge, "\(e)")
        }
    }
}
