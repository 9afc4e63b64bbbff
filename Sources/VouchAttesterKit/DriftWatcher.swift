import Foundation
import Synchronization
import VouchCore

/// At most one unsolicited report (a push out of schedule, a hint) per host per `minimumGap`:
/// a report asked for sooner waits, and every change seen meanwhile goes with it (coalesced).
/// Shared by the attester's drift watcher and the simulated fleet, so both pace reports alike.
public struct ReportGate: Sendable {
    public let minimumGap: TimeInterval
    private var last: Date?

    public init(minimumGap: TimeInterval = 1) { self.minimumGap = minimumGap }

    /// When a report may go (now, or `minimumGap` after the last one).
    public func nextAllowed(now: Date) -> Date { last.map { max(now, $0.addingTimeInterval(minimumGap)) } ?? now }

    /// Takes the slot at `now` if it is free: true, and the next one is `minimumGap` on.
    public mutating func admit(now: Date) -> Bool {
        guard nextAllowed(now: now) <= now else { return false }
        last = now
        return true
    }
}

/// Drift detection at the host: every `interval` the watcher reads the PCRs the broker's last
/// quote covered (and PCR 23 and the model log, with a model log) and compares them with that
/// quote's values (`Attester.driftBaseline`). On a change it reports at once — `report` wakes the
/// push loop (push mode) or sends the broker a hint (pull mode) — instead of leaving the change
/// to the next scheduled round, up to a whole interval later.
///
/// One report per changed state: once reported, the same values are not reported again (the
/// fresh quote that follows makes them the baseline; should it never come, the next scheduled
/// round judges them). Reports are paced by a `ReportGate` (one a second): a change seen inside
/// the gap is reported when it ends, with whatever else changed meanwhile. A report that fails
/// is tried again at the next opening. Before the first quote there is nothing to compare with,
/// and nothing is read.
public final class DriftWatcher: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// No quote has reached the broker yet.
        case noBaseline
        case unchanged
        /// Changed, and this state was already reported.
        case reported
        /// Changed, and reported now.
        case reportedNow
        /// Changed; the gate holds the report until `Date`.
        case held(Date)
        /// The TPM could not be read or the report failed (logged); retried.
        case failed(String)
    }

    let attester: Attester
    public let interval: TimeInterval
    let report: @Sendable () throws -> Void
    let log: @Sendable (String) -> Void
    private struct State {
        var gate: ReportGate
        var reported: MeasuredState?
        var lastFailure: String?
    }
    private let state: Mutex<State>
    private let wakeup = Wakeup()
    private let running = Mutex(false)
    private let stopped = DispatchSemaphore(value: 0)

    /// `report`: what a change sets off (`PushLoop.wake`, `Attester.sendHint`).
    public init(attester: Attester, interval: TimeInterval = 0.25, minimumGap: TimeInterval = 1, log: @escaping @Sendable (String) -> Void = { _ in },
                report: @escaping @Sendable () throws -> Void) {
        self.attester = attester
        self.interval = interval
        self.report = report
        self.log = log
        state = Mutex(State(gate: ReportGate(minimumGap: minimumGap)))
    }

    /// One look: read, compare, report if the state changed and the gate allows.
    @discardableResult
    public func check(now: Date = Date()) -> Outcome {
        guard let baseline = attester.driftBaseline else { return .noBaseline }
        let current: MeasuredState
        do { current = try attester.measuredState(baseline.watched) } catch {
            return failed("cannot read the measurements: \((error as? VouchError)?.message ?? "\(error)")")
        }
        if current == baseline.state {
            state.withLock { $0.reported = nil }
            return .unchanged
        }
        let decision: Outcome? = state.withLock { s in
            if s.reported == current { return .reported }
            guard s.gate.admit(now: now) else { return .held(s.gate.nextAllowed(now: now)) }
            return nil
        }
        if let decision { return decision }
        do {
            try report()
        } catch {
            return failed("cannot report the change: \((error as? VouchError)?.message ?? "\(error)")")
        }
        state.withLock { s in
            s.reported = current
            s.lastFailure = nil
        }
        log("measurements changed since the last quote: reported to the broker")
        return .reportedNow
    }

    /// Logs a failure once (not every look while it lasts).
    private func failed(_ message: String) -> Outcome {
        let first = state.withLock { s in
            defer { s.lastFailure = message }
            return s.lastFailure != message
        }
        if first { log("drift watcher: \(message)") }
        return .failed(message)
    }

    /// Looks every `interval` on a thread of its own until `stop`.
    public func start() {
        running.withLock { $0 = true }
        let thread = Thread { [self] in
            while running.withLock({ $0 }) {
                let outcome = check()
                var next = Date().addingTimeInterval(interval)
                if case let .held(until) = outcome { next = min(next, until) }
                wakeup.wait(until: next)
            }
            stopped.signal()
        }
        thread.name = "vouch-drift-watcher"
        thread.start()
    }

    public func stop() {
        guard running.withLock({ r in defer { r = false }; return r }) else { return }
        wakeup.signal()
        stopped.wait()
    }
}
