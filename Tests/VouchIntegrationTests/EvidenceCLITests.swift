import Foundation
import XCTest
import VouchTestSupport

/// `vouch evidence verify`: every SEV-SNP and TDX sample of the fixtures' manifests gives its
/// expected result at its pinned time, through the CLI a relying party or auditor runs offline;
/// policies, nonces and bad input behave as documented (exit 0 verified, 1 refused, 2 unreadable).
final class EvidenceCLITests: XCTestCase {
    struct Outcome { let status: Int32; let json: [String: Any]; let stderr: String }

    func verify(_ kind: String, at: String, _ files: [URL], extra: [String] = []) throws -> Outcome {
        let r = try TestEnv.run(TestEnv.bin("vouch"), ["evidence", "verify", "--kind", kind, "--at", at, "--json"] + extra + files.map(\.path))
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
        return Outcome(status: r.status, json: json, stderr: r.stderr)
    }

    func codes(_ o: Outcome) -> [String] { ((o.json["violations"] as? [[String: Any]]) ?? []).compactMap { $0["code"] as? String } }

    /// The SEV-SNP manifest's samples that have a report, with their report and VCEK/VLEK files,
    /// and the manifest's pinned time.
    static func snpReportSamples() throws -> (at: String, samples: [(dir: String, files: [URL], sample: [String: Any])]) {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("sev-snp/manifest.json"))) as! [String: Any]
        let base = try fixture("sev-snp")
        let samples = (manifest["samples"] as! [[String: Any]]).compactMap { sample -> (String, [URL], [String: Any])? in
            guard let report = sample["report"] as? String, let signer = sample["signer"] as? String, let dir = sample["dir"] as? String else { return nil }
            return (dir, [base.appendingPathComponent("\(dir)/\(report)"), base.appendingPathComponent("\(dir)/\(signer)")], sample)
        }
        return (manifest["verify_now"] as! String, samples)
    }

    func testEverySEVSNPSampleGivesTheManifestResult() throws {
        let (at, samples) = try Self.snpReportSamples()
        let base = try fixture("sev-snp")
        var seen = 0
        for (dir, files, sample) in samples {
            let o = try verify("sev-snp", at: at, files)
            let claims = try XCTUnwrap(o.json["claims"] as? [String: Any], dir)
            XCTAssertEqual(claims["signer"] as? String, (sample["signer_type"] as? String)?.lowercased(), dir)
            XCTAssertEqual(claims["version"] as? Int, sample["report_version"] as? Int, dir)
            if sample["policy_debug_bit19"] as? Bool == true {
                // Authentic, but a debug guest: the default policy refuses it, naming why.
                XCTAssertEqual(o.status, 1, dir)
                XCTAssertEqual(codes(o), ["snp_debug_enabled"], dir)
            } else {
                XCTAssertEqual(o.status, 0, "\(dir): \(o.json) \(o.stderr)")
                XCTAssertEqual(o.json["verified"] as? Bool, true, dir)
            }
            seen += 1
        }
        XCTAssertEqual(seen, 5)
        // The report as hex text reads the same as the binary.
        XCTAssertEqual(try verify("sev-snp", at: at, [base.appendingPathComponent("milan-virtee/report.hex"), base.appendingPathComponent("milan-virtee/vcek.der")]).status, 0)
        // The manifest's negative recipes: the VLEK past its validity; a VCEK edited upstream.
        let vlek = [base.appendingPathComponent("milan-vlek-trustee/report.bin"), base.appendingPathComponent("milan-vlek-trustee/vlek.der")]
        let expired = try verify("sev-snp", at: "2026-01-01T00:00:00Z", vlek)
        XCTAssertEqual(expired.status, 1)
        XCTAssertEqual(codes(expired), ["snp_certificate_expired"])
        XCTAssertNil(expired.json["claims"] as? [String: Any], "no claims from evidence that is not authentic")
        let edited = try verify("sev-snp", at: at, [base.appendingPathComponent("milan-trustee/report.bin"), base.appendingPathComponent("negative/vcek-modified-hwid-raw.der")])
        XCTAssertEqual(edited.status, 1)
        XCTAssertEqual(codes(edited), ["snp_endorsement_untrusted"])
        // Azure: the HCL report with its VCEK.
        let azure = try verify("azure-snp-vtpm", at: at, [base.appendingPathComponent("genoa-azure-cvm/hcl_report.bin"), base.appendingPathComponent("genoa-azure-cvm/vcek.pem")])
        XCTAssertEqual(azure.status, 0, "\(azure.json) \(azure.stderr)")
        XCTAssertNotNil((azure.json["claims"] as? [String: Any])?["attestationKey"] as? String)
    }

    func testPoliciesAndNoncesDecideAfterAuthenticity() throws {
        let base = try fixture("sev-snp")
        let at = "2025-06-01T00:00:00Z"
        let debugGuest = [base.appendingPathComponent("milan-gosevguest/report.bin"), base.appendingPathComponent("milan-gosevguest/vcek.der")]
        let dir = try TestEnv.tempDir("vouch-evidence-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        // A file of just the snp: section that allows debug guests: the sample now verifies.
        let allowDebug = dir.appendingPathComponent("snp.yaml")
        try "snp:\n  allowDebug: true\n".write(to: allowDebug, atomically: true, encoding: .utf8)
        XCTAssertEqual(try verify("sev-snp", at: at, debugGuest, extra: ["--policy", allowDebug.path]).status, 0)
        // The nonce go-sev-guest's test bound (01 02 03 04 05, zero-padded) holds; another does not.
        XCTAssertEqual(try verify("sev-snp", at: at, debugGuest, extra: ["--policy", allowDebug.path, "--nonce", "0102030405"]).status, 0)
        let wrongNonce = try verify("sev-snp", at: at, debugGuest, extra: ["--policy", allowDebug.path, "--nonce", "0102030406"])
        XCTAssertEqual(wrongNonce.status, 1)
        XCTAssertEqual(codes(wrongNonce), ["snp_report_data_mismatch"])
        // A measurement allowlist in a whole Vouch policy file: refused, with every failure listed.
        let policy = dir.appendingPathComponent("policy.yaml")
        try """
        apiVersion: vouch/v1
        name: cvm
        version: 1
        pcrs:
          bank: sha256
          values:
            0: ["\(String(repeating: "00", count: 32))"]
        snp:
          measurements:
            - name: other-image
              value: "\(String(repeating: "ab", count: 48))"
        """.write(to: policy, atomically: true, encoding: .utf8)
        let refused = try verify("sev-snp", at: at, debugGuest, extra: ["--policy", policy.path])
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(Set(codes(refused)), ["snp_debug_enabled", "snp_measurement_not_allowed"])

        // Unreadable input, unknown files, bad policies and usage errors: exit 2.
        let junk = dir.appendingPathComponent("junk.bin")
        try Data([1, 2, 3]).write(to: junk)
        let badPolicy = dir.appendingPathComponent("bad.yaml")
        try "snp:\n  allowDebugg: true\n".write(to: badPolicy, atomically: true, encoding: .utf8)
        let report: String = debugGuest[0].path, vcek: String = debugGuest[1].path
        // Other copies of AMD's roots are still pinned; a directory of other roots needs --test-roots.
        let roots = base.appendingPathComponent("roots")
        XCTAssertEqual(try verify("sev-snp", at: at, debugGuest, extra: ["--policy", allowDebug.path, "--roots", roots.path]).status, 0)
        let foreign = dir.appendingPathComponent("foreign-roots")
        try FileManager.default.createDirectory(at: foreign, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: try fixture("tdx/roots/intel_sgx_root_ca.pem"), to: foreign.appendingPathComponent("intel.pem"))
        XCTAssertEqual(try verify("sev-snp", at: at, debugGuest, extra: ["--roots", foreign.path]).status, 2, "not AMD's roots")
        XCTAssertEqual(try verify("tdx", at: "2025-07-01T00:00:00Z", try ["dcapqvl-v4-uptodate/quote.bin", "dcapqvl-v4-uptodate/collateral.json"].map { try fixture("tdx/\($0)") },
                                  extra: ["--roots", foreign.path]).status, 0, "a copy of Intel's root is pinned and accepted")
        let cases: [[String]] = [
            ["--kind", "sev-snp", "--at", at, report, "/nonexistent"],
            ["--kind", "sev-snp", "--at", at, report, junk.path],
            ["--kind", "sev-snp", "--at", at, "--policy", badPolicy.path, report, vcek],
            ["--kind", "sev-snp", "--at", at, report],
            ["--kind", "sgx", "--at", at, report, vcek],
            ["--kind", "sev-snp", "--at", "yesterday", report, vcek],
            ["--kind", "sev-snp", "--at", at, "--nonce", "zz", report, vcek],
            ["--kind", "sev-snp", "--at", at],
            ["--kind", "sev-snp", "--at", at, "--test-roots", report, vcek],
            ["--kind", "sev-snp", "--at", at, "--nonce", "0000", report, vcek],
        ]
        for args in cases {
            let r = try TestEnv.run(TestEnv.bin("vouch"), ["evidence", "verify"] + args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stdout) \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)")
        }
    }

    func testEveryTDXSampleGivesTheManifestResult() throws {
        let base = try fixture("tdx")
        func f(_ names: String...) -> [URL] { names.map { base.appendingPathComponent($0) } }
        let upToDate = try verify("tdx", at: "2025-07-01T00:00:00Z", f("dcapqvl-v4-uptodate/quote.bin", "dcapqvl-v4-uptodate/collateral.json"))
        XCTAssertEqual(upToDate.status, 0, "\(upToDate.json) \(upToDate.stderr)")
        XCTAssertEqual((upToDate.json["claims"] as? [String: Any])?["tcbStatus"] as? String, "UpToDate")
        let noMatch = try verify("tdx", at: "2026-03-01T00:00:00Z", f("dcapqvl-v5-no-tcb-match/quote.bin", "dcapqvl-v5-no-tcb-match/collateral.json"))
        XCTAssertEqual(noMatch.status, 1)
        XCTAssertEqual(codes(noMatch), ["tdx_tcb_level_not_found"])
        let v5 = try verify("tdx", at: "2026-03-01T00:00:00Z", f("gotdxguest-v5/quote.bin", "dcapqvl-v5-no-tcb-match/collateral.json"))
        XCTAssertEqual(v5.status, 0, "\(v5.json)")
        XCTAssertEqual((v5.json["claims"] as? [String: Any])?["quoteVersion"] as? Int, 5)
        // The PCS files by their names.
        let spr = try FileManager.default.contentsOfDirectory(atPath: base.appendingPathComponent("gotdxguest-v4-spr").path).filter { $0 != "SHA256SUMS" }
            .map { base.appendingPathComponent("gotdxguest-v4-spr/\($0)") }
        let sprResult = try verify("tdx", at: "2023-07-01T01:00:00Z", spr)
        XCTAssertEqual(sprResult.status, 1)
        XCTAssertEqual(codes(sprResult), ["tdx_tcb_level_not_found"])
        // Collateral past its window is refused (the quote is still authentic).
        let stale = try verify("tdx", at: "2025-08-01T00:00:00Z", f("dcapqvl-v4-uptodate/quote.bin", "dcapqvl-v4-uptodate/collateral.json"))
        XCTAssertEqual(stale.status, 1)
        // No collateral: authentic, the CCEL log replays to the RTMRs, REPORTDATA is the nonce —
        // and the TCB cannot be judged, which is refused.
        // (The sample's nonce is 64 zero bytes, which --nonce refuses as binding nothing; the
        // claims show REPORTDATA instead.)
        let nonce = try Data(contentsOf: base.appendingPathComponent("ccel-cos113/nonce.bin")).map { String(format: "%02x", $0) }.joined()
        let ccel = try verify("tdx", at: "2025-01-01T00:00:00Z", f("ccel-cos113/quote.bin", "ccel-cos113/ccel_data.bin", "ccel-cos113/ccel_acpi_table.bin"))
        XCTAssertEqual(ccel.status, 1)
        XCTAssertEqual(codes(ccel), ["tdx_tcb_unknown"])
        XCTAssertEqual((ccel.json["claims"] as? [String: Any])?["rtmrsFromEventLog"] as? Bool, true)
        XCTAssertEqual((ccel.json["claims"] as? [String: Any])?["reportData"] as? String, nonce)
        XCTAssertEqual(try verify("tdx", at: "2025-01-01T00:00:00Z", f("ccel-cos113/quote.bin"), extra: ["--nonce", nonce]).status, 2, "a nonce of zeros")
    }
}
