import Foundation
import XCTest
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchTEESim
import VouchTEEWire
import VouchTestSupport

/// `vouch policy capture --kind …` on every sample of the fixtures' manifests: a sample whose
/// evidence verifies gives a draft that `vouch policy lint` accepts and under which `vouch
/// evidence verify --policy` accepts the same files, and refuses them once the measurement in it
/// is changed; evidence that does not verify gives no draft (exit 1), unreadable input exit 2.
final class PolicyCaptureTEETests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try TestEnv.tempDir("vouch-capture") }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func vouch(_ args: [String]) throws -> TestEnv.RunResult { try TestEnv.run(TestEnv.bin("vouch"), args) }

    func codes(_ r: TestEnv.RunResult) -> [String] {
        ((try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])?["violations"] as? [[String: Any]] ?? [])
            .compactMap { $0["code"] as? String }
    }

    /// Captures, lints, verifies the files under the draft, then under the draft with another
    /// measurement. Returns the draft.
    @discardableResult
    func assertRoundTrip(_ kind: String, at: String, _ files: [URL], measurement: String, refusedWith code: String,
                         line: UInt = #line) throws -> String {
        let paths = files.map(\.path)
        let captured = try vouch(["policy", "capture", "--kind", kind, "--at", at] + paths)
        XCTAssertEqual(captured.status, 0, "\(paths): \(captured.stderr)", line: line)
        let draft = dir.appendingPathComponent("draft-\(UUID().uuidString.prefix(6)).yaml")
        try captured.stdout.write(to: draft, atomically: true, encoding: .utf8)
        let lint = try vouch(["policy", "lint", draft.path])
        XCTAssertEqual(lint.status, 0, "\(lint.stdout) \(lint.stderr)\n\(captured.stdout)", line: line)
        XCTAssertTrue(lint.stdout.contains("confidential VMs only"), lint.stdout, line: line)
        let verified = try vouch(["evidence", "verify", "--kind", kind, "--at", at, "--json", "--policy", draft.path] + paths)
        XCTAssertEqual(verified.status, 0, "\(paths): \(verified.stdout)\n\(captured.stdout)", line: line)
        XCTAssertTrue(captured.stdout.contains("value: \"\(measurement)\""), captured.stdout, line: line)
        let other = String(repeating: "5", count: 96)
        let mutated = dir.appendingPathComponent("mutated.yaml")
        try captured.stdout.replacingOccurrences(of: measurement, with: other).write(to: mutated, atomically: true, encoding: .utf8)
        let refused = try vouch(["evidence", "verify", "--kind", kind, "--at", at, "--json", "--policy", mutated.path] + paths)
        XCTAssertEqual(refused.status, 1, refused.stdout, line: line)
        XCTAssertEqual(codes(refused), [code], line: line)
        return captured.stdout
    }

    func testEverySEVSNPSampleThatVerifiesRoundTrips() throws {
        let (at, samples) = try EvidenceCLITests.snpReportSamples()
        let base = try fixture("sev-snp")
        var seen = 0
        for (dir, files, sample) in samples {
            let measurement = try XCTUnwrap(try claims("sev-snp", at: at, files)["measurement"] as? String)
            let draft = try assertRoundTrip("sev-snp", at: at, files, measurement: measurement, refusedWith: "snp_measurement_not_allowed")
            XCTAssertTrue(draft.contains("signers: [\((sample["signer_type"] as! String).lowercased())]"), "\(dir): \(draft)")
            let tcb = sample["reported_tcb"] as! [String: Int]
            XCTAssertTrue(draft.contains("reported: {bootloader: \(tcb["bl"]!), tee: \(tcb["tee"]!), snp: \(tcb["snp"]!), microcode: \(tcb["ucode"]!)}"),
                          "\(dir): \(draft)")
            // The debug guest: the draft says so, and allows it only because this report is one.
            XCTAssertEqual(draft.contains("allowDebug: true"), sample["policy_debug_bit19"] as? Bool == true, dir)
            if let vmpl = sample["vmpl"] as? Int { XCTAssertTrue(draft.contains("vmpl: [\(vmpl)]"), draft) }
            seen += 1
        }
        XCTAssertEqual(seen, 5)
        // Azure: the SNP report inside the HCL report.
        let azure = ["genoa-azure-cvm/hcl_report.bin", "genoa-azure-cvm/vcek.pem"].map { base.appendingPathComponent($0) }
        let measurement = try XCTUnwrap(((try claims("azure-snp-vtpm", at: at, azure))["snp"] as? [String: Any])?["measurement"] as? String)
        let draft = try assertRoundTrip("azure-snp-vtpm", at: at, azure, measurement: measurement, refusedWith: "snp_measurement_not_allowed")
        XCTAssertTrue(draft.contains("vTPM attestation key"), draft)
        XCTAssertTrue(draft.contains("\n  paravisorMeasurements:\n"), "the paravisor's launch, in its own allowlist: \(draft)")
        XCTAssertFalse(draft.contains("\n  measurements:"), "never admitted for plain SEV-SNP guests: \(draft)")
    }

    func testEveryTDXSampleThatVerifiesRoundTripsAndTheOthersAreRefused() throws {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("tdx/manifest.json"))) as! [String: Any]
        let base = try fixture("tdx")
        var good = 0, refused = 0
        for sample in manifest["samples"] as! [[String: Any]] {
            let dir = sample["dir"] as! String
            var names = [sample["quote"] as! String]
            if let collateral = sample["collateral"] as? String { names.append(collateral) }
            if let files = sample["collateral_files"] as? [String: String] { names += files.values.map { $0.split(separator: " ").first.map(String.init)! } }
            if let log = sample["eventlog"] as? String { names.append(log) }
            let files = names.map { base.appendingPathComponent("\(dir)/\($0)").standardizedFileURL }
            let at = (sample["now"] as? String) ?? "2025-01-01T00:00:00Z"
            let expected = (sample["expected"] as! [String: Any])["tdx_tcb_status"] as? String ?? ""
            if expected.hasPrefix("UpToDate") {
                let c = try claims("tdx", at: at, files)
                let draft = try assertRoundTrip("tdx", at: at, files, measurement: try XCTUnwrap(c["mrtd"] as? String), refusedWith: "tdx_mrtd_not_allowed")
                XCTAssertTrue(draft.contains("acceptedStatuses: [UpToDate]"), draft)
                XCTAssertTrue(draft.contains("minimumEvaluationDataNumber: \(try XCTUnwrap(c["tcbEvaluationDataNumber"] as? Int))"), draft)
                good += 1
            } else {
                // No TCB level matches, or no collateral: authentic, but not evidence to draft from.
                let r = try vouch(["policy", "capture", "--kind", "tdx", "--at", at] + files.map(\.path))
                XCTAssertEqual(r.status, 1, "\(dir): \(r.stdout)")
                XCTAssertEqual(r.stdout, "", "\(dir): no draft")
                XCTAssertTrue(r.stderr.contains(sample["eventlog"] == nil ? "tdx_tcb_level_not_found" : "tdx_tcb_unknown"), "\(dir): \(r.stderr)")
                XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
                refused += 1
            }
        }
        XCTAssertEqual([good, refused], [2, 3])
    }

    func testEvidenceThatDoesNotVerifyOrReadGivesNoDraft() throws {
        let base = try fixture("sev-snp")
        let vlek = ["milan-vlek-trustee/report.bin", "milan-vlek-trustee/vlek.der"].map { base.appendingPathComponent($0).path }
        // The VLEK past its validity: exit 1 naming why, nothing on stdout.
        let expired = try vouch(["policy", "capture", "--kind", "sev-snp", "--at", "2026-01-01T00:00:00Z"] + vlek)
        XCTAssertEqual(expired.status, 1)
        XCTAssertEqual(expired.stdout, "")
        XCTAssertTrue(expired.stderr.contains("snp_certificate_expired"), expired.stderr)
        // A VCEK edited upstream does not chain.
        let edited = try vouch(["policy", "capture", "--kind", "sev-snp", "--at", "2025-06-01T00:00:00Z",
                                base.appendingPathComponent("milan-trustee/report.bin").path, base.appendingPathComponent("negative/vcek-modified-hwid-raw.der").path])
        XCTAssertEqual(edited.status, 1)
        XCTAssertTrue(edited.stderr.contains("snp_endorsement_untrusted"), edited.stderr)
        let junk = dir.appendingPathComponent("junk.bin")
        try Data([1, 2, 3]).write(to: junk)
        let at = "2025-06-01T00:00:00Z"
        for args in [["--kind", "sev-snp", "--at", at, vlek[0], "/nonexistent"], ["--kind", "sev-snp", "--at", at, vlek[0], junk.path],
                     ["--kind", "sev-snp", "--at", at, vlek[0]], ["--kind", "sgx", "--at", at] + vlek, ["--kind", "sev-snp"] + vlek,
                     ["--kind", "sev-snp", "--at", at, "--host", "h"] + vlek, ["--kind", "sev-snp", "--at", at, "--test-roots"] + vlek] {
            let r = try vouch(["policy", "capture"] + args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stdout) \(r.stderr)")
            XCTAssertEqual(r.stdout, "", "\(args)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)")
        }
    }

    /// What the host chooses at launch is pinned even when it chose nothing: a draft captured from
    /// a software-TEE report with HOST_DATA all zeros (a quote with MRCONFIGID and the RTMRs all
    /// zeros) states those zeros, and refuses the same guest launched with HOST_DATA (MRCONFIGID,
    /// RTMR 3) of the host's choosing — init-data a host could otherwise swap in unnoticed.
    func testADraftFromZeroHostChosenValuesRefusesChosenOnes() throws {
        let at = "2026-01-01T00:00:00Z"
        let platform = try SimulatedTEEPlatform.loadOrCreate(directory: dir.appendingPathComponent("platform").path, now: Date.parseRFC3339(at)!)
        func file(_ name: String, _ bytes: [UInt8]) throws -> String {
            let url = dir.appendingPathComponent(name)
            try Data(bytes).write(to: url)
            return url.path
        }
        func roots(_ name: String) throws -> [String] {
            let d = dir.appendingPathComponent("roots-\(name)")
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: platform.rootsDirectory + "/\(name).pem", toPath: d.appendingPathComponent("\(name).pem").path)
            return ["--roots", d.path, "--test-roots"]
        }
        /// Captures from `evidence`, then verifies `evidence` and `chosen` under the draft.
        func capture(_ kind: String, _ roots: [String], _ evidence: [String], chosen: [String], line: UInt = #line) throws -> (draft: String, codes: Set<String>) {
            let captured = try vouch(["policy", "capture", "--kind", kind, "--at", at] + roots + evidence)
            XCTAssertEqual(captured.status, 0, captured.stderr, line: line)
            let draft = dir.appendingPathComponent("\(kind).yaml").path
            try captured.stdout.write(toFile: draft, atomically: true, encoding: .utf8)
            XCTAssertEqual(try vouch(["policy", "lint", draft]).status, 0, captured.stdout, line: line)
            let same = try vouch(["evidence", "verify", "--kind", kind, "--at", at, "--json", "--policy", draft] + roots + evidence)
            XCTAssertEqual(same.status, 0, same.stdout, line: line)
            let other = try vouch(["evidence", "verify", "--kind", kind, "--at", at, "--json", "--policy", draft] + roots + chosen)
            XCTAssertEqual(other.status, 1, other.stdout, line: line)
            return (captured.stdout, Set(codes(other)))
        }

        let vcek = try file("vcek.der", try platform.snp.vcek.der)
        var report = platform.snp.report()
        let zero = try file("zero.bin", try platform.snp.sign(report))
        report.hostData = [UInt8](repeating: 0x11, count: 32)
        let chosen = try file("chosen.bin", try platform.snp.sign(report))
        let snp = try capture("sev-snp", try roots("sev-snp"), [zero, vcek], chosen: [chosen, vcek])
        XCTAssertTrue(snp.draft.contains("  hostData: [\"\(String(repeating: "0", count: 64))\"]\n"), snp.draft)
        XCTAssertEqual(snp.codes, ["snp_host_data_mismatch"])

        let collateral = platform.collateralDirectory + "/\(Hex.encode(platform.tdx.platform.fmspc)).json"
        var body = SoftwareTDX.body()
        let zeroQuote = try file("zero.quote", try platform.tdx.quote(body))
        body.mrConfigID = [UInt8](repeating: 0x22, count: 48)
        body.rtmrs[3] = [UInt8](repeating: 0x33, count: 48)
        let chosenQuote = try file("chosen.quote", try platform.tdx.quote(body))
        let tdx = try capture("tdx", try roots("tdx"), [zeroQuote, collateral], chosen: [chosenQuote, collateral])
        let zeros = "[\"\(String(repeating: "0", count: 96))\"]"
        for key in ["mrConfigId", "mrOwner", "mrOwnerConfig"] { XCTAssertTrue(tdx.draft.contains("  \(key): \(zeros)\n"), tdx.draft) }
        XCTAssertTrue(tdx.draft.contains("    3: \(zeros)\n"), tdx.draft)
        XCTAssertEqual(tdx.codes, ["tdx_mrconfigid_not_allowed", "tdx_rtmr_not_allowed"])
    }

    /// The claims `vouch evidence verify --json` prints for the files (exit 0 or 1).
    func claims(_ kind: String, at: String, _ files: [URL]) throws -> [String: Any] {
        let r = try vouch(["evidence", "verify", "--kind", kind, "--at", at, "--json"] + files.map(\.path))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stderr)
        return try XCTUnwrap(json["claims"] as? [String: Any], r.stdout)
    }
}
