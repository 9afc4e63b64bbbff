import Foundation
import VouchAPI
import VouchAttestation
import VouchBroker
import VouchCore
import VouchCrypto
import VouchPolicy
import XCTest

/// Which policy judges a confidential VM, and that no rule of it is dropped for one: a TEE host
/// is matched only by a policy with its kind's section, TPM-only requirements refuse it, and a
/// section admits hosts through the broker only with a measurement allowlist (or
/// `allowAnyMeasurement: true`, which the EAR then does not affirm).
final class TEEPolicyTests: XCTestCase {
    func assertCode(_ code: ErrorCode, _ body: () throws -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { e in
            XCTAssertEqual((e as? VouchError)?.code ?? (e as? PolicyRefusal)?.error.code, code, "\(e)", line: line)
        }
    }

    static let kinds: [SoftwareTEEGuest.Kind] = [.snpVCEK, .snpVLEK, .tdx]

    /// The trustworthiness vector of the (only) submodule of a certificate's EAR.
    func vector(_ pem: String) throws -> [String: Int] {
        let cert = try Certificate(pem: pem)
        let token = try AttestationExtension.ear(extensionValue: try XCTUnwrap(cert.extensionValue(oid: AttestationExtension.oid)))
        let payload = try JWSSigner.base64URLDecode(String(token.split(separator: ".")[1]), field: "payload")
        let ear = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any])
        let submods = try XCTUnwrap(ear["submods"] as? [String: [String: Any]])
        XCTAssertEqual(submods.count, 1)
        return try XCTUnwrap(submods.values.first?["ear.trustworthiness-vector"] as? [String: Int])
    }

    func testAPolicyWithoutTheKindsSectionAdmitsNoTEEHost() throws {
        // A TPM policy that fits every host (no match) is no policy for a confidential VM.
        let tpmOnly = try Broker(policy: Broker.policy(), tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
        for kind in Self.kinds {
            assertCode(.noPolicy) { try tpmOnly.register(try SoftwareTEEGuest(kind)) }
        }
        XCTAssertEqual(try tpmOnly.store.hosts(), [], "nothing registered")
        // An `snp:` section admits SEV-SNP hosts only; a `tdx:` section TDX hosts only.
        var snpOnly = SoftwareTEEs.policy()
        snpOnly.tdx = nil
        let b = try Broker(policy: snpOnly, tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
        XCTAssertNoThrow(try b.register(try SoftwareTEEGuest(.snpVCEK)))
        assertCode(.noPolicy) { try b.register(try SoftwareTEEGuest(.tdx)) }
    }

    func testTPMOnlyRequirementsRefuseATEEHostRatherThanBeingDropped() throws {
        var model = SoftwareTEEs.policy()
        model.model.required = true
        var allowedModel = SoftwareTEEs.policy()
        allowedModel.model.allowed = [Policy.ModelRules.Allowed(name: "m", manifest: String(repeating: "ab", count: 32))]
        var secureBoot = SoftwareTEEs.policy()
        secureBoot.eventLog.secureBoot = true
        var eventLog = SoftwareTEEs.policy()
        eventLog.eventLog.required = true
        for (policy, code) in [(model, ErrorCode.modelMissing), (allowedModel, .modelMissing), (secureBoot, .eventLogMissing), (eventLog, .eventLogMissing)] {
            let b = try Broker(policy: policy, tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
            for kind in Self.kinds {
                let guest = try SoftwareTEEGuest(kind)
                try b.register(guest)
                assertCode(code) { _ = try b.enroll(guest, agent: "a") }
                XCTAssertEqual(try b.report(guest).codes, [code.rawValue])
            }
            XCTAssertEqual(try b.store.certificates(), [])
        }
        // A deny list alone requires nothing: it does not refuse a host without a model.
        var denied = SoftwareTEEs.policy()
        denied.model.denied = [String(repeating: "ab", count: 32)]
        let b = try Broker(policy: denied, tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
        let guest = try SoftwareTEEGuest(.tdx)
        try b.register(guest)
        XCTAssertNoThrow(try b.enroll(guest, agent: "a"))
    }

    func testASectionWithoutAMeasurementAllowlistAdmitsNoHostUnlessItSaysSo() throws {
        var open = SoftwareTEEs.policy()
        open.snp?.measurements = []
        open.tdx?.mrtd = []
        let b = try Broker(policy: open, tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
        for kind in Self.kinds {
            let guest = try SoftwareTEEGuest(kind)
            try b.register(guest)
            let code: ErrorCode = kind == .tdx ? .tdxMRTDNotAllowed : .snpMeasurementNotAllowed
            XCTAssertThrowsError(try b.enroll(guest, agent: "a")) { e in
                let refusal = e as? PolicyRefusal
                XCTAssertEqual(refusal?.error.code, code, "\(e)")
                XCTAssertEqual(refusal?.violations.last?.expected, "an allowlist in the policy")
                XCTAssertEqual(refusal?.violations.last?.path, kind == .tdx ? "tdx.mrtd" : "snp.measurements")
            }
            XCTAssertEqual(try b.report(guest).codes, [code.rawValue])
        }
        XCTAssertEqual(try b.store.certificates(), [])

        // Said so: admitted, and the EAR makes no claim about the executables.
        var any = open
        any.snp?.allowAnyMeasurement = true
        any.tdx?.allowAnyMeasurement = true
        let permissive = try Broker(policy: any, tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
        for kind in Self.kinds {
            let guest = try SoftwareTEEGuest(kind)
            try permissive.register(guest)
            let issued = try permissive.enroll(guest, agent: "a")
            XCTAssertEqual(try vector(issued.certificate)["executables"], 0, "no allowlist matched: no claim")
            XCTAssertNil(try permissive.store.latestAttestation(hostID: try guest.hostID)?.claims?.tee?.measurementName)
            let hostEAR = try permissive.service.queries.ear(hostID: try guest.hostID, nonce: nil, signer: EvidenceResultTests.PayloadSigner())
            let submods = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(hostEAR.utf8)) as? [String: Any])?["submods"] as? [String: [String: Any]])
            XCTAssertEqual((submods.values.first?["ear.trustworthiness-vector"] as? [String: Int])?["executables"], 0, "the host's EAR says the same")
        }
        // An allowlist that matched: affirmed.
        let listed = try Broker(policy: SoftwareTEEs.policy(), tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
        for kind in Self.kinds {
            let guest = try SoftwareTEEGuest(kind)
            try listed.register(guest)
            XCTAssertEqual(try vector(try listed.enroll(guest, agent: "a").certificate)["executables"], 2)
        }
    }
}
