internal import CCurl
internal import CVouchShims
import Foundation
import VouchCore

extension HTTPClient {
    /// Sends a request and returns as soon as the response's status and headers have arrived;
    /// the body is then read piece by piece, as the server sends it, with `next()`. The transfer
    /// runs on a thread of its own, which holds at most `StreamedResponse.bufferedBytes` read but
    /// not yet taken (curl waits for the reader beyond that). `maxResponseBytes` and the timeout
    /// bound the whole transfer, as for `send`; a failure before the headers throws as `send`
    /// does, one after them is thrown by `next()`.
    public func open(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8]? = nil) throws -> StreamedResponse {
        let handle = try EasyHandle.checkOut()
        let transfer: TransferResources
        do { transfer = try configure(handle.raw, method, path, headers: headers, body: body) } catch { handle.checkIn(); throw error }
        // curl calls back only inside curl_easy_perform, on the thread below, which keeps `state`.
        let state = StreamedResponse.State(limit: maxResponseBytes)
        let context = Unmanaged.passUnretained(state).toOpaque()
        do {
            try curlCheck(vouch_curl_setopt_write(handle.raw, streamBody, context), "WRITEFUNCTION")
            try curlCheck(vouch_curl_setopt_write_header(handle.raw, streamHeader, context), "HEADERFUNCTION")
            // Polled about once a second even while the server sends nothing: a cancelled
            // transfer stops then, not only at its next delivery of bytes.
            try curlCheck(vouch_curl_setopt_xferinfo(handle.raw, streamProgress, context), "XFERINFOFUNCTION")
        } catch {
            handle.checkIn()
            throw error
        }
        let transport = self.transport
        let thread = Thread {
            let rc = withExtendedLifetime((transport, transfer, state)) { curl_easy_perform(handle.raw) }
            var status = 0
            _ = vouch_curl_getinfo_long(handle.raw, CURLINFO_RESPONSE_CODE, &status)
            handle.checkIn()
            state.finish(rc == CURLE_OK ? nil : transfer.failure(rc, tooLarge: state.overLimit), status: status)
        }
        thread.name = "vouch.http.stream"
        thread.start()
        let head = try state.waitForHead()
        return StreamedResponse(status: head.status, headers: head.headers, state: state)
    }
}

/// A response whose body arrives while it is read (`HTTPClient.open`). One reader at a time.
public final class StreamedResponse: Sendable {
    /// The most body bytes read from the server and not yet taken by `next()`.
    public static let bufferedBytes = 1 << 20

    public let status: Int
    public let headers: [(String, String)]
    let state: State

    init(status: Int, headers: [(String, String)], state: State) {
        self.status = status
        self.headers = headers
        self.state = state
    }

    deinit { state.cancel() }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// The next piece of the body, waiting for it if need be; nil once the body is whole. Throws
    /// the transfer's `http` error (its `cause` an `HTTPClientError`) if it failed part way, and
    /// `cancelled` once `cancel()` was called (a cancelled body is never a whole one).
    public func next() throws -> [UInt8]? { try state.take() }

    /// Stops the transfer: curl gives up at its next delivery of bytes or progress poll (about a
    /// second), and `next()` throws `cancelled`.
    public func cancel() { state.cancel() }

    /// What the transfer thread and the reader share, under one condition variable.
    final class State: @unchecked Sendable {
        private let condition = NSCondition()
        private let limit: Int
        private var headers: [(String, String)] = []
        private var status = 0
        private var head: (status: Int, headers: [(String, String)])?
        private var chunks: [[UInt8]] = []
        private var buffered = 0
        private var received = 0
        private var cancelled = false
        private var finished = false
        private var failure: VouchError?
        /// Set (on the transfer thread) when the body outgrew `limit`.
        private(set) var overLimit = false

        init(limit: Int) { self.limit = limit }

        private func locked<R>(_ body: () throws -> R) rethrows -> R {
            condition.lock()
            defer { condition.unlock() }
            return try body()
        }

        /// A header line from curl (transfer thread). The head is whole at the empty line after
        /// a final (non-1xx) status.
        func header(_ line: HeaderLine) {
            locked {
                guard head == nil else { return }   // trailers after the body are not headers of the answer
                switch line {
                case let .status(s): status = s; headers = []
                case let .field(name, value): headers.append((name, value))
                case .end where status >= 200:
                    head = (status, headers)
                    condition.broadcast()
                case .end, .other: break
                }
            }
        }

        /// Body bytes from curl (transfer thread): false stops the transfer (cancelled, over the
        /// limit). Waits while the reader is `bufferedBytes` behind.
        func deliver(_ bytes: [UInt8]) -> Bool {
            locked {
                while buffered >= StreamedResponse.bufferedBytes && !cancelled { condition.wait() }
                guard !cancelled else { return false }
                guard received + bytes.count <= limit else { overLimit = true; return false }
                if head == nil { head = (status, headers) }
                received += bytes.count
                buffered += bytes.count
                chunks.append(bytes)
                condition.broadcast()
                return true
            }
        }

        /// The transfer ended (transfer thread), with `failure` if it failed.
        func finish(_ failure: VouchError?, status: Int) {
            locked {
                self.failure = failure
                if head == nil && failure == nil { head = (status, headers) }
                finished = true
                condition.broadcast()
            }
        }

        func waitForHead() throws -> (status: Int, headers: [(String, String)]) {
            try locked {
                while head == nil && !finished { condition.wait() }
                if let head { return head }
                throw failure ?? VouchError(.http, "the transfer ended without a response")
            }
        }

        func take() throws -> [UInt8]? {
            try locked {
                while chunks.isEmpty && !finished && !cancelled { condition.wait() }
                if cancelled {
                    throw VouchError(.http, "the transfer was cancelled before its end", cause: HTTPClientError.cancelled)
                }
                if !chunks.isEmpty {
                    let chunk = chunks.removeFirst()
                    buffered -= chunk.count
                    condition.broadcast()
                    return chunk
                }
                if let failure { throw failure }
                return nil
            }
        }

        var isCancelled: Bool { locked { cancelled } }

        func cancel() {
            locked {
                cancelled = true
                chunks = []
                buffered = 0
                condition.broadcast()
            }
        }
    }
}

private func streamBody(_ ptr: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ ctx: UnsafeMutableRawPointer?) -> Int {
    guard let ptr, let ctx else { return 0 }
    let n = size * count
    let bytes = ptr.withMemoryRebound(to: UInt8.self, capacity: n) { Array(UnsafeBufferPointer(start: $0, count: n)) }
    return Unmanaged<StreamedResponse.State>.fromOpaque(ctx).takeUnretainedValue().deliver(bytes) ? n : 0
}

private func streamHeader(_ ptr: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ ctx: UnsafeMutableRawPointer?) -> Int {
    guard let ptr, let ctx else { return 0 }
    Unmanaged<StreamedResponse.State>.fromOpaque(ctx).takeUnretainedValue().header(HeaderLine(ptr, count: size * count))
    return size * count
}

private func streamProgress(_ ctx: UnsafeMutableRawPointer?, _ dlTotal: curl_off_t, _ dlNow: curl_off_t, _ ulTotal: curl_off_t, _ ulNow: curl_off_t) -> Int32 {
    guard let ctx else { return 1 }
    return Unmanaged<StreamedResponse.State>.fromOpaque(ctx).takeUnretainedValue().isCancelled ? 1 : 0
}
