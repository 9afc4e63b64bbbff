internal import CNGHTTP2
import Foundation
import VouchCore
#if canImport(Glibc)
import Glibc
#endif

/// One accepted connection: its socket, its nghttp2 server session and its calls. Used only on
/// the event loop's thread (nghttp2 sessions are not thread-safe); handler threads reach a call
/// through its `CallState` and the loop's news queue.
final class Connection {
    let id: UInt64
    let fd: Int32
    let peer: PeerCredentials
    unowned let loop: EventLoop
    private(set) var session: OpaquePointer?
    /// Calls by stream id, from their first HEADERS until their stream closed and their handler
    /// (if any) returned: what counts against `maxStreamsPerConnection`.
    var calls: [Int32: Call] = [:]
    /// Bytes nghttp2 produced that the socket has not taken yet.
    private var outbox: [UInt8] = []
    private var outboxStart = 0
    private var inbox = [UInt8](repeating: 0, count: 16 << 10)
    private var closed = false

    /// Most bytes taken from nghttp2 before they are written: what a reader who never reads costs.
    static let outboxLimit = 64 << 10

    init(id: UInt64, fd: Int32, peer: PeerCredentials, loop: EventLoop) throws {
        self.id = id
        self.fd = fd
        self.peer = peer
        self.loop = loop
        var s: OpaquePointer?
        guard nghttp2_session_server_new2(&s, loop.nghttp2.callbacks, Unmanaged.passUnretained(self).toOpaque(), loop.nghttp2.options) == 0, let s else {
            throw VouchError(.grpcListen, "nghttp2 could not create a server session")
        }
        session = s
        var settings = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: UInt32(loop.limits.maxStreamsPerConnection)),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(loop.limits.maxHeaderListBytes)),
        ]
        guard nghttp2_submit_settings(s, UInt8(NGHTTP2_FLAG_NONE.rawValue), &settings, settings.count) == 0 else {
            throw VouchError(.grpcListen, "nghttp2 refused the server's SETTINGS")
        }
    }

    deinit {
        if let session { nghttp2_session_del(session) }
        if !closed { Glibc.close(fd) }
    }

    // MARK: socket

    /// Reads what the socket has and feeds it to nghttp2. False: close the connection (end of
    /// stream, socket error, or bytes that are not HTTP/2 — nghttp2 says which).
    func readable() -> Bool {
        guard let session else { return false }
        for _ in 0..<4 {
            let n = inbox.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                let used = inbox.withUnsafeBytes { nghttp2_session_mem_recv(session, $0.bindMemory(to: UInt8.self).baseAddress, n) }
                if used < 0 { return false }
                if n < inbox.count { return true }
                continue
            }
            if n == 0 { return false }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK
        }
        return true
    }

    /// Takes frames from nghttp2 (at most `outboxLimit` ahead of the socket) and writes what the
    /// socket accepts. False: close the connection.
    func flush() -> Bool {
        guard let session else { return false }
        while true {
            while outbox.count - outboxStart < Self.outboxLimit {
                var p: UnsafePointer<UInt8>?
                let n = nghttp2_session_mem_send(session, &p)
                if n < 0 { return false }
                guard n > 0, let p else { break }
                outbox.append(contentsOf: UnsafeBufferPointer(start: p, count: n))
            }
            let pending = outbox.count - outboxStart
            if pending == 0 { return true }
            let w = outbox.withUnsafeBytes { send(fd, $0.baseAddress! + outboxStart, pending, Int32(MSG_NOSIGNAL)) }
            if w > 0 {
                outboxStart += w
                if outboxStart == outbox.count {
                    outbox.removeAll(keepingCapacity: outbox.capacity <= 4 * Self.outboxLimit)
                    outboxStart = 0
                } else if outboxStart >= Self.outboxLimit {
                    outbox.removeFirst(outboxStart)
                    outboxStart = 0
                }
                continue
            }
            if w < 0 && errno == EINTR { continue }
            return w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
        }
    }

    /// Bytes are waiting for the socket to take them (poll for POLLOUT).
    var wantsWrite: Bool { outbox.count > outboxStart }

    /// Neither side has anything more to say (after GOAWAY both ways, or a fatal error).
    var isFinished: Bool {
        guard let session else { return true }
        return nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 && !wantsWrite
    }

    /// Sends GOAWAY (no error) and whatever the socket takes now, without waiting.
    func goAway() {
        guard let session else { return }
        _ = nghttp2_session_terminate_session(session, NGHTTP2_NO_ERROR.rawValue)
        _ = flush()
    }

    /// Closes the socket and ends every call on it (their handlers see cancellation).
    func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
        for call in calls.values { call.state.streamClosed() }
        calls.removeAll()
        if let s = session {
            session = nil
            nghttp2_session_del(s)
        }
    }

    // MARK: responses

    /// Starts the response once the handler sent something, or ends the call trailers-only when
    /// it returned without sending; afterwards, wakes nghttp2's deferred read of the call's data.
    func pump(_ call: Call) {
        guard let session else { return }
        if call.streamClosed {
            if !call.state.isLive { calls[call.streamID] = nil }
            return
        }
        guard !call.finished else { return }
        if !call.responseStarted {
            let (hasBytes, status) = call.state.snapshot()
            if hasBytes {
                call.responseStarted = true
                var provider = nghttp2_data_provider(source: nghttp2_data_source(ptr: nil), read_callback: readResponseData)
                let rc = submit(Self.responseHeaders) { nva, n in
                    nghttp2_submit_response(session, call.streamID, nva, n, &provider)
                }
                if rc != 0 { resetStream(call, NGHTTP2_INTERNAL_ERROR.rawValue) }
            } else if let status {
                answer(call, status)
            }
        } else if call.deferred {
            call.deferred = false
            _ = nghttp2_session_resume_data(session, call.streamID)
        }
    }

    /// nghttp2 asks for the next bytes of a call's DATA: what the handler queued, then the
    /// trailers once it has returned; nothing yet defers until the handler's next news.
    fileprivate func responseData(stream: Int32, into buffer: UnsafeMutablePointer<UInt8>, capacity: Int,
                                  flags: UnsafeMutablePointer<UInt32>) -> Int {
        guard let session, let call = calls[stream] else { return Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue) }
        let (count, status) = call.state.take(into: buffer, capacity: capacity)
        if let status {
            flags.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue | NGHTTP2_DATA_FLAG_NO_END_STREAM.rawValue
            call.finished = true
            let rc = submit(trailers(status)) { nva, n in nghttp2_submit_trailer(session, stream, nva, n) }
            return rc == 0 ? count : Int(NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue)
        }
        if count == 0 {
            call.deferred = true
            return Int(NGHTTP2_ERR_DEFERRED.rawValue)
        }
        return count
    }

    /// Ends a call that has sent nothing with a trailers-only response (HEADERS with END_STREAM:
    /// :status 200 and the status). If the client is still sending, RST_STREAM(NO_ERROR) once
    /// those HEADERS are sent asks it to stop (RFC 9113 8.1).
    func answer(_ call: Call, _ status: GRPCStatus) {
        guard let session, !call.finished else { return }
        call.finished = true
        call.answered = true
        let rc = submit(Self.responseHeaders + trailers(status)) { nva, n in
            nghttp2_submit_response(session, call.streamID, nva, n, nil)
        }
        if rc != 0 { resetStream(call, NGHTTP2_INTERNAL_ERROR.rawValue) } else if !call.requestComplete { call.resetWhenAnswered = true }
    }

    /// Refuses a request that is not gRPC with a bare HTTP status (405, 415), ending the stream.
    /// Whatever body follows is read and dropped (no RST_STREAM: curl, for one, takes a reset after
    /// a complete response for a failed transfer).
    func refuse(_ call: Call, httpStatus: Int) {
        guard let session, !call.finished else { return }
        call.finished = true
        call.answered = true
        let rc = submit([(":status", "\(httpStatus)"), ("content-type", "text/plain")]) { nva, n in
            nghttp2_submit_response(session, call.streamID, nva, n, nil)
        }
        if rc != 0 { resetStream(call, NGHTTP2_INTERNAL_ERROR.rawValue) }
    }

    /// The answer's HEADERS (END_STREAM) went out: a client still sending is asked to stop.
    func answerSent(_ streamID: Int32) {
        guard let session, let call = calls[streamID], call.resetWhenAnswered else { return }
        call.resetWhenAnswered = false
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_NO_ERROR.rawValue)
    }

    func resetStream(_ call: Call, _ code: UInt32) {
        guard let session else { return }
        call.finished = true
        call.answered = true
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), call.streamID, code)
    }

    /// A gRPC response's HEADERS (only identity encoding is accepted, so it is the one announced).
    static let responseHeaders = [(":status", "200"), ("content-type", "application/grpc"), ("grpc-accept-encoding", "identity")]

    private func trailers(_ status: GRPCStatus) -> [(String, String)] {
        var out = [("grpc-status", "\(status.code.rawValue)")]
        if !status.message.isEmpty { out.append(("grpc-message", status.percentEncodedMessage)) }
        return out
    }

    /// Calls `body` with `fields` as an nghttp2_nv array (nghttp2 copies them before returning).
    private func submit(_ fields: [(String, String)], _ body: (UnsafePointer<nghttp2_nv>, Int) -> Int32) -> Int32 {
        var storage: [UInt8] = []
        var spans: [(name: Range<Int>, value: Range<Int>)] = []
        for (name, value) in fields {
            let n = storage.count
            storage += name.utf8
            let v = storage.count
            storage += value.utf8
            spans.append((n..<v, v..<storage.count))
        }
        storage.append(0)   // never empty, so there is always a base address
        return storage.withUnsafeMutableBufferPointer { raw in
            let base = raw.baseAddress!
            let nva = spans.map {
                nghttp2_nv(name: base + $0.name.lowerBound, value: base + $0.value.lowerBound, namelen: $0.name.count,
                           valuelen: $0.value.count, flags: UInt8(NGHTTP2_NV_FLAG_NONE.rawValue))
            }
            return nva.withUnsafeBufferPointer { body($0.baseAddress!, $0.count) }
        }
    }
}

/// nghttp2's data source read callback for every response: forwards to the connection.
private func readResponseData(_ session: OpaquePointer?, _ stream: Int32, _ buffer: UnsafeMutablePointer<UInt8>?, _ length: Int,
                              _ flags: UnsafeMutablePointer<UInt32>?, _ source: UnsafeMutablePointer<nghttp2_data_source>?,
                              _ userData: UnsafeMutableRawPointer?) -> Int {
    guard let userData, let buffer, let flags else { return Int(NGHTTP2_ERR_CALLBACK_FAILURE.rawValue) }
    let connection = Unmanaged<Connection>.fromOpaque(userData).takeUnretainedValue()
    return connection.responseData(stream: stream, into: buffer, capacity: length, flags: flags)
}
