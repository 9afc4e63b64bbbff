import VouchCore
import VouchTPMWire

/// A TCG PC Client firmware event log (TCG PC Client Platform Firmware Profile, section 10), as
/// Linux exports it in `/sys/kernel/security/tpm0/binary_bios_measurements`, parsed and
/// UNVERIFIED: anyone can write these bytes. Nothing here may be believed until `verify` has
/// checked it against a verified quote (`VerifiedEventLog`); claims exist only on that type.
/// Both formats:
/// - legacy: every event a TCG_PCClientPCREvent (little-endian; SHA-1 digest);
/// - crypto agile: a first legacy-format EV_NO_ACTION event carrying TCG_EfiSpecIDEvent
///   ("Spec ID Event03") that lists the digest algorithms and sizes, then TCG_PCR_EVENT2 events.
public struct TCGEventLog: Sendable {
    public enum Format: String, Sendable { case legacySHA1 = "sha1-legacy", cryptoAgile = "crypto-agile" }

    public struct Event: Sendable {
        /// Position in the log, counting from 0 (the Spec ID event included).
        public let sequence: Int
        public let offset: Int
        public let pcr: Int
        public let type: UInt32
        /// Digests by algorithm; algorithms Vouch cannot hash (e.g. SM3) are parsed and omitted.
        public let digests: [HashAlg: [UInt8]]
        public let data: [UInt8]

        public var typeName: String { EventType.name(type) }
    }

    public let format: Format
    /// Algorithms the Spec ID event declares (raw TPM_ALG_ID → digest size).
    public let declaredAlgorithms: [(id: UInt16, size: Int)]
    public let events: [Event]

    public static let maxBytes = 64 << 20
    public static let maxEvents = 1 << 20

    public init(bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxBytes else {
            throw VouchError(.invalidValue, "event log is larger than 64 MiB", context: ["field": "eventlog", "got": "\(bytes.count)"])
        }
        var r = ByteReader(bytes)
        var events: [Event] = []
        // The first event is always in the legacy format.
        let first = try Self.legacyEvent(&r, sequence: 0)
        if first.type == EventType.noAction, first.pcr == 0, first.data.starts(with: Array("Spec ID Event03".utf8) + [0]) {
            format = .cryptoAgile
            declaredAlgorithms = try Self.specID(first.data)
        } else {
            format = .legacySHA1
            declaredAlgorithms = [(TPMAlg.sha1.rawValue, 20)]
        }
        events.append(first)
        try Self.parseEvents(&r, into: &events, format: format, sizes: Self.digestSizes(declaredAlgorithms))
        self.events = events
    }

    /// A log whose parts were parsed elsewhere (`VerifiedLogCache`: a cached prefix and its tail).
    init(format: Format, declaredAlgorithms: [(id: UInt16, size: Int)], events: [Event]) {
        self.format = format
        self.declaredAlgorithms = declaredAlgorithms
        self.events = events
    }

    /// The digest size of each declared algorithm (the first declaration of an id wins).
    static func digestSizes(_ declared: [(id: UInt16, size: Int)]) -> [UInt16: Int] {
        Dictionary(declared.map { ($0.id, $0.size) }, uniquingKeysWith: { a, _ in a })
    }

    /// Parses events from `r` to its end, every one after the first in `format` (a crypto-agile
    /// log's events after the Spec ID event are TCG_PCR_EVENT2, with `sizes` from it), appending
    /// them to `events`, whose first element is event number `base` of the log, and refusing past
    /// `maxEvents` in all. The whole log's parse (`base` 0) and a cached prefix's tail
    /// (`VerifiedLogCache`, `base` the prefix's event count) both go through here, so a tail
    /// parses exactly as it would inside the whole log.
    static func parseEvents(_ r: inout ByteReader, into events: inout [Event], base: Int = 0, format: Format, sizes: [UInt16: Int]) throws {
        while !r.isAtEnd {
            let sequence = base + events.count
            guard sequence < Self.maxEvents else { throw VouchError(.invalidValue, "event log has too many events", context: ["offset": "\(r.offset)"]) }
            switch format {
            case .cryptoAgile: events.append(try Self.agileEvent(&r, sequence: sequence, sizes: sizes))
            case .legacySHA1: events.append(try Self.legacyEvent(&r, sequence: sequence))
            }
        }
    }

    private static func pcrIndex(_ r: inout ByteReader, _ seq: Int) throws -> Int {
        let o = r.offset
        let pcr = try r.u32le("event[\(seq)].pcrIndex")
        guard pcr <= 23 else {
            throw VouchError(.invalidValue, "event names a PCR above 23", context: ["field": "event[\(seq)].pcrIndex", "offset": "\(o)", "got": "\(pcr)"])
        }
        return Int(pcr)
    }

    private static func eventData(_ r: inout ByteReader, _ seq: Int) throws -> [UInt8] {
        let size = Int(try r.u32le("event[\(seq)].eventSize"))
        return try r.bytes(size, "event[\(seq)].event")   // bounded by the remaining input
    }

    private static func legacyEvent(_ r: inout ByteReader, sequence: Int) throws -> Event {
        let offset = r.offset
        let pcr = try pcrIndex(&r, sequence)
        let type = try r.u32le("event[\(sequence)].eventType")
        let digest = try r.bytes(20, "event[\(sequence)].digest")
        let data = try eventData(&r, sequence)
        return Event(sequence: sequence, offset: offset, pcr: pcr, type: type, digests: [.sha1: digest], data: data)
    }

    private static func agileEvent(_ r: inout ByteReader, sequence: Int, sizes: [UInt16: Int]) throws -> Event {
        let offset = r.offset
        let pcr = try pcrIndex(&r, sequence)
        let type = try r.u32le("event[\(sequence)].eventType")
        let count = try r.u32le("event[\(sequence)].digests.count")
        guard count <= UInt32(sizes.count) else {
            throw VouchError(.invalidValue, "event carries more digests than the log declares algorithms",
                             context: ["field": "event[\(sequence)].digests.count", "offset": "\(offset + 8)", "expected": "<= \(sizes.count)", "got": "\(count)"])
        }
        var digests: [HashAlg: [UInt8]] = [:]
        for i in 0..<Int(count) {
            let algOffset = r.offset
            let alg = try r.u16le("event[\(sequence)].digests[\(i)].hashAlg")
            guard let size = sizes[alg] else {
                throw VouchError(.invalidValue, "event digest uses an algorithm the Spec ID event does not declare",
                                 context: ["field": "event[\(sequence)].digests[\(i)].hashAlg", "offset": "\(algOffset)", "got": "\(alg)"])
            }
            let d = try r.bytes(size, "event[\(sequence)].digests[\(i)]")
            if let a = TPMAlg(rawValue: alg), let h = HashAlg(tpmAlg: a) { digests[h] = d }
        }
        let data = try eventData(&r, sequence)
        return Event(sequence: sequence, offset: offset, pcr: pcr, type: type, digests: digests, data: data)
    }

    /// TCG_EfiSpecIDEvent: signature[16], platformClass u32, versions u8×3, uintnSize u8,
    /// numberOfAlgorithms u32, {algorithmId u16, digestSize u16}[n], vendorInfoSize u8, vendorInfo.
    private static func specID(_ data: [UInt8]) throws -> [(id: UInt16, size: Int)] {
        var r = ByteReader(data)
        _ = try r.bytes(16, "specID.signature")
        _ = try r.u32le("specID.platformClass")
        _ = try r.bytes(4, "specID.version")
        let n = try r.u32le("specID.numberOfAlgorithms")
        guard (1...16).contains(n) else {
            throw VouchError(.invalidValue, "Spec ID event declares an impossible number of algorithms", context: ["field": "specID.numberOfAlgorithms", "got": "\(n)"])
        }
        var out: [(UInt16, Int)] = []
        for i in 0..<Int(n) {
            let id = try r.u16le("specID.digestSizes[\(i)].algorithmId")
            let size = Int(try r.u16le("specID.digestSizes[\(i)].digestSize"))
            guard (1...64).contains(size) else {
                throw VouchError(.invalidValue, "Spec ID event declares an impossible digest size", context: ["field": "specID.digestSizes[\(i)].digestSize", "got": "\(size)"])
            }
            if let a = TPMAlg(rawValue: id), let h = HashAlg(tpmAlg: a), h.digestSize != size {
                throw VouchError(.invalidValue, "Spec ID event declares the wrong size for \(h.rawValue)", context: ["expected": "\(h.digestSize)", "got": "\(size)"])
            }
            // Each algorithm once (the digestSizes array declares the log's banks): a second entry
            // for one id would name a bank twice.
            guard !out.contains(where: { $0.0 == id }) else {
                throw VouchError(.invalidValue, "Spec ID event declares an algorithm twice", context: ["field": "specID.digestSizes[\(i)].algorithmId", "got": "0x" + String(id, radix: 16)])
            }
            out.append((id, size))
        }
        return out
    }

    /// The banks this log can be replayed in.
    public var banks: [HashAlg] {
        declaredAlgorithms.compactMap { TPMAlg(rawValue: $0.id).flatMap(HashAlg.init(tpmAlg:)) }.sorted { $0.digestSize < $1.digestSize }
    }

    /// The locality from a StartupLocality EV_NO_ACTION event in PCR 0, if present (PFP 10.4.5.3).
    public var startupLocality: UInt8? {
        events.first(where: Self.isStartupLocality)?.data.last
    }

    /// Whether `e` is a StartupLocality EV_NO_ACTION event in PCR 0 (its last data byte is the locality).
    static func isStartupLocality(_ e: Event) -> Bool {
        let marker = startupLocalityMarker
        return e.type == EventType.noAction && e.pcr == 0 && e.data.count == marker.count + 1 && e.data.starts(with: marker)
    }

    private static let startupLocalityMarker = Array("StartupLocality".utf8) + [0]

    /// Replays the log: for every event but EV_NO_ACTION, PCR = H(PCR ‖ digest), starting from
    /// zeros (PCR 0 from 0…0‖locality when a StartupLocality event says so). Returns, per bank,
    /// the value of every PCR that at least one event extended. An event lacking the bank's
    /// digest makes that bank unreplayable (it is then left out) rather than silently wrong.
    public func replay(using digester: Digester) -> [HashAlg: [Int: [UInt8]]] {
        replayState(using: digester).values
    }

    /// The replay as a state that further events can extend (`ReplayState`).
    func replayState(using digester: Digester) -> ReplayState {
        var state = ReplayState(banks: banks, locality: startupLocality)
        state.extend(with: events, using: digester)
        return state
    }
}

/// Every bank's 24 PCRs after some events of a log (nil: not extended yet), so a log that grew can
/// be replayed from where its verified prefix ended rather than from zeros (`VerifiedLogCache`).
/// `TCGEventLog.replay` is this state extended with every event from the start: one replay rule.
struct ReplayState: Sendable {
    /// The banks still replayable: an event that lacked a bank's digest removed that bank.
    private(set) var pcrs: [HashAlg: [[UInt8]?]]
    /// The log's StartupLocality (PCR 0's first extension starts from 0…0‖locality).
    let locality: UInt8?

    init(banks: [HashAlg], locality: UInt8?) {
        // pcrIndex is checked <= 23 when parsed; a bank named twice is one bank (the parser refuses
        // a Spec ID event that declares an algorithm twice, and this never traps on one).
        self.pcrs = Dictionary(banks.map { ($0, [[UInt8]?](repeating: nil, count: 24)) }, uniquingKeysWith: { first, _ in first })
        self.locality = locality
    }

    /// Extends every replayable bank with `events` in order (EV_NO_ACTION extends nothing).
    mutating func extend(with events: some Sequence<TCGEventLog.Event>, using digester: Digester) {
        for bank in pcrs.keys.sorted(by: { $0.digestSize < $1.digestSize }) {
            guard var values = pcrs.removeValue(forKey: bank) else { continue }
            var replayable = true
            for e in events where e.type != EventType.noAction {
                guard let d = e.digests[bank] else { replayable = false; break }
                var input = values[e.pcr] ?? [UInt8](repeating: 0, count: bank.digestSize)
                if values[e.pcr] == nil, e.pcr == 0, let locality { input[input.count - 1] = locality }
                input.append(contentsOf: d)
                values[e.pcr] = digester.digest(bank, input)
            }
            if replayable { pcrs[bank] = values }
        }
    }

    /// Per replayable bank, the value of every PCR that at least one event extended.
    var values: [HashAlg: [Int: [UInt8]]] {
        pcrs.mapValues { pcrs in
            var values: [Int: [UInt8]] = [:]
            for (i, v) in pcrs.enumerated() { if let v { values[i] = v } }
            return values
        }
    }
}

/// Event types (PFP 10.4.1) with their names.
public enum EventType {
    public static let noAction: UInt32 = 0x3
    public static let separator: UInt32 = 0x4
    public static let action: UInt32 = 0x5
    public static let sCRTMVersion: UInt32 = 0x8
    public static let ipl: UInt32 = 0xD
    public static let efiVariableDriverConfig: UInt32 = 0x8000_0001
    public static let efiVariableBoot: UInt32 = 0x8000_0002
    public static let efiBootServicesApplication: UInt32 = 0x8000_0003
    public static let efiGPTEvent: UInt32 = 0x8000_0006
    public static let efiAction: UInt32 = 0x8000_0007
    public static let efiVariableBoot2: UInt32 = 0x8000_000C
    public static let efiVariableAuthority: UInt32 = 0x8000_00E0

    static let names: [UInt32: String] = [
        0x0: "EV_PREBOOT_CERT", 0x1: "EV_POST_CODE", 0x2: "EV_UNUSED", 0x3: "EV_NO_ACTION", 0x4: "EV_SEPARATOR",
        0x5: "EV_ACTION", 0x6: "EV_EVENT_TAG", 0x7: "EV_S_CRTM_CONTENTS", 0x8: "EV_S_CRTM_VERSION", 0x9: "EV_CPU_MICROCODE",
        0xA: "EV_PLATFORM_CONFIG_FLAGS", 0xB: "EV_TABLE_OF_DEVICES", 0xC: "EV_COMPACT_HASH", 0xD: "EV_IPL",
        0xE: "EV_IPL_PARTITION_DATA", 0xF: "EV_NONHOST_CODE", 0x10: "EV_NONHOST_CONFIG", 0x11: "EV_NONHOST_INFO",
        0x12: "EV_OMIT_BOOT_DEVICE_EVENTS",
        0x8000_0001: "EV_EFI_VARIABLE_DRIVER_CONFIG", 0x8000_0002: "EV_EFI_VARIABLE_BOOT",
        0x8000_0003: "EV_EFI_BOOT_SERVICES_APPLICATION", 0x8000_0004: "EV_EFI_BOOT_SERVICES_DRIVER",
        0x8000_0005: "EV_EFI_RUNTIME_SERVICES_DRIVER", 0x8000_0006: "EV_EFI_GPT_EVENT", 0x8000_0007: "EV_EFI_ACTION",
        0x8000_0008: "EV_EFI_PLATFORM_FIRMWARE_BLOB", 0x8000_0009: "EV_EFI_HANDOFF_TABLES",
        0x8000_000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2", 0x8000_000B: "EV_EFI_HANDOFF_TABLES2", 0x8000_000C: "EV_EFI_VARIABLE_BOOT2",
        0x8000_0010: "EV_EFI_HCRTM_EVENT", 0x8000_00E0: "EV_EFI_VARIABLE_AUTHORITY",
        0x8000_00E1: "EV_EFI_SPDM_FIRMWARE_BLOB", 0x8000_00E2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
    ]

    public static func name(_ type: UInt32) -> String {
        names[type] ?? "EV_UNKNOWN_0x\(String(type, radix: 16))"
    }
}
