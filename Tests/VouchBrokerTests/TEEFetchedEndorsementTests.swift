import Foundation
import Synchronization
import VouchAPI
import VouchAttestation
import VouchCore
import VouchTEEWire
import XCTest

/// An SEV-SNP guest whose evidence carries no VCEK, through the broker's services: a
/// schema-valid body, refused `snp_vcek_unavailable` (403) when the broker has no
/// `SNPEndorsementSource`, registered and enrolled when it has one (here one that hands out the
/// software TEE's VCEK and counts what it is asked; `AMDKDSFetcher` over HTTP is tested in
/// VouchTEETests).
final class TEEFetchedEndorsementTests: XCTestCase {
    final class Source: SNPEndorsementSource {
        let asked = Mutex<[SNPVCEKRequest]>([])
        func vcek(_ request: SNPVCEKRequest, at now: Date) -> [UInt8]? {
            asked.withLock { $0.append(request) }
            return request.chipID == SoftwareTEEs.snp.chipID ? try? SoftwareTEEs.snp.vcek.der : nil
        }
        func crl(product: SNPProduct, signer: SNPSigningKey, at now: Date) -> [UInt8]? { nil }
    }

    /// A guest whose registration and enrollment evidence is its report alone.
    func withoutVCEK(_ body: TEERegistrationBody) -> TEERegistrationBody {
        var b = body
        b.evidence.endorsement = nil
        return b
    }

    func testAReportWithoutItsVCEKIsRefusedWithoutASourceAndRegistersWithOne() throws {
        let guest = try SoftwareTEEGuest(.snpVCEK)
        let refusing = try Broker(policy: SoftwareTEEs.policy(), tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
        let challenge = try refusing.service.enrollment.createChallenge(ChallengeRequest(hostId: try guest.hostID, purpose: "registration"))
        XCTAssertThrowsError(try refusing.service.registration.registerHost(
            RegisterHostRequest(tee: withoutVCEK(try guest.registration(nonce: challenge.nonce)), hostname: "cvm-1"))) { e in
            XCTAssertEqual((e as? VouchError)?.code, .snpVCEKUnavailable, "\(e)")
            XCTAssertEqual((e as? VouchError)?.code.status, 403)
        }

        let source = Source()
        var trust = SoftwareTEEs.trust
        trust.snpEndorsements = source
        let broker = try Broker(policy: SoftwareTEEs.policy(), tee: trust, allowSimulatedHosts: true)
        let again = try broker.service.enrollment.createChallenge(ChallengeRequest(hostId: try guest.hostID, purpose: "registration"))
        let registered = try broker.service.registration.registerHost(
            RegisterHostRequest(tee: withoutVCEK(try guest.registration(nonce: again.nonce)), hostname: "cvm-1"))
        XCTAssertEqual(registered.hostId, try guest.hostID)
        let asked = source.asked.withLock { $0 }
        XCTAssertEqual(asked.map(\.chipID), [SoftwareTEEs.snp.chipID])
        XCTAssertEqual(asked.first?.products, [.milan], "the product line the report's CPUID names")
        XCTAssertEqual(asked.first?.reportedTCB, SNPTCBVersion(SoftwareTEEs.snp.tcb, product: .milan))
    }
}
