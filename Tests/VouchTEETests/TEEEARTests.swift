import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchEventLog

/// What a certificate's EAR claims for a CPU TEE's evidence: derived from the verified evidence
/// (its `tee` summary), never only from what the caller says about the host.
final class TEEEARTests: XCTestCase {
    func tee(simulated: Bool, measurementName: String?) -> TEEClaims {
        TEEClaims(kind: "sev-snp", measurement: String(repeating: "6a", count: 48), measurementName: measurementName, tcb: "00", tcbStatus: nil,
                  debug: false, signer: "vcek", platform: "Milan", rtmrs: nil, configId: nil, reportData: String(repeating: "00", count: 64),
                  warnings: [], simulated: simulated)
    }

    func claims(_ tee: TEEClaims) -> AttestationExtension {
        AttestationExtension(hostId: String(repeating: "ab", count: 16), attestedAt: Date(timeIntervalSince1970: 1_800_000_000),
                             evidenceType: "sev-snp-report", evidenceDigest: [UInt8](repeating: 1, count: 32), pcrBank: "", pcrDigest: [],
                             policyName: "cvm", policyVersion: 1, policyDigest: [UInt8](repeating: 3, count: 32), modelManifests: [], secureBoot: nil,
                             tee: tee, subject: .init(spiffeId: "spiffe://test.local/agent/a", spkiSHA256: [UInt8](repeating: 5, count: 32)))
    }

    /// The submodule's status and trustworthiness vector.
    func appraisal(_ c: AttestationExtension, simulated: Bool) throws -> (status: String?, vector: [String: Int]) {
        let payload = try c.earPayload(device: "sev-snp", devices: ["sev-snp"], verifierBuild: "test", expiresAt: c.attestedAt.addingTimeInterval(60),
                                       simulated: simulated)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any])
        let submod = try XCTUnwrap((json["submods"] as? [String: Any])?["sev-snp"] as? [String: Any])
        return (submod["ear.status"] as? String, try XCTUnwrap(submod["ear.trustworthiness-vector"] as? [String: Int]))
    }

    func testTheSoftwareTEEsEvidenceClaimsNoHardwareWhateverTheCallerSays() throws {
        let software = try appraisal(claims(tee(simulated: true, measurementName: "guest-v1")), simulated: false)
        XCTAssertEqual(software.status, "warning")
        XCTAssertEqual(software.vector["hardware"], 0)
        let hardware = try appraisal(claims(tee(simulated: false, measurementName: "guest-v1")), simulated: false)
        XCTAssertEqual(hardware.status, "affirming")
        XCTAssertEqual(hardware.vector, ["instance-identity": 2, "hardware": 2, "executables": 2, "configuration": 2])
        XCTAssertEqual(try appraisal(claims(tee(simulated: false, measurementName: "guest-v1")), simulated: true).vector["hardware"], 0)
    }

    func testExecutablesAreAffirmedOnlyWhenAnAllowlistMatched() throws {
        XCTAssertEqual(try appraisal(claims(tee(simulated: false, measurementName: nil)), simulated: false).vector["executables"], 0)
        XCTAssertEqual(AttestationExtension.executablesClaim(tee: nil), 2, "a TPM quote: its PCRs were judged")
    }
}
