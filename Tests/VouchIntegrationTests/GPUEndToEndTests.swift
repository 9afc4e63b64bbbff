import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchTestSupport

/// The issue's end-to-end story for composite evidence, as processes: vouchd trusting a simulated
/// machine's roots (its CPU TEE's and its GPU board's) and the board's driver and VBIOS RIMs, a
/// policy requiring eight GPUs whose measurements all match the RIMs; a simulated SEV-SNP guest
/// with eight software GPUs enrolls an agent (the certificate lists the GPUs); one GPU then
/// reports a wrong VBIOS measurement: the next re-attestation is refused and the agent's
/// certificate revoked, and a new enrollment is refused; a guest presenting seven GPUs is refused.
final class GPUEndToEndTests: XCTestCase {
    func testAConfidentialVMWithEightGPUsEnrollsAndAWrongVBIOSMeasurementIsRefusedAndRevokes() throws {
        let dir = try TestEnv.tempDir("gpu-e2e")
        defer { try? FileManager.default.removeItem(at: dir) }
        let platform = dir.appendingPathComponent("platform").path
        let made = try TestEnv.run(TestEnv.bin("vouch-attester"), ["simulated-tee-platform", platform, "--gpus", "8"])
        XCTAssertEqual(made.status, 0, made.stderr)
        let good = Hex.encode(SimulatedTEEOptions.defaultMeasurement)
        let broker = try BrokerHarness.simulatedTEE(dir: dir, platform: platform, policy: "gpu-host", pcrs: false, interval: "15m", sections: """
        snp:
          measurements: [{name: guest-v1, value: "\(good)"}]
        devices:
          gpus:
            count: 8
            referenceValues: required
        """, extraArgs: ["--nvidia-rims", platform + "/rims"])

        let options = dir.appendingPathComponent("guest.options").path
        try Data().write(to: URL(fileURLWithPath: options))
        let guest = try broker.startTEEAttester("sev-snp", platform: platform, options: options, hostname: "gpu-host", extraArgs: ["--simulate-gpus", "8"])
        defer { guest.process.stop() }

        // Enrollment: the report binds the eight GPUs' evidence; the certificate's EAR lists them.
        let agents = dir.appendingPathComponent("agents").path
        let enrolled = try broker.vouch(["enroll", "--name", "model", "--out", agents], socket: guest.socket)
        XCTAssertEqual(enrolled.status, 0, enrolled.stderr + guest.process.log + broker.log)
        let inspect = try broker.vouch(["cert", "inspect", "\(agents)/model.pem", "--ca", broker.brokerCAFile, "--issuer", broker.agentCAFile, "--json"])
        XCTAssertEqual(inspect.status, 0, inspect.stdout + inspect.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(report["attestationVerified"] as? Bool, true)
        let devices = try XCTUnwrap((report["attestation"] as? [String: Any])?["devices"] as? [[String: Any]], inspect.stdout)
        XCTAssertEqual(devices.compactMap { $0["device"] as? String }, (0..<8).map { "gpu\($0)" })
        XCTAssertTrue(devices.allSatisfy { $0["referenceValues"] as? String == "matched" && $0["simulated"] as? Bool == true }, "\(devices)")
        let check = try broker.vouch(["check", "--cert", "\(agents)/model.pem", "--allow-simulated", "--json"])
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        let facts = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(facts["devices"] as? String, ((0..<8).map { "gpu\($0)" } + ["sev-snp"]).joined(separator: ","))

        // GPU 3 reports a wrong VBIOS measurement (block 2, covered by the VBIOS RIM): the next
        // push is refused and the agent's certificate revoked (the policy's onFailure).
        try Data("gpu3.block2=\(String(repeating: "33", count: 48))\n".utf8).write(to: URL(fileURLWithPath: options))
        XCTAssertEqual(try broker.certificateState(of: "\(agents)/model.pem", awaiting: .revoked), .revoked, guest.process.log + broker.log)
        XCTAssertTrue(broker.log.contains("nvidia_gpu_measurement_mismatch"), broker.log)
        let refused = try broker.vouch(["enroll", "--name", "model2", "--out", agents], socket: guest.socket)
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(brokerCode(refused.stderr), "nvidia_gpu_measurement_mismatch", refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(agents)/model2.pem"))

        // A guest presenting seven GPUs where the policy requires eight.
        let seven = try broker.startTEEAttester("sev-snp", platform: platform, options: nil, hostname: "seven", pushInterval: "1h", extraArgs: ["--simulate-gpus", "7"])
        defer { seven.process.stop() }
        let short = try broker.vouch(["enroll", "--name", "x", "--out", agents], socket: seven.socket)
        XCTAssertEqual(short.status, 1)
        XCTAssertEqual(brokerCode(short.stderr), "evidence_missing", short.stderr)
    }
}
