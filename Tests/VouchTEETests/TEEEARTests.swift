import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchEventLog

/// What a certificate's EAR claims for a CPU TEE's evidence: derived from the verified evidence
/// (its `tee` summary), never only from what the caller says about the host.
final class TEEEARTests: XCTestCase {
    static func tee(simulated: Bool, measurementName: String?) -> TEEClaims {
        TEEClaims(kind: "sev-snp", measurement: String(repeating: "6a", count: 48), measurementName: measurementName, tcb: "00", tcbStatus: nil,
                  debug: false, signer: "vcek", platform: "Milan", rtmrs: nil, configId: nil, reportData: String(repeating: "00", count: 64),
                  warnings: [], simulated: simulated)
    }

    static func claims(_ tee: TEEClaims) -> AttestationExtension {
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
        let software = try appraisal(Self.claims(Self.tee(simulated: true, measurementName: "guest-v1")), simulated: false)
        XCTAssertEqual(software.status, "warning")
        XCTAssertEqual(software.vector["hardware"], 0)
        let hardware = try appraisal(Self.claims(Self.tee(simulated: false, measurementName: "guest-v1")), simulated: false)
        XCTAssertEqual(hardware.status, "affirming")
        XCTAssertEqual(hardware.vector, ["instance-identity": 2, "hardware": 2, "executables": 2, "configuration": 2])
        XCTAssertEqual(try appraisal(Self.claims(Self.tee(simulated: false, measurementName: "guest-v1")), simulated: true).vector["hardware"], 0)
    }

    func testExecutablesAreAffirmedOnlyWhenAnAllowlistMatched() throws {
        XCTAssertEqual(try appraisal(Self.claims(Self.tee(simulated: false, measurementName: nil)), simulated: false).vector["executables"], 0)
        XCTAssertEqual(AttestationExtension.executablesClaim(tee: nil), 2, "a TPM quote: its PCRs were judged")
    }
}

/// The EAR reader asks of each type of evidence what that type carries.
final class TEEEARReaderTests: XCTestCase {
    func payload(_ edit: (inout [String: Any]) -> Void) throws -> [UInt8] {
        let c = TEEEARTests.claims(TEEEARTests.tee(simulated: false, measurementName: "guest-v1"))
        let signed = try c.earPayload(device: "sev-snp", devices: ["sev-snp"], verifierBuild: "test", expiresAt: c.attestedAt.addingTimeInterval(60),
                                      simulated: false)
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(signed)) as? [String: Any])
        var evidence = try XCTUnwrap(json["vouch.evidence"] as? [String: Any])
        edit(&evidence)
        json["vouch.evidence"] = evidence
        return [UInt8](try JSONSerialization.data(withJSONObject: json))
    }

    func field(_ bytes: [UInt8]) -> (ErrorCode?, String?) {
        do { _ = try AttestationExtension(earPayload: bytes); return (nil, nil) } catch {
            return ((error as? VouchError)?.code, (error as? VouchError)?.context["field"])
        }
    }

    func testEachEvidenceTypeNeedsItsOwnClaims() throws {
        XCTAssertEqual(try AttestationExtension(earPayload: try payload { _ in }).tee?.measurementName, "guest-v1")
        // A CPU TEE's EAR without its summary, or with one of the other kind, or with PCRs.
        XCTAssertEqual(field(try payload { $0["tee"] = nil }).1, "vouch.evidence.tee")
        XCTAssertEqual(field(try payload { $0["type"] = "tdx-quote" }).1, "vouch.evidence.tee.kind")
        XCTAssertEqual(field(try payload { $0["pcrBank"] = "sha256"; $0["pcrDigest"] = "00" }).1, "vouch.evidence.pcrBank")
        // A TPM quote's EAR without its PCR bank or digest, or with a TEE summary.
        let tpm: (inout [String: Any]) -> Void = { $0["type"] = "tpm2-quote"; $0["tee"] = nil; $0["pcrBank"] = "sha256"; $0["pcrDigest"] = String(repeating: "00", count: 32) }
        XCTAssertEqual(try AttestationExtension(earPayload: try payload(tpm)).pcrBank, "sha256")
        XCTAssertEqual(field(try payload { tpm(&$0); $0["pcrBank"] = nil }).1, "vouch.evidence.pcrBank")
        XCTAssertEqual(field(try payload { tpm(&$0); $0["pcrDigest"] = nil }).1, "vouch.evidence.pcrDigest")
        XCTAssertEqual(field(try payload { tpm(&$0); $0["tee"] = ["kind": "tdx"] }).0, .invalidValue)
        XCTAssertEqual(field(try payload { $0["type"] = "nitro-document" }).0, .unsupported)
    }
}
