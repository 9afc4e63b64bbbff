import VouchCore
import VouchTPMWire

/// What a verified firmware event log says about the boot, for policy and for people. Only
/// `VerifiedEventLog.claims` makes one, so every claim comes from an event of a quoted PCR that
/// replayed to the quote, read only after its data was checked against its digest.
public struct BootClaims: Sendable, Codable, Equatable {
    public struct BootApplication: Sendable, Codable, Equatable {
        public init(pcr: Int, digest: String, path: String?) { self.pcr = pcr; self.digest = digest; self.path = path }
        public var pcr: Int
        /// Authenticode digest of the image: SHA-256 when the log has that bank, else its strongest (hex).
        public var digest: String
        /// File path from the image's device path, when it has one. Informational and UNVERIFIED:
        /// the digest covers the image, not this path; policies match digests only.
        public var path: String?
    }

    /// The SecureBoot UEFI variable as measured into PCR 7: true = 1, false = 0, nil = absent or empty.
    public var secureBoot: Bool?
    /// Digests of the measured Secure Boot variables (PK, KEK, db, dbx, …), bank as for boot applications.
    public var variables: [String: String] = [:]
    public var bootApplications: [BootApplication] = []
    /// GRUB's measured commands and kernel command lines (EV_IPL events in PCR 8).
    public var grubCommands: [String] = []
    public var kernelCommandLines: [String] = []
    public var efiActions: [String] = []
    /// PCRs whose EV_SEPARATOR is not the normal 00000000 (FFFFFFFF marks a firmware error).
    public var separatorErrors: [Int] = []
    /// PCRs 0-7 that have a separator event (pre-OS measurements were closed).
    public var separatedPCRs: [Int] = []
    /// SHA-256 hashes revoked by the measured dbx (EFI_CERT_SHA256 entries), lowercase hex.
    public var dbxEntries: [String] = []
    /// The PCRs these claims were read from (quoted, and replayed to the quote); nil in records
    /// written before Vouch kept it.
    public var pcrs: [Int]?
    /// Sequence numbers of events in PCR 8 that are not GRUB strings checked against their digest
    /// (e.g. systemd-boot's UTF-16 options, or any other type: types are not covered by digests),
    /// so a kernel command line may hide there.
    public var uncheckedCommandEvents: [Int]?

    public init() {}
}

extension VerifiedEventLog {
    public var claims: BootClaims {
        var fold = ClaimsFold(pcrs: pcrs)
        for e in events { fold.add(e) }
        return fold.claims
    }
}

/// The boot claims of a verified log's events read so far, in log order: `VerifiedEventLog.claims`
/// is every event added to an empty fold, and `VerifiedLogCache` keeps the fold of a verified
/// prefix so a grown log adds only its new events (the same reading, event by event).
struct ClaimsFold: Sendable, Equatable {
    private var c = BootClaims()
    private var separated = Set<Int>()
    private var unchecked: [Int] = []

    init(pcrs: [Int]) { c.pcrs = pcrs }

    /// Reads one event (its digests only those of banks the quote vouched for in its PCR).
    mutating func add(_ e: VerifiedEvent) {
        // Digests are reported in SHA-256 when the quote vouched for it in the event's PCR (what
        // policies list), else the strongest vouched bank; a verified event carries digests only
        // of banks whose replay matched the quote.
        func digest(_ e: VerifiedEvent) -> String {
            (e.digests[.sha256] ?? e.digests.max(by: { $0.key.digestSize < $1.key.digestSize })?.value).map { Hex.encode($0) } ?? ""
        }
        switch e.content {
        case let .variable(name, data):
            guard e.type == EventType.efiVariableDriverConfig && e.pcr == 7 else { return }
            if name == "SecureBoot" { c.secureBoot = data.isEmpty ? nil : data.first == 1 }
            if ["PK", "KEK", "db", "dbx", "dbt", "dbr"].contains(name) { c.variables[name] = digest(e) }
            if name == "dbx" { c.dbxEntries = sha256SignatureEntries(data) }
        case let .image(path):
            c.bootApplications.append(.init(pcr: e.pcr, digest: digest(e), path: path))
        case .digestOnly where e.pcr == 4 || e.pcr == 2:
            // No digest covers an event's type: an image load relabelled as another type must
            // still be judged, so every unchecked event in PCRs 2 and 4 (including option-ROM
            // drivers) counts as a boot application.
            c.bootApplications.append(.init(pcr: e.pcr, digest: digest(e), path: nil))
        case let .kernelCommandLine(text):
            c.kernelCommandLines.append(text)
        case let .grubCommand(text):
            c.grubCommands.append(text)
        case let .action(text):
            c.efiActions.append(text)
        case let .separator(data):
            if e.pcr <= 7 { separated.insert(e.pcr) }
            if data != [0, 0, 0, 0] { c.separatorErrors.append(e.pcr) }
        case .digestOnly:
            // Whatever type it claims, an unchecked event in PCR 8 may be a command line.
            if e.pcr == 8 { unchecked.append(e.sequence) }
        }
    }

    /// The claims of the events added so far.
    var claims: BootClaims {
        var out = c
        out.separatedPCRs = separated.sorted()
        if !unchecked.isEmpty { out.uncheckedCommandEvents = unchecked }
        return out
    }
}

/// EFI_CERT_SHA256_GUID c1c41626-504c-4092-aca9-41f936934328, as stored (little-endian fields).
let efiCertSHA256GUID: [UInt8] = [0x26, 0x16, 0xc4, 0xc1, 0x4c, 0x50, 0x92, 0x40, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28]

/// The SHA-256 entries of an EFI signature database (a sequence of EFI_SIGNATURE_LIST: type GUID,
/// list size u32, header size u32, signature size u32, header, then {owner GUID, data} entries).
func sha256SignatureEntries(_ data: [UInt8]) -> [String] {
    var out: [String] = []
    var r = ByteReader(data)
    while r.remaining >= 28 {
        let start = r.offset
        guard let type = try? r.bytes(16, "type"), let listSize = try? r.u32le("listSize"), let headerSize = try? r.u32le("headerSize"),
              let sigSize = try? r.u32le("signatureSize"), listSize >= 28, Int(listSize) <= data.count - start,
              sigSize > 16, UInt64(headerSize) + 28 <= UInt64(listSize) else { break }
        let body = Int(listSize) - 28 - Int(headerSize)
        guard (try? r.bytes(Int(headerSize), "header")) != nil, body >= 0 else { break }
        let count = body / Int(sigSize)
        for _ in 0..<count {
            guard (try? r.bytes(16, "owner")) != nil, let sig = try? r.bytes(Int(sigSize) - 16, "data") else { return out }
            if type == efiCertSHA256GUID && sig.count == 32 { out.append(Hex.encode(sig)) }
        }
        _ = try? r.bytes(body - count * Int(sigSize), "padding")
    }
    return out
}

/// UEFI_VARIABLE_DATA: VariableName GUID, UnicodeNameLength u64 (characters), VariableDataLength u64,
/// UnicodeName (UTF-16LE), VariableData.
public struct UEFIVariable: Sendable {
    public let guid: [UInt8]
    public let name: String
    public let data: [UInt8]

    public init?(_ bytes: [UInt8]) {
        var r = ByteReader(bytes)
        guard let guid = try? r.bytes(16, "guid"), let nameLen = try? r.u64le("nameLength"), let dataLen = try? r.u64le("dataLength"),
              nameLen <= 1024, dataLen <= UInt64(r.remaining), let nameBytes = try? r.bytes(Int(nameLen) * 2, "name"),
              let data = try? r.bytes(Int(dataLen), "data") else { return nil }
        self.guid = guid
        self.name = utf16le(nameBytes)
        self.data = data
    }
}

func utf16le(_ b: [UInt8]) -> String {
    var units: [UInt16] = []
    var i = 0
    while i + 1 < b.count { units.append(UInt16(b[i]) | UInt16(b[i + 1]) << 8); i += 2 }
    while units.last == 0 { units.removeLast() }
    return String(decoding: units, as: UTF16.self)
}

func asciiText(_ b: [UInt8]) -> String {
    var bytes = b
    while bytes.last == 0 { bytes.removeLast() }
    return String(decoding: bytes, as: UTF8.self)
}

/// UEFI_IMAGE_LOAD_EVENT (location u64, length u64, link-time address u64, device-path length u64,
/// device path): the concatenated file-path nodes (media type 4, subtype 4) of the device path.
func imagePath(_ data: [UInt8]) -> String? {
    var r = ByteReader(data)
    guard (try? r.bytes(24, "image")) != nil, let len = try? r.u64le("devicePathLength"), len <= UInt64(r.remaining),
          let path = try? r.bytes(Int(len), "devicePath") else { return nil }
    var nodes = ByteReader(path)
    var parts: [String] = []
    while nodes.remaining >= 4 {
        guard let type = try? nodes.u8("type"), let sub = try? nodes.u8("subtype"), let l = try? nodes.u16le("length"),
              l >= 4, let body = try? nodes.bytes(Int(l) - 4, "node") else { break }
        if type == 0x7f { break }
        if type == 4 && sub == 4 { parts.append(utf16le(body)) }
    }
    return parts.isEmpty ? nil : parts.joined()
}

extension TCGEventLog.Event {
    /// A one-line reading of the event's data, for display: unverified, never a claim.
    public var summary: String {
        switch type {
        case EventType.efiVariableDriverConfig, EventType.efiVariableBoot, EventType.efiVariableAuthority, EventType.efiVariableBoot2:
            guard let v = UEFIVariable(data) else { return "(malformed UEFI variable, \(data.count) bytes)" }
            return v.data.count <= 8 ? "\(v.name) = \(Hex.encode(v.data))" : "\(v.name) (\(v.data.count) bytes)"
        case EventType.efiBootServicesApplication, 0x8000_0004, 0x8000_0005:
            return imagePath(data) ?? "(image without file path)"
        case EventType.ipl, EventType.efiAction, EventType.action, 0x8, 0x7:
            let t = asciiText(data)
            return t.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7f }) ? t : "(\(data.count) bytes)"
        case EventType.separator:
            return Hex.encode(data)
        case EventType.noAction:
            return asciiText(Array(data.prefix(16)).filter { $0 != 0 })
        default:
            return "(\(data.count) bytes)"
        }
    }
}
