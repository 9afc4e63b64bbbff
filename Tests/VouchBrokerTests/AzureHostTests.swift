import Foundation
import VouchAPI
import VouchAttestation
import VouchBroker
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel
import VouchPolicy
import XCTest

/// Azure confidential VMs as hosts, through the broker's services with the software paravisor
/// and vTPM: registration by the host key with the vTPM's EK pinned, enrollment whose EAR carries
/// both the SEV-SNP and the TPM claims, refusals by the `snp:` section, by the `pcrs` and by a
/// quote another AK signed, and re-attestation drift that revokes.
final class AzureHostTests: XCTestCase {
    func assertCode(_ code: ErrorCode, _ body: () throws -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { e in
            XCTAssertEqual((e as? VouchError)?.code ?? (e as? PolicyRefusal)?.error.code, code, "\(e)", line: line)
        }
    }

    func broker(policy: Policy = SoftwareTEEs.policy()) throws -> Broker {
        try Broker(policy: policy, tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
    }

    func testAnAzureCVMRegistersWithItsVTPMPinnedAndEnrollsWithBothClaimsInItsEAR() throws {
        let b = try broker()
        let guest = try SoftwareTEEGuest(.azure)
        let registered = try b.register(guest)
        XCTAssertEqual(registered.hostId, try guest.hostID)
        XCTAssertEqual(registered.platform, "azure-snp-vtpm")
        XCTAssertNil(registered.credentialBlob, "no EK certificate, no credential activation: the SEV-SNP report is the root")
        let host = try XCTUnwrap(b.store.host(id: registered.hostId))
        XCTAssertEqual(host.platform, .azureSNPVTPM)
        XCTAssertEqual(host.akPublic, try guest.hostKeySPKI)
        XCTAssertEqual(host.ekPublic, try guest.azure?.endorsementKey.canonicalSPKIDER, "the vTPM's EK is pinned")
        XCTAssertNotEqual(registered.hostId, TEEHostIdentity.hostID(kind: .sevSNP, hostKeySPKI: try guest.hostKeySPKI))

        let issued = try b.enroll(guest, agent: "payments")
        let ear = try earPayload(issued.certificate)
        XCTAssertEqual((ear["submods"] as? [String: Any]).map { Array($0.keys) }, ["azure-snp-vtpm"])
        let evidence = try XCTUnwrap(ear["vouch.evidence"] as? [String: Any])
        XCTAssertEqual(evidence["type"] as? String, "azure-snp-vtpm")
        XCTAssertEqual(evidence["pcrBank"] as? String, "sha256", "the TPM claims")
        XCTAssertEqual((evidence["pcrDigest"] as? String)?.count, 64)
        let tee = try XCTUnwrap(evidence["tee"] as? [String: Any], "the SEV-SNP claims")
        XCTAssertEqual(tee["kind"] as? String, "azure-snp-vtpm")
        XCTAssertEqual(tee["measurement"] as? String, Hex.encode(SoftwareTEEs.paravisor))
        XCTAssertEqual(tee["measurementName"] as? String, "paravisor-v1")
        XCTAssertEqual(tee["simulated"] as? Bool, true)
        // The certificate's extension reads back (the EAR reader knows the kind).
        let read = try AttestationExtension(extensionValue: try XCTUnwrap(try Certificate(pem: issued.certificate).extensionValue(oid: AttestationExtension.oid)))
        XCTAssertEqual(read.evidenceType, "azure-snp-vtpm")
        XCTAssertEqual(read.tee?.kind, "azure-snp-vtpm")
        let record = try XCTUnwrap(b.store.attestations(HistoryQuery(hostID: host.id, kind: .enrollment)).first)
        XCTAssertNotNil(record.claims?.clock, "the vTPM clock is tracked as a TPM host's")
        XCTAssertEqual(record.claims?.tee?.kind, "azure-snp-vtpm")
        XCTAssertEqual(try b.report(guest).result, .trusted)
    }

    func testAWrongMeasurementAPCRMismatchAndAnotherAKsQuoteAreRefused() throws {
        let b = try broker()
        var guest = try SoftwareTEEGuest(.azure)
        try b.register(guest)
        guest.measurement = [UInt8](repeating: 0x11, count: 48)
        assertCode(.snpMeasurementNotAllowed) { _ = try b.enroll(guest, agent: "a") }
        // A launch the policy admits for plain SEV-SNP guests: such a guest could write its own HCL report.
        guest.measurement = SoftwareTEEs.good
        assertCode(.snpMeasurementNotAllowed) { _ = try b.enroll(guest, agent: "a") }
        guest.measurement = SoftwareTEEs.paravisor
        guest.pcrs = [0: [UInt8](repeating: 0x77, count: 32)]
        assertCode(.pcrNotAllowed) { _ = try b.enroll(guest, agent: "a") }
        guest.pcrs = [:]
        guest.quoteByAnotherAK = true
        assertCode(.quoteSignatureInvalid) { _ = try b.enroll(guest, agent: "a") }
        guest.quoteByAnotherAK = false
        XCTAssertNoThrow(try b.enroll(guest, agent: "a"))
    }

    func testAnAzureCVMNeedsAPolicyWithAnSNPSectionAndKeepsItsVTPM() throws {
        var tpmOnly = Broker.policy()
        tpmOnly.snp = nil
        assertCode(.noPolicy) { _ = try self.broker(policy: tpmOnly).register(try SoftwareTEEGuest(.azure)) }
        // An snp: section without the paravisor's launch pinned covers no Azure CVM, even with
        // allowAnyMeasurement or with the paravisor's launch listed for plain guests.
        var unpinned = SoftwareTEEs.policy()
        unpinned.snp?.paravisorMeasurements = []
        unpinned.snp?.measurements = [SNPPolicy.Measurement(name: "not-a-paravisor", value: SoftwareTEEs.paravisor)]
        unpinned.snp?.allowAnyMeasurement = true
        assertCode(.noPolicy) { _ = try self.broker(policy: unpinned).register(try SoftwareTEEGuest(.azure)) }
        // A plain SEV-SNP guest launched as the paravisor is judged by `measurements` only.
        var plain = try SoftwareTEEGuest(.snpVCEK)
        plain.measurement = SoftwareTEEs.paravisor
        let snpBroker = try broker()
        try snpBroker.register(plain)
        assertCode(.snpMeasurementNotAllowed) { _ = try snpBroker.enroll(plain, agent: "a") }
        // Re-registration: the same host key with another vTPM is refused.
        let b = try broker()
        var guest = try SoftwareTEEGuest(.azure)
        try b.register(guest)
        XCTAssertNoThrow(try b.register(guest), "the same VM registers again")
        try guest.replaceVTPM()
        assertCode(.teeHostMismatch) { _ = try b.register(guest) }
        assertCode(.teeHostMismatch) { _ = try b.enroll(guest, agent: "a") }
    }

    func testDriftAtReattestationUntrustsTheHostAndRevokes() throws {
        let b = try broker()
        for drift in ["measurement", "pcr"] {
            var guest = try SoftwareTEEGuest(.azure)
            try b.register(guest)
            let issued = try b.enroll(guest, agent: "a")
            XCTAssertEqual(try b.report(guest).result, .trusted)
            if drift == "measurement" { guest.measurement = [UInt8](repeating: 0x22, count: 48) } else { guest.pcrs = [0: [UInt8](repeating: 1, count: 32)] }
            let verdict = try b.report(guest)
            XCTAssertEqual(verdict.result, .rejected)
            XCTAssertEqual(verdict.codes, [drift == "measurement" ? "snp_measurement_not_allowed" : "pcr_not_allowed"])
            XCTAssertEqual(verdict.state, "untrusted")
            XCTAssertEqual(verdict.revoked, [issued.serial])
            let record = try XCTUnwrap(b.store.attestations(HistoryQuery(hostID: try guest.hostID, kind: .reattestation)).first)
            XCTAssertEqual(record.claims?.tee?.kind, "azure-snp-vtpm")
        }
    }
}
