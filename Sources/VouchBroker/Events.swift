import Foundation
import Synchronization
import VouchCore
import VouchCrypto
import VouchModel

/// Wakes waiters (webhook dispatcher, event streams) when events are appended.
public final class EventNotifier: @unchecked Sendable {
    private let condition = NSCondition()
    private var generation: UInt64 = 0

    public init() {}

    public func notify() {
        condition.lock()
        generation &+= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until the next `notify()` or until `timeout` passes.
    public func wait(timeout: TimeInterval) {
        condition.lock()
        let start = generation
        let deadline = Date().addingTimeInterval(timeout)
        while generation == start && condition.wait(until: deadline) {}
        condition.unlock()
    }
}

extension EventRecord {
    /// The event as pushed: `{"at", "data", "id", "type"}`.
    public var json: String {
        "{\"at\":\"\(at.iso8601)\",\"data\":\(data),\"id\":\(id),\"type\":\"\(type.rawValue)\"}"
    }
}

/// Sends one webhook POST; returns the HTTP status (transport failures throw).
public protocol WebhookTransport: Sendable {
    func post(url: String, headers: [String: String], body: [UInt8]) throws -> Int
}

/// Delivers the event outbox to webhook subscribers, in order per subscriber. Each body is signed:
/// `X-Vouch-Signature: sha256=HEX(HMAC-SHA256(secret, "<X-Vouch-Timestamp>.<body>"))`. A failed
/// delivery is retried after 1, 2, 4, … seconds (at most 5 minutes apart) until it succeeds;
/// attempts and outcomes live in the store, so a restart resumes where delivery stood.
public final class WebhookDispatcher: Sendable {
    public struct Subscriber: Sendable {
        public let url: String
        let secret: [UInt8]
        public init(url: String, secret: [UInt8]) { self.url = url; self.secret = secret }
    }

    let subscribers: [Subscriber]
    let store: BrokerStore
    let transport: WebhookTransport
    let notifier: EventNotifier
    let clock: Clock
    let log: @Sendable (String) -> Void
    /// Replicas on a shared store: only the holder of the webhooks lease delivers, through the
    /// store fenced by it (a delivery recorded after the job moved is refused). nil: this broker alone.
    let gate: LeaseGate?
    private let running = Mutex(false)

    public init(subscribers: [Subscriber], store: BrokerStore, transport: WebhookTransport, notifier: EventNotifier, clock: Clock,
                gate: LeaseGate? = nil, log: @escaping @Sendable (String) -> Void) throws {
        self.subscribers = subscribers
        self.gate = gate
        self.store = store
        self.transport = transport
        self.notifier = notifier
        self.clock = clock
        self.log = log
        for s in subscribers { _ = try store.registerSubscriber(s.url) }
    }

    public static func signature(secret: [UInt8], timestamp: String, body: [UInt8]) -> String {
        "sha256=" + Hex.encode(Crypto.hmac(.sha256, key: secret, Array("\(timestamp).".utf8) + body))
    }

    public func start() {
        running.withLock { $0 = true }
        let thread = Thread { [self] in
            while running.withLock({ $0 }) {
                for s in subscribers {
                    // The lease is checked before each subscriber's turn and each POST (renewed once
                    // a third of it is gone: what is left exceeds a POST's timeout, so it cannot
                    // lapse during one); the pass stops once another replica has the job.
                    let current: BrokerStore? = if let gate { gate.acquire() } else { store }
                    guard let current, deliver(s, store: current) else { break }
                }
                notifier.wait(timeout: 0.5)
            }
            gate?.release()
        }
        thread.name = "vouch.webhooks"
        thread.start()
    }

    public func stop() {
        running.withLock { $0 = false }
        notifier.notify()
    }

    /// One round for one subscriber: undelivered events in order, stopping at the first one that
    /// is not yet due for a retry or that fails, so no event overtakes an earlier one.
    /// Returns false when the job moved to another replica (`lease_lost`): the pass stops.
    @discardableResult
    func deliver(_ s: Subscriber, store: BrokerStore) -> Bool {
        guard let pending = try? store.undelivered(subscriber: s.url, limit: 50) else { return true }
        for d in pending {
            if let next = d.nextAttempt, next > clock.now() { return true }
            // Before each POST: the lease still held with more time left than a POST may take.
            if let gate, gate.acquire() == nil { return false }
            let body = Array(d.event.json.utf8)
            let timestamp = "\(Int(clock.now().timeIntervalSince1970))"
            let headers = ["Content-Type": "application/json", "X-Vouch-Event": d.event.type.rawValue, "X-Vouch-Event-Id": "\(d.event.id)",
                           "X-Vouch-Timestamp": timestamp, "X-Vouch-Signature": Self.signature(secret: s.secret, timestamp: timestamp, body: body)]
            var failure: String?
            do {
                let status = try transport.post(url: s.url, headers: headers, body: body)
                if !(200..<300).contains(status) { failure = "HTTP \(status)" }
            } catch {
                failure = "\(error)"
            }
            let attempts = d.attempts + 1
            let now = clock.now()
            let next = failure == nil ? nil : now.addingTimeInterval(backoffDelay(failures: attempts, cap: 300))
            do {
                try store.recordDelivery(subscriber: s.url, eventID: d.event.id, delivered: failure == nil, attempts: attempts, nextAttempt: next, error: failure, at: now)
            } catch let e as VouchError where e.code == .leaseLost {
                return false   // another replica delivers now (it may send this event again: at-least-once)
            } catch {
                return true    // the store is down: the next round goes on
            }
            if let failure {
                log("webhook \(s.url) event \(d.event.id) attempt \(attempts) failed: \(failure); retrying at \(next!.iso8601)")
                return true
            }
        }
        return true
    }
}

/// Open event streams, in all and per client address.
struct StreamCounts {
    var total = 0
    var byAddress: [String: Int] = [:]
}

extension BrokerService {
    /// Seconds a client refused a stream is told to wait (`Retry-After`).
    static let streamRetryAfter = 5

    /// Ends open event streams (graceful shutdown): they return at once instead of after their wait.
    public func shutdown() {
        context.closing.withLock { $0 = true }
        events.notify()
    }

    /// A Server-Sent Events stream of the outbox from event `after` on: one `id:`/`event:`/`data:`
    /// frame per event, a `: keepalive` comment after 15 quiet seconds. Refused (`too_many_streams`,
    /// with a retry delay) beyond `config.maxEventStreamsPerAddress` streams open from `peer`, or
    /// `config.maxEventStreams` in all, so one client cannot shut out the others.
    /// `announceCursor` (`from=latest`): the first frame is `id: AFTER` alone (no event), so a
    /// client that reconnects before any event arrives resumes from there with Last-Event-ID.
    public func eventStream(after: Int64, peer: String, announceCursor: Bool = false) throws -> HTTPStream {
        let (perAddress, total) = (config.maxEventStreamsPerAddress, config.maxEventStreams)
        let refusal = context.openStreams.withLock { c -> String? in
            if c.byAddress[peer, default: 0] >= perAddress { return "too many open event streams from this address (at most \(perAddress)); retry later" }
            if c.total >= total { return "too many open event streams; retry later" }
            c.total += 1
            c.byAddress[peer, default: 0] += 1
            return nil
        }
        if let refusal { throw VouchError(.tooManyStreams, refusal, context: ["retryAfter": "\(Self.streamRetryAfter)"]) }
        let cursor = Mutex(after)
        let announce = Mutex(announceCursor)
        let store = self.store, notifier = self.events
        return HTTPStream(next: { [self] in
            if announce.withLock({ a in defer { a = false }; return a }) { return Array("id: \(after)\n\n".utf8) }
            for attempt in 0..<2 {
                if context.closing.withLock({ $0 }) { return nil }
                let from = cursor.withLock { $0 }
                if let batch = try? store.events(after: from, limit: 100), let last = batch.last {
                    cursor.withLock { $0 = last.id }
                    return Array(batch.map { "id: \($0.id)\nevent: \($0.type.rawValue)\ndata: \($0.json)\n\n" }.joined().utf8)
                }
                if attempt == 0 { notifier.wait(timeout: 15) }
            }
            return Array(": keepalive\n\n".utf8)
        }, onClose: { [self] in
            self.context.openStreams.withLock { c in
                c.total -= 1
                c.byAddress[peer, default: 1] -= 1
                if c.byAddress[peer] == 0 { c.byAddress[peer] = nil }
            }
        })
    }
}
