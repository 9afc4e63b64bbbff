import VouchCore
import VouchCrypto
import VouchEventLog
import VouchTPMWire

/// A TD's CC event log (the ACPI CCEL area: a TCG crypto-agile log whose "PCR index" is the CC
/// measurement register index), replayed to RTMR values. MR index 0 is MRTD (measured by the TDX
/// module, never by events); 1–4 are RTMR0–3. The log is read with VouchEventLog's TCG parser;
/// the CCEL area's unused tail (after the last event, an index of 0xFFFFFFFF or a run of padding)
/// must be uniform 0xFF or 0x00 padding.
public enum TDXEventLog {
    public static let maxBytes = 16 << 20

    /// RTMR0–3 as the log's SHA-384 events extend them (each register starts at 48 zero bytes;
    /// RTMR = SHA-384(RTMR ‖ digest) per event other than EV_NO_ACTION). Throws
    /// `tdx_event_log_malformed` for a log that does not parse, an event without a SHA-384 digest,
    /// or an event for an index other than 1–4.
    public static func replay(_ bytes: [UInt8]) throws -> [[UInt8]] {
        guard bytes.count <= maxBytes else { throw failure("CC event log is larger than 16 MiB", got: "\(bytes.count)") }
        let end = try logLength(bytes)
        let padding = bytes[end...]
        guard padding.allSatisfy({ $0 == 0xff }) || padding.allSatisfy({ $0 == 0 }) else {
            throw failure("CC event log area has data after its last event", got: "offset \(end)")
        }
        // The CC log's first event (EV_NO_ACTION, "Spec ID Event03") names MR index 1 where a TCG
        // PC Client log names PCR 0; it measures nothing, so it is read as index 0 for the parser.
        var events = Array(bytes[0..<end])
        if events.count >= 8, events[4..<8].elementsEqual([3, 0, 0, 0]), events[0..<4].elementsEqual([1, 0, 0, 0]) { events[0] = 0 }
        let log: TCGEventLog
        do { log = try TCGEventLog(bytes: events) } catch let e as VouchError {
            throw VouchError(.tdxEventLogMalformed, "CC event log: \(e.message)", context: e.context)
        }
        guard log.format == .cryptoAgile else { throw failure("CC event log is not a crypto-agile log", got: log.format.rawValue) }
        var rtmrs = [[UInt8]](repeating: [UInt8](repeating: 0, count: 48), count: 4)
        for e in log.events.dropFirst() where e.type != EventType.noAction {
            guard (1...4).contains(e.pcr) else { throw failure("a CC event log event extends MR index \(e.pcr) (only 1-4, RTMR0-3, take events)", got: "event \(e.sequence)") }
            guard let d = e.digests[.sha384] else { throw failure("a CC event log event has no SHA-384 digest", got: "event \(e.sequence)") }
            rtmrs[e.pcr - 1] = Crypto.digest(.sha384, rtmrs[e.pcr - 1] + d)
        }
        return rtmrs
    }

    /// The length of the events: walks the first (legacy-format) event, reads the digest sizes
    /// from its Spec ID data, then skips TCG_PCR_EVENT2 records until the area ends, the next
    /// record's index is 0xFFFFFFFF, or only zero bytes are left (the unused area).
    static func logLength(_ b: [UInt8]) throws -> Int {
        var r = ByteReader(b)
        do {
            _ = try r.u32le("event[0].pcrIndex")
            _ = try r.u32le("event[0].eventType")
            _ = try r.bytes(20, "event[0].digest")
            let size = Int(try r.u32le("event[0].eventSize"))
            var spec = ByteReader(try r.bytes(size, "event[0].event"))
            _ = try spec.bytes(24, "specID.header")
            let n = try spec.u32le("specID.numberOfAlgorithms")
            guard (1...16).contains(n) else { throw failure("Spec ID event declares an impossible number of algorithms", got: "\(n)") }
            var sizes: [UInt16: Int] = [:]
            for _ in 0..<n { sizes[try spec.u16le("specID.algorithmId")] = Int(try spec.u16le("specID.digestSize")) }
            while r.remaining >= 4 {
                let at = r.offset
                var peek = r
                let index = try peek.u32le("pcrIndex")
                if index == 0xffff_ffff || (index == 0 && b[at...].allSatisfy { $0 == 0 }) { return at }
                _ = try r.u32le("pcrIndex")
                _ = try r.u32le("eventType")
                let count = try r.u32le("digests.count")
                guard count <= UInt32(sizes.count) else { throw failure("an event carries more digests than the log declares", got: "offset \(at)") }
                for _ in 0..<count {
                    guard let size = sizes[try r.u16le("digest.hashAlg")] else { throw failure("an event digest uses an undeclared algorithm", got: "offset \(at)") }
                    _ = try r.bytes(size, "digest")
                }
                _ = try r.bytes(Int(try r.u32le("eventSize")), "event")
            }
            return r.offset
        } catch let e as VouchError where e.code != .tdxEventLogMalformed {
            throw VouchError(.tdxEventLogMalformed, "CC event log: \(e.message)", context: e.context)
        }
    }

    private static func failure(_ message: String, got: String) -> VouchError {
        VouchError(.tdxEventLogMalformed, message, context: ["field": "eventLog", "got": got])
    }
}
