import Foundation
import Synchronization
import VouchCore

/// Push mode: report on our own schedule. A failed push is retried with backoff (1 s doubling,
/// capped at the interval); the broker counts a missed report as a fault, not a verdict.
/// `wake()` ends the current wait at once (the drift watcher calls it when the PCRs moved), so a
/// changed host reports now rather than at the end of its interval or backoff.
public final class PushLoop: Sendable {
    private let wakeup = Wakeup()
    private let cancelled = Mutex(false)

    private var isCancelled: Bool { cancelled.withLock { $0 } }

    public static func start(_ attester: Attester, interval fixed: TimeInterval?, log: @escaping @Sendable (String) -> Void) -> PushLoop {
        let loop = PushLoop()
        let thread = Thread {
            var failures = 0
            var interval: TimeInterval = fixed ?? 60
            while !loop.isCancelled {
                var wait: TimeInterval
                do {
                    let (verdict, policyInterval) = try attester.pushReport()
                    interval = fixed ?? max(1, Double(policyInterval) * 0.8)
                    failures = 0
                    wait = interval
                    if verdict.result != .trusted { log("broker verdict: \(verdict.result.rawValue) \(verdict.codes.joined(separator: ",")) (state \(verdict.state))") }
                } catch {
                    failures += 1
                    wait = backoffDelay(failures: failures, cap: interval)
                    log("push report failed (\(failures) in a row): \(error)")
                }
                loop.wakeup.wait(until: Date().addingTimeInterval(wait), cancelled: { loop.isCancelled })
            }
        }
        thread.name = "vouch-push"
        thread.start()
        return loop
    }

    /// Reports now: the loop's wait ends and it pushes a fresh report. Wakes that come while a
    /// report is being made count once (the next wait ends at once).
    public func wake() { wakeup.signal() }

    public func cancel() {
        cancelled.withLock { $0 = true }
        wakeup.signal()
    }
}

/// A wait that another thread can end early. A signal given while nobody waits is kept for the
/// next wait (one, however many signals came).
final class Wakeup: @unchecked Sendable {
    // NSCondition is thread-safe; `pending` is read and written only while it is locked.
    private let condition = NSCondition()
    private var pending = false

    func signal() {
        condition.lock()
        pending = true
        condition.signal()
        condition.unlock()
    }

    /// Waits until `deadline` or a signal (checking `cancelled` at least every 100 ms); true if signalled.
    @discardableResult
    func wait(until deadline: Date, cancelled: () -> Bool = { false }) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !pending && Date() < deadline && !cancelled() {
            _ = condition.wait(until: min(deadline, Date().addingTimeInterval(0.1)))
        }
        let woken = pending
        pending = false
        return woken
    }
}
