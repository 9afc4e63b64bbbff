import Foundation
import VouchAPI
import VouchCore
import VouchHTTPClient

/// Signs the receipt for one answer: an in-toto statement over the SHA-256 of `output` (the
/// exact body bytes the client gets), with a salted commitment to `request` (the exact request
/// body), in a receipt bundle (JSON, docs/receipts.md). Returns the bundle's bytes and the salt
/// that opens the commitment. Called from several connection threads at once.
public protocol ReceiptMaking: Sendable {
    /// `route`: "METHOD /path" of the request answered (the path without its query), named in
    /// the receipt so a verifier knows which endpoint produced the output.
    func sign(output: [UInt8], request: [UInt8]?, route: String?, startedAt: Date, finishedAt: Date) throws -> (bundle: [UInt8], salt: [UInt8])
}

extension ErrorCode {
    /// The receipt proxy's upstream inference server could not be reached (refused, no such host, TLS).
    public static let upstreamUnreachable = ErrorCode("upstream_unreachable", status: 502)
    /// The upstream took longer than the proxy's timeout.
    public static let upstreamTimeout = ErrorCode("upstream_timeout", status: 504)
    /// The upstream's answer outgrew the proxy's response limit.
    public static let upstreamResponseTooLarge = ErrorCode("upstream_response_too_large", status: 502)
    /// The upstream's answer broke off or was not HTTP.
    public static let upstreamFailed = ErrorCode("upstream_failed", status: 502)
    /// The upstream answered but no receipt could be signed: the answer is withheld.
    public static let receiptFailed = ErrorCode("receipt_failed", status: 500)
}

/// The receipt proxy (`vouch-attester proxy`): in front of an OpenAI-compatible inference server
/// on the attested host, it forwards every request unchanged (method, target, body, end-to-end
/// headers) and returns the upstream's answer unchanged with a receipt over its exact body bytes:
///
/// - a request whose target is not origin-form (`/path?query`), or with a control character in
///   a header, is refused (400) before anything reaches the upstream: no target can make the
///   upstream client reach another host;
/// - the upstream is asked for `Accept-Encoding: identity`; a 2xx answer with another content
///   coding is refused (502 `upstream_encoded`): a receipt covers the bytes the client sees;
/// - a 2xx answer that is not an event stream is read whole, then returned with the headers
///   `Vouch-Receipt` (base64 of the bundle JSON) and `Vouch-Receipt-Salt` (hex); a bundle
///   whose base64 is over `maxReceiptHeaderBytes` is kept in memory instead and named by
///   `Vouch-Receipt-Ref`, to be fetched at `GET /.well-known/vouch/receipts/<ref>`;
/// - a 2xx `text/event-stream` answer is passed on piece by piece as the upstream sends it; once
///   it ends, one more event follows, the last: `event: vouch-receipt`,
///   `data: {"bundle":…,"salt":"…","length":"N"}`, whose receipt covers the N bytes forwarded
///   before it (`ReceiptEventStream`);
/// - any other status passes through as it is, without a receipt (an error is not an output);
/// - an upstream that cannot be reached, times out, breaks off or answers more than the
///   client's `maxResponseBytes` gets a JSON `{code, message}` (502, 504) and no receipt; a
///   stream that breaks off after it started ends with `event: vouch-error` in place of the
///   receipt.
///
/// The request's size limit is the HTTP server's (`HTTPServer`'s `maxBodyBytes`, 413
/// `body_too_large`); the answer's and the time limit are the upstream client's; the bytes held
/// across connections are capped by `maxInFlightBytes` (503 `proxy_busy`).
public final class ReceiptProxy: Sendable {
    let upstream: HTTPClient
    let receipts: any ReceiptMaking
    let clock: any Clock
    let log: @Sendable (String) -> Void
    let budget: InFlightBudget
    let shelf = ReceiptShelf()

    /// `maxInFlightBytes` caps the bytes held across all connections at once (request bodies,
    /// answers read whole, streamed output kept for its receipt): past it, 503 `proxy_busy`.
    /// The inference endpoints whose answers are signed, as "METHOD /path": the OpenAI-compatible
    /// ones vLLM, llama.cpp and Ollama serve, and Ollama's own. Every other route (models lists,
    /// health, tokenize/detokenize, which echo their input) passes through without a receipt, so
    /// the proxy signs only what an inference endpoint answered, and never for a HEAD or GET.
    public static let defaultSignedRoutes: Set<String> = [
        "POST /v1/chat/completions", "POST /v1/completions", "POST /v1/embeddings", "POST /v1/responses",
        "POST /api/chat", "POST /api/generate", "POST /api/embed",
    ]
    let signedRoutes: Set<String>

    public init(upstream: HTTPClient, receipts: any ReceiptMaking, clock: any Clock = SystemClock(), maxInFlightBytes: Int = 512 << 20,
                signedRoutes: Set<String> = ReceiptProxy.defaultSignedRoutes, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.signedRoutes = signedRoutes
        self.upstream = upstream
        self.receipts = receipts
        self.clock = clock
        self.budget = InFlightBudget(limit: maxInFlightBytes)
        self.log = log
    }

    /// "METHOD /path" of a request: its method and its target up to the query.
    static func route(_ request: HTTPRequest) -> String {
        request.method + " " + String(request.target.prefix { $0 != "?" })
    }

    /// The HTTP handler: one request forwarded, its answer returned with its receipt.
    public func handle(_ request: HTTPRequest) -> HTTPResponse {
        if let problem = Self.requestProblem(request) { return refusal(problem, request) }
        if request.target.hasPrefix(ReceiptShelf.pathPrefix) { return shelved(request) }
        let startedAt = clock.now()
        let hold = budget.hold()
        do { try hold.add(request.body.count) } catch { return refusal(Self.upstreamError(error), request) }
        let answer: StreamedResponse
        do {
            answer = try upstream.open(request.method, request.target, headers: Self.upstreamHeaders(request.headers),
                                       body: request.body.isEmpty && request.headers["content-length"] == nil ? nil : request.body)
        } catch {
            return refusal(Self.upstreamError(error), request)
        }
        let headers = Self.clientHeaders(answer.headers)
        let route = Self.route(request)
        guard (200..<300).contains(answer.status), signedRoutes.contains(route) else {
            if Self.isEventStream(answer.header("content-type")) {
                // Passed through as it arrives, without a receipt (a route that is not signed).
                return HTTPResponse(status: answer.status, headers: headers, stream: HTTPStream(next: { try? answer.next() }, onClose: {
                    answer.cancel()
                    hold.release()
                }))
            }
            defer { hold.release() }
            // Passed through whole, without a receipt.
            do { return HTTPResponse(status: answer.status, headers: headers, body: try Self.readAll(answer, hold)) } catch {
                return refusal(Self.upstreamError(error), request)
            }
        }
        if let coding = answer.header("content-encoding"), !coding.trimmingCharacters(in: .whitespaces).isEmpty,
           coding.trimmingCharacters(in: .whitespaces).lowercased() != "identity" {
            answer.cancel()
            return refusal(VouchError(.upstreamEncoded, "the upstream answered with Content-Encoding \(coding.prefix(40)) although the proxy asked for identity"), request)
        }
        let requestBody = request.body
        if Self.isEventStream(answer.header("content-type")) {
            log("proxy: \(request.method) \(request.path) -> \(answer.status), streaming")
            let stream = ReceiptEventStream(upstream: answer, hold: hold, log: log) { [receipts, clock] output in
                try receipts.sign(output: output, request: requestBody, route: route, startedAt: startedAt, finishedAt: clock.now())
            }
            return HTTPResponse(status: answer.status, headers: headers, stream: HTTPStream(next: stream.next, onClose: stream.close))
        }
        defer { hold.release() }
        let output: [UInt8]
        do { output = try Self.readAll(answer, hold) } catch { return refusal(Self.upstreamError(error), request) }
        let receipt: (bundle: [UInt8], salt: [UInt8])
        let receiptHeader: (String, String)
        do {
            receipt = try receipts.sign(output: output, request: requestBody, route: route, startedAt: startedAt, finishedAt: clock.now())
            let encoded = Data(receipt.bundle).base64EncodedString()
            receiptHeader = encoded.utf8.count <= Self.maxReceiptHeaderBytes ? ("Vouch-Receipt", encoded)
                : ("Vouch-Receipt-Ref", try shelf.put(receipt.bundle, now: clock.now()))
        } catch {
            // The signer's detail (a TPM or attester error) goes to the log, not to the remote client.
            log("proxy: \(request.method) \(request.path): no receipt: \(error)")
            return refusal(VouchError(.receiptFailed, "the answer could not be signed"), request)
        }
        log("proxy: \(request.method) \(request.path) -> \(answer.status), \(output.count) bytes, receipt")
        return HTTPResponse(status: answer.status, headers: headers + [receiptHeader, ("Vouch-Receipt-Salt", Hex.encode(receipt.salt))], body: output)
    }

    /// `GET /.well-known/vouch/receipts/<ref>`: a receipt too large for its answer's header.
    private func shelved(_ request: HTTPRequest) -> HTTPResponse {
        let ref = String(request.target.dropFirst(ReceiptShelf.pathPrefix.count))
        guard request.method == "GET" || request.method == "HEAD", let bundle = shelf.get(ref, now: clock.now()) else {
            return refusal(VouchError(.receiptNotFound, "no receipt is kept under this reference (it may have expired)"), request)
        }
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/vnd.vouch.receipt.v1+json")], body: bundle)
    }

    private func refusal(_ e: VouchError, _ request: HTTPRequest) -> HTTPResponse {
        log("proxy: \(request.method) \(request.path) -> \(e.code.status) \(e.code): \(e.message)")
        return HTTPResponse(status: e.code.status, headers: [("Content-Type", "application/json")],
                            body: JSONCodec.encode(APIError(code: e.code.rawValue, message: e.message)))
    }

    /// The whole body, each piece counted against the proxy's in-flight budget.
    static func readAll(_ answer: StreamedResponse, _ hold: InFlightBudget.Hold) throws -> [UInt8] {
        var body: [UInt8] = []
        while let chunk = try answer.next() {
            do { try hold.add(chunk.count) } catch { answer.cancel(); throw error }
            body += chunk
        }
        return body
    }

    static func isEventStream(_ contentType: String?) -> Bool {
        contentType?.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() == "text/event-stream"
    }

    /// The proxy's answer for an upstream transfer that failed (`HTTPClient`'s `http` errors).
    static func upstreamError(_ error: any Error) -> VouchError {
        let e = error as? VouchError
        if let e, e.code == .proxyBusy { return e }
        let message = "the upstream inference server: " + (e?.message ?? "\(error)")
        switch e?.cause as? HTTPClientError {
        case .connectionRefused?, .nameResolution?, .tls?: return VouchError(.upstreamUnreachable, message)
        case .timedOut?: return VouchError(.upstreamTimeout, message)
        case .responseTooLarge?: return VouchError(.upstreamResponseTooLarge, message)
        default: return VouchError(.upstreamFailed, message)
        }
    }

    /// Hop-by-hop headers (RFC 9110 section 7.6.1), which describe one connection and are not
    /// forwarded, and the framing each side's HTTP library writes for its own connection.
    static let connectionHeaders: Set = ["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                                         "transfer-encoding", "upgrade", "content-length", "host", "expect"]

    /// The end-to-end headers of a request, for the upstream. Headers curl would add of its own
    /// (`Accept`, a form `Content-Type`) are switched off when the client sent none.
    static func upstreamHeaders(_ headers: [String: String]) -> [String: String] {
        let named = Set((headers["connection"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() })
        var out = headers.filter { !connectionHeaders.contains($0.key) && !named.contains($0.key) }
        for h in ["accept", "content-type"] where out[h] == nil { out[h] = "" }   // "Name:" with no value: curl sends none
        // The receipt covers the bytes the client's library shows it: never a compressed body.
        out["accept-encoding"] = "identity"
        return out
    }

    /// The end-to-end headers of an answer, for the client: what the upstream sent, in order,
    /// less hop-by-hop headers and any `Vouch-Receipt…` header of its own.
    static func clientHeaders(_ headers: [(String, String)]) -> [(String, String)] {
        let named = Set(headers.filter { $0.0.lowercased() == "connection" }
            .flatMap { $0.1.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() } })
        return headers.filter { h in
            let name = h.0.lowercased()
            return !connectionHeaders.contains(name) && !named.contains(name) && !name.hasPrefix("vouch-receipt")
        }
    }
}
