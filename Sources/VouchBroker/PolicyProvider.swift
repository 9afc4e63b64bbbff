import Dispatch
import Foundation
import Synchronization
import VouchCore
import VouchPolicy

/// The policies in force, reloadable while the broker runs. A new set that fails validation
/// never replaces the running one: the error is logged and reported until a good set loads.
public final class PolicyProvider: Sendable {
    public struct ReloadError: Sendable, Equatable {
        public let at: Date
        public let error: VouchError
    }

    private let loader: @Sendable () throws -> PolicySet
    private let state: Mutex<(set: PolicySet, error: ReloadError?, loadedAt: Date)>
    private let log: @Sendable (String) -> Void
    private let clock: Clock
    /// Called after every reload attempt with its outcome (metrics).
    private let observer = Mutex<(@Sendable (Bool) -> Void)?>(nil)

    public func onReload(_ f: @escaping @Sendable (Bool) -> Void) { observer.withLock { $0 = f } }

    /// Loads the initial set; failing here stops the broker from starting.
    public init(clock: Clock, log: @escaping @Sendable (String) -> Void = { _ in }, loader: @escaping @Sendable () throws -> PolicySet) throws {
        self.loader = loader
        self.log = log
        self.clock = clock
        state = Mutex((try loader(), nil, clock.now()))
    }

    /// A provider over a fixed set (tests, embedding).
    public init(fixed: PolicySet, clock: Clock = SystemClock()) {
        loader = { fixed }
        log = { _ in }
        self.clock = clock
        state = Mutex((fixed, nil, clock.now()))
    }

    public var current: PolicySet { state.withLock { $0.set } }
    public var lastError: ReloadError? { state.withLock { $0.error } }
    public var loadedAt: Date { state.withLock { $0.loadedAt } }

    /// Re-reads the policies. On success they replace the running set; on failure the running
    /// set stays and the error is kept for status.
    @discardableResult
    public func reload() -> Result<PolicySet, VouchError> {
        do {
            let set = try loader()
            state.withLock { $0 = (set, nil, clock.now()) }
            observer.withLock { $0 }?(true)
            log("policies reloaded: \(set.policies.map { "\($0.label) (\($0.sha256.prefix(12)))" }.joined(separator: ", "))")
            return .success(set)
        } catch {
            let e = (error as? VouchError) ?? VouchError(.policyInvalid, "\(error)")
            state.withLock { $0.error = ReloadError(at: clock.now(), error: e) }
            observer.withLock { $0 }?(false)
            log("policy reload refused, previous policies stay in force: \(e.message)")
            return .failure(e)
        }
    }

    /// Reloads on SIGHUP.
    public func reloadOnSIGHUP() -> DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "vouch.policy.sighup"))
        source.setEventHandler { [self] in _ = self.reload() }
        source.resume()
        return source
    }

    /// Polls `fingerprint` every `interval` and reloads when it changes.
    public func watch(every interval: TimeInterval, fingerprint: @escaping @Sendable () -> [String: Date]) -> DispatchSourceTimer {
        let timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "vouch.policy.watch"))
        let last = Mutex(fingerprint())
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { [self] in
            let now = fingerprint()
            let changed = last.withLock { prev -> Bool in
                defer { prev = now }
                return prev != now
            }
            if changed { _ = self.reload() }
        }
        timer.resume()
        return timer
    }
}
