import Foundation
import XCTest
import VouchAPI
import VouchBroker
import VouchCore
import VouchCrypto

/// The publication listener's handler (`PublicationAPI.handle`, no sockets): the CRL and OCSP
/// answers are BrokerAPI's, byte for byte; HEAD reads like GET; every other path is 404 and every
/// other method 405 with `Allow`, whatever token comes along. (NSS and OpenSSL fetching from a
/// live listener: VouchIntegrationTests' PublicationTests.)
final class PublicationAPITests: XCTestCase {
    let adminToken = "vouch_admin_" + String(repeating: "ad", count: 32)

    func request(_ method: String, _ path: String, query: [String: String] = [:], headers: [String: String] = [:], body: [UInt8] = []) -> HTTPRequest {
        HTTPRequest(method: method, path: path, query: query, headers: headers, body: body, peer: "10.0.0.1")
    }

    func testCRLAndOCSPAnswersAreTheHTTPSListeners() throws {
        let broker = try Broker()
        try broker.addHost(String(repeating: "1", count: 32))
        try broker.addCertificate(host: String(repeating: "1", count: 32), serial: "4a")
        let publication = PublicationAPI(service: broker.service)
        let api = BrokerAPI(service: broker.service, adminTokenDigests: [])
        let issuer = broker.service.authorities.current.keyID
        for (path, query) in [("/v1/crl", [:]), ("/v1/crl.pem", [:]), ("/v1/crl/\(issuer)", [:]), ("/v1/crl/\(issuer).pem", [:]),
                              ("/v1/crl", ["format": "pem"]), ("/v1/ocsp/MAA=", [:])] as [(String, [String: String])] {
            let published = publication.handle(request("GET", path, query: query)), served = api.handle(request("GET", path, query: query))
            XCTAssertEqual(published.status, 200, path)
            XCTAssertEqual(published.body, served.body, path)
            XCTAssertEqual(published.headers.map { "\($0.0): \($0.1)" }, served.headers.map { "\($0.0): \($0.1)" }, path)
            // HEAD on either listener: GET's status and headers.
            for head in [publication.handle(request("HEAD", path, query: query)), api.handle(request("HEAD", path, query: query))] {
                XCTAssertEqual(head.status, 200, "HEAD \(path)")
                XCTAssertEqual(head.header("Content-Type"), published.header("Content-Type"), "HEAD \(path)")
            }
        }
        let etag = try XCTUnwrap(publication.handle(request("GET", "/v1/crl/\(issuer)")).header("ETag"))
        XCTAssertEqual(publication.handle(request("GET", "/v1/crl/\(issuer)", headers: ["if-none-match": etag])).status, 304)
        let post = publication.handle(request("POST", "/v1/ocsp", headers: ["content-type": "application/ocsp-request"], body: Array("junk".utf8)))
        XCTAssertEqual(post.status, 200)
        XCTAssertEqual(post.header("Content-Type"), "application/ocsp-response")
        XCTAssertEqual(post.body, api.handle(request("POST", "/v1/ocsp", body: Array("junk".utf8))).body, "a malformedRequest OCSP answer")
    }

    func testEverythingElseIsNotFoundOrMethodNotAllowed() throws {
        let broker = try Broker()
        let publication = PublicationAPI(service: broker.service)
        let issuer = broker.service.authorities.current.keyID
        func assertError(_ r: HTTPResponse, _ code: ErrorCode, _ what: String) {
            XCTAssertEqual(r.status, code.status, what)
            XCTAssertEqual(r.header("Content-Type"), "application/json", what)
            XCTAssertEqual((try? JSONCodec.decode(APIError.self, from: r.body))?.code, code.rawValue, what)
        }
        for (method, path) in [("GET", "/"), ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/v1/health"), ("GET", "/v1/ca"),
                               ("GET", "/v1/bundle"), ("GET", "/v1/events"), ("GET", "/v1/status"), ("GET", "/v1/hosts"), ("GET", "/v1/tokens"),
                               ("POST", "/v1/hosts"), ("POST", "/v1/enroll"), ("POST", "/v1/challenges"), ("POST", "/v1/revoke"), ("POST", "/v1/ca/rotate"),
                               ("GET", "/v1/crl/zz"), ("GET", "/v1/crl/a/b"), ("GET", "/v1/crl/" + String(repeating: "ab", count: 20)), ("GET", "/v2/crl")] {
            assertError(publication.handle(request(method, path, headers: ["authorization": "Bearer " + adminToken])), .notFound, "\(method) \(path)")
        }
        for (method, path, allow) in [("POST", "/v1/crl", "GET, HEAD"), ("DELETE", "/v1/crl/\(issuer)", "GET, HEAD"), ("PUT", "/v1/crl.pem", "GET, HEAD"),
                                      ("GET", "/v1/ocsp", "POST"), ("HEAD", "/v1/ocsp", "POST"), ("PUT", "/v1/ocsp", "POST"),
                                      ("POST", "/v1/ocsp/MAA=", "GET, HEAD"), ("OPTIONS", "/v1/ocsp/MAA=", "GET, HEAD")] {
            let r = publication.handle(request(method, path))
            assertError(r, .methodNotAllowed, "\(method) \(path)")
            XCTAssertEqual(r.header("Allow"), allow, "\(method) \(path)")
        }
    }
}
