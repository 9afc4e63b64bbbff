import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchModelSigning
import VouchPolicy
import VouchTestSupport
@testable import VouchAttestation

/// Sigstore keyless model signatures, offline: a real bundle signed by model-signing v1.1.0 with
/// Sigstore's public-good Fulcio and Rekor (Tests/Fixtures/model-signing/PROVENANCE.md), verified
/// against the public-good trusted root; every tampering refused with its code.
final class SigstoreKeylessTests: XCTestCase {
    static let identity = "stefanb@us.ibm.com"
    static let issuer = "https://sigstore.verify.ibm.com/oauth2"
    static let integratedTime = Date(timeIntervalSince1970: 1_760_062_340)

    func bundleBytes() throws -> [UInt8] { [UInt8](try Data(contentsOf: fixture("model-signing/v1.1.0-sigstore/model.sig"))) }
    func rootBytes() throws -> [UInt8] { [UInt8](try Data(contentsOf: fixture("model-signing/sigstore-trusted-root.json"))) }

    func verify(_ bundle: [UInt8], root: [UInt8]? = nil, identity: String = identity, issuer: String = issuer) throws -> SigstoreKeylessVerifier.Result {
        SigstoreKeylessVerifier.verify(bundle: try SigstoreBundle(json: bundle), trustedRoot: try root ?? rootBytes(), identity: identity, issuer: issuer)
    }

    func assertRejected(_ result: SigstoreKeylessVerifier.Result, _ code: ErrorCode, file: StaticString = #filePath, line: UInt = #line) {
        switch result {
        case .verified: XCTFail("verified; expected \(code)", file: file, line: line)
        case let .rejected(got, message): XCTAssertEqual(got, code, message, file: file, line: line)
        }
    }

    /// The bundle (or trusted root) as a JSON object, changed by `edit`, encoded again.
    func edited(_ bytes: [UInt8], _ edit: (inout [String: Any]) throws -> Void) throws -> [UInt8] {
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        try edit(&object)
        return [UInt8](try JSONSerialization.data(withJSONObject: object))
    }

    /// The bundle with its one log entry changed by `edit`.
    func editedEntry(_ edit: (inout [String: Any]) throws -> Void) throws -> [UInt8] {
        try edited(bundleBytes()) { b in
            var material = b["verificationMaterial"] as! [String: Any]
            var entries = material["tlogEntries"] as! [[String: Any]]
            try edit(&entries[0])
            material["tlogEntries"] = entries
            b["verificationMaterial"] = material
        }
    }

    /// Base64 text with one bit of the byte at `index` (negative: from the end) flipped.
    func flipped(_ base64: String, at index: Int) throws -> String {
        var b = [UInt8](try XCTUnwrap(Data(base64Encoded: base64)))
        b[index >= 0 ? index : b.count + index] ^= 0x01
        return Data(b).base64EncodedString()
    }

    // MARK: the fixture verifies

    func testFixtureVerifiesKeylessly() throws {
        guard case let .verified(claims) = try verify(bundleBytes()) else { return XCTFail("\(try verify(bundleBytes()))") }
        XCTAssertEqual(claims.integratedTime, Self.integratedTime)
        XCTAssertEqual(claims.logIndex, 598_151_086)
        XCTAssertEqual(claims.certificate.emailSANs, [Self.identity])
        XCTAssertEqual(SigstoreKeylessVerifier.oidcIssuer(claims.certificate), Self.issuer)
    }

    func testReencodedBundleStillVerifies() throws {
        // The tampering below re-encodes the JSON; unchanged, that alone must not matter.
        guard case .verified = try verify(try edited(bundleBytes()) { _ in }) else { return XCTFail("re-encoding broke the bundle") }
    }

    func testModelSignatureVerifierAcceptsTheKeylessPublisher() throws {
        let files = try ["signme-1", "signme-2"].map { name in
            ModelFileCheck.Measured(name: name, sha256: Hex.encode(Crypto.sha256([UInt8](try Data(contentsOf: fixture("model-signing/v1.1.0-sigstore/\(name)"))))))
        }
        XCTAssertEqual(files.map(\.sha256), ["f6310066c7320497ea554260c32c43660bff648cb2a61194832cc086077085e1",
                                             "32dcb1f8e1ae52d5963e56a6ba06ab58b424c15ed2a6b70d2feca1d089370028"])
        let publisher = ModelPublisher(name: "ibm", models: ["v1.1.0-sigstore"],
                                       trust: .sigstore(trustedRoot: try rootBytes(), identity: Self.identity, issuer: Self.issuer))
        let result = ModelSignatureVerifier.verify(bundle: try bundleBytes(), publishers: [publisher], expectedName: "v1.1.0-sigstore", files: files)
        guard case let .verified(v) = result else { return XCTFail("\(result.violations)") }
        XCTAssertEqual(v.signedAt, Self.integratedTime)
        XCTAssertEqual(v.manifest.modelName, "v1.1.0-sigstore")
        XCTAssertEqual(v.publisher.name, "ibm")
        let claims = v.claims(directory: "/models/v1.1.0-sigstore")
        XCTAssertEqual(claims.signedAt, Self.integratedTime.iso8601)
        XCTAssertEqual(claims.signerKind, "sigstore")

        let otherIdentity = ModelPublisher(name: "ibm", models: ["*"], trust: .sigstore(trustedRoot: try rootBytes(), identity: "someone@example.com", issuer: Self.issuer))
        XCTAssertEqual(ModelSignatureVerifier.verify(bundle: try bundleBytes(), publishers: [otherIdentity], files: files).violations.map(\.code), [.modelSignerUntrusted])
        var modified = files
        modified[1] = ModelFileCheck.Measured(name: "signme-2", sha256: files[0].sha256)
        XCTAssertEqual(ModelSignatureVerifier.verify(bundle: try bundleBytes(), publishers: [publisher], files: modified).violations.map(\.code), [.modelFileModified])
    }

    // MARK: the signer is not the trusted one

    func testAnotherIdentityIsUntrusted() throws {
        assertRejected(try verify(bundleBytes(), identity: "stefanb@example.com"), .modelSignerUntrusted)
    }

    func testAnotherIssuerIsUntrusted() throws {
        assertRejected(try verify(bundleBytes(), issuer: "https://accounts.google.com"), .modelSignerUntrusted)
    }

    func testTrustedRootWithoutFulcioIsUntrusted() throws {
        let root = try edited(rootBytes()) { $0["certificateAuthorities"] = [] }
        assertRejected(try verify(bundleBytes(), root: root), .modelSignerUntrusted)
    }

    func testFulcioCANotValidAtTheIntegratedTimeIsUntrusted() throws {
        let root = try edited(rootBytes()) { r in
            r["certificateAuthorities"] = (r["certificateAuthorities"] as! [[String: Any]]).map { ca in
                var ca = ca
                ca["validFor"] = ["start": "2022-04-13T20:06:15Z", "end": "2025-01-01T00:00:00Z"]
                return ca
            }
        }
        assertRejected(try verify(bundleBytes(), root: root), .modelSignerUntrusted)
    }

    func testAnotherFulcioCAIsUntrusted() throws {
        // Only the 2021 Fulcio root, its validity stretched to cover the signing time: the
        // certificate does not chain to it.
        let root = try edited(rootBytes()) { r in
            var ca = (r["certificateAuthorities"] as! [[String: Any]])[0]
            ca["validFor"] = ["start": "2021-03-07T03:20:29Z"]
            r["certificateAuthorities"] = [ca]
        }
        assertRejected(try verify(bundleBytes(), root: root), .modelSignerUntrusted)
    }

    func testUnparsableTrustedRootIsUntrusted() throws {
        assertRejected(try verify(bundleBytes(), root: Array("{}".utf8)), .modelSignerUntrusted)
    }

    // MARK: the signature, its log entry or its times do not verify

    func testTrustedRootWithoutTheRekorKeyIsInvalid() throws {
        let root = try edited(rootBytes()) { r in
            r["tlogs"] = (r["tlogs"] as! [[String: Any]]).filter { ($0["baseUrl"] as? String) != "https://rekor.sigstore.dev" }
        }
        assertRejected(try verify(bundleBytes(), root: root), .modelSignatureInvalid)
    }

    func testTrustedRootWithoutTheCTLogIsInvalid() throws {
        let root = try edited(rootBytes()) { $0["ctlogs"] = [] }
        assertRejected(try verify(bundleBytes(), root: root), .modelSignatureInvalid)
    }

    func testFlippedSignedEntryTimestampIsInvalid() throws {
        let bundle = try editedEntry { e in
            let set = (e["inclusionPromise"] as! [String: Any])["signedEntryTimestamp"] as! String
            e["inclusionPromise"] = ["signedEntryTimestamp": try flipped(set, at: -3)]
        }
        assertRejected(try verify(bundle), .modelSignatureInvalid)
    }

    func testMissingSignedEntryTimestampIsInvalid() throws {
        assertRejected(try verify(try editedEntry { $0["inclusionPromise"] = nil }), .modelSignatureInvalid)
    }

    func testTamperedIntegratedTimeIsInvalid() throws {
        // A time outside the certificate's ten minutes: the SET no longer verifies.
        assertRejected(try verify(try editedEntry { $0["integratedTime"] = "1760072340" }), .modelSignatureInvalid)
    }

    func testFlippedInclusionProofHashIsInvalid() throws {
        let bundle = try editedEntry { e in
            var proof = e["inclusionProof"] as! [String: Any]
            var hashes = proof["hashes"] as! [String]
            hashes[5] = try flipped(hashes[5], at: 0)
            proof["hashes"] = hashes
            e["inclusionProof"] = proof
        }
        assertRejected(try verify(bundle), .modelSignatureInvalid)
    }

    func testFlippedCheckpointSignatureIsInvalid() throws {
        let bundle = try editedEntry { e in
            var proof = e["inclusionProof"] as! [String: Any]
            let note = (proof["checkpoint"] as! [String: Any])["envelope"] as! String
            var lines = note.components(separatedBy: "\n")
            let sigLine = lines.firstIndex { $0.hasPrefix("\u{2014} ") }!
            var fields = lines[sigLine].components(separatedBy: " ")
            fields[2] = try flipped(fields[2], at: -2)
            lines[sigLine] = fields.joined(separator: " ")
            proof["checkpoint"] = ["envelope": lines.joined(separator: "\n")]
            e["inclusionProof"] = proof
        }
        assertRejected(try verify(bundle), .modelSignatureInvalid)
    }

    func testCheckpointOfAnotherTreeIsInvalid() throws {
        // The proof's tree size changed: the proof or the checkpoint's size no longer agree.
        let bundle = try editedEntry { e in
            var proof = e["inclusionProof"] as! [String: Any]
            proof["treeSize"] = "476246826"
            e["inclusionProof"] = proof
        }
        assertRejected(try verify(bundle), .modelSignatureInvalid)
    }

    func testTamperedPayloadIsInvalid() throws {
        let bundle = try edited(bundleBytes()) { b in
            var envelope = b["dsseEnvelope"] as! [String: Any]
            let payload = [UInt8](Data(base64Encoded: envelope["payload"] as! String)!)
            let text = String(decoding: payload, as: UTF8.self).replacingOccurrences(of: "signme-2", with: "signme-3")
            envelope["payload"] = Data(text.utf8).base64EncodedString()
            b["dsseEnvelope"] = envelope
        }
        assertRejected(try verify(bundle), .modelSignatureInvalid)
    }

    func testTamperedBodyIsInvalid() throws {
        // The logged body is signed by the SET: any change to it fails there first.
        let bundle = try editedEntry { e in
            let body = String(decoding: Data(base64Encoded: e["canonicalizedBody"] as! String)!, as: UTF8.self)
            e["canonicalizedBody"] = Data(body.replacingOccurrences(of: "1dc62239", with: "1dc62238").utf8).base64EncodedString()
        }
        assertRejected(try verify(bundle), .modelSignatureInvalid)
    }

    func testBodyThatDoesNotBindTheBundleIsInvalid() throws {
        // Step 5 on its own (a body with a valid SET but another payload hash needs Rekor's key).
        let bundle = try SigstoreBundle(json: try bundleBytes())
        guard case let .certificate(leaf) = bundle.material else { return XCTFail("not a keyless bundle") }
        let body = try XCTUnwrap(SigstoreLogEntry.entries(bundle: bundle.raw).first).canonicalizedBody
        XCTAssertNoThrow(try SigstoreKeylessVerifier.checkBody(body, bundle: bundle, leafDER: leaf))
        let text = String(decoding: body, as: UTF8.self)
        for (from, to) in [("1dc62239e6e2776a", "0000000000000000"),            // payloadHash
                           ("\"algorithm\":\"sha256\",\"value\":\"1dc6", "\"algorithm\":\"sha512\",\"value\":\"1dc6"),
                           ("MEUCIBjOA8VW", "MEUCIBjOA8VX")] {                // the signature
            XCTAssertTrue(text.contains(from), from)
            XCTAssertThrowsError(try SigstoreKeylessVerifier.checkBody(Array(text.replacingOccurrences(of: from, with: to).utf8), bundle: bundle, leafDER: leaf)) {
                XCTAssertEqual(($0 as? SigstoreKeylessVerifier.Refusal)?.code, .modelSignatureInvalid, "\(from)")
            }
        }
        // Another certificate as the verifier.
        var other = leaf
        other[other.count - 5] ^= 0x01
        XCTAssertThrowsError(try SigstoreKeylessVerifier.checkBody(body, bundle: bundle, leafDER: other))
    }

    func testTwoLogEntriesAreInvalid() throws {
        let bundle = try edited(bundleBytes()) { b in
            var material = b["verificationMaterial"] as! [String: Any]
            let entries = material["tlogEntries"] as! [[String: Any]]
            material["tlogEntries"] = entries + entries
            b["verificationMaterial"] = material
        }
        assertRejected(try verify(bundle), .modelSignatureInvalid)
    }

    func testAnotherEntryKindIsInvalid() throws {
        assertRejected(try verify(try editedEntry { $0["kindVersion"] = ["kind": "hashedrekord", "version": "0.0.1"] }), .modelSignatureInvalid)
    }
}
