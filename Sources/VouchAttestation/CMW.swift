import Foundation
import VouchCore
import VouchCrypto

/// A RATS Conceptual Message Wrapper (RFC 9999) as Vouch writes and reads it: one JSON record
/// `[type, value, ind]` (section 3.1) carried in the CMW X.509 extension (section 6).
///
/// The extension (`id-pe-cmw`, 1.3.6.1.5.5.7.1.35) has the value
///
///     CMW ::= CHOICE { json UTF8String, cbor OCTET STRING }
///
/// Vouch writes the `json` choice. In a JSON record the value is always base64url without
/// padding (RFC 4648 section 5), even when the message is text such as a JWT; `ind` is the
/// conceptual-message bitmap (bit 0 reference values, 1 endorsements, 2 evidence, 3 attestation
/// results, 4 appraisal policy), at most 32 bits and never 0.
public struct CMWRecord: Sendable, Equatable {
    /// id-pe-cmw: { iso(1) identified-organization(3) dod(6) internet(1) security(5) mechanisms(5) pkix(7) id-pe(1) 35 }.
    public static let extensionOID = "1.3.6.1.5.5.7.1.35"
    /// `ind` bit 3: an attestation result.
    public static let attestationResults: UInt32 = 1 << 3
    /// The most bytes of extension value read (a certificate extension, not a file).
    static let maxExtensionValue = 64 * 1024

    static let base64URLAlphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// A media type (with parameters) naming what `value` holds.
    public var type: String
    public var value: [UInt8]
    public var indicator: UInt32?

    public init(type: String, value: [UInt8], indicator: UInt32?) {
        precondition(indicator != 0, "a CMW indicator is never 0")
        self.type = type; self.value = value; self.indicator = indicator
    }

    /// The JSON text of the record (a `json-record`).
    public var json: String {
        func quoted(_ s: String) -> String {
            // Nothing to escape (always so for the base64url value, an EAR of a few KiB): one copy,
            // not an append per Unicode scalar (that was 3 % of an enrollment's broker CPU).
            if !s.utf8.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 < 0x20 }) { return "\"" + s + "\"" }
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
                default: out.unicodeScalars.append(u)
                }
            }
            return out + "\""
        }
        var items = [quoted(type), quoted(JWSSigner.base64URL(value))]
        if let indicator { items.append(String(indicator)) }
        return "[" + items.joined(separator: ",") + "]"
    }

    /// Parses a `json-record`. Refuses a collection, a CoAP content-format number as the type,
    /// a padded or non-base64url value, and an indicator of 0 or above 2^32-1.
    public init(json text: String) throws {
        guard text.first(where: { !$0.isWhitespace }) == "[" else {
            throw VouchError(.unsupported, "only a CMW record is supported here, not a collection", context: ["field": "cmw"])
        }
        struct Wire: Decodable {
            let type: String, value: String, indicator: UInt32?
            init(from decoder: Decoder) throws {
                var c = try decoder.unkeyedContainer()
                type = try c.decode(String.self)
                value = try c.decode(String.self)
                indicator = c.isAtEnd ? nil : try c.decode(UInt32.self)
                guard c.isAtEnd else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "more than 3 members") }
            }
        }
        guard let wire = try? JSONDecoder().decode(Wire.self, from: Data(text.utf8)) else {
            throw VouchError(.invalidValue, "a JSON CMW record is [type, base64url value, optional indicator 0-2^32-1]", context: ["field": "cmw"])
        }
        guard !wire.type.isEmpty else {
            throw VouchError(.invalidValue, "a JSON CMW record's type is a media type", context: ["field": "cmw.type"])
        }
        guard wire.indicator != 0 else {
            throw VouchError(.invalidValue, "a CMW indicator is never 0", context: ["field": "cmw.ind"])
        }
        guard wire.value.utf8.allSatisfy({ Self.base64URLAlphabet.contains($0) }) else {
            throw VouchError(.invalidValue, "a JSON CMW record's value is base64url without padding", context: ["field": "cmw.value"])
        }
        type = wire.type
        value = try JWSSigner.base64URLDecode(wire.value, field: "cmw.value")
        indicator = wire.indicator
    }

    /// The DER of the extension value: the `json` choice, a UTF8String.
    public var extensionValue: [UInt8] { DER.utf8(json) }

    /// Reads the extension value. The `cbor` choice is recognised and refused as unsupported.
    public init(extensionValue der: [UInt8]) throws {
        guard der.count <= Self.maxExtensionValue else {
            throw VouchError(.invalidValue, "the CMW extension is too large", context: ["field": "cmw", "got": "\(der.count)"])
        }
        var r = DER.Reader(der)
        if r.peekTag == DER.octetStringTag {
            throw VouchError(.unsupported, "a CBOR CMW is not supported; Vouch reads the JSON choice", context: ["field": "cmw"])
        }
        let bytes = try r.read(DER.utf8StringTag, "cmw")
        guard r.isAtEnd else { throw VouchError(.trailingBytes, "bytes follow the CMW in its extension", context: ["field": "cmw"]) }
        guard let text = String(bytes: bytes, encoding: .utf8) else {
            throw VouchError(.invalidValue, "the CMW UTF8String is not UTF-8", context: ["field": "cmw"])
        }
        try self.init(json: text)
    }
}
