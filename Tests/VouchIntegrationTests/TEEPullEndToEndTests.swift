import Foundation
import XCTest
import VouchAPI
import VouchCrypto

/// Confidential VMs in pull mode through the real executables, on the software TEE: vouchd
/// trusting the simulated machine's roots and collateral, `vouch-attester --simulate-tee KIND
/// --listen` guests serving `POST /v1/evidence` over mutual TLS with their host certificate (the
/// host key). vouchd pulls each on its own schedule: trusted without any enrollment; the SEV-SNP
/// guest's measurement drifts, its next pull is refused and its agent's certificate revoked,
/// while the TDX guest stays trusted. Only the broker's certificate is answered.
final class TEEPullEndToEndTests: XCTestCase {
    func testVouchdPullsConfidentialVMsAndRevokesOnDrift() throws {
        let dir = try TestEnv.tempDir("vouch-tee-pull")
        defer { try? FileManager.default.removeItem(at: dir) }
        // Re-attestation every 10 s (the shortest interval a policy takes); one failure revokes.
        let (broker, platform) = try BrokerHarness.simulatedTEE(in: dir, interval: "10s")

        let port = TestEnv.freePorts(2)
        let snpOptions = dir.appendingPathComponent("snp.options").path
        let snp = try broker.startTEEAttester("sev-snp", platform: platform, options: snpOptions, hostname: "cvm-snp", listen: "127.0.0.1:\(port)")
        let tdx = try broker.startTEEAttester("tdx", platform: platform, options: nil, hostname: "cvm-tdx", listen: "127.0.0.1:\(port + 1)")
        defer { snp.process.stop(); tdx.process.stop() }
        let hosts = try broker.status().hosts
        XCTAssertEqual(hosts.count, 2)
        let snpID = try XCTUnwrap(hosts.first { $0.platform == "sev-snp" }?.hostId)
        let tdxID = try XCTUnwrap(hosts.first { $0.platform == "tdx" }?.hostId)
        for (id, p) in [(snpID, port), (tdxID, port + 1)] {
            let trust = try broker.hostStatus(id).trust
            XCTAssertEqual(trust?.mode, "pull")
            XCTAssertEqual(trust?.attesterURL, "https://127.0.0.1:\(p)")
        }

        // The first pulls come 2 s after registration: trusted without any enrollment.
        try TestEnv.waitFor("the first pulls", timeout: 20) {
            try broker.hostStatus(snpID).trust?.state == "trusted" && broker.hostStatus(tdxID).trust?.state == "trusted"
        }
        let pulled = try broker.hostStatus(snpID)
        XCTAssertNotNil(pulled.trust?.lastVerdictAt)
        XCTAssertEqual(pulled.lastAttestation?.result, "trusted")
        XCTAssertTrue(pulled.lastAttestation?.message.hasPrefix("SEV-SNP report verified") == true, pulled.lastAttestation?.message ?? "")

        // An agent on the SEV-SNP guest.
        let agents = dir.appendingPathComponent("agents").path
        let enrolled = try broker.vouch(["enroll", "--name", "payments", "--out", agents], socket: snp.socket)
        XCTAssertEqual(enrolled.status, 0, enrolled.stderr + snp.process.log + broker.log)

        // The attester answers only the broker: a client with no certificate, or with the agent's
        // (which does not chain to the broker CA), is refused (401 client_certificate_required).
        let evidenceURL = "https://127.0.0.1:\(port)/v1/evidence"
        for client in [[], ["--cert", "\(agents)/payments.pem", "--key", "\(agents)/payments.key"]] {
            let stranger = try TestEnv.run("/usr/bin/curl", ["-sk", "-w", "\n%{http_code}", "-X", "POST", "-d", "{}"] + client + [evidenceURL])
            XCTAssertTrue(stranger.stdout.hasSuffix("\n401") && stranger.stdout.contains("client_certificate_required"), stranger.stdout + stranger.stderr)
        }

        // The SEV-SNP guest's measurement drifts. The next pull (within the 10 s interval) fails
        // the policy: untrusted, the agent's certificate revoked.
        let serial = try Certificate(pem: String(contentsOfFile: "\(agents)/payments.pem", encoding: .utf8)).serialHex
        try Data("measurement=\(String(repeating: "22", count: 48))\n".utf8).write(to: URL(fileURLWithPath: snpOptions))
        try TestEnv.waitFor("the failed pull", timeout: 30) { try broker.hostStatus(snpID).trust?.state == "untrusted" }
        XCTAssertEqual(try broker.hostStatus(snpID).lastAttestation?.codes, ["snp_measurement_not_allowed"])
        XCTAssertEqual(try broker.admin().call("GET", "/v1/certificates/\(serial)", as: CertificateStatus.self).state, .revoked)
        XCTAssertEqual(try broker.hostStatus(tdxID).trust?.state, "trusted")
        XCTAssertTrue(snp.process.log.contains("pull mode: serving sev-snp reports"), snp.process.log)
    }
}
