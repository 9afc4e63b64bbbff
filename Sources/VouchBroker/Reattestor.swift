import Foundation
import Synchronization
import VouchCore
import VouchModel

extension ErrorCode {
    /// A hint from a host this broker does not pull (push mode, no policy, blocked).
    public static let hostNotPulled = ErrorCode("host_not_pulled", status: 409)
}

/// Continuous re-attestation. Every host with an activated AK is re-attested at its policy's
/// `reattestation.interval` (each round lands at a random point in the last 10 % of the interval,
/// so a fleet registered at once spreads out):
/// - pull hosts: a fresh nonce, a quote over mTLS from the attester, a verdict — at most
///   `concurrency` rounds in flight, each bounded by the evidence source's timeout;
/// - push hosts: checked every few seconds; a missed report (interval plus slack) is a fault.
/// Hosts with no verdict yet are attested within seconds. After a fault the next try backs off
/// exponentially from 1 s, never later than the interval, so a host that comes back is seen soon
/// and the grace period is measured by repeated tries.
///
/// Every decision is made by `tick(now:)`, which takes the time as an argument and reads no other
/// clock; the thread `start` runs only calls it every 50 ms and queues the pull rounds it returns
/// for `concurrency` worker threads (a round is queued once: its host stays in flight until it ran). Tests call `tick` and `run` themselves with a manual clock, so grace,
/// backoff and overdue reports are checked in milliseconds, in order, the same on every run.
public final class Reattestor: Sendable {
    let service: BrokerService
    let source: EvidenceSource
    let log: @Sendable (String) -> Void
    /// A number in [0, 1) for spreading rounds over the interval (injected so tests are exact).
    let spread: @Sendable () -> Double
    /// Replicas on a shared store: every replica ticks every host, and a round runs where it is
    /// claimed first (`SharedStore.claimRounds`); nil: this broker alone.
    let shared: (shared: any SharedStore, holder: String)?

    /// A pull round `tick` found due (its host is marked in flight until `run` finishes it).
    public struct PullRound: Sendable, Equatable {
        public let hostID: String
        public let interval: TimeInterval
    }

    typealias ListedHost = (id: String, mode: AttestationMode, interval: TimeInterval, state: TrustState)

    struct Plan {
        /// The hosts as last listed, and each one's place in that list.
        private(set) var hosts: [ListedHost] = []
        private(set) var position: [String: Int] = [:]
        /// Listed hosts not yet given a first due time (the next `tick` gives them one).
        var unseen: [String] = []
        var refreshed = Date.distantPast
        /// Each host's next round (pull) or overdue check (push); `queue` orders them.
        private(set) var due: [String: Date] = [:]
        private var queue = DueQueue()
        var inFlight: Set<String> = []
        var faults: [String: Int] = [:]
        /// Hosts whose hint (`hint`) has not yet started its round.
        var hintPending: Set<String> = []
        /// When each host's last hinted round started (hinted rounds are `hintGap` apart).
        var hinted: [String: Date] = [:]

        func host(_ id: String) -> ListedHost? { position[id].map { hosts[$0] } }

        mutating func list(_ listed: [ListedHost]) {
            hosts = listed
            position = Dictionary(listed.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { a, _ in a })
            due = due.filter { position[$0.key] != nil }
            unseen = listed.filter { due[$0.id] == nil }.map(\.id)
            if queue.count > 2 * due.count + 1024 { queue.compact(keeping: due) }
        }

        mutating func setDue(_ id: String, _ at: Date) {
            due[id] = at
            queue.push(at, id)
            if queue.count > 2 * due.count + 1024 { queue.compact(keeping: due) }
        }

        /// Puts a host released without a new due time (a round dropped or not claimed) back in
        /// the timetable at the time it has.
        mutating func requeue(_ id: String) { if let at = due[id] { queue.push(at, id) } }

        /// The listed hosts due at `now` (each once, in list order): entries whose time is no
        /// longer the host's are dropped; a host in flight is put back for a later pass.
        mutating func popDue(now: Date) -> [ListedHost] {
            var picked: [Int: ListedHost] = [:]
            var busy: [String] = []
            while let e = queue.popDue(now: now) {
                guard let i = position[e.id], due[e.id] == e.at, picked[i] == nil else { continue }
                if inFlight.contains(e.id) { busy.append(e.id); continue }
                picked[i] = hosts[i]
            }
            for id in busy { requeue(id) }
            return picked.sorted { $0.key < $1.key }.map(\.value)
        }
    }
    private let plan = Mutex(Plan())
    private let running = Mutex(false)
    /// Pull rounds handed over by the scheduling thread, not yet taken by a worker.
    private let pending = Mutex(PendingRounds())
    /// Signalled once per round queued, and once per worker when stopping.
    private let available = DispatchSemaphore(value: 0)
    /// Entered per round queued, left when it ran or was dropped at `stop`.
    private let finished = DispatchGroup()
    /// How many worker threads run pull rounds.
    let concurrency: Int

    private struct PendingRounds {
        var rounds: [PullRound] = []
        var head = 0
        var closed = false
        mutating func take() -> PullRound? {
            guard head < rounds.count else { return nil }
            defer {
                head += 1
                if head == rounds.count { rounds.removeAll(keepingCapacity: true); head = 0 }
            }
            return rounds[head]
        }
    }

    /// How long after first seeing a host without a verdict the first round starts.
    public static let firstPullDelay: TimeInterval = 2
    /// How often the host list is re-read (new registrations, policy reloads, blocks).
    public static let refreshInterval: TimeInterval = 1

    public init(service: BrokerService, source: EvidenceSource, concurrency: Int = 32, spread: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) },
                shared: (any SharedStore)? = nil, holder: String = "", log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.service = service
        self.shared = shared.map { ($0, holder) }
        self.source = source
        self.concurrency = max(1, concurrency)
        self.spread = spread
        self.log = log
    }

    /// Starts the scheduling thread and `concurrency` worker threads. Pull rounds block (on the
    /// network, on the store), so they run on threads of their own: libdispatch does not grow its
    /// pool for blocking work (measured: about 12 of 32 admitted rounds ran at once).
    public func start() {
        running.withLock { $0 = true }
        pending.withLock { $0.closed = false }
        for i in 0..<concurrency {
            let worker = Thread { [self] in work() }
            worker.name = "vouch-pull-\(i)"
            worker.start()
        }
        let thread = Thread { [self] in loop() }
        thread.name = "vouch-reattestor"
        thread.start()
    }

    /// Stops scheduling, drops the rounds no worker has started (their hosts are released), lets
    /// the workers go and waits (up to `timeout`) for rounds in flight to finish.
    public func stop(timeout: TimeInterval = 10) {
        running.withLock { $0 = false }
        let dropped = pending.withLock { q in
            q.closed = true
            var out: [PullRound] = []
            while let r = q.take() { out.append(r) }
            return out
        }
        plan.withLock { p in for r in dropped { p.inFlight.remove(r.hostID); p.requeue(r.hostID) } }
        for _ in dropped { finished.leave() }
        for _ in 0..<concurrency { available.signal() }
        _ = finished.wait(timeout: .now() + timeout)
    }

    private var isRunning: Bool { running.withLock { $0 } }

    /// Whether `stop` has closed the queue of rounds (no queued round starts from then on).
    public var isStopping: Bool { pending.withLock { $0.closed } }

    /// The scheduling thread: tick, queue the due pull rounds for the workers, sleep.
    private func loop() {
        while isRunning {
            let due = tick(now: service.clock.now())
            if !due.isEmpty {
                let queued = pending.withLock { q in
                    guard !q.closed else { return false }
                    for _ in due { finished.enter() }   // under the lock: `stop` may drop them at once
                    q.rounds.append(contentsOf: due)
                    return true
                }
                if queued {
                    for _ in due { available.signal() }
                } else {   // stopping: release the hosts this pass marked
                    plan.withLock { p in for r in due { p.inFlight.remove(r.hostID); p.requeue(r.hostID) } }
                }
            }
            usleep(50_000)
        }
    }

    /// A worker thread: runs queued rounds one at a time until the queue is closed and empty.
    private func work() {
        while true {
            available.wait()
            let next = pending.withLock { q -> (round: PullRound?, closed: Bool) in (q.take(), q.closed) }
            if let round = next.round {
                _ = run(round)
                finished.leave()
            } else if next.closed {
                return
            }
        }
    }

    /// One scheduling pass at `now`: re-reads the host list when it is `refreshInterval` old (or the
    /// clock went back), gives hosts seen for the first time their first due time (hosts without a
    /// verdict after `firstPullDelay`, others at a random point of their interval), checks the push
    /// hosts that are due for a missed report (a `report_overdue` fault; checked every quarter
    /// interval, at most every 5 s), and returns the pull rounds that are due, marked in flight.
    /// Pull hosts already in flight are skipped.
    public func tick(now: Date) -> [PullRound] {
        let stale = plan.withLock { now.timeIntervalSince($0.refreshed) >= Self.refreshInterval || now < $0.refreshed }
        if stale {
            var listed: [(id: String, mode: AttestationMode, interval: TimeInterval, state: TrustState)]?
            do { listed = try service.reattestation.schedulableHosts() } catch { log("re-attestation: cannot list hosts: \(error)") }
            plan.withLock { p in
                if let listed {
                    p.list(listed)
                    let ids = Set(listed.map(\.id))
                    p.faults = p.faults.filter { ids.contains($0.key) }
                    p.hintPending = p.hintPending.filter { ids.contains($0) }
                    p.hinted = p.hinted.filter { ids.contains($0.key) && now.timeIntervalSince($0.value) < Self.hintGap }
                }
                p.refreshed = now
            }
        }
        // Under one lock: the hosts due now (from the timetable, not a walk of the fleet).
        let (due, hintedRounds) = plan.withLock { p in
            var hintedRounds: Set<String> = []
            let due = p.popDue(now: now)
            for h in due where h.mode == .pull {
                p.inFlight.insert(h.id)
                if p.hintPending.remove(h.id) != nil {
                    p.hinted[h.id] = now
                    hintedRounds.insert(h.id)
                }
            }
            // First sight: hosts without a verdict soon (a just-activated attester needs a moment
            // to start serving), others spread over the interval.
            for id in p.unseen where p.due[id] == nil && !p.inFlight.contains(id) {
                guard let h = p.host(id) else { continue }
                p.setDue(id, now.addingTimeInterval(h.state == .unknown ? Self.firstPullDelay : spread() * h.interval))
            }
            p.unseen = []
            return (due, hintedRounds)
        }
        var pulls: [PullRound] = []
        for h in claimed(due, hinted: hintedRounds, now: now) {
            switch h.mode {
            case .push:
                // Cheap (one read): checked often, so a missed report is noticed within seconds.
                _ = service.reattestation.checkPushReport(hostID: h.id, interval: h.interval)
                plan.withLock { $0.setDue(h.id, now.addingTimeInterval(min(h.interval / 4, 5))) }
            case .pull:
                pulls.append(PullRound(hostID: h.id, interval: h.interval))
            }
        }
        return pulls
    }

    /// Of the hosts due now, those whose round this broker runs: all of them alone; on a shared
    /// store, those it claimed first. A claimed pull round is due again one interval on should this
    /// broker never report back (another replica then takes it), a push check after its usual
    /// period. Hosts another replica claimed take that replica's due time here; when the store
    /// cannot be reached no round runs (the hosts stay due).
    /// A hinted round (`hinted`) is not due in the store (its stored due time is the scheduled
    /// one): it is claimed now whatever that time (`SharedStore.claimRoundNow`), which also moves
    /// it one interval on, so the other replicas, whose own due time for the host comes later, do
    /// not pull it as well.
    private func claimed(_ due: [(id: String, mode: AttestationMode, interval: TimeInterval, state: TrustState)], hinted: Set<String> = [], now: Date)
        -> [(id: String, mode: AttestationMode, interval: TimeInterval, state: TrustState)] {
        guard let shared, !due.isEmpty else { return due }
        let rounds = due.filter { !hinted.contains($0.id) }.map { h in
            RoundClaim(hostID: h.id, next: now.addingTimeInterval(h.mode == .pull ? h.interval : min(h.interval / 4, 5)))
        }
        var result = RoundClaims(won: [], elsewhere: [:])
        do {
            result = try shared.shared.claimRounds(rounds, holder: shared.holder, now: now)
            for h in due where hinted.contains(h.id) {
                if try shared.shared.claimRoundNow(RoundClaim(hostID: h.id, next: now.addingTimeInterval(h.interval)), holder: shared.holder, now: now) {
                    result.won.insert(h.id)
                }   // else another replica is claiming it this instant: its round is the fresh one
            }
        } catch {
            log("re-attestation: cannot claim rounds: \((error as? VouchError)?.message ?? "\(error)")")
            plan.withLock { p in for h in due { p.inFlight.remove(h.id); p.requeue(h.id) } }
            return []
        }
        plan.withLock { p in
            for h in due where !result.won.contains(h.id) {
                p.inFlight.remove(h.id)
                p.setDue(h.id, max(result.elsewhere[h.id] ?? now, now.addingTimeInterval(0.05)))
            }
        }
        return due.filter { result.won.contains($0.id) }
    }

    /// Runs one pull round `tick` returned (through the evidence source), schedules the host's
    /// next round from the outcome at the service clock's time — after a fault, backoff from 1 s
    /// doubling up to the interval; after a verdict, in the last 10 % of the interval — and
    /// releases the host.
    @discardableResult
    public func run(_ round: PullRound) -> RoundOutcome {
        let outcome = service.reattestation.pullRound(hostID: round.hostID, source: source)
        schedule(round.hostID, outcome: outcome, interval: round.interval, now: service.clock.now())
        plan.withLock { _ = $0.inFlight.remove(round.hostID) }
        return outcome
    }

    /// Hinted rounds of one host start at least this far apart.
    public static let hintGap: TimeInterval = 1

    /// What a hint did: scheduled a pull round due at `Date`, or found one pending (coalesced).
    public enum HintOutcome: Sendable, Equatable {
        case scheduled(Date)
        case coalesced(Date)
    }

    /// A pull host says its measurements changed (`POST /v1/hosts/{id}/hint`): its next round is
    /// due now — or `hintGap` after its last hinted round began, so hints start at most one round
    /// a second per host — unless a hinted round is already pending, which this hint joins. A
    /// round in flight is left to finish, and the hinted round follows it. The round is an
    /// ordinary pull (a fresh broker nonce, a verdict): the hint carries nothing else. Hosts this
    /// scheduler does not pull (push hosts; hosts without a policy, blocked or not yet listed) are
    /// `host_not_pulled`.
    public func hint(hostID: String, now: Date) throws -> HintOutcome {
        try plan.withLock { p in
            guard let h = p.host(hostID), h.mode == .pull else {
                throw VouchError(.hostNotPulled, "this broker does not pull this host's evidence (a push host reports itself)", context: ["hostId": hostID])
            }
            let at = max(now, p.hinted[hostID].map { $0.addingTimeInterval(Self.hintGap) } ?? now)
            if p.hintPending.contains(hostID) { return .coalesced(p.inFlight.contains(hostID) ? at : max(at, p.due[hostID] ?? at)) }
            p.hintPending.insert(hostID)
            if !p.inFlight.contains(hostID) { p.setDue(hostID, min(p.due[hostID] ?? at, at)) }
            return .scheduled(at)
        }
    }

    /// When the host's next round (pull) or overdue check (push) is due; nil before `tick` saw it.
    public func nextDue(hostID: String) -> Date? { plan.withLock { $0.due[hostID] } }

    private func schedule(_ id: String, outcome: RoundOutcome, interval: TimeInterval, now: Date) {
        plan.withLock { p in
            switch outcome {
            case .fault:
                let n = (p.faults[id] ?? 0) + 1
                p.faults[id] = n
                p.setDue(id, now.addingTimeInterval(backoffDelay(failures: n, cap: interval)))
            case .verdict:
                p.faults[id] = nil
                p.setDue(id, now.addingTimeInterval(interval * (0.9 + 0.1 * spread())))
            }
            // A hint that came while this round ran: its evidence may predate the change.
            if p.hintPending.contains(id), let due = p.due[id] {
                p.setDue(id, min(due, max(now, (p.hinted[id] ?? .distantPast).addingTimeInterval(Self.hintGap))))
            }
        }
        if let shared, let due = nextDue(hostID: id) {
            do { try shared.shared.rescheduleRound(hostID: id, holder: shared.holder, due: due) } catch {
                log("re-attestation: cannot record \(id)'s next round: \((error as? VouchError)?.message ?? "\(error)")")
            }
        }
    }
}
