import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchModel

extension ErrorCode {
    public static let methodNotAllowed = ErrorCode("method_not_allowed", status: 405)
    public static let notReady = ErrorCode("not_ready", status: 503)
    public static let tooManyAttempts = ErrorCode("too_many_attempts", status: 429)
    public static let tooManyStreams = ErrorCode("too_many_streams", status: 429)
}
import VouchPolicy

/// Maps HTTP requests to the broker service (docs/api.md). Errors become JSON `{code, message}`
/// bodies with a status chosen by code; nothing a client sends can reach a 5xx except a real fault.
public struct BrokerAPI: Sendable {
    let service: BrokerService
    /// SHA-256 digests of the admin bearer tokens.
    let adminTokenDigests: [[UInt8]]
    let throttle: AuthThrottle
    let log: @Sendable (String) -> Void
    /// Signs EAR attestation results; without one, `/v1/hosts/{id}/ear` answers 404.
    let resultSigner: ResultSigner?
    /// The transparency log's routes; without a log they answer 404.
    let transparency: LogAPI?
    /// The pull scheduler hints go to (`POST /v1/hosts/{id}/hint`); without one they answer 409
    /// `host_not_pulled`.
    let reattestor: Reattestor?

    public init(service: BrokerService, adminTokenDigests: [[UInt8]], resultSigner: ResultSigner? = nil, transparency: LogAPI? = nil,
                throttle: AuthThrottle = AuthThrottle(), reattestor: Reattestor? = nil, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.service = service
        self.reattestor = reattestor
        self.transparency = transparency
        self.throttle = throttle
        self.adminTokenDigests = adminTokenDigests
        self.resultSigner = resultSigner
        self.log = log
    }

    /// The CRL and OCSP routes, which the plain-HTTP publication listener serves alone.
    var publication: PublicationAPI { PublicationAPI(service: service, log: log) }

    public func handle(_ req: HTTPRequest) -> HTTPResponse {
        do {
            return try route(req)
        } catch let refusal as PolicyRefusal {
            return Self.errorResponse(refusal.error, violations: refusal.violations)
        } catch let e as VouchError {
            return Self.errorResponse(e)
        } catch {
            log("internal error on \(req.method) \(req.path): \(error)")
            return Self.errorResponse(VouchError(.internalError, "internal error"))
        }
    }

    private func route(_ req: HTTPRequest) throws -> HTTPResponse {
        if req.path == "/healthz" || req.path == "/readyz" {
            guard req.method == "GET" else { throw Self.methodNotAllowed(req.method, allow: ["GET"]) }
            if req.path == "/healthz" { return json(200, ["status": "ok"]) }
            if let problem = transparency?.log.currentProblem { return Self.errorResponse(problem) }
            return try service.queries.ready() ? json(200, ["status": "ready"]) : Self.errorResponse(VouchError(.notReady, "shutting down"))
        }
        if req.path == "/metrics" {
            guard req.method == "GET" else { throw Self.methodNotAllowed(req.method, allow: ["GET"]) }
            try require(.read, req)   // fleet state and refusal causes are not for anonymous readers
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")], body: Array(try service.queries.metricsText().utf8))
        }
        // OCSP GET: the request is the rest of the path, URL-encoded base64 (RFC 6960 A.1), which may contain '/'.
        // HEAD is GET without the body (libmicrohttpd leaves it out), for CRL and OCSP fetchers.
        if let encoded = PublicationAPI.ocspGETRequest(req.path) {
            guard req.method == "GET" || req.method == "HEAD" else { throw Self.methodNotAllowed(req.method, allow: ["GET", "HEAD"]) }
            return try publication.ocsp(encoded: encoded)
        }
        if let transparency, LogAPI.isStaticPath(req.path) { return try transparency.staticRoute(req) }
        let parts = req.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard parts.first == "v1" else { throw VouchError(.notFound, "no such endpoint", context: ["path": String(req.path.prefix(128))]) }
        let rest = Array(parts.dropFirst())
        if let transparency, let answer = try transparency.route(req, rest, agentRoots: { try service.revocation.bundlePEM() }) { return answer }
        if let transparency, req.method == "POST", rest == ["receipts"] {
            let intake = ReceiptIntake(log: transparency.log, trust: try transparency.trustDocument(agentRoots: try service.revocation.bundlePEM()),
                                       certificates: service.context.store, clock: service.context.clock)
            return BrokerAPI.jsonResponse(200, try intake.submit(req.body))
        }
        if transparency == nil, rest == ["trust"] || rest == ["receipts"] || rest.first == "log" {
            throw VouchError(.notFound, "this broker keeps no transparency log", context: ["path": String(req.path.prefix(128))])
        }
        switch (req.method, rest) {
        case ("GET", ["health"]):
            return json(200, ["status": "ok"])
        case ("GET", ["ca"]):
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/x-pem-file")], body: Array(try service.authorities.current.chainPEM.utf8))
        case ("GET", let p) where PublicationAPI.isCRLRoute(p), ("HEAD", let p) where PublicationAPI.isCRLRoute(p):
            return try publication.crl(p, req)
        case ("GET", ["events"]):
            var after: Int64 = 0
            if case let (name, v)? = req.headers["last-event-id"].map({ ("Last-Event-ID", $0) }) ?? req.query["after"].map({ ("after", $0) }) {
                guard v.count <= 18, v.allSatisfy({ $0 >= "0" && $0 <= "9" }), let n = Int64(v) else {
                    throw VouchError(.badRequest, "\(name) must be an event id", context: ["field": name])
                }
                after = n
            }
            // Only what happens from now on (an attester watching its identities), the cursor announced.
            let from = try Self.option(req, "from", ["latest"])
            let latest = req.headers["last-event-id"] == nil && req.query["after"] == nil && from != nil
            if latest { after = try service.store.latestEventID() }
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
                                stream: try service.eventStream(after: after, peer: req.peer, announceCursor: latest))
        case ("POST", ["ocsp"]):
            return try publication.ocsp(request: req.body)
        case ("GET", ["bundle"]):
            if try Self.option(req, "format", ["spiffe"]) == "spiffe" {
                return HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: try service.revocation.spiffeBundle())
            }
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/x-pem-file")], body: Array(try service.revocation.bundlePEM().utf8))
        case ("POST", ["hosts"]):
            return json(201, try service.registration.registerHost(JSONCodec.decode(RegisterHostRequest.self, from: req.body)))
        case ("POST", let p) where p.count == 3 && p[0] == "hosts" && p[2] == "activate":
            return json(200, try service.registration.activateHost(id: p[1], JSONCodec.decode(ActivateHostRequest.self, from: req.body)))
        case ("POST", let p) where p.count == 3 && p[0] == "hosts" && p[2] == "attestations":
            try service.registration.authenticateHost(id: p[1], clientCertificate: req.clientCertificate)
            return Self.hostConnection(json(200, try service.reattestation.judgeReport(hostID: p[1], JSONCodec.decode(AttestationReport.self, from: req.body))))
        case ("POST", let p) where p.count == 3 && p[0] == "hosts" && p[2] == "hint":
            // Authenticated as a push report is: the host certificate of this host id.
            try service.registration.authenticateHost(id: p[1], clientCertificate: req.clientCertificate)
            return Self.hostConnection(BrokerAPI.jsonResponse(202, try hint(hostID: p[1], body: req.body)))
        case ("POST", let p) where p.count == 3 && p[0] == "hosts" && p[2] == "jwt-svids":
            // A JWT-SVID for one of the host's agents: the host certificate first, as for pushes.
            try service.registration.authenticateHost(id: p[1], clientCertificate: req.clientCertificate)
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
                                body: JSONCodec.encode(try service.jwtSVIDs.issue(hostID: p[1], JSONCodec.decode(JWTSVIDIssueRequest.self, from: req.body))))
        case ("GET", ["jwt-svid", "jwks"]):
            // Public, like the CA bundle: the key that signs JWT-SVIDs, named by the kid in their header.
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/jwk-set+json"), ("Cache-Control", "no-cache")],
                                body: JSONCodec.encode(service.jwtSVIDs.keySet))
        case ("GET", ["hosts"]):
            try require(.read, req)
            return json(200, try service.queries.status().hosts)
        case ("GET", let p) where p.count == 2 && p[0] == "hosts":
            try require(.read, req)
            return json(200, try service.queries.hostStatus(id: p[1]))
        case ("DELETE", let p) where p.count == 2 && p[0] == "hosts":
            try require(.admin, req)
            return json(200, try service.revocation.deleteHost(id: p[1]))
        case ("POST", ["challenges"]):
            return json(201, try service.enrollment.createChallenge(JSONCodec.decode(ChallengeRequest.self, from: req.body)))
        case ("POST", ["enroll"]):
            return json(201, try service.enrollment.enroll(JSONCodec.decode(EnrollRequest.self, from: req.body)))
        case ("POST", ["revoke"]):
            try require(.admin, req)
            return json(200, try service.revocation.revoke(JSONCodec.decode(RevokeRequest.self, from: req.body)))
        case ("GET", ["status"]):
            try require(.read, req)
            return json(200, try service.queries.status())
        case ("GET", ["summary"]):
            try require(.read, req)
            return json(200, try service.queries.summary())
        case ("GET", ["attestations"]):
            try require(.read, req)
            return json(200, try service.queries.history(req.query))
        case ("GET", ["certificates"]):
            try require(.read, req)
            return json(200, try service.queries.certificates(req.query))
        case ("GET", let p) where p.count == 2 && p[0] == "certificates":
            try require(.read, req)
            let format = try Self.option(req, "format", ["pem"])
            let c = try service.queries.certificate(serial: p[1])
            if format == "pem" {
                return HTTPResponse(status: 200, headers: [("Content-Type", "application/x-pem-file")], body: Array(c.pem.utf8))
            }
            return json(200, c.status)
        case ("POST", let p) where p.count == 3 && p[0] == "certificates" && p[2] == "revoke":
            try require(.admin, req)
            var body = req.body.isEmpty ? RevokeRequest() : try JSONCodec.decode(RevokeRequest.self, from: req.body)
            guard body.hostId == nil, body.agentName == nil, body.blockHost == nil, body.serial == nil || body.serial == p[1] else {
                throw VouchError(.badRequest, "this endpoint revokes the serial in its path; give only reason", context: ["field": "serial"])
            }
            body.serial = p[1]
            return json(200, try service.revocation.revoke(body))
        case ("GET", let p) where p.count == 3 && p[0] == "hosts" && p[2] == "ear":
            try require(.read, req)
            guard let resultSigner else { throw VouchError(.notFound, "this broker has no attestation-result signer") }
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/eat+jwt"), ("Cache-Control", "no-store")],
                                body: Array(try service.queries.ear(hostID: p[1], nonce: req.query["nonce"], signer: resultSigner).utf8))
        case ("GET", ["ear", "jwks"]):
            // Public, like the CA bundle: the key that signs EARs, named by the kid in their header.
            guard let resultSigner else { throw VouchError(.notFound, "this broker has no attestation-result signer") }
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/jwk-set+json"), ("Cache-Control", "no-cache")],
                                body: JSONCodec.encode(JWKSet(keys: [resultSigner.jwk])))
        case ("GET", let p) where p.count == 3 && p[0] == "hosts" && p[2] == "attestations":
            try require(.read, req)
            var query = req.query
            query["hostId"] = p[1]
            return json(200, try service.queries.history(query))
        case ("POST", ["tokens"]):
            try require(.admin, req)
            return json(201, try service.tokens.createToken(JSONCodec.decode(TokenCreateRequest.self, from: req.body)))
        case ("GET", ["tokens"]):
            try require(.admin, req)
            return json(200, try service.tokens.listTokens())
        case ("DELETE", let p) where p.count == 2 && p[0] == "tokens":
            try require(.admin, req)
            return json(200, try service.tokens.revokeToken(id: p[1]))
        case ("GET", let p) where p.count == 2 && p[0] == "policies" && p[1] != "reload":   // the concrete path wins (OpenAPI)
            try require(.read, req)
            guard let policy = service.queries.policyStatus().policies.first(where: { $0.name == p[1] }) else {
                throw VouchError(.notFound, "no policy with this name is loaded", context: ["name": String(p[1].prefix(64))])
            }
            return json(200, policy)
        case ("POST", ["ca", "rotate"]):
            try require(.admin, req)
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/x-pem-file")], body: Array(try service.revocation.rotateCA().utf8))
        case ("GET", ["policies"]):
            try require(.read, req)
            return json(200, service.queries.policyStatus())
        case ("POST", ["policies", "reload"]):
            try require(.admin, req)
            return json(200, try service.queries.reloadPolicies())
        case ("POST", let p) where p.count == 3 && p[0] == "hosts" && p[2] == "unblock":
            try require(.admin, req)
            return json(200, try service.revocation.unblock(hostID: p[1]))
        case ("GET", let p) where p.count == 3 && p[0] == "hosts" && p[2] == "evidence":
            try require(.read, req)
            return json(200, try service.queries.evidence(hostID: p[1]))
        default:
            if let allow = Self.methods(of: rest) { throw Self.methodNotAllowed(req.method, allow: allow) }
            throw VouchError(.notFound, "no such endpoint", context: ["path": String(req.path.prefix(128))])
        }
    }

    /// The methods of each path under /v1 (`*`: any one segment; the first match counts, so
    /// concrete paths come before templated ones), for 405 answers and their `Allow` header. A
    /// path that matches none is 404. (/healthz, /readyz and /metrics answer GET only; /v1/ocsp/… GET
    /// and HEAD.)
    public static let pathMethods: [(path: [String], methods: [String])] = [
        (["health"], ["GET"]), (["ca"], ["GET"]), (["bundle"], ["GET"]), (["crl"], ["GET", "HEAD"]), (["crl.pem"], ["GET", "HEAD"]), (["crl", "*"], ["GET", "HEAD"]),
        (["ocsp"], ["POST"]), (["events"], ["GET"]), (["receipts"], ["POST"]), (["hosts"], ["GET", "POST"]), (["hosts", "*"], ["GET", "DELETE"]),
        (["hosts", "*", "activate"], ["POST"]), (["hosts", "*", "attestations"], ["GET", "POST"]), (["hosts", "*", "ear"], ["GET"]),
        (["hosts", "*", "evidence"], ["GET"]), (["hosts", "*", "unblock"], ["POST"]), (["hosts", "*", "jwt-svids"], ["POST"]), (["hosts", "*", "hint"], ["POST"]), (["challenges"], ["POST"]), (["enroll"], ["POST"]),
        (["revoke"], ["POST"]), (["status"], ["GET"]), (["summary"], ["GET"]), (["attestations"], ["GET"]), (["certificates"], ["GET"]),
        (["certificates", "*"], ["GET"]), (["certificates", "*", "revoke"], ["POST"]), (["tokens"], ["GET", "POST"]), (["tokens", "*"], ["DELETE"]),
        (["policies"], ["GET"]), (["policies", "reload"], ["POST"]), (["policies", "*"], ["GET"]), (["ca", "rotate"], ["POST"]),
        (["ear", "jwks"], ["GET"]), (["jwt-svid", "jwks"], ["GET"]), (["trust"], ["GET"]), (["log", "proof"], ["GET"]), (["log", "consistency"], ["GET"]),
        (["log", "cosignatures"], ["POST"]),
    ]

    public static func methods(of path: [String]) -> [String]? {
        pathMethods.first { entry in entry.path.count == path.count && zip(entry.path, path).allSatisfy { $0 == "*" || $0 == $1 } }?.methods
    }

    /// 405, with the path's methods in `Allow` (RFC 9110 15.5.6; also in the body's context).
    static func methodNotAllowed(_ method: String, allow: [String]) -> VouchError {
        VouchError(.methodNotAllowed, "method \(method.prefix(16)) is not allowed here", context: ["allow": allow.joined(separator: ", ")])
    }

    /// A query parameter with a closed set of values: absent (nil) or one of `values`; anything
    /// else is refused rather than ignored.
    @discardableResult
    static func option(_ req: HTTPRequest, _ name: String, _ values: [String]) throws -> String? {
        guard let v = req.query[name] else { return nil }
        guard values.contains(v) else {
            throw VouchError(.badRequest, "\(name) must be \(values.joined(separator: " or "))", context: ["field": name, "got": String(v.prefix(32))])
        }
        return v
    }

    /// Checks the bearer token grants `needed`: the bootstrap admin token (DATA-DIR/admin.token), or
    /// a token made with `POST /v1/tokens`. A valid token is always honoured; failures count
    /// toward the per-address throttle, which answers 429 to further *failed* attempts only — so
    /// bogus tokens from a shared address never lock out an operator. (Tokens are 256-bit random
    /// values: the throttle keeps guessing noise down, it is not what makes guessing futile.)
    private func require(_ needed: TokenScope, _ req: HTTPRequest) throws {
        let now = service.clock.now()
        var scope: TokenScope?
        if let auth = req.headers["authorization"], auth.hasPrefix("Bearer ") {
            let digest = Crypto.sha256(Array(auth.dropFirst(7).utf8))
            scope = adminTokenDigests.contains(where: { constantTimeEqual($0, digest) }) ? .admin : try service.tokens.scope(ofTokenDigest: digest)
        }
        guard let scope else {
            if let wait = throttle.blocked(req.peer, now: now) {
                throw VouchError(.tooManyAttempts, "too many failed authentications from this address; retry later",
                                 context: ["retryAfter": "\(wait)"])
            }
            throttle.failed(req.peer, now: now)
            log("failed authentication from \(req.peer)")
            throw VouchError(.unauthorized, req.headers["authorization"] == nil ? "this endpoint needs a bearer token" : "bearer token is not valid")
        }
        guard scope.allows(needed) else {
            throw VouchError(.forbidden, "this endpoint needs a token with \(needed.rawValue) scope", context: ["expected": needed.rawValue, "got": scope.rawValue])
        }
    }

    private func json<T: Encodable>(_ status: Int, _ value: T) -> HTTPResponse { Self.jsonResponse(status, value) }

    /// `response` to a request the host's current host certificate authenticated (a push report,
    /// a hint): its connection may stay open until the host's next report (vouchd's
    /// `--host-connection-timeout`).
    static func hostConnection(_ response: HTTPResponse) -> HTTPResponse {
        var kept = response
        kept.keepsConnection = true
        return kept
    }

    static func jsonResponse<T: Encodable>(_ status: Int, _ value: T) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: JSONCodec.encode(value))
    }

    static func errorResponse(_ e: VouchError, violations: [PolicyViolation] = []) -> HTTPResponse {
        let body = APIError(code: e.code.rawValue, message: e.message, context: e.context.isEmpty ? nil : e.context,
                            violations: violations.isEmpty ? nil : violations.map {
                                APIError.Violation(code: $0.code.rawValue, path: $0.path, expected: $0.expected, actual: $0.actual)
                            })
        var headers = [("Content-Type", "application/json")]
        if e.code == .unauthorized { headers.append(("WWW-Authenticate", "Bearer")) }
        if let wait = e.context["retryAfter"] { headers.append(("Retry-After", wait)) }
        if e.code == .methodNotAllowed, let allow = e.context["allow"] { headers.append(("Allow", allow)) }
        return HTTPResponse(status: Self.status(for: e.code), headers: headers, body: JSONCodec.encode(body))
    }

    /// HTTP status for each error code (documented in docs/api.md): the code's own, from the
    /// catalogue; a code without one (never raised by the broker) is a fault.
    public static func status(for code: ErrorCode) -> Int { code.status == 0 ? 500 : code.status }
}

extension BrokerAPI {
    /// A pull host's hint: its next round now (`Reattestor.hint`). The body is optional: a
    /// `HintRequest` whose reason is only logged.
    func hint(hostID: String, body: [UInt8]) throws -> HintResponse {
        let request = body.isEmpty ? HintRequest() : try JSONCodec.decode(HintRequest.self, from: body)
        guard (request.reason?.unicodeScalars.count ?? 0) <= 128 else {
            throw VouchError(.badRequest, "reason is at most 128 characters", context: ["field": "reason"])
        }
        guard let reattestor else { throw VouchError(.hostNotPulled, "this broker schedules no pull rounds", context: ["hostId": hostID]) }
        let now = service.clock.now()
        switch try reattestor.hint(hostID: hostID, now: now) {
        case let .scheduled(at):
            // The reason is the host's word: printable ASCII only reaches the log.
            let reason = String(String.UnicodeScalarView((request.reason ?? "no reason").unicodeScalars.filter { $0.value >= 0x20 && $0.value < 0x7f }))
            log("host \(hostID) hinted (\(reason)): pull round due \(at.iso8601)")
            return HintResponse(hostId: hostID, round: "scheduled", at: at.iso8601)
        case let .coalesced(at):
            return HintResponse(hostId: hostID, round: "coalesced", at: at.iso8601)
        }
    }

    /// The handler to give an `HTTPServer` (built here, not in `main`, so it is not main-actor isolated).
    public var httpHandler: @Sendable (HTTPRequest) -> HTTPResponse {
        { [self] req in self.handle(req) }
    }
}

extension String {
    /// Standard base64 (with or without padding) to bytes, nil if it is not base64.
    func data(usingBase64: ()) -> [UInt8]? {
        var s = self
        while s.count % 4 != 0 { s += "=" }
        return Data(base64Encoded: s).map { [UInt8]($0) }
    }
}
