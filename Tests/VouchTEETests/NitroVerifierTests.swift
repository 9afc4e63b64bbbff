import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEEWire
import VouchTestSupport

/// The corpus's Nitro samples (Tests/Fixtures/nitro, manifest.json) at their pinned times.
enum NitroSamples {
    static let dirs = ["ga-2023-debug", "beta-2022-production", "beta-2022-debug"]

    static func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: fixture("nitro/\(path)"))) }
    static func document(_ dir: String) throws -> [UInt8] { try bytes("\(dir)/attestation_doc.cbor") }

    /// Each sample's manifest entry by its folder.
    static func manifest() throws -> [String: [String: Any]] {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture("nitro/manifest.json"))) as! [String: Any]
        return Dictionary(uniqueKeysWithValues: (json["samples"] as! [[String: Any]]).map { ($0["dir"] as! String, $0) })
    }

    /// The sample's pinned time: the manifest's `now` (its first word).
    static func now(_ sample: [String: Any]) -> Date { Date.parseRFC3339(String((sample["now"] as! String).split(separator: " ")[0]))! }
}

final class NitroVerifierTests: XCTestCase {
    let verifier = try! NitroVerifier()

    func codes<C>(_ r: TEEVerification<C>) -> [String] { r.violations.map(\.code.rawValue) }

    func testTheCompiledInRootIsTheCorpusRoot() throws {
        let corpus = try Certificate(pem: String(decoding: try NitroSamples.bytes("aws_nitro_enclaves_root_g1.pem"), as: UTF8.self))
        XCTAssertEqual(try corpus.der, try NitroRoot.certificate().der)
    }

    func testEverySampleGivesTheManifestResultAtItsPinnedTime() throws {
        let manifest = try NitroSamples.manifest()
        XCTAssertEqual(Set(manifest.keys), Set(NitroSamples.dirs))
        for dir in NitroSamples.dirs {
            let sample = try XCTUnwrap(manifest[dir])
            let at = NitroSamples.now(sample)
            let doc = try NitroSamples.document(dir)
            let result = verifier.verify(document: doc, at: at)
            if let pcrs = sample["pcrs"] as? [String: String] {
                // Production: verified under the defaults, and under a policy pinning its PCRs.
                guard case let .verified(claims, warnings) = result else { return XCTFail("\(dir): \(result.violations)") }
                XCTAssertEqual(warnings, [])
                XCTAssertFalse(claims.debug)
                XCTAssertEqual(claims.moduleId, sample["module_id"] as? String)
                var policy = NitroPolicy()
                for (i, v) in pcrs { policy.pcrs[Int(i)!] = [.init(name: "pcr\(i)", value: try Hex.decode(v))] }
                guard case let .verified(pinned, _) = verifier.verify(document: doc, at: at, policy: policy) else { return XCTFail(dir) }
                XCTAssertEqual(pinned.pcrNames, ["0": "pcr0", "1": "pcr1", "2": "pcr2", "8": "pcr8"])
                for (i, v) in pcrs { XCTAssertEqual(pinned.pcrs[i], v, "\(dir) PCR\(i)") }
            } else {
                // Debug enclaves: authentic, refused by default, verified with a warning when allowed,
                // refused by any PCR-pinning policy.
                XCTAssertEqual(codes(result), ["nitro_debug_refused"], dir)
                guard case let .rejected(_, claims?) = result else { return XCTFail(dir) }
                XCTAssertTrue(claims.debug)
                XCTAssertEqual(claims.moduleId, sample["module_id"] as? String)
                var allow = NitroPolicy()
                allow.allowDebug = true
                guard case let .verified(_, warnings) = verifier.verify(document: doc, at: at, policy: allow) else { return XCTFail(dir) }
                XCTAssertEqual(warnings.map(\.code), ["nitro_debug_enclave"])
                allow.pcrs[0] = [.init(name: "prod", value: [UInt8](repeating: 0xaa, count: 48))]
                XCTAssertEqual(codes(verifier.verify(document: doc, at: at, policy: allow)), ["nitro_pcr_not_allowed"], dir)
            }
        }
    }

    func testSampleContents() throws {
        let ga = try NitroDocument(bytes: NitroSamples.document("ga-2023-debug"))
        XCTAssertEqual(ga.cabundle.count, 4)
        XCTAssertEqual(ga.nonce?.count, 256)
        XCTAssertFalse(ga.cose.tagged)
        XCTAssertNotNil(try PublicKey(spkiDER: XCTUnwrap(ga.userData)))
        let debug = try NitroDocument(bytes: NitroSamples.document("beta-2022-debug"))
        XCTAssertEqual(debug.userData, Array("hello, world!".utf8))
        XCTAssertEqual(debug.publicKey, Array("my super secret key".utf8))
        // The base64 form is the same document.
        let b64 = String(decoding: try NitroSamples.bytes("ga-2023-debug/attestation_doc.b64"), as: UTF8.self).filter { !$0.isWhitespace }
        XCTAssertEqual([UInt8](try XCTUnwrap(Data(base64Encoded: b64))), try NitroSamples.document("ga-2023-debug"))
    }

    func testNegativeRecipesAndBindings() throws {
        let manifest = try NitroSamples.manifest()
        let dir = "beta-2022-debug"
        let at = NitroSamples.now(manifest[dir]!)
        let doc = try NitroSamples.document(dir)
        var allow = NitroPolicy()
        allow.allowDebug = true
        // A day later the leaf has expired (the chain step; no claims).
        let later = verifier.verify(document: doc, at: at.addingTimeInterval(86_400), policy: allow)
        XCTAssertEqual(codes(later), ["nitro_chain_invalid"])
        guard case .rejected(_, nil) = later else { return XCTFail("claims from an unverified document") }
        // Within the leaf's life but past maxAge: stale, with claims.
        XCTAssertEqual(codes(verifier.verify(document: doc, at: at.addingTimeInterval(600), policy: allow)), ["nitro_document_stale"])
        // A timestamp after the check time beyond the clock skew (the leaf was issued 15 s before it).
        var skew = allow
        skew.clockSkew = 5
        XCTAssertEqual(codes(verifier.verify(document: doc, at: at.addingTimeInterval(-10), policy: skew)), ["nitro_document_stale"])
        XCTAssertTrue(verifier.verify(document: doc, at: at.addingTimeInterval(-4), policy: skew).isVerified)
        // Bindings: the right bytes verify, others (or a missing field) are refused, each by its code.
        let right = NitroExpectations(publicKey: Array("my super secret key".utf8), userData: Array("hello, world!".utf8))
        XCTAssertTrue(verifier.verify(document: doc, at: at, policy: allow, expectations: right).isVerified)
        let wrong = NitroExpectations(nonce: [1, 2, 3], publicKey: Array("another key".utf8), userData: Array("hello".utf8))
        XCTAssertEqual(codes(verifier.verify(document: doc, at: at, policy: allow, expectations: wrong)),
                       ["nitro_nonce_mismatch", "nitro_public_key_mismatch", "nitro_user_data_mismatch"])
        // A pinned PCR with another value fails.
        var pinned = allow
        pinned.pcrs[4] = [.init(name: "x", value: [UInt8](repeating: 1, count: 48))]
        XCTAssertEqual(codes(verifier.verify(document: doc, at: at, policy: pinned)), ["nitro_pcr_not_allowed"])
    }

    func testAnotherRootIsRefusedAndAFlippedPayloadFailsTheSignature() throws {
        let manifest = try NitroSamples.manifest()
        let dir = "beta-2022-production"
        let at = NitroSamples.now(manifest[dir]!)
        let doc = try NitroSamples.document(dir)
        // A verifier pinned to another root refuses the bundle's first certificate.
        let other = try NitroVerifier(root: try Certificate(pem: IntelSGXRoot.pem))
        XCTAssertEqual(codes(other.verify(document: doc, at: at)), ["nitro_root_untrusted"])
        // A byte of module_id's text flipped inside the payload: parses, signature fails.
        let needle = Array("i-020b6af9246d90e92".utf8)
        let at0 = try XCTUnwrap((0...(doc.count - needle.count)).first { Array(doc[$0..<$0 + needle.count]) == needle })
        var flipped = doc
        flipped[at0 + 2] ^= 0x01
        XCTAssertEqual(codes(verifier.verify(document: flipped, at: at)), ["nitro_signature_invalid"])
        // The same document tagged 18 verifies.
        guard case let .verified(claims, _) = verifier.verify(document: [0xd2] + doc, at: at) else { return XCTFail("tagged") }
        XCTAssertTrue(claims.coseTagged)
    }
}
