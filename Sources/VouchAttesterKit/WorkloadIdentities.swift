import Foundation
import VouchAPI
import VouchCore
import VouchCrypto

/// What the Workload API asks of the broker, as closures (the attester's real calls in
/// `Attester.workloadBroker`, fakes in tests).
public struct WorkloadBroker: Sendable {
    /// Enrolls (or renews) an agent through the attested path: a fresh quote, the policy.
    public var enroll: @Sendable (AgentEnrollRequest) throws -> EnrollResponse
    /// The trust bundle (`GET /v1/bundle`: the current, previous and next CA roots), PEM.
    public var bundle: @Sendable () throws -> String
    /// A JWT-SVID for the agent certificate `serial` and the audiences (`POST /v1/hosts/ID/jwt-svids`).
    public var jwtSVID: @Sendable (_ serial: String, _ audience: [String]) throws -> JWTSVIDIssueResponse
    /// The JWT-SVID keys (`GET /v1/jwt-svid/jwks`), a JWK set.
    public var jwks: @Sendable () throws -> [UInt8]

    public init(enroll: @escaping @Sendable (AgentEnrollRequest) throws -> EnrollResponse, bundle: @escaping @Sendable () throws -> String,
                jwtSVID: @escaping @Sendable (String, [String]) throws -> JWTSVIDIssueResponse, jwks: @escaping @Sendable () throws -> [UInt8]) {
        self.enroll = enroll; self.bundle = bundle; self.jwtSVID = jwtSVID; self.jwks = jwks
    }
}

/// One X.509-SVID the attester holds for a workload identity (an agent of this host).
public struct WorkloadSVID: Sendable {
    public let agent: String
    public let spiffeID: String
    public let serial: String
    public let key: PrivateKey
    /// The key as PKCS#8 DER, encoded once when the SVID is stored: streams hand out these bytes
    /// and never touch the key object (a rotation wakes every stream at once).
    public let keyPKCS8: [UInt8]
    public let certificatePEM: String
    /// The certificate, then the issuing chain the broker returned, DER concatenated.
    public let chainDER: [UInt8]
    public let notBefore: Date
    public let notAfter: Date
    /// Half the lifetime: when it is renewed.
    public var rotateAt: Date { notBefore.addingTimeInterval(notAfter.timeIntervalSince(notBefore) / 2) }
}

/// The attester's workload identities: one X.509-SVID per registration entry, issued through the
/// attested enrollment path, renewed at half its lifetime while the host is trusted, withdrawn at
/// once on a revocation or an untrusted verdict (`BrokerEventWatcher`), never served past its
/// expiry, and kept while the broker is unreachable. Streams wait on `waitForChange`.
///
/// The rules, in the order `maintain` applies them each second:
/// 1. an SVID past its notAfter is dropped (served until then even when the broker is down);
/// 2. with the host untrusted (an event said so), nothing is issued or renewed;
/// 3. an entry without an SVID, not withdrawn, is enrolled (backing off after failures: 1 s
///    doubling to 60 s); a refusal by the broker (4xx) leaves it without one until the next try;
/// 4. an SVID past half its lifetime is renewed (`renewal` proof by the current key); a refusal
///    (4xx but 408 and 429) drops it (the broker no longer vouches for it), a transport failure,
///    a rate limit or a fault keeps it;
/// 5. the bundle is fetched again every minute, the JWT keys every five.
public final class WorkloadIdentities: @unchecked Sendable {
    public let entries: WorkloadEntries
    let broker: WorkloadBroker
    let now: @Sendable () -> Date
    let log: @Sendable (String) -> Void
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var svids: [String: WorkloadSVID] = [:]
    private var withdrawn: Set<String> = []
    private var hostTrusted = true
    private var bundleDER: [UInt8] = []
    private var bundleFetched = Date.distantPast
    private var jwksBytes: [UInt8] = []
    private var jwksFetched = Date.distantPast
    private var nextAttempt: [String: (at: Date, delay: TimeInterval)] = [:]
    private var jwtCache: [String: (token: String, spiffeID: String, expires: Date, issued: Date)] = [:]
    private var generation: UInt64 = 0
    private var stopped = false
    private var wake = false

    public init(entries: WorkloadEntries, broker: WorkloadBroker, now: @escaping @Sendable () -> Date = { Date() },
                log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.entries = entries; self.broker = broker; self.now = now; self.log = log
    }

    // MARK: Reading

    /// The change counter: it moves whenever an SVID, the bundle or the JWT keys change.
    public var currentGeneration: UInt64 { condition.withLock { generation } }

    /// The SVIDs held for `agents` (in that order) and the bundle (DER certificates), with the generation they belong to.
    public func snapshot(_ agents: [String]) -> (generation: UInt64, svids: [WorkloadSVID], bundle: [UInt8]) {
        condition.withLock {
            let t = now()
            return (generation, agents.compactMap { svids[$0] }.filter { $0.notAfter > t }, bundleDER)
        }
    }

    /// The JWT-SVID key set, and its generation.
    public func jwtKeys() -> (generation: UInt64, jwks: [UInt8]) { condition.withLock { (generation, jwksBytes) } }

    /// Blocks until the generation moves past `seen`, `timeout` passes, the identities stop or
    /// `cancelled()` holds (checked whenever `nudge()` wakes the waiters).
    @discardableResult
    public func waitForChange(after seen: UInt64, timeout: TimeInterval, cancelled: () -> Bool = { false }) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while generation == seen && !stopped && !cancelled() {
            if !condition.wait(until: deadline) { break }
        }
        return generation != seen
    }

    /// Wakes every waiter to check its own condition (a stream whose client went away).
    public func nudge() {
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    /// Waits (up to `timeout`) until every agent of `agents` that may have an SVID has one, asking
    /// the maintenance loop to enroll them now.
    public func ensure(_ agents: [String], timeout: TimeInterval, cancelled: () -> Bool = { false }) {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        func done() -> Bool { !hostTrusted || agents.allSatisfy { svids[$0] != nil || withdrawn.contains($0) || (nextAttempt[$0]?.delay ?? 0) > 0 } }
        if done() { return }
        for a in agents { nextAttempt[a] = nil }
        wake = true
        condition.broadcast()
        while !done() && !stopped && !cancelled() {
            if !condition.wait(until: deadline) { break }
        }
    }

    /// Why `agent` has no SVID (nil when it has one or none was tried yet).
    public func refusal(_ agent: String) -> String? {
        condition.withLock {
            if !hostTrusted { return "the broker reported this host untrusted" }
            if withdrawn.contains(agent) { return "the identity was revoked" }
            return nil
        }
    }

    // MARK: Events from the broker

    /// A certificate was revoked: the SVID with that serial is dropped at once. With `withdraw`
    /// (an operator's revocation) its agent is not enrolled again until the attester restarts;
    /// without (the broker's own, for an untrusted or deleted host, which its host event follows)
    /// it comes back by a fresh enrollment once the broker vouches for the host again.
    public func revoked(serial: String, withdraw: Bool = true) {
        changing { state in
            guard let agent = state.svids.first(where: { $0.value.serial.caseInsensitiveCompare(serial) == .orderedSame })?.key else { return false }
            state.svids[agent] = nil
            if withdraw { state.withdrawn.insert(agent) }
            state.jwtCache = state.jwtCache.filter { !$0.key.hasPrefix(agent + "\u{0}") }
            log("workload API: \(agent)'s SVID \(serial) was revoked: \(withdraw ? "withdrawn until the attester restarts" : "dropped")")
            return true
        }
    }

    /// The broker judged this host untrusted (or blocked or deleted it): every SVID is withdrawn
    /// and nothing is issued until it is trusted again.
    public func hostUntrusted(_ why: String) {
        changing { state in
            state.hostTrusted = false
            let had = !state.svids.isEmpty
            state.svids.removeAll()
            state.jwtCache.removeAll()
            log("workload API: \(why): every SVID withdrawn")
            return had
        }
    }

    /// The host is trusted again: identities are issued afresh (revoked ones stay withdrawn).
    public func hostTrustedAgain() {
        changing { state in
            state.hostTrusted = true
            state.nextAttempt.removeAll()
            state.wake = true
            return false
        }
    }

    // MARK: JWT-SVIDs

    /// A JWT-SVID for `agent` and `audience` (sorted, de-duplicated), from the cache while it has
    /// more than half its lifetime left, else from the broker.
    public func jwtSVID(agent: String, audience: [String]) throws -> (spiffeID: String, token: String) {
        let aud = Array(Set(audience)).sorted()
        let key = agent + "\u{0}" + aud.joined(separator: "\u{0}")
        let t = now()
        let (svid, cached): (WorkloadSVID?, (token: String, spiffeID: String, expires: Date, issued: Date)?) = condition.withLock {
            (svids[agent].flatMap { $0.notAfter > t ? $0 : nil }, jwtCache[key])
        }
        guard let svid else { throw VouchError(.workloadNoIdentity, "no X.509-SVID is held for \(agent)", context: ["agent": agent]) }
        if let cached, cached.spiffeID == svid.spiffeID, t < cached.issued.addingTimeInterval(cached.expires.timeIntervalSince(cached.issued) / 2) {
            return (cached.spiffeID, cached.token)
        }
        let issued = try broker.jwtSVID(svid.serial, aud)
        guard issued.spiffeId == svid.spiffeID, let expires = Date.parseRFC3339(issued.expiresAt) else {
            throw VouchError(.http, "the broker's JWT-SVID names another identity or no expiry", context: ["agent": agent])
        }
        condition.withLock {
            if jwtCache.count > 4096 { jwtCache.removeAll() }
            jwtCache[key] = (issued.token, issued.spiffeId, expires, t)
        }
        return (issued.spiffeId, issued.token)
    }

    /// The JWT keys again now (a token names a key id the set lacks).
    public func refreshJWTKeys() {
        if let keys = try? broker.jwks() { setJWKS(keys) }
    }

    // MARK: The maintenance loop

    /// Starts the loop on its own thread; `stop()` ends it.
    public func start() {
        let thread = Thread { [self] in
            while !condition.withLock({ stopped }) {
                maintain()
                condition.lock()
                if !wake && !stopped { _ = condition.wait(until: Date().addingTimeInterval(1)) }
                wake = false
                condition.unlock()
            }
        }
        thread.name = "vouch.workload.identities"
        thread.stackSize = 1 << 20
        thread.start()
    }

    public func stop() {
        condition.withLock { stopped = true; condition.broadcast() }
    }

    /// One pass of the rules in the type's comment (called by the loop; tests call it directly).
    public func maintain() {
        let t = now()
        let (trusted, held, blocked) = condition.withLock { () -> (Bool, [String: WorkloadSVID], Set<String>) in
            (hostTrusted, svids, withdrawn.union(nextAttempt.filter { $0.value.at > t }.map(\.key)))
        }
        // 1. expiry
        let expired = held.values.filter { $0.notAfter <= t }.map(\.agent)
        if !expired.isEmpty {
            changing { state in
                for a in expired { state.svids[a] = nil }
                log("workload API: expired without renewal: \(expired.joined(separator: ", "))")
                return true
            }
        }
        if condition.withLock({ bundleFetched }) < t.addingTimeInterval(-60) || condition.withLock({ bundleDER.isEmpty }) { refreshBundle(t) }
        if condition.withLock({ jwksFetched }) < t.addingTimeInterval(-300) {
            condition.withLock { jwksFetched = t }
            refreshJWTKeys()
        }
        guard trusted else { return }   // 2.
        for entry in entries.entries where !blocked.contains(entry.agent) {
            if let current = held[entry.agent], current.notAfter > t {
                if t >= current.rotateAt { issue(entry, renewing: current) }   // 4.
            } else {
                issue(entry, renewing: nil)   // 3.
            }
        }
    }

    private func refreshBundle(_ t: Date) {
        guard let pem = try? broker.bundle(), let certs = try? Certificate.chain(pem: pem), !certs.isEmpty,
              let der = try? certs.flatMap({ try $0.der }) else { return }
        changing { state in
            state.bundleFetched = t
            guard state.bundleDER != der else { return false }
            state.bundleDER = der
            return true
        }
    }

    private func setJWKS(_ keys: [UInt8]) {
        changing { state in
            guard state.jwksBytes != keys else { return false }
            state.jwksBytes = keys
            return true
        }
    }

    private func issue(_ entry: WorkloadEntry, renewing current: WorkloadSVID?) {
        do {
            let key = try PrivateKey.generate(entry.keyType == "p384" ? .p384 : .p256)
            let csr = try CSR.create(key: key, commonName: entry.agent)
            let renewal = try current.map { RenewalBody(certificate: $0.certificatePEM, proof: Base64.encode(try $0.key.sign(try csr.der))) }
            let issued = try broker.enroll(AgentEnrollRequest(agentName: entry.agent, csr: try csr.pem, renewal: renewal))
            let chain = try Certificate.chain(pem: issued.certificate + issued.caCertificate)
            guard let leaf = chain.first, try leaf.publicKey.isEqual(to: key.publicKey) else {
                throw VouchError(.crypto, "the broker returned a certificate for another key")
            }
            let svid = WorkloadSVID(agent: entry.agent, spiffeID: issued.spiffeId, serial: issued.serial, key: key, keyPKCS8: try key.pkcs8DER,
                                    certificatePEM: issued.certificate, chainDER: try chain.flatMap { try $0.der },
                                    notBefore: leaf.notBefore, notAfter: leaf.notAfter)
            if condition.withLock({ bundleDER.isEmpty }) { refreshBundle(now()) }
            changing { state in
                // An event may have withdrawn the identity or the host meanwhile.
                guard state.hostTrusted, !state.withdrawn.contains(entry.agent) else { return false }
                state.svids[entry.agent] = svid
                state.nextAttempt[entry.agent] = nil
                return true
            }
            // The storing time to the millisecond: the benchmark measures rotation latency from it.
            log("workload API: \(current == nil ? "issued" : "renewed") \(issued.spiffeId) (serial \(issued.serial), until \(leaf.notAfter.iso8601)); stored at "
                + String(format: "%.3f", Date().timeIntervalSince1970))
        } catch {
            // A refusal is the broker's word on this identity (a 4xx); a timeout, a rate limit or a
            // fault (5xx, a proxy's 502) says nothing of it: the SVID is kept until its notAfter.
            let refused = (error as? APIFailure).map { (400...499).contains($0.status) && $0.status != 408 && $0.status != 429 } ?? false
            changing { state in
                let delay = min(60, max(1, (state.nextAttempt[entry.agent]?.delay ?? 0.5) * 2))
                state.nextAttempt[entry.agent] = (now().addingTimeInterval(delay), delay)
                // A renewal the broker refuses: it no longer vouches for this identity.
                if refused, current != nil {
                    state.svids[entry.agent] = nil
                    state.jwtCache = state.jwtCache.filter { !$0.key.hasPrefix(entry.agent + "\u{0}") }
                    return true
                }
                return false
            }
            log("workload API: \(current == nil ? "enrolling" : "renewing") \(entry.agent) failed: \(error)")
        }
    }

    /// Applies `change` under the lock; when it reports a change, moves the generation and wakes
    /// every waiter (streams, `ensure`).
    private func changing(_ change: (inout State) -> Bool) {
        condition.lock()
        var state = State(svids: svids, withdrawn: withdrawn, hostTrusted: hostTrusted, bundleDER: bundleDER, bundleFetched: bundleFetched,
                          jwksBytes: jwksBytes, nextAttempt: nextAttempt, jwtCache: jwtCache, wake: wake)
        let changed = change(&state)
        svids = state.svids; withdrawn = state.withdrawn; hostTrusted = state.hostTrusted; bundleDER = state.bundleDER
        bundleFetched = state.bundleFetched; jwksBytes = state.jwksBytes; nextAttempt = state.nextAttempt; jwtCache = state.jwtCache; wake = state.wake
        if changed { generation &+= 1 }
        condition.broadcast()
        condition.unlock()
    }

    private struct State {
        var svids: [String: WorkloadSVID]
        var withdrawn: Set<String>
        var hostTrusted: Bool
        var bundleDER: [UInt8]
        var bundleFetched: Date
        var jwksBytes: [UInt8]
        var nextAttempt: [String: (at: Date, delay: TimeInterval)]
        var jwtCache: [String: (token: String, spiffeID: String, expires: Date, issued: Date)]
        var wake: Bool
    }
}

extension ErrorCode {
    /// The Workload API: the identity asked for is not held (not yet issued, withdrawn or expired).
    public static let workloadNoIdentity = ErrorCode("workload_no_identity", status: 403)
}
