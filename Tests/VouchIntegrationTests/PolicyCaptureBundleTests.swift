import Foundation
import XCTest
import VouchAPI
import VouchCore
import VouchEventLog
import VouchTestSupport

/// `vouch policy capture --evidence FILE` on bundles that were edited: fields the broker would
/// never have accepted (a hostname carrying YAML, a host id or label that is not one, PCR values
/// and digests that are not hex) draft nothing (exit 2, one line), for a TPM host's bundle and a
/// confidential VM's alike; free text the broker does accept (label values with quotes and
/// backslashes, a boot application's path from the event log) comes out as an escaped scalar or
/// a one-line comment, so that the draft says exactly what the bundle did.
final class PolicyCaptureBundleTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try TestEnv.tempDir("vouch-capture-bundle") }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func vouch(_ args: [String]) throws -> TestEnv.RunResult { try TestEnv.run(TestEnv.bin("vouch"), args) }

    static let hostID = String(repeating: "3c", count: 16)
    static let hostile = "h\ntdx:\n  allowAnyMeasurement: true\n#"

    /// A TPM host's bundle: PCRs 0, 2 and 4, a boot application, the given labels.
    func tpmBundle(labels: [String: String], path: String = "\\EFI\\BOOT\\BOOTX64.EFI") -> EvidenceBundle {
        var boot = BootClaims()
        boot.bootApplications = [.init(pcr: 4, digest: String(repeating: "ab", count: 32), path: path)]
        boot.pcrs = [2, 4]   // replayed from the log
        let claims = EvidenceClaims(boot: boot, model: nil, clock: ClockState(resetCount: 0, restartCount: 0, clock: 1, safe: true),
                                    rebootedSinceLastAttestation: false)
        return EvidenceBundle(hostId: Self.hostID, hostname: "gpu-1.lab", labels: labels, ekIssuer: "test", at: "2026-01-01T00:00:00Z",
                              pcrs: ["sha256": ["0": String(repeating: "00", count: 32), "2": String(repeating: "22", count: 32), "4": String(repeating: "44", count: 32)]],
                              claims: claims, result: "trusted", codes: [], policy: nil)
    }

    /// A confidential VM's bundle: a fixture SEV-SNP report and its VCEK, at the manifest's time.
    func teeBundle(labels: [String: String]) throws -> EvidenceBundle {
        let (at, samples) = try EvidenceCLITests.snpReportSamples()
        let files = try XCTUnwrap(samples.first { $0.dir == "milan-trustee" } ?? samples.first).files
        let tee = TEEEvidenceCopy(kind: "sev-snp", evidence: TEEEvidenceFields(report: Base64.encode(try [UInt8](Data(contentsOf: files[0]))),
                                                                               endorsement: Base64.encode(try [UInt8](Data(contentsOf: files[1])))),
                                  simulated: false)
        return EvidenceBundle(hostId: Self.hostID, hostname: "cvm-1.lab", labels: labels, ekIssuer: "AMD", at: at, pcrs: [:], claims: nil,
                              result: "trusted", codes: [], policy: nil, tee: tee)
    }

    func write(_ bundle: EvidenceBundle, _ name: String = "bundle.json") throws -> String {
        let url = dir.appendingPathComponent(name)
        try JSONEncoder().encode(bundle).write(to: url)
        return url.path
    }

    /// Captures, requires exit 0, writes and lints the draft; returns its path and text.
    func capture(_ bundle: String, line: UInt = #line) throws -> (path: String, text: String) {
        let r = try vouch(["policy", "capture", "--evidence", bundle])
        XCTAssertEqual(r.status, 0, r.stderr, line: line)
        let draft = dir.appendingPathComponent("draft-\(UUID().uuidString.prefix(6)).yaml").path
        try r.stdout.write(toFile: draft, atomically: true, encoding: .utf8)
        let lint = try vouch(["policy", "lint", draft])
        XCTAssertEqual(lint.status, 0, lint.stderr + "\n" + r.stdout, line: line)
        return (draft, r.stdout)
    }

    func assertRefused(_ bundle: EvidenceBundle, _ what: String, line: UInt = #line) throws {
        let r = try vouch(["policy", "capture", "--evidence", try write(bundle)])
        XCTAssertEqual(r.status, 2, "\(what): \(r.stdout) \(r.stderr)", line: line)
        XCTAssertEqual(r.stdout, "", what, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "\(what), one line: \(r.stderr)", line: line)
    }

    func testLabelValuesAndPathsAreEscapedAndMatchExactly() throws {
        // Printable ASCII the broker accepts in a label value, including what YAML would read otherwise.
        let labels = ["env": #"a"b\c#d:e"#, "team": "x'y", "tier": "{[*&!|>%@`]}", "n": "null"]
        let bundle = try write(tpmBundle(labels: labels, path: "\\EFI\nreattestation:\n  grace: 1d\r\u{2028}x"))
        let (draft, text) = try capture(bundle)
        XCTAssertTrue(text.contains(#"    env: "a\"b\\c#d:e""#), text)
        XCTAssertFalse(text.contains("\nreattestation:"), "the path stays in its comment: \(text)")
        // The policy's match selects the bundle's host: every label came back exactly.
        let test = try vouch(["policy", "test", draft, "--evidence", bundle])
        XCTAssertEqual(test.status, 0, test.stdout + test.stderr)
        XCTAssertFalse(test.stdout.contains("does not select"), test.stdout)

        let tee = try capture(try write(try teeBundle(labels: labels), "tee.json"))
        XCTAssertTrue(tee.text.contains(#"    env: "a\"b\\c#d:e""#), tee.text)
    }

    func testFieldsTheBrokerWouldRefuseDraftNothing() throws {
        var cases: [(String, EvidenceBundle)] = []
        func edit(_ what: String, _ change: (inout EvidenceBundle) -> Void) {
            var b = tpmBundle(labels: ["env": "lab"])
            change(&b)
            cases.append((what, b))
        }
        edit("hostname with YAML") { $0.hostname = Self.hostile }
        edit("hostname upper case") { $0.hostname = "GPU-1" }
        edit("host id") { $0.hostId = "not-hex\n" }
        edit("label value with a newline") { $0.labels["env"] = "lab\ntdx:" }
        edit("label value with a space") { $0.labels["env"] = "a b" }
        edit("label name") { $0.labels["env\nx"] = "lab" }
        edit("too many labels") { b in for i in 0...64 { b.labels["l\(i)"] = "v" } }
        edit("time") { $0.at = "yesterday\n" }
        edit("PCR index") { $0.pcrs["sha256"]?["07"] = String(repeating: "00", count: 32) }
        edit("PCR value") { $0.pcrs["sha256"]?["1"] = "zz\"]\n" }
        edit("boot application digest") { $0.claims?.boot?.bootApplications[0].digest = "ab\"\nx: 1" }
        edit("model manifest") { $0.claims?.model = ModelClaims(manifestDigest: "zz\nx: 1", files: []) }
        for (what, bundle) in cases { try assertRefused(bundle, what) }
        // A confidential VM's bundle: refused before its evidence is verified.
        var tee = try teeBundle(labels: [:])
        tee.hostname = Self.hostile
        try assertRefused(tee, "TEE hostname with YAML")
        tee = try teeBundle(labels: ["env": "\"\n"])
        try assertRefused(tee, "TEE label value")
    }
}
