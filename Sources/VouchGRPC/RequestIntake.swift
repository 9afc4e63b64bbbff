internal import CNGHTTP2
import VouchCore

/// The event loop's side of one call (one HTTP/2 stream): the request as it arrives, and where
/// its response stands. Used only on the loop's thread.
final class Call {
    let streamID: Int32
    let state: CallState
    var method = ""
    var path = ""
    var metadata: [String: [String]] = [:]
    var headerBytes = 0
    var headersTooLarge = false
    var body: [UInt8] = []
    /// The client sent END_STREAM.
    var requestComplete = false
    /// The request was answered (refused) or handed to the handler: later bytes are ignored.
    var answered = false
    /// Response HEADERS were submitted with a data provider.
    var responseStarted = false
    /// nghttp2 holds the call's DATA deferred until the handler sends or returns.
    var deferred = false
    /// The final frame (trailers, trailers-only response, refusal or reset) was submitted.
    var finished = false
    /// The request was answered before END_STREAM: RST_STREAM(NO_ERROR) follows the answer.
    var resetWhenAnswered = false
    /// nghttp2 closed the stream.
    var streamClosed = false

    init(streamID: Int32, state: CallState) {
        self.streamID = streamID
        self.state = state
    }
}

/// Request intake: what each nghttp2 callback does with a call's headers and DATA, and the
/// checks a request passes before its handler runs. In order:
///  1. a new stream beyond `maxStreamsPerConnection` live calls (or while stopping) is reset
///     with REFUSED_STREAM (nghttp2 also enforces the advertised SETTINGS_MAX_CONCURRENT_STREAMS);
///  2. request headers over `maxHeaderListBytes` (name + value + 32 each, as SETTINGS_MAX_HEADER_LIST_SIZE
///     counts them) → RESOURCE_EXHAUSTED, the fields are not kept;
///  3. `:method` other than POST → HTTP 405;
///  4. `content-type` not `application/grpc`, `application/grpc+…` or `application/grpc;…` → HTTP 415;
///  5. `:path` not starting with "/" → UNIMPLEMENTED;
///  6. a message prefix declaring more than `maxRequestMessageBytes` → RESOURCE_EXHAUSTED, as soon
///     as the 5 bytes arrive (the rest is not read);
///  7. at END_STREAM, exactly one message: none or a truncated one → INTERNAL, bytes after it
///     (a second message) → INTERNAL, the compressed flag set → UNIMPLEMENTED when `grpc-encoding`
///     names a codec (only identity is supported), INTERNAL otherwise.
/// A gRPC answer given before END_STREAM is followed, once sent, by RST_STREAM(NO_ERROR); after
/// an HTTP refusal the rest of the body is read and dropped.
extension Connection {
    func beginCall(_ streamID: Int32) {
        guard let session else { return }
        if calls.count >= loop.limits.maxStreamsPerConnection || loop.isStopping {
            _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_REFUSED_STREAM.rawValue)
            return
        }
        calls[streamID] = Call(streamID: streamID, state: loop.makeCallState(connection: id, stream: streamID))
    }

    func header(_ call: Call, name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>) {
        guard !call.headersTooLarge else { return }
        call.headerBytes += name.count + value.count + 32
        guard call.headerBytes <= loop.limits.maxHeaderListBytes else {
            call.headersTooLarge = true
            call.metadata = [:]
            return
        }
        let n = String(decoding: name, as: UTF8.self)
        let v = String(decoding: value, as: UTF8.self)
        switch n {
        case ":method": call.method = v
        case ":path": call.path = v
        case _ where n.hasPrefix(":"): break
        default: call.metadata[n, default: []].append(v)
        }
    }

    /// The request's HEADERS are complete: checks 2–5.
    func headersReceived(_ call: Call) {
        guard !call.answered else { return }
        if call.headersTooLarge {
            return answer(call, GRPCStatus(.resourceExhausted, "request headers exceed \(loop.limits.maxHeaderListBytes) bytes"))
        }
        guard call.method == "POST" else { return refuse(call, httpStatus: 405) }
        let contentType = call.metadata["content-type"]?.first ?? ""
        guard contentType == "application/grpc" || contentType.hasPrefix("application/grpc+") || contentType.hasPrefix("application/grpc;") else {
            return refuse(call, httpStatus: 415)
        }
        guard call.path.hasPrefix("/") else { return answer(call, GRPCStatus(.unimplemented, "malformed method path")) }
    }

    /// DATA bytes of the request: kept up to one message's worth (check 6).
    func bodyReceived(_ call: Call, _ bytes: UnsafeBufferPointer<UInt8>) {
        guard !call.answered else { return }
        let limit = loop.limits.maxRequestMessageBytes
        if call.body.count + bytes.count > 5 + limit {
            let prefix = Array((call.body + bytes.prefix(5)).prefix(5))
            call.body = []
            return answer(call, declaredLength(prefix) > limit ? tooLarge(limit) : GRPCStatus(.internalError, "more than one request message"))
        }
        call.body += bytes
        if declaredLength(call.body) > limit {
            call.body = []
            answer(call, tooLarge(limit))
        }
    }

    /// END_STREAM: check 7, then the handler runs on its own thread.
    func requestEnded(_ call: Call) {
        guard !call.answered else { return }
        var reader = ByteReader(call.body)
        call.body = []
        let message: [UInt8]
        do {
            let compressed = try reader.u8("compressed flag")
            let length = try reader.u32("message length")
            message = try reader.bytes(Int(length), "message")
            try reader.expectEnd("the request message")
            if compressed != 0 {
                let encoding = call.metadata["grpc-encoding"]?.first ?? "identity"
                return answer(call, compressed == 1 && encoding != "identity"
                    ? GRPCStatus(.unimplemented, "compression (\(encoding)) is not supported")
                    : GRPCStatus(.internalError, "a compressed message without a grpc-encoding"))
            }
        } catch let e as VouchError where e.code == .trailingBytes {
            return answer(call, GRPCStatus(.internalError, "more than one request message"))
        } catch {
            return answer(call, GRPCStatus(.internalError, "the request message is missing or truncated"))
        }
        call.answered = true
        call.state.handlerStarted()
        loop.startHandler(GRPCRequest(method: call.path, metadata: call.metadata, message: message, peer: peer), call.state)
    }

    /// nghttp2 closed the stream: a handler still running sees cancellation.
    func streamClosed(_ streamID: Int32) {
        guard let call = calls[streamID] else { return }
        call.streamClosed = true
        call.finished = true
        call.state.streamClosed()
        if !call.state.isLive { calls[streamID] = nil }
    }

    private func declaredLength(_ prefix: [UInt8]) -> Int {
        guard prefix.count >= 5 else { return 0 }
        return prefix[1...4].reduce(0) { $0 << 8 | Int($1) }
    }

    private func tooLarge(_ limit: Int) -> GRPCStatus {
        GRPCStatus(.resourceExhausted, "request message exceeds \(limit) bytes")
    }
}

/// nghttp2's callbacks and options, made once per server and shared by its sessions.
final class NGHTTP2Setup {
    let callbacks: OpaquePointer
    let options: OpaquePointer

    init() throws {
        var cb: OpaquePointer?
        var opt: OpaquePointer?
        guard nghttp2_session_callbacks_new(&cb) == 0, let cb else { throw VouchError(.grpcListen, "nghttp2 could not allocate its callbacks") }
        guard nghttp2_option_new(&opt) == 0, let opt else {
            nghttp2_session_callbacks_del(cb)
            throw VouchError(.grpcListen, "nghttp2 could not allocate its options")
        }
        callbacks = cb
        options = opt
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb) { _, frame, user in
            guard let frame, let user, isRequestHeaders(frame) else { return 0 }
            connection(user).beginCall(frame.pointee.hd.stream_id)
            return 0
        }
        nghttp2_session_callbacks_set_on_header_callback(cb) { _, frame, name, nameLength, value, valueLength, _, user in
            guard let frame, let user, isRequestHeaders(frame) else { return 0 }
            let c = connection(user)
            if let call = c.calls[frame.pointee.hd.stream_id] {
                c.header(call, name: UnsafeBufferPointer(start: name, count: nameLength), value: UnsafeBufferPointer(start: value, count: valueLength))
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb) { _, frame, user in
            guard let frame, let user else { return 0 }
            let c = connection(user)
            guard let call = c.calls[frame.pointee.hd.stream_id] else { return 0 }
            let type = frame.pointee.hd.type
            let endStream = frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
                && (type == UInt8(NGHTTP2_HEADERS.rawValue) || type == UInt8(NGHTTP2_DATA.rawValue))
            if endStream { call.requestComplete = true }
            if isRequestHeaders(frame) { c.headersReceived(call) }
            if endStream { c.requestEnded(call) }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(cb) { _, frame, user in
            guard let frame, let user, frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue),
                  frame.pointee.hd.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0 else { return 0 }
            connection(user).answerSent(frame.pointee.hd.stream_id)
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb) { _, _, stream, data, length, user in
            guard let user else { return 0 }
            let c = connection(user)
            if let call = c.calls[stream] { c.bodyReceived(call, UnsafeBufferPointer(start: data, count: length)) }
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(cb) { _, stream, _, user in
            guard let user else { return 0 }
            connection(user).streamClosed(stream)
            return 0
        }
    }

    deinit {
        nghttp2_session_callbacks_del(callbacks)
        nghttp2_option_del(options)
    }
}

private func connection(_ user: UnsafeMutableRawPointer) -> Connection {
    Unmanaged<Connection>.fromOpaque(user).takeUnretainedValue()
}

private func isRequestHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Bool {
    frame.pointee.hd.type == UInt8(NGHTTP2_HEADERS.rawValue) && frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST
}
