import Foundation
import Synchronization
import VouchCore
import VouchModel

// Several vouchd on one shared store (PostgreSQL): each follows what the others commit, and the
// jobs only one may run (log sequencing, webhook delivery) go to whoever holds their lease.

/// A singleton job's lease, as one broker holds it: `acquire` returns the store fenced by the
/// lease while this broker holds the job (taking it when free, renewing it when a third of its
/// time is left), nil while another replica does or the database cannot be reached. Every write
/// through the fenced store checks the lease in its own transaction, so a broker that paused past
/// its lease (a stop, a partition) writes nothing once another took the job.
public final class LeaseGate: Sendable {
    let shared: any SharedStore
    public let job: LeaseJob
    public let holder: String
    let ttl: TimeInterval
    let clock: Clock
    let log: @Sendable (String) -> Void
    private let held = Mutex<(lease: Lease, store: any BrokerStore & LogStore)?>(nil)

    /// `holder`: this broker, unique among the replicas (host name, process id and a random part).
    public init(shared: any SharedStore, job: LeaseJob, holder: String, ttl: TimeInterval = 5, clock: Clock, log: @escaping @Sendable (String) -> Void) {
        self.shared = shared; self.job = job; self.holder = holder; self.ttl = ttl; self.clock = clock; self.log = log
    }

    /// A name for this process among the replicas.
    public static func holderName() -> String {
        "\(ProcessInfo.processInfo.hostName)/\(getpid())/\(UInt32.random(in: 0...UInt32.max))"
    }

    public func acquire() -> (any BrokerStore & LogStore)? {
        let now = clock.now()
        if let h = held.withLock({ $0 }), h.lease.expiresAt.timeIntervalSince(now) > ttl * 2 / 3 { return h.store }
        let previous = held.withLock { $0?.lease }
        do {
            guard let lease = try shared.acquireLease(job, holder: holder, ttl: ttl, now: now) else {
                if previous != nil { log("\(job.rawValue): another replica holds the job now") }
                held.withLock { $0 = nil }
                return nil
            }
            let store = shared.fenced(by: lease)
            held.withLock { $0 = (lease, store) }
            if previous?.epoch != lease.epoch { log("\(job.rawValue): this replica runs the job (lease epoch \(lease.epoch))") }
            return store
        } catch {
            held.withLock { $0 = nil }
            return nil
        }
    }

    /// Gives the job up (graceful shutdown): another replica takes it at its next round.
    public func release() {
        guard let lease = held.withLock({ h in defer { h = nil }; return h?.lease }) else { return }
        try? shared.releaseLease(lease)
    }
}

/// Follows the shared store: when another replica commits a revocation or a CRL, this broker's
/// CRL and OCSP caches are dropped (the next answer reads the store); when it commits events,
/// this broker's event streams wake. Waits on the database's notifications, and reads the
/// revision at least every `every` seconds whatever they say (a lost LISTEN connection only
/// costs that); after the database was unreachable it drops the caches once it is back.
public final class ReplicaFollower: Sendable {
    let shared: any SharedStore
    let service: BrokerService
    let every: TimeInterval
    let log: @Sendable (String) -> Void
    private let running = Mutex(false)
    private let stopped = DispatchSemaphore(value: 0)

    public init(shared: any SharedStore, service: BrokerService, every: TimeInterval = 0.25, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.shared = shared; self.service = service; self.every = every; self.log = log
    }

    public func start() {
        running.withLock { $0 = true }
        service.storeFollowed(for: 0)   // until the first reading, the caches do not answer
        let thread = Thread { [self] in
            var known: StoreRevision?
            var failing = false
            while running.withLock({ $0 }) {
                do {
                    let now = try known.map { try shared.waitForChange(after: $0, timeout: every) } ?? shared.revision()
                    if failing { log("replica: the shared store answers again; caches dropped"); failing = false }
                    follow(from: known, to: now)
                    known = now
                } catch {
                    if !failing { log("replica: the shared store does not answer: \((error as? VouchError)?.message ?? "\(error)")") }
                    failing = true
                    known = nil
                    Thread.sleep(forTimeInterval: every)
                }
            }
            stopped.signal()
        }
        thread.name = "vouch.replica"
        thread.start()
    }

    /// What moved between two readings (nil: unknown, e.g. the first one or after an outage); the
    /// caches may answer for `confirmFor` after a reading.
    func follow(from old: StoreRevision?, to new: StoreRevision) {
        service.storeChanged(revocations: old?.crls != new.crls, events: old?.events != new.events)
        service.storeFollowed(for: Self.confirmFor)
    }

    /// How long the CRL and OCSP caches answer after the follower last read the revision: three
    /// readings' worth, so one slow reading does not bypass them, and well under the 1 s in which a
    /// revocation at another replica must show here.
    static let confirmFor: TimeInterval = 0.75

    public func stop() {
        guard running.withLock({ r in defer { r = false }; return r }) else { return }
        _ = stopped.wait(timeout: .now() + every + 6)
    }
}

extension BrokerService {
    /// The shared store changed under this broker (another replica, or an outage that may have
    /// hidden changes): `revocations` drops the in-memory CRLs and OCSP answers — the next request
    /// reads the store —, `events` wakes the event streams and the webhook dispatcher.
    public func storeChanged(revocations: Bool, events: Bool) {
        if revocations {
            context.responseCache.write { $0.crls.removeAll(); $0.ocsp.removeAll(); $0.generation += 1 }
            // What other replicas published raises this broker's watermark too, so that it never
            // signs or serves a CRL older than one it could have seen.
            for ca in context.authorities.signing {
                if let crl = try? store.currentCRL(issuer: ca.keyID) { context.revocations.watermark.raise([crl]) }
            }
        }
        if events { context.events.notify() }
    }

    /// The follower read the store's revision: the caches may answer for `seconds` more.
    public func storeFollowed(for seconds: TimeInterval) {
        let until = DispatchTime.now().uptimeNanoseconds + UInt64(max(0, seconds) * 1e9)
        context.responseCache.write { $0.followedUntil = until }
    }
}
