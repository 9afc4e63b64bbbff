import Foundation
import XCTest
import VouchCore
import VouchCrypto

/// Compact JWS verified by `kid` in a JWK set: the header names the key by its RFC 7638
/// thumbprint, the set holds it, and nothing else verifies.
final class JWSKeySetTests: XCTestCase {
    func signer() throws -> JWSSigner {
        let now = Date()
        let ca = try CertificateAuthority.create(commonName: "Broker CA", key: try PrivateKey.generate(), notBefore: now, notAfter: now.addingTimeInterval(3600))
        let key = try PrivateKey.generate()
        let cert = try ca.issue(publicKey: try key.publicKey, profile: LeafProfile(subjectCommonName: "vouchd", uriSANs: ["spiffe://t/vouchd"], notBefore: now,
                                                                                     notAfter: now.addingTimeInterval(600), usage: .brokerClient), serial: nil)
        return try JWSSigner(key: key, chain: [cert, ca.certificate])
    }

    func header(_ token: String) throws -> [String: Any] {
        let bytes = try JWSSigner.base64URLDecode(String(token.split(separator: ".")[0]), field: "header")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
    }

    /// base64url only: the standard alphabet's + and / (the same bytes spelt another way) and
    /// padding are refused.
    func testBase64URLIsReadInOneSpellingOnly() throws {
        XCTAssertEqual(try JWSSigner.base64URLDecode("-_8", field: "t"), [0xfb, 0xff])
        for s in ["+_8", "-/8", "-_8="] {
            XCTAssertThrowsError(try JWSSigner.base64URLDecode(s, field: "t"), s) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue) }
        }
    }

    func testTheKidIsTheThumbprintAndTheSetVerifies() throws {
        let s = try signer()
        let token = try s.sign(payload: Array(#"{"a":1}"#.utf8))
        XCTAssertEqual(try header(token)["kid"] as? String, s.kid)
        XCTAssertEqual(s.jwk.kid, s.kid)
        XCTAssertEqual(s.kid, s.jwk.thumbprint)
        // The thumbprint is SHA-256 over exactly {"crv","kty","x","y"}, in that order, no spaces.
        let canonical = #"{"crv":"P-256","kty":"EC","x":"\#(s.jwk.x)","y":"\#(s.jwk.y)"}"#
        XCTAssertEqual(s.kid, JWSSigner.base64URL(Crypto.sha256(Array(canonical.utf8))))
        XCTAssertEqual(try JWSSigner.verify(token, keySet: JWKSet(keys: [s.jwk])), Array(#"{"a":1}"#.utf8))
        // The set round-trips through JSON.
        let set = try JSONDecoder().decode(JWKSet.self, from: try JSONEncoder().encode(JWKSet(keys: [s.jwk])))
        XCTAssertEqual(try JWSSigner.verify(token, keySet: set), Array(#"{"a":1}"#.utf8))
    }

    func testASetWithKeysOfOtherTypesStillYieldsItsECKeys() throws {
        let s = try signer()
        let token = try s.sign(payload: Array(#"{"a":1}"#.utf8))
        let ec = String(decoding: try JSONEncoder().encode(s.jwk), as: UTF8.self)
        // An RSA key, an OKP key and a member that is not an object, around ours.
        let json = #"{"keys":[{"kty":"RSA","n":"sXch","e":"AQAB","kid":"rsa-1"},{"kty":"OKP","crv":"Ed25519","x":"11qY"},"# + ec + #",42]}"#
        let set = try JSONDecoder().decode(JWKSet.self, from: Data(json.utf8))
        XCTAssertEqual(set.keys, [s.jwk])
        XCTAssertEqual(try JWSSigner.verify(token, keySet: set), Array(#"{"a":1}"#.utf8))
        // Without a keys array it is not a set.
        XCTAssertThrowsError(try JSONDecoder().decode(JWKSet.self, from: Data(#"{"kty":"EC"}"#.utf8)))
        XCTAssertThrowsError(try JSONDecoder().decode(JWKSet.self, from: Data(#"{"keys":{}}"#.utf8)))
    }

    func testOtherKeysTamperingAndBadKeysAreRefused() throws {
        let s = try signer(), other = try signer()
        let token = try s.sign(payload: Array(#"{"a":1}"#.utf8))
        func code(_ set: JWKSet, _ t: String? = nil) -> ErrorCode? {
            do { _ = try JWSSigner.verify(t ?? token, keySet: set); return nil } catch let e as VouchError { return e.code } catch { return nil }
        }
        XCTAssertEqual(code(JWKSet(keys: [other.jwk])), .signerMismatch, "no key with this kid")
        XCTAssertEqual(code(JWKSet(keys: [])), .signerMismatch)
        XCTAssertEqual(code(JWKSet(keys: [s.jwk, s.jwk])), .signerMismatch, "two keys with one kid: ambiguous")
        var impostor = other.jwk
        impostor.kid = s.kid
        XCTAssertEqual(code(JWKSet(keys: [impostor])), .signatureInvalid, "another key under this kid")
        var parts = token.split(separator: ".").map(String.init)
        parts[1] = JWSSigner.base64URL(Array(#"{"a":2}"#.utf8))
        XCTAssertEqual(code(JWKSet(keys: [s.jwk]), parts.joined(separator: ".")), .signatureInvalid, "tampered")
        var offCurve = s.jwk
        offCurve.y = offCurve.x
        XCTAssertNotNil(code(JWKSet(keys: [offCurve])), "a point off the curve")
        var wrongAlg = s.jwk
        wrongAlg.alg = "RS256"
        XCTAssertEqual(code(JWKSet(keys: [wrongAlg])), .signerMismatch)
        // A token without a kid is refused by this path (the x5c path still takes it).
        let noKid = JWSSigner.base64URL(Array(#"{"alg":"ES256"}"#.utf8)) + "." + parts[1] + "." + parts[2]
        XCTAssertEqual(code(JWKSet(keys: [s.jwk]), noKid), .invalidValue)
    }

    /// RFC 7515 4.1.11: a header with `crit` names extensions this verifier does not understand,
    /// so the token is refused on both paths, before anything else about it is believed.
    func testCriticalHeaderExtensionsAreRefused() throws {
        let s = try signer()
        let now = Date()
        let token = try s.sign(payload: Array(#"{"a":1}"#.utf8))
        var h = try header(token)
        h["crit"] = ["exp"]
        let headerB64 = JWSSigner.base64URL([UInt8](try JSONSerialization.data(withJSONObject: h, options: [.sortedKeys])))
        let parts = token.split(separator: ".").map(String.init)
        let forged = headerB64 + "." + parts[1] + "." + parts[2]
        XCTAssertThrowsError(try JWSSigner.verify(forged, keySet: JWKSet(keys: [s.jwk]))) { XCTAssertEqual(($0 as? VouchError)?.code, .unsupported) }
        XCTAssertThrowsError(try JWSSigner.verify(forged, anchors: [], signer: "spiffe://t/vouchd", at: now)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .unsupported)
        }
    }
}
