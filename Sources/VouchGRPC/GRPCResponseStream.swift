import Foundation
import VouchCore

/// The response side of one call, handed to its handler: `send` queues a message for the event
/// loop, which writes it as the peer's flow-control windows allow.
///
/// `send` blocks while more than `CallState.highWater` bytes of this call are still queued (so a
/// handler cannot run ahead of a slow client), and wakes when the loop takes bytes, when the
/// client resets the stream or disconnects, or when the server stops.
public final class GRPCResponseStream: Sendable {
    let call: CallState

    init(call: CallState) {
        self.call = call
    }

    /// Sends one message (the 5-byte prefix is added here, uncompressed). Throws
    /// `GRPCStatus(.resourceExhausted)` for a message over `Limits.maxResponseMessageBytes`,
    /// `GRPCStatus(.cancelled)` once the client reset the stream, the connection closed or the
    /// server stopped (a message queued just before that may not reach the client).
    public func send(_ message: [UInt8]) throws {
        try call.enqueue(message)
    }

    /// Whether the call was cancelled: the client reset the stream, the connection closed, or the
    /// server stopped.
    public var isCancelled: Bool { call.isCancelled }

    /// Blocks until the call is cancelled (true) or `timeout` seconds pass (false).
    public func waitForCancellation(timeout: TimeInterval) -> Bool {
        call.waitForCancellation(until: Date().addingTimeInterval(timeout))
    }

    /// Runs `body` once when the call is cancelled (at once if it already is), on the thread that
    /// cancels it: so a handler waiting on something else (an update) can be woken. Keep it short.
    public func onCancel(_ body: @escaping @Sendable () -> Void) {
        call.onCancel(body)
    }
}

/// What the handler's thread and the event loop share about one call, under one lock: the
/// response bytes not yet taken by nghttp2, the status once the handler returned, and whether the
/// call was cancelled. Also counts the call as active until both its stream has closed and its
/// handler (if it started) has returned.
final class CallState: @unchecked Sendable {
    /// Queued response bytes beyond which `send` waits.
    static let highWater = 256 << 10

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var chunks: [[UInt8]] = []
    /// The first chunk not wholly taken, and how much of it was.
    private var head = 0
    private var headOffset = 0
    private var queued = 0
    private var status: GRPCStatus?
    private var cancelled = false
    private var handlerRunning = false
    private var streamOpen = true
    private var retired = false
    private var cancelHandlers: [@Sendable () -> Void] = []

    let maxMessageBytes: Int
    /// Tells the event loop this call has news (bytes queued, or the handler returned).
    private let notify: @Sendable () -> Void
    /// Runs once, when the call stops counting as active.
    private let retire: @Sendable () -> Void

    init(maxMessageBytes: Int, notify: @escaping @Sendable () -> Void, retire: @escaping @Sendable () -> Void) {
        self.maxMessageBytes = maxMessageBytes
        self.notify = notify
        self.retire = retire
    }

    // MARK: handler thread

    func enqueue(_ message: [UInt8]) throws {
        guard message.count <= maxMessageBytes else {
            throw GRPCStatus(.resourceExhausted, "response message of \(message.count) bytes exceeds the limit of \(maxMessageBytes)")
        }
        var writer = ByteWriter()
        writer.u8(0)   // not compressed
        writer.u32(UInt32(message.count))
        writer.raw(message)
        let framed = writer.bytes
        condition.lock()
        guard !cancelled else {
            condition.unlock()
            throw GRPCStatus(.cancelled, "the call was cancelled")
        }
        chunks.append(framed)
        queued += framed.count
        condition.unlock()
        notify()
        condition.lock()
        defer { condition.unlock() }
        while queued > Self.highWater && !cancelled { condition.wait() }
        if cancelled { throw GRPCStatus(.cancelled, "the call was cancelled") }
    }

    /// The handler returned (or threw): the status its trailers carry.
    func finish(_ result: GRPCStatus) {
        condition.lock()
        status = result
        handlerRunning = false
        let done = retireIfDone()
        condition.unlock()
        notify()
        if done { retire() }
    }

    var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    func waitForCancellation(until deadline: Date) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !cancelled {
            if !condition.wait(until: deadline) { break }
        }
        return cancelled
    }

    // MARK: event loop

    func handlerStarted() {
        condition.lock()
        handlerRunning = true
        condition.unlock()
    }

    /// Whether any bytes are queued, and the status if the handler has returned.
    func snapshot() -> (hasBytes: Bool, status: GRPCStatus?) {
        condition.lock()
        defer { condition.unlock() }
        return (queued > 0, status)
    }

    /// Moves up to `capacity` queued bytes into `buffer`; returns how many, and the final status
    /// when nothing is left queued and the handler has returned.
    func take(into buffer: UnsafeMutablePointer<UInt8>, capacity: Int) -> (count: Int, status: GRPCStatus?) {
        condition.lock()
        var count = 0
        while count < capacity, head < chunks.count {
            let n = min(capacity - count, chunks[head].count - headOffset)
            chunks[head].withUnsafeBufferPointer { src in
                (buffer + count).update(from: src.baseAddress! + headOffset, count: n)
            }
            count += n
            headOffset += n
            if headOffset == chunks[head].count {
                head += 1
                headOffset = 0
            }
        }
        if head == chunks.count {
            chunks.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 64 {
            chunks.removeFirst(head)
            head = 0
        }
        queued -= count
        let final = queued == 0 ? status : nil
        if count > 0 { condition.broadcast() }
        condition.unlock()
        return (count, final)
    }

    /// Cancels the call: the client reset the stream, the connection closed or the server stops.
    /// A call whose handler already returned is not marked (nothing is waiting on it).
    func cancel() {
        condition.lock()
        if status == nil { cancelled = true }
        chunks.removeAll()
        head = 0
        headOffset = 0
        queued = 0
        let handlers = cancelled ? cancelHandlers : []
        if cancelled { cancelHandlers = [] }
        condition.broadcast()
        condition.unlock()
        for h in handlers { h() }
    }

    func onCancel(_ body: @escaping @Sendable () -> Void) {
        condition.lock()
        let now = cancelled
        if !now { cancelHandlers.append(body) }
        condition.unlock()
        if now { body() }
    }

    /// The stream closed (completed, reset, or its connection went): cancels a call whose handler
    /// has not returned.
    func streamClosed() {
        cancel()
        condition.lock()
        streamOpen = false
        let done = retireIfDone()
        condition.unlock()
        if done { retire() }
    }

    /// Whether the call still counts against the connection's stream limit.
    var isLive: Bool {
        condition.lock()
        defer { condition.unlock() }
        return !retired
    }

    /// Under the lock: marks the call retired once its stream is closed and no handler runs.
    private func retireIfDone() -> Bool {
        guard !retired, !streamOpen, !handlerRunning else { return false }
        retired = true
        return true
    }
}
