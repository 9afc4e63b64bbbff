import Foundation
import Synchronization
import VouchCore

/// Limits bearer-token guessing: a client (by address) with `maxFailures` failed authentications
/// within `window` has its further failed attempts answered 429 for the rest of that window. A
/// valid token is never refused by it (BrokerAPI checks the token first), so bogus tokens from an
/// address an operator shares cannot lock the operator out.
public final class AuthThrottle: Sendable {
    public let maxFailures: Int
    public let window: TimeInterval
    private let failures = Mutex<[String: (count: Int, since: Date)]>([:])

    public init(maxFailures: Int = 10, window: TimeInterval = 60) {
        self.maxFailures = maxFailures
        self.window = window
    }

    /// Seconds the client must wait, or nil if it may try.
    public func blocked(_ peer: String, now: Date) -> Int? {
        failures.withLock { f in
            guard let e = f[peer] else { return nil }
            if now.timeIntervalSince(e.since) >= window { f[peer] = nil; return nil }
            return e.count >= maxFailures ? Int((window - now.timeIntervalSince(e.since)).rounded(.up)) : nil
        }
    }

    public func failed(_ peer: String, now: Date) {
        failures.withLock { f in
            if let e = f[peer], now.timeIntervalSince(e.since) < window { f[peer] = (e.count + 1, e.since) } else { f[peer] = (1, now) }
            if f.count > 100_000 { f = f.filter { now.timeIntervalSince($0.value.since) < window } }   // bounded memory
        }
    }
}
