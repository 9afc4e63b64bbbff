import Foundation
import XCTest
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTEESim
import VouchTestSupport

/// `vouch evidence verify --kind composite`: an enrollment body holding a software SEV-SNP
/// guest's report and the corpus's eight real H100s (the PPCIe sample; its SPDM nonce stands for
/// the challenge nonce), the report bound to the composite of the CSR's key and every GPU's
/// digest, verifies offline; a GPU dropped or changed, another nonce, or a report bound to the
/// CSR alone is refused.
final class EvidenceCompositeCLITests: XCTestCase {
    let at = "2025-01-01T00:00:00Z"

    func testAnEnrollmentBodyWithEightGPUsVerifiesAndEveryChangeIsRefused() throws {
        let dir = try TestEnv.tempDir("composite-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let snp = try SoftwareSNP(product: .milan)
        let roots = dir.appendingPathComponent("roots")
        try FileManager.default.createDirectory(at: roots, withIntermediateDirectories: true)
        try (snp.ark.pem + snp.ask.pem).write(to: roots.appendingPathComponent("sev-snp.pem"), atomically: true, encoding: .utf8)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture("nvidia-gpu/manifest.json"))) as! [String: Any]
        let nonceHex = ((manifest["samples"] as! [[String: Any]]).first { $0["dir"] as? String == "h100-ppcie-8gpu-nvtrust" }!["nonce"] as! String)
        let nonce = try Hex.decode(nonceHex)
        let gpus = try NvidiaGPUEvidence.bundle(json: [UInt8](Data(contentsOf: fixture("nvidia-gpu/h100-ppcie-8gpu-nvtrust/gpu_evidence.json"))))
        let csrPEM = try CSR.create(key: try PrivateKey.generate(), commonName: "agent").pem

        /// The body, its report bound to the composite of `bound` (the GPUs the guest saw), carrying `sent`.
        func body(bound: [NvidiaGPUEvidence], sent: [NvidiaGPUEvidence], name: String) throws -> URL {
            let base = EnrollmentBinding.qualifyingData(nonce: nonce, agentSPKI: try CSR(pemOrDER: Array(csrPEM.utf8)).publicKey.spkiDER)
            let composite = EnrollmentBinding.composite(binding: base, devices: bound.enumerated().map { ("gpu\($0.offset)", "nvidia-gpu", $0.element.bindingDigest) })
            let report = try snp.sign(snp.report(reportData: EnrollmentBinding.teeReportData(binding: composite)))
            var request = EnrollRequest(hostId: String(repeating: "0", count: 32), nonce: nonceHex, agentName: "agent", csr: csrPEM,
                                        tee: TEEEvidenceBody(kind: "sev-snp", evidence: TEEEvidenceFields(report: Base64.encode(report), endorsement: Base64.encode(try snp.vcek.der))))
            request.devices = sent.enumerated().map {
                DeviceEvidenceBody(device: "gpu\($0.offset)", kind: "nvidia-gpu", evidence: Base64.encode($0.element.transcript), certificateChain: $0.element.certificateChainPEM)
            }
            let url = dir.appendingPathComponent(name)
            try JSONEncoder().encode(request).write(to: url)
            return url
        }
        func verify(_ file: URL, nonce: String? = nil) throws -> (status: Int32, json: [String: Any], stderr: String) {
            let r = try TestEnv.run(TestEnv.bin("vouch"), ["evidence", "verify", "--kind", "composite", "--at", at, "--json", "--roots", roots.path, "--test-roots"]
                                    + (nonce.map { ["--nonce", $0] } ?? []) + [file.path])
            return (r.status, (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:], r.stderr)
        }
        func codes(_ j: [String: Any]) -> [String] { ((j["violations"] as? [[String: Any]]) ?? []).compactMap { $0["code"] as? String } }

        let good = try verify(try body(bound: gpus, sent: gpus, name: "good.json"), nonce: nonceHex)
        XCTAssertEqual(good.status, 0, "\(good.json) \(good.stderr)")
        let claims = try XCTUnwrap(good.json["claims"] as? [String: Any])
        XCTAssertEqual(claims["purpose"] as? String, "enrollment")
        XCTAssertEqual((claims["devices"] as? [[String: Any]])?.count, 8)
        XCTAssertEqual(claims["platformVerified"] as? Bool, true)

        let dropped = try verify(try body(bound: gpus, sent: Array(gpus.dropLast()), name: "dropped.json"), nonce: nonceHex)
        XCTAssertEqual(dropped.status, 1)
        XCTAssertEqual(codes(dropped.json), ["snp_report_data_mismatch"], "the report bound eight GPUs")
        let alone = try verify(try body(bound: [], sent: gpus, name: "alone.json"), nonce: nonceHex)
        XCTAssertEqual(codes(alone.json), ["snp_report_data_mismatch"], "a report bound to the CSR alone does not vouch for the GPUs")
        let other = try verify(try body(bound: gpus, sent: gpus, name: "other.json"), nonce: String(repeating: "ab", count: 32))
        XCTAssertEqual(other.status, 1)
        XCTAssertEqual(codes(other.json), ["nvidia_gpu_nonce_mismatch"])
        let unchecked = try verify(try body(bound: gpus, sent: gpus, name: "unchecked.json"))
        XCTAssertEqual(unchecked.status, 0)
        XCTAssertTrue(((unchecked.json["warnings"] as? [[String: Any]]) ?? []).contains { $0["code"] as? String == "nonce_not_checked" })

        // --policy's devices: section judges the GPUs as a set; no RIMs given, so only `reported` can pass.
        let goodBody = try body(bound: gpus, sent: gpus, name: "policy.json")
        for (rules, expected) in [("{count: 8, referenceValues: reported}", [String]()), ("{count: 7, referenceValues: reported}", ["gpu_count_mismatch"])] {
            let policy = dir.appendingPathComponent("devices.yaml")
            try Data("devices:\n  gpus: \(rules)\n".utf8).write(to: policy)
            let r = try TestEnv.run(TestEnv.bin("vouch"), ["evidence", "verify", "--kind", "composite", "--at", at, "--json", "--roots", roots.path, "--test-roots",
                                                           "--nonce", nonceHex, "--policy", policy.path, goodBody.path])
            let j = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
            XCTAssertEqual(codes(j), expected, rules + r.stdout + r.stderr)
        }
        // Other GPU roots are pinned to NVIDIA's unless --test-roots.
        let pinned = try TestEnv.run(TestEnv.bin("vouch"), ["evidence", "verify", "--kind", "composite", "--at", at, "--gpu-roots", roots.path, goodBody.path])
        XCTAssertEqual(pinned.status, 2, pinned.stdout + pinned.stderr)

        let junk = dir.appendingPathComponent("junk.json")
        try Data("{\"nonce\": \"x\"}".utf8).write(to: junk)
        XCTAssertEqual(try verify(junk).status, 2)
    }
}
