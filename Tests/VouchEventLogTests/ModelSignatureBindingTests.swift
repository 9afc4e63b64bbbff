import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTPMWire
import VouchTestSupport

/// Model signatures in the model log: the `vouch-model-signature` record (its wire form, bounds,
/// and old logs reading as before), the broker's binding of a signature to the files measured
/// with it, and the policy's rules on signed models.
final class ModelSignatureBindingTests: XCTestCase {
    let digester = OpenSSLDigester()
    let dir = "/models/acme-llm-7b"
    let files: [(String, [UInt8])] = [("config.json", Array(#"{"arch": "llama"}"#.utf8)), ("shards/00001.safetensors", [UInt8](repeating: 7, count: 4096)),
                                      ("tokenizer.json", Array("tokens".utf8))]

    // MARK: fixtures

    /// A signature as `model_signing sign key` writes one: a v0.3 Sigstore bundle with the
    /// public key's hint, a DSSE envelope over an in-toto Statement with the v1.0 predicate
    /// (resources in the order given, the subject digest over their digests), ECDSA P-256.
    func bundle(model: String = "acme-llm-7b", files: [(String, [UInt8])]? = nil, key: PrivateKey) throws -> [UInt8] {
        let files = files ?? self.files
        let resources = files.map { ["name": $0.0, "algorithm": "sha256", "digest": Hex.encode(Crypto.sha256($0.1))] }
        let root = Crypto.sha256(files.flatMap { Crypto.sha256($0.1) })
        let statement: [String: Any] = [
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [["name": model, "digest": ["sha256": Hex.encode(root)]]],
            "predicateType": "https://model_signing/signature/v1.0",
            "predicate": ["resources": resources,
                          "serialization": ["method": "files", "hash_type": "sha256", "allow_symlinks": false,
                                            "ignore_paths": ["model.sig", ".git", ".gitattributes", ".github", ".gitignore"]]],
        ]
        let payload = [UInt8](try JSONSerialization.data(withJSONObject: statement, options: [.sortedKeys]))
        let type = "application/vnd.in-toto+json"
        let pae = Array("DSSEv1 \(type.utf8.count) \(type) \(payload.count) ".utf8) + payload
        let envelope: [String: Any] = ["payload": Base64.encode(payload), "payloadType": type,
                                       "signatures": [["sig": Base64.encode(try key.sign(pae, hash: .sha256))]]]
        let hint = Hex.encode(Crypto.sha256(Array(try key.publicKey.pem.utf8)))
        let bundle: [String: Any] = ["mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                                     "verificationMaterial": ["publicKey": ["hint": hint], "tlogEntries": [] as [Any]],
                                     "dsseEnvelope": envelope]
        return [UInt8](try JSONSerialization.data(withJSONObject: bundle, options: [.sortedKeys]))
    }

    /// The files under `dir` (plus `outside`), and the signature when given, as measure-model logs them.
    func log(_ files: [(String, [UInt8])]? = nil, signature: [UInt8]?, outside: [(String, [UInt8])] = []) -> ModelLog {
        let artefacts = ((files ?? self.files).map { ("\(dir)/\($0.0)", $0.1) } + outside)
            .map { ModelLog.Artefact(name: $0.0, sha256: Hex.encode(Crypto.sha256($0.1)), size: UInt64($0.1.count)) }
            .sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        let signatures = signature.map { [ModelLog.Signature(name: "\(dir)/model.sig", sha256: Hex.encode(Crypto.sha256($0)), directory: dir, bundle: $0)] } ?? []
        return ModelLog(artefacts: artefacts, signatures: signatures)
    }

    func policy(_ publishers: [ModelPublisher], allowed: [String] = [], denied: [String] = []) -> Policy {
        var p = Policy(name: "t", version: 1, pcrBank: .sha256, pcrValues: [0: [[UInt8](repeating: 0, count: 32)]])
        p.model.publishers = publishers
        p.model.allowed = allowed.map { .init(name: "listed", manifest: $0) }
        p.model.denied = denied
        return p
    }

    func publisher(_ key: PrivateKey, name: String = "Acme AI", models: [String] = ["acme-llm-7b"]) throws -> ModelPublisher {
        ModelPublisher(name: name, models: models, trust: .key(spki: try key.publicKey.spkiDER))
    }

    func bind(_ log: ModelLog, _ policy: Policy) -> ModelSignatureBinding.Outcome {
        ModelSignatureBinding.verify(log, manifestDigest: log.claims(using: digester).manifestDigest, policy: policy, digester: digester)
    }

    func codes(_ outcome: ModelSignatureBinding.Outcome) -> [String] {
        if case let .refused(v) = outcome { return v.map(\.code.rawValue) }
        return []
    }

    func evaluate(_ policy: Policy, _ model: ModelClaims?) -> [String] {
        let claims = EvidenceClaims(boot: nil, model: model, clock: ClockState(resetCount: 0, restartCount: 0, clock: 0, safe: true), rebootedSinceLastAttestation: false)
        if case let .violated(v) = policy.evaluate(PolicyInput(pcrs: PCRValues([.sha256: [0: [UInt8](repeating: 0, count: 32)]]), claims: claims)) {
            return v.map(\.code.rawValue)
        }
        return []
    }

    // MARK: the record

    /// Signature records round-trip (the bundle in base64), come after the artefacts, extend
    /// PCR 23 with the bundle's digest, and stay out of the files and the manifest digest.
    func testSignatureRecordRoundTripsAndStaysOutOfTheManifest() throws {
        let sig = try bundle(key: try PrivateKey.generate())
        let signed = log(signature: sig), unsigned = log(signature: nil)
        let parsed = try ModelLog(json: signed.json)
        XCTAssertEqual(parsed, signed)
        XCTAssertEqual(parsed.signatures.map(\.bundle), [sig])
        XCTAssertEqual(parsed.records.last?.content_type, "vouch-model-signature")
        XCTAssertEqual(parsed.records.map(\.recnum), Array(0...3))
        let record = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(signed.json)) as? [[String: Any]])?.last?["content"] as? [String: Any])
        XCTAssertEqual(record["bundle"] as? String, Base64.encode(sig))
        XCTAssertEqual(record["directory"] as? String, dir)
        XCTAssertEqual(record["size"] as? Int, sig.count)
        XCTAssertEqual(parsed.claims(using: digester), unsigned.claims(using: digester))
        var pcr = unsigned.replay(using: digester)
        pcr = Crypto.sha256(pcr + Crypto.sha256(sig))
        XCTAssertEqual(signed.replay(using: digester), pcr)
        XCTAssertEqual(parsed.mismatchedSignatures(using: digester), [])
    }

    /// A log written before signature records existed reads as it did, and one without
    /// signatures is written byte for byte as before.
    func testOldLogsReadAndWriteAsBefore() throws {
        let old = #"[{"content":{"name":"w.bin","sha256":"\#(String(repeating: "ab", count: 32))","size":3},"content_type":"vouch-model","#
            + #""digests":[{"digest":"\#(String(repeating: "ab", count: 32))","hashAlg":"sha256"}],"pcr":23,"recnum":0}]"#
        let parsed = try ModelLog(json: Array(old.utf8))
        XCTAssertEqual(parsed.artefacts.map(\.name), ["w.bin"])
        XCTAssertEqual(parsed.signatures, [])
        XCTAssertEqual(String(decoding: parsed.json, as: UTF8.self), old)
    }

    /// Bounds and shape: every refusal is `invalid_value` naming the field.
    func testMalformedSignatureRecordsAreRefused() throws {
        let sig = try bundle(key: try PrivateKey.generate())
        func mutated(_ change: (inout [[String: Any]]) -> Void) throws -> [UInt8] {
            var records = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(log(signature: sig).json)) as? [[String: Any]])
            change(&records)
            return [UInt8](try JSONSerialization.data(withJSONObject: records))
        }
        func content(_ records: inout [[String: Any]], _ key: String, _ value: Any) {
            var c = records[records.count - 1]["content"] as! [String: Any]
            c[key] = value
            records[records.count - 1]["content"] = c
        }
        let cases: [(String, (inout [[String: Any]]) -> Void)] = [
            ("size", { content(&$0, "size", 1) }),
            ("base64", { content(&$0, "bundle", "not base64!") }),
            ("empty", { content(&$0, "bundle", ""); content(&$0, "size", 0) }),
            ("trailing slash", { content(&$0, "directory", self.dir + "/") }),
            ("empty directory", { content(&$0, "directory", "") }),
            ("content type", { $0[$0.count - 1]["content_type"] = "vouch-model-blob" }),
            ("digest", { $0[$0.count - 1]["digests"] = [["hashAlg": "sha256", "digest": String(repeating: "cd", count: 32)]] }),
            ("twice", { var again = $0[$0.count - 1]; again["recnum"] = $0.count; $0.append(again) }),
        ]
        for (what, change) in cases {
            XCTAssertThrowsError(try ModelLog(json: try mutated(change)), what) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue, what) }
        }
        // The digest a record claims, against its bundle: a check with a digester.
        let forged = try ModelLog(json: try mutated { content(&$0, "sha256", String(repeating: "cd", count: 32))
            $0[$0.count - 1]["digests"] = [["hashAlg": "sha256", "digest": String(repeating: "cd", count: 32)]] })
        XCTAssertEqual(forged.mismatchedSignatures(using: digester), [0])
        XCTAssertEqual(codes(bind(forged, policy([]))), ["model_log_mismatch"])
    }

    // MARK: the binding

    /// A signature by the trusted key over exactly the measured files is named: publisher, model,
    /// signer (the key's SPKI digest), subject digest, the directory.
    func testTrustedSignatureOverTheMeasuredFilesIsNamed() throws {
        let key = try PrivateKey.generate()
        let sig = try bundle(key: key)
        guard case let .bound(claims) = bind(log(signature: sig), policy([try publisher(key)])), let c = claims?.first else {
            return XCTFail("a trusted signature was refused: \(bind(log(signature: sig), policy([try publisher(key)])))")
        }
        XCTAssertEqual(claims?.count, 1)
        XCTAssertEqual(c.publisher, "Acme AI")
        XCTAssertEqual(c.model, "acme-llm-7b")
        XCTAssertEqual(c.directory, dir)
        XCTAssertEqual(c.signerKind, "key")
        XCTAssertEqual(c.signer, "sha256:" + Hex.encode(Crypto.sha256(try key.publicKey.spkiDER)))
        XCTAssertEqual(c.subjectDigest, Hex.encode(Crypto.sha256(files.flatMap { Crypto.sha256($0.1) })))
        XCTAssertEqual(c.bundleSHA256, Hex.encode(Crypto.sha256(sig)))
        // A policy without publishers judges no signature.
        XCTAssertEqual(bind(log(signature: sig), policy([])), .bound(nil))
    }

    func testSignatureRefusals() throws {
        let key = try PrivateKey.generate(), other = try PrivateKey.generate()
        let sig = try bundle(key: key)
        XCTAssertEqual(codes(bind(log(signature: sig), policy([try publisher(other)]))), ["model_signer_untrusted"])
        XCTAssertEqual(codes(bind(log(signature: sig), policy([try publisher(key, models: ["another-model"])]))), ["model_name_mismatch"])
        var changed = files
        changed[0].1 += [0x20]
        XCTAssertEqual(codes(bind(log(changed, signature: sig), policy([try publisher(key)]))), ["model_file_modified"])
        XCTAssertEqual(codes(bind(log(files + [("extra.bin", [1])], signature: sig), policy([try publisher(key)]))), ["model_file_extra"])
        XCTAssertEqual(codes(bind(log(Array(files.dropLast()), signature: sig), policy([try publisher(key)]))), ["model_file_missing"])
        // A file measured beside the signed directory is unsigned.
        let beside = log(signature: sig, outside: [("/models/lora.bin", [9])])
        XCTAssertEqual(codes(bind(beside, policy([try publisher(key)]))), ["model_file_extra"])
        // Ignored paths (model-signing's git paths) under the directory are not compared.
        XCTAssertEqual(codes(bind(log(files + [(".gitattributes", [1])], signature: sig), policy([try publisher(key)]))), [])
    }

    /// A manifest on `model.allowed` is admitted without a signature: a signature that does not
    /// verify refuses nothing, one that does is still named; `model.denied` wins over both.
    func testAllowlistedManifestNeedsNoSignature() throws {
        let key = try PrivateKey.generate(), other = try PrivateKey.generate()
        let l = log(signature: try bundle(key: key))
        let manifest = l.claims(using: digester).manifestDigest
        XCTAssertEqual(bind(l, policy([try publisher(other)], allowed: [manifest])), .bound(nil))
        guard case let .bound(named) = bind(l, policy([try publisher(key)], allowed: [manifest])) else { return XCTFail("refused") }
        XCTAssertEqual(named?.map(\.publisher), ["Acme AI"])
        XCTAssertEqual(codes(bind(l, policy([try publisher(other)], allowed: [manifest], denied: [manifest]))), ["model_signer_untrusted"])
    }

    // MARK: the policy's rules

    func testPolicyRulesOnSignedModels() throws {
        let key = try PrivateKey.generate()
        let acme = try publisher(key)
        var model = log(signature: nil).claims(using: digester)
        let manifest = model.manifestDigest
        XCTAssertEqual(evaluate(policy([acme]), model), ["model_unsigned"])
        XCTAssertEqual(evaluate(policy([acme]), nil), ["model_missing"])
        XCTAssertEqual(evaluate(policy([acme], allowed: [manifest]), model), [])
        XCTAssertEqual(evaluate(policy([acme], allowed: [String(repeating: "ab", count: 32)]), model), ["model_unsigned"])
        XCTAssertEqual(evaluate(policy([]), model), [])
        model.signatures = [ModelSignatureClaims(directory: dir, model: "acme-llm-7b", publisher: "Acme AI", signerKind: "key", signer: "sha256:00",
                                                 subjectDigest: String(repeating: "0", count: 64), bundleSHA256: String(repeating: "1", count: 64))]
        XCTAssertEqual(evaluate(policy([acme]), model), [])
        // Signed and not on a non-empty allowlist: the signature admits it.
        XCTAssertEqual(evaluate(policy([acme], allowed: [String(repeating: "ab", count: 32)]), model), [])
        XCTAssertEqual(evaluate(policy([acme], denied: [manifest]), model), ["model_denied"])
        // Claims naming a publisher this policy does not list (judged under another) admit nothing.
        XCTAssertEqual(evaluate(policy([try publisher(key, name: "Someone else")]), model), ["model_unsigned"])
    }

    /// Through the appraisal of a quote of PCR 23: the signature is verified in stage 2 and the
    /// certificate's attestation names the publisher; an untrusted signer refuses.
    func testAppraisalNamesThePublisherInTheAttestation() throws {
        let key = try PrivateKey.generate()
        let l = log(signature: try bundle(key: key))
        let ak = try SoftwareAK()
        let nonce = [UInt8](repeating: 7, count: 32)
        let q = try ak.quote(nonce: nonce, pcr23: l.replay(using: digester))
        guard case let .verified(quote) = QuoteVerifier.verify(attest: q.attest, signature: q.signature, akPublic: ak.tpmPublic,
                                                              expectedQualifyingData: nonce, pcrs: q.pcrs) else { return XCTFail("quote refused") }
        func appraise(_ p: Policy) -> Appraisal {
            Appraiser.appraise(hostID: "h", quote: quote, eventLog: nil, modelLog: l.json, previousClock: nil, policy: p, digester: digester)
        }
        guard case let .trusted(trusted) = appraise(policy([try publisher(key)])) else { return XCTFail("refused: \(appraise(policy([try publisher(key)])))") }
        XCTAssertEqual(trusted.claims.model?.signatures?.map(\.publisher), ["Acme AI"])
        let ext = trusted.attestationExtension(attestedAt: Date(timeIntervalSince1970: 1_700_000_000))
        XCTAssertEqual(ext.models, [.init(model: "acme-llm-7b", publisher: "Acme AI", signer: "sha256:" + Hex.encode(Crypto.sha256(try key.publicKey.spkiDER)),
                                          subjectDigest: Hex.encode(Crypto.sha256(files.flatMap { Crypto.sha256($0.1) })))])
        guard case let .rejected(violations, _) = appraise(policy([try publisher(try PrivateKey.generate())])) else { return XCTFail("an untrusted signer was accepted") }
        XCTAssertEqual(violations.map(\.code.rawValue), ["model_signer_untrusted"])
        // Without publishers, the signature is measured but not judged, and nobody is named.
        guard case let .trusted(plain) = appraise(policy([])) else { return XCTFail("refused without publishers") }
        XCTAssertNil(plain.attestationExtension(attestedAt: Date()).models)
    }
}
