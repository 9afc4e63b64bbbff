import VouchCore

/// A message described by one table of its fields (in field-number order): reading and writing
/// come from the table. Reading, field by field as they arrive: a field number the table lacks
/// is skipped; a known one is read with its wire type checked (`Protobuf.ProtoReader`), a
/// repeated field or map takes at most `Protobuf.maxItems` items; fields that are embedded
/// messages merge their occurrences once the message has been read.
public protocol ProtobufRecord: ProtobufMessage {
    /// Every field at its proto3 default.
    init()
    static var fields: [ProtoField<Self>] { get }
}

extension ProtobufRecord {
    public init(reading reader: inout Protobuf.ProtoReader) throws {
        self.init()
        let fields = Self.fields
        var states = [ProtoField<Self>.State](repeating: .init(), count: fields.count)
        while let (number, wire) = try reader.next() {
            guard let i = fields.firstIndex(where: { $0.number == number }) else {
                try reader.skip(wire, number)
                continue
            }
            try fields[i].read(&self, &reader, wire, &states[i])
        }
        for i in fields.indices { try fields[i].finish?(&self, &states[i]) }
    }

    public func write(to writer: inout Protobuf.ProtoWriter) {
        for field in Self.fields { field.write(self, &writer) }
    }
}

/// One field of a `ProtobufRecord`: its number, the value it reads into and writes from (a key
/// path), and its kind. Names are the proto names (`X509SVID.spiffe_id`), used in errors.
public struct ProtoField<Message> {
    /// What reading one message has gathered for this field so far.
    public struct State {
        var count = 0
        var parts = [Protobuf.ProtoReader]()

        mutating func room(_ name: String) throws {
            try Protobuf.checkRoom(count, name)
            count += 1
        }
    }

    public let number: Int
    let read: (inout Message, inout Protobuf.ProtoReader, Protobuf.WireType, inout State) throws -> Void
    let write: (Message, inout Protobuf.ProtoWriter) -> Void
    var finish: ((inout Message, inout State) throws -> Void)?

    /// `string name = number;` (the last occurrence wins).
    public static func string(_ number: Int, _ name: String, _ path: WritableKeyPath<Message, String>) -> Self {
        Self(number: number, read: { m, r, wire, _ in m[keyPath: path] = try r.string(wire, name) },
             write: { m, w in w.string(number, m[keyPath: path]) })
    }

    /// `bytes name = number;`
    public static func bytes(_ number: Int, _ name: String, _ path: WritableKeyPath<Message, [UInt8]>) -> Self {
        Self(number: number, read: { m, r, wire, _ in m[keyPath: path] = try r.bytes(wire, name) },
             write: { m, w in w.bytes(number, m[keyPath: path]) })
    }

    /// `repeated string name = number;`
    public static func strings(_ number: Int, _ name: String, _ path: WritableKeyPath<Message, [String]>) -> Self {
        Self(number: number, read: { m, r, wire, state in
            try state.room(name)
            m[keyPath: path].append(try r.string(wire, name))
        }, write: { m, w in for v in m[keyPath: path] { w.string(number, v, always: true) } })
    }

    /// `repeated bytes name = number;`
    public static func byteStrings(_ number: Int, _ name: String, _ path: WritableKeyPath<Message, [[UInt8]]>) -> Self {
        Self(number: number, read: { m, r, wire, state in
            try state.room(name)
            m[keyPath: path].append(try r.bytes(wire, name))
        }, write: { m, w in for v in m[keyPath: path] { w.bytes(number, v, always: true) } })
    }

    /// `repeated T name = number;` for an embedded message type T.
    public static func messages<T: ProtobufMessage>(_ number: Int, _ name: String, _ path: WritableKeyPath<Message, [T]>) -> Self {
        Self(number: number, read: { m, r, wire, state in
            try state.room(name)
            var inner = try r.message(wire, name)
            m[keyPath: path].append(try T(reading: &inner))
        }, write: { m, w in for v in m[keyPath: path] { w.message(number, v) } })
    }

    /// `map<string, bytes> name = number;` (entries counted as they come; a repeated key keeps
    /// its last value).
    public static func bytesMap(_ number: Int, _ name: String, _ path: WritableKeyPath<Message, [String: [UInt8]]>) -> Self {
        Self(number: number, read: { m, r, wire, state in
            try state.room(name)
            let (key, value) = try r.stringBytesEntry(wire, name)
            m[keyPath: path][key] = value
        }, write: { m, w in w.map(number, m[keyPath: path]) })
    }

    /// `google.protobuf.Struct name = number;` as a JSONValue object: always written (an empty
    /// Struct at the least); occurrences merged, as protobuf merges an embedded message.
    public static func jsonStruct(_ number: Int, _ name: String, _ path: WritableKeyPath<Message, JSONValue>) -> Self {
        Self(number: number, read: { _, r, wire, state in state.parts.append(try r.message(wire, name)) },
             write: { m, w in w.message(number) { m[keyPath: path].writeStructFields(to: &$0) } },
             finish: { m, state in
                 guard !state.parts.isEmpty else { return }
                 var merged = Protobuf.ProtoReader(merging: state.parts)
                 m[keyPath: path] = try JSONValue.readStruct(&merged)
             })
    }
}
