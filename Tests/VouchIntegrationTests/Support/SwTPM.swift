import Foundation

/// A software TPM 2.0 (swtpm) manufactured for the test with its own local CA: an RSA EK at
/// 0x81010001 and an ECC P-384 EK at 0x81010016, each with an EK certificate in NV (0x01c00002,
/// 0x01c00016), signed by a CA that exists only in `dir/ca`.
final class SwTPM {
    let dir: URL
    let port: UInt16
    private var server: BackgroundProcess?

    var tcti: String { "swtpm:host=127.0.0.1,port=\(port)" }
    /// Root and intermediate of this TPM's local CA: the EK trust anchors for this test.
    var caDir: URL { dir.appendingPathComponent("ca") }
    var rootCA: URL { caDir.appendingPathComponent("swtpm-localca-rootca-cert.pem") }
    var issuerCA: URL { caDir.appendingPathComponent("issuercert.pem") }

    static let allBanks = "sha1,sha256,sha384,sha512"

    /// `banks`: the PCR banks to activate, comma-separated.
    init(banks: String = "sha256") throws {
        dir = try TestEnv.tempDir("vouch-swtpm")
        let r = try TestEnv.run(TestEnv.packageRoot.appendingPathComponent("scripts/swtpm-manufacture.sh").path, [dir.path],
                                env: ["SWTPM_PCR_BANKS": banks])
        guard r.status == 0 else { throw NSError(domain: "swtpm_setup", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.stderr + r.stdout]) }
        port = TestEnv.freePorts(2)
        try start()
    }

    /// Starts swtpm on `port` (commands) and `port + 1` (control) and returns once both accept
    /// connections and the process is still running a moment later: swtpm listens on one port
    /// before it binds the other, so a connection to the first proves nothing if the second bind
    /// failed and the process is on its way out.
    func start() throws {
        let server = try BackgroundProcess("/usr/bin/swtpm", [
            "socket", "--tpm2", "--tpmstate", "dir=\(dir.appendingPathComponent("state").path)",
            "--server", "type=tcp,port=\(port),bindaddr=127.0.0.1", "--ctrl", "type=tcp,port=\(port + 1),bindaddr=127.0.0.1",
            "--flags", "not-need-init,startup-clear",
        ], log: dir.appendingPathComponent("swtpm.log"))
        self.server = server
        guard TestEnv.waitForPort(port), TestEnv.waitForPort(port + 1) else {
            stop()
            throw NSError(domain: "swtpm", code: 1, userInfo: [NSLocalizedDescriptionKey: "swtpm did not start: \(server.log)"])
        }
        usleep(50_000)
        guard server.process.isRunning else {
            throw NSError(domain: "swtpm", code: 2, userInfo: [NSLocalizedDescriptionKey: "swtpm exited after it started: \(server.log)"])
        }
    }

    func stop() { server?.stop(); server = nil }

    /// Runs a tpm2-tools command against this TPM.
    func tools(_ tool: String, _ args: [String]) throws -> TestEnv.RunResult {
        try TestEnv.run(tool, args, env: ["TPM2TOOLS_TCTI": tcti])
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: dir)
    }
}

extension SwTPM {
    var stateDir: URL { dir.appendingPathComponent("state") }

    /// Copies the TPM's persistent state (stop the TPM first) to `name`.
    func snapshot(_ name: String) throws {
        let to = dir.appendingPathComponent("snapshot-\(name)")
        try? FileManager.default.removeItem(at: to)
        try FileManager.default.copyItem(at: stateDir, to: to)
    }

    /// Replaces the TPM's persistent state with a snapshot (stop the TPM first): a state rollback.
    func restore(_ name: String) throws {
        try FileManager.default.removeItem(at: stateDir)
        try FileManager.default.copyItem(at: dir.appendingPathComponent("snapshot-\(name)"), to: stateDir)
    }
}
