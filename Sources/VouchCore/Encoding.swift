import Foundation

public enum Hex {
    /// True if `s` is only lowercase hex digits and its length is in `length` — the check for host
    /// ids, nonces and serials on hot paths (Foundation's regular expressions compile per call).
    public static func isLowercase(_ s: String, length: ClosedRange<Int>) -> Bool {
        let u = s.utf8
        return length.contains(u.count) && u.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// Lowercase hex. Writes straight into the string's storage: digests and dbx entries are
    /// encoded on the appraisal hot path (hundreds per event log).
    public static func encode(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBufferPointer { encode(buffer: $0) }
    }

    /// The same for any byte sequence (a generic call from another module is not specialised:
    /// arrays take the overload above).
    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        if let s = bytes.withContiguousStorageIfAvailable({ encode(buffer: $0) }) { return s }
        return Array(bytes).withUnsafeBufferPointer { encode(buffer: $0) }
    }

    private static func encode(buffer: UnsafeBufferPointer<UInt8>) -> String {
        @inline(__always) func digit(_ n: UInt8) -> UInt8 { n < 10 ? 0x30 + n : 0x57 + n }
        return String(unsafeUninitializedCapacity: buffer.count * 2) { out in
            var i = 0
            for b in buffer {
                out[i] = digit(b >> 4)
                out[i + 1] = digit(b & 0xf)
                i += 2
            }
            return i
        }
    }

    /// Decodes hex (either case); throws `invalid_value` naming the field on odd length or a bad digit.
    public static func decode(_ s: String, field: String = "hex") throws -> [UInt8] {
        let chars = Array(s.utf8)
        guard chars.count % 2 == 0 else {
            throw VouchError(.invalidValue, "\(field) has an odd number of hex digits", context: ["field": field, "got": "\(chars.count)"])
        }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else {
                throw VouchError(.invalidValue, "\(field) is not hexadecimal", context: ["field": field, "offset": "\(i)"])
            }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }
}

public enum Base64 {
    public static func encode(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
    /// Standard base64 with padding, in its one canonical spelling (RFC 4648 section 3.5: zero
    /// pad bits, no extra `=`), as docs/openapi.yaml's `Base64` pattern says; Foundation alone
    /// would also take `AB==` or `AAAA====`.
    public static func decode(_ s: String, field: String) throws -> [UInt8] {
        guard let d = Data(base64Encoded: s), d.base64EncodedString() == s else {
            throw VouchError(.invalidValue, "\(field) is not valid base64", context: ["field": field])
        }
        return [UInt8](d)
    }
}

/// Constant-time comparison for secrets.
public func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    var diff: UInt8 = 0
    for i in 0..<a.count { diff |= a[i] ^ b[i] }
    return diff == 0
}
