import Foundation
import Synchronization
import VouchAPI
import VouchCore
import VouchHTTPClient

/// A streamed (Server-Sent Events) answer passed through the receipt proxy: each piece the
/// upstream sends goes to the client as soon as it arrives (nothing is held back to be read
/// whole); when the upstream's stream ends, one more event — always the last — carries the
/// receipt over the concatenation of every byte forwarded, and that byte count (decimal):
///
///     event: vouch-receipt
///     data: {"bundle":<the bundle JSON>,"salt":"<hex>","length":"<N>"}
///
/// Before it, a line end or two when the upstream's last event was not closed by an empty line,
/// so the receipt is an event of its own (those separator bytes are not part of the output the
/// receipt covers). If the upstream breaks off, outgrows the proxy's in-flight budget, sends an
/// event named `vouch-receipt` or `vouch-error` of its own (the piece with that line is not
/// forwarded), or no receipt can be signed, the stream ends with `event: vouch-error`,
/// `data: {"code":…,"message":…}` and no receipt.
final class ReceiptEventStream: Sendable {
    private enum Phase { case forwarding, finished }
    private struct State {
        var phase = Phase.forwarding
        var forwarded: [UInt8] = []
        /// Where the line being received starts in `forwarded` (lines before it were checked).
        var lineStart = 0
    }

    private let upstream: StreamedResponse
    private let hold: InFlightBudget.Hold
    private let log: @Sendable (String) -> Void
    private let sign: @Sendable ([UInt8]) throws -> (bundle: [UInt8], salt: [UInt8])
    private let state = Mutex(State())

    init(upstream: StreamedResponse, hold: InFlightBudget.Hold, log: @escaping @Sendable (String) -> Void = { _ in },
         sign: @escaping @Sendable ([UInt8]) throws -> (bundle: [UInt8], salt: [UInt8])) {
        self.upstream = upstream
        self.hold = hold
        self.log = log
        self.sign = sign
    }

    /// The next bytes for the client (blocking until the upstream sends some); nil at the end.
    @Sendable func next() -> [UInt8]? {
        guard state.withLock({ $0.phase }) == .forwarding else { return nil }
        let chunk: [UInt8]?
        do {
            chunk = try upstream.next()
            try chunk.map { try hold.add($0.count) }
        } catch {
            upstream.cancel()
            return finish(Self.errorEvent(ReceiptProxy.upstreamError(error)))
        }
        if let chunk {
            let forged = state.withLock { s in
                s.forwarded += chunk
                return Self.namesProxyEvent(&s)
            }
            if forged {
                upstream.cancel()
                state.withLock { $0.forwarded.removeLast(chunk.count) }
                return finish(Self.errorEvent(VouchError(.upstreamFailed, "the upstream's stream has an event named vouch-receipt or vouch-error of its own")))
            }
            return chunk
        }
        do {
            let output = state.withLock { $0.forwarded }
            guard !Self.tailNamesProxyEvent(state.withLock { $0 }) else { return finish([]) }
            let receipt = try sign(output)
            let data = Array(#"{"bundle":"#.utf8) + receipt.bundle + Array(#","salt":""#.utf8) + Array(Hex.encode(receipt.salt).utf8)
                + Array(#"","length":"\#(output.count)"}"#.utf8)
            return finish(ServerSentEvents.event("vouch-receipt", data))
        } catch {
            return finish(Self.errorEvent(VouchError(.receiptFailed, "the answer could not be signed: \((error as? VouchError)?.message ?? "\(error)")")))
        }
    }

    /// The client's connection closed (after the end, or cut off before it): the upstream
    /// transfer stops and the held bytes go back to the budget. A stream cut before its receipt
    /// is logged.
    @Sendable func close() {
        upstream.cancel()
        let cut = state.withLock { s in
            defer { s = State(phase: .finished) }
            return s.phase == .forwarding ? s.forwarded.count : nil
        }
        hold.release()
        if let cut { log("proxy: a stream was closed after \(cut) bytes, before its receipt (the client left or its connection was cut)") }
    }

    /// The last bytes of the stream: `event` after what separates it from the output. When the
    /// output ends in an unfinished line naming a proxy event (`event: vouch-receipt` with no
    /// line end yet), any byte more would finish the upstream's forged event: the stream ends
    /// there instead, with nothing (a client drops an event the stream ends inside), logged.
    private func finish(_ event: [UInt8]) -> [UInt8]? {
        let (output, forgedTail) = state.withLock { s in
            defer { s = State(phase: .finished) }
            return (s.forwarded, Self.tailNamesProxyEvent(s))
        }
        hold.release()
        guard !forgedTail else {
            log("proxy: the upstream's stream ends in an event line naming a proxy event; ended without a receipt")
            return nil
        }
        return ServerSentEvents.separator(after: output) + event
    }

    private static func tailNamesProxyEvent(_ s: State) -> Bool {
        s.lineStart < s.forwarded.count && ServerSentEvents.isProxyEventLine(s.forwarded[s.lineStart...])
    }

    /// Checks the lines completed since the last call (a line ends at CR or LF): true when one
    /// is an `event` field naming `vouch-receipt` or `vouch-error`.
    private static func namesProxyEvent(_ s: inout State) -> Bool {
        var i = s.lineStart
        while i < s.forwarded.count {
            let b = s.forwarded[i]
            if b == 0x0a || b == 0x0d {
                if ServerSentEvents.isProxyEventLine(s.forwarded[s.lineStart..<i]) { return true }
                s.lineStart = i + 1
            }
            i += 1
        }
        return false
    }

    static func errorEvent(_ e: VouchError) -> [UInt8] {
        ServerSentEvents.event("vouch-error", JSONCodec.encode(APIError(code: e.code.rawValue, message: e.message)))
    }
}

/// Writing Server-Sent Events (WHATWG HTML, "Server-sent events": lines end in LF, CR or CRLF;
/// an empty line ends an event; a client joins an event's `data:` lines with LF).
public enum ServerSentEvents {
    /// One event: its data as `data:` lines, split where it has line ends (LF, CR or CRLF), so
    /// a client that joins them with LF gets the data back with LF line ends (in JSON, the
    /// same value); closed by an empty line.
    public static func event(_ name: String, _ data: [UInt8]) -> [UInt8] {
        var out = Array("event: \(name)\n".utf8)
        var line: [UInt8] = []
        var i = 0
        while i < data.count {
            switch data[i] {
            case 0x0a, 0x0d:
                if data[i] == 0x0d && i + 1 < data.count && data[i + 1] == 0x0a { i += 1 }
                out += Array("data: ".utf8) + line + [0x0a]
                line = []
            default:
                line.append(data[i])
            }
            i += 1
        }
        return out + Array("data: ".utf8) + line + [0x0a, 0x0a]
    }

    /// Whether `line` (without its line end) is an `event` field naming one of the proxy's own
    /// events (`event:` then an optional space, then `vouch-receipt` or `vouch-error`).
    static func isProxyEventLine(_ line: ArraySlice<UInt8>) -> Bool {
        let field = Array("event:".utf8)
        guard line.starts(with: field) else { return false }
        var value = line.dropFirst(field.count)
        if value.first == 0x20 { value = value.dropFirst() }
        return value.elementsEqual("vouch-receipt".utf8) || value.elementsEqual("vouch-error".utf8)
    }

    /// What must come between `output` and a new event so the new one stands alone: nothing
    /// when the output ends with an empty line (two line ends) or is empty; one line end after
    /// one (CR after a CR, which a LF would only have completed); two otherwise.
    public static func separator(after output: [UInt8]) -> [UInt8] {
        guard let last = output.last else { return [] }
        var i = output.count, ends = 0
        while ends < 2 && i > 0 && (output[i - 1] == 0x0a || output[i - 1] == 0x0d) {
            if output[i - 1] == 0x0a && i > 1 && output[i - 2] == 0x0d { i -= 1 }
            i -= 1
            ends += 1
        }
        switch ends {
        case 2: return []
        case 1: return [last]
        default: return [0x0a, 0x0a]
        }
    }
}
