internal import CCurl
internal import CVouchShims
import Foundation
import Synchronization
import VouchCore

/// Kept-alive connections for `.pinned` clients (the broker pulling evidence from attesters): one
/// TLS connection per attester, reused from round to round, so a round costs a request and an
/// answer instead of a TCP and TLS handshake, a new SSL_CTX, the trust store and client identity
/// installed into it and the attester's certificate decoded and verified.
///
/// Why dedicated easy handles and not one multi handle with CURLMOPT_MAXCONNECTS: the `.pinned`
/// transport's safety rests on curl never handing one client's connection, TLS session or CA
/// store to another, because curl's cache keys cannot see what the SSL_CTX hook installs (the
/// trust anchors, the client identity). A multi handle shares one connection cache and, with
/// session IDs on, one session cache among all its transfers, keyed by curl's view alone. Here each
/// key — the attester's scheme, host and port, the key pin, and the `PreloadedTLS` itself (its
/// object: new TLS material is a new key, and vouchd also drops the whole pool then) — has its own
/// easy handles, never lent to another key; each handle's private connection cache
/// (CURLOPT_MAXCONNECTS 1) keeps its one connection, and its private TLS session cache
/// (CURLOPT_SSL_SESSIONID_CACHE, on only here) lets a reconnect to the same attester under the same
/// trust resume instead of a full handshake. A session is never offered to another key, and curl
/// still checks CURLOPT_PINNEDPUBLICKEY against the certificate a resumed session carries (a server
/// whose key changed cannot resume a session and fails the pin on the full handshake it needs).
///
/// Bounds:
/// - `capacity` idle handles in all (their connections open); checking one in beyond that closes
///   the least recently used idle one;
/// - a handle serves one request at a time: a second concurrent request to the same key gets
///   another handle (kept too if there is room);
/// - a handle older than `maxConnectionAge` is closed instead of reused, with its connection and
///   its session cache, so every verification a request relies on (the attester's chain against the
///   trust anchors, its certificate's validity) was made at most that long ago; curl's
///   CURLOPT_MAXLIFETIME_CONN bounds the connection itself the same way;
/// - a handle whose transfer failed is closed (its connection's state is unknown).
public final class PinnedConnectionPool: Sendable {
    /// What the pool has done since it was made (for tests, metrics and benchmarks).
    public struct Statistics: Sendable, Equatable {
        /// Requests sent through the pool.
        public var requests = 0
        /// New connections made (curl's CURLINFO_NUM_CONNECTS summed): a request that reused a kept
        /// connection adds nothing.
        public var connections = 0
        /// Idle handles closed to stay within `capacity`.
        public var evicted = 0
        /// Handles closed because their transfer failed or they outlived `maxConnectionAge`.
        public var discarded = 0
        /// Handles idle in the pool now.
        public var idle = 0
    }

    /// The most idle handles (each with its connection) kept.
    public let capacity: Int
    /// Seconds after which a handle, its connection and its TLS sessions are closed rather than reused.
    public let maxConnectionAge: Int

    private let state = Mutex(State())

    /// 20 minutes: longer than the default policy's 15-minute re-attestation interval (a shorter
    /// bound would re-handshake every round), short enough that an attester certificate that
    /// expired, or trust that changed outside a CA rotation, is re-verified within that long.
    public static let defaultMaxConnectionAge = 1200

    /// `capacity` at least 1; `maxConnectionAge` (seconds, at least 1) bounds how old a
    /// verification a request may rely on.
    public init(capacity: Int, maxConnectionAge: Int = PinnedConnectionPool.defaultMaxConnectionAge) {
        self.capacity = max(1, capacity)
        self.maxConnectionAge = max(1, maxConnectionAge)
    }

    deinit {
        let handles = state.withLock { s in s.drain() }
        for h in handles { h.close() }
    }

    public var statistics: Statistics { state.withLock { $0.stats } }

    /// Closes every idle handle (its connection with it) now. Handles in use are checked in as
    /// usual; a pool no longer referenced closes them when the last request using it is done.
    public func closeIdle() {
        let handles = state.withLock { s in s.drain() }
        for h in handles { h.close() }
        state.withLock { $0.stats.discarded += handles.count }
    }

    /// Which handles a request may use: one attester (scheme, host and port as curl parses the
    /// URL), one pin, one TLS material (by object identity; held, so the identity is not reused).
    struct Key: Hashable {
        let origin: String
        let pin: String
        let hook: SSLContextHook
        static func == (a: Key, b: Key) -> Bool { a.origin == b.origin && a.pin == b.pin && a.hook === b.hook }
        func hash(into h: inout Hasher) {
            h.combine(origin)
            h.combine(pin)
            h.combine(ObjectIdentifier(hook))
        }
    }

    /// A handle for one request to `key`: an idle one of that key (the most recently used, its
    /// connection likeliest still open) unless it is too old, else a new one.
    func checkOut(_ key: Key) throws -> KeptHandle {
        let now = ContinuousClock.now
        let maxAge = Duration.seconds(maxConnectionAge)
        var stale: [KeptHandle] = []
        let found: KeptHandle? = state.withLock { s in
            while let h = s.pop(key) {
                if now - h.created < maxAge { return h }
                stale.append(h)
            }
            return nil
        }
        if !stale.isEmpty {
            for h in stale { h.close() }
            state.withLock { $0.stats.discarded += stale.count }
        }
        if let found { return found }
        guard let raw = curl_easy_init() else { throw VouchError(.http, "curl_easy_init failed") }
        return KeptHandle(raw: raw, key: key, created: now)
    }

    /// Takes a handle back after its request: kept (options reset; connection and sessions
    /// stay) when the transfer succeeded and the handle is young enough, else closed. Keeping it
    /// may close the least recently used idle handle.
    func checkIn(_ handle: KeptHandle, transferOK: Bool, newConnections: Int) {
        let young = ContinuousClock.now - handle.created < Duration.seconds(maxConnectionAge)
        if transferOK && young { curl_easy_reset(handle.raw) }
        let closing: [KeptHandle] = state.withLock { s in
            s.stats.requests += 1
            s.stats.connections += newConnections
            guard transferOK && young else {
                s.stats.discarded += 1
                return [handle]
            }
            s.push(handle)
            var out: [KeptHandle] = []
            while s.count > capacity, let oldest = s.popLeastRecent() {
                out.append(oldest)
                s.stats.evicted += 1
            }
            // Handles no request came back for (a deleted or re-keyed host's) drift to the least
            // recent end: closed there once past the maximum age, so their sockets (which the
            // attester may have closed: CLOSE_WAIT) do not stay open until the capacity evicts them.
            while let oldest = s.leastRecent, ContinuousClock.now - oldest.created >= Duration.seconds(maxConnectionAge), let h = s.popLeastRecent() {
                out.append(h)
                s.stats.discarded += 1
            }
            return out
        }
        for h in closing { h.close() }
    }

    /// The idle handles: per key a stack (most recent last), and across keys a doubly linked
    /// list in check-in order for eviction.
    private struct State: ~Copyable {
        var byKey: [Key: [KeptHandle]] = [:]
        var newest: KeptHandle?
        var oldest: KeptHandle?
        var count = 0
        var stats = Statistics()

        mutating func push(_ h: KeptHandle) {
            byKey[h.key, default: []].append(h)
            h.newer = nil
            h.older = newest
            newest?.newer = h
            newest = h
            if oldest == nil { oldest = h }
            count += 1
            stats.idle = count
        }

        mutating func pop(_ key: Key) -> KeptHandle? {
            guard var list = byKey[key], let h = list.popLast() else { return nil }
            byKey[key] = list.isEmpty ? nil : list
            unlink(h)
            return h
        }

        var leastRecent: KeptHandle? { oldest }

        mutating func popLeastRecent() -> KeptHandle? {
            guard let h = oldest else { return nil }
            if var list = byKey[h.key], let i = list.firstIndex(where: { $0 === h }) {
                list.remove(at: i)
                byKey[h.key] = list.isEmpty ? nil : list
            }
            unlink(h)
            return h
        }

        private mutating func unlink(_ h: KeptHandle) {
            if let newer = h.newer { newer.older = h.older } else { newest = h.older }
            if let older = h.older { older.newer = h.newer } else { oldest = h.newer }
            h.newer = nil
            h.older = nil
            count -= 1
            stats.idle = count
        }

        mutating func drain() -> [KeptHandle] {
            var out: [KeptHandle] = []
            while let h = popLeastRecent() { out.append(h) }
            return out
        }
    }
}

/// A curl easy handle dedicated to one pool key, with its own connection cache and TLS session
/// cache; linked into the pool's recency list while idle (guarded by the pool's lock).
final class KeptHandle: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer
    let key: PinnedConnectionPool.Key
    let created: ContinuousClock.Instant
    var newer: KeptHandle?
    weak var older: KeptHandle?

    init(raw: UnsafeMutableRawPointer, key: PinnedConnectionPool.Key, created: ContinuousClock.Instant) {
        self.raw = raw
        self.key = key
        self.created = created
    }

    /// Closes the connection and frees the handle (its TLS sessions with it). Called once, by
    /// whoever took the handle out of the pool or off a request.
    func close() { curl_easy_cleanup(raw) }
}
