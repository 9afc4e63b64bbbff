import VouchCore

/// JSONValue as protobuf's well-known JSON types (google/protobuf/struct.proto):
///   Struct    { map<string, Value> fields = 1; }
///   Value     { oneof kind { NullValue null_value = 1; double number_value = 2; string string_value = 3;
///                            bool bool_value = 4; Struct struct_value = 5; ListValue list_value = 6; } }
///   ListValue { repeated Value values = 1; }
/// Reading follows protobuf's merge rules for repeated occurrences (the last oneof member wins,
/// occurrences of one embedded message merge, a repeated map key keeps its last value) and
/// refuses, besides what `Protobuf.ProtoReader` refuses: a Value with no kind set, a non-finite
/// number (JSON has none), more than `Protobuf.maxItems` fields or values in one Struct or
/// ListValue — all `invalid_value`.
extension JSONValue {
    /// Reads a google.protobuf.Struct: always an `.object`.
    public init(protobufStruct bytes: [UInt8]) throws {
        var reader = Protobuf.ProtoReader(bytes)
        self = try Self.readStruct(&reader)
    }

    /// Reads a google.protobuf.Value.
    public init(protobufValue bytes: [UInt8]) throws {
        var reader = Protobuf.ProtoReader(bytes)
        self = try Self.readValue(&reader)
    }

    /// This object as a google.protobuf.Struct, fields sorted by key; a value that is not an
    /// object writes an empty Struct.
    public var protobufStruct: [UInt8] {
        var writer = Protobuf.ProtoWriter()
        writeStructFields(to: &writer)
        return writer.bytes
    }

    /// This value as a google.protobuf.Value (a non-finite number, only constructible in code,
    /// as null_value, as in `json`).
    public var protobufValue: [UInt8] {
        var writer = Protobuf.ProtoWriter()
        writeValueFields(to: &writer)
        return writer.bytes
    }

    func writeStructFields(to writer: inout Protobuf.ProtoWriter) {
        guard case .object(let members) = self else { return }
        for key in Protobuf.sortedKeys(members) {
            writer.mapEntry(1, key: key) { entry in entry.message(2) { members[key]!.writeValueFields(to: &$0) } }
        }
    }

    func writeValueFields(to writer: inout Protobuf.ProtoWriter) {
        switch self {
        case .null: writer.uint64(1, 0, always: true)
        case .number(let n) where !n.isFinite: writer.uint64(1, 0, always: true)
        case .number(let n): writer.double(2, n, always: true)
        case .string(let s): writer.string(3, s, always: true)
        case .bool(let b): writer.bool(4, b, always: true)
        case .object: writer.message(5) { writeStructFields(to: &$0) }
        case .array(let items):
            writer.message(6) { list in
                for item in items { list.message(1) { item.writeValueFields(to: &$0) } }
            }
        }
    }

    static func readStruct(_ reader: inout Protobuf.ProtoReader) throws -> JSONValue {
        var members = [String: JSONValue]()
        var count = 0
        while let (number, wire) = try reader.next() {
            guard number == 1 else { try reader.skip(wire, number); continue }
            try Protobuf.checkRoom(count, "Struct.fields")
            count += 1
            var entry = try reader.message(wire, "Struct.fields")
            var key = ""
            var valueParts = [Protobuf.ProtoReader]()
            while let (n, w) = try entry.next() {
                switch n {
                case 1: key = try entry.string(w, "Struct.fields.key")
                case 2: valueParts.append(try entry.message(w, "Struct.fields.value"))
                default: try entry.skip(w, n)
                }
            }
            var value = Protobuf.ProtoReader(merging: valueParts)
            members[key] = try readValue(&value)
        }
        return .object(members)
    }

    static func readList(_ reader: inout Protobuf.ProtoReader) throws -> JSONValue {
        var items = [JSONValue]()
        while let (number, wire) = try reader.next() {
            guard number == 1 else { try reader.skip(wire, number); continue }
            try Protobuf.checkRoom(items.count, "ListValue.values")
            var item = try reader.message(wire, "ListValue.values")
            items.append(try readValue(&item))
        }
        return .array(items)
    }

    static func readValue(_ reader: inout Protobuf.ProtoReader) throws -> JSONValue {
        var scalar: JSONValue?
        var structParts = [Protobuf.ProtoReader](), listParts = [Protobuf.ProtoReader]()
        var last = 0  // the oneof member seen last: 0 none, 1 a scalar, 5 struct_value, 6 list_value
        while let (number, wire) = try reader.next() {
            switch number {
            case 1: _ = try reader.uint64(wire, "Value.null_value"); scalar = .null
            case 2:
                let n = try reader.double(wire, "Value.number_value")
                guard n.isFinite else {
                    throw VouchError(.invalidValue, "a Value's number is not finite", context: ["field": "Value.number_value", "got": "\(n)"])
                }
                scalar = .number(n)
            case 3: scalar = .string(try reader.string(wire, "Value.string_value"))
            case 4: scalar = .bool(try reader.bool(wire, "Value.bool_value"))
            case 5:
                if last != 5 { structParts = [] }
                structParts.append(try reader.message(wire, "Value.struct_value"))
            case 6:
                if last != 6 { listParts = [] }
                listParts.append(try reader.message(wire, "Value.list_value"))
            default: try reader.skip(wire, number); continue
            }
            last = number >= 5 ? number : 1
        }
        switch last {
        case 1: return scalar!
        case 5:
            var merged = Protobuf.ProtoReader(merging: structParts)
            return try readStruct(&merged)
        case 6:
            var merged = Protobuf.ProtoReader(merging: listParts)
            return try readList(&merged)
        default:
            throw VouchError(.invalidValue, "a google.protobuf.Value has no kind set", context: ["field": "Value.kind", "offset": "\(reader.offset)"])
        }
    }
}
