import Foundation
import Synchronization
import VouchCore

/// Continuous re-attestation. Every host with an activated AK is re-attested at its policy's
/// `reattestation.interval` (each round lands at a random point in the last 10 % of the interval,
/// so a fleet registered at once spreads out):
/// - pull hosts: a fresh nonce, a quote over mTLS from the attester, a verdict — at most
///   `concurrency` rounds in flight, each bounded by the evidence source's timeout;
/// - push hosts: checked every few seconds; a missed report (interval plus slack) is a fault.
/// Hosts with no verdict yet are attested within seconds. After a fault the next try backs off
/// exponentially from 1 s, never later than the interval, so a host that comes back is seen soon
/// and the grace period is measured by repeated tries.
public final class Reattestor: Sendable {
    let service: BrokerService
    let source: EvidenceSource
    let log: @Sendable (String) -> Void

    private struct Plan {
        var due: [String: Date] = [:]
        var inFlight: Set<String> = []
        var faults: [String: Int] = [:]
    }
    private let plan = Mutex(Plan())
    private let running = Mutex(false)
    private let slots: DispatchSemaphore
    private let finished = DispatchGroup()
    private let queue = DispatchQueue(label: "vouch.reattest", attributes: .concurrent)

    /// How long after first seeing a host without a verdict the first round starts.
    static let firstPullDelay: TimeInterval = 2

    public init(service: BrokerService, source: EvidenceSource, concurrency: Int = 32, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.service = service
        self.source = source
        self.slots = DispatchSemaphore(value: max(1, concurrency))
        self.log = log
    }

    public func start() {
        running.withLock { $0 = true }
        let thread = Thread { [self] in loop() }
        thread.name = "vouch-reattestor"
        thread.start()
    }

    /// Stops scheduling and waits (up to `timeout`) for rounds in flight to finish.
    public func stop(timeout: TimeInterval = 10) {
        running.withLock { $0 = false }
        _ = finished.wait(timeout: .now() + timeout)
    }

    private var isRunning: Bool { running.withLock { $0 } }

    private func loop() {
        var hosts: [(id: String, mode: AttestationMode, interval: TimeInterval, state: TrustState)] = []
        var refreshed = Date.distantPast
        while isRunning {
            let now = service.clock.now()
            // The host list is re-read once a second (new registrations, policy reloads, blocks).
            if now.timeIntervalSince(refreshed) >= 1 || now < refreshed {
                do { hosts = try service.schedulableHosts() } catch { log("re-attestation: cannot list hosts: \(error)") }
                refreshed = now
                let ids = Set(hosts.map(\.id))
                plan.withLock { p in p.due = p.due.filter { ids.contains($0.key) } }
            }
            // One pass over the plan under one lock: which hosts are due now (pull hosts are marked
            // in flight here). Host ids first seen get their first due time.
            let due: [(id: String, mode: AttestationMode, interval: TimeInterval, state: TrustState)] = plan.withLock { p in
                hosts.filter { h in
                    guard !p.inFlight.contains(h.id) else { return false }
                    guard let due = p.due[h.id] else {
                        // First sight: hosts without a verdict soon (a just-activated attester needs a
                        // moment to start serving), others spread over the interval.
                        p.due[h.id] = h.state == .unknown ? now.addingTimeInterval(Self.firstPullDelay) : now.addingTimeInterval(Double.random(in: 0..<h.interval))
                        return false
                    }
                    guard due <= now else { return false }
                    if h.mode == .pull { p.inFlight.insert(h.id) }
                    return true
                }
            }
            for (i, h) in due.enumerated() {
                guard isRunning else {   // stopping: release the hosts this pass did not start
                    plan.withLock { p in for h in due[i...] where h.mode == .pull { p.inFlight.remove(h.id) } }
                    break
                }
                switch h.mode {
                case .push:
                    // Cheap (one read): checked often, so a missed report is noticed within seconds.
                    _ = service.checkPushReport(hostID: h.id, interval: h.interval)
                    plan.withLock { $0.due[h.id] = now.addingTimeInterval(min(h.interval / 4, 5)) }
                case .pull:
                    slots.wait()
                    finished.enter()
                    queue.async { [self] in
                        let outcome = service.pullRound(hostID: h.id, source: source)
                        schedule(h.id, outcome: outcome, interval: h.interval)
                        plan.withLock { _ = $0.inFlight.remove(h.id) }
                        slots.signal()
                        finished.leave()
                    }
                }
            }
            usleep(50_000)
        }
    }

    private func schedule(_ id: String, outcome: RoundOutcome?, interval: TimeInterval) {
        let now = service.clock.now()
        plan.withLock { p in
            switch outcome {
            case .fault?:
                let n = (p.faults[id] ?? 0) + 1
                p.faults[id] = n
                p.due[id] = now.addingTimeInterval(backoffDelay(failures: n, cap: interval))
            case .verdict?, nil:
                p.faults[id] = nil
                p.due[id] = now.addingTimeInterval(interval * Double.random(in: 0.9...1.0))
            }
        }
    }
}
