import Foundation
import Synchronization
import VouchAPI
import VouchBroker
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchRuntime

/// Pull-mode evidence over libcurl: mutual TLS (the broker's client certificate; the attester's
/// host certificate must chain to the broker CA and carry the pinned key). A TPM host's quote
/// from `/v1/quote`, a CPU TEE host's report from `/v1/evidence`.
/// The CA bundle and the broker's certificate and key are parsed once, at start, and installed
/// into each connection (libcurl would read and decode the three files per connection).
/// With `connections` > 0 one connection per attester is kept alive across rounds
/// (`PinnedConnectionPool`, at most that many idle); 0: a fresh connection per round. New TLS
/// material (`update`, after a CA rotation changed the bundle) drops the pool with every connection
/// verified under the old trust, and starts a new one.
final class CurlEvidenceSource: EvidenceSource {
    let timeoutSeconds: Int
    let connections: Int
    private let current: Mutex<(tls: HTTPClient.PreloadedTLS, pool: PinnedConnectionPool?)>

    init(material: TLSClientMaterial, timeoutSeconds: Int, connections: Int) {
        self.timeoutSeconds = timeoutSeconds
        self.connections = connections
        current = Mutex(Self.make(material, connections))
    }

    private static func make(_ material: TLSClientMaterial, _ connections: Int) -> (tls: HTTPClient.PreloadedTLS, pool: PinnedConnectionPool?) {
        (HTTPClient.PreloadedTLS { material.install(into: $0) }, connections > 0 ? PinnedConnectionPool(capacity: connections) : nil)
    }

    /// Pulls from now on use `material`; the old pool's idle connections close as it goes (rounds
    /// in flight finish on theirs, which then close too).
    func update(material: TLSClientMaterial) {
        let replacement = Self.make(material, connections)
        let old = current.withLock { c in
            let old = c.pool
            c = replacement
            return old
        }
        old?.closeIdle()
    }

    /// What the pool has done (nil without one).
    var statistics: PinnedConnectionPool.Statistics? { current.withLock { $0.pool?.statistics } }

    func quote(attesterURL: String, pin: String, request: QuoteRequest) throws -> QuoteBody {
        try ask(attesterURL, pin: pin, "/v1/quote", request, answer: QuoteBody.self, what: "a quote")
    }

    func evidence(attesterURL: String, pin: String, request: QuoteRequest) throws -> AttestationReport {
        try ask(attesterURL, pin: pin, "/v1/evidence", request, answer: AttestationReport.self, what: "an attestation report")
    }

    /// POSTs `request` to the attester's `path` and decodes its 200 answer as `T`; every way of
    /// not getting one is a fault (`attester_unreachable`, `attester_timeout`, `attester_fault`).
    private func ask<T: Decodable>(_ attesterURL: String, pin: String, _ path: String, _ request: QuoteRequest, answer: T.Type, what: String) throws -> T {
        let (tls, pool) = current.withLock { $0 }
        // Without a pool: a fresh TLS connection per pull.
        let client = HTTPClient(.pinned(tls: tls, publicKeyPin: pin), timeoutSeconds: timeoutSeconds, freshConnections: true, connections: pool)
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

/// Re-reads the broker's trust bundle every few seconds and gives the pull source new TLS material
/// when it changed (a CA rotation), which also drops the connections kept under the old bundle.
final class PullTrustWatch: Sendable {
    let source: CurlEvidenceSource
    let every: TimeInterval
    private let bundlePEM: @Sendable () throws -> String
    private let material: @Sendable (String) throws -> TLSClientMaterial
    private let state: Mutex<(bundle: String, running: Bool)>

    /// `bundle`: the bundle the source's material was made from; `material` makes new material
    /// from a bundle `bundlePEM` returned.
    init(source: CurlEvidenceSource, bundle: String, every: TimeInterval, bundlePEM: @escaping @Sendable () throws -> String,
         material: @escaping @Sendable (String) throws -> TLSClientMaterial) {
        self.source = source
        self.every = every
        self.bundlePEM = bundlePEM
        self.material = material
        state = Mutex((bundle, false))
    }

    func start() {
        state.withLock { $0.running = true }
        let thread = Thread { [self] in
            while state.withLock({ $0.running }) {
                check()
                Thread.sleep(forTimeInterval: every)
            }
        }
        thread.name = "vouch-pull-trust"
        thread.start()
    }

    func stop() { state.withLock { $0.running = false } }

    /// One look: new material for the source when the bundle changed (kept as it was when the
    /// bundle cannot be read or the material cannot be made; tried again next time).
    func check() {
        guard let now = try? bundlePEM(), now != state.withLock({ $0.bundle }) else { return }
        do {
            source.update(material: try material(now))
            state.withLock { $0.bundle = now }
            Runtime.log("pull TLS: the trust bundle changed; connections kept under the old one are closed")
        } catch {
            Runtime.log("pull TLS: the trust bundle changed but new TLS material could not be made: \((error as? VouchError)?.message ?? "\(error)")")
        }
    }
}
