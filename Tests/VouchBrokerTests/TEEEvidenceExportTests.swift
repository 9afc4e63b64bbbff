import Foundation
import VouchAPI
import VouchAttestation
import VouchBroker
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEESim
import VouchTEEWire
import XCTest

/// `GET /v1/hosts/{id}/evidence` for a confidential VM: the latest report or quote the broker
/// authenticated (trusted or refused by the policy after that), with the endorsement and the
/// collateral it was verified with — enough to verify it again offline, which these tests do.
final class TEEEvidenceExportTests: XCTestCase {
    func broker() throws -> Broker {
        try Broker(policy: SoftwareTEEs.policy(), tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
    }

    func bytes(_ b64: String?) throws -> [UInt8] { try Base64.decode(try XCTUnwrap(b64), field: "test") }

    func testAnSNPHostsLatestReportIsServedAndVerifiesAgainOffline() throws {
        let b = try broker()
        var guest = try SoftwareTEEGuest(.snpVCEK)
        let host = try b.register(guest).hostId
        XCTAssertThrowsError(try b.service.queries.evidence(hostID: host), "registration keeps no report") { e in
            XCTAssertEqual((e as? VouchError)?.code, .notFound)
        }
        _ = try b.enroll(guest, agent: "payments")
        let bundle = try b.service.queries.evidence(hostID: host)
        XCTAssertEqual(bundle.result, "trusted")
        XCTAssertEqual(bundle.pcrs, [:], "a TEE host has no PCRs")
        let tee = try XCTUnwrap(bundle.tee)
        XCTAssertEqual(tee.kind, "sev-snp")
        XCTAssertTrue(tee.simulated)
        XCTAssertNil(tee.collateral)
        XCTAssertNil(tee.evidence.quote)
        XCTAssertEqual(try bytes(tee.evidence.endorsement), try SoftwareTEEs.snp.vcek.der)
        let report = try bytes(tee.evidence.report)
        XCTAssertEqual(bundle.claims?.tee?.measurement, Hex.encode(try SNPReport(bytes: report).measurement))

        // Offline, under the software TEE's roots, at the time it was recorded: authentic.
        let trust = try XCTUnwrap(SoftwareTEEs.trust.simulatedSNP)
        var anyGuest = SNPPolicy()
        anyGuest.allowAnyMeasurement = true
        let at = try XCTUnwrap(Date.parseRFC3339(bundle.at))
        let again = SNPVerifier(trust: trust).verify(SNPEvidence(report: report, endorsementKey: try bytes(tee.evidence.endorsement)), at: at, policy: anyGuest)
        XCTAssertTrue(again.isVerified, "\(again.violations)")

        // A report the policy refuses after it authenticated is the latest evidence now: what a
        // capture of the drifted guest is drafted from.
        guest.measurement = [UInt8](repeating: 0x22, count: 48)
        XCTAssertThrowsError(try b.enroll(guest, agent: "payments"))
        let drifted = try b.service.queries.evidence(hostID: host)
        XCTAssertEqual(drifted.result, "rejected")
        XCTAssertEqual(drifted.codes, ["snp_measurement_not_allowed"])
        XCTAssertEqual(try SNPReport(bytes: try bytes(drifted.tee?.evidence.report)).measurement, guest.measurement)
        // Evidence that never authenticated (another agent key's binding) changes nothing.
        XCTAssertThrowsError(try b.enroll(guest, agent: "payments", bindingKey: try PrivateKey.generate(.p256)))
        XCTAssertEqual(try b.service.queries.evidence(hostID: host).tee, drifted.tee)

        // The bundle as the API serves it, and back.
        let decoded = try JSONCodec.decode(EvidenceBundle.self, from: JSONCodec.encode(drifted))
        XCTAssertEqual(decoded.tee, drifted.tee)
    }

    func testATDXHostsLatestQuoteComesWithTheCollateralItWasJudgedWith() throws {
        let b = try broker()
        let guest = try SoftwareTEEGuest(.tdx)
        let host = try b.register(guest).hostId
        _ = try b.enroll(guest, agent: "inference")
        let bundle = try b.service.queries.evidence(hostID: host)
        let tee = try XCTUnwrap(bundle.tee)
        XCTAssertEqual(tee.kind, "tdx")
        XCTAssertNil(tee.evidence.report)
        let collateral = try TDXCollateral(dcapQVLJSON: try bytes(tee.collateral))
        XCTAssertEqual(collateral, SoftwareTEEs.collateral)
        let quote = try bytes(tee.evidence.quote)
        let at = try XCTUnwrap(Date.parseRFC3339(bundle.at))
        let again = TDXVerifier(roots: SoftwareTEEs.tdx.roots).verify(quote: quote, collateral: collateral, at: at, policy: TDXPolicy(),
                                                                      expectations: TDXExpectations(reportData: nil, eventLog: nil))
        XCTAssertTrue(again.isVerified, "\(again.violations)")
        XCTAssertEqual(bundle.claims?.tee?.measurement, Hex.encode(SoftwareTEEs.good))

        // A push report replaces it; deleting the host drops it.
        _ = try b.report(guest)
        let reported = try b.service.queries.evidence(hostID: host)
        XCTAssertNotEqual(reported.tee?.evidence.quote, tee.evidence.quote, "each quote binds its own nonce")
        XCTAssertEqual(reported.at, try XCTUnwrap(b.store.latestAttestation(hostID: host)).at.iso8601)
        try b.store.deleteHost(id: host)
        XCTAssertNil(try b.store.latestEvidence(hostID: host)?.teeEvidence)
    }
}
