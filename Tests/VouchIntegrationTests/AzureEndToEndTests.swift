import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto

/// An Azure confidential VM end to end through the real executables: vouchd trusting the
/// simulated machine's roots, and `vouch-attester --simulate-tee azure-snp-vtpm` (the software
/// paravisor's HCL reports and its own software vTPM) in push mode. An agent enrolls; its
/// certificate's EAR names both the SEV-SNP report's claims and the vTPM quote's PCRs; a wrong
/// paravisor measurement (`snp.paravisorMeasurements`) — the plain guests' launch in
/// `snp.measurements` included — and a PCR the policy does not allow (`pcrs:`) are refused; a PCR
/// that drifts is refused at the next push and the agent's certificate revoked.
final class AzureEndToEndTests: XCTestCase {
    func testAnAzureCVMEnrollsIsRefusedAndRevokedOnDrift() throws {
        let dir = try TestEnv.tempDir("vouch-azure")
        defer { try? FileManager.default.removeItem(at: dir) }
        let platform = dir.appendingPathComponent("platform").path
        let made = try TestEnv.run(TestEnv.bin("vouch-attester"), ["simulated-tee-platform", platform])
        XCTAssertEqual(made.status, 0, made.stderr)

        let good = Hex.encode(SimulatedTEEOptions.defaultParavisorMeasurement), plainGuest = Hex.encode(SimulatedTEEOptions.defaultMeasurement)
        let broker = try BrokerHarness.simulatedTEE(dir: dir, platform: platform, policy: "azure", sections: """
        snp:
          paravisorMeasurements: [{name: paravisor-v1, value: "\(good)"}]
          measurements: [{name: guest-v1, value: "\(plainGuest)"}]
        """)

        let options = dir.appendingPathComponent("cvm.options").path
        let guest = try broker.startTEEAttester("azure-snp-vtpm", platform: platform, options: options, hostname: "cvm-azure")
        defer { guest.process.stop() }
        let hosts = try broker.status().hosts
        XCTAssertEqual(hosts.map { $0.platform ?? "" }, ["azure-snp-vtpm"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: guest.stateDirectory + "/simulated-vtpm.json"), "the guest's own vTPM")

        let agents = dir.appendingPathComponent("agents").path
        let enrolled = try broker.vouch(["enroll", "--name", "payments", "--out", agents], socket: guest.socket)
        XCTAssertEqual(enrolled.status, 0, enrolled.stderr + guest.process.log + broker.log)
        let inspect = try broker.vouch(["cert", "inspect", "\(agents)/payments.pem", "--ca", broker.brokerCAFile, "--issuer", broker.agentCAFile, "--json"])
        XCTAssertEqual(inspect.status, 0, inspect.stdout + inspect.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(report["attestationVerified"] as? Bool, true)
        let attestation = try XCTUnwrap(report["attestation"] as? [String: Any])
        XCTAssertEqual(attestation["evidenceType"] as? String, "azure-snp-vtpm")
        XCTAssertEqual(attestation["pcrBank"] as? String, "sha256", "the vTPM quote's claims")
        let tee = try XCTUnwrap(attestation["tee"] as? [String: Any], "the SEV-SNP report's claims")
        XCTAssertEqual(tee["kind"] as? String, "azure-snp-vtpm")
        XCTAssertEqual(tee["measurement"] as? String, good)
        XCTAssertEqual(tee["measurementName"] as? String, "paravisor-v1")
        let check = try broker.vouch(["check", "--cert", "\(agents)/payments.pem", "--allow-simulated", "--json"])
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        let facts = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(facts["devices"] as? String, "azure-snp-vtpm")
        XCTAssertTrue((facts["tee"] as? String)?.hasPrefix("azure-snp-vtpm measurement \(good) (paravisor-v1)") == true, "\(facts)")

        // Refusals through the attester's socket: measurements paravisorMeasurements does not list
        // (the plain guests' launch too), then a PCR the pcrs: section does not allow.
        for measurement in [String(repeating: "11", count: 48), plainGuest] {
            try Data("measurement=\(measurement)\n".utf8).write(to: URL(fileURLWithPath: options))
            let wrong = try broker.vouch(["enroll", "--name", "x", "--out", agents], socket: guest.socket)
            XCTAssertEqual(wrong.status, 1)
            XCTAssertEqual(brokerCode(wrong.stderr), "snp_measurement_not_allowed", wrong.stderr)
        }
        try Data("pcr7=\(String(repeating: "ab", count: 32))\n".utf8).write(to: URL(fileURLWithPath: options))
        let pcr = try broker.vouch(["enroll", "--name", "x", "--out", agents], socket: guest.socket)
        XCTAssertEqual(pcr.status, 1)
        XCTAssertEqual(brokerCode(pcr.stderr), "pcr_not_allowed", pcr.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(agents)/x.pem"))

        // The PCR stays drifted: the next push is refused and the agent's certificate revoked.
        let state = try broker.certificateState(of: "\(agents)/payments.pem", awaiting: .revoked)
        XCTAssertEqual(state, .revoked, guest.process.log + broker.log)
    }
}
