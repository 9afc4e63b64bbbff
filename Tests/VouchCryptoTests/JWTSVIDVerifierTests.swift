import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchTPMWire

/// `JWTSVIDVerifier`: a good token verifies; each refusal has its own code, in the order the
/// checks run; `keys(jwks:)` keeps JWT-SVID keys only. Times are fixed (no wall clock).
final class JWTSVIDVerifierTests: XCTestCase {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    var t: Int { Int(now.timeIntervalSince1970) }
    let key = try! PrivateKey.generate()
    lazy var signer = try! JWSSigner(key: key, use: "jwt-svid")
    var keys: [String: PublicKey] { [signer.kid: try! signer.jwk.publicKey()] }

    func claims(_ change: (inout [String: Any]) -> Void = { _ in }) -> [UInt8] {
        var c: [String: Any] = ["sub": "spiffe://example.org/host/1/agent/a", "aud": ["rp"], "iat": t, "exp": t + 300, "jti": "00"]
        change(&c)
        return [UInt8](try! JSONSerialization.data(withJSONObject: c, options: [.sortedKeys]))
    }

    func token(_ change: (inout [String: Any]) -> Void = { _ in }) throws -> String { try signer.sign(payload: claims(change)) }

    /// A token with this header and the default claims, signed as given (default: by `key`, ES256, r‖s).
    func token(header: [String: Any], signature: [UInt8]? = nil) throws -> String {
        let h = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        let input = JWSSigner.base64URL([UInt8](h)) + "." + JWSSigner.base64URL(claims())
        if let signature { return input + "." + JWSSigner.base64URL(signature) }
        var der = DER.Reader(try key.sign(Array(input.utf8), hash: .sha256))
        var seq = try der.sequence("ECDSA-Sig-Value")
        func fixed(_ i: [UInt8]) -> [UInt8] { let v = Array(i.drop { $0 == 0 }); return [UInt8](repeating: 0, count: 32 - v.count) + v }
        return input + "." + JWSSigner.base64URL(fixed(try seq.read(DER.integerTag, "r")) + fixed(try seq.read(DER.integerTag, "s")))
    }

    func verify(_ token: String, audience: String = "rp", trustDomain: String = "example.org", at: Date? = nil,
                maxLifetime: TimeInterval = 3600) throws -> (spiffeID: String, claims: [UInt8]) {
        try JWTSVIDVerifier.verify(token: token, audience: audience, keys: keys, trustDomain: trustDomain, now: at ?? now, maxLifetime: maxLifetime)
    }

    func assertRefused(_ token: @autoclosure () throws -> String, _ code: ErrorCode, audience: String = "rp", trustDomain: String = "example.org",
                       at: Date? = nil, maxLifetime: TimeInterval = 3600, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try verify(try token(), audience: audience, trustDomain: trustDomain, at: at, maxLifetime: maxLifetime), what,
                             file: file, line: line) {
            XCTAssertEqual(($0 as? VouchError)?.code, code, "\(what): \($0)", file: file, line: line)
        }
    }

    func testAGoodTokenVerifies() throws {
        let one = try token { $0["aud"] = "rp" }   // aud may be one string
        let (id, claimsJSON) = try verify(one)
        XCTAssertEqual(id, "spiffe://example.org/host/1/agent/a")
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(claimsJSON)) as? [String: Any])?["jti"] as? String, "00")
        XCTAssertNoThrow(try verify(try self.token { $0["aud"] = ["other", "rp"] }), "one of several audiences")
        XCTAssertNoThrow(try verify(try self.token { $0["iat"] = nil }), "iat is optional")
        XCTAssertNoThrow(try verify(try self.token(), at: now.addingTimeInterval(299)), "just before exp")
        XCTAssertNoThrow(try verify(try token(header: ["alg": "ES256", "kid": signer.kid])), "no typ")
        XCTAssertNoThrow(try verify(try token(header: ["alg": "ES256", "kid": signer.kid, "typ": "JOSE"])), "typ JOSE")
    }

    func testTheAlgorithmMustBeES256() throws {
        assertRefused(try token(header: ["alg": "none", "kid": signer.kid, "typ": "JWT"], signature: []), .jwtSVIDAlgorithmUnsupported, "alg none")
        // HS256 with the public key's bytes as the HMAC secret: the classic confusion.
        let h = try JSONSerialization.data(withJSONObject: ["alg": "HS256", "kid": signer.kid, "typ": "JWT"], options: [.sortedKeys])
        let input = JWSSigner.base64URL([UInt8](h)) + "." + JWSSigner.base64URL(claims())
        let mac = Crypto.hmac(.sha256, key: Array(signer.jwk.x.utf8), Array(input.utf8))
        assertRefused(input + "." + JWSSigner.base64URL(mac), .jwtSVIDAlgorithmUnsupported, "HS256")
        assertRefused(try token(header: ["alg": "RS256", "kid": signer.kid]), .jwtSVIDAlgorithmUnsupported, "RS256")
        assertRefused(try token(header: ["kid": signer.kid]), .jwtSVIDAlgorithmUnsupported, "no alg")
    }

    func testTheKidMustNameATrustedKey() throws {
        assertRefused(try token(header: ["alg": "ES256", "typ": "JWT"]), .jwtSVIDKeyUnknown, "no kid")
        let other = try JWSSigner(key: try PrivateKey.generate(), use: "jwt-svid")
        assertRefused(try other.sign(payload: claims()), .jwtSVIDKeyUnknown, "another key's kid")
        // A P-384 key under the kid: not an ES256 key.
        let p384 = try PrivateKey.generate(.p384).publicKey
        XCTAssertThrowsError(try JWTSVIDVerifier.verify(token: try token(), audience: "rp", keys: [signer.kid: p384], trustDomain: "example.org", now: now)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .jwtSVIDKeyUnknown)
        }
    }

    func testTheTypeIsJWTOrJOSE() throws {
        assertRefused(try token(header: ["alg": "ES256", "kid": signer.kid, "typ": "at+jwt"]), .jwtSVIDTypeInvalid, "typ at+jwt")
    }

    func testAFlippedSignatureByteIsRefused() throws {
        let good = try token()
        var sig = try JWSSigner.base64URLDecode(String(good.split(separator: ".")[2]), field: "s")
        sig[10] ^= 0x01
        let parts = good.split(separator: ".").map(String.init)
        assertRefused(parts[0] + "." + parts[1] + "." + JWSSigner.base64URL(sig), .jwtSVIDSignatureInvalid, "a flipped signature byte")
        assertRefused(parts[0] + "." + parts[1] + "." + JWSSigner.base64URL(Array(sig.prefix(63))), .jwtSVIDSignatureInvalid, "63 bytes")
        // Another payload under the same signature.
        assertRefused(parts[0] + "." + JWSSigner.base64URL(claims { $0["sub"] = "spiffe://example.org/x" }) + "." + parts[2],
                      .jwtSVIDSignatureInvalid, "a changed payload")
    }

    func testMalformedTokensAreRefused() throws {
        let parts = try token().split(separator: ".").map(String.init)
        for (what, t) in [("two parts", parts[0] + "." + parts[1]), ("four parts", parts.joined(separator: ".") + ".x"),
                          ("padding", parts[0] + "=." + parts[1] + "." + parts[2]), ("not JSON", JWSSigner.base64URL(Array("nope".utf8)) + "." + parts[1] + "." + parts[2]),
                          ("too long", String(repeating: "a", count: 20_000))] {
            assertRefused(t, .jwtSVIDMalformed, what)
        }
        assertRefused(try token(header: ["alg": "ES256", "kid": signer.kid, "crit": ["exp"]]), .jwtSVIDMalformed, "crit")
    }

    func testTheClaimsAreChecked() throws {
        assertRefused(try signer.sign(payload: Array("[1]".utf8)), .jwtSVIDClaimsInvalid, "an array")
        assertRefused(try token { $0["exp"] = nil }, .jwtSVIDClaimsInvalid, "no exp")
        assertRefused(try token { $0["exp"] = "\(self.t + 300)" }, .jwtSVIDClaimsInvalid, "exp a string")
        assertRefused(try token { $0["exp"] = true }, .jwtSVIDClaimsInvalid, "exp a boolean")
        assertRefused(try token { $0["aud"] = 7 }, .jwtSVIDClaimsInvalid, "aud a number")

        assertRefused(try token { $0["sub"] = nil }, .jwtSVIDSubjectInvalid, "no sub")
        assertRefused(try token(), .jwtSVIDSubjectInvalid, trustDomain: "other.org", "a sub in another trust domain")
        assertRefused(try token { $0["sub"] = "spiffe://other.org/host/1/agent/a" }, .jwtSVIDSubjectInvalid, "a sub in another trust domain")
        assertRefused(try token { $0["sub"] = "spiffe://example.org" }, .jwtSVIDSubjectInvalid, "the trust domain itself")
        assertRefused(try token { $0["sub"] = "spiffe://example.org/a/../b" }, .jwtSVIDSubjectInvalid, "a dot-dot segment")
        assertRefused(try token { $0["sub"] = "https://example.org/a" }, .jwtSVIDSubjectInvalid, "not a SPIFFE ID")

        assertRefused(try token(), .jwtSVIDAudienceMismatch, audience: "someone-else", "another audience")
        assertRefused(try token { $0["aud"] = nil }, .jwtSVIDAudienceMismatch, "no aud")

        assertRefused(try token(), .jwtSVIDExpired, at: now.addingTimeInterval(300), "at exp")
        assertRefused(try token { $0["exp"] = 1e300 }, .jwtSVIDLifetimeTooLong, "an exp centuries away")
        assertRefused(try token { $0["iat"] = self.t + 301; $0["exp"] = self.t + 600 }, .jwtSVIDNotYetValid, "iat beyond the skew")
        XCTAssertNoThrow(try verify(try token { $0["iat"] = self.t + 300; $0["exp"] = self.t + 600 }), "iat within the skew")
        assertRefused(try token { $0["nbf"] = self.t + 400 }, .jwtSVIDNotYetValid, "nbf beyond the skew")
        assertRefused(try token { $0["exp"] = self.t + 3601 }, .jwtSVIDLifetimeTooLong, "over an hour")
        assertRefused(try token(), .jwtSVIDLifetimeTooLong, maxLifetime: 299, "over the caller's maximum")
    }

    func testKeySetsKeepOnlyJWTSVIDKeys() throws {
        let jwt = signer.jwk
        var ear = try JWK(publicKey: try PrivateKey.generate().publicKey, use: "sig", alg: "ES256")
        ear.kid = "ear"
        var root = try JWK(publicKey: try PrivateKey.generate().publicKey, use: "x509-svid")
        root.kid = nil
        var p384 = try JWK(publicKey: try PrivateKey.generate(.p384).publicKey, use: "jwt-svid")
        p384.kid = "p384"
        var bare = try JWK(publicKey: try PrivateKey.generate().publicKey)
        bare.kid = "bare"   // no use, no alg: kept
        let set = encode(JWKSet(keys: [jwt, ear, root, p384, bare]))
        let keys = try JWTSVIDVerifier.keys(jwks: set)
        XCTAssertEqual(Set(keys.keys), [signer.kid, "bare"])
        XCTAssertNoThrow(try JWTSVIDVerifier.verify(token: try token(), audience: "rp", keys: keys, trustDomain: "example.org", now: now))

        // An RSA member is skipped, not an error; two keys under one kid are.
        let withRSA = #"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"},"# + String(decoding: encode(jwt), as: UTF8.self) + "]}"
        XCTAssertEqual(Set(try JWTSVIDVerifier.keys(jwks: Array(withRSA.utf8)).keys), [signer.kid])
        var twin = try JWK(publicKey: try PrivateKey.generate().publicKey, use: "jwt-svid")
        twin.kid = signer.kid
        for (what, bytes) in [("two keys, one kid", encode(JWKSet(keys: [jwt, twin]))), ("no JWT key", encode(JWKSet(keys: [ear, root]))),
                              ("not a set", Array(#"{"kty":"EC"}"#.utf8)), ("too large", [UInt8](repeating: 0x20, count: 70_000))] {
            XCTAssertThrowsError(try JWTSVIDVerifier.keys(jwks: bytes), what) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue, what) }
        }
    }

    func encode<T: Encodable>(_ v: T) -> [UInt8] { [UInt8](try! JSONEncoder().encode(v)) }

    /// A signer without a chain: no x5c in its tokens, its JWK has the use it was given.
    func testASignerWithoutAChainSendsNoX5c() throws {
        let header = try JSONSerialization.jsonObject(with: Data(try JWSSigner.base64URLDecode(String(try token().split(separator: ".")[0]), field: "h"))) as? [String: Any]
        XCTAssertEqual(Set(header?.keys.map { $0 } ?? []), ["alg", "kid", "typ"])
        XCTAssertEqual(signer.jwk.use, "jwt-svid")
        XCTAssertNil(signer.jwk.x5c)
        XCTAssertEqual(signer.jwk.alg, "ES256")
    }
}
