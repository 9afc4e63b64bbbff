import Foundation
import VouchCore

/// A DSSE envelope (github.com/secure-systems-lab/dsse, envelope.md), as JSON:
///
///     {"payload": base64, "payloadType": "application/vnd.in-toto+json",
///      "signatures": [{"keyid": "...", "sig": base64}]}
///
/// Parsing checks shape and sizes only: nothing here is verified. The signature is over
/// `DSSEEnvelope.pae(type:payload:)`, never over the JSON; a verifier checks it with the key it
/// trusts before reading the payload (`ReceiptVerifier`).
public struct DSSEEnvelope: Sendable, Equatable {
    public static let inTotoPayloadType = "application/vnd.in-toto+json"
    /// Longest envelope read (JSON text).
    public static let maxBytes = 1 << 20
    /// Most signatures read.
    public static let maxSignatures = 8

    public struct Signature: Sendable, Equatable {
        /// Unauthenticated hint (DSSE); Vouch writes the SHA-256 of the signer's SPKI.
        public let keyid: String
        public let sig: [UInt8]
        public init(keyid: String, sig: [UInt8]) { self.keyid = keyid; self.sig = sig }
    }

    public let payloadType: String
    public let payload: [UInt8]
    public let signatures: [Signature]

    public init(payloadType: String, payload: [UInt8], signatures: [Signature]) {
        self.payloadType = payloadType
        self.payload = payload
        self.signatures = signatures
    }

    /// DSSE's pre-authentication encoding (protocol.md):
    /// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN the byte count in ASCII decimal.
    public static func pae(type: String, payload: [UInt8]) -> [UInt8] {
        let t = Array(type.utf8)
        return Array("DSSEv1 \(t.count) ".utf8) + t + Array(" \(payload.count) ".utf8) + payload
    }

    /// What the signatures sign.
    public var pae: [UInt8] { Self.pae(type: payloadType, payload: payload) }

    struct Wire: Codable {
        var payload: String
        var payloadType: String
        var signatures: [WireSignature]
    }
    struct WireSignature: Codable {
        var keyid: String?
        var sig: String
    }

    /// Parses an envelope from JSON bytes: at most `maxBytes`, one to `maxSignatures` signatures,
    /// canonical standard base64 (DSSE also allows URL-safe; Vouch writes and reads standard).
    public init(json bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxBytes else { throw ReceiptFormat.bad("the envelope is over \(Self.maxBytes) bytes", "envelope") }
        let wire = try ReceiptFormat.decode(Wire.self, bytes, field: "envelope")
        try self.init(wire: wire)
    }

    init(wire: Wire) throws {
        guard !wire.payloadType.isEmpty, wire.payloadType.utf8.count <= 256 else { throw ReceiptFormat.bad("bad payloadType", "envelope.payloadType") }
        guard (1...Self.maxSignatures).contains(wire.signatures.count) else {
            throw ReceiptFormat.bad("an envelope has 1 to \(Self.maxSignatures) signatures", "envelope.signatures")
        }
        payloadType = wire.payloadType
        payload = try ReceiptFormat.base64(wire.payload, field: "envelope.payload")
        signatures = try wire.signatures.map {
            guard ($0.keyid ?? "").utf8.count <= 256 else { throw ReceiptFormat.bad("keyid over 256 bytes", "envelope.signatures.keyid") }
            let sig = try ReceiptFormat.base64($0.sig, field: "envelope.signatures.sig")
            guard !sig.isEmpty, sig.count <= 1024 else { throw ReceiptFormat.bad("a signature is 1 to 1024 bytes", "envelope.signatures.sig") }
            return Signature(keyid: $0.keyid ?? "", sig: sig)
        }
    }

    var wire: Wire {
        Wire(payload: Base64.encode(payload), payloadType: payloadType, signatures: signatures.map { WireSignature(keyid: $0.keyid, sig: Base64.encode($0.sig)) })
    }

    /// The envelope as JSON (keys sorted, no whitespace).
    public var json: [UInt8] { ReceiptFormat.encode(wire) }
}
