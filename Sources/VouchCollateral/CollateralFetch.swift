import Foundation
import Synchronization
import VouchCore

// What the collateral fetchers (`IntelPCSFetcher`, `AMDKDSFetcher`) share: their errors, their
// limits, the gate that keeps a hostile host from making the broker hammer a vendor, and one
// bounded GET. Fetched bytes are unverified: the verifiers check them; the fetchers bound sizes,
// parse, and cache.

extension ErrorCode {
    /// A vendor's collateral service did not answer, or answered with a status other than 200.
    /// The broker logs it; the verifier then sees no collateral (TDX: the TCB is unknown; SEV-SNP
    /// without a VCEK: `snp_vcek_unavailable`).
    public static let collateralFetchFailed = ErrorCode("collateral_fetch_failed", status: 502)
    /// A vendor's collateral service answered 200 with something too large, without a header it
    /// must send, or that does not parse (JSON, CRL, certificate). Nothing is cached; logged as
    /// `collateral_fetch_failed` is.
    public static let collateralResponseInvalid = ErrorCode("collateral_response_invalid", status: 502)
}

/// How often and how much the fetchers may ask a vendor. At most one fetch per key (an FMSPC; a
/// product, chip and TCB; a product line's CRL for VCEKs or VLEKs) per `minInterval`, however many
/// requests name it, and at most one fetch of a key at a time (others wait for it and then use
/// what it got). Beyond that, fetches draw on budgets per `window` (`FetchGate.Budget`):
/// `maxFetchesPerWindow` in all for TDX platforms and for the VCEKs of chips the cache already
/// knows; `maxNewChipFetchesPerWindow`, apart, for the VCEKs of chips it has never held — a
/// report's CHIP_ID and TCB are the host's to choose, so a host making up chips can spend only
/// that budget; AMD's CRLs (a handful of keys: product line × VCEK/VLEK) draw on none, their key's
/// interval bounds them. A VCEK that KDS answers 404 for is not asked again for
/// `notFoundInterval`. A cached entry is refreshed after `refreshAfter`, and must be once a part
/// of it expires.
public struct CollateralFetchLimits: Sendable {
    public var minInterval: TimeInterval
    public var maxFetchesPerWindow: Int
    public var maxNewChipFetchesPerWindow: Int
    public var window: TimeInterval
    public var refreshAfter: TimeInterval
    public var notFoundInterval: TimeInterval
    /// Any one response body larger than this is refused (`collateral_response_invalid`); a
    /// client built for a fetcher should cut a transfer off there (vouchd's do).
    public var maxResponseBytes: Int

    public init(minInterval: TimeInterval = 300, maxFetchesPerWindow: Int = 30, maxNewChipFetchesPerWindow: Int = 10, window: TimeInterval = 60,
                refreshAfter: TimeInterval = 86_400, notFoundInterval: TimeInterval = 3600, maxResponseBytes: Int = 1 << 20) {
        self.minInterval = minInterval
        self.maxFetchesPerWindow = maxFetchesPerWindow
        self.maxNewChipFetchesPerWindow = maxNewChipFetchesPerWindow
        self.window = window
        self.refreshAfter = refreshAfter
        self.notFoundInterval = notFoundInterval
        self.maxResponseBytes = maxResponseBytes
    }
}

/// The fetch gate: one lock per key (a fetch of a key runs once at a time; later callers wait
/// and then see what it stored), and the record of attempts by the broker's clock that decides
/// whether a fetch may start (`CollateralFetchLimits`).
final class FetchGate: Sendable {
    /// What a fetch counts against besides its key's interval.
    enum Budget: Hashable {
        /// `maxFetchesPerWindow`: TDX platforms, VCEKs of chips the cache knows.
        case shared
        /// `maxNewChipFetchesPerWindow`: VCEKs of chips the cache has never held.
        case newChips
        /// Nothing: keys few and fixed (AMD's CRLs), bounded by their interval alone.
        case keyOnly
    }

    let limits: CollateralFetchLimits
    private struct State {
        /// Per key: no fetch before this time.
        var notBefore: [String: Date] = [:]
        var recent: [Budget: [Date]] = [:]
        var locks: [String: NSLock] = [:]
    }
    private let state = Mutex(State())

    init(limits: CollateralFetchLimits) { self.limits = limits }

    /// Runs `body` holding `key`'s lock.
    func serialized<T>(_ key: String, _ body: () throws -> T) rethrows -> T {
        let lock = state.withLock { s in
            if let l = s.locks[key] { return l }
            if s.locks.count >= 4096 {   // drop the idle ones
                for (k, l) in s.locks where l.try() { l.unlock(); s.locks[k] = nil }
            }
            let l = NSLock()
            s.locks[key] = l
            return l
        }
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Whether a fetch of `key` may start at `now`; if so it is recorded as an attempt, against
    /// `budget` (a clock that goes back keeps the key blocked).
    func mayFetch(_ key: String, budget: Budget = .shared, at now: Date) -> Bool {
        state.withLock { s in
            if let next = s.notBefore[key], now < next { return false }
            if let cap = cap(budget) {
                var recent = s.recent[budget] ?? []
                recent.removeAll { now.timeIntervalSince($0) >= limits.window || $0 > now }
                guard recent.count < cap else { s.recent[budget] = recent; return false }
                recent.append(now)
                s.recent[budget] = recent
            }
            if s.notBefore.count >= 65_536 { s.notBefore = s.notBefore.filter { now < $0.value } }
            s.notBefore[key] = now.addingTimeInterval(limits.minInterval)
            return true
        }
    }

    /// No fetch of `key` before `until` (a vendor said it has no such thing).
    func holdOff(_ key: String, until: Date) {
        state.withLock { $0.notBefore[key] = until }
    }

    private func cap(_ budget: Budget) -> Int? {
        switch budget {
        case .shared: limits.maxFetchesPerWindow
        case .newChips: limits.maxNewChipFetchesPerWindow
        case .keyOnly: nil
        }
    }
}

/// One GET through a vendor's transport: status 200, a body of at most `limit` bytes.
struct ServiceGet {
    let transport: any HTTPTransport
    /// For messages: "Intel PCS", "AMD KDS".
    let service: String

    func callAsFunction(_ path: String, limit: Int) throws -> HTTPResponse {
        let response: HTTPResponse
        do { response = try transport.send("GET", path, headers: ["Accept": "*/*"], body: nil) } catch let e as VouchError {
            throw VouchError(.collateralFetchFailed, "\(service) did not answer GET \(path): \(e.message)", context: ["path": path], cause: e)
        }
        guard response.status == 200 else {
            throw VouchError(.collateralFetchFailed, "\(service) answered GET \(path) with status \(response.status)",
                             context: ["path": path, "status": "\(response.status)"])
        }
        guard response.body.count <= limit else {
            throw VouchError(.collateralResponseInvalid, "\(service)'s answer to GET \(path) is larger than allowed",
                             context: ["path": path, "expected": "<= \(limit)", "got": "\(response.body.count)"])
        }
        return response
    }

    /// A header of `response` (names compared without case), URL-decoded as PCS sends its
    /// issuer chains; `collateral_response_invalid` when it is missing or does not decode.
    func header(_ name: String, of response: HTTPResponse, path: String) throws -> String {
        guard let raw = response.headers.last(where: { $0.0.caseInsensitiveCompare(name) == .orderedSame })?.1,
              let decoded = raw.removingPercentEncoding, !decoded.isEmpty else {
            throw VouchError(.collateralResponseInvalid, "\(service)'s answer to GET \(path) lacks the header \(name)", context: ["path": path, "field": name])
        }
        return decoded
    }

    /// `collateral_response_invalid` for bytes that do not parse.
    func invalid(_ what: String, path: String, _ error: Error) -> VouchError {
        VouchError(.collateralResponseInvalid, "\(service)'s answer to GET \(path) is not \(what)", context: ["path": path], cause: error as? VouchError)
    }
}
