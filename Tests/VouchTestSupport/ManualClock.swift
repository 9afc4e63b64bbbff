import Foundation
import Synchronization
import VouchCore

/// A `Clock` that stands still until the test moves it (as swift-nio's `EmbeddedEventLoop` time):
/// every reading is the time last set, so grace periods, backoff and expiry are decided by the
/// test, in microseconds, and the same on every run. Safe to read and move from any thread.
public final class ManualClock: Clock {
    private let current: Mutex<Date>

    /// Starts at `start` (default: a fixed instant, 2026-01-01T00:00:00Z, so runs are reproducible).
    public init(_ start: Date = Date(timeIntervalSince1970: 1_767_225_600)) { current = Mutex(start) }

    public func now() -> Date { current.withLock { $0 } }

    /// Moves the clock forward (or, with a negative interval, back: to test a clock that jumps).
    public func advance(by seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }

    /// Sets the clock to `date`.
    public func set(_ date: Date) { current.withLock { $0 = date } }
}
