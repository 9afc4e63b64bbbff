import VouchCore

/// A CBOR data item (RFC 8949) of the subset COSE_Sign1 and the AWS Nitro attestation document
/// use: unsigned and negative integers, byte and text strings, arrays, maps, tags, and the
/// simple values false, true, null and undefined. Floats and other simple values are refused.
public indirect enum CBOR: Sendable, Hashable {
    case unsigned(UInt64)
    /// The negative integer -1 - n.
    case negative(UInt64)
    case bytes([UInt8])
    case text(String)
    case array([CBOR])
    /// Entries in encoded order (keys are distinct: a repeated key is refused when read).
    case map([CBORPair])
    case tagged(UInt64, CBOR)
    case bool(Bool)
    case null
    case undefined
}

public struct CBORPair: Sendable, Hashable {
    public var key: CBOR
    public var value: CBOR
}

/// Reads one CBOR data item from hostile bytes: definite lengths only (indefinite-length items,
/// major type 7 floats and reserved additional information are refused), at most `maxDepth`
/// nested arrays, maps and tags, a declared count or length never trusted beyond the bytes
/// that remain, map keys distinct, text valid UTF-8, and the item ending exactly at the input's
/// end. Shortest-form encoding is not required. Every failure throws `tee_evidence_malformed`
/// naming `field` and the offset.
public struct CBORReader {
    public static let defaultMaxDepth = 16

    private var r: ByteReader
    private let field: String
    private let maxDepth: Int

    /// Decodes `bytes` as exactly one data item (nothing after it).
    public static func decode(_ bytes: [UInt8], field: String, maxDepth: Int = defaultMaxDepth) throws -> CBOR {
        var reader = CBORReader(bytes, field: field, maxDepth: maxDepth)
        let item = try reader.item(depth: 0)
        guard reader.r.isAtEnd else { throw reader.fail("bytes after the CBOR item", expected: "end of input") }
        return item
    }

    private init(_ bytes: [UInt8], field: String, maxDepth: Int) {
        r = ByteReader(bytes)
        self.field = field
        self.maxDepth = maxDepth
    }

    private func fail(_ message: String, expected: String) -> VouchError {
        VouchError(.teeEvidenceMalformed, "\(field): \(message)", context: ["field": field, "offset": "\(r.offset)", "expected": expected])
    }

    /// The head's argument for additional information `ai` (0-27); 28-31 are refused.
    private mutating func argument(_ ai: UInt8) throws -> UInt64 {
        do {
            switch ai {
            case 0...23: return UInt64(ai)
            case 24: return UInt64(try r.u8(field))
            case 25: return UInt64(try r.u16(field))
            case 26: return UInt64(try r.u32(field))
            case 27: return try r.u64(field)
            case 31: throw fail("an indefinite length", expected: "definite lengths only")
            default: throw fail("reserved additional information \(ai)", expected: "0-27")
            }
        } catch where (error as? VouchError)?.code == .truncated {
            throw fail("input ends inside an item's head", expected: "a complete head")
        }
    }

    /// A length or count, bounded by the bytes that remain (each element takes at least one).
    private mutating func count(_ ai: UInt8) throws -> Int {
        let n = try argument(ai)
        guard n <= UInt64(r.remaining) else { throw fail("a length of \(n) with \(r.remaining) bytes left", expected: "at most the bytes left") }
        return Int(n)
    }

    private mutating func item(depth: Int) throws -> CBOR {
        guard !r.isAtEnd else { throw fail("input ends where an item was expected", expected: "a CBOR item") }
        let initial = try r.u8(field)
        let major = initial >> 5, ai = initial & 0x1f
        switch major {
        case 0: return .unsigned(try argument(ai))
        case 1: return .negative(try argument(ai))
        case 2: return .bytes(try r.bytes(try count(ai), field))
        case 3:
            let raw = try r.bytes(try count(ai), field)
            guard let s = String(validating: raw, as: UTF8.self) else { throw fail("a text string that is not UTF-8", expected: "valid UTF-8") }
            return .text(s)
        case 4, 5:
            guard depth < maxDepth else { throw fail("nesting deeper than \(maxDepth)", expected: "at most \(maxDepth) levels") }
            let n = try count(ai)
            if major == 4 {
                var items: [CBOR] = []
                for _ in 0..<n { items.append(try item(depth: depth + 1)) }
                return .array(items)
            }
            var pairs: [CBORPair] = []
            var keys = Set<CBOR>()
            for _ in 0..<n {
                let key = try item(depth: depth + 1)
                guard keys.insert(key).inserted else { throw fail("a map key repeated", expected: "distinct map keys") }
                pairs.append(CBORPair(key: key, value: try item(depth: depth + 1)))
            }
            return .map(pairs)
        case 6:
            guard depth < maxDepth else { throw fail("nesting deeper than \(maxDepth)", expected: "at most \(maxDepth) levels") }
            let tag = try argument(ai)
            return .tagged(tag, try item(depth: depth + 1))
        default:
            switch ai {
            case 20: return .bool(false)
            case 21: return .bool(true)
            case 22: return .null
            case 23: return .undefined
            default: throw fail("a float or simple value \(ai)", expected: "false, true, null or undefined")
            }
        }
    }
}

/// CBOR encoding of the few heads COSE's Sig_structure needs (RFC 8949 3.1, shortest form).
public enum CBOREncoder {
    /// The head of major type `major` with argument `n`.
    public static func head(_ major: UInt8, _ n: Int) -> [UInt8] {
        let m = major << 5
        switch n {
        case 0..<24: return [m | UInt8(n)]
        case 24..<256: return [m | 24, UInt8(n)]
        case 256..<65536: return [m | 25, UInt8(n >> 8), UInt8(n & 0xff)]
        default:
            if UInt64(n) <= UInt64(UInt32.max) { return [m | 26] + (0..<4).reversed().map { UInt8((n >> ($0 * 8)) & 0xff) } }
            return [m | 27] + (0..<8).reversed().map { UInt8((n >> ($0 * 8)) & 0xff) }
        }
    }

    public static func byteString(_ b: [UInt8]) -> [UInt8] { head(2, b.count) + b }
    public static func textString(_ s: String) -> [UInt8] { head(3, s.utf8.count) + Array(s.utf8) }
}
