import Foundation
import VouchCore

extension ErrorCode {
    /// Not a compact JWS: three base64url parts, a JSON object header, no critical extensions.
    public static let jwtSVIDMalformed = ErrorCode("jwt_svid_malformed", status: 400)
    /// The header names another algorithm than ES256 (`none`, `HS256`, `RS256`, …).
    public static let jwtSVIDAlgorithmUnsupported = ErrorCode("jwt_svid_algorithm_unsupported", status: 403)
    /// The header names no `kid`, or one no trusted P-256 key has.
    public static let jwtSVIDKeyUnknown = ErrorCode("jwt_svid_key_unknown", status: 403)
    /// The header's `typ` is neither absent, `JWT` nor `JOSE`.
    public static let jwtSVIDTypeInvalid = ErrorCode("jwt_svid_type_invalid", status: 403)
    /// The signature is not the named key's ES256 signature over the token.
    public static let jwtSVIDSignatureInvalid = ErrorCode("jwt_svid_signature_invalid", status: 403)
    /// The claims are not a JSON object, or `sub`, `aud`, `exp`, `iat` or `nbf` has the wrong type, or `exp` is missing.
    public static let jwtSVIDClaimsInvalid = ErrorCode("jwt_svid_claims_invalid", status: 403)
    /// `sub` is missing, not a workload's SPIFFE ID, or in another trust domain.
    public static let jwtSVIDSubjectInvalid = ErrorCode("jwt_svid_subject_invalid", status: 403)
    /// `aud` does not contain the audience the verifier expects.
    public static let jwtSVIDAudienceMismatch = ErrorCode("jwt_svid_audience_mismatch", status: 403)
    /// `exp` is not after now.
    public static let jwtSVIDExpired = ErrorCode("jwt_svid_expired", status: 403)
    /// `iat` or `nbf` is later than now plus the allowed skew.
    public static let jwtSVIDNotYetValid = ErrorCode("jwt_svid_not_yet_valid", status: 403)
    /// `exp - iat` is longer than the verifier allows.
    public static let jwtSVIDLifetimeTooLong = ErrorCode("jwt_svid_lifetime_too_long", status: 403)
}

/// Verifies JWT-SVIDs (the SPIFFE JWT-SVID specification): compact JWS tokens signed ES256 by a
/// key of the trust domain's bundle, named by `kid`, whose `sub` is the workload's SPIFFE ID. For
/// the attester's `ValidateJWTSVID` and for relying parties, with the keys of the broker's
/// `GET /v1/jwt-svid/jwks` (or the JWT keys of its SPIFFE bundle) read by `keys(jwks:)`.
public enum JWTSVIDVerifier {
    /// How far in the future `iat` and `nbf` may be (clocks disagree).
    public static let clockSkew: TimeInterval = 300
    /// The largest token accepted (JWT-SVIDs are a few hundred bytes).
    public static let maxTokenBytes = 16 * 1024
    /// The largest key set `keys(jwks:)` reads, and the most keys in it.
    public static let maxJWKSBytes = 64 * 1024
    public static let maxKeys = 64

    /// Verifies `token` for `audience` at `now` with the P-256 `keys` (by `kid`) of `trustDomain`;
    /// returns the subject's SPIFFE ID and the claims (the payload's JSON bytes). Checks, in order:
    /// at most `maxTokenBytes`, three base64url parts, a JSON object header without `crit`
    /// (`jwt_svid_malformed`); header `alg` ES256 (`jwt_svid_algorithm_unsupported`: never `none`
    /// or an HMAC); a `kid` that names a P-256 key in `keys` (`jwt_svid_key_unknown`); `typ`
    /// absent, `JWT` or `JOSE` (`jwt_svid_type_invalid`); the signature, 64 bytes r‖s, verifies
    /// (`jwt_svid_signature_invalid`); the claims are a JSON object with `exp` a number, and
    /// `sub` a string, `aud` a string or array of strings, `iat` and `nbf` numbers where present
    /// (`jwt_svid_claims_invalid`); `sub` a workload's SPIFFE ID in `trustDomain`
    /// (`jwt_svid_subject_invalid`); `aud` contains `audience` (`jwt_svid_audience_mismatch`);
    /// `exp` after `now` (`jwt_svid_expired`); `iat` and `nbf`, where present, not after
    /// `now + clockSkew` (`jwt_svid_not_yet_valid`); `exp - iat`, where `iat` is present, at most
    /// `maxLifetime` (`jwt_svid_lifetime_too_long`).
    public static func verify(token: String, audience: String, keys: [String: PublicKey], trustDomain: String, now: Date,
                              maxLifetime: TimeInterval = 3600) throws -> (spiffeID: String, claims: [UInt8]) {
        let (parts, header) = try split(token)
        guard header.alg == "ES256" else {
            throw VouchError(.jwtSVIDAlgorithmUnsupported, "a JWT-SVID must be signed ES256", context: ["field": "alg", "got": String((header.alg ?? "").prefix(16))])
        }
        guard let kid = header.kid, !kid.isEmpty else {
            throw VouchError(.jwtSVIDKeyUnknown, "the token's header names no kid", context: ["field": "kid"])
        }
        guard let key = keys[kid], key.ecJWKParameters?.crv == "P-256" else {
            throw VouchError(.jwtSVIDKeyUnknown, "no trusted P-256 key has the token's kid", context: ["field": "kid", "got": String(kid.prefix(64))])
        }
        guard header.typ == nil || header.typ == "JWT" || header.typ == "JOSE" else {
            throw VouchError(.jwtSVIDTypeInvalid, "the token's typ must be JWT or JOSE", context: ["field": "typ", "got": String((header.typ ?? "").prefix(32))])
        }
        let signature = try decode(parts[2], "signature")
        guard signature.count == 64, try JWSSigner.es256Verifies(parts, signature: signature, key: key) else {
            throw VouchError(.jwtSVIDSignatureInvalid, "the token's signature does not verify with the key its kid names", context: ["field": "signature"])
        }
        let payload = try decode(parts[1], "payload")
        let claims = try Claims.read(payload)
        guard let sub = claims.sub, SPIFFEID.workloadTrustDomain(sub) == trustDomain else {
            throw VouchError(.jwtSVIDSubjectInvalid, "the token's sub is not a workload's SPIFFE ID in \(trustDomain)",
                             context: ["field": "sub", "got": String((claims.sub ?? "").prefix(128))])
        }
        guard claims.aud.contains(audience) else {
            throw VouchError(.jwtSVIDAudienceMismatch, "the token is not meant for this audience", context: ["field": "aud", "expected": String(audience.prefix(256))])
        }
        let t = now.timeIntervalSince1970
        guard claims.exp > t else {
            throw VouchError(.jwtSVIDExpired, "the token has expired", context: ["field": "exp", "got": seconds(claims.exp)])
        }
        for (name, value) in [("iat", claims.iat), ("nbf", claims.nbf)] {
            if let value, value > t + clockSkew {
                throw VouchError(.jwtSVIDNotYetValid, "the token's \(name) is in the future", context: ["field": name, "got": seconds(value)])
            }
        }
        if let iat = claims.iat, claims.exp - iat > maxLifetime {
            throw VouchError(.jwtSVIDLifetimeTooLong, "the token is valid for longer than \(Int(maxLifetime)) seconds", context: ["field": "exp"])
        }
        return (sub, payload)
    }

    /// The JWT-SVID keys of a JWK set (RFC 7517; the broker's `GET /v1/jwt-svid/jwks`, or a SPIFFE
    /// bundle) by `kid`. At most `maxJWKSBytes` and `maxKeys` members. Kept: EC P-256 keys with a
    /// `kid`, `use` absent or `jwt-svid`, `alg` absent or ES256, and a point on the curve; other
    /// members are skipped (RFC 7517 §5) — among them a SPIFFE bundle's `x509-svid` CA keys and
    /// EAR keys (`use: sig`), which must never verify a JWT-SVID. Two keys with one `kid`, or no
    /// key kept, is `invalid_value`.
    public static func keys(jwks: [UInt8]) throws -> [String: PublicKey] {
        guard jwks.count <= maxJWKSBytes else { throw VouchError(.invalidValue, "the key set is too large", context: ["field": "jwks"]) }
        let set: JWKSet
        do { set = try JSONDecoder().decode(JWKSet.self, from: Data(jwks)) } catch {
            throw VouchError(.invalidValue, "not a JWK set (a JSON object with a keys array)", context: ["field": "jwks"])
        }
        guard set.keys.count <= maxKeys else { throw VouchError(.invalidValue, "the key set holds too many keys", context: ["field": "keys"]) }
        var out: [String: PublicKey] = [:]
        for jwk in set.keys {
            guard let kid = jwk.kid, !kid.isEmpty, jwk.crv == "P-256", jwk.use == nil || jwk.use == "jwt-svid",
                  jwk.alg == nil || jwk.alg == "ES256", let key = try? jwk.publicKey() else { continue }
            guard out.updateValue(key, forKey: kid) == nil else {
                throw VouchError(.invalidValue, "two keys of the set have one kid", context: ["field": "kid", "got": String(kid.prefix(64))])
            }
        }
        guard !out.isEmpty else { throw VouchError(.invalidValue, "the key set holds no JWT-SVID key (EC P-256 with a kid)", context: ["field": "keys"]) }
        return out
    }

    // MARK: Parts

    private struct Header: Decodable {
        let alg: String?, kid: String?, typ: String?
        let crit: Crit?
        /// Any value: its presence is what counts.
        struct Crit: Decodable { init(from decoder: Decoder) throws {} }
    }

    /// The claims this verifier reads; others are the relying party's.
    private struct Claims: Decodable {
        let sub: String?
        let aud: [String]
        let exp: Double
        let iat: Double?, nbf: Double?
        enum CodingKeys: String, CodingKey { case sub, aud, exp, iat, nbf }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            sub = try c.decodeIfPresent(String.self, forKey: .sub)
            if let one = try? c.decodeIfPresent(String.self, forKey: .aud) {
                aud = [one]
            } else {
                aud = try c.decodeIfPresent([String].self, forKey: .aud) ?? []
            }
            exp = try c.decode(Double.self, forKey: .exp)
            iat = try c.decodeIfPresent(Double.self, forKey: .iat)
            nbf = try c.decodeIfPresent(Double.self, forKey: .nbf)
        }

        static func read(_ payload: [UInt8]) throws -> Claims {
            do {
                return try JSONDecoder().decode(Claims.self, from: Data(payload))
            } catch {
                var field = "claims"
                if case let .keyNotFound(key, _)? = error as? DecodingError { field = key.stringValue }
                if case let .typeMismatch(_, context)? = error as? DecodingError, let key = context.codingPath.first { field = key.stringValue }
                throw VouchError(.jwtSVIDClaimsInvalid, "the token's claims are not a JSON object with exp, and sub, aud, iat, nbf of their types",
                                 context: ["field": field])
            }
        }
    }

    /// The three parts of a compact JWS and its header.
    private static func split(_ token: String) throws -> ([String], Header) {
        guard token.utf8.count <= maxTokenBytes else {
            throw VouchError(.jwtSVIDMalformed, "the token is too long", context: ["field": "token"])
        }
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard parts.count == 3 else {
            throw VouchError(.jwtSVIDMalformed, "a compact JWS has three parts", context: ["field": "token", "got": "\(parts.count)"])
        }
        guard let header = try? JSONDecoder().decode(Header.self, from: Data(try decode(parts[0], "header"))) else {
            throw VouchError(.jwtSVIDMalformed, "the header is not a JSON object with string alg, kid and typ", context: ["field": "header"])
        }
        // RFC 7515 4.1.11: a verifier that understands no critical extension must refuse any.
        guard header.crit == nil else {
            throw VouchError(.jwtSVIDMalformed, "the header names critical extensions this verifier does not understand", context: ["field": "crit"])
        }
        return (parts, header)
    }

    /// A NumericDate for an error's context (any JSON number: no conversion that could trap).
    private static func seconds(_ d: Double) -> String { abs(d) < 1e15 ? String(Int64(d)) : "\(d)" }

    private static func decode(_ part: String, _ field: String) throws -> [UInt8] {
        do { return try JWSSigner.base64URLDecode(part, field: field) } catch {
            throw VouchError(.jwtSVIDMalformed, "the token's \(field) is not base64url", context: ["field": field])
        }
    }
}
