import Foundation
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchTestSupport

extension BrokerHarness {
    /// vouchd for confidential VMs on the simulated machine in `platform`, trusting its roots
    /// (`--allow-simulated-hosts --simulated-tee-roots`, then `extraArgs`), under one policy
    /// `policy` v1 — SHA-256 PCR 7 zero (unless `pcrs` is false: a policy for confidential VMs
    /// only), 15-minute certificates, re-attestation every `interval` revoking at the first
    /// failure — with `sections` (YAML) added, and an EK root no TPM host uses (vouchd needs one).
    static func simulatedTEE(dir: URL, platform: String, policy name: String, pcrs: Bool = true, interval: String = "15m", sections: String, extraArgs: [String] = []) throws -> BrokerHarness {
        let policy = dir.appendingPathComponent("\(name).yaml")
        let pcrSection = !pcrs ? "" : """
        attestationKey:
          algorithms: [ecc-p256]
        pcrs:
          bank: sha256
          values:
            7: ["\(String(repeating: "0", count: 64))"]

        """
        try Data("""
        apiVersion: vouch/v1
        name: \(name)
        version: 1
        \(pcrSection)certificate:
          ttl: 15m
        reattestation:
          interval: \(interval)
          onFailure: {action: revoke, afterFailures: 1, grace: 0s}
        \(sections)

        """.utf8).write(to: policy)
        let ekRoot = dir.appendingPathComponent("ek-root.pem")
        let ca = try CertificateAuthority.create(commonName: "unused EK root", key: try PrivateKey.generate(), notBefore: Date(),
                                                 notAfter: Date().addingTimeInterval(3600))
        try Data(try ca.certificate.pem.utf8).write(to: ekRoot)
        return try BrokerHarness(ekRootFiles: [ekRoot], policy: policy.path,
                                 extraArgs: ["--allow-simulated-hosts", "--simulated-tee-roots", platform + "/roots"] + extraArgs)
    }

    /// vouchd for confidential VMs on the software TEE: one simulated machine made in
    /// `dir/platform` (`vouch-attester simulated-tee-platform`), a policy `cvm` for confidential
    /// VMs only (no `pcrs`) allowing its guests' default launch measurement only (`snp:` and
    /// `tdx:` sections), re-attesting every `interval` with one failed verdict revoking, and
    /// vouchd trusting the machine's roots and TDX collateral. Returns the broker and the
    /// platform's directory (for `startTEEAttester`).
    static func simulatedTEE(in dir: URL, interval: String) throws -> (broker: BrokerHarness, platform: String) {
        let platform = dir.appendingPathComponent("platform").path
        let made = try TestEnv.run(TestEnv.bin("vouch-attester"), ["simulated-tee-platform", platform])
        guard made.status == 0 else { throw TestFailure("simulated-tee-platform failed: \(made.stderr)") }
        let good = Hex.encode(SimulatedTEEOptions.defaultMeasurement)
        let broker = try simulatedTEE(dir: dir, platform: platform, policy: "cvm", pcrs: false, interval: interval, sections: """
        snp:
          measurements: [{name: guest-v1, value: "\(good)"}]
        tdx:
          mrtd: [{name: td-v1, value: "\(good)"}]
        """, extraArgs: ["--tdx-collateral", platform + "/tdx-collateral"])
        return (broker, platform)
    }

    /// The state of the certificate in the PEM file `path` (`GET /v1/certificates/{serial}`),
    /// polled every 100 ms until it is `awaited` or `timeout` has passed; the last state seen.
    func certificateState(of path: String, awaiting awaited: CertificateState, timeout: TimeInterval = 30) throws -> CertificateState {
        let serial = try Certificate(pem: String(contentsOfFile: path, encoding: .utf8)).serialHex
        let deadline = Date().addingTimeInterval(timeout)
        var state = CertificateState.valid
        while Date() < deadline {
            state = try admin().call("GET", "/v1/certificates/\(serial)", as: CertificateStatus.self).state
            if state == awaited { break }
            usleep(100_000)
        }
        return state
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
