import VouchCore

/// A JSON value as google.protobuf.Value models one: JWT-SVID claims in ValidateJWTSVIDResponse.
/// Numbers are doubles (as in protobuf's Struct); booleans are never numbers.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// How many arrays and objects may nest (so that any value parsed from JSON, put in a
    /// ValidateJWTSVIDResponse, stays within `Protobuf.maxDepth`: three messages per level).
    public static let maxDepth = 32

    /// Parses strict RFC 8259 JSON (one value, whitespace around it allowed). Checks, in order,
    /// as the parser meets them:
    ///   1. the input is UTF-8 and every string's characters are escaped where JSON requires it
    ///      (control characters refused; `\u` surrogates only in pairs);
    ///   2. numbers have JSON's grammar (no leading zeros, `+`, `.5`, NaN or Infinity) and are
    ///      finite as doubles;
    ///   3. no trailing commas, and no key twice in one object;
    ///   4. at most `maxDepth` nested arrays and objects, `Protobuf.maxItems` items or members in
    ///      each, strings of at most `Protobuf.maxLength` bytes;
    ///   5. nothing but whitespace after the value.
    /// Failures are `invalid_value` (input ending early: `truncated`) with the offset.
    public init(json: [UInt8]) throws {
        var parser = JSONParser(json)
        self = try parser.document()
    }

    /// Compact JSON, object keys sorted by their UTF-8 bytes, `/` unescaped; integral numbers of
    /// magnitude below 2^53 without a fraction. A non-finite number (only constructible in code)
    /// is written as null.
    public var json: [UInt8] {
        var out = [UInt8]()
        write(to: &out)
        return out
    }

    private func write(to out: inout [UInt8]) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .number(let n): out += Array(Self.format(n).utf8)
        case .string(let s): Self.writeString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, key) in Protobuf.sortedKeys(members).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                members[key]!.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func format(_ n: Double) -> String {
        guard n.isFinite else { return "null" }
        if n == n.rounded(), abs(n) < 9_007_199_254_740_992 { return String(Int64(n)) }
        return "\(n)"  // Swift's shortest round-tripping form: 0.1, 1e+300, 5e-324
    }

    private static func writeString(_ s: String, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0x0a: out += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0d: out += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: out += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20: out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xf)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// The strict, bounded JSON parser behind `JSONValue(json:)`.
private struct JSONParser {
    let input: [UInt8]
    var offset = 0

    init(_ input: [UInt8]) { self.input = input }

    func failure(_ message: String, _ code: ErrorCode = .invalidValue) -> VouchError {
        VouchError(code, message, context: ["field": "json", "offset": "\(offset)"])
    }

    mutating func document() throws -> JSONValue {
        let value = try self.value(depth: 0)
        skipWhitespace()
        guard offset == input.count else { throw failure("JSON text continues after its value") }
        return value
    }

    mutating func skipWhitespace() {
        while offset < input.count, [0x20, 0x09, 0x0a, 0x0d].contains(input[offset]) { offset += 1 }
    }

    mutating func peek() throws -> UInt8 {
        skipWhitespace()
        guard offset < input.count else { throw failure("JSON text ends early", .truncated) }
        return input[offset]
    }

    mutating func expect(_ byte: UInt8) throws {
        guard try peek() == byte else { throw failure("expected '\(Character(Unicode.Scalar(byte)))'") }
        offset += 1
    }

    mutating func value(depth: Int) throws -> JSONValue {
        switch try peek() {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default: return .number(try number())
        }
    }

    mutating func literal(_ word: String) throws {
        let bytes = Array(word.utf8)
        guard input.count - offset >= bytes.count else { throw failure("JSON text ends early", .truncated) }
        guard Array(input[offset..<offset + bytes.count]) == bytes else { throw failure("not a JSON value") }
        offset += bytes.count
    }

    mutating func container(_ depth: Int, open: UInt8, close: UInt8, _ item: (inout JSONParser) throws -> Void) throws {
        guard depth <= JSONValue.maxDepth else { throw failure("arrays and objects nest deeper than \(JSONValue.maxDepth)") }
        try expect(open)
        if try peek() == close { offset += 1; return }
        var count = 0
        while true {
            try Protobuf.checkRoom(count, "json")
            try item(&self)
            count += 1
            if try peek() == close { offset += 1; return }
            try expect(UInt8(ascii: ","))
        }
    }

    mutating func object(depth: Int) throws -> JSONValue {
        var members = [String: JSONValue]()
        try container(depth, open: UInt8(ascii: "{"), close: UInt8(ascii: "}")) { p in
            guard try p.peek() == UInt8(ascii: "\"") else { throw p.failure("an object's key is not a string") }
            let keyAt = p.offset
            let key = try p.string()
            try p.expect(UInt8(ascii: ":"))
            guard members[key] == nil else {
                throw VouchError(.invalidValue, "an object has a key twice", context: ["field": "json", "offset": "\(keyAt)"])
            }
            members[key] = try p.value(depth: depth)
        }
        return .object(members)
    }

    mutating func array(depth: Int) throws -> JSONValue {
        var items = [JSONValue]()
        try container(depth, open: UInt8(ascii: "["), close: UInt8(ascii: "]")) { p in items.append(try p.value(depth: depth)) }
        return .array(items)
    }

    mutating func number() throws -> Double {
        let start = offset
        func digits() -> Int {
            let from = offset
            while offset < input.count, (0x30...0x39).contains(input[offset]) { offset += 1 }
            return offset - from
        }
        if offset < input.count, input[offset] == UInt8(ascii: "-") { offset += 1 }
        let leadingZero = offset < input.count && input[offset] == 0x30
        let whole = digits()
        guard whole > 0, !(leadingZero && whole > 1) else { throw failure("not a JSON value") }
        if offset < input.count, input[offset] == UInt8(ascii: ".") {
            offset += 1
            guard digits() > 0 else { throw failure("a number has no digits after '.'") }
        }
        if offset < input.count, input[offset] | 0x20 == UInt8(ascii: "e") {
            offset += 1
            if offset < input.count, input[offset] == UInt8(ascii: "+") || input[offset] == UInt8(ascii: "-") { offset += 1 }
            guard digits() > 0 else { throw failure("a number has no exponent digits") }
        }
        guard let n = Double(String(decoding: input[start..<offset], as: UTF8.self)), n.isFinite else {
            throw failure("a number is out of range")
        }
        return n
    }

    mutating func hex4() throws -> UInt32 {
        guard input.count - offset >= 4 else { throw failure("JSON text ends early", .truncated) }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = input[offset] | 0x20
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x61...0x66: d = c - 0x57
            default: throw failure("a \\u escape is not hexadecimal")
            }
            v = v << 4 | UInt32(d)
            offset += 1
        }
        return v
    }

    mutating func string() throws -> String {
        offset += 1  // the opening quote, seen by the caller
        var out = [UInt8]()
        while true {
            guard offset < input.count else { throw failure("a string is not closed", .truncated) }
            let byte = input[offset]
            offset += 1
            switch byte {
            case UInt8(ascii: "\""):
                let text = String(decoding: out, as: UTF8.self)
                guard text.utf8.elementsEqual(out) else { throw failure("a string is not UTF-8") }
                return text
            case UInt8(ascii: "\\"):
                guard offset < input.count else { throw failure("a string is not closed", .truncated) }
                let escape = input[offset]
                offset += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escape)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xd800..<0xdc00).contains(scalar) {
                        guard input.count - offset >= 2, input[offset] == UInt8(ascii: "\\"), input[offset + 1] == UInt8(ascii: "u") else {
                            throw failure("a \\u escape is half a surrogate pair")
                        }
                        offset += 2
                        let low = try hex4()
                        guard (0xdc00..<0xe000).contains(low) else { throw failure("a \\u escape is half a surrogate pair") }
                        scalar = 0x10000 + (scalar - 0xd800) << 10 + (low - 0xdc00)
                    }
                    guard let s = Unicode.Scalar(scalar) else { throw failure("a \\u escape is half a surrogate pair") }
                    UTF8.encode(s) { out.append($0) }
                default: throw failure("a string has an unknown escape")
                }
            case 0..<0x20: throw failure("a string has an unescaped control character")
            default: out.append(byte)
            }
            guard out.count <= Protobuf.maxLength else { throw failure("a string is longer than allowed") }
        }
    }
}
