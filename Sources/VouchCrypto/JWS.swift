import Foundation
import VouchCore
import VouchTPMWire

/// Compact JWS with ES256 (RFC 7515/7518): signed JSON tokens such as EAR attestation results
/// and JWT-SVIDs. The header carries a key id (`kid`, the RFC 7638 thumbprint of the signing key)
/// and, for a signer made with a certificate chain, that chain (`x5c`). A relying party verifies
/// an EAR either against the broker CA (never the agents' issuing CA) and the broker's SPIFFE ID,
/// or by its `kid` in the key set the broker publishes (`jwk`, served at `GET /v1/ear/jwks`); a
/// JWT-SVID (no `x5c`) by its `kid` alone (`JWTSVIDVerifier`, `GET /v1/jwt-svid/jwks`).
public struct JWSSigner: Sendable {
    let key: PrivateKey
    let x5c: [String]?
    /// The signing key's RFC 7638 thumbprint, sent as the header's `kid`.
    public let kid: String
    /// The public signing key as a JWK (`kid`, `use`, `alg: ES256`, and the `x5c` chain if any).
    public let jwk: JWK

    /// `chain`: the signer's certificate first, then the CA certificates above it (`use: sig`).
    public init(key: PrivateKey, chain: [Certificate]) throws {
        let x5c = try chain.map { Base64.encode(try $0.der) }
        try self.init(key: key, use: "sig", x5c: x5c)
    }

    /// A signer known by its key alone: its tokens' headers carry no `x5c`, and its JWK says
    /// `use` (e.g. `jwt-svid`, the SPIFFE bundle's use for JWT-SVID keys).
    public init(key: PrivateKey, use: String) throws {
        try self.init(key: key, use: use, x5c: nil)
    }

    private init(key: PrivateKey, use: String, x5c: [String]?) throws {
        self.key = key
        self.x5c = x5c
        self.jwk = try JWK(publicKey: try key.publicKey, use: use, alg: "ES256", x5c: x5c)
        self.kid = jwk.thumbprint
    }

    /// Base64url without padding (RFC 4648 section 5). Byte by byte: Foundation's string
    /// replacement was most of the cost of reading an EAR (a few KiB of base64url with its x5c).
    public static func base64URL(_ b: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((b.count + 2) / 3 * 4)
        for c in Base64.encode(b).utf8 {
            switch c {
            case UInt8(ascii: "+"): out.append(UInt8(ascii: "-"))
            case UInt8(ascii: "/"): out.append(UInt8(ascii: "_"))
            case UInt8(ascii: "="): break
            default: out.append(c)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Reads unpadded base64url: `-` and `_` become `+` and `/`; padding, and the standard
    /// alphabet's `+` and `/` (which would make one token spell the same bytes two ways), are
    /// refused; the result must be canonical standard base64 once padded (`Base64.decode`).
    public static func base64URLDecode(_ s: String, field: String) throws -> [UInt8] {
        var t: [UInt8] = []
        t.reserveCapacity(s.utf8.count + 3)
        for c in s.utf8 {
            switch c {
            case UInt8(ascii: "-"): t.append(UInt8(ascii: "+"))
            case UInt8(ascii: "_"): t.append(UInt8(ascii: "/"))
            case UInt8(ascii: "="): throw VouchError(.invalidValue, "base64url must not be padded", context: ["field": field])
            case UInt8(ascii: "+"), UInt8(ascii: "/"): throw VouchError(.invalidValue, "not base64url (+ or /)", context: ["field": field])
            default: t.append(c)
            }
        }
        while t.count % 4 != 0 { t.append(UInt8(ascii: "=")) }
        return try Base64.decode(String(decoding: t, as: UTF8.self), field: field)
    }

    /// Signs the JSON `payload` (typ `typ`): header.payload.signature, each base64url.
    public func sign(payload: [UInt8], typ: String = "JWT") throws -> String {
        var header: [String: Any] = ["alg": "ES256", "kid": kid, "typ": typ]
        if let x5c { header["x5c"] = x5c }
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
        let (parts, header) = try split(token)
        guard header["alg"] as? String == "ES256", let x5c = header["x5c"] as? [String], !x5c.isEmpty, x5c.count <= 8 else {
            throw VouchError(.invalidValue, "header must name alg ES256 and carry an x5c chain", context: ["field": "header"])
        }
        let chain = try x5c.enumerated().map { i, b64 -> Certificate in
            let der = try Base64.decode(b64, field: "x5c")
            // A copy of an anchor (the broker CA rides along in x5c) is that anchor, byte for
            // byte: reuse it rather than decode it again (OpenSSL 3's key decoding dominates).
            if i > 0, let anchor = anchors.first(where: { (try? $0.der) == der }) { return anchor }
            return try Certificate(der: der)
        }
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
        return try checkSignature(parts, key: try chain[0].publicKey)
    }

    /// Verifies a compact ES256 JWS with the key its header's `kid` names in `keySet` (a set the
    /// caller obtained from a source it trusts: the broker's `GET /v1/ear/jwks` over TLS verified
    /// with the broker CA, or a copy of it); returns the payload bytes. The `x5c` header, if any,
    /// is not used. The key must be a P-256 EC key whose `alg`, if given, is ES256.
    public static func verify(_ token: String, keySet: JWKSet) throws -> [UInt8] {
        let (parts, header) = try split(token)
        guard header["alg"] as? String == "ES256", let kid = header["kid"] as? String, !kid.isEmpty else {
            throw VouchError(.invalidValue, "header must name alg ES256 and a kid", context: ["field": "header"])
        }
        guard let jwk = keySet.key(kid: kid) else {
            throw VouchError(.signerMismatch, "no key in the key set has the token's kid", context: ["field": "kid", "got": String(kid.prefix(64))])
        }
        guard jwk.crv == "P-256", jwk.alg == nil || jwk.alg == "ES256", jwk.use == nil || jwk.use == "sig" else {
            throw VouchError(.signerMismatch, "the key named by the token's kid is not an ES256 signing key", context: ["field": "kid"])
        }
        return try checkSignature(parts, key: try jwk.publicKey())
    }

    /// The three parts of a compact JWS and its decoded header.
    private static func split(_ token: String) throws -> ([String], [String: Any]) {
        guard token.utf8.count <= 64 * 1024 else { throw VouchError(.invalidValue, "token is too long", context: ["field": "token"]) }
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard parts.count == 3 else { throw VouchError(.invalidValue, "a compact JWS has three parts", context: ["got": "\(parts.count)"]) }
        let headerBytes = try base64URLDecode(parts[0], field: "header")
        guard let header = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any] else {
            throw VouchError(.invalidValue, "the header is not a JSON object", context: ["field": "header"])
        }
        // RFC 7515 4.1.11: a verifier that understands no critical extension must refuse any.
        guard header["crit"] == nil else {
            throw VouchError(.unsupported, "the header names critical extensions this verifier does not understand", context: ["field": "crit"])
        }
        return (parts, header)
    }

    /// Checks the 64-byte r‖s signature over header.payload with `key`; returns the payload.
    private static func checkSignature(_ parts: [String], key: PublicKey) throws -> [UInt8] {
        let sig = try base64URLDecode(parts[2], field: "signature")
        guard sig.count == 64 else { throw VouchError(.signatureInvalid, "ES256 signatures are 64 bytes", context: ["got": "\(sig.count)"]) }
        guard try es256Verifies(parts, signature: sig, key: key) else {
            throw VouchError(.signatureInvalid, "the token's signature does not verify", context: ["field": "signature"])
        }
        return try base64URLDecode(parts[1], field: "payload")
    }

    /// Whether `signature` (64 bytes, r‖s) is `key`'s ES256 signature over the compact JWS
    /// `parts`' signing input (header.payload, as sent).
    static func es256Verifies(_ parts: [String], signature: [UInt8], key: PublicKey) throws -> Bool {
        guard signature.count == 64 else { return false }
        let der = try ecdsaSignatureDER(r: Array(signature[0..<32]), s: Array(signature[32..<64]))
        return key.verify(message: Array((parts[0] + "." + parts[1]).utf8), signature: der, scheme: .ecdsa, hash: .sha256)
    }
}
