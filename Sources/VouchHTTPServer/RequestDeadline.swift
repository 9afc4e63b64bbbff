internal import CMicroHTTPD
internal import CVouchShims
import Foundation
import Synchronization
import VouchCore
import VouchRuntime
#if canImport(Glibc)
import Glibc
#endif

/// An absolute deadline for receiving each request: the TLS handshake, the request headers and
/// the body must all arrive within `limit` of the connection being accepted (or, on a kept-alive
/// connection, of the previous response being sent), however the bytes trickle in.
/// libmicrohttpd's own `CONNECTION_TIMEOUT` is only an idle timeout, which one byte every few
/// seconds defeats.
///
/// How: libmicrohttpd reports every connection (`NOTIFY_CONNECTION` started/closed) and every
/// request (`NOTIFY_COMPLETED`, and the access handler once the request is whole). Connections
/// still receiving are kept here with their socket and the time they started receiving; a
/// watchdog thread calls `shutdown(2)` on the sockets of those past the deadline, which wakes the
/// thread serving the connection (its own, or the pool thread polling it: its read
/// returns 0) and libmicrohttpd closes the connection as if the client had. A response being
/// produced or sent (an event stream included, suspended or not) is never cut.
///
/// Thread safety: the table is only touched under its mutex, and libmicrohttpd notifies
/// `CLOSED` (which removes the entry) before it closes the socket, so `shutdown` under the same
/// mutex never reaches a descriptor that was closed and reused.
final class RequestDeadline: @unchecked Sendable {
    struct Entry {
        let fd: Int32
        /// When the connection started waiting for a request; nil while a response is in progress.
        var receivingSince: ContinuousClock.Instant?
        /// Set once the socket was shut down, so it is not shut down (or logged) again.
        var expired = false
        /// This connection's own limit (`extend`: a client the handler authenticated); nil: `limit`.
        var limit: Duration? = nil
    }

    let limit: Duration
    /// Touched twice per request by every thread serving connections (one per connection in that mode): a blocking
    /// pthread mutex, not a spinning one, so a holder preempted on a busy machine does not make
    /// the other threads burn their time slices.
    private let table = BlockingLock<[UInt: Entry]>([:])
    private let stopSignal = DispatchSemaphore(value: 0)
    private let stopped = Mutex(false)

    init(limit: Duration) { self.limit = limit }

    private static func key(_ connection: OpaquePointer) -> UInt { UInt(bitPattern: Int(bitPattern: connection)) }

    func connectionStarted(_ connection: OpaquePointer, fd: Int32, now: ContinuousClock.Instant = .now) {
        table.withLock { $0[Self.key(connection)] = Entry(fd: fd, receivingSince: now) }
    }

    func connectionClosed(_ connection: OpaquePointer) {
        _ = table.withLock { $0.removeValue(forKey: Self.key(connection)) }
    }

    /// The request is whole and about to be answered: the clock stops until its response is sent.
    func requestReceived(_ connection: OpaquePointer) {
        table.withLock { $0[Self.key(connection)]?.receivingSince = nil }
    }

    /// From now on `connection` has `limit` to deliver each request instead of the server's (a
    /// client that proved who it is may keep its connection idle between requests that long).
    func extend(_ connection: OpaquePointer, to limit: Duration) {
        table.withLock { $0[Self.key(connection)]?.limit = limit }
    }

    /// The response was sent (or the request ended): the clock starts again for the next request.
    func responseSent(_ connection: OpaquePointer, now: ContinuousClock.Instant = .now) {
        table.withLock { t in
            if t[Self.key(connection)]?.expired == false { t[Self.key(connection)]?.receivingSince = now }
        }
    }

    /// Shuts down every socket whose request is overdue at `now`; returns how many.
    @discardableResult
    func sweep(now: ContinuousClock.Instant = .now) -> Int {
        table.withLock { t in
            var count = 0
            for (k, e) in t where !e.expired {
                guard let since = e.receivingSince, now - since > (e.limit ?? limit) else { continue }
                shutdown(e.fd, Int32(SHUT_RDWR))
                t[k]?.expired = true
                count += 1
            }
            return count
        }
    }

    /// Starts the watchdog: it sweeps several times per deadline (at least once a second).
    func start() {
        let period = min(1.0, max(0.05, Double(limit.components.seconds) / 4))
        let thread = Thread { [self] in
            while stopSignal.wait(timeout: .now() + period) == .timedOut {
                let n = sweep()
                if n > 0 { Runtime.log("http: closed \(n) connection(s) that did not deliver a whole request within \(limit)", level: "info") }
            }
        }
        thread.name = "vouch.http.deadline"
        thread.start()
    }

    func stop() {
        let first = stopped.withLock { s -> Bool in defer { s = true }; return !s }
        if first { stopSignal.signal() }
    }
}

/// `MHD_OPTION_NOTIFY_CONNECTION`: registers each accepted connection with its socket, and
/// forgets it when libmicrohttpd reports it closed.
func connectionNotified(_ cls: UnsafeMutableRawPointer?, _ connection: OpaquePointer?,
                        _ socketContext: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ code: MHD_ConnectionNotificationCode) {
    guard let cls, let connection else { return }
    let deadline = Unmanaged<RequestDeadline>.fromOpaque(cls).takeUnretainedValue()
    switch code {
    case .CONNECTION_NOTIFY_STARTED:
        let fd = vouch_mhd_connection_fd(connection)
        if fd >= 0 { deadline.connectionStarted(connection, fd: fd) }
    case .CONNECTION_NOTIFY_CLOSED:
        deadline.connectionClosed(connection)
    }
}

/// A value behind a pthread mutex (NSLock): waiters sleep in the kernel instead of spinning.
final class BlockingLock<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
