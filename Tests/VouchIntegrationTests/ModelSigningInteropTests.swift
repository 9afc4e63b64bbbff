import Foundation
import XCTest
import VouchAttesterKit
import VouchCore
import VouchTestSupport

/// OpenSSF model signatures written by the unmodified `model-signing` CLI (PyPI, in a throwaway
/// virtualenv) — with a private key and with a certificate chain made here by `openssl` — verify
/// with `vouch model verify`, and each way of tampering is refused with its own code: one flipped
/// byte in any file, a renamed, missing or extra file, a signature by another key, a broken
/// signature, a manifest for another model.
final class ModelSigningInteropTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = try TestEnv.tempDir("model-signing")
    }

    override func tearDownWithError() throws {
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    /// A small model: two weight shards, a config and a nested tokenizer.
    func makeModel(_ name: String) throws -> String {
        let model = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: model.appendingPathComponent("tokenizer"), withIntermediateDirectories: true)
        var rng = SystemRandomNumberGenerator()
        for shard in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
            try Data((0..<300_000).map { _ in UInt8.random(in: 0...255, using: &rng) }).write(to: model.appendingPathComponent(shard))
        }
        try Data(#"{"architectures": ["LlamaForCausalLM"], "name": "\#(name)"}"#.utf8).write(to: model.appendingPathComponent("config.json"))
        try Data(#"{"version": "1.0", "vocab": {"a": 0}}"#.utf8).write(to: model.appendingPathComponent("tokenizer/tokenizer.json"))
        return model.path
    }

    func openssl(_ args: [String]) throws {
        let r = try TestEnv.run("/usr/bin/openssl", args)
        guard r.status == 0 else { throw TestFailure("openssl \(args.first ?? ""): \(r.stderr)") }
    }

    /// An EC key pair: (private PEM path, public PEM path).
    func keyPair(_ name: String, curve: String = "P-256") throws -> (String, String) {
        let key = dir.appendingPathComponent("\(name).key").path, pub = dir.appendingPathComponent("\(name).pub").path
        try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:\(curve)", "-out", key])
        try openssl(["pkey", "-in", key, "-pubout", "-out", pub])
        return (key, pub)
    }

    struct Verdict {
        let status: Int32
        let json: [String: Any]
        var codes: [String] { ((json["violations"] as? [[String: Any]]) ?? []).compactMap { $0["code"] as? String } }
        var signature: [String: Any] { (json["signature"] as? [String: Any]) ?? [:] }
    }

    func verify(_ model: String, _ args: [String]) throws -> Verdict {
        let r = try TestEnv.run(TestEnv.bin("vouch"), ["model", "verify", model, "--json"] + args)
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
        return Verdict(status: r.status, json: json)
    }

    /// A copy of `model` (its signature too) to tamper with.
    func copy(_ model: String, _ name: String) throws -> String {
        let to = dir.appendingPathComponent(name).path
        try FileManager.default.copyItem(atPath: model, toPath: to)
        return to
    }

    func flipByte(_ path: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[bytes.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    func testKeySignedModelVerifiesAndEachTamperingHasItsCode() throws {
        let model = try makeModel("acme-llm")
        let (key, pub) = try keyPair("publisher")
        let (_, otherPub) = try keyPair("other")
        try ModelSigningTool.signWithKey(model, privateKey: key, signature: model + "/model.sig")

        let ok = try verify(model, ["--publisher", pub, "--model", "acme-llm"])
        XCTAssertEqual(ok.status, 0, "\(ok.json)")
        XCTAssertEqual(ok.json["verified"] as? Bool, true)
        XCTAssertEqual(ok.signature["model"] as? String, "acme-llm")
        XCTAssertEqual(ok.signature["signerKind"] as? String, "key")
        XCTAssertEqual(ok.json["files"] as? Int, 4)

        var seen: [String: String] = [:]
        func refused(_ what: String, _ v: Verdict, _ code: String) {
            XCTAssertEqual(v.status, 1, what)
            XCTAssertEqual(v.codes, [code], "\(what): \(v.json)")
            seen[what] = v.codes.first
        }
        // One flipped byte in any file.
        for file in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "config.json", "tokenizer/tokenizer.json"] {
            let m = try copy(model, "flip-\(file.replacingOccurrences(of: "/", with: "_"))")
            try flipByte(m + "/" + file)
            let v = try verify(m, ["--publisher", pub])
            refused("flipped \(file)", v, "model_file_modified")
            XCTAssertEqual((v.json["violations"] as? [[String: Any]])?.first?["path"] as? String, "signature.files.\(file)")
        }
        let renamed = try copy(model, "renamed")
        try FileManager.default.moveItem(atPath: renamed + "/config.json", toPath: renamed + "/config.old.json")
        refused("renamed", try verify(renamed, ["--publisher", pub]), "model_file_renamed")
        let missing = try copy(model, "missing")
        try FileManager.default.removeItem(atPath: missing + "/model-00002-of-00002.safetensors")
        refused("missing", try verify(missing, ["--publisher", pub]), "model_file_missing")
        let extra = try copy(model, "extra")
        try Data("print('hello')\n".utf8).write(to: URL(fileURLWithPath: extra + "/modeling_custom.py"))
        refused("extra", try verify(extra, ["--publisher", pub]), "model_file_extra")
        refused("another key", try verify(model, ["--publisher", otherPub]), "model_signer_untrusted")

        // The publisher's key, a signature that does not verify: the bundle re-encoded with one
        // bit of the DSSE signature flipped.
        let broken = try copy(model, "broken-signature")
        var bundle = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: broken + "/model.sig"))) as! [String: Any]
        var envelope = bundle["dsseEnvelope"] as! [String: Any]
        var signatures = envelope["signatures"] as! [[String: Any]]
        var sig = [UInt8](Data(base64Encoded: signatures[0]["sig"] as! String)!)
        sig[sig.count - 3] ^= 0x01
        signatures[0]["sig"] = Data(sig).base64EncodedString()
        envelope["signatures"] = signatures
        bundle["dsseEnvelope"] = envelope
        try JSONSerialization.data(withJSONObject: bundle).write(to: URL(fileURLWithPath: broken + "/model.sig"))
        refused("broken signature", try verify(broken, ["--publisher", pub]), "model_signature_invalid")

        // A manifest for a different model, signed by the same publisher, put in this model's place.
        let other = try makeModel("other-llm")
        try ModelSigningTool.signWithKey(other, privateKey: key, signature: other + "/model.sig")
        let swapped = try copy(model, "swapped-manifest")
        try FileManager.default.removeItem(atPath: swapped + "/model.sig")
        try FileManager.default.copyItem(atPath: other + "/model.sig", toPath: swapped + "/model.sig")
        refused("another model's manifest", try verify(swapped, ["--publisher", pub, "--model", "acme-llm"]), "model_name_mismatch")

        // Seven kinds of tampering, seven codes.
        XCTAssertEqual(Set(seen.values).count, 7, "each tampering has its own code: \(seen)")
    }

    func testP384KeyAndGarbageSignature() throws {
        let model = try makeModel("p384-llm")
        let (key, pub) = try keyPair("p384", curve: "P-384")
        try ModelSigningTool.signWithKey(model, privateKey: key, signature: model + "/model.sig")
        XCTAssertEqual(try verify(model, ["--publisher", pub]).status, 0)
        try Data("not a bundle".utf8).write(to: URL(fileURLWithPath: model + "/model.sig"))
        let v = try verify(model, ["--publisher", pub])
        XCTAssertEqual(v.status, 1)
        XCTAssertEqual(v.codes, ["model_signature_malformed"])
    }

    func testCertificateChainSignedModel() throws {
        let model = try makeModel("granite-mini")
        let pki = dir.appendingPathComponent("pki").path
        try FileManager.default.createDirectory(atPath: pki, withIntermediateDirectories: true)
        func p(_ f: String) -> String { pki + "/" + f }
        func ext(_ name: String, _ lines: String) throws -> String {
            try Data(lines.utf8).write(to: URL(fileURLWithPath: p(name)))
            return p(name)
        }
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("root.key"), "-out", p("root.pem"),
                     "-subj", "/CN=Acme Model Root", "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("other-root.key"), "-out", p("other-root.pem"),
                     "-subj", "/CN=Other Root", "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("int.key"), "-out", p("int.csr"), "-subj", "/CN=Acme Model Signing CA"])
        try openssl(["x509", "-req", "-in", p("int.csr"), "-CA", p("root.pem"), "-CAkey", p("root.key"), "-CAcreateserial", "-out", p("int.pem"), "-days", "3650",
                     "-extfile", try ext("int.ext", "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n")])
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("leaf.key"), "-out", p("leaf.csr"), "-subj", "/CN=Acme model publisher"])
        try openssl(["x509", "-req", "-in", p("leaf.csr"), "-CA", p("int.pem"), "-CAkey", p("int.key"), "-CAcreateserial", "-out", p("leaf.pem"), "-days", "365",
                     "-extfile", try ext("leaf.ext", "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\nsubjectAltName=email:models@acme.example\n")])
        try ModelSigningTool.signWithCertificate(model, privateKey: p("leaf.key"), certificate: p("leaf.pem"), chain: [p("int.pem")], signature: model + "/model.sig")

        let ok = try verify(model, ["--roots", p("root.pem"), "--identity", "models@acme.example"])
        XCTAssertEqual(ok.status, 0, "\(ok.json)")
        XCTAssertEqual(ok.signature["signerKind"] as? String, "certificate")
        XCTAssertEqual(ok.signature["signer"] as? String, "CN=Acme model publisher (models@acme.example)")
        XCTAssertEqual(try verify(model, ["--roots", p("root.pem")]).status, 0)
        XCTAssertEqual(try verify(model, ["--roots", p("root.pem"), "--identity", "someone@else.example"]).codes, ["model_signer_untrusted"])
        XCTAssertEqual(try verify(model, ["--roots", p("other-root.pem")]).codes, ["model_signer_untrusted"])
        try flipByte(model + "/model-00001-of-00002.safetensors")
        XCTAssertEqual(try verify(model, ["--roots", p("root.pem")]).codes, ["model_file_modified"])

        // A TLS server certificate of the same CA (digitalSignature, extendedKeyUsage serverAuth):
        // model-signing signs with it; Vouch requires codeSigning once an extendedKeyUsage is there.
        let tls = try makeModel("tls-signed")
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", p("tls.key"), "-out", p("tls.csr"), "-subj", "/CN=models.acme.example"])
        try openssl(["x509", "-req", "-in", p("tls.csr"), "-CA", p("int.pem"), "-CAkey", p("int.key"), "-CAcreateserial", "-out", p("tls.pem"), "-days", "365",
                     "-extfile", try ext("tls.ext", "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:models.acme.example\n")])
        try ModelSigningTool.signWithCertificate(tls, privateKey: p("tls.key"), certificate: p("tls.pem"), chain: [p("int.pem")], signature: tls + "/model.sig")
        XCTAssertEqual(try verify(tls, ["--roots", p("root.pem"), "--identity", "models.acme.example"]).codes, ["model_signer_untrusted"])
    }

    /// With the signer's allow_symlinks, a link to a file is hashed through; a link to a directory
    /// (whose files the walk would not compare) or a dangling one is refused.
    func testSymbolicLinks() throws {
        let model = try makeModel("linked-llm")
        let (key, pub) = try keyPair("links")
        let fm = FileManager.default
        try fm.moveItem(atPath: model + "/config.json", toPath: dir.appendingPathComponent("config.json").path)
        try fm.createSymbolicLink(atPath: model + "/config.json", withDestinationPath: dir.appendingPathComponent("config.json").path)
        try ModelSigningTool.run(["sign", "key", model, "--private_key", key, "--signature", model + "/model.sig", "--allow_symlinks"])
        XCTAssertEqual(try verify(model, ["--publisher", pub]).status, 0)
        let elsewhere = dir.appendingPathComponent("elsewhere")
        try fm.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        try Data("unsigned".utf8).write(to: elsewhere.appendingPathComponent("model-00003.safetensors"))
        try fm.createSymbolicLink(atPath: model + "/more", withDestinationPath: elsewhere.path)
        XCTAssertEqual(try TestEnv.run(TestEnv.bin("vouch"), ["model", "verify", model, "--publisher", pub]).status, 1)
        try fm.removeItem(atPath: model + "/more")
        try fm.createSymbolicLink(atPath: model + "/gone", withDestinationPath: dir.appendingPathComponent("nothing").path)
        XCTAssertEqual(try TestEnv.run(TestEnv.bin("vouch"), ["model", "verify", model, "--publisher", pub]).status, 1)
    }

    /// The Sigstore-keyless bundle from model-transparency's own tests (Tests/Fixtures/model-signing,
    /// PROVENANCE.md) against Sigstore's public trusted root, offline.
    func testSigstoreKeylessFixtureVerifiesOffline() throws {
        let model = try copy(try fixture("model-signing/v1.1.0-sigstore").path, "v1.1.0-sigstore")
        let root = try fixture("model-signing/sigstore-trusted-root.json").path
        let keyless = ["--trusted-root", root, "--identity", "stefanb@us.ibm.com", "--issuer", "https://sigstore.verify.ibm.com/oauth2"]
        let ok = try verify(model, keyless + ["--model", "v1.1.0-sigstore"])
        XCTAssertEqual(ok.status, 0, "\(ok.json)")
        XCTAssertEqual(ok.signature["signerKind"] as? String, "sigstore")
        XCTAssertEqual(ok.signature["signedAt"] as? String, "2025-10-10T02:12:20Z")
        XCTAssertEqual(try verify(model, ["--trusted-root", root, "--identity", "someone@us.ibm.com", "--issuer", "https://sigstore.verify.ibm.com/oauth2"]).codes,
                       ["model_signer_untrusted"])
        XCTAssertEqual(try verify(model, ["--trusted-root", root, "--identity", "stefanb@us.ibm.com", "--issuer", "https://accounts.google.com"]).codes,
                       ["model_signer_untrusted"])
        try flipByte(model + "/signme-2")
        XCTAssertEqual(try verify(model, keyless).codes, ["model_file_modified"])
        try Data("an extra file".utf8).write(to: URL(fileURLWithPath: model + "/notes.txt"))
        XCTAssertEqual(Set(try verify(model, keyless).codes), ["model_file_modified", "model_file_extra"])
        // The signer's ignored path (ignore-me) is not compared.
        try Data("ignored".utf8).write(to: URL(fileURLWithPath: model + "/ignore-me"))
        XCTAssertEqual(Set(try verify(model, keyless).codes), ["model_file_modified", "model_file_extra"])
    }

    /// The attester does not measure past a symbolic link to a directory (the walk would not enter
    /// it, so its files would go unmeasured): it refuses; a link to a file is measured through.
    func testAttesterRefusesADirectoryLinkInAModel() throws {
        let model = try makeModel("attester-links")
        let elsewhere = dir.appendingPathComponent("elsewhere-shards")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        try Data("weights".utf8).write(to: elsewhere.appendingPathComponent("model-00003.safetensors"))
        try FileManager.default.createSymbolicLink(atPath: model + "/extra.json", withDestinationPath: model + "/config.json")
        XCTAssertEqual(try ModelMeasurement.artefactPaths([model]).count, 5)
        try FileManager.default.createSymbolicLink(atPath: model + "/shards", withDestinationPath: elsewhere.path)
        XCTAssertThrowsError(try ModelMeasurement.artefactPaths([model])) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue) }
        // --signature and --no-signature exclude each other: a usage error, one line, exit 2.
        let r = try TestEnv.run(TestEnv.bin("vouch-attester"), ["measure-model", "--tcti", "swtpm:port=1", "--model-log", dir.appendingPathComponent("log.json").path,
                                                                 model, "--signature", model + "/model.sig", "--no-signature"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)

        // More signed directories than a log holds: refused before the TPM is touched (the TCTI
        // here reaches nothing), exit 1.
        var signed: [String] = []
        for i in 0..<9 {
            let d = dir.appendingPathComponent("signed-\(i)")
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: try fixture("model-signing/v1.1.0-sigstore/model.sig").path, toPath: d.appendingPathComponent("model.sig").path)
            try Data("w".utf8).write(to: d.appendingPathComponent("w.bin"))
            signed.append(d.path)
        }
        let nine = try TestEnv.run(TestEnv.bin("vouch-attester"), ["measure-model", "--tcti", "swtpm:host=127.0.0.1,port=1", "--model-log",
                                                                    dir.appendingPathComponent("log9.json").path] + signed)
        XCTAssertEqual(nine.status, 1, nine.stderr)
        XCTAssertTrue(nine.stderr.contains("at most 8"), nine.stderr)
    }

    func testUsageErrorsExitTwo() throws {
        let model = try makeModel("usage-llm")
        let (_, pub) = try keyPair("usage")
        for args in [[], ["--publisher", pub, "--roots", pub], ["--publisher", "/nonexistent.pem"], ["--publisher", model + "/config.json"],
                     ["--trusted-root", pub], ["--publisher", pub, "--issuer", "https://x"]] {
            let r = try TestEnv.run(TestEnv.bin("vouch"), ["model", "verify", model] + args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(args): \(r.stderr)")
        }
        XCTAssertEqual(try TestEnv.run(TestEnv.bin("vouch"), ["model", "verify", "/nonexistent-dir", "--publisher", pub]).status, 2)
        // A model.sig linked to a large file is read no further than the bundle limit and refused.
        let big = dir.appendingPathComponent("big.bin")
        try Data(count: 5 << 20).write(to: big)
        let linked = try makeModel("linked-signature")
        try FileManager.default.createSymbolicLink(atPath: linked + "/model.sig", withDestinationPath: big.path)
        let v = try verify(linked, ["--publisher", pub])
        XCTAssertEqual(v.status, 1)
        XCTAssertEqual(v.codes, ["model_signature_malformed"])
        // No model.sig: unreadable input.
        XCTAssertEqual(try TestEnv.run(TestEnv.bin("vouch"), ["model", "verify", model, "--publisher", pub]).status, 2)
    }
}
