import Foundation
import VouchCore

/// A gRPC server on a Unix-domain socket: HTTP/2 from libnghttp2, cleartext with prior knowledge
/// (h2c, what gRPC clients speak on `unix:` targets), for unary and server-streaming calls.
///
/// Design. One event-loop thread owns every nghttp2 session (they are not thread-safe): it
/// `poll`s the listening socket, a wake-up pipe and all connections, feeds what arrives to
/// nghttp2 and writes what nghttp2 produces. A request is read whole (its one message, until
/// END_STREAM), checked (the checks in order are listed at `Connection`'s request intake,
/// RequestIntake.swift), and then its handler runs on a thread of its own (512 KiB stack), so a
/// long-lived stream blocks nobody. The handler's `GRPCResponseStream.send` queues a framed message
/// and posts the call to the loop's news queue, waking `poll` through the pipe; the loop submits
/// response HEADERS on the first message and lets nghttp2 pull DATA as the peer's flow-control
/// windows allow. When the handler returns, the trailers carry `grpc-status` 0; a thrown
/// `GRPCStatus` gives its code and percent-encoded `grpc-message`; any other error gives INTERNAL
/// with a generic message. A call that sent nothing ends with a trailers-only response. A client's
/// RST_STREAM, a closed connection or `stop()` cancels the call: `send` throws
/// `GRPCStatus(.cancelled)`, `waitForCancellation` returns true, and a `send` blocked on a full
/// queue wakes.
///
/// Limits (`Limits`). At most `maxConnections` connections, and `maxConnectionsPerUID` of one
/// user (more are closed as they are accepted; out of descriptors, accepting pauses 100 ms); `maxStreamsPerConnection` is advertised as SETTINGS_MAX_CONCURRENT_STREAMS and
/// also counts calls whose stream closed while their handler still runs (more are refused with
/// REFUSED_STREAM), so at most `maxConnections × maxStreamsPerConnection` handler threads exist;
/// `maxHeaderListBytes` is advertised as SETTINGS_MAX_HEADER_LIST_SIZE and a larger request is
/// answered RESOURCE_EXHAUSTED (nghttp2 bounds header fields and CONTINUATION frames itself);
/// a request message over `maxRequestMessageBytes` is answered RESOURCE_EXHAUSTED once its
/// prefix arrives; `send` refuses a message over `maxResponseMessageBytes`, and blocks while
/// more than 256 KiB of its call is queued; each connection holds at most 64 KiB of frames the
/// socket has not taken. Bytes that are not HTTP/2 (a bad preface, a protocol error nghttp2
/// reports as fatal) close that connection only. There is no idle timeout (gRPC clients keep
/// channels open) and `grpc-timeout` is left to handlers (it is in the metadata).
///
/// `stop()` waits for every handler to return: handlers must end once their call is cancelled.
/// Do not call it from a handler.
public final class GRPCServer: Sendable {
    public struct Limits: Sendable {
        public var maxConnections = 1024
        /// Connections one user (the peer's uid) may hold: one local user cannot take them all.
        public var maxConnectionsPerUID = 512
        public var maxStreamsPerConnection = 32
        public var maxRequestMessageBytes = 65536
        public var maxResponseMessageBytes = 4 << 20
        /// The most bytes a request's header list may take (each field: name + value + 32).
        public var maxHeaderListBytes = 16 << 10
        public init() {}
    }

    public typealias Handler = @Sendable (GRPCRequest, GRPCResponseStream) throws -> Void

    private let loop: EventLoop

    /// Removes a stale socket file at `path` (refusing any other kind of file), binds, sets the
    /// file's `mode`, listens, and starts serving.
    public init(unixSocket path: String, mode: UInt16 = 0o666, limits: Limits = .init(), handler: @escaping Handler) throws {
        let positive = [("maxConnections", limits.maxConnections), ("maxConnectionsPerUID", limits.maxConnectionsPerUID), ("maxStreamsPerConnection", limits.maxStreamsPerConnection),
                        ("maxRequestMessageBytes", limits.maxRequestMessageBytes), ("maxResponseMessageBytes", limits.maxResponseMessageBytes),
                        ("maxHeaderListBytes", limits.maxHeaderListBytes)]
        for (name, value) in positive where value < 1 || value > Int(UInt32.max) {
            throw VouchError(.config, "a gRPC server limit is out of range", context: ["field": name, "got": "\(value)"])
        }
        loop = try EventLoop(path: path, mode: mode, limits: limits, handler: handler)
        loop.start()
    }

    deinit { loop.stop() }

    /// Sends GOAWAY, closes every connection (cancelling their calls), waits for the I/O thread
    /// and every handler thread, and removes the socket file. Later calls do nothing.
    public func stop() { loop.stop() }

    /// Calls in progress: from their request's first HEADERS until their stream has closed and
    /// their handler (if it started) has returned.
    public var activeStreams: Int { loop.active.load(ordering: .relaxed) }
}
