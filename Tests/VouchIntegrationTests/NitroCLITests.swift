import Foundation
import XCTest
import VouchTestSupport

/// `vouch evidence verify --kind nitro`: every sample of the Nitro manifest gives its expected
/// result at its pinned time (the debug enclaves refused by default and by a PCR-pinning policy,
/// verified with a warning when a policy allows debug), with the same contract as the CPU TEE
/// kinds (exit 0 verified, 1 refused, 2 unreadable or usage).
final class NitroCLITests: XCTestCase {
    struct Outcome { let status: Int32; let json: [String: Any]; let stderr: String }

    func verify(at: String, _ files: [URL], extra: [String] = []) throws -> Outcome {
        let r = try TestEnv.run(TestEnv.bin("vouch"), ["evidence", "verify", "--kind", "nitro", "--at", at, "--json"] + extra + files.map(\.path))
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
        return Outcome(status: r.status, json: json, stderr: r.stderr)
    }

    func codes(_ o: Outcome) -> [String] { ((o.json["violations"] as? [[String: Any]]) ?? []).compactMap { $0["code"] as? String } }

    func samples() throws -> [(dir: String, at: String, sample: [String: Any])] {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("nitro/manifest.json"))) as! [String: Any]
        return (manifest["samples"] as! [[String: Any]]).map { s in
            (s["dir"] as! String, String((s["now"] as! String).split(separator: " ")[0]), s)
        }
    }

    func testEveryNitroSampleGivesTheManifestResult() throws {
        let base = try fixture("nitro")
        let dir = try TestEnv.tempDir("vouch-nitro-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let allowDebug = dir.appendingPathComponent("nitro.yaml")
        try "nitro:\n  allowDebug: true\n".write(to: allowDebug, atomically: true, encoding: .utf8)
        var seen = 0
        for (name, at, sample) in try samples() {
            let doc = base.appendingPathComponent("\(name)/attestation_doc.cbor")
            let o = try verify(at: at, [doc])
            let claims = try XCTUnwrap(o.json["claims"] as? [String: Any], "\(name): \(o.json) \(o.stderr)")
            XCTAssertEqual(claims["moduleId"] as? String, sample["module_id"] as? String, name)
            if let pcrs = sample["pcrs"] as? [String: String] {
                XCTAssertEqual(o.status, 0, "\(name): \(o.json)")
                XCTAssertEqual(claims["debug"] as? Bool, false)
                // A policy pinning the manifest's PCR0/1/2/8 values verifies and names them.
                let policy = dir.appendingPathComponent("\(name).yaml")
                try ("nitro:\n  pcrs:\n" + pcrs.keys.sorted().map { "    \($0): [{name: pcr\($0), value: \(pcrs[$0]!)}]\n" }.joined())
                    .write(to: policy, atomically: true, encoding: .utf8)
                let pinned = try verify(at: at, [doc], extra: ["--policy", policy.path])
                XCTAssertEqual(pinned.status, 0, "\(pinned.json) \(pinned.stderr)")
                XCTAssertEqual((pinned.json["claims"] as? [String: Any])?["pcrNames"] as? [String: String], ["0": "pcr0", "1": "pcr1", "2": "pcr2", "8": "pcr8"])
            } else {
                XCTAssertEqual(o.status, 1, name)
                XCTAssertEqual(codes(o), ["nitro_debug_refused"], name)
                XCTAssertEqual(claims["debug"] as? Bool, true)
                let allowed = try verify(at: at, [doc], extra: ["--policy", allowDebug.path])
                XCTAssertEqual(allowed.status, 0, name)
                XCTAssertEqual((allowed.json["warnings"] as? [[String: Any]])?.compactMap { $0["code"] as? String }, ["nitro_debug_enclave"])
            }
            seen += 1
        }
        XCTAssertEqual(seen, 3)
    }

    func testNonceBase64ExpiryAndBadInput() throws {
        let base = try fixture("nitro")
        let ga = try samples().first { $0.dir == "ga-2023-debug" }!
        let dir = try TestEnv.tempDir("vouch-nitro-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let allowDebug = dir.appendingPathComponent("nitro.yaml")
        try "nitro:\n  allowDebug: true\n".write(to: allowDebug, atomically: true, encoding: .utf8)
        // The base64 form reads as the document; its 256-byte nonce binds, another does not.
        let b64 = base.appendingPathComponent("ga-2023-debug/attestation_doc.b64")
        let first = try verify(at: ga.at, [b64], extra: ["--policy", allowDebug.path])
        XCTAssertEqual(first.status, 0, "\(first.json) \(first.stderr)")
        let nonce = try XCTUnwrap((first.json["claims"] as? [String: Any])?["nonce"] as? String)
        XCTAssertEqual(nonce.count, 512)
        XCTAssertEqual(try verify(at: ga.at, [b64], extra: ["--policy", allowDebug.path, "--nonce", nonce]).status, 0)
        let wrong = try verify(at: ga.at, [b64], extra: ["--policy", allowDebug.path, "--nonce", "01" + nonce.dropFirst(2)])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertEqual(codes(wrong), ["nitro_nonce_mismatch"])
        // The manifest's negative recipe: a day later the leaf has expired; no claims.
        let later = Date.parseRFC3339(ga.at)!.addingTimeInterval(86_400)
        let expired = try verify(at: ISO8601DateFormatter().string(from: later), [b64], extra: ["--policy", allowDebug.path])
        XCTAssertEqual(expired.status, 1)
        XCTAssertEqual(codes(expired), ["nitro_chain_invalid"])
        XCTAssertNil(expired.json["claims"] as? [String: Any])
        // A corrupt document is refused (exit 1, tee_evidence_malformed); a nonce over 512 bytes,
        // no document, or a roots directory without the AWS root are exit 2.
        let cut = dir.appendingPathComponent("cut.cbor")
        try Data(Array(try Data(contentsOf: base.appendingPathComponent("beta-2022-debug/attestation_doc.cbor"))).prefix(100)).write(to: cut)
        let malformed = try verify(at: ga.at, [cut])
        XCTAssertEqual(malformed.status, 1)
        XCTAssertEqual(codes(malformed), ["tee_evidence_malformed"])
        XCTAssertEqual(try verify(at: ga.at, [b64], extra: ["--nonce", String(repeating: "ab", count: 513)]).status, 2)
        XCTAssertEqual(try verify(at: ga.at, [base.appendingPathComponent("aws_nitro_enclaves_root_g1.pem")]).status, 2)
        let tdxRoots = try fixture("tdx/roots")
        XCTAssertEqual(try verify(at: ga.at, [b64], extra: ["--roots", tdxRoots.path]).status, 2)
        // The corpus's copy of the AWS root, pinned, is the same root.
        let rootDir = dir.appendingPathComponent("roots")
        try FileManager.default.createDirectory(at: rootDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: base.appendingPathComponent("aws_nitro_enclaves_root_g1.pem"), to: rootDir.appendingPathComponent("aws.pem"))
        XCTAssertEqual(try verify(at: ga.at, [b64], extra: ["--roots", rootDir.path, "--policy", allowDebug.path]).status, 0)
    }
}
