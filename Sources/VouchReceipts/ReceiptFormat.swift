import Foundation
import VouchCore

/// JSON helpers shared by the receipt formats: bounded decoding with one error code, and a
/// deterministic encoding (sorted keys, no whitespace, `/` unescaped).
public enum ReceiptFormat {
    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], field: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch let e as VouchError {
            throw e
        } catch {
            throw bad("not the expected JSON", field)
        }
    }

    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding plain structs of strings cannot fail.
        return [UInt8]((try? encoder.encode(value)) ?? Data())
    }

    static func base64(_ s: String, field: String) throws -> [UInt8] {
        guard let b = try? Base64.decode(s, field: field) else { throw bad("\(field) is not canonical standard base64", field) }
        return b
    }

    static func bad(_ message: String, _ field: String) -> VouchError {
        VouchError(.receiptMalformed, message, context: ["field": field])
    }

    /// True for `sha256:` and 64 lowercase hex digits.
    public static func isDigest(_ s: String) -> Bool {
        s.utf8.count == 71 && s.hasPrefix("sha256:") && s.utf8.dropFirst(7).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    /// `sha256:` and the lowercase hex of `digest`.
    public static func digest(_ digest: [UInt8]) -> String { "sha256:" + Hex.encode(digest) }

    /// An unsigned decimal integer written as a string (no sign, no leading zero but `0`).
    static func isDecimal(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 20 && s.utf8.allSatisfy { (0x30...0x39).contains($0) } && (s == "0" || !s.hasPrefix("0")) && UInt64(s) != nil
    }
}

extension ErrorCode {
    /// A receipt bundle, DSSE envelope, Statement or predicate is not in its format.
    public static let receiptMalformed = ErrorCode("receipt_malformed", status: 422)
}
