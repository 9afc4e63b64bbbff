import Foundation
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchTestSupport

extension BrokerHarness {
    /// vouchd for confidential VMs on the software TEE: one simulated machine made in
    /// `dir/platform` (`vouch-attester simulated-tee-platform`), a policy `cvm` allowing its
    /// guests' default launch measurement only (`snp:` and `tdx:` sections), re-attesting every
    /// `interval` with one failed verdict revoking, and vouchd trusting the machine's roots and
    /// TDX collateral (`--allow-simulated-hosts --simulated-tee-roots --tdx-collateral`).
    /// Returns the broker and the platform's directory (for `startTEEAttester`).
    static func simulatedTEE(in dir: URL, interval: String) throws -> (broker: BrokerHarness, platform: String) {
        let platform = dir.appendingPathComponent("platform").path
        let made = try TestEnv.run(TestEnv.bin("vouch-attester"), ["simulated-tee-platform", platform])
        guard made.status == 0 else { throw TestFailure("simulated-tee-platform failed: \(made.stderr)") }
        let good = Hex.encode(SimulatedTEEOptions.defaultMeasurement)
        let policy = dir.appendingPathComponent("cvm.yaml")
        try Data("""
        apiVersion: vouch/v1
        name: cvm
        version: 1
        attestationKey:
          algorithms: [ecc-p256]
        pcrs:
          bank: sha256
          values:
            7: ["\(String(repeating: "0", count: 64))"]
        certificate:
          ttl: 15m
        reattestation:
          interval: \(interval)
          onFailure: {action: revoke, afterFailures: 1, grace: 0s}
        snp:
          measurements: [{name: guest-v1, value: "\(good)"}]
        tdx:
          mrtd: [{name: td-v1, value: "\(good)"}]

        """.utf8).write(to: policy)
        // vouchd needs EK roots, though no TPM host comes here.
        let ekRoot = dir.appendingPathComponent("ek-root.pem")
        let ca = try CertificateAuthority.create(commonName: "unused EK root", key: try PrivateKey.generate(), notBefore: Date(),
                                                 notAfter: Date().addingTimeInterval(3600))
        try Data(try ca.certificate.pem.utf8).write(to: ekRoot)
        let broker = try BrokerHarness(ekRootFiles: [ekRoot], policy: policy.path, extraArgs: [
            "--allow-simulated-hosts", "--simulated-tee-roots", platform + "/roots", "--tdx-collateral", platform + "/tdx-collateral",
        ])
        return (broker, platform)
    }

    /// `GET /v1/hosts/{id}` with the admin token.
    func hostStatus(_ id: String) throws -> HostStatus {
        try admin().call("GET", "/v1/hosts/\(id)", as: HostStatus.self)
    }
}

extension TestEnv {
    /// Polls `condition` every 50 ms until it holds; throws after `timeout`.
    static func waitFor(_ what: String, timeout: TimeInterval, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline { if try condition() { return }; usleep(50_000) }
        throw TestFailure("timed out after \(Int(timeout))s waiting for \(what)")
    }
}
