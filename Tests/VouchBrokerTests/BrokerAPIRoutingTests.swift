import Foundation
import XCTest
import VouchAPI
import VouchBroker
import VouchCore
import VouchCrypto

/// The broker's HTTP API in process (`BrokerAPI.handle`, no sockets): every route's answer to no
/// token, a read token and an admin token; unknown paths, wrong methods and malformed host ids;
/// the failed-authentication throttle and the event-stream limits; and the shape of every error
/// body, `{code, message}` with the status its `ErrorCode` declares. Time is the harness's
/// `ManualClock`. (The wire — TLS, limits, the server's own refusals — is VouchHTTPServerTests.)
final class BrokerAPIRoutingTests: XCTestCase {
    /// Host ids are 32 lowercase hex digits.
    let h1 = String(repeating: "1", count: 32), h2 = String(repeating: "2", count: 32), unknown = String(repeating: "9", count: 32)
    let adminToken = "vouch_admin_" + String(repeating: "ad", count: 32)

    /// Signs EARs with a fixed string: the routing, not the JWT, is under test here.
    struct StubSigner: ResultSigner {
        func sign(payload: [UInt8], typ: String) throws -> String { "header.payload.signature" }
        static let key = try! JWK(publicKey: PrivateKey.generate().publicKey, use: "sig", alg: "ES256")
        var jwk: JWK { Self.key }
    }

    /// A broker with two activated hosts (h1 with certificate 4a (serials are byte-aligned hex with a first byte 0x40-0x7f)), a read token, the admin token
    /// and an EAR signer.
    final class Fixture {
        let broker: Broker
        let api: BrokerAPI
        let readToken: String
        var peerCount = 0
        init(admin: String, hosts: [String], signer: Bool = true) throws {
            broker = try Broker()
            for h in hosts { try broker.addHost(h) }
            try broker.addCertificate(host: hosts[0], serial: "4a")
            readToken = try XCTUnwrap(broker.service.tokens.createToken(TokenCreateRequest(name: "reader", scope: "read")).token)
            api = BrokerAPI(service: broker.service, adminTokenDigests: [Crypto.sha256(Array(admin.utf8))], resultSigner: signer ? StubSigner() : nil)
        }

        /// Each call comes from its own address unless one is given, so failed authentications
        /// never add up to the throttle by accident.
        func call(_ method: String, _ target: String, token: String? = nil, authorization: String? = nil, body: String? = nil,
                  headers: [String: String] = [:], peer: String? = nil) -> HTTPResponse {
            peerCount += 1
            let parts = target.split(separator: "?", maxSplits: 1).map(String.init)
            var query: [String: String] = [:]
            for pair in (parts.count > 1 ? parts[1] : "").split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                query[kv[0]] = kv.count > 1 ? kv[1] : ""
            }
            var h = headers
            if let token { h["authorization"] = "Bearer " + token }
            if let authorization { h["authorization"] = authorization }
            return api.handle(HTTPRequest(method: method, path: parts[0], query: query, headers: h, body: Array((body ?? "").utf8),
                                          peer: peer ?? "10.0.\(peerCount / 256).\(peerCount % 256)"))
        }
    }

    func fixture(signer: Bool = true) throws -> Fixture { try Fixture(admin: adminToken, hosts: [h1, h2], signer: signer) }

    /// An error answer: JSON `{code, message}` (context and violations optional, nothing else),
    /// code `code`, and the status that code declares.
    func assertError(_ r: HTTPResponse, _ code: ErrorCode, _ what: String = "", file: StaticString = #filePath, line: UInt = #line) {
        let text = String(decoding: r.body, as: UTF8.self)
        XCTAssertEqual(r.status, code.status, "\(what): status of \(code) (\(text))", file: file, line: line)
        XCTAssertEqual(BrokerAPI.status(for: code), code.status, file: file, line: line)
        XCTAssertEqual(r.header("Content-Type"), "application/json", what, file: file, line: line)
        guard let obj = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any] else {
            return XCTFail("\(what): not a JSON object: \(text)", file: file, line: line)
        }
        XCTAssertEqual(obj["code"] as? String, code.rawValue, "\(what): \(text)", file: file, line: line)
        XCTAssertFalse((obj["message"] as? String ?? "").isEmpty, "\(what): a message", file: file, line: line)
        XCTAssertTrue(Set(obj.keys).isSubset(of: ["code", "message", "context", "violations"]), "\(what): keys \(obj.keys.sorted())", file: file, line: line)
        if let context = obj["context"] { XCTAssertNotNil(context as? [String: String], "\(what): context is strings", file: file, line: line) }
        // Decodes as the wire type clients use.
        XCTAssertEqual((try? JSONCodec.decode(APIError.self, from: r.body))?.code, code.rawValue, what, file: file, line: line)
    }

    // MARK: Routes and tokens

    enum Access: String { case open, read, admin }
    struct Route: CustomStringConvertible {
        let method: String, path: String, access: Access
        var body: String? = nil
        /// The status with a token of enough scope (or none, for open routes).
        let status: Int
        /// The error code when `status` is an error.
        var code: ErrorCode? = nil
        var description: String { "\(method) \(path)" }
    }

    /// Every route of BrokerAPI, with what it answers here when access is granted. Expected
    /// errors are those of the request, not of access (a read route without evidence: 404).
    var routes: [Route] {
        [
            Route(method: "GET", path: "/healthz", access: .open, status: 200),
            Route(method: "GET", path: "/readyz", access: .open, status: 200),
            Route(method: "GET", path: "/v1/health", access: .open, status: 200),
            Route(method: "GET", path: "/v1/ca", access: .open, status: 200),
            Route(method: "GET", path: "/v1/crl", access: .open, status: 200),
            Route(method: "GET", path: "/v1/crl.pem", access: .open, status: 200),
            Route(method: "GET", path: "/v1/crl?format=pem", access: .open, status: 200),
            Route(method: "GET", path: "/v1/bundle", access: .open, status: 200),
            Route(method: "GET", path: "/v1/bundle?format=spiffe", access: .open, status: 200),
            Route(method: "GET", path: "/v1/events", access: .open, status: 200),
            Route(method: "GET", path: "/v1/ocsp/MAA=", access: .open, status: 200),   // not an OCSP request: an OCSP error response
            Route(method: "POST", path: "/v1/ocsp", access: .open, body: "junk", status: 200),
            Route(method: "POST", path: "/v1/hosts", access: .open, body: "{}", status: 400, code: .badRequest),
            Route(method: "POST", path: "/v1/hosts/\(h1)/activate", access: .open, body: "{}", status: 400, code: .badRequest),
            Route(method: "POST", path: "/v1/hosts/\(h1)/attestations", access: .open, body: "{}", status: 401, code: .clientCertificateRequired),
            Route(method: "POST", path: "/v1/hosts/\(h1)/jwt-svids", access: .open, body: "{}", status: 401, code: .clientCertificateRequired),
            Route(method: "GET", path: "/v1/jwt-svid/jwks", access: .open, status: 200),
            Route(method: "POST", path: "/v1/challenges", access: .open, body: "{}", status: 400, code: .badRequest),
            Route(method: "POST", path: "/v1/enroll", access: .open, body: "{}", status: 400, code: .badRequest),

            Route(method: "GET", path: "/metrics", access: .read, status: 200),
            Route(method: "GET", path: "/v1/hosts", access: .read, status: 200),
            Route(method: "GET", path: "/v1/hosts/\(h1)", access: .read, status: 200),
            Route(method: "GET", path: "/v1/hosts/\(h1)/ear", access: .read, status: 200),
            Route(method: "GET", path: "/v1/hosts/\(h1)/attestations", access: .read, status: 200),
            Route(method: "GET", path: "/v1/hosts/\(h1)/evidence", access: .read, status: 404, code: .notFound),
            Route(method: "GET", path: "/v1/status", access: .read, status: 200),
            Route(method: "GET", path: "/v1/summary", access: .read, status: 200),
            Route(method: "GET", path: "/v1/attestations", access: .read, status: 200),
            Route(method: "GET", path: "/v1/certificates", access: .read, status: 200),
            Route(method: "GET", path: "/v1/certificates/4a", access: .read, status: 200),
            Route(method: "GET", path: "/v1/policies", access: .read, status: 200),
            Route(method: "GET", path: "/v1/policies/test", access: .read, status: 200),

            Route(method: "DELETE", path: "/v1/hosts/\(h2)", access: .admin, status: 200),
            Route(method: "POST", path: "/v1/hosts/\(h1)/unblock", access: .admin, status: 200),
            Route(method: "POST", path: "/v1/revoke", access: .admin, body: #"{"serial":"4a"}"#, status: 200),
            Route(method: "POST", path: "/v1/certificates/4a/revoke", access: .admin, status: 200),
            Route(method: "POST", path: "/v1/tokens", access: .admin, body: #"{"name":"ci","scope":"read"}"#, status: 201),
            Route(method: "GET", path: "/v1/tokens", access: .admin, status: 200),
            Route(method: "DELETE", path: "/v1/tokens/0123456789abcdef", access: .admin, status: 404, code: .notFound),
            Route(method: "POST", path: "/v1/ca/rotate", access: .admin, status: 409, code: .conflict),   // no next CA staged
            Route(method: "POST", path: "/v1/policies/reload", access: .admin, status: 200),
        ]
    }

    func assertAnswer(_ r: HTTPResponse, _ route: Route, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        r.stream?.onClose()   // an event stream is not read here; ending it frees its slot
        if let code = route.code {
            assertError(r, code, "\(route) \(what)", file: file, line: line)
        } else {
            XCTAssertEqual(r.status, route.status, "\(route) \(what): \(String(decoding: r.body.prefix(300), as: UTF8.self))", file: file, line: line)
        }
    }

    func testOpenRoutesNeedNoTokenAndIgnoreABadOne() throws {
        for route in routes where route.access == .open {
            let f = try fixture()
            assertAnswer(f.call(route.method, route.path, body: route.body), route, "without a token")
            assertAnswer(f.call(route.method, route.path, token: "not-a-token", body: route.body), route, "with a bad token")
        }
    }

    func testProtectedRoutesAnswer401WithoutAValidToken() throws {
        let f = try fixture()
        for route in routes where route.access != .open {
            let none = f.call(route.method, route.path, body: route.body)
            assertError(none, .unauthorized, "\(route) without a token")
            XCTAssertEqual(none.header("WWW-Authenticate"), "Bearer", "\(route)")
            assertError(f.call(route.method, route.path, token: "vouch_admin_" + String(repeating: "0", count: 64), body: route.body), .unauthorized, "\(route) bad token")
            assertError(f.call(route.method, route.path, authorization: "Basic " + Base64.encode(Array("admin:\(adminToken)".utf8)), body: route.body),
                        .unauthorized, "\(route) not a bearer token")
            assertError(f.call(route.method, route.path, authorization: "bearer " + adminToken, body: route.body), .unauthorized,
                        "\(route) the scheme is case-sensitive here")
            assertError(f.call(route.method, route.path, authorization: "Bearer", body: route.body), .unauthorized, "\(route) empty")
        }
    }

    func testReadRoutesServeReadAndAdminTokens() throws {
        for route in routes where route.access == .read {
            let f = try fixture()
            assertAnswer(f.call(route.method, route.path, token: f.readToken, body: route.body), route, "read token")
            assertAnswer(f.call(route.method, route.path, token: adminToken, body: route.body), route, "admin token")
        }
    }

    func testAdminRoutesRefuseReadTokensWith403AndServeAdminTokens() throws {
        for route in routes where route.access == .admin {
            let f = try fixture()
            let refused = f.call(route.method, route.path, token: f.readToken, body: route.body)
            assertError(refused, .forbidden, "\(route) read token")
            XCTAssertNil(refused.header("WWW-Authenticate"))
            assertAnswer(f.call(route.method, route.path, token: adminToken, body: route.body), route, "admin token")
        }
    }

    func testTokensMadeThroughTheAPIAreHonouredUntilRevoked() throws {
        let f = try fixture()
        let created = f.call("POST", "/v1/tokens", token: adminToken, body: #"{"name":"ops","scope":"admin"}"#)
        XCTAssertEqual(created.status, 201)
        let info = try JSONCodec.decode(TokenInfo.self, from: created.body)
        let secret = try XCTUnwrap(info.token)
        XCTAssertEqual(f.call("GET", "/v1/tokens", token: secret).status, 200, "a made admin token has admin scope")
        XCTAssertEqual(f.call("DELETE", "/v1/tokens/\(info.id)", token: adminToken).status, 200)
        assertError(f.call("GET", "/v1/status", token: secret), .unauthorized, "a revoked token")
        assertError(f.call("DELETE", "/v1/tokens/\(info.id)", token: adminToken), .notFound, "revoked twice")
        assertError(f.call("DELETE", "/v1/tokens/NOTHEX", token: adminToken), .badRequest, "malformed token id")
        assertError(f.call("POST", "/v1/tokens", token: adminToken, body: #"{"name":"x","scope":"root"}"#), .badRequest, "unknown scope")
    }

    // MARK: Unknown paths, wrong methods, malformed ids

    func testUnknownPathsAre404WithoutAToken() throws {
        let f = try fixture()
        for path in ["/", "/v2/health", "/v1", "/v1/", "/v1/nope", "/healthz/x", "/metricsx", "/v1/health/x", "/v1/hosts/\(h1)/nope",
                     "/v1/hosts/\(h1)/ear/x", "/v1/certificates/4a/revoke/x", "/v1/tokens/a/b", "/v1/crl/a/b", "/v1/policies/a/b", "/api/v1/status"] {
            assertError(f.call("GET", path), .notFound, "GET \(path)")
        }
        assertError(f.call("GET", "/v1/crl/zz"), .notFound, "an issuer that is not hex")
        assertError(f.call("GET", "/v1/crl/" + String(repeating: "ab", count: 20)), .notFound, "an issuer key id no CA has")
        assertError(f.call("GET", "/v1/policies/nonexistent", token: f.readToken), .notFound, "no such policy")
        assertError(f.call("GET", "/v1/certificates/ff", token: f.readToken), .notFound, "no such certificate")
        assertError(f.call("GET", "/v1/certificates/xyz", token: f.readToken), .badRequest, "a serial that is not hex")
    }

    /// Every path answers a method it does not serve with 405 and `Allow` listing the methods it
    /// does (RFC 9110), before any token is looked at — paths with ids in them too.
    func testWrongMethodsAre405WithAllow() throws {
        let f = try fixture()
        let cases: [(String, String, [String])] = [
            ("/healthz", "GET", ["POST", "PUT", "DELETE"]), ("/readyz", "GET", ["POST"]), ("/metrics", "GET", ["POST", "DELETE"]),
            ("/v1/health", "GET", ["POST"]), ("/v1/ca", "GET", ["POST", "DELETE"]), ("/v1/crl", "GET, HEAD", ["POST", "PUT"]), ("/v1/crl.pem", "GET, HEAD", ["DELETE"]),
            ("/v1/crl/ab", "GET, HEAD", ["DELETE", "POST"]), ("/v1/ocsp", "POST", ["GET", "PUT"]), ("/v1/ocsp/MAA=", "GET, HEAD", ["POST"]),
            ("/v1/bundle", "GET", ["POST"]), ("/v1/events", "GET", ["POST"]),
            ("/v1/hosts", "GET, POST", ["PUT", "DELETE", "PATCH"]), ("/v1/hosts/\(h1)", "GET, DELETE", ["PUT", "POST", "PATCH"]),
            ("/v1/hosts/\(h1)/activate", "POST", ["GET"]), ("/v1/hosts/\(h1)/attestations", "GET, POST", ["DELETE"]),
            ("/v1/hosts/\(h1)/ear", "GET", ["POST"]), ("/v1/hosts/\(h1)/evidence", "GET", ["DELETE"]), ("/v1/hosts/\(h1)/unblock", "POST", ["GET"]),
            ("/v1/challenges", "POST", ["GET"]), ("/v1/enroll", "POST", ["GET", "PUT"]), ("/v1/revoke", "POST", ["GET"]),
            ("/v1/status", "GET", ["POST"]), ("/v1/summary", "GET", ["DELETE"]), ("/v1/attestations", "GET", ["POST"]),
            ("/v1/certificates", "GET", ["POST"]), ("/v1/certificates/4a", "GET", ["DELETE", "PUT"]), ("/v1/certificates/4a/revoke", "POST", ["GET"]),
            ("/v1/tokens", "GET, POST", ["PUT", "DELETE"]), ("/v1/tokens/0123456789abcdef", "DELETE", ["GET"]),
            ("/v1/policies", "GET", ["POST"]), ("/v1/policies/test", "GET", ["DELETE"]),
            // The concrete path wins over /v1/policies/{name}, as OpenAPI matches paths.
            ("/v1/policies/reload", "POST", ["GET", "PUT", "DELETE"]),
            ("/v1/ca/rotate", "POST", ["GET", "TRACE", "DELETE"]),
        ]
        for (path, allow, methods) in cases {
            for method in methods {
                for token in [nil, adminToken] {
                    let r = f.call(method, path, token: token)
                    assertError(r, .methodNotAllowed, "\(method) \(path)")
                    XCTAssertEqual(r.header("Allow"), allow, "\(method) \(path)")
                }
            }
        }
        XCTAssertNotNil(try f.broker.store.host(id: h1), "nothing was deleted")
        XCTAssertNil(try f.broker.store.certificate(serial: "4a")?.revokedAt, "nothing was revoked")
    }

    /// The table behind `Allow` agrees with the routes: each method it lists for a path is served
    /// there (never 405), and each route's method is listed.
    func testAllowTableMatchesTheRoutes() throws {
        for route in routes {
            let f = try fixture()
            let path = route.path.split(separator: "?")[0]
            let r = f.call(route.method, route.path, token: adminToken, body: route.body)
            r.stream?.onClose()
            XCTAssertNotEqual(r.status, 405, "\(route)")
            let parts = path.split(separator: "/").map(String.init)
            if parts.first == "v1", parts.count > 1, parts[1] != "ocsp" || parts.count == 2 {
                XCTAssertEqual(BrokerAPI.methods(of: Array(parts.dropFirst()))?.contains(route.method), true, "\(route) is in the table")
            }
        }
        let f = try fixture()
        for (template, methods) in BrokerAPI.pathMethods {
            let path = "/v1/" + template.map { $0 == "*" ? (template[0] == "hosts" ? h1 : template[0] == "crl" ? "ab" : "4a") : $0 }.joined(separator: "/")
            for method in methods {
                let r = f.call(method, path, token: adminToken, body: "{}")
                r.stream?.onClose()
                XCTAssertNotEqual(r.status, 405, "\(method) \(path)")
            }
        }
    }

    func testMalformedHostIdsAre400AndUnknownOnes404() throws {
        let f = try fixture()
        let malformed = ["XYZ", String(repeating: "AB", count: 16), String(h1.dropLast()), h1 + "1", "g" + String(h1.dropFirst()), "..", "%2e%2e"]
        for id in malformed {
            for (method, path, token) in [("GET", "/v1/hosts/\(id)", f.readToken), ("GET", "/v1/hosts/\(id)/evidence", f.readToken),
                                          ("GET", "/v1/hosts/\(id)/ear", f.readToken), ("GET", "/v1/hosts/\(id)/attestations", f.readToken),
                                          ("DELETE", "/v1/hosts/\(id)", adminToken), ("POST", "/v1/hosts/\(id)/unblock", adminToken)] {
                let r = f.call(method, path, token: token)
                assertError(r, .badRequest, "\(method) \(path)")
                XCTAssertEqual((try? JSONCodec.decode(APIError.self, from: r.body))?.context?["field"], "hostId", "\(method) \(path)")
            }
        }
        for (method, path, token) in [("GET", "/v1/hosts/\(unknown)", f.readToken), ("GET", "/v1/hosts/\(unknown)/evidence", f.readToken),
                                      ("GET", "/v1/hosts/\(unknown)/ear", f.readToken), ("GET", "/v1/hosts/\(unknown)/attestations", f.readToken),
                                      ("DELETE", "/v1/hosts/\(unknown)", adminToken), ("POST", "/v1/hosts/\(unknown)/unblock", adminToken)] {
            assertError(f.call(method, path, token: token), .unknownHost, "\(method) \(path)")
        }
        // Access is checked before the id: no token is still 401, a read token on an admin route 403.
        assertError(f.call("GET", "/v1/hosts/XYZ"), .unauthorized)
        assertError(f.call("DELETE", "/v1/hosts/XYZ", token: f.readToken), .forbidden)
    }

    func testWithoutAResultSignerTheEARIs404() throws {
        let f = try fixture(signer: false)
        assertError(f.call("GET", "/v1/hosts/\(h1)/ear", token: f.readToken), .notFound)
        assertError(f.call("GET", "/v1/hosts/\(h1)/ear"), .unauthorized, "still a protected route")
        assertError(f.call("GET", "/v1/ear/jwks"), .notFound, "no signer, no key set")
    }

    func testTheEARKeySetIsPublicAndNamesTheSignersKey() throws {
        let f = try fixture()
        let r = f.call("GET", "/v1/ear/jwks")
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.headers.first { $0.0 == "Content-Type" }?.1, "application/jwk-set+json")
        let set = try JSONCodec.decode(JWKSet.self, from: r.body)
        XCTAssertEqual(set, JWKSet(keys: [StubSigner.key]))
        XCTAssertEqual(set.keys.first?.kid, StubSigner.key.thumbprint)
        assertError(f.call("POST", "/v1/ear/jwks"), .methodNotAllowed)
    }

    func testBadRequestBodiesAre400() throws {
        let f = try fixture()
        for body in ["", "not json", "[]", #"{"name": 5, "scope": "read"}"#, #"{"name": null, "scope": "read"}"#] {
            assertError(f.call("POST", "/v1/tokens", token: adminToken, body: body), .badRequest, "POST /v1/tokens \(body)")
        }
        assertError(f.call("POST", "/v1/certificates/4a/revoke", token: adminToken, body: #"{"serial":"4b"}"#), .badRequest, "another serial than the path's")
        assertError(f.call("GET", "/v1/attestations?bogus=1", token: f.readToken), .badRequest, "unknown query parameter")
        assertError(f.call("GET", "/v1/hosts/\(h1)/ear?nonce=short", token: f.readToken), .badRequest, "nonce too short")
        assertError(f.call("GET", "/v1/events?after=-1"), .badRequest, "after must be an event id")
    }

    /// Bodies are held to what docs/openapi.yaml's schemas say before anything is looked up:
    /// base64 in its one canonical spelling, PCR indices in plain decimal, label values printable.
    func testBodiesAreCheckedAsTheSchemasSay() throws {
        let f = try fixture()
        for (b64, field) in [("AB==", "ekCertificate"), ("AAAA====", "ekCertificate"), ("AA", "ekCertificate")] {
            let r = f.call("POST", "/v1/hosts", body: #"{"ekCertificate":"\#(b64)","ekPublic":"","akPublic":""}"#)
            assertError(r, .invalidValue, b64)
            XCTAssertEqual((try? JSONCodec.decode(APIError.self, from: r.body))?.context?["field"], field, b64)
        }
        assertError(f.call("POST", "/v1/hosts", body: #"{"ekCertificate":"","ekPublic":"","akPublic":"","labels":{"env":"a\u0001b"}}"#), .labelsInvalid, "a control character")
        assertError(f.call("POST", "/v1/hosts", body: #"{"ekCertificate":"","ekPublic":"","akPublic":"","labels":{"env":"a b"}}"#), .labelsInvalid, "a space")
        let nonce = String(repeating: "ab", count: 32)
        for index in ["07", "+7", "24"] {
            let r = f.call("POST", "/v1/enroll", body: #"{"hostId":"\#(h1)","nonce":"\#(nonce)","agentName":"a","csr":"x","quote":{"attest":"","signature":"","pcrs":{"sha256":{"\#(index)":"00"}}}}"#)
            assertError(r, .badRequest, "PCR \(index)")
            XCTAssertEqual((try? JSONCodec.decode(APIError.self, from: r.body))?.context?["field"], "quote.pcrs.sha256.\(index)")
        }
    }

    /// Query parameters with a closed set of values refuse any other value (400, the parameter
    /// named in `field`) instead of ignoring it; numeric cursors must be numbers.
    /// An OCSP GET whose encoded request starts with a combining character (an emoji modifier,
    /// which a Swift String joins to the '/' before it) still reaches the responder: malformed, 200.
    func testAnOCSPGetWithACombiningCharacterIsStillOCSP() throws {
        let f = try fixture()
        for path in ["/v1/ocsp/🏻", "/v1/ocsp/\u{301}abc"] {
            let r = f.call("GET", path)
            XCTAssertEqual(r.status, 200, path)
            XCTAssertEqual(r.header("Content-Type"), "application/ocsp-response", path)
        }
    }

    func testUnknownQueryValuesAre400() throws {
        let f = try fixture()
        for (path, token, field) in [("/v1/crl?format=xyz", nil, "format"), ("/v1/crl.pem?format=der", nil, "format"), ("/v1/bundle?format=pem", nil, "format"),
                                     ("/v1/certificates/4a?format=der", f.readToken, "format"), ("/v1/events?after=abc", nil, "after"),
                                     ("/v1/events?after=%2B1", nil, "after"), ("/v1/events?after=", nil, "after"),
                                     ("/v1/attestations?result=maybe", f.readToken, "result"), ("/v1/certificates?state=lost", f.readToken, "state")] as [(String, String?, String)] {
            let r = f.call("GET", path, token: token)
            assertError(r, .badRequest, path)
            XCTAssertEqual((try? JSONCodec.decode(APIError.self, from: r.body))?.context?["field"], field, path)
        }
        let header = f.call("GET", "/v1/events", headers: ["last-event-id": "x"])
        assertError(header, .badRequest, "Last-Event-ID")
        XCTAssertEqual((try? JSONCodec.decode(APIError.self, from: header.body))?.context?["field"], "Last-Event-ID")
        for path in ["/v1/crl?format=pem", "/v1/bundle?format=spiffe", "/v1/events?after=0", "/v1/events?after=12"] {
            let r = f.call("GET", path)
            r.stream?.onClose()
            XCTAssertEqual(r.status, 200, path)
        }
    }

    // MARK: Throttle, streams, readiness

    func testFailedAuthenticationsFromOneAddressAreThrottledButValidTokensNeverAre() throws {
        let f = try fixture()
        let peer = "192.0.2.7"
        for i in 0..<10 { assertError(f.call("GET", "/v1/status", token: "wrong\(i)", peer: peer), .unauthorized, "failure \(i + 1)") }
        let throttled = f.call("GET", "/v1/status", peer: peer)
        assertError(throttled, .tooManyAttempts, "the 11th failure")
        XCTAssertEqual(throttled.header("Retry-After"), "60")
        XCTAssertEqual(f.call("GET", "/v1/status", token: f.readToken, peer: peer).status, 200, "a valid token is always honoured")
        assertError(f.call("GET", "/v1/status", token: "wrong", peer: "192.0.2.8"), .unauthorized, "another address is not throttled")
        XCTAssertEqual(f.call("GET", "/v1/health", peer: peer).status, 200, "open routes are not throttled")

        f.broker.clock.advance(by: 45)
        let later = f.call("GET", "/v1/status", peer: peer)
        assertError(later, .tooManyAttempts)
        XCTAssertEqual(later.header("Retry-After"), "15", "the rest of the window")
        f.broker.clock.advance(by: 15)
        assertError(f.call("GET", "/v1/status", peer: peer), .unauthorized, "a new window")
    }

    func testEventStreamsAreLimitedPerAddress() throws {
        let f = try fixture()
        let perAddress = BrokerConfig(trustDomain: "test.local").maxEventStreamsPerAddress
        var open: [HTTPStream] = []
        for _ in 0..<perAddress {
            let r = f.call("GET", "/v1/events", peer: "198.51.100.1")
            XCTAssertEqual(r.status, 200)
            XCTAssertEqual(r.header("Content-Type"), "text/event-stream")
            open.append(try XCTUnwrap(r.stream))
        }
        let refused = f.call("GET", "/v1/events", peer: "198.51.100.1")
        assertError(refused, .tooManyStreams)
        XCTAssertNotNil(refused.header("Retry-After"))
        XCTAssertNil(refused.stream)
        let other = f.call("GET", "/v1/events", peer: "198.51.100.2")
        XCTAssertEqual(other.status, 200, "another address has its own share")
        other.stream?.onClose()
        open.removeLast().onClose()   // a stream that ends frees its slot
        let again = f.call("GET", "/v1/events", peer: "198.51.100.1")
        XCTAssertEqual(again.status, 200)
        again.stream?.onClose()
        open.forEach { $0.onClose() }
    }

    func testReadyzAnswers503WhileShuttingDownAndHealthzStill200() throws {
        let f = try fixture()
        f.broker.service.shutdown()
        assertError(f.call("GET", "/readyz"), .notReady)
        XCTAssertEqual(f.call("GET", "/healthz").status, 200)
    }

    func testCRLAnswersNotModifiedToItsETag() throws {
        let f = try fixture()
        let first = f.call("GET", "/v1/crl")
        XCTAssertEqual(first.header("Content-Type"), "application/pkix-crl")
        let etag = try XCTUnwrap(first.header("ETag"))
        let again = f.call("GET", "/v1/crl", headers: ["if-none-match": etag])
        XCTAssertEqual(again.status, 304)
        XCTAssertTrue(again.body.isEmpty)
        XCTAssertEqual(f.call("GET", "/v1/crl.pem", headers: ["if-none-match": etag]).status, 200, "the PEM form has its own tag")
        let issuer = f.broker.service.authorities.current.keyID
        XCTAssertEqual(f.call("GET", "/v1/crl/\(issuer).pem").header("Content-Type"), "application/x-pem-file")
    }

    func testSuccessfulAnswersAreJSONWhereTheyAreNotDocumentsOrStreams() throws {
        for route in routes where route.code == nil {
            let f = try fixture()
            let r = f.call(route.method, route.path, token: route.access == .open ? nil : adminToken, body: route.body)
            let type = r.header("Content-Type") ?? ""
            if type == "application/json" {
                XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(r.body), options: [.fragmentsAllowed]), "\(route)")
            } else {
                r.stream?.onClose()
                XCTAssertTrue(["application/x-pem-file", "application/pkix-crl", "application/eat+jwt", "text/plain; version=0.0.4",
                               "application/ocsp-response", "text/event-stream", "application/jwk-set+json"].contains(type),
                              "\(route): \(type)")
            }
        }
    }
}
