import Foundation

/// Minimal DER (X.690) encoding and bounds-checked decoding for the few types Vouch's own
/// certificate extension uses. Lengths are definite; every read checks what remains.
public enum DER {
    public static let sequenceTag: UInt8 = 0x30, integerTag: UInt8 = 0x02, octetStringTag: UInt8 = 0x04
    public static let utf8StringTag: UInt8 = 0x0c, generalizedTimeTag: UInt8 = 0x18, booleanTag: UInt8 = 0x01

    public static func tlv(_ tag: UInt8, _ content: [UInt8]) -> [UInt8] {
        var out = [tag]
        let n = content.count
        if n < 0x80 { out.append(UInt8(n)) } else {
            var len: [UInt8] = []
            var v = n
            while v > 0 { len.insert(UInt8(v & 0xff), at: 0); v >>= 8 }
            out.append(0x80 | UInt8(len.count))
            out += len
        }
        return out + content
    }

    public static func sequence(_ items: [[UInt8]]) -> [UInt8] { tlv(sequenceTag, items.flatMap { $0 }) }
    public static func octetString(_ b: [UInt8]) -> [UInt8] { tlv(octetStringTag, b) }
    public static func utf8(_ s: String) -> [UInt8] { tlv(utf8StringTag, Array(s.utf8)) }
    public static func boolean(_ b: Bool) -> [UInt8] { tlv(booleanTag, [b ? 0xff : 0x00]) }

    public static func integer(_ v: Int) -> [UInt8] {
        precondition(v >= 0)
        var bytes: [UInt8] = []
        var x = v
        repeat { bytes.insert(UInt8(x & 0xff), at: 0); x >>= 8 } while x > 0
        if bytes[0] & 0x80 != 0 { bytes.insert(0, at: 0) }
        return tlv(integerTag, bytes)
    }

    /// A non-negative INTEGER from its big-endian magnitude (leading zeros dropped, one added
    /// back when the high bit is set).
    public static func unsignedInteger(_ magnitude: [UInt8]) -> [UInt8] {
        var bytes = Array(magnitude.drop { $0 == 0 })
        if bytes.isEmpty || bytes[0] & 0x80 != 0 { bytes.insert(0, at: 0) }
        return tlv(integerTag, bytes)
    }

    /// YYYYMMDDHHMMSSZ, from `Date.utc` (gmtime_r; a DateFormatter per call was 6 % of an
    /// enrollment's CPU).
    public static func generalizedTime(_ d: Date) -> [UInt8] {
        let u = d.utc
        func p(_ v: Int, _ width: Int = 2) -> String { UTCFields.pad(v, width) }
        return tlv(generalizedTimeTag, Array("\(p(u.year, 4))\(p(u.month))\(p(u.day))\(p(u.hour))\(p(u.minute))\(p(u.second))Z".utf8))
    }

    /// Reads DER values in order from one constructed value's content.
    public struct Reader {
        var r: ByteReader
        public init(_ bytes: [UInt8]) { r = ByteReader(bytes) }
        public var isAtEnd: Bool { r.isAtEnd }
        /// The tag of the next element, without consuming it (nil at the end).
        public var peekTag: UInt8? { r.isAtEnd ? nil : r.bytes[r.offset] }

        public mutating func read(_ tag: UInt8, _ field: String) throws -> [UInt8] {
            let at = r.offset
            let t = try r.u8("\(field).tag")
            guard t == tag else {
                throw VouchError(.invalidValue, "\(field) has the wrong DER type", context: ["field": field, "offset": "\(at)",
                                                                                            "expected": String(tag, radix: 16), "got": String(t, radix: 16)])
            }
            var len = Int(try r.u8("\(field).length"))
            if len & 0x80 != 0 {
                let n = len & 0x7f
                guard (1...3).contains(n) else { throw VouchError(.invalidValue, "\(field) has an unsupported DER length", context: ["field": field, "offset": "\(at)"]) }
                len = 0
                for _ in 0..<n { len = len << 8 | Int(try r.u8("\(field).length")) }
            }
            return try r.bytes(len, field)
        }

        public mutating func sequence(_ field: String) throws -> Reader { Reader(try read(DER.sequenceTag, field)) }
        public mutating func utf8(_ field: String) throws -> String { String(decoding: try read(DER.utf8StringTag, field), as: UTF8.self) }
        public mutating func octetString(_ field: String) throws -> [UInt8] { try read(DER.octetStringTag, field) }
        public mutating func boolean(_ field: String) throws -> Bool { try read(DER.booleanTag, field) != [0] }

        public mutating func integer(_ field: String) throws -> Int {
            let b = try read(DER.integerTag, field)
            guard !b.isEmpty, b.count <= 8, b[0] & 0x80 == 0 else { throw VouchError(.invalidValue, "\(field) is not a small non-negative INTEGER", context: ["field": field]) }
            return b.reduce(0) { $0 << 8 | Int($1) }
        }

        public mutating func generalizedTime(_ field: String) throws -> Date {
            let s = String(decoding: try read(DER.generalizedTimeTag, field), as: UTF8.self)
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.timeZone = TimeZone(identifier: "UTC")
            f.dateFormat = "yyyyMMddHHmmss'Z'"
            guard let d = f.date(from: s) else { throw VouchError(.invalidValue, "\(field) is not a GeneralizedTime", context: ["field": field]) }
            return d
        }
    }
}
