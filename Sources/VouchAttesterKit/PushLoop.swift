import Foundation
import VouchCore

/// Push mode: report on our own schedule. A failed push is retried with backoff (1 s doubling,
/// capped at the interval); the broker counts a missed report as a fault, not a verdict.
public enum PushLoop {
    public static func start(_ attester: Attester, interval fixed: TimeInterval?, log: @escaping @Sendable (String) -> Void) -> Thread {
        let thread = Thread {
            var failures = 0
            var interval: TimeInterval = fixed ?? 60
            while !Thread.current.isCancelled {
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
                let until = Date().addingTimeInterval(wait)
                while Date() < until && !Thread.current.isCancelled { usleep(100_000) }
            }
        }
        thread.name = "vouch-push"
        thread.start()
        return thread
    }
}
