internal import CMicroHTTPD
internal import CVouchShims
import Foundation
import VouchCore

/// A streamed response body served without holding one of the server's pool threads
/// (`HTTPServer.Threading.poolWithStreamThreads`). An `HTTPStream`'s `next()` may block for as
/// long as it likes (an event stream waits up to 15 s for an event), which on a pool thread
/// would stall every other connection that thread serves. So each stream gets a pump thread of
/// its own that calls `next()` and queues the chunks; libmicrohttpd's content reader, on a pool
/// thread, only hands out queued bytes. When the queue is empty and the stream has not ended, the
/// reader suspends the connection (`MHD_suspend_connection`) and returns 0: libmicrohttpd then
/// neither polls nor times it out, and the pump resumes it (`MHD_resume_connection`) once it has
/// queued more bytes, or the stream ended, or the server is stopping. Returning 0 without
/// suspending would make libmicrohttpd call the reader again at once, busy-looping.
///
/// The queue holds about `maxQueuedBytes`: beyond that the pump waits for the reader, so a client
/// that reads slowly slows the producer down instead of growing the queue.
///
/// Races, all settled under `condition`'s lock:
/// - `suspended` is set by the reader just before it suspends the connection, and cleared by
///   whoever resumes it, so `MHD_resume_connection` is called once per suspension and never for a
///   connection that is not suspended (the pump may queue bytes while the reader is still deciding:
///   it then finds them, or finds `suspended` set and resumes). libmicrohttpd only needs the
///   suspension to have been requested before the resumption, which the lock orders.
/// - libmicrohttpd cannot close a suspended connection (it notices no disconnect while suspended,
///   and suspended connections do not time out), so a connection flagged `suspended` is alive and
///   may be resumed. Once libmicrohttpd frees the response (the connection closed or the next
///   request began), `responseFreed` sets `closed`: the pump never touches the connection again,
///   and ends as soon as its `next()` returns. `onClose` runs there, exactly once, and may run while
///   the pump is blocked in `next()` (the stream's two closures are `@Sendable`).
/// - Stopping the server: `MHD_stop_daemon` must not find suspended connections, so the server
///   first marks every stream `stopping` (`StreamRegistry.stopAll`), which resumes those suspended
///   and makes the reader end them (with an error: the client sees the stream cut, not finished).
final class PumpedStream: @unchecked Sendable {
    /// Queued bytes beyond which the pump waits for the reader (back-pressure).
    static let maxQueuedBytes = 64 << 10
    /// Each pump thread's stack: `next()` runs store queries, nothing deeply recursive.
    static let pumpStackBytes = 512 << 10

    let stream: HTTPStream
    /// Used only for suspend and resume, and only while the response is attached to it.
    private let connection: OpaquePointer
    private let registry: StreamRegistry
    private let condition = NSCondition()
    private var chunks: [[UInt8]] = []
    /// Bytes of `chunks[0]` already handed to libmicrohttpd.
    private var offset = 0
    private var queued = 0
    /// `next()` returned nil: the body is whole once the queue is empty.
    private var ended = false
    /// libmicrohttpd freed the response: the connection is gone or serving another request.
    private var closed = false
    /// The server is stopping: the reader ends the stream, the pump stops queueing.
    private var stopping = false
    /// The reader suspended the connection and nobody has resumed it yet.
    private var suspended = false
    /// Resumed (by the pump or `stop`), and the reader has not run since.
    private var resumePending = false
    private var pumpStarted = false

    /// A stream about to be queued on `connection`, registered with `registry` until freed.
    init(stream: HTTPStream, connection: OpaquePointer, registry: StreamRegistry) {
        self.stream = stream
        self.connection = connection
        self.registry = registry
        registry.add(self)
    }

    /// MHD_CONTENT_READER_END_OF_STREAM and MHD_CONTENT_READER_END_WITH_ERROR.
    static let endOfStream = -1, endWithError = -2

    /// libmicrohttpd's content reader (a pool thread): up to `max` queued bytes into `buffer`;
    /// `endOfStream` once the stream ended and all was handed out; otherwise suspends the
    /// connection and returns 0. The pump starts at the first call (a HEAD answer never starts it).
    func read(into buffer: UnsafeMutablePointer<CChar>, max: Int) -> Int {
        condition.lock()
        defer { condition.unlock() }
        resumePending = false
        if stopping { return Self.endWithError }
        if !pumpStarted {
            pumpStarted = true
            let thread = Thread { [self] in
                // Named for the kernel from inside: a thread starts with its creator's name (a
                // pool thread's), which Foundation's `name` does not reliably replace.
                _ = vouch_set_thread_name("vouch.http.pump")
                pump()
            }
            thread.stackSize = Self.pumpStackBytes
            thread.start()
        }
        if queued > 0 {
            let wasFull = queued >= Self.maxQueuedBytes
            var written = 0
            buffer.withMemoryRebound(to: UInt8.self, capacity: max) { dst in
                while written < max, !chunks.isEmpty {
                    let n = min(max - written, chunks[0].count - offset)
                    chunks[0].withUnsafeBufferPointer { src in
                        (dst + written).update(from: src.baseAddress! + offset, count: n)
                    }
                    written += n
                    offset += n
                    if offset == chunks[0].count { chunks.removeFirst(); offset = 0 }
                }
            }
            queued -= written
            if wasFull && queued < Self.maxQueuedBytes { condition.broadcast() }
            return written
        }
        if ended { return Self.endOfStream }
        suspended = true
        MHD_suspend_connection(connection)
        return 0
    }

    /// The pump thread: `next()` until the stream ends, the connection goes, or the server stops.
    private func pump() {
        while true {
            let chunk = stream.next()
            condition.lock()
            guard !closed, !stopping else { condition.unlock(); return }
            guard let chunk else {
                ended = true
                resumeIfSuspended()
                condition.unlock()
                return
            }
            if !chunk.isEmpty {
                chunks.append(chunk)
                queued += chunk.count
                resumeIfSuspended()
            }
            while queued >= Self.maxQueuedBytes && !closed && !stopping { condition.wait() }
            let done = closed || stopping
            condition.unlock()
            if done { return }
        }
    }

    /// Under the lock: resumes the connection if the reader suspended it.
    private func resumeIfSuspended() {
        guard suspended else { return }
        suspended = false
        resumePending = true
        MHD_resume_connection(connection)
    }

    /// libmicrohttpd freed the response (connection closed, request over, or never sent): the
    /// pump lets go, and the stream is closed (once: libmicrohttpd frees a response once).
    func responseFreed() {
        condition.lock()
        closed = true
        resumePending = false
        condition.broadcast()
        condition.unlock()
        registry.remove(self)
        stream.onClose()
    }

    /// The server is stopping: a suspended connection is resumed (its reader then ends it).
    func stop() {
        condition.lock()
        stopping = true
        resumeIfSuspended()
        condition.broadcast()
        condition.unlock()
    }

    /// Resumed, and libmicrohttpd has not yet run the reader again (nor freed the response).
    var isResumePending: Bool {
        condition.lock()
        defer { condition.unlock() }
        return resumePending
    }
}

/// The open pumped streams of one server, so that stopping it can resume their connections.
final class StreamRegistry: @unchecked Sendable {
    private let state = BlockingLock<(stopping: Bool, live: [ObjectIdentifier: PumpedStream])>((false, [:]))

    /// A new stream; one made while the server stops is stopped at once (it never suspends).
    func add(_ stream: PumpedStream) {
        state.withLock { s in
            if s.stopping { stream.stop() }
            s.live[ObjectIdentifier(stream)] = stream
        }
    }

    func remove(_ stream: PumpedStream) {
        _ = state.withLock { $0.live.removeValue(forKey: ObjectIdentifier(stream)) }
    }

    var count: Int { state.withLock { $0.live.count } }

    /// Stops every stream, resuming the suspended ones, and waits (at most `patience`) until
    /// libmicrohttpd has taken each resumption, so `MHD_stop_daemon` finds none suspended.
    func stopAll(patience: Duration = .seconds(5)) {
        let streams = state.withLock { s in
            s.stopping = true
            return Array(s.live.values)
        }
        for stream in streams { stream.stop() }
        let deadline = ContinuousClock.now + patience
        while streams.contains(where: \.isResumePending), ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.005)
        }
    }
}

/// `MHD_ContentReaderCallback` of a pumped stream.
func pumpedReader(_ cls: UnsafeMutableRawPointer?, _ pos: UInt64, _ buf: UnsafeMutablePointer<CChar>?, _ max: Int) -> Int {
    guard let cls, let buf else { return PumpedStream.endWithError }
    return Unmanaged<PumpedStream>.fromOpaque(cls).takeUnretainedValue().read(into: buf, max: max)
}

/// `MHD_ContentReaderFreeCallback` of a pumped stream: the response is gone.
func pumpedFree(_ cls: UnsafeMutableRawPointer?) {
    guard let cls else { return }
    let stream = Unmanaged<PumpedStream>.fromOpaque(cls).takeRetainedValue()
    stream.responseFreed()
}
