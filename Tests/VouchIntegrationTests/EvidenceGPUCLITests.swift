import Foundation
import XCTest
import VouchTestSupport

/// `vouch evidence verify --kind nvidia-gpu`: every sample of the NVIDIA manifest gives its
/// expected result at the pinned time (the incomplete chains refused, the PPCIe bundle as eight
/// devices); nonces, roots and bad input behave as for the CPU TEE kinds.
final class EvidenceGPUCLITests: XCTestCase {
    struct Outcome { let status: Int32; let json: [String: Any]; let stderr: String }
    let at = "2025-01-01T00:00:00Z"

    func verify(_ files: [URL], extra: [String] = []) throws -> Outcome {
        let r = try TestEnv.run(TestEnv.bin("vouch"), ["evidence", "verify", "--kind", "nvidia-gpu", "--at", at, "--json"] + extra + files.map(\.path))
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
        return Outcome(status: r.status, json: json, stderr: r.stderr)
    }

    func codes(_ o: Outcome) -> [String] { ((o.json["violations"] as? [[String: Any]]) ?? []).compactMap { $0["code"] as? String } }
    func devices(_ o: Outcome) -> [[String: Any]] { ((o.json["claims"] as? [String: Any])?["devices"] as? [[String: Any]]) ?? [] }
    func file(_ path: String) throws -> URL { try fixture("nvidia-gpu/\(path)") }

    func testEveryManifestSampleGivesItsResult() throws {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: file("manifest.json"))) as! [String: Any]
        XCTAssertEqual(manifest["verify_now"] as? String, at)
        var seen = 0
        for sample in manifest["samples"] as! [[String: Any]] {
            let dir = sample["dir"] as! String
            let files: [URL]
            if let report = sample["report"] as? String {
                files = [try file("\(dir)/\(report)"), try file("\(dir)/device_cert_chain.pem")]
            } else if let evidence = (sample["evidence"] as? String)?.split(separator: " ").first {
                files = [try file("\(dir)/\(evidence)")]
            } else { continue }
            let o = try verify(files, extra: ["--nonce", sample["nonce"] as! String])
            XCTAssertEqual(o.status, 0, "\(dir): \(o.json) \(o.stderr)")
            let got = devices(o)
            XCTAssertEqual(got.count, dir.contains("8gpu") ? 8 : 1, dir)
            for d in got {
                XCTAssertEqual(d["driverVersion"] as? String, sample["driver"] as? String, dir)
                XCTAssertEqual(d["vbiosVersion"] as? String, sample["vbios"] as? String, dir)
                XCTAssertEqual(d["nonce"] as? String, sample["nonce"] as? String, dir)
                let refs = (d["measurements"] as? [[String: Any]] ?? []).compactMap { $0["reference"] as? String }
                XCTAssertEqual(Set(refs), ["missing"], "no reference values given: every measurement missing, never matched")
            }
            seen += 1
        }
        XCTAssertEqual(seen, 3)
    }

    func testIncompleteChainsAreRefused() throws {
        let report = try file("h100-nvtrust-sample/attestation_report.hex")
        for (name, code) in [("case2", "nvidia_gpu_chain_invalid"), ("case3", "nvidia_gpu_chain_invalid"), ("case4", "nvidia_gpu_chain_invalid")] {
            let o = try verify([report, try file("negative/hopper_cert_chain_\(name).pem")])
            XCTAssertEqual(o.status, 1, name)
            XCTAssertEqual(codes(o), [code], name)
            XCTAssertTrue(devices(o).isEmpty, "no claims from evidence that is not authentic")
        }
    }

    func testNonceRootsAndBadInput() throws {
        let sample = [try file("h100-nvtrust-sample/attestation_report.hex"), try file("h100-nvtrust-sample/device_cert_chain.pem")]
        let wrong = try verify(sample, extra: ["--nonce", String(repeating: "ab", count: 32)])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertEqual(codes(wrong), ["nvidia_gpu_nonce_mismatch"])
        // The fixtures' roots folder holds the pinned root (and the RIM root, also self-signed: refused as not the pin).
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("gpu-roots-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        try FileManager.default.copyItem(at: try file("roots/nvidia_device_identity_ca.pem"), to: tmp.appendingPathComponent("root.pem"))
        XCTAssertEqual(try verify(sample, extra: ["--roots", tmp.path]).status, 0)
        XCTAssertEqual(try verify(sample, extra: ["--roots", try file("roots").path]).status, 2)
        let other = FileManager.default.temporaryDirectory.appendingPathComponent("gpu-other-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: other) }
        try FileManager.default.copyItem(at: try file("roots/nvidia_corim_signing_root_ca.pem"), to: other.appendingPathComponent("root.pem"))
        let untrusted = try verify(sample, extra: ["--roots", other.path, "--test-roots"])
        XCTAssertEqual(untrusted.status, 1)
        XCTAssertEqual(codes(untrusted), ["nvidia_gpu_chain_invalid"])
        // The transcript as binary reads the same as its hex.
        let binary = tmp.appendingPathComponent("report.bin")
        let hex = try String(decoding: Data(contentsOf: sample[0]), as: UTF8.self).filter { !$0.isWhitespace }
        try Data(stride(from: 0, to: hex.count, by: 2).map { i -> UInt8 in
            let start = hex.index(hex.startIndex, offsetBy: i)
            return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16)!
        }).write(to: binary)
        XCTAssertEqual(try verify([binary, sample[1]]).status, 0)
        // Usage: a short nonce, a policy, no chain, unreadable and unknown files.
        let junk = tmp.appendingPathComponent("junk.bin")
        try Data([1, 2, 3]).write(to: junk)
        for (files, extra) in [(sample, ["--nonce", "abcd"]), (sample, ["--policy", sample[1].path]), ([sample[0]], []),
                               (sample + [URL(fileURLWithPath: "/nonexistent")], []), (sample + [junk], [])] {
            let o = try verify(files, extra: extra)
            XCTAssertEqual(o.status, 2, "\(extra) \(files.map(\.lastPathComponent))")
            XCTAssertEqual(o.stderr.split(separator: "\n").count, 1, o.stderr)
        }
    }

    func warnings(_ o: Outcome) -> [String] { ((o.json["warnings"] as? [[String: Any]]) ?? []).compactMap { $0["code"] as? String } }

    func policyFile(_ gpus: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("gpu-policy-\(UUID().uuidString).yaml")
        try Data("devices:\n  gpus:\n\(gpus)".utf8).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// `--rims`: the CoCo sample's VBIOS RIM is used and its driver RIM reported missing; without
    /// `--policy` that is reported, not refused; a policy requiring reference values refuses it.
    func testRIMsAndTheDevicesPolicy() throws {
        let coco = [try file("h100-coco-ci-trustee/attestation_report.hex"), try file("h100-coco-ci-trustee/device_cert_chain.pem")]
        let nonce = ["--nonce", "87d8e24ab336adafe228d49e83d745f6dba4ae505372b6a5704820856b343fec"]
        let rims = ["--rims", try file("rims").path]
        let reported = try verify(coco, extra: nonce + rims)
        XCTAssertEqual(reported.status, 0, "\(reported.json) \(reported.stderr)")
        XCTAssertEqual(warnings(reported), [])
        let measurements = (devices(reported).first?["measurements"] as? [[String: Any]]) ?? []
        XCTAssertEqual(measurements.filter { $0["reference"] as? String == "matched" }.count, 11)
        XCTAssertEqual(measurements.filter { $0["reference"] as? String == "mismatched" }.compactMap { $0["index"] as? Int }, [10])
        let refs = ((reported.json["claims"] as? [String: Any])?["references"] as? [[String: Any]])?.first
        XCTAssertEqual((refs?["used"] as? [[String: Any]])?.compactMap { $0["file"] as? String }, ["1010_0200_882_960074001A_PROD.swidtag"])
        XCTAssertEqual((refs?["missing"] as? [[String: Any]])?.compactMap { $0["component"] as? String }, ["driver"])

        let required = try verify(coco, extra: nonce + rims + ["--policy", try policyFile("    referenceValues: required\n").path])
        XCTAssertEqual(required.status, 1)
        XCTAssertEqual(Set(codes(required)), ["gpu_reference_missing", "nvidia_gpu_measurement_mismatch"])
        XCTAssertTrue(((required.json["violations"] as? [[String: Any]]) ?? []).contains { $0["path"] as? String == "gpu[0].measurements[10]" })
        let relaxed = try policyFile("    count: 1\n    models: [{project: \"1010\", chipSKU: \"882\"}]\n    minDriverVersion: \"580.95.05\"\n    minVBIOSVersion: \"96.00.74.00.1A\"\n    referenceValues: reported\n")
        XCTAssertEqual(try verify(coco, extra: nonce + rims + ["--policy", relaxed.path]).status, 0)
        let strict = try policyFile("    count: 2\n    models: [{project: G520}]\n    minDriverVersion: \"590.0\"\n    referenceValues: reported\n")
        let refused = try verify(coco, extra: nonce + ["--policy", strict.path])
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(codes(refused), ["gpu_count_mismatch", "gpu_model_not_allowed", "gpu_version_too_old"])
        // A policy file with a bad devices section is unreadable input.
        XCTAssertEqual(try verify(coco, extra: nonce + ["--policy", try policyFile("    count: many\n").path]).status, 2)
    }

    /// The PPCIe bundle under a policy for eight GPUs; without --nonce a warning says freshness is unproven.
    func testEightGPUsUnderAPolicyAndTheNonceWarning() throws {
        let bundle = [try file("h100-ppcie-8gpu-nvtrust/gpu_evidence.json")]
        let policy = try policyFile("    count: 8\n    models: [{project: G520, chipSKU: \"885\"}]\n    minVBIOSVersion: \"96.00.A5.00.01\"\n    referenceValues: reported\n")
        let o = try verify(bundle, extra: ["--policy", policy.path])
        XCTAssertEqual(o.status, 0, "\(o.json)")
        XCTAssertEqual(devices(o).count, 8)
        XCTAssertEqual(warnings(o), ["nonce_not_checked"])
        XCTAssertTrue(o.stderr.contains("nonce_not_checked"), o.stderr)
        let seven = try policyFile("    count: 7\n    referenceValues: reported\n")
        let refused = try verify(bundle, extra: ["--policy", seven.path])
        XCTAssertEqual(codes(refused), ["gpu_count_mismatch"])
        XCTAssertEqual(warnings(refused), ["nonce_not_checked"], "the warning stands on a refusal too")
        // Without RIMs a policy that requires reference values refuses every device, naming it.
        let required = try verify(bundle, extra: ["--policy", try policyFile("    count: 8\n").path])
        XCTAssertEqual(required.status, 1)
        let paths = ((required.json["violations"] as? [[String: Any]]) ?? []).compactMap { $0["path"] as? String }
        XCTAssertEqual(Set(paths.compactMap { $0.split(separator: ".").first.map(String.init) }), Set((0..<8).map { "gpu[\($0)]" }))
    }

    func testRIMOptionsUsage() throws {
        let coco = [try file("h100-coco-ci-trustee/attestation_report.hex"), try file("h100-coco-ci-trustee/device_cert_chain.pem")]
        // The pinned CoRIM root is accepted as --rim-roots; another root only with --test-roots, and then nothing verifies.
        XCTAssertEqual(try verify(coco, extra: ["--rims", try file("rims").path, "--rim-roots", try file("roots/nvidia_corim_signing_root_ca.pem").path]).status, 0)
        let device = try file("roots/nvidia_device_identity_ca.pem").path
        XCTAssertEqual(try verify(coco, extra: ["--rims", try file("rims").path, "--rim-roots", device]).status, 2)
        let other = try verify(coco, extra: ["--rims", try file("rims").path, "--rim-roots", device, "--test-roots"])
        XCTAssertEqual(other.status, 0)
        XCTAssertEqual(Set(warnings(other)), ["nonce_not_checked", "rim_chain_invalid"])
        for extra in [["--rim-roots", device], ["--rims", "/nonexistent"]] {
            let o = try verify(coco, extra: extra)
            XCTAssertEqual(o.status, 2, "\(extra)")
        }
    }

    /// One GPU given twice in a bundle is refused (the same leaf key), not counted as two.
    func testAGPUGivenTwiceIsRefused() throws {
        let bundle = try JSONSerialization.jsonObject(with: Data(contentsOf: file("h100-ppcie-8gpu-nvtrust/gpu_evidence.json"))) as! [[String: Any]]
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("gpu-twice-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: tmp) }
        try JSONSerialization.data(withJSONObject: [bundle[0], bundle[1], bundle[0]]).write(to: tmp)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: file("manifest.json"))) as! [String: Any]
        let nonce = (manifest["samples"] as! [[String: Any]]).first { $0["dir"] as? String == "h100-ppcie-8gpu-nvtrust" }!["nonce"] as! String
        let o = try verify([tmp], extra: ["--nonce", nonce])
        XCTAssertEqual(o.status, 1)
        XCTAssertEqual(codes(o), ["nvidia_gpu_duplicate_device"])
    }
}
