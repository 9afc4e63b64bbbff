import VouchCore

/// The AMD extensions of a VCEK or VLEK certificate (AMD *Versioned Chip Endorsement Key (VCEK)
/// Certificate and KDS Interface Specification*, pub. 57230), read from the extensions' raw
/// values. Parsing only: which certificate they came from, and whether it verifies, is the
/// verifier's business.
///
/// | OID (1.3.6.1.4.1.3704.1.) | name | value |
/// |---|---|---|
/// | 1 | structVersion | INTEGER |
/// | 2 | productName | IA5String ("Milan-B0", "Genoa", "Turin", …) |
/// | 3.1 | blSPL | INTEGER 0–255 |
/// | 3.2 | teeSPL | INTEGER 0–255 |
/// | 3.3 | snpSPL | INTEGER 0–255 |
/// | 3.8 | ucodeSPL | INTEGER 0–255 |
/// | 3.9 | fmcSPL (Turin) | INTEGER 0–255 |
/// | 4 | hwID (VCEK only) | the chip id: 64 bytes (8 on Turin), raw or as an OCTET STRING |
/// | 5 | cspID (VLEK only) | IA5String naming the cloud provider |
///
/// Each SPL must be exactly the DER INTEGER (minimal encoding, nothing after it) of a value
/// 0–255; productName an IA5String of printable ASCII. The hwID is taken as raw when the value is
/// exactly 64 or 8 bytes, and as an OCTET STRING when it is `04 40` + 64 bytes or `04 08` + 8
/// bytes (AMD's KDS has issued both forms); any other hwID is refused. Refusals throw
/// `tee_evidence_malformed` naming the extension.
public struct SNPEndorsementExtensions: Sendable, Hashable {
    public static let arc = "1.3.6.1.4.1.3704.1"
    public static let structVersionOID = arc + ".1"
    public static let productNameOID = arc + ".2"
    public static let bootloaderSPLOID = arc + ".3.1"
    public static let teeSPLOID = arc + ".3.2"
    public static let snpSPLOID = arc + ".3.3"
    public static let microcodeSPLOID = arc + ".3.8"
    public static let fmcSPLOID = arc + ".3.9"
    public static let hwIDOID = arc + ".4"
    public static let cspIDOID = arc + ".5"

    public var structVersion: Int?
    public var productName: String?
    public var bootloaderSPL: UInt8?
    public var teeSPL: UInt8?
    public var snpSPL: UInt8?
    public var microcodeSPL: UInt8?
    public var fmcSPL: UInt8?
    /// The chip id the certificate names (unwrapped if it came as an OCTET STRING).
    public var hwID: [UInt8]?
    public var cspID: String?

    public init() {}

    /// Reads the extensions through `value(oid)`, which returns an extension's raw extnValue
    /// content (what `Certificate.extensionValue(oid:)` returns), or nil when it is absent.
    public init(extensionValue value: (String) -> [UInt8]?) throws {
        if let v = value(Self.structVersionOID) { structVersion = try Self.integer(v, "structVersion", max: Int(Int32.max)) }
        if let v = value(Self.productNameOID) { productName = try Self.ia5String(v, "productName") }
        if let v = value(Self.bootloaderSPLOID) { bootloaderSPL = UInt8(try Self.integer(v, "blSPL", max: 255)) }
        if let v = value(Self.teeSPLOID) { teeSPL = UInt8(try Self.integer(v, "teeSPL", max: 255)) }
        if let v = value(Self.snpSPLOID) { snpSPL = UInt8(try Self.integer(v, "snpSPL", max: 255)) }
        if let v = value(Self.microcodeSPLOID) { microcodeSPL = UInt8(try Self.integer(v, "ucodeSPL", max: 255)) }
        if let v = value(Self.fmcSPLOID) { fmcSPL = UInt8(try Self.integer(v, "fmcSPL", max: 255)) }
        if let v = value(Self.hwIDOID) { hwID = try Self.hwID(v) }
        if let v = value(Self.cspIDOID) { cspID = try Self.ia5String(v, "cspID") }
    }

    /// The SPLs as TCB components (nil if one of the four common SPLs is missing).
    public var components: SNPTCBComponents? {
        guard let bootloaderSPL, let teeSPL, let snpSPL, let microcodeSPL else { return nil }
        return SNPTCBComponents(bootloader: bootloaderSPL, tee: teeSPL, snp: snpSPL, microcode: microcodeSPL, fmc: fmcSPL)
    }

    /// Each extension's DER value, in the order AMD's certificates list them: for a writer
    /// (the software TEE). `hwIDAsOctetString` chooses the wrapped hwID form.
    public func encoded(hwIDAsOctetString: Bool = false) -> [(oid: String, der: [UInt8])] {
        var out: [(String, [UInt8])] = []
        if let structVersion { out.append((Self.structVersionOID, DER.integer(structVersion))) }
        if let productName { out.append((Self.productNameOID, DER.ia5String(productName))) }
        if let fmcSPL { out.append((Self.fmcSPLOID, DER.integer(Int(fmcSPL)))) }
        if let bootloaderSPL { out.append((Self.bootloaderSPLOID, DER.integer(Int(bootloaderSPL)))) }
        if let teeSPL { out.append((Self.teeSPLOID, DER.integer(Int(teeSPL)))) }
        if let snpSPL { out.append((Self.snpSPLOID, DER.integer(Int(snpSPL)))) }
        if let microcodeSPL { out.append((Self.microcodeSPLOID, DER.integer(Int(microcodeSPL)))) }
        if let hwID { out.append((Self.hwIDOID, hwIDAsOctetString ? DER.octetString(hwID) : hwID)) }
        if let cspID { out.append((Self.cspIDOID, DER.ia5String(cspID))) }
        return out.map { (oid: $0.0, der: $0.1) }
    }

    /// A minimal DER INTEGER 0…`max`, and nothing after it.
    static func integer(_ v: [UInt8], _ field: String, max: Int) throws -> Int {
        guard v.count >= 3, v[0] == DER.integerTag, Int(v[1]) == v.count - 2, v[1] <= 8 else {
            throw snpMalformed("VCEK extension is not one DER INTEGER", field: field, expected: "02 len value", got: Hex.encode(v.prefix(12)))
        }
        let content = v[2...]
        // Minimal: no leading 00 unless the next byte's high bit needs it; never negative.
        guard content.first! & 0x80 == 0, content.count == 1 || content.first! != 0 || content.dropFirst().first! & 0x80 != 0 else {
            throw snpMalformed("VCEK extension INTEGER is negative or not minimally encoded", field: field, expected: "minimal non-negative INTEGER", got: Hex.encode(v))
        }
        let value = content.reduce(0) { $0 << 8 | Int($1) }
        guard value <= max else {
            throw snpMalformed("VCEK extension INTEGER is out of range", field: field, expected: "0-\(max)", got: "\(value)")
        }
        return value
    }

    static func ia5String(_ v: [UInt8], _ field: String) throws -> String {
        var reader = DER.Reader(v)
        let content: [UInt8]
        do { content = try reader.read(DER.ia5StringTag, field) } catch {
            throw snpMalformed("VCEK extension is not an IA5String", field: field, expected: "16 len text", got: Hex.encode(v.prefix(12)))
        }
        guard reader.isAtEnd, !content.isEmpty, content.allSatisfy({ (0x20...0x7e).contains($0) }) else {
            throw snpMalformed("VCEK extension IA5String is empty, not printable ASCII, or followed by other bytes", field: field,
                               expected: "printable ASCII", got: Hex.encode(v.prefix(40)))
        }
        return String(decoding: content, as: UTF8.self)
    }

    static func hwID(_ v: [UInt8]) throws -> [UInt8] {
        switch v.count {
        case 64, 8:
            return v
        case 66 where v[0] == DER.octetStringTag && v[1] == 64, 10 where v[0] == DER.octetStringTag && v[1] == 8:
            return Array(v[2...])
        default:
            throw snpMalformed("VCEK hwID is neither 64 (Turin: 8) raw bytes nor an OCTET STRING of them", field: "hwID",
                               expected: "64 or 8 bytes, raw or 04 len", got: "\(v.count) bytes")
        }
    }
}
