import VouchCore

/// The certificate table an SEV-SNP guest receives with an extended report (GHCB specification,
/// AMD pub. 56421, "SNP Extended Guest Request"; Linux hands it out as configfs-tsm `auxblob`):
/// entries of { GUID (16 bytes, in the order the GUID's text reads), offset (u32 LE), length (u32
/// LE) }, ended by an all-zero entry, each offset counted from the table's first byte. The
/// certificates themselves (DER) follow the entries. Parsing checks bounds only: a certificate
/// from here is believed only once it chains to a pinned AMD root.
public struct SNPCertificateTable: Sendable, Equatable {
    /// The GUIDs the GHCB specification assigns.
    public enum Kind: String, Sendable, CaseIterable {
        case vcek = "63da758d-e664-4564-adc5-f4b93be8accd"
        case vlek = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
        case ask = "4ab7b379-bbac-4fe4-a02f-05aef327c782"
        case ark = "c0b406a4-a803-4952-9743-3fb6014cd0ae"
    }

    public struct Entry: Sendable, Equatable {
        /// Lowercase text form of the GUID.
        public var guid: String
        public var der: [UInt8]
        public var kind: Kind? { Kind(rawValue: guid) }
        public init(guid: String, der: [UInt8]) {
            self.guid = guid
            self.der = der
        }
    }

    public var entries: [Entry]

    /// At most this many entries (the four GUIDs above and room for provider additions).
    public static let maxEntries = 32
    /// A table larger than this is refused (Linux bounds auxblob to 32 KiB per certificate page set).
    public static let maxBytes = 64 << 10

    public init(entries: [Entry]) { self.entries = entries }

    public init(_ bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxBytes else {
            throw VouchError(.teeEvidenceMalformed, "the SNP certificate table is larger than \(Self.maxBytes) bytes", context: ["field": "certificates"])
        }
        var reader = ByteReader(bytes)
        var entries: [Entry] = []
        while true {
            let guid = try reader.bytes(16, "certificates.entry.guid")
            let offset = Int(try reader.u32le("certificates.entry.offset"))
            let length = Int(try reader.u32le("certificates.entry.length"))
            if guid.allSatisfy({ $0 == 0 }) && offset == 0 && length == 0 { break }
            guard entries.count < Self.maxEntries else {
                throw VouchError(.teeEvidenceMalformed, "the SNP certificate table has more than \(Self.maxEntries) entries", context: ["field": "certificates"])
            }
            guard length > 0, offset <= bytes.count, length <= bytes.count - offset else {
                throw VouchError(.teeEvidenceMalformed, "an SNP certificate table entry points outside the table",
                                 context: ["field": "certificates.entry", "offset": "\(offset)", "length": "\(length)"])
            }
            let text = Self.guidText(guid)
            guard !entries.contains(where: { $0.guid == text }) else {
                throw VouchError(.teeEvidenceMalformed, "the SNP certificate table names a GUID twice", context: ["field": "certificates.entry.guid", "got": text])
            }
            entries.append(Entry(guid: text, der: Array(bytes[offset..<offset + length])))
        }
        self.entries = entries
    }

    /// The certificate of `kind`, if the table has one.
    public func certificate(_ kind: Kind) -> [UInt8]? { entries.first { $0.guid == kind.rawValue }?.der }

    /// The table's bytes: entries, the terminator, then the certificates in entry order.
    public var bytes: [UInt8] {
        var header: [UInt8] = [], body: [UInt8] = []
        let start = (entries.count + 1) * 24
        for e in entries {
            header += Self.guidBytes(e.guid)
            header += Self.le32(UInt32(start + body.count)) + Self.le32(UInt32(e.der.count))
            body += e.der
        }
        return header + [UInt8](repeating: 0, count: 24) + body
    }

    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xff) } }

    static func guidText(_ b: [UInt8]) -> String {
        let h = Hex.encode(b)
        func part(_ from: Int, _ to: Int) -> Substring { h.dropFirst(from).prefix(to - from) }
        return "\(part(0, 8))-\(part(8, 12))-\(part(12, 16))-\(part(16, 20))-\(part(20, 32))"
    }

    static func guidBytes(_ text: String) -> [UInt8] {
        (try? Hex.decode(text.replacingOccurrences(of: "-", with: ""), field: "guid")) ?? [UInt8](repeating: 0, count: 16)
    }
}
