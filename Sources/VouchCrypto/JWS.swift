import Foundation
import VouchCore
import VouchTPMWire

/// Compact JWS with ES256 (RFC 7515/7518): signed JSON tokens such as EAR attestation results.
/// The header carries the signer's certificate chain (`x5c`); a relying party verifies a token
/// against the broker CA (never the agents' issuing CA) and the broker's SPIFFE ID.
public struct JWSSigner: Sendable {
    let key: PrivateKey
    let x5c: [String]

    /// `chain`: the signer's certificate first, then the CA certificates above it.
    public init(key: PrivateKey, chain: [Certificate]) throws {
        self.key = key
        self.x5c = try chain.map { Base64.encode(try $0.der) }
    }

    public static func base64URL(_ b: [UInt8]) -> String {
        Base64.encode(b).replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    public static func base64URLDecode(_ s: String, field: String) throws -> [UInt8] {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !t.contains("=") else { throw VouchError(.invalidValue, "base64url must not be padded", context: ["field": field]) }
        while t.count % 4 != 0 { t += "=" }
        return try Base64.decode(t, field: field)
    }

    /// Signs the JSON `payload` (typ `typ`): header.payload.signature, each base64url.
    public func sign(payload: [UInt8], typ: String = "JWT") throws -> String {
        let header: [String: Any] = ["alg": "ES256", "typ": typ, "x5c": x5c]
        let h = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys, .withoutEscapingSlashes])
        let input = Self.base64URL([UInt8](h)) + "." + Self.base64URL(payload)
        var der = DER.Reader(try key.sign(Array(input.utf8), hash: .sha256))
        var seq = try der.sequence("ECDSA-Sig-Value")
        func fixed(_ i: [UInt8]) -> [UInt8] {
            let trimmed = Array(i.drop { $0 == 0 })
            return [UInt8](repeating: 0, count: max(0, 32 - trimmed.count)) + trimmed
        }
        let r = fixed(try seq.read(DER.integerTag, "r")), s = fixed(try seq.read(DER.integerTag, "s"))
        return input + "." + Self.base64URL(r + s)
    }

    /// Verifies a compact ES256 JWS whose `x5c` chain leads to one of `anchors` at `now` and whose
    /// signer is exactly `signer` (its only URI SAN); returns the payload bytes. Checks, in order:
    /// three parts; header alg ES256 with an x5c chain; the chain verifies; the leaf is no CA, may
    /// sign (keyUsage digitalSignature) and names `signer` as its only URI SAN; the signature (64 bytes r‖s) verifies with the
    /// leaf key. `anchors` must be the broker CA alone: a CA that also certifies agents would let
    /// an agent's key sign results.
    public static func verify(_ token: String, anchors: [Certificate], signer: String, at now: Date) throws -> [UInt8] {
        guard token.count <= 64 * 1024 else { throw VouchError(.invalidValue, "token is too long", context: ["field": "token"]) }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3 else { throw VouchError(.invalidValue, "a compact JWS has three parts", context: ["got": "\(parts.count)"]) }
        let headerBytes = try base64URLDecode(parts[0], field: "header")
        guard let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any],
              header["alg"] as? String == "ES256", let x5c = header["x5c"] as? [String], !x5c.isEmpty, x5c.count <= 8 else {
            throw VouchError(.invalidValue, "header must name alg ES256 and carry an x5c chain", context: ["field": "header"])
        }
        let chain = try x5c.map { try Certificate(der: try Base64.decode($0, field: "x5c")) }
        if let e = chain[0].verify(anchors: anchors, intermediates: Array(chain.dropFirst()), at: now) {
            throw VouchError(.signatureInvalid, "the token's signer does not chain to a trusted CA: \(e.message)", context: ["field": "x5c"])
        }
        guard !chain[0].isCA, chain[0].mayDigitallySign else {
            throw VouchError(.signerMismatch, "the token's signing certificate is a CA or may not make digital signatures", context: ["field": "x5c"])
        }
        guard chain[0].uriSANs == [signer] else {
            throw VouchError(.signerMismatch, "the token is not signed by \(signer)",
                             context: ["field": "x5c", "expected": signer, "got": chain[0].uriSANs.joined(separator: ",")])
        }
        let sig = try base64URLDecode(parts[2], field: "signature")
        guard sig.count == 64 else { throw VouchError(.signatureInvalid, "ES256 signatures are 64 bytes", context: ["got": "\(sig.count)"]) }
        let der = try ecdsaSignatureDER(r: Array(sig[0..<32]), s: Array(sig[32..<64]))
        guard try chain[0].publicKey.verify(message: Array((parts[0] + "." + parts[1]).utf8), signature: der, scheme: .ecdsa, hash: .sha256) else {
            throw VouchError(.signatureInvalid, "the token's signature does not verify", context: ["field": "signature"])
        }
        return try base64URLDecode(parts[1], field: "payload")
    }
}
