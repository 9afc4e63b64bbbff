import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchModel

/// The signed revocation artefacts as relying parties fetch them: CRLs (`/v1/crl...`, DER or PEM,
/// with ETag, Last-Modified and 304) and OCSP (RFC 6960 Appendix A: POST `/v1/ocsp` with
/// `application/ocsp-request`, or GET `/v1/ocsp/{url-encoded base64}`).
///
/// `BrokerAPI` serves these routes on the HTTPS listener. `handle` is the whole surface of the
/// plain-HTTP publication listener (`vouchd --publish-listen`), which the CRL distribution point
/// and OCSP URLs in certificates name: RFC 5280 fetchers (NSS, Windows, OpenSSL's `-crl_download`)
/// speak http, and CRLs and OCSP answers are signed, so they need no TLS. Nothing else is there —
/// no tokens, no API, no event stream: other paths are 404, other methods 405 with `Allow`.
public struct PublicationAPI: Sendable {
    let revocation: RevocationService
    let log: @Sendable (String) -> Void

    public init(service: BrokerService, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.revocation = service.revocation
        self.log = log
    }

    /// The handler to give the publication listener's `HTTPServer`.
    public var httpHandler: @Sendable (HTTPRequest) -> HTTPResponse {
        { [self] req in self.handle(req) }
    }

    public func handle(_ req: HTTPRequest) -> HTTPResponse {
        do {
            return try route(req)
        } catch let e as VouchError {
            return Self.errorResponse(e)
        } catch {
            log("internal error on \(req.method) \(req.path) (publication listener): \(error)")
            return Self.errorResponse(VouchError(.internalError, "internal error"))
        }
    }

    /// The encoded request of an OCSP GET (`/v1/ocsp/` and the rest), nil for another path.
    /// Compared as bytes: as Swift strings, a rest that starts with a combining character (an
    /// emoji modifier) joins the '/' into one Character and `hasPrefix` would miss the route.
    static func ocspGETRequest(_ path: String) -> String? {
        let prefix = "/v1/ocsp/".utf8
        guard path.utf8.starts(with: prefix) else { return nil }
        return String(decoding: path.utf8.dropFirst(prefix.count), as: UTF8.self)
    }

    private func route(_ req: HTTPRequest) throws -> HTTPResponse {
        // HEAD is GET without the body, which libmicrohttpd leaves out by itself.
        let reads = req.method == "GET" || req.method == "HEAD"
        if let encoded = Self.ocspGETRequest(req.path) {
            guard reads else { throw BrokerAPI.methodNotAllowed(req.method, allow: ["GET", "HEAD"]) }
            return try ocsp(encoded: encoded)
        }
        if req.path == "/v1/ocsp" {
            guard req.method == "POST" else { throw BrokerAPI.methodNotAllowed(req.method, allow: ["POST"]) }
            return try ocsp(request: req.body)
        }
        let parts = req.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        if parts.first == "v1", Self.isCRLRoute(Array(parts.dropFirst())) {
            guard reads else { throw BrokerAPI.methodNotAllowed(req.method, allow: ["GET", "HEAD"]) }
            return try crl(Array(parts.dropFirst()), req)
        }
        throw VouchError(.notFound, "this listener publishes only CRLs (/v1/crl/{caKeyId}) and OCSP (/v1/ocsp)",
                         context: ["path": String(req.path.prefix(128))])
    }

    // MARK: The routes, shared with BrokerAPI

    /// `rest` (the path after `/v1`) names a CRL: `crl`, `crl.pem`, or `crl/{caKeyId}[.pem]`.
    static func isCRLRoute(_ rest: [String]) -> Bool {
        rest == ["crl"] || rest == ["crl.pem"] || (rest.count == 2 && rest[0] == "crl")
    }

    /// The CRL `rest` names (see `isCRLRoute`): DER, or PEM for `.pem` or `?format=pem` (any other
    /// `format` is 400); 304 when `If-None-Match` has its ETag.
    func crl(_ rest: [String], _ req: HTTPRequest) throws -> HTTPResponse {
        try BrokerAPI.option(req, "format", ["pem"])
        if rest.count == 2 { guard rest[1].range(of: "^[0-9a-f]{2,128}(\\.pem)?$", options: .regularExpression) != nil else {
            throw VouchError(.notFound, "no such CRL") } }
        let issuer = rest.count == 2 ? String(rest[1].replacingOccurrences(of: ".pem", with: "")) : nil
        let crl = try revocation.currentCRL(issuer: issuer)
        let pem = rest == ["crl.pem"] || (rest.last ?? "").hasSuffix(".pem") || req.query["format"] == "pem"
        let etag = "\"crl-\(crl.number)\(pem ? "-pem" : "")\""
        var headers = [("ETag", etag), ("Last-Modified", Self.httpDate(crl.thisUpdate)),
                       ("Cache-Control", "max-age=\(max(0, Int(crl.nextUpdate.timeIntervalSince(crl.thisUpdate) / 2)))")]
        if req.headers["if-none-match"] == etag { return HTTPResponse(status: 304, headers: headers) }
        if pem {
            headers.append(("Content-Type", "application/x-pem-file"))
            let b64 = Base64.encode(crl.der)
            let lines = stride(from: 0, to: b64.count, by: 64).map { String(Array(b64)[$0..<min($0 + 64, b64.count)]) }
            return HTTPResponse(status: 200, headers: headers, body: Array(("-----BEGIN X509 CRL-----\n" + lines.joined(separator: "\n") + "\n-----END X509 CRL-----\n").utf8))
        }
        headers.append(("Content-Type", "application/pkix-crl"))
        return HTTPResponse(status: 200, headers: headers, body: crl.der)
    }

    /// OCSP by GET: the request is the rest of the path, URL-encoded base64 (RFC 6960 A.1), which
    /// may contain '/'. What is not base64 gets an OCSP malformedRequest answer.
    func ocsp(encoded: String) throws -> HTTPResponse {
        let der = (encoded.removingPercentEncoding ?? encoded).data(usingBase64: ())
        return Self.ocspResponse(try der.map { try revocation.ocsp(request: $0) } ?? OCSPResponder.errorResponse(1))
    }

    /// OCSP by POST: the body is the DER request.
    func ocsp(request: [UInt8]) throws -> HTTPResponse {
        Self.ocspResponse(try revocation.ocsp(request: request))
    }

    static func ocspResponse(_ der: [UInt8]) -> HTTPResponse {
        HTTPResponse(status: 200, headers: [("Content-Type", "application/ocsp-response"), ("Cache-Control", "no-cache")], body: der)
    }

    /// An IMF-fixdate (RFC 9110), e.g. "Tue, 24 Nov 2026 04:12:00 GMT" (no DateFormatter: this is
    /// on the CRL's hot path).
    static func httpDate(_ d: Date) -> String {
        let u = d.utc
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"], months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ v: Int) -> String { UTCFields.pad(v, 2) }
        return "\(days[u.weekday]), \(two(u.day)) \(months[u.month - 1]) \(u.year) \(two(u.hour)):\(two(u.minute)):\(two(u.second)) GMT"
    }

    // MARK: Errors

    /// `{code, message}` with the code's status, and `Allow` for 405 (`BrokerAPI`'s error body).
    static func errorResponse(_ e: VouchError) -> HTTPResponse { BrokerAPI.errorResponse(e) }
}
