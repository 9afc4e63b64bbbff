import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto

/// Confidential VMs end to end through the real executables, on the software TEE: one simulated
/// machine (`vouch-attester simulated-tee-platform`), vouchd trusting its roots and TDX
/// collateral (`--allow-simulated-hosts --simulated-tee-roots --tdx-collateral`), and
/// `vouch-attester --simulate-tee` guests in push mode. An agent enrolls on an SEV-SNP guest
/// (VCEK: the host is the chip) and on a TDX guest (the host is its host key); the certificates'
/// EARs and `vouch check` name the TEE claims; a debug guest and a wrong measurement are refused
/// under a policy with a measurement allowlist; a guest whose measurement drifts is refused at
/// its next push and its agent's certificate revoked.
final class TEEEndToEndTests: XCTestCase {
    func testConfidentialVMsEnrollAreRefusedAndRevokedOnDrift() throws {
        let dir = try TestEnv.tempDir("vouch-tee")
        defer { try? FileManager.default.removeItem(at: dir) }
        // The policy, for confidential VMs only (no pcrs): the simulated guests' launch measurement
        // is the only one allowed.
        let (broker, platform) = try BrokerHarness.simulatedTEE(in: dir, interval: "15m")
        let good = Hex.encode(SimulatedTEEOptions.defaultMeasurement)

        // Three guests on the machine: SEV-SNP (VCEK), TDX, and an SEV-SNP guest under the VLEK
        // (its own host, by its host key) that starts as a debug guest.
        let snpOptions = dir.appendingPathComponent("snp.options").path
        let badOptions = dir.appendingPathComponent("bad.options").path
        try Data("debug=true\nsigner=vlek\n".utf8).write(to: URL(fileURLWithPath: badOptions))
        let snp = try broker.startTEEAttester("sev-snp", platform: platform, options: snpOptions, hostname: "cvm-snp")
        let tdx = try broker.startTEEAttester("tdx", platform: platform, options: nil, hostname: "cvm-tdx")
        let bad = try broker.startTEEAttester("sev-snp", platform: platform, options: badOptions, hostname: "cvm-debug", pushInterval: "1h")
        defer { snp.process.stop(); tdx.process.stop(); bad.process.stop() }
        let hosts = try broker.status().hosts
        XCTAssertEqual(Set(hosts.map { $0.platform ?? "" }), ["sev-snp", "tdx"])
        XCTAssertEqual(hosts.count, 3)

        // Enrollment on each TEE host, through the attester's socket as on a TPM host.
        let agents = dir.appendingPathComponent("agents").path
        for (name, guest) in [("payments", snp), ("inference", tdx)] {
            let r = try broker.vouch(["enroll", "--name", name, "--out", agents], socket: guest.socket)
            XCTAssertEqual(r.status, 0, r.stderr + guest.process.log + broker.log)
        }
        // The certificates' EARs name the TEE: evidence type, kind, measurement and its name.
        for (name, type, kind, measurementName) in [("payments", "sev-snp-report", "sev-snp", "guest-v1"), ("inference", "tdx-quote", "tdx", "td-v1")] {
            let inspect = try broker.vouch(["cert", "inspect", "\(agents)/\(name).pem", "--ca", broker.brokerCAFile, "--issuer", broker.agentCAFile, "--json"])
            XCTAssertEqual(inspect.status, 0, inspect.stdout + inspect.stderr)
            let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
            XCTAssertEqual(report["attestationVerified"] as? Bool, true)
            XCTAssertEqual(report["chainVerified"] as? Bool, true)
            let attestation = try XCTUnwrap(report["attestation"] as? [String: Any])
            XCTAssertEqual(attestation["evidenceType"] as? String, type)
            let tee = try XCTUnwrap(attestation["tee"] as? [String: Any])
            XCTAssertEqual(tee["kind"] as? String, kind)
            XCTAssertEqual(tee["measurement"] as? String, good)
            XCTAssertEqual(tee["measurementName"] as? String, measurementName)
            XCTAssertEqual(tee["debug"] as? Bool, false)
            XCTAssertEqual(tee["simulated"] as? Bool, true)

            // vouch check: the host's current EAR (its TEE submodule) with the claims; a simulated
            // host passes only when the caller says simulated hosts will do.
            let strict = try broker.vouch(["check", "--cert", "\(agents)/\(name).pem", "--json"])
            XCTAssertEqual(strict.status, 1)
            XCTAssertEqual(try checkFailureCodes(strict), ["host_simulated"])
            let check = try broker.vouch(["check", "--cert", "\(agents)/\(name).pem", "--allow-simulated", "--json"])
            XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
            let facts = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])
            XCTAssertEqual(facts["devices"] as? String, kind)
            XCTAssertEqual(facts["hostState"] as? String, "trusted")
            XCTAssertTrue((facts["tee"] as? String)?.hasPrefix("\(kind) measurement \(good) (\(measurementName))") == true, "\(facts)")
            XCTAssertTrue((facts["policy"] as? String)?.hasPrefix("vouch:policy:cvm:v1") == true, "\(facts)")
        }

        // `vouch policy capture --host`: the broker's latest report or quote of each guest, verified
        // again here under the software TEE's roots (a simulated host's evidence needs them), drafts
        // the section that admits exactly that guest; the draft lints.
        // (The CLI's --roots is one kind's roots: the platform's sev-snp.pem and tdx.pem apart.)
        var simulatedRoots: [String: String] = [:]
        for (section, file) in [("snp", "sev-snp.pem"), ("tdx", "tdx.pem")] {
            let roots = dir.appendingPathComponent("\(section)-roots")
            try FileManager.default.createDirectory(at: roots, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: "\(platform)/roots/\(file)", toPath: roots.appendingPathComponent(file).path)
            simulatedRoots[section] = roots.path
        }
        for (hostname, section) in [("cvm-snp", "snp"), ("cvm-tdx", "tdx")] {
            let id = try XCTUnwrap(hosts.first { $0.hostname == hostname }?.hostId)
            let pinned = try broker.vouch(["policy", "capture", "--host", id])
            XCTAssertEqual(pinned.status, 2, pinned.stdout + pinned.stderr)
            let draft = try capture(broker, host: id, roots: simulatedRoots[section]!, into: dir.appendingPathComponent("\(section).yaml"))
            XCTAssertTrue(draft.contains("\n\(section):\n") && draft.contains("value: \"\(good)\""), draft)
            XCTAssertFalse(draft.contains("\npcrs:"), draft)
            // The same from a saved bundle; `policy test` judges PCRs and logs, not a TEE's report.
            let saved = dir.appendingPathComponent("\(section)-evidence.json").path
            XCTAssertEqual(try broker.vouch(["status", "--evidence", id, "--out", saved]).status, 0)
            let fromFile = try broker.vouch(["policy", "capture", "--evidence", saved, "--roots", simulatedRoots[section]!, "--test-roots"])
            XCTAssertEqual(fromFile.status, 0, fromFile.stderr)
            XCTAssertTrue(fromFile.stdout.contains("value: \"\(good)\""), fromFile.stdout)
            XCTAssertEqual(try broker.vouch(["policy", "test", dir.appendingPathComponent("\(section).yaml").path, "--evidence", saved]).status, 2)
        }

        // Refusals: a debug guest, then (the same guest, no longer debug) a measurement the
        // policy does not list. The CLI exits 1 naming the broker's code.
        let debug = try broker.vouch(["enroll", "--name", "x", "--out", agents], socket: bad.socket)
        XCTAssertEqual(debug.status, 1)
        XCTAssertEqual(brokerCode(debug.stderr), "snp_debug_enabled", debug.stderr)
        try Data("signer=vlek\nmeasurement=\(String(repeating: "11", count: 48))\n".utf8).write(to: URL(fileURLWithPath: badOptions))
        let wrong = try broker.vouch(["enroll", "--name", "x", "--out", agents], socket: bad.socket)
        XCTAssertEqual(wrong.status, 1)
        XCTAssertEqual(brokerCode(wrong.stderr), "snp_measurement_not_allowed", wrong.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(agents)/x.pem"))

        // A restarted guest keeps its host key: the same host, registered again.
        tdx.process.stop()
        let tdxAgain = try broker.startTEEAttester("tdx", platform: platform, options: nil, hostname: "cvm-tdx", stateDirectory: tdx.stateDirectory)
        defer { tdxAgain.process.stop() }
        XCTAssertEqual(try broker.status().hosts.count, 3)

        // Drift: the SEV-SNP guest's measurement changes; its next push is refused, the host
        // untrusted and its agent's certificate revoked (the policy's onFailure).
        try Data("measurement=\(String(repeating: "22", count: 48))\n".utf8).write(to: URL(fileURLWithPath: snpOptions))
        let serial = try Certificate(pem: String(contentsOfFile: "\(agents)/payments.pem", encoding: .utf8)).serialHex
        let state = try broker.certificateState(of: "\(agents)/payments.pem", awaiting: .revoked)
        XCTAssertEqual(state, .revoked, snp.process.log + broker.log)
        let revoked = try broker.vouch(["check", "--cert", "\(agents)/payments.pem", "--allow-simulated", "--json"])
        XCTAssertEqual(revoked.status, 1)
        XCTAssertEqual(try checkFailureCodes(revoked), ["certificate_revoked", "host_not_trusted"])
        let crl = try broker.vouch(["crl", "--out", dir.appendingPathComponent("crl.der").path])
        XCTAssertEqual(crl.status, 0, crl.stderr)
        XCTAssertTrue(crl.stdout.contains(serial), crl.stdout)
        // The refused report is the host's latest evidence: a capture now drafts the new measurement.
        let snpID = try XCTUnwrap(hosts.first { $0.hostname == "cvm-snp" }?.hostId)
        let drifted = try capture(broker, host: snpID, roots: simulatedRoots["snp"]!, into: dir.appendingPathComponent("drifted.yaml"))
        XCTAssertTrue(drifted.contains("value: \"\(String(repeating: "22", count: 48))\""), drifted)
        // The TDX guest's agent is untouched.
        let still = try broker.vouch(["check", "--cert", "\(agents)/inference.pem", "--allow-simulated", "--json"])
        XCTAssertEqual(still.status, 0, still.stdout)
    }

    /// `--simulated-tee-roots` only with `--allow-simulated-hosts`, and only the software TEE's
    /// roots; `--tdx-collateral` a directory: refused before anything is created (exit 2), as
    /// `--check-config` shows.
    func testTheSoftwareTEEsRootsNeedSimulatedHostsAndNothingElse() throws {
        let dir = try TestEnv.tempDir("vouch-tee-options")
        defer { try? FileManager.default.removeItem(at: dir) }
        let platform = dir.appendingPathComponent("platform").path
        XCTAssertEqual(try TestEnv.run(TestEnv.bin("vouch-attester"), ["simulated-tee-platform", platform]).status, 0)
        let ek = dir.appendingPathComponent("ek")
        try FileManager.default.createDirectory(at: ek, withIntermediateDirectories: true)
        let ca = try CertificateAuthority.create(commonName: "unused EK root", key: try PrivateKey.generate(), notBefore: Date(),
                                                 notAfter: Date().addingTimeInterval(3600))
        try Data(try ca.certificate.pem.utf8).write(to: ek.appendingPathComponent("root.pem"))
        // A "simulated" roots directory holding a CA that is not the software TEE's.
        let foreign = dir.appendingPathComponent("foreign")
        try FileManager.default.createDirectory(at: foreign, withIntermediateDirectories: true)
        try Data(try ca.certificate.pem.utf8).write(to: foreign.appendingPathComponent("tdx.pem"))
        let base = ["--data-dir", dir.appendingPathComponent("data").path, "--policy", TestEnv.packageRoot.appendingPathComponent("policies/development.yaml").path,
                    "--ek-roots", ek.path, "--check-config"]
        let roots = ["--simulated-tee-roots", platform + "/roots"], collateral = ["--tdx-collateral", platform + "/tdx-collateral"]
        let valid = try TestEnv.run(TestEnv.bin("vouchd"), base + ["--allow-simulated-hosts"] + roots + collateral)
        XCTAssertEqual(valid.status, 0, valid.stderr)
        XCTAssertTrue(valid.stdout.contains("simulated-tee-roots: \(platform)/roots  (--simulated-tee-roots)"), valid.stdout)
        for refused in [base + roots, base + ["--allow-simulated-hosts", "--simulated-tee-roots", foreign.path],
                        base + ["--allow-simulated-hosts", "--simulated-tee-roots", ek.path],
                        base + ["--tdx-collateral", dir.appendingPathComponent("missing").path],
                        base + ["--tdx-collateral", platform + "/roots/tdx.pem"]] {
            let r = try TestEnv.run(TestEnv.bin("vouchd"), refused)
            XCTAssertEqual(r.status, 2, "\(refused): \(r.stdout)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("data").path), "a refused configuration changes nothing")
    }

    /// `vouch policy capture --host ID` of a simulated guest, written to `file` and linted; the draft.
    func capture(_ broker: BrokerHarness, host: String, roots: String, into file: URL, line: UInt = #line) throws -> String {
        let r = try broker.vouch(["policy", "capture", "--host", host, "--roots", roots, "--test-roots"])
        XCTAssertEqual(r.status, 0, r.stderr, line: line)
        try r.stdout.write(to: file, atomically: true, encoding: .utf8)
        let lint = try broker.vouch(["policy", "lint", file.path])
        XCTAssertEqual(lint.status, 0, lint.stdout + lint.stderr + r.stdout, line: line)
        return r.stdout
    }
}

/// A running `vouch-attester --simulate-tee` guest.
struct TEEGuestProcess {
    let process: BackgroundProcess
    let socket: String
    let stateDirectory: String
}

extension BrokerHarness {
    /// Starts `vouch-attester --simulate-tee KIND` in push mode (with `listen` ADDR:PORT, pull
    /// mode) on the simulated machine in `platform`, with `options` (read at every report), and
    /// waits for its socket.
    func startTEEAttester(_ kind: String, platform: String, options: String?, hostname: String, pushInterval: String = "1s",
                          stateDirectory: String? = nil, listen: String? = nil, extraArgs: [String] = []) throws -> TEEGuestProcess {
        let tag = UUID().uuidString.prefix(4)
        let socket = dir.appendingPathComponent("tee-\(tag).sock").path
        let state = stateDirectory ?? dir.appendingPathComponent("tee-\(tag)-state").path
        let p = try BackgroundProcess(TestEnv.bin("vouch-attester"), [
            "--broker", url, "--ca", brokerCAFile, "--simulate-tee", kind, "--simulate-tee-platform", platform, "--socket", socket,
            "--hostname", hostname, "--state-dir", state,
        ] + (listen.map { ["--listen", $0] } ?? ["--push-interval", pushInterval]) + (options.map { ["--simulate-tee-options", $0] } ?? []) + extraArgs, log: dir.appendingPathComponent("tee-\(tag).log"))
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && !FileManager.default.fileExists(atPath: socket) {
            guard p.process.isRunning else { break }
            usleep(50_000)
        }
        guard FileManager.default.fileExists(atPath: socket) else {
            throw NSError(domain: "vouch-attester", code: 1, userInfo: [NSLocalizedDescriptionKey: "TEE attester did not start:\n\(p.log)"])
        }
        return TEEGuestProcess(process: p, socket: socket, stateDirectory: state)
    }
}
