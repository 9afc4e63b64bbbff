import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchModelSigning
import VouchTestSupport
import VouchAttestation

/// The keyless verifier's parsers (trusted root, log entries, checkpoint, Rekor body, SCT list)
/// on the public-good fixtures, then truncated, corrupted and garbage input: each refuses with a
/// VouchError and never crashes, and a corrupted bundle that still verifies says what the original
/// says.
final class SigstoreParsingFuzzTests: XCTestCase {
    func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: fixture(path))) }

    func testTrustedRootParses() throws {
        let root = try SigstoreTrustedRoot(json: bytes("model-signing/sigstore-trusted-root.json"))
        XCTAssertEqual(root.mediaType, "application/vnd.dev.sigstore.trustedroot+json;version=0.1")
        XCTAssertEqual(root.tlogs.map(\.baseURL), ["https://rekor.sigstore.dev", "https://log2025-1.rekor.sigstore.dev"])
        XCTAssertEqual(root.ctlogs.count, 2)
        XCTAssertEqual(root.certificateAuthorities.map(\.certificates.count), [1, 2])
        XCTAssertEqual(root.timestampAuthorityCount, 1)
        XCTAssertEqual(root.ctlogs[0].validFor.end, Date.parseRFC3339("2022-10-31T23:59:59.999Z"))
        // Rekor v1's declared log ID is the SHA-256 of its key, which is how an entry finds it.
        let rekor = root.tlogs[0]
        XCTAssertEqual(Crypto.sha256(rekor.publicKey), rekor.logID)
        XCTAssertEqual(root.rekorLog(id: rekor.logID, sha256: { Crypto.sha256($0) })?.baseURL, "https://rekor.sigstore.dev")
        XCTAssertNil(root.rekorLog(id: [UInt8](repeating: 0, count: 32), sha256: { Crypto.sha256($0) }))
    }

    func testTrustedRootRefusesBadFieldsWithTheirName() throws {
        let good = try bytes("model-signing/sigstore-trusted-root.json")
        func field(_ edit: (inout [String: Any]) -> Void) throws -> String? {
            var o = try JSONSerialization.jsonObject(with: Data(good)) as! [String: Any]
            edit(&o)
            do { _ = try SigstoreTrustedRoot(json: [UInt8](try JSONSerialization.data(withJSONObject: o))); return nil } catch let e as VouchError {
                XCTAssertEqual(e.code, .invalidValue)
                return e.context["field"]
            }
        }
        XCTAssertEqual(try field { $0["mediaType"] = "application/json" }, "trustedRoot.mediaType")
        XCTAssertEqual(try field { r in
            var logs = r["tlogs"] as! [[String: Any]]
            logs[1]["publicKey"] = ["keyDetails": "PKIX_ED25519", "validFor": ["start": "2025-09-23T00:00:00Z"]]
            r["tlogs"] = logs
        }, "trustedRoot.tlogs[1].publicKey.rawBytes")
        XCTAssertEqual(try field { r in
            var cas = r["certificateAuthorities"] as! [[String: Any]]
            cas[0]["validFor"] = ["start": "yesterday"]
            r["certificateAuthorities"] = cas
        }, "trustedRoot.certificateAuthorities[0].validFor.start")
        XCTAssertEqual(try field { r in
            var cas = r["certificateAuthorities"] as! [[String: Any]]
            cas[1]["certChain"] = ["certificates": []]
            r["certificateAuthorities"] = cas
        }, "trustedRoot.certificateAuthorities[1].certChain")
        XCTAssertEqual(try field { $0["ctlogs"] = Array(repeating: ($0["ctlogs"] as! [Any])[0], count: SigstoreTrustedRoot.maxEntries + 1) }, "trustedRoot.ctlogs")
        XCTAssertThrowsError(try SigstoreTrustedRoot(json: [UInt8](repeating: 0x20, count: SigstoreTrustedRoot.maxBytes + 1)))
    }

    func testLogEntryParses() throws {
        let entries = try SigstoreLogEntry.entries(bundle: bytes("model-signing/v1.1.0-sigstore/model.sig"))
        XCTAssertEqual(entries.count, 1)
        let e = entries[0]
        XCTAssertEqual(e.logIndex, 598_151_086)
        XCTAssertEqual(e.integratedTime, 1_760_062_340)
        XCTAssertEqual((e.kind, e.version).0, "dsse")
        XCTAssertEqual(e.inclusionProof?.treeSize, 476_246_825)
        XCTAssertEqual(e.inclusionProof?.hashes.count, 14)
        XCTAssertNoThrow(try e.verifyInclusion(sha256: { Crypto.sha256($0) }))
        let payload = String(decoding: try XCTUnwrap(e.signedEntryTimestampPayload), as: UTF8.self)
        XCTAssertTrue(payload.hasPrefix("{\"body\":\"eyJhcGlWZXJzaW9uIjoiMC4wLjEi"), payload)
        XCTAssertTrue(payload.hasSuffix("\",\"integratedTime\":1760062340,\"logID\":\"c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d\",\"logIndex\":598151086}"), payload)
        let checkpoint = try RekorCheckpoint(envelope: try XCTUnwrap(e.inclusionProof?.checkpoint))
        XCTAssertEqual(checkpoint.origin, "rekor.sigstore.dev - 1193050959916656506")
        XCTAssertEqual(checkpoint.size, 476_246_825)
        XCTAssertEqual(checkpoint.signatures.map(\.keyHint), [Array(e.logID.prefix(4))])
        let body = try RekorDSSEBody(json: e.canonicalizedBody)
        XCTAssertEqual(body.payloadHash, "1dc62239e6e2776a8776eed7ad423123f46eaab33dc15967d7b999168c6d11ed")
        XCTAssertTrue(body.signatures[0].verifierPEM.hasPrefix("-----BEGIN CERTIFICATE-----"))
    }

    func testSCTListParses() throws {
        let bundle = try SigstoreBundle(json: bytes("model-signing/v1.1.0-sigstore/model.sig"))
        guard case let .certificate(der) = bundle.material else { return XCTFail("not keyless") }
        let value = try XCTUnwrap(try Certificate(der: der).extensionValue(oid: SignedCertificateTimestamp.extensionOID))
        let scts = try SignedCertificateTimestamp.list(extensionValue: value)
        XCTAssertEqual(scts.count, 1)
        XCTAssertEqual(Base64.encode(scts[0].logID), "3T0wasbHETJjGR4cmWc3AqJKXrjePK3/h4pygC8p7o4=")
        XCTAssertEqual(scts[0].signatureAlgorithm, SignedCertificateTimestamp.signatureECDSA)
        for n in 0..<value.count {
            XCTAssertThrowsError(try SignedCertificateTimestamp.list(extensionValue: Array(value.prefix(n))), "prefix \(n)")
        }
        XCTAssertThrowsError(try SignedCertificateTimestamp.list(extensionValue: value + [0]))
    }

    /// Truncations at every length, seeded byte corruptions and garbage: the parsers throw
    /// VouchErrors or parse, never crash; what the verifier accepts is what was signed.
    func testParsersSurviveTruncationCorruptionAndGarbage() throws {
        let seed = TestSeed()
        var rng = seed.generator
        let root = try bytes("model-signing/sigstore-trusted-root.json")
        let bundle = try bytes("model-signing/v1.1.0-sigstore/model.sig")
        let entry = try XCTUnwrap(SigstoreLogEntry.entries(bundle: bundle).first)
        let note = Array(try XCTUnwrap(entry.inclusionProof?.checkpoint).utf8)
        func refusesOrParses(_ what: String, _ parse: () throws -> Void) {
            do { try parse() } catch is VouchError {} catch { XCTFail("\(what): \(error) is not a VouchError (\(seed))") }
        }
        for n in stride(from: 0, to: root.count, by: 7) {
            XCTAssertThrowsError(try SigstoreTrustedRoot(json: Array(root.prefix(n))), "root prefix \(n)")
        }
        for n in stride(from: 0, to: bundle.count, by: 11) {
            XCTAssertThrowsError(try SigstoreLogEntry.entries(bundle: Array(bundle.prefix(n))), "bundle prefix \(n)")
        }
        for n in 0..<note.count {
            refusesOrParses("checkpoint prefix \(n)") { _ = try RekorCheckpoint(envelope: String(decoding: note.prefix(n), as: UTF8.self)) }
        }
        for n in stride(from: 0, to: entry.canonicalizedBody.count, by: 5) {
            XCTAssertThrowsError(try RekorDSSEBody(json: Array(entry.canonicalizedBody.prefix(n))), "body prefix \(n)")
        }
        let original = try SigstoreBundle(json: bundle)
        for i in 0..<300 {
            var r = root, b = bundle, c = note, d = entry.canonicalizedBody
            for _ in 0...Int.random(in: 0...3, using: &rng) {
                r[Int.random(in: 0..<r.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                c[Int.random(in: 0..<c.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                d[Int.random(in: 0..<d.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            refusesOrParses("root \(i)") { _ = try SigstoreTrustedRoot(json: r) }
            refusesOrParses("entries \(i)") { _ = try SigstoreLogEntry.entries(bundle: b) }
            refusesOrParses("checkpoint \(i)") { _ = try RekorCheckpoint(envelope: String(decoding: c, as: UTF8.self)) }
            refusesOrParses("body \(i)") { _ = try RekorDSSEBody(json: d) }
            // A corruption may leave what is signed unchanged (the RFC 3161 timestamp, which is not
            // read; a base64 digit's unused bits): what verifies must be what was signed.
            if let parsed = try? SigstoreBundle(json: b),
               case let .verified(claims) = SigstoreKeylessVerifier.verify(bundle: parsed, trustedRoot: root, identity: "stefanb@us.ibm.com",
                                                                           issuer: "https://sigstore.verify.ibm.com/oauth2") {
                XCTAssertEqual(parsed.envelope, original.envelope, "\(seed)")
                XCTAssertEqual(parsed.material, original.material, "\(seed)")
                XCTAssertEqual(try SigstoreLogEntry.entries(bundle: b), [entry], "\(seed)")
                XCTAssertEqual(claims.integratedTime, Date(timeIntervalSince1970: 1_760_062_340), "\(seed)")
            }
            let garbage = (0..<Int.random(in: 0...512, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            XCTAssertThrowsError(try SigstoreTrustedRoot(json: garbage))
            XCTAssertThrowsError(try SigstoreLogEntry.entries(bundle: garbage))
            refusesOrParses("garbage SCT \(i)") { _ = try SignedCertificateTimestamp.list(extensionValue: garbage) }
        }
    }
}
