/// Reads big-endian TPM-style structures from untrusted bytes. Every read is bounds-checked
/// and throws `truncated` with the field name and offset; nothing here can trap on hostile input.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.offset = 0
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset >= bytes.count }

    private func need(_ n: Int, _ field: @autoclosure () -> String) throws {
        guard n >= 0, n <= remaining else {
            let field = field()
            throw VouchError(.truncated, "input ends inside \(field)",
                             context: ["field": field, "offset": "\(offset)", "expected": "\(n)", "got": "\(max(remaining, 0))"])
        }
    }

    public mutating func u8(_ field: @autoclosure () -> String) throws -> UInt8 {
        try need(1, field())
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16(_ field: @autoclosure () -> String) throws -> UInt16 { try integer(field(), littleEndian: false) }
    public mutating func u32(_ field: @autoclosure () -> String) throws -> UInt32 { try integer(field(), littleEndian: false) }
    public mutating func u64(_ field: @autoclosure () -> String) throws -> UInt64 { try integer(field(), littleEndian: false) }

    // Little-endian reads, for formats defined by C structs (TCG event logs).
    public mutating func u16le(_ field: @autoclosure () -> String) throws -> UInt16 { try integer(field(), littleEndian: true) }
    public mutating func u32le(_ field: @autoclosure () -> String) throws -> UInt32 { try integer(field(), littleEndian: true) }
    public mutating func u64le(_ field: @autoclosure () -> String) throws -> UInt64 { try integer(field(), littleEndian: true) }

    /// An unsigned integer of T's width in the given byte order.
    private mutating func integer<T: FixedWidthInteger & UnsignedInteger>(_ field: @autoclosure () -> String, littleEndian: Bool) throws -> T {
        let n = MemoryLayout<T>.size
        try need(n, field())
        var v: T = 0
        for i in 0..<n { v = v << 8 | T(bytes[offset + (littleEndian ? n - 1 - i : i)]) }
        offset += n
        return v
    }

    public mutating func bytes(_ n: Int, _ field: @autoclosure () -> String) throws -> [UInt8] {
        try need(n, field())
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    /// A TPM2B: a 16-bit size followed by that many bytes, with an upper bound on the size.
    public mutating func sized(_ field: @autoclosure () -> String, max: Int = 65535) throws -> [UInt8] {
        let start = offset
        let n = Int(try u16("\(field()).size"))
        guard n <= max else {
            throw VouchError(.invalidValue, "\(field()) is longer than allowed",
                             context: ["field": field(), "offset": "\(start)", "expected": "<= \(max)", "got": "\(n)"])
        }
        return try bytes(n, field())
    }

    public func expectEnd(_ structure: @autoclosure () -> String) throws {
        guard remaining == 0 else {
            let structure = structure()
            throw VouchError(.trailingBytes, "\(structure) is followed by unexpected bytes",
                             context: ["field": structure, "offset": "\(offset)", "got": "\(remaining)"])
        }
    }
}

/// Writes big-endian TPM-style structures.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8] = []
    public init() {}
    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { bytes += [UInt8(v >> 8), UInt8(v & 0xff)] }
    public mutating func u32(_ v: UInt32) { for s in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8((v >> UInt32(s)) & 0xff)) } }
    public mutating func u64(_ v: UInt64) { for s in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((v >> UInt64(s)) & 0xff)) } }
    public mutating func raw(_ b: [UInt8]) { bytes += b }
    public mutating func sized(_ b: [UInt8]) { u16(UInt16(b.count)); bytes += b }
}
