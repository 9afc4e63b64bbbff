import Foundation
import Synchronization
import VouchCore
import VouchCrypto
import VouchHTTPClient

extension ErrorCode {
    /// The receipt proxy forwards only origin-form request targets (`/path?query`); anything
    /// else could make its upstream client reach another host.
    public static let requestTargetInvalid = ErrorCode("request_target_invalid", status: 400)
    /// A request header's name or value has a control character (a bare CR, NUL, DEL, …).
    public static let requestHeaderInvalid = ErrorCode("request_header_invalid", status: 400)
    /// The upstream sent a 2xx answer with a content coding although the proxy asked for
    /// `identity`: a receipt would cover bytes the client's library does not show it.
    public static let upstreamEncoded = ErrorCode("upstream_encoded", status: 502)
    /// The proxy already holds its limit of request and answer bytes across connections.
    public static let proxyBusy = ErrorCode("proxy_busy", status: 503)
    /// No receipt is kept under that reference (never issued, expired or evicted).
    public static let receiptNotFound = ErrorCode("receipt_not_found", status: 404)
}

/// The bytes the proxy holds across all connections (request bodies, answers read whole,
/// streamed output kept for its receipt), capped at `limit`.
final class InFlightBudget: Sendable {
    let limit: Int
    private let used = Mutex(0)
    init(limit: Int) { self.limit = limit }

    var inUse: Int { used.withLock { $0 } }

    /// A hold on the budget for one request, released once (`release`) when it is over.
    func hold() -> Hold { Hold(self) }

    fileprivate func take(_ n: Int) -> Bool {
        used.withLock { u in
            guard u + n <= limit else { return false }
            u += n
            return true
        }
    }
    fileprivate func give(_ n: Int) { used.withLock { $0 -= n } }

    final class Hold: Sendable {
        private let budget: InFlightBudget
        private let held = Mutex(0)
        fileprivate init(_ budget: InFlightBudget) { self.budget = budget }

        /// Adds `n` bytes to the hold; throws `proxy_busy` when the budget has no room.
        func add(_ n: Int) throws {
            try held.withLock { h in
                guard budget.take(n) else {
                    throw VouchError(.proxyBusy, "the proxy holds its limit of \(budget.limit) bytes in flight; try again later")
                }
                h += n
            }
        }

        func release() { held.withLock { h in budget.give(h); h = 0 } }
        deinit { release() }
    }
}

/// Receipts too large for a response header (`ReceiptProxy.maxReceiptHeaderBytes`), kept in
/// memory for `lifetime` so the client can fetch them at
/// `GET /.well-known/vouch/receipts/<ref>`; at most `capacity`, the oldest dropped first.
final class ReceiptShelf: Sendable {
    static let pathPrefix = "/.well-known/vouch/receipts/"
    let capacity: Int
    let lifetime: TimeInterval
    private let entries = Mutex<[(ref: String, bundle: [UInt8], until: Date)]>([])

    init(capacity: Int = 256, lifetime: TimeInterval = 600) {
        self.capacity = capacity
        self.lifetime = lifetime
    }

    /// Keeps `bundle`, returns its reference (32 hex digits, random).
    func put(_ bundle: [UInt8], now: Date) throws -> String {
        let ref = Hex.encode(try Crypto.randomBytes(16))
        entries.withLock { e in
            e.removeAll { $0.until <= now }
            if e.count >= capacity { e.removeFirst(e.count - capacity + 1) }
            e.append((ref, bundle, now.addingTimeInterval(lifetime)))
        }
        return ref
    }

    func get(_ ref: String, now: Date) -> [UInt8]? {
        entries.withLock { e in e.first { $0.ref == ref && $0.until > now }?.bundle }
    }
}

extension ReceiptProxy {
    /// The largest base64 receipt sent in the `Vouch-Receipt` header; a larger one is kept on
    /// the shelf and named by `Vouch-Receipt-Ref`.
    public static let maxReceiptHeaderBytes = 48 << 10
    /// The per-connection memory the proxy's HTTP server needs for its answers' headers.
    public static let connectionMemoryLimit = 256 << 10

    /// The proxy's idle timeout for client connections: at least the upstream timeout, so a
    /// stream whose upstream pauses between events is not cut by the proxy's own server.
    public static func connectionIdleTimeout(upstreamTimeout: Int) -> Int { max(30, upstreamTimeout) }

    /// Why the request cannot be forwarded: a target that is not origin-form, or a header whose
    /// name is not a token or whose value has a control character (other than HTAB).
    static func requestProblem(_ request: HTTPRequest) -> VouchError? {
        if let problem = HTTPClient.originFormProblem(request.target) {
            return VouchError(.requestTargetInvalid, "the request target must be origin-form (/path?query): \(problem)")
        }
        for (name, value) in request.headers {
            if let problem = HTTPClient.headerProblem(name, value) {
                return VouchError(.requestHeaderInvalid, "a request header cannot be forwarded: \(problem)", context: ["header": String(name.prefix(100))])
            }
        }
        return nil
    }
}
