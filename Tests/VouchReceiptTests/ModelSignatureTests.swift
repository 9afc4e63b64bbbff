import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModelSigning
import VouchPolicy

/// The model-signature format and its verifier, on bundles made here in model-signing's layout
/// (the interop tests use the real tool): each check of `ModelManifest`, `ModelFileCheck` and
/// `ModelSignatureVerifier` refuses with its code.
final class ModelSignatureTests: XCTestCase {
    let key = try! PrivateKey.generate(.p256)

    struct Resource { var name: String; var digest: String }

    func statement(name: String = "acme-llm", resources: [Resource], method: String = "files", hash: String = "sha256",
                   predicateType: String = ModelManifest.predicateType, rootDigest: String? = nil, ignore: [String] = ["model.sig", ".git"]) -> [UInt8] {
        let root = rootDigest ?? Hex.encode(Crypto.sha256(resources.flatMap { (try? Hex.decode($0.digest)) ?? [] }))
        let object: [String: Any] = [
            "_type": ModelManifest.statementType,
            "subject": [["name": name, "digest": ["sha256": root]]],
            "predicateType": predicateType,
            "predicate": [
                "resources": resources.map { ["algorithm": "sha256", "name": $0.name, "digest": $0.digest] },
                "serialization": ["method": method, "hash_type": hash, "allow_symlinks": false, "ignore_paths": ignore],
            ],
        ]
        return [UInt8](try! JSONSerialization.data(withJSONObject: object))
    }

    /// A key-signed bundle (model-signing's `sign key` layout) over `payload`.
    func bundle(_ payload: [UInt8], signer: PrivateKey? = nil, hint: String? = nil) throws -> [UInt8] {
        let signer = signer ?? key
        let pae = Array("DSSEv1 28 application/vnd.in-toto+json \(payload.count) ".utf8) + payload
        let sig = try signer.sign(pae)
        let defaultHint = Hex.encode(Crypto.sha256(Array(try signer.publicKey.pem.utf8)))
        let object: [String: Any] = [
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": ["publicKey": ["hint": hint ?? defaultHint], "tlogEntries": []],
            "dsseEnvelope": ["payload": Data(payload).base64EncodedString(), "payloadType": "application/vnd.in-toto+json",
                             "signatures": [["sig": Data(sig).base64EncodedString(), "keyid": ""]]],
        ]
        return [UInt8](try JSONSerialization.data(withJSONObject: object))
    }

    func digest(_ s: String) -> String { Hex.encode(Crypto.sha256(Array(s.utf8))) }

    var files: [Resource] { [Resource(name: "config.json", digest: digest("config")), Resource(name: "weights/shard-1.bin", digest: digest("w1")),
                             Resource(name: "weights/shard-2.bin", digest: digest("w2"))] }
    var measured: [ModelFileCheck.Measured] { files.map { ModelFileCheck.Measured(name: $0.name, sha256: $0.digest) } }
    var publisher: ModelPublisher { ModelPublisher(name: "Acme AI", models: ["acme-llm"], trust: .key(spki: try! key.publicKey.spkiDER)) }

    func codes(_ r: ModelSignatureVerification) -> [String] { r.violations.map(\.code.rawValue) }

    func testVerifiedSignatureNamesPublisherModelAndSigner() throws {
        let r = ModelSignatureVerifier.verify(bundle: try bundle(statement(resources: files)), publishers: [publisher], files: measured)
        guard case let .verified(v) = r else { return XCTFail("\(r.violations)") }
        let c = v.claims(directory: "/models/acme-llm")
        XCTAssertEqual(c.model, "acme-llm")
        XCTAssertEqual(c.publisher, "Acme AI")
        XCTAssertEqual(c.signerKind, "key")
        XCTAssertEqual(c.signer, "sha256:" + Hex.encode(Crypto.sha256(try key.publicKey.spkiDER)))
        XCTAssertEqual(v.manifest.files.count, 3)
        XCTAssertNil(c.signedAt)
    }

    func testManifestChecksInOrder() throws {
        func refused(_ payload: [UInt8], _ field: String, line: UInt = #line) {
            let r = ModelSignatureVerifier.verify(bundle: try! bundle(payload), publishers: [publisher], files: measured)
            XCTAssertEqual(codes(r), ["model_manifest_invalid"], line: line)
            XCTAssertTrue(r.violations.first?.path.hasSuffix(field) ?? false, "\(r.violations)", line: line)
        }
        refused(statement(resources: files, predicateType: "https://model_signing/Digests/v0.1"), "statement.predicateType")
        refused(statement(resources: files, method: "shards"), "serialization.method")
        refused(statement(resources: files, hash: "blake2"), "serialization.hash_type")
        refused(statement(resources: files, rootDigest: digest("another")), "statement.subject.digest.sha256")
        refused(statement(resources: files + [files[0]]), ".name")
        for bad in ["../etc/passwd", "/abs", "a//b", "./a", "a/./b", ""] {
            refused(statement(resources: [Resource(name: bad, digest: digest("x"))]), ".name")
        }
        refused(statement(resources: [Resource(name: "x", digest: "ABCDEF")]), ".digest")
        refused(statement(name: "acme\u{1B}[31m", resources: files), "statement.subject.name")
        refused(statement(name: "acme\u{85}", resources: files), "statement.subject.name")
        refused(Array(#"{"_type": "https://in-toto.io/Statement/v0.1", "subject": [], "predicateType": "x"}"#.utf8), "statement._type")
    }

    func testSignerChecks() throws {
        let other = try PrivateKey.generate(.p256)
        // Another key's signature: its hint names another key.
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: try bundle(statement(resources: files), signer: other), publishers: [publisher], files: measured)),
                       ["model_signer_untrusted"])
        // The trusted key's hint, another key's signature.
        let forged = try bundle(statement(resources: files), signer: other, hint: Hex.encode(Crypto.sha256(Array(try key.publicKey.pem.utf8))))
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: forged, publishers: [publisher], files: measured)), ["model_signature_invalid"])
        // A key signature where the policy trusts a certificate CA only.
        let caOnly = ModelPublisher(name: "CA", models: ["*"], trust: .certificate(roots: [], identity: nil))
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: try bundle(statement(resources: files)), publishers: [caOnly], files: measured)),
                       ["model_signer_untrusted"])
        // Publishers are tried in order: the second one verifies.
        let two = ModelSignatureVerifier.verify(bundle: try bundle(statement(resources: files)),
                                                publishers: [ModelPublisher(name: "Other", models: ["*"], trust: .key(spki: try other.publicKey.spkiDER)), publisher],
                                                files: measured)
        guard case let .verified(v) = two else { return XCTFail("\(two.violations)") }
        XCTAssertEqual(v.publisher.name, "Acme AI")
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: try bundle(statement(resources: files)), publishers: [], files: measured)), ["model_signer_untrusted"])
    }

    func testModelNameAndFileComparison() throws {
        let b = try bundle(statement(resources: files))
        let wrongModel = ModelPublisher(name: "Acme AI", models: ["acme-llm-2"], trust: publisher.trust)
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: b, publishers: [wrongModel], files: measured)), ["model_name_mismatch"])
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: b, publishers: [publisher], expectedName: "other", files: measured)), ["model_name_mismatch"])

        var m = measured
        m[1] = .init(name: m[1].name, sha256: digest("tampered"))
        m.remove(at: 2)
        m.append(.init(name: "weights/shard-3.bin", sha256: digest("w3")))
        m.append(.init(name: "config.renamed", sha256: digest("config")))
        m.remove(at: 0)
        m.append(.init(name: ".git/HEAD", sha256: digest("ignored")))
        m.append(.init(name: "model.sig", sha256: digest("ignored too")))
        let r = ModelSignatureVerifier.verify(bundle: b, publishers: [publisher], files: m)
        XCTAssertEqual(r.violations.map { "\($0.code.rawValue) \($0.path)" }, [
            "model_file_renamed model.signature.files.config.renamed",
            "model_file_modified model.signature.files.weights/shard-1.bin",
            "model_file_missing model.signature.files.weights/shard-2.bin",
            "model_file_extra model.signature.files.weights/shard-3.bin",
        ])
    }

    func testBundleShapeIsBounded() throws {
        let good = try bundle(statement(resources: files))
        var object = try JSONSerialization.jsonObject(with: Data(good)) as! [String: Any]
        func refused(_ o: [String: Any], line: UInt = #line) {
            let bytes = [UInt8](try! JSONSerialization.data(withJSONObject: o))
            XCTAssertThrowsError(try SigstoreBundle(json: bytes), line: line) { XCTAssertEqual(($0 as? VouchError)?.code, .modelSignatureMalformed, line: line) }
        }
        var o = object; o["mediaType"] = "application/json"; refused(o)
        o = object; o["dsseEnvelope"] = nil; o["messageSignature"] = ["x": 1]; refused(o)
        o = object; var m = o["verificationMaterial"] as! [String: Any]; m["certificate"] = ["rawBytes": "AAAA"]; o["verificationMaterial"] = m; refused(o)
        o = object; var e = o["dsseEnvelope"] as! [String: Any]; e["payloadType"] = "text/plain"; o["dsseEnvelope"] = e; refused(o)
        o = object; e = o["dsseEnvelope"] as! [String: Any]; e["signatures"] = []; o["dsseEnvelope"] = e; refused(o)
        o = object; e = o["dsseEnvelope"] as! [String: Any]; e["payload"] = "***"; o["dsseEnvelope"] = e; refused(o)
        XCTAssertThrowsError(try SigstoreBundle(json: Array(repeating: 0x20, count: SigstoreBundle.maxBytes + 1)))
        object["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2"
        XCTAssertNoThrow(try SigstoreBundle(json: [UInt8](try JSONSerialization.data(withJSONObject: object))))
        // Truncations never crash.
        for n in stride(from: 0, to: good.count, by: 7) { _ = try? SigstoreBundle(json: Array(good.prefix(n))) }
    }

    func testIgnoredPathsMatchWholeComponents() throws {
        let manifest = try ModelManifest(statement: statement(resources: files, ignore: ["ignore-me", "./docs/", ".git"]), sha256: { Crypto.sha256($0) })
        XCTAssertTrue(manifest.isIgnored("ignore-me"))
        XCTAssertTrue(manifest.isIgnored("ignore-me/x"))
        XCTAssertFalse(manifest.isIgnored("ignore-me2"))
        XCTAssertTrue(manifest.isIgnored("docs/readme.md"))
        XCTAssertTrue(manifest.isIgnored(".git/objects/ab"))
        XCTAssertFalse(manifest.isIgnored(".github/x"))
    }

    /// Names are bytes: a decomposed `café` beside the signed composed one is an extra file, and
    /// the Kelvin sign is not `K`; a name measured twice is extra the second time.
    func testNamesCompareAsBytes() throws {
        let composed = "caf\u{E9}.bin", decomposed = "cafe\u{301}.bin"
        XCTAssertEqual(composed, decomposed)   // Swift's String equality: what the comparison must not use
        let signed = [Resource(name: composed, digest: digest("good")), Resource(name: "Kernel.bin", digest: digest("k"))]
        let b = try bundle(statement(resources: signed))
        let measured = signed.map { ModelFileCheck.Measured(name: $0.name, sha256: $0.digest) }
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: b, publishers: [publisher(["*"])], files: measured)), [])
        let hidden = measured + [.init(name: decomposed, sha256: digest("evil")), .init(name: "\u{212A}ernel.bin", sha256: digest("evil2"))]
        XCTAssertEqual(Set(codes(ModelSignatureVerifier.verify(bundle: b, publishers: [publisher(["*"])], files: hidden))), ["model_file_extra"])
        XCTAssertEqual(ModelSignatureVerifier.verify(bundle: b, publishers: [publisher(["*"])], files: hidden).violations.count, 2)
        let twice = measured + [.init(name: composed, sha256: digest("evil"))]
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: b, publishers: [publisher(["*"])], files: twice)), ["model_file_extra"])
        // A manifest may list both spellings: they are two files.
        XCTAssertNoThrow(try ModelManifest(statement: statement(resources: [Resource(name: composed, digest: digest("1")),
                                                                             Resource(name: decomposed, digest: digest("2"))]), sha256: { Crypto.sha256($0) }))
        // The publisher's model names and the expected name are bytes too.
        let named = try bundle(statement(name: composed, resources: signed))
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: named, publishers: [publisher([decomposed])], files: measured)), ["model_name_mismatch"])
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: named, publishers: [publisher(["*"])], expectedName: decomposed, files: measured)),
                       ["model_name_mismatch"])
    }

    func publisher(_ models: [String], name: String = "Acme AI", key: PrivateKey? = nil) -> ModelPublisher {
        ModelPublisher(name: name, models: models, trust: .key(spki: try! (key ?? self.key).publicKey.spkiDER))
    }

    /// Two publishers share a key, each trusted for another model: the one trusted for the signed
    /// name is named. Publishers of another kind are not tried, so a broken signature by a trusted
    /// key stays `model_signature_invalid`.
    func testPublisherSelection() throws {
        let b = try bundle(statement(name: "acme", resources: files))
        let r = ModelSignatureVerifier.verify(bundle: b, publishers: [publisher(["llama"], name: "Llama team"), publisher(["acme"], name: "Acme team")], files: measured)
        guard case let .verified(v) = r else { return XCTFail("\(r.violations)") }
        XCTAssertEqual(v.publisher.name, "Acme team")
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: b, publishers: [publisher(["llama"])], files: measured)), ["model_name_mismatch"])

        var object = try JSONSerialization.jsonObject(with: Data(b)) as! [String: Any]
        var envelope = object["dsseEnvelope"] as! [String: Any]
        var sigs = envelope["signatures"] as! [[String: Any]]
        var sig = [UInt8](Data(base64Encoded: sigs[0]["sig"] as! String)!)
        sig[sig.count - 2] ^= 1
        sigs[0]["sig"] = Data(sig).base64EncodedString()
        envelope["signatures"] = sigs
        object["dsseEnvelope"] = envelope
        let broken = [UInt8](try JSONSerialization.data(withJSONObject: object))
        let ca = ModelPublisher(name: "CA", models: ["*"], trust: .certificate(roots: [], identity: nil))
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: broken, publishers: [publisher(["acme"]), ca], files: measured)), ["model_signature_invalid"])
        // An untrusted key's refusal does not hide the trusted key's name mismatch.
        let other = try PrivateKey.generate(.p256)
        XCTAssertEqual(codes(ModelSignatureVerifier.verify(bundle: b, publishers: [publisher(["llama"]), publisher(["acme"], key: other)], files: measured)),
                       ["model_name_mismatch"])
    }

    /// Thousands of renamed and added files are compared in linear time (each rename found through
    /// a digest index), and every one is reported.
    func testManyRenamesAreAllReported() throws {
        let n = 5_000
        let many = (0..<n).map { Resource(name: "shard-\($0).bin", digest: digest("s\($0)")) }
        let b = try bundle(statement(resources: many))
        let moved = many.map { ModelFileCheck.Measured(name: "moved/" + $0.name, sha256: $0.digest) }
        let r = ModelSignatureVerifier.verify(bundle: b, publishers: [publisher(["*"])], files: moved)
        XCTAssertEqual(r.violations.count, n)
        XCTAssertEqual(Set(codes(r)), ["model_file_renamed"])
    }

    /// Many signed files share one digest (empty files) and are all moved: each rename takes the
    /// next extra file of that digest, every one reported.
    func testRenamesOfFilesSharingADigest() throws {
        let empty = digest("")
        let signed = (0..<2_000).map { Resource(name: "empty-\($0)", digest: empty) }
        let b = try bundle(statement(resources: signed))
        let moved = signed.map { ModelFileCheck.Measured(name: "moved/" + $0.name, sha256: $0.digest) }
            + [ModelFileCheck.Measured(name: "one-more", sha256: empty)]
        let r = ModelSignatureVerifier.verify(bundle: b, publishers: [publisher(["*"])], files: moved)
        XCTAssertEqual(r.violations.filter { $0.code == .modelFileRenamed }.count, 2_000)
        XCTAssertEqual(r.violations.filter { $0.code == .modelFileExtra }.map(\.path), ["model.signature.files.one-more"])
    }

    /// What a signer's certificate names reaches messages and claims with its control characters
    /// escaped.
    func testCertificateNamesArePrintable() {
        XCTAssertEqual(ModelSignatureVerifier.printable(["a\u{1B}[31mb", "c\nd"]), "a\\u{1b}[31mb, c\\u{a}d")
        XCTAssertEqual(ModelSignatureVerifier.printable([String(repeating: "x", count: 5_000)]).count, 1_025)
    }
}
