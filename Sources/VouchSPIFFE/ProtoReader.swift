import VouchCore

extension Protobuf {
    /// Reads one message's fields from untrusted bytes. Nothing here can trap on hostile input;
    /// every failure is a `VouchError` whose context names the field:
    ///   1. a tag is a varint of at most 10 bytes whose value fits 64 bits, with a field number of
    ///      1 ... 2^29-1 and a wire type of 0, 1, 2 or 5 — groups (3, 4) and 6, 7 are refused
    ///      (`invalid_value`; input ending inside it: `truncated`);
    ///   2. a known field must come with its declared wire type (`invalid_value`);
    ///   3. a length is checked against the bytes left in the enclosing message before anything is
    ///      read (`truncated`), and a string or bytes value may be at most `Protobuf.maxLength`
    ///      (`invalid_value`); a string must be UTF-8 (`invalid_value`);
    ///   4. an embedded message is read by a reader one level deeper, at most `Protobuf.maxDepth`
    ///      (`invalid_value`);
    ///   5. an unknown field is skipped by its wire type, with the same bounds.
    /// The reader shares its input with the readers of embedded messages: nothing is copied until
    /// a value is returned.
    public struct ProtoReader: Sendable {
        private let input: [UInt8]
        private let end: Int
        /// The offset of the next byte to read, within the whole input.
        public private(set) var offset: Int
        /// How many embedded messages enclose this one (0 for the outermost).
        public let depth: Int

        public init(_ bytes: [UInt8]) {
            self.init(bytes, from: 0, to: bytes.count, depth: 0)
        }

        private init(_ bytes: [UInt8], from start: Int, to end: Int, depth: Int) {
            self.input = bytes
            self.offset = start
            self.end = end
            self.depth = depth
        }

        /// One reader over the concatenation of several occurrences of the same embedded message
        /// (protobuf merges them: repeated fields append, singular ones take the last value).
        public init(merging parts: [ProtoReader]) {
            guard let first = parts.first else { self.init([]); return }
            if parts.count == 1 { self = first; return }
            var joined = [UInt8]()
            for part in parts { joined += part.input[part.offset..<part.end] }
            self.init(joined, from: 0, to: joined.count, depth: first.depth)
        }

        public var isAtEnd: Bool { offset >= end }
        public var remaining: Int { end - offset }

        private func failure(_ code: ErrorCode, _ message: String, _ field: String, _ extra: [String: String] = [:]) -> VouchError {
            VouchError(code, message, context: extra.merging(["field": field, "offset": "\(offset)"]) { a, _ in a })
        }

        // MARK: raw values

        /// A base-128 varint: at most 10 bytes, and the tenth may only carry the 64th bit.
        public mutating func varint(_ field: @autoclosure () -> String) throws -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            var position = offset
            while true {
                guard position < end else { throw failure(.truncated, "input ends inside a varint", field()) }
                let byte = input[position]
                position += 1
                if shift == 63 {
                    guard byte & 0x80 == 0 else { throw failure(.invalidValue, "a varint is longer than 10 bytes", field()) }
                    guard byte <= 1 else { throw failure(.invalidValue, "a varint does not fit 64 bits", field()) }
                }
                value |= UInt64(byte & 0x7f) << shift
                if byte & 0x80 == 0 { break }
                shift += 7
            }
            offset = position
            return value
        }

        public mutating func fixed64(_ field: @autoclosure () -> String) throws -> UInt64 {
            let raw = try take(8, field())
            var value: UInt64 = 0
            for i in (0..<8).reversed() { value = value << 8 | UInt64(input[raw.lowerBound + i]) }
            return value
        }

        public mutating func fixed32(_ field: @autoclosure () -> String) throws -> UInt32 {
            let raw = try take(4, field())
            var value: UInt32 = 0
            for i in (0..<4).reversed() { value = value << 8 | UInt32(input[raw.lowerBound + i]) }
            return value
        }

        /// The next `count` bytes' positions, checked against the enclosing message's end.
        private mutating func take(_ count: Int, _ field: String) throws -> Range<Int> {
            guard count <= remaining else {
                throw failure(.truncated, "input ends inside \(field)", field, ["expected": "\(count)", "got": "\(remaining)"])
            }
            defer { offset += count }
            return offset..<offset + count
        }

        /// A length prefix and the bytes it covers (positions only).
        private mutating func lengthDelimited(_ field: String, max: Int) throws -> Range<Int> {
            let length = try varint(field)
            guard length <= UInt64(remaining) else {
                throw failure(.truncated, "a length runs past the end of the message", field, ["expected": "\(length)", "got": "\(remaining)"])
            }
            guard length <= UInt64(max) else {
                throw failure(.invalidValue, "\(field) is longer than allowed", field, ["expected": "<= \(max)", "got": "\(length)"])
            }
            return try take(Int(length), field)
        }

        // MARK: fields

        /// The next field's number and wire type, or nil at the end of the message.
        public mutating func next() throws -> (number: Int, wire: WireType)? {
            guard !isAtEnd else { return nil }
            let start = offset
            let key = try varint("tag")
            let number = key >> 3
            guard number >= 1, number <= UInt64(Protobuf.maxFieldNumber) else {
                offset = start
                throw failure(.invalidValue, "a field number is outside 1 ... 2^29-1", "tag", ["got": "\(number)"])
            }
            guard let wire = WireType(rawValue: UInt8(key & 7)), wire != .startGroup, wire != .endGroup else {
                offset = start
                throw failure(.invalidValue, "field \(number) has a wire type that is refused (groups, or undefined)", "field \(number)",
                              ["got": "\(key & 7)"])
            }
            return (Int(number), wire)
        }

        /// Throws unless a known field came with the wire type its declaration gives.
        public func expect(_ wire: WireType, _ expected: WireType, _ field: String) throws {
            guard wire == expected else {
                throw failure(.invalidValue, "\(field) has the wrong wire type", field, ["expected": "\(expected)", "got": "\(wire)"])
            }
        }

        public mutating func uint64(_ wire: WireType, _ field: String) throws -> UInt64 {
            try expect(wire, .varint, field)
            return try varint(field)
        }

        /// A bool: any non-zero varint is true.
        public mutating func bool(_ wire: WireType, _ field: String) throws -> Bool {
            try uint64(wire, field) != 0
        }

        public mutating func double(_ wire: WireType, _ field: String) throws -> Double {
            try expect(wire, .fixed64, field)
            return Double(bitPattern: try fixed64(field))
        }

        public mutating func bytes(_ wire: WireType, _ field: String) throws -> [UInt8] {
            try expect(wire, .lengthDelimited, field)
            return Array(input[try lengthDelimited(field, max: Protobuf.maxLength)])
        }

        /// A string: length-delimited UTF-8 (proto3 refuses anything else).
        public mutating func string(_ wire: WireType, _ field: String) throws -> String {
            let raw = try bytes(wire, field)
            let text = String(decoding: raw, as: UTF8.self)
            guard text.utf8.elementsEqual(raw) else { throw failure(.invalidValue, "\(field) is not UTF-8", field) }
            return text
        }

        /// A reader for an embedded message, one level deeper.
        public mutating func message(_ wire: WireType, _ field: String) throws -> ProtoReader {
            try expect(wire, .lengthDelimited, field)
            guard depth < Protobuf.maxDepth else {
                throw failure(.invalidValue, "messages nest deeper than allowed", field, ["expected": "<= \(Protobuf.maxDepth)"])
            }
            let range = try lengthDelimited(field, max: Int.max)
            return ProtoReader(input, from: range.lowerBound, to: range.upperBound, depth: depth + 1)
        }

        /// Skips the value of a field this reader's caller does not know.
        public mutating func skip(_ wire: WireType, _ number: Int) throws {
            let field = "field \(number)"
            switch wire {
            case .varint: _ = try varint(field)
            case .fixed64: _ = try take(8, field)
            case .fixed32: _ = try take(4, field)
            case .lengthDelimited: _ = try lengthDelimited(field, max: Int.max)
            case .startGroup, .endGroup: try expect(wire, .lengthDelimited, field)  // next() never returns these
            }
        }

        /// One entry of a `map<string, bytes>` field: key 1, value 2; either may be absent (then empty).
        public mutating func stringBytesEntry(_ wire: WireType, _ field: String) throws -> (key: String, value: [UInt8]) {
            var entry = try message(wire, field)
            var key = "", value = [UInt8]()
            while let (number, wire) = try entry.next() {
                switch number {
                case 1: key = try entry.string(wire, field + ".key")
                case 2: value = try entry.bytes(wire, field + ".value")
                default: try entry.skip(wire, number)
                }
            }
            return (key, value)
        }
    }
}
