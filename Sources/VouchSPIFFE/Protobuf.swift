import VouchCore

/// The Protocol Buffers wire format (proto3), as much of it as the SPIFFE Workload API's messages
/// and google.protobuf.Struct use: varints, 64-bit fixed values, length-delimited bytes, strings
/// and embedded messages. `ProtoWriter` writes fields; `ProtoReader` reads hostile bytes with every
/// length checked against what is left of its message.
public enum Protobuf {
    /// The low three bits of a field's tag.
    public enum WireType: UInt8, Sendable, CustomStringConvertible {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
        public var description: String {
            switch self {
            case .varint: "varint"
            case .fixed64: "fixed64"
            case .lengthDelimited: "length-delimited"
            case .startGroup: "start-group"
            case .endGroup: "end-group"
            case .fixed32: "fixed32"
            }
        }
    }

    /// How deep embedded messages may nest below the outermost one (protobuf's own default
    /// recursion limit).
    public static let maxDepth = 100
    /// The longest string or bytes value a reader takes (1 MiB).
    public static let maxLength = 1 << 20
    /// The most items a repeated field, and the most entries a map, may have in one message.
    public static let maxItems = 1024
    /// The largest field number the format allows (2^29 - 1).
    public static let maxFieldNumber = (1 << 29) - 1

    /// A map's keys in the order deterministic encodings use: by their UTF-8 bytes.
    public static func sortedKeys<V>(_ map: [String: V]) -> [String] {
        map.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// Throws `invalid_value` naming `field` if a repeated field or map already holds `count` items
    /// and may take no more.
    public static func checkRoom(_ count: Int, _ field: String) throws {
        guard count < maxItems else {
            throw VouchError(.invalidValue, "\(field) has more items than allowed", context: ["field": field, "expected": "<= \(maxItems)"])
        }
    }
}

/// A message of the wire format: read from a reader positioned on its first field, written as
/// its fields in field-number order. `init(protobuf:)` and `protobuf` come with the conformance.
public protocol ProtobufMessage: Sendable, Equatable {
    /// Reads every field up to the reader's end: known fields with their wire type checked,
    /// unknown ones skipped.
    init(reading reader: inout Protobuf.ProtoReader) throws
    /// Writes the fields in field-number order (deterministic: map entries sorted by key).
    func write(to writer: inout Protobuf.ProtoWriter)
}

extension ProtobufMessage {
    /// Parses a whole message from untrusted bytes (bounded; see `Protobuf.ProtoReader`).
    public init(protobuf bytes: [UInt8]) throws {
        var reader = Protobuf.ProtoReader(bytes)
        try self.init(reading: &reader)
    }

    /// The message's deterministic encoding.
    public var protobuf: [UInt8] {
        var writer = Protobuf.ProtoWriter()
        write(to: &writer)
        return writer.bytes
    }
}

public typealias ProtoWriter = Protobuf.ProtoWriter
public typealias ProtoReader = Protobuf.ProtoReader

extension Protobuf {
    /// Writes fields. Scalars that hold their proto3 default (0, false, +0.0, empty) are left out
    /// unless `always` is set (oneof members and map entries are always written).
    public struct ProtoWriter: Sendable {
        public private(set) var bytes: [UInt8] = []

        public init() {}

        public mutating func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 {
                bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
                v >>= 7
            }
            bytes.append(UInt8(v))
        }

        public mutating func tag(_ field: Int, _ wire: WireType) {
            precondition((1...Protobuf.maxFieldNumber).contains(field), "a protobuf field number is 1 ... 2^29-1")
            varint(UInt64(field) << 3 | UInt64(wire.rawValue))
        }

        /// A varint field (uint64, or an enum's number).
        public mutating func uint64(_ field: Int, _ value: UInt64, always: Bool = false) {
            guard always || value != 0 else { return }
            tag(field, .varint)
            varint(value)
        }

        public mutating func bool(_ field: Int, _ value: Bool, always: Bool = false) {
            uint64(field, value ? 1 : 0, always: always)
        }

        /// A double: wire type fixed64, the IEEE 754 bits little-endian (-0.0 is not a default).
        public mutating func double(_ field: Int, _ value: Double, always: Bool = false) {
            let bits = value.bitPattern
            guard always || bits != 0 else { return }
            tag(field, .fixed64)
            for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
        }

        public mutating func bytes(_ field: Int, _ value: [UInt8], always: Bool = false) {
            guard always || !value.isEmpty else { return }
            tag(field, .lengthDelimited)
            varint(UInt64(value.count))
            bytes += value
        }

        public mutating func string(_ field: Int, _ value: String, always: Bool = false) {
            bytes(field, Array(value.utf8), always: always)
        }

        /// An embedded message whose fields `body` writes; always written, even when empty.
        public mutating func message(_ field: Int, _ body: (inout ProtoWriter) -> Void) {
            var inner = ProtoWriter()
            body(&inner)
            bytes(field, inner.bytes, always: true)
        }

        public mutating func message(_ field: Int, _ value: some ProtobufMessage) {
            message(field) { value.write(to: &$0) }
        }

        /// One entry of a `map<string, V>` field: key (1) and value (2), both always written.
        public mutating func mapEntry(_ field: Int, key: String, value: (inout ProtoWriter) -> Void) {
            message(field) { entry in
                entry.string(1, key, always: true)
                value(&entry)
            }
        }

        /// A `map<string, bytes>` field, its entries sorted by key.
        public mutating func map(_ field: Int, _ entries: [String: [UInt8]]) {
            for key in Protobuf.sortedKeys(entries) {
                mapEntry(field, key: key) { $0.bytes(2, entries[key]!, always: true) }
            }
        }
    }
}
