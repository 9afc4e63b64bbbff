import VouchAPI
import VouchBroker
import VouchCore
import VouchCrypto
import VouchHTTPClient

/// Pull-mode evidence over libcurl: mutual TLS (the broker's client certificate; the attester's
/// host certificate must chain to the broker CA and carry the pinned key). A TPM host's quote
/// from `/v1/quote`, a CPU TEE host's report from `/v1/evidence`.
/// The CA bundle and the broker's certificate and key are parsed once, at start, and installed
/// into each connection (libcurl would read and decode the three files per connection).
struct CurlEvidenceSource: EvidenceSource {
    let tls: HTTPClient.PreloadedTLS
    let timeoutSeconds: Int

    init(material: TLSClientMaterial, timeoutSeconds: Int) {
        tls = HTTPClient.PreloadedTLS { material.install(into: $0) }
        self.timeoutSeconds = timeoutSeconds
    }

    func quote(attesterURL: String, pin: String, request: QuoteRequest) throws -> QuoteBody {
        try ask(attesterURL, pin: pin, "/v1/quote", request, answer: QuoteBody.self, what: "a quote")
    }

    func evidence(attesterURL: String, pin: String, request: QuoteRequest) throws -> AttestationReport {
        try ask(attesterURL, pin: pin, "/v1/evidence", request, answer: AttestationReport.self, what: "an attestation report")
    }

    /// POSTs `request` to the attester's `path` and decodes its 200 answer as `T`; every way of
    /// not getting one is a fault (`attester_unreachable`, `attester_timeout`, `attester_fault`).
    private func ask<T: Decodable>(_ attesterURL: String, pin: String, _ path: String, _ request: QuoteRequest, answer: T.Type, what: String) throws -> T {
        // A fresh TLS connection per pull (hosts are many; keeping one open to each is not the point).
        let client = HTTPClient(.pinned(tls: tls, publicKeyPin: pin), timeoutSeconds: timeoutSeconds, freshConnections: true)
        let response: HTTPResponse
        do {
            response = try client.send("POST", attesterURL + path, headers: ["Content-Type": "application/json"], body: JSONCodec.encode(request))
        } catch let e as VouchError {
            let code: ErrorCode
            switch e.cause as? HTTPClientError {
            case .timedOut?: code = .attesterTimeout
            case .connectionRefused?: code = .attesterUnreachable
            default: code = .attesterFault
            }
            throw VouchError(code, e.message, context: e.context, cause: e.cause)
        }
        guard response.status == 200 else {
            let err = try? JSONCodec.decode(APIError.self, from: response.body)
            throw VouchError(.attesterFault, "attester answered \(response.status): \(err?.code ?? "") \(err?.message ?? "")",
                             context: ["status": "\(response.status)", "got": err?.code ?? ""])
        }
        do { return try JSONCodec.decode(T.self, from: response.body) } catch {
            throw VouchError(.attesterFault, "attester's answer to \(path) is not \(what)", context: ["status": "200"])
        }
    }
}
