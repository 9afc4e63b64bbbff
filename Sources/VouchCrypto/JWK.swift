import Foundation
import VouchCore
import VouchTPMWire

/// A public EC key as a JSON Web Key (RFC 7517/7518): the form in which the broker publishes the
/// key that signs its attestation results, so that verifiers reading key sets can pick it by `kid`.
public struct JWK: Codable, Sendable, Equatable {
    public var kty: String
    public var crv: String
    public var x: String
    public var y: String
    public var kid: String?
    public var use: String?
    public var alg: String?
    /// The key's certificate chain (base64 DER, leaf first), for verifiers that also check it.
    public var x5c: [String]?

    /// The JWK of an EC public key (P-256, P-384 or P-521).
    public init(publicKey: PublicKey, use: String? = nil, alg: String? = nil, x5c: [String]? = nil) throws {
        guard let p = publicKey.ecJWKParameters, p.crv != "?" else { throw VouchError(.unsupported, "only EC keys on P-256, P-384 or P-521 have a JWK here") }
        kty = "EC"
        crv = p.crv
        x = JWSSigner.base64URL(p.x)
        y = JWSSigner.base64URL(p.y)
        self.use = use
        self.alg = alg
        self.x5c = x5c
        kid = thumbprint
    }

    /// The RFC 7638 thumbprint: SHA-256 over the required members (crv, kty, x, y) in
    /// lexicographic order, without whitespace, base64url.
    public var thumbprint: String {
        // The member values are base64url strings and curve names: nothing to escape.
        let canonical = #"{"crv":"\#(crv)","kty":"\#(kty)","x":"\#(x)","y":"\#(y)"}"#
        return JWSSigner.base64URL(Crypto.sha256(Array(canonical.utf8)))
    }

    /// The key, checked: an EC point on the named curve, coordinates of the curve's size.
    public func publicKey() throws -> PublicKey {
        guard kty == "EC" else { throw VouchError(.unsupported, "only EC keys (kty EC) are supported", context: ["field": "kty", "got": String(kty.prefix(16))]) }
        let curve: ECCCurve
        switch crv {
        case "P-256": curve = .nistP256
        case "P-384": curve = .nistP384
        case "P-521": curve = .nistP521
        default: throw VouchError(.unsupported, "unsupported curve", context: ["field": "crv", "got": String(crv.prefix(16))])
        }
        let xb = try JWSSigner.base64URLDecode(x, field: "x"), yb = try JWSSigner.base64URLDecode(y, field: "y")
        guard xb.count == curve.coordinateSize, yb.count == curve.coordinateSize else {
            throw VouchError(.invalidValue, "EC coordinates must be \(curve.coordinateSize) bytes", context: ["field": "x"])
        }
        return try PublicKey(ecPoint: .ecc(curve: curve, x: xb, y: yb))
    }
}

/// A JWK set (RFC 7517 §5): `{"keys": [...]}`. Reading one keeps the EC keys this type holds and
/// skips members it cannot use (another `kty`, such as RSA or OKP, or a malformed member), as
/// RFC 7517 §5 asks of implementations: one key a verifier does not understand never hides the
/// others. A set without a `keys` array is still an error.
public struct JWKSet: Codable, Sendable, Equatable {
    public var keys: [JWK]
    public init(keys: [JWK]) { self.keys = keys }

    private enum CodingKeys: String, CodingKey { case keys }

    /// One member of `keys`, nil when it is not an EC JWK this type holds.
    private struct Member: Decodable {
        let key: JWK?
        init(from decoder: Decoder) throws { key = try? JWK(from: decoder) }
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        keys = try container.decode([Member].self, forKey: .keys).compactMap(\.key)
    }

    /// The key named `kid`; nil if the set has none (or more than one) by that name.
    public func key(kid: String) -> JWK? {
        let matching = keys.filter { $0.kid == kid }
        return matching.count == 1 ? matching[0] : nil
    }
}
