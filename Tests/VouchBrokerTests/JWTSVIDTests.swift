import Foundation
import XCTest
import VouchAPI
import VouchAttestation
import VouchBroker
import VouchCore
import VouchCrypto
import VouchModel
import VouchPolicy
import VouchTestSupport

/// JWT-SVIDs from the broker, in process (`BrokerAPI.handle` over the harness's broker, its
/// `ManualClock` and scripted pulls): `POST /v1/hosts/{id}/jwt-svids` with the host certificate as
/// TLS client certificate, `GET /v1/jwt-svid/jwks` and the SPIFFE bundle's JWT key; the token
/// verified with `JWTSVIDVerifier`, and by PyJWT. Each refusal is matched by its code.
final class JWTSVIDTests: XCTestCase {
    let h1 = String(repeating: "1", count: 32), h2 = String(repeating: "2", count: 32)

    /// A broker with two activated pull-mode hosts, an agent enrolled on each, and each host's
    /// current host certificate (serial 01, as the harness seeds them).
    final class Fixture {
        let broker: Broker
        let api: BrokerAPI
        var agents: [String: EnrollResponse] = [:]
        var hostCertificates: [String: [UInt8]] = [:]

        init(hosts: [String], policy: Policy = Broker.policy(), clockAt start: Date? = nil) throws {
            broker = try Broker(policy: policy)
            if let start { broker.clock.set(start) }
            api = BrokerAPI(service: broker.service, adminTokenDigests: [])
            let now = broker.clock.now()
            for h in hosts {
                try broker.addHost(h)
                agents[h] = try broker.enroll(h, agent: "agent").response
                let cert = try broker.service.authorities.current.signer.issue(publicKey: try PrivateKey.generate().publicKey, profile: LeafProfile(
                    uriSANs: [broker.service.config.hostSpiffeID(h)], notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(86400),
                    usage: .host), serial: [0x01])
                hostCertificates[h] = try cert.der
            }
        }

        /// Whose host certificate a request presents.
        enum Presenter { case own, nobody, host(String) }

        /// `POST /v1/hosts/{host}/jwt-svids`, with the TLS client certificate `presenting` names.
        func issue(_ host: String, serial: String, audience: [String], presenting: Presenter = .own) -> HTTPResponse {
            let body = JSONCodec.encode(JWTSVIDIssueRequest(serial: serial, audience: audience))
            let certificate: [UInt8]?
            switch presenting {
            case .own: certificate = hostCertificates[host]
            case .nobody: certificate = nil
            case let .host(other): certificate = hostCertificates[other]
            }
            return api.handle(HTTPRequest(method: "POST", path: "/v1/hosts/\(host)/jwt-svids", headers: ["content-type": "application/json"],
                                          body: body, peer: "10.0.0.1", clientCertificate: certificate))
        }

        func get(_ target: String) -> HTTPResponse {
            let parts = target.split(separator: "?").map(String.init)
            var query: [String: String] = [:]
            for pair in parts.dropFirst().first?.split(separator: "&") ?? [] {
                let kv = pair.split(separator: "=").map(String.init)
                query[kv[0]] = kv.count > 1 ? kv[1] : ""
            }
            return api.handle(HTTPRequest(method: "GET", path: parts[0], query: query, peer: "10.0.0.2"))
        }

        var keys: [String: PublicKey] { get throws { try JWTSVIDVerifier.keys(jwks: get("/v1/jwt-svid/jwks").body) } }
    }

    func code(_ r: HTTPResponse) -> String? { (try? JSONCodec.decode(APIError.self, from: r.body))?.code }

    func assertRefused(_ r: HTTPResponse, _ code: ErrorCode, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(self.code(r), code.rawValue, "\(what): \(String(decoding: r.body.prefix(300), as: UTF8.self))", file: file, line: line)
        XCTAssertEqual(r.status, code.status, what, file: file, line: line)
    }

    func issued(_ r: HTTPResponse, file: StaticString = #filePath, line: UInt = #line) throws -> JWTSVIDIssueResponse {
        XCTAssertEqual(r.status, 200, String(decoding: r.body.prefix(300), as: UTF8.self), file: file, line: line)
        return try JSONCodec.decode(JWTSVIDIssueResponse.self, from: r.body)
    }

    func part(_ token: String, _ i: Int) throws -> [String: Any] {
        let bytes = try JWSSigner.base64URLDecode(String(token.split(separator: ".")[i]), field: "part")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    // MARK: Issuance

    func testATrustedHostGetsATokenThatVerifiesAgainstTheKeySet() throws {
        // Certificates live 600 s here: the token's 300 s is the shorter.
        let f = try Fixture(hosts: [h1], policy: Broker.policy(interval: 600))
        let agent = try XCTUnwrap(f.agents[h1])
        let now = f.broker.clock.now()
        let r = try issued(f.issue(h1, serial: agent.serial, audience: ["spiffe://test.local/relying-party", "second"]))
        XCTAssertEqual(r.spiffeId, agent.spiffeId)
        XCTAssertEqual(r.expiresAt, now.addingTimeInterval(300).iso8601)

        let (spiffeID, claimsJSON) = try JWTSVIDVerifier.verify(token: r.token, audience: "second", keys: try f.keys, trustDomain: "test.local", now: now)
        XCTAssertEqual(spiffeID, agent.spiffeId)
        let claims = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(claimsJSON)) as? [String: Any])
        XCTAssertEqual(claims["sub"] as? String, agent.spiffeId)
        XCTAssertEqual(claims["aud"] as? [String], ["spiffe://test.local/relying-party", "second"])
        XCTAssertEqual(claims["iat"] as? Int, Int(now.timeIntervalSince1970))
        XCTAssertEqual(claims["exp"] as? Int, Int(now.timeIntervalSince1970) + 300)
        XCTAssertEqual((claims["jti"] as? String)?.count, 32)
        XCTAssertTrue(Hex.isLowercase(claims["jti"] as? String ?? "", length: 32...32))

        // What the relying party learns of the attestation: the certificate's EAR, by digest.
        let certificate = try Certificate(pem: agent.certificate)
        let ear = try AttestationExtension.ear(extensionValue: try XCTUnwrap(certificate.extensionValue(oid: AttestationExtension.oid)))
        let vouch = try XCTUnwrap(claims["vouch"] as? [String: Any])
        XCTAssertEqual(vouch["hostId"] as? String, h1)
        XCTAssertEqual(vouch["serial"] as? String, agent.serial)
        XCTAssertEqual(vouch["earDigest"] as? String, "sha256:" + Hex.encode(Crypto.sha256(Array(ear.utf8))))
        XCTAssertEqual(vouch["policy"] as? String, "test")
        XCTAssertEqual(vouch["attestedAt"] as? Int, Int(now.timeIntervalSince1970))

        // The header: ES256, the key's thumbprint, no certificate chain.
        let header = try part(r.token, 0)
        XCTAssertEqual(header["alg"] as? String, "ES256")
        XCTAssertEqual(header["typ"] as? String, "JWT")
        XCTAssertNil(header["x5c"])
        XCTAssertEqual(Set(try f.keys.keys), [try XCTUnwrap(header["kid"] as? String)])

        // A second token for the same certificate is another token (its own jti).
        let again = try issued(f.issue(h1, serial: agent.serial, audience: ["second"]))
        XCTAssertNotEqual(try part(again.token, 1)["jti"] as? String, claims["jti"] as? String)
    }

    func testTheKeySetsPublishTheJWTKeyAloneAndBesideTheX509Roots() throws {
        let f = try Fixture(hosts: [h1])
        let jwks = f.get("/v1/jwt-svid/jwks")
        XCTAssertEqual(jwks.status, 200)
        XCTAssertEqual(jwks.header("Content-Type"), "application/jwk-set+json")
        let set = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(jwks.body)) as? [String: Any])
        let keys = try XCTUnwrap(set["keys"] as? [[String: Any]])
        XCTAssertEqual(keys.count, 1, "only the JWT-SVID key")
        let key = keys[0]
        XCTAssertEqual(Set(key.keys), ["kid", "kty", "crv", "x", "y", "alg", "use"])
        XCTAssertEqual(key["use"] as? String, "jwt-svid")
        XCTAssertEqual(key["alg"] as? String, "ES256")
        XCTAssertEqual(key["crv"] as? String, "P-256")

        // The SPIFFE bundle: the roots (x509-svid) and the same JWT key, by the same kid.
        let bundle = f.get("/v1/bundle?format=spiffe")
        XCTAssertEqual(bundle.status, 200)
        let members = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(bundle.body)) as? [String: Any])?["keys"] as? [[String: Any]])
        XCTAssertEqual(members.filter { $0["use"] as? String == "x509-svid" }.count, 1)
        let jwt = members.filter { $0["use"] as? String == "jwt-svid" }
        XCTAssertEqual(jwt.count, 1)
        XCTAssertEqual(jwt.first?["kid"] as? String, key["kid"] as? String)
        XCTAssertEqual(jwt.first?["x"] as? String, key["x"] as? String)
        XCTAssertEqual(Set(try JWTSVIDVerifier.keys(jwks: bundle.body).keys), [try XCTUnwrap(key["kid"] as? String)], "the CA roots never verify a JWT-SVID")

        // The EAR key set is another key, which the JWT-SVID reader does not take.
        let earSigner = try JWSSigner(key: try PrivateKey.generate(), chain: [f.broker.service.authorities.current.signer.caCertificate])
        XCTAssertThrowsError(try JWTSVIDVerifier.keys(jwks: JSONCodec.encode(JWKSet(keys: [earSigner.jwk])))) {
            XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue)
        }
    }

    func testTheTokenNeverOutlivesItsCertificate() throws {
        let f = try Fixture(hosts: [h1])   // certificates live 60 s (the re-attestation interval)
        let agent = try XCTUnwrap(f.agents[h1])
        let notAfter = try Certificate(pem: agent.certificate).notAfter
        XCTAssertEqual(try issued(f.issue(h1, serial: agent.serial, audience: ["a"])).expiresAt, notAfter.iso8601)
        f.broker.clock.advance(by: 50)
        let late = try issued(f.issue(h1, serial: agent.serial, audience: ["a"]))
        XCTAssertEqual(late.expiresAt, notAfter.iso8601)
        XCTAssertEqual(try part(late.token, 1)["exp"] as? Int, Int(notAfter.timeIntervalSince1970))
    }

    // MARK: Refusals, in the order they are checked

    func testTheHostCertificateIsRequiredAndMustBeThisHosts() throws {
        let f = try Fixture(hosts: [h1, h2])
        let serial = try XCTUnwrap(f.agents[h1]?.serial)
        assertRefused(f.issue(h1, serial: serial, audience: ["a"], presenting: .nobody), .clientCertificateRequired, "no client certificate")
        assertRefused(f.issue(h1, serial: serial, audience: ["a"], presenting: .host(h2)), .clientCertificateMismatch, "another host's certificate")
        assertRefused(f.issue(h1, serial: serial, audience: [], presenting: .nobody), .clientCertificateRequired, "the certificate is checked first")
    }

    func testAudiencesAreOneToEightPrintableValues() throws {
        let f = try Fixture(hosts: [h1])
        let serial = try XCTUnwrap(f.agents[h1]?.serial)
        let bad: [(String, [String])] = [
            ("none", []), ("nine", (1...9).map { "a\($0)" }), ("empty", [""]), ("a space", ["relying party"]),
            ("a tab", ["a\tb"]), ("a newline", ["a\n"]), ("non-ASCII", ["café"]), ("257 characters", [String(repeating: "a", count: 257)]),
            ("one bad among good", ["good", "b\u{7f}"]),
        ]
        for (what, audience) in bad {
            assertRefused(f.issue(h1, serial: serial, audience: audience), .jwtSVIDAudienceInvalid, what)
        }
        XCTAssertEqual(f.issue(h1, serial: serial, audience: (1...8).map { "a\($0)" }).status, 200, "eight")
        XCTAssertEqual(f.issue(h1, serial: serial, audience: [String(repeating: "~", count: 256)]).status, 200, "256 characters")
        assertRefused(f.issue(h1, serial: "not hex", audience: ["a"]), .badRequest, "a serial that is not hex")
    }

    func testOnlyThisHostsAgentCertificatesGetTokens() throws {
        let f = try Fixture(hosts: [h1, h2])
        let other = try XCTUnwrap(f.agents[h2]?.serial)
        assertRefused(f.issue(h1, serial: other, audience: ["a"]), .jwtSVIDSerialUnknown, "another host's agent certificate")
        assertRefused(f.issue(h1, serial: "01", audience: ["a"]), .jwtSVIDSerialUnknown, "the host certificate's serial")
        assertRefused(f.issue(h1, serial: "7f" + String(repeating: "0", count: 30), audience: ["a"]), .jwtSVIDSerialUnknown, "a serial never issued")
        XCTAssertEqual(f.issue(h2, serial: other, audience: ["a"]).status, 200, "its own host gets it")
        XCTAssertEqual(f.issue(h1, serial: try XCTUnwrap(f.agents[h1]?.serial).uppercased(), audience: ["a"]).status, 200, "hex in either case")
    }

    func testARevokedCertificateIsRefused() throws {
        let f = try Fixture(hosts: [h1])
        let serial = try XCTUnwrap(f.agents[h1]?.serial)
        _ = try f.broker.service.revocation.revoke(RevokeRequest(serial: serial, reason: "keyCompromise"))
        assertRefused(f.issue(h1, serial: serial, audience: ["a"]), .certificateRevoked, "revoked")
    }

    func testAnExpiredCertificateIsRefused() throws {
        let f = try Fixture(hosts: [h1])
        let serial = try XCTUnwrap(f.agents[h1]?.serial)
        f.broker.clock.advance(by: 60)   // the certificate's notAfter: no longer valid (now < notAfter)
        assertRefused(f.issue(h1, serial: serial, audience: ["a"]), .certificateExpired, "at notAfter")
    }

    func testAHostThatIsNotTrustedNowGetsNoToken() throws {
        // Untrusted after a failed verdict; its certificate stays valid (action untrust, 180 s).
        let f = try Fixture(hosts: [h1, h2], policy: Broker.policy(interval: 60, grace: 120, action: .untrust))
        f.broker.source.script(f.broker.url(h1), .drifted)
        f.broker.source.script(f.broker.url(h2), .fault(.attesterUnreachable))
        f.broker.advance(by: 0)   // the first tick schedules the hosts' rounds
        f.broker.advance(by: 60)
        XCTAssertEqual(try f.broker.state(h1), .untrusted)
        XCTAssertEqual(try f.broker.state(h2), .unreachable)
        for h in [h1, h2] {
            let r = f.issue(h, serial: try XCTUnwrap(f.agents[h]?.serial), audience: ["a"])
            assertRefused(r, .jwtSVIDHostNotTrusted, "host \(h)")
        }
        // A block revokes the host's certificates: that refusal comes first.
        _ = try f.broker.service.revocation.revoke(RevokeRequest(hostId: h2, blockHost: true))
        assertRefused(f.issue(h2, serial: try XCTUnwrap(f.agents[h2]?.serial), audience: ["a"]), .certificateRevoked, "blocked")
    }

    // MARK: Interoperability

    /// PyJWT (Debian python3-jwt) reads the served key set with `jwt.PyJWKSet` and verifies the
    /// token, its signature, audience and expiry, against the wall clock (the broker's clock is
    /// set to it here); another audience is refused.
    func testPyJWTVerifiesTheTokenAgainstTheServedKeySet() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else { throw TestFailure("no /usr/bin/python3 (make deps installs it)") }
        let f = try Fixture(hosts: [h1], clockAt: Date())
        let agent = try XCTUnwrap(f.agents[h1])
        let r = try issued(f.issue(h1, serial: agent.serial, audience: ["spiffe://test.local/verifier"]))
        let dir = NSTemporaryDirectory() + "vouch-jwtsvid-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try Data(f.get("/v1/jwt-svid/jwks").body).write(to: URL(fileURLWithPath: dir + "/jwks.json"))
        try Data(Self.pyjwtCheck.utf8).write(to: URL(fileURLWithPath: dir + "/check.py"))

        let ok = try runProgram("/usr/bin/python3", [dir + "/check.py", r.token, dir + "/jwks.json", "spiffe://test.local/verifier"])
        XCTAssertEqual(ok.status, 0, "python3-jwt is in the Makefile's APT_PACKAGES (make deps): \(ok.output)")
        let answer = try JSONSerialization.jsonObject(with: Data(ok.output.utf8)) as? [String: Any]
        XCTAssertEqual(answer?["sub"] as? String, agent.spiffeId)
        XCTAssertEqual(answer?["serial"] as? String, agent.serial)

        let wrong = try runProgram("/usr/bin/python3", [dir + "/check.py", r.token, dir + "/jwks.json", "spiffe://test.local/someone-else"])
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.output.contains("InvalidAudienceError"), wrong.output)
    }

    static let pyjwtCheck = """
    import json, sys
    import jwt
    token, jwks_path, audience = sys.argv[1], sys.argv[2], sys.argv[3]
    keys = jwt.PyJWKSet.from_json(open(jwks_path).read())
    kid = jwt.get_unverified_header(token)["kid"]
    key = [k for k in keys.keys if k.key_id == kid][0]
    try:
        claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=audience, options={"require": ["exp", "iat", "sub", "aud"]})
    except jwt.PyJWTError as e:
        print(type(e).__name__, e)
        sys.exit(1)
    print(json.dumps({"sub": claims["sub"], "serial": claims["vouch"]["serial"]}))
    """
}
