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

    public static let bitStringTag: UInt8 = 0x03, objectIdentifierTag: UInt8 = 0x06, ia5StringTag: UInt8 = 0x16

    /// A context-specific tag: `[number]` primitive (IMPLICIT over a primitive type) or
    /// constructed (EXPLICIT, or IMPLICIT over a constructed type). Low tag numbers only.
    public static func contextTag(_ number: UInt8, constructed: Bool) -> UInt8 {
        precondition(number < 31)
        return 0x80 | (constructed ? 0x20 : 0) | number
    }

    /// An OBJECT IDENTIFIER from its arcs (X.690 8.19: the first two arcs as 40·a+b, then each
    /// arc in base 128, high bit set on every byte but the last).
    public static func objectIdentifier(_ arcs: [UInt]) -> [UInt8] {
        precondition(arcs.count >= 2 && arcs[0] <= 2 && (arcs[0] == 2 || arcs[1] < 40))
        var content: [UInt8] = []
        for arc in [arcs[0] * 40 + arcs[1]] + arcs.dropFirst(2) {
            var chunk: [UInt8] = [UInt8(arc & 0x7f)]
            var v = arc >> 7
            while v > 0 { chunk.insert(UInt8(v & 0x7f) | 0x80, at: 0); v >>= 7 }
            content += chunk
        }
        return tlv(objectIdentifierTag, content)
    }

    /// An OBJECT IDENTIFIER from dotted decimal with arcs of any size (a UUID OID under 2.25
    /// has a 128-bit arc); nil unless it is two or more decimal arcs, the first 0, 1 or 2 and the
    /// second below 40 unless the first is 2.
    public static func objectIdentifier(dotted: String) -> [UInt8]? {
        let parts = dotted.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { (0x30...0x39).contains($0) } }) else { return nil }
        var arcs = parts.map { $0.utf8.map { UInt32($0 - 0x30) } }   // decimal digits, most significant first
        guard arcs[0].count == 1, arcs[0][0] <= 2 else { return nil }
        let first = arcs.removeFirst()[0]
        if first < 2 { guard arcs[0].count <= 2, arcs[0].reduce(0, { $0 * 10 + $1 }) < 40 else { return nil } }
        // 40·first + second, in decimal.
        var carry = 40 * first
        for i in arcs[0].indices.reversed() where carry > 0 {
            let v = arcs[0][i] + carry
            arcs[0][i] = v % 10
            carry = v / 10
        }
        while carry > 0 { arcs[0].insert(carry % 10, at: 0); carry /= 10 }
        var content: [UInt8] = []
        for var digits in arcs {
            // Repeated division by 128 gives the base-128 digits, least significant first.
            var chunk: [UInt8] = []
            repeat {
                var remainder: UInt32 = 0
                var quotient: [UInt32] = []
                for d in digits {
                    let v = remainder * 10 + d
                    if !quotient.isEmpty || v / 128 > 0 { quotient.append(v / 128) }
                    remainder = v % 128
                }
                chunk.insert(UInt8(remainder) | (chunk.isEmpty ? 0 : 0x80), at: 0)
                digits = quotient
            } while !digits.isEmpty
            content += chunk
        }
        return tlv(objectIdentifierTag, content)
    }

    /// A BIT STRING of whole bytes (no unused bits), as a subjectPublicKey or signature is.
    public static func bitString(bytes: [UInt8]) -> [UInt8] { tlv(bitStringTag, [0] + bytes) }

    /// A named-bit BIT STRING (X.690 11.2.2): bit 0 is the most significant bit of the first
    /// byte; trailing zero bits are dropped and the count of unused bits in the last byte leads
    /// the content. No bit set encodes as the empty string (`03 01 00`).
    public static func namedBits(_ bits: Set<Int>) -> [UInt8] {
        guard let highest = bits.max() else { return tlv(bitStringTag, [0]) }
        precondition(bits.allSatisfy { $0 >= 0 })
        var bytes = [UInt8](repeating: 0, count: highest / 8 + 1)
        for bit in bits { bytes[bit / 8] |= 0x80 >> UInt8(bit % 8) }
        return tlv(bitStringTag, [UInt8(7 - highest % 8)] + bytes)
    }

    /// An IA5String's bytes (the caller checks they are ASCII) under `tag` (0x16, or an
    /// implicit context tag as in GeneralName).
    public static func ia5String(_ s: String, tag: UInt8 = ia5StringTag) -> [UInt8] {
        precondition(s.utf8.allSatisfy { $0 < 0x80 })
        return tlv(tag, Array(s.utf8))
    }

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
        /// A BIT STRING with no unused bits (a subjectPublicKey): its bytes after the leading count.
        public mutating func wholeByteBitString(_ field: String) throws -> [UInt8] {
            let b = try read(DER.bitStringTag, field)
            guard b.first == 0 else { throw VouchError(.invalidValue, "\(field) is not a BIT STRING of whole bytes", context: ["field": field]) }
            return Array(b.dropFirst())
        }
        /// Reads the next element whole (tag, length and content), whatever its tag.
        public mutating func element(_ field: String) throws -> [UInt8] {
            let start = r.offset
            guard let tag = peekTag else { throw VouchError(.truncated, "\(field) is missing", context: ["field": field]) }
            _ = try read(tag, field)
            return Array(r.bytes[start..<r.offset])
        }
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
