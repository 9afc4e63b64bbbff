import Foundation
import XCTest

/// `vouch-attester gpu-evidence` as a process: eight software GPUs' PPCIe bundle verifies with
/// `vouch evidence verify --kind nvidia-gpu` under the board's published root and the same nonce
/// as eight devices; another nonce is refused; an option override shows in the bundle; without
/// --simulate-gpus on a host without NVIDIA's driver it fails with one line (exit 1); usage errors
/// exit 2.
final class GPUEvidenceCLITests: XCTestCase {
    let nonce = String(repeating: "3c", count: 32)

    func testSoftwareGPUBundleVerifiesWithTheCLI() throws {
        let dir = try TestEnv.tempDir("vouch-gpu-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let platform = dir.appendingPathComponent("platform").path
        let made = try TestEnv.run(TestEnv.bin("vouch-attester"), ["simulated-tee-platform", platform, "--gpus", "8"])
        XCTAssertEqual(made.status, 0, made.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: platform + "/roots/nvidia-gpu.pem"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: platform + "/roots/sev-snp.pem"), "the software TEE's roots stay")
        XCTAssertTrue(FileManager.default.fileExists(atPath: platform + "/rims/vbios.swidtag"))

        let bundle = dir.appendingPathComponent("gpus.json").path
        let collected = try TestEnv.run(TestEnv.bin("vouch-attester"), ["gpu-evidence", "--nonce", nonce, "--simulate-gpus", "8",
                                                                         "--simulate-tee-platform", platform, "--out", bundle])
        XCTAssertEqual(collected.status, 0, collected.stderr)

        func verify(_ nonce: String) throws -> (status: Int32, json: [String: Any]) {
            let r = try TestEnv.run(TestEnv.bin("vouch"), ["evidence", "verify", "--kind", "nvidia-gpu", "--at", ISO8601DateFormatter().string(from: Date()), "--roots", platform + "/roots", "--test-roots",
                                                           "--nonce", nonce, "--json", bundle])
            return (r.status, (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:])
        }
        let ok = try verify(nonce)
        XCTAssertEqual(ok.status, 0, "\(ok.json)")
        let devices = (ok.json["claims"] as? [String: Any])?["devices"] as? [[String: Any]] ?? []
        XCTAssertEqual(devices.count, 8)
        XCTAssertEqual(Set(devices.compactMap { $0["nonce"] as? String }), [nonce])

        let replay = try verify(String(repeating: "5a", count: 32))
        XCTAssertEqual(replay.status, 1)
        let codes = (replay.json["violations"] as? [[String: Any]] ?? []).compactMap { $0["code"] as? String }
        XCTAssertEqual(Set(codes), ["nvidia_gpu_nonce_mismatch"])
        XCTAssertEqual(codes.count, 8)

        // Stdout, and an override read from the options file.
        let options = dir.appendingPathComponent("options")
        try "gpu1.block3=\(String(repeating: "ee", count: 48))\n".write(to: options, atomically: true, encoding: .utf8)
        let printed = try TestEnv.run(TestEnv.bin("vouch-attester"), ["gpu-evidence", "--nonce", nonce, "--simulate-gpus", "2",
                                                                       "--simulate-tee-platform", platform, "--simulate-tee-options", options.path])
        XCTAssertEqual(printed.status, 0, printed.stderr)
        let entries = try JSONSerialization.jsonObject(with: Data(printed.stdout.utf8)) as? [[String: String]] ?? []
        XCTAssertEqual(entries.count, 2)
        let second = Data(base64Encoded: entries[1]["evidence"] ?? "").map { [UInt8]($0) } ?? []
        XCTAssertNotNil(second.firstRange(of: [UInt8](repeating: 0xee, count: 48)))
    }

    func testFailuresAndUsage() throws {
        let attester = TestEnv.bin("vouch-attester")
        for args in [["gpu-evidence"], ["gpu-evidence", "--nonce", "abcd"], ["gpu-evidence", "--nonce", nonce, "--simulate-gpus", "0"],
                     ["gpu-evidence", "--nonce", nonce, "--simulate-tee-platform", "/tmp/x"], ["gpu-evidence", "--nonce", nonce, "--bogus", "1"]] {
            let r = try TestEnv.run(attester, args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1)
        }
        // NVML: no NVIDIA driver on the test machines (gpu_unavailable, one line, exit 1).
        if !FileManager.default.fileExists(atPath: "/dev/nvidiactl") {
            let r = try TestEnv.run(attester, ["gpu-evidence", "--nonce", nonce])
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1)
            XCTAssertTrue(r.stdout.isEmpty)
        }
    }
}
