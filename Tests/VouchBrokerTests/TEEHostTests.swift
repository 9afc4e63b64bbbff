import Foundation
import VouchAPI
import VouchAttestation
import VouchBroker
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel
import VouchTEESim
import XCTest

/// Confidential VMs as hosts, through the broker's services with the software TEE (SEV-SNP with a
/// VCEK or a VLEK, TDX with collateral): registration in one step, enrollment and re-attestation
/// through the same evidence verifiers as TPM hosts, and every refusal the brief names.
final class TEEHostTests: XCTestCase {
    func assertCode(_ code: ErrorCode, _ body: () throws -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { e in
            XCTAssertEqual((e as? VouchError)?.code ?? (e as? PolicyRefusal)?.error.code, code, "\(e)", line: line)
        }
    }

    func broker(allowSimulated: Bool = true) throws -> Broker {
        try Broker(policy: SoftwareTEEs.policy(), tee: SoftwareTEEs.trust, allowSimulatedHosts: allowSimulated)
    }

    // MARK: registration and enrollment

    func testAnSNPHostRegistersByItsHostKeyWithItsChipPinnedAndEnrollsWithAnEARNamingTheTEE() throws {
        let b = try broker()
        let guest = try SoftwareTEEGuest(.snpVCEK)
        let registered = try b.register(guest)
        XCTAssertEqual(registered.hostId, try guest.hostID)
        XCTAssertEqual(registered.platform, "sev-snp")
        XCTAssertNil(registered.credentialBlob, "no credential activation: the report is the proof")
        let hostCert = try Certificate(pem: try XCTUnwrap(registered.hostCertificate))
        XCTAssertEqual(hostCert.uriSANs, ["spiffe://test.local/host/\(registered.hostId)"])
        XCTAssertEqual(try hostCert.publicKey.canonicalSPKIDER, try guest.hostKeySPKI)
        let host = try XCTUnwrap(b.store.host(id: registered.hostId))
        XCTAssertEqual(host.platform, .sevSNP)
        XCTAssertEqual(host.akPublic, try guest.hostKeySPKI, "every TEE host is its host key")
        XCTAssertEqual(host.ekPublic, SoftwareTEEs.snp.chipID, "a VCEK host's chip is pinned")
        XCTAssertEqual(host.akState, .active)
        let trust = try XCTUnwrap(b.store.trust(hostID: host.id))
        XCTAssertEqual(trust.hostCertificateSerial, hostCert.serialHex)
        XCTAssertTrue(trust.simulated, "the software TEE's evidence marks a simulated host")

        let issued = try b.enroll(guest, agent: "payments")
        XCTAssertEqual(issued.spiffeId, "spiffe://test.local/host/\(host.id)/agent/payments")
        let ear = try earPayload(issued.certificate)
        XCTAssertEqual((ear["submods"] as? [String: Any]).map { Array($0.keys) }, ["sev-snp"])
        let evidence = try XCTUnwrap(ear["vouch.evidence"] as? [String: Any])
        XCTAssertEqual(evidence["type"] as? String, "sev-snp-report")
        XCTAssertNil(evidence["pcrDigest"], "a TEE has no PCRs")
        let claims = try XCTUnwrap(AttestationExtension(extensionValue: try Certificate(pem: issued.certificate).extensionValue(oid: AttestationExtension.oid)!).tee)
        XCTAssertEqual([claims.kind, claims.measurementName, claims.signer], ["sev-snp", "guest-v1", "vcek"])
        XCTAssertEqual(claims.measurement, Hex.encode(SoftwareTEEs.good))
        XCTAssertFalse(claims.debug)
        let decision = try XCTUnwrap(b.store.latestAttestation(hostID: host.id))
        XCTAssertTrue(decision.trusted)
        XCTAssertEqual(decision.claims?.tee, claims)
        XCTAssertNil(decision.claims?.clock)
        XCTAssertEqual(try b.state(host.id), .trusted)
        XCTAssertEqual(try b.service.queries.hostStatus(id: host.id).platform, "sev-snp")
        // The host's current EAR: one submodule, the TEE; a warning, as for any simulated host.
        let hostEAR = try b.service.queries.ear(hostID: host.id, nonce: nil, signer: EvidenceResultTests.PayloadSigner())
        let submods = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(hostEAR.utf8)) as? [String: Any])?["submods"] as? [String: Any])
        XCTAssertEqual(Array(submods.keys), ["sev-snp"])
        XCTAssertEqual((submods["sev-snp"] as? [String: Any])?["ear.status"] as? String, "warning")
    }

    func testAVLEKHostIsItsHostKeyAndSignsEveryPieceOfEvidence() throws {
        let b = try broker()
        let guest = try SoftwareTEEGuest(.snpVLEK)
        let registered = try b.register(guest)
        XCTAssertEqual(registered.hostId, TEEHostIdentity.hostID(kind: .sevSNP, hostKeySPKI: try guest.hostKeySPKI))
        XCTAssertEqual(try b.store.host(id: registered.hostId)?.ekPublic, [], "no chip identity behind a VLEK")
        let commits = b.store.commits
        assertCode(.teeHostMismatch) { _ = try b.enroll(guest, agent: "a", signed: false) }
        // Another guest's key signing evidence for this host id is no better.
        let impostor = try SoftwareTEEGuest(.snpVLEK)
        assertCode(.teeHostMismatch) {
            let challenge = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: registered.hostId))
            let key = try PrivateKey.generate(.p256)
            let binding = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(challenge.nonce), agentSPKI: try key.publicKey.spkiDER)
            _ = try b.service.enrollment.enroll(EnrollRequest(hostId: registered.hostId, nonce: challenge.nonce, agentName: "a",
                                                              csr: try CSR.create(key: key, commonName: "a").pem, tee: try impostor.evidence(binding: binding)))
        }
        XCTAssertEqual(b.store.commits, commits, "refused before authentication: nothing written")
        XCTAssertNoThrow(try b.enroll(guest, agent: "a"))
    }

    func testATDXHostRegistersWithCollateralAndEnrolls() throws {
        let b = try broker()
        let guest = try SoftwareTEEGuest(.tdx)
        let registered = try b.register(guest)
        XCTAssertEqual(registered.platform, "tdx")
        XCTAssertEqual(try b.store.host(id: registered.hostId)?.platform, .tdx)
        let issued = try b.enroll(guest, agent: "inference")
        let ear = try earPayload(issued.certificate)
        XCTAssertEqual((ear["submods"] as? [String: Any]).map { Array($0.keys) }, ["tdx"])
        let claims = try XCTUnwrap(b.store.latestAttestation(hostID: registered.hostId)?.claims?.tee)
        XCTAssertEqual([claims.kind, claims.tcbStatus, claims.measurementName, claims.signer], ["tdx", "UpToDate", "td-v1", "pck"])
        XCTAssertEqual(claims.rtmrs?.count, 4)
        XCTAssertEqual(claims.platform, Hex.encode(SoftwareTEEs.tdx.platform.fmspc))
    }

    // MARK: refusals

    func testDebugGuestsAreRefusedAndRecorded() throws {
        let b = try broker()
        for (kind, code) in [(SoftwareTEEGuest.Kind.snpVCEK, ErrorCode.snpDebugEnabled), (.tdx, .tdxDebugRefused)] {
            var guest = try SoftwareTEEGuest(kind)
            try b.register(guest)
            guest.debug = true
            let challenge = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: try guest.hostID))
            assertCode(code) { _ = try b.enroll(guest, agent: "a", nonce: challenge) }
            let decision = try XCTUnwrap(b.store.latestAttestation(hostID: try guest.hostID))
            XCTAssertFalse(decision.trusted)
            XCTAssertEqual(decision.codes, [code.rawValue])
            XCTAssertEqual(decision.claims?.tee?.debug, true, "the claims established before the refusal are recorded")
            XCTAssertTrue(try b.store.nonceUsed(challenge.nonce), "the evidence was the host's: the refusal used the nonce")
        }
        XCTAssertEqual(try b.store.certificates(), [])
    }

    func testAMeasurementThePolicyDoesNotListIsRefused() throws {
        let b = try broker()
        for (kind, code) in [(SoftwareTEEGuest.Kind.snpVLEK, ErrorCode.snpMeasurementNotAllowed), (.tdx, .tdxMRTDNotAllowed)] {
            var guest = try SoftwareTEEGuest(kind)
            try b.register(guest)
            guest.measurement = [UInt8](repeating: 0x11, count: 48)
            assertCode(code) { _ = try b.enroll(guest, agent: "a") }
        }
    }

    func testEvidenceBoundToAnotherAgentKeyOrNonceIsRefusedUnrecorded() throws {
        let b = try broker()
        for (kind, code) in [(SoftwareTEEGuest.Kind.snpVCEK, ErrorCode.snpReportDataMismatch), (.tdx, .tdxReportDataMismatch)] {
            let guest = try SoftwareTEEGuest(kind)
            try b.register(guest)
            let commits = b.store.commits
            // Bound to another agent key than the CSR's.
            assertCode(code) { _ = try b.enroll(guest, agent: "a", bindingKey: try PrivateKey.generate(.p256)) }
            // Bound to another nonce than the one sent.
            let sent = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: try guest.hostID))
            let other = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: try guest.hostID))
            assertCode(code) {
                let key = try PrivateKey.generate(.p256)
                let binding = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(other.nonce), agentSPKI: try key.publicKey.spkiDER)
                _ = try b.service.enrollment.enroll(EnrollRequest(hostId: try guest.hostID, nonce: sent.nonce, agentName: "a",
                                                                  csr: try CSR.create(key: key, commonName: "a").pem, tee: try guest.evidence(binding: binding)))
            }
            XCTAssertEqual(b.store.commits, commits, "not the host's request: nothing recorded, the nonce not used")
            XCTAssertFalse(try b.store.nonceUsed(sent.nonce))
        }
    }

    func testSoftwareTEEEvidenceIsRefusedWhenSimulatedHostsAreNot() throws {
        let b = try broker(allowSimulated: false)
        for kind in [SoftwareTEEGuest.Kind.snpVCEK, .snpVLEK, .tdx] {
            let guest = try SoftwareTEEGuest(kind)
            assertCode(.teeSimulationRefused) { try b.register(guest) }
        }
        XCTAssertEqual(try b.store.hosts(), [])
        // The pinned roots alone (AMD's and Intel's) never trust the software TEE either.
        let pinned = try Broker(policy: SoftwareTEEs.policy(), tee: TEETrust(), allowSimulatedHosts: true)
        assertCode(.teeSimulationRefused) { try pinned.register(try SoftwareTEEGuest(.tdx)) }
    }

    func testRegistrationChecksItsNonceAndShape() throws {
        let b = try broker()
        let guest = try SoftwareTEEGuest(.snpVCEK)
        // A registration nonce for another host id.
        let other = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: String(repeating: "a", count: 32), purpose: "registration"))
        assertCode(.nonceUnknown) {
            _ = try b.service.registration.registerHost(RegisterHostRequest(tee: try guest.registration(nonce: other.nonce), hostname: "cvm"))
        }
        // The host id names the kind: a nonce for the same host key as a TDX host does not do.
        let forTDX = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: TEEHostIdentity.hostID(kind: .tdx, hostKeySPKI: try guest.hostKeySPKI),
                                                                                purpose: "registration"))
        assertCode(.nonceUnknown) {
            _ = try b.service.registration.registerHost(RegisterHostRequest(tee: try guest.registration(nonce: forTDX.nonce), hostname: "cvm"))
        }
        XCTAssertEqual(try b.store.hosts(), [], "nothing registered")
        // An enrollment nonce is not a registration nonce.
        try b.register(guest)
        let enrollment = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: try guest.hostID))
        assertCode(.nonceUnknown) {
            _ = try b.service.registration.registerHost(RegisterHostRequest(tee: try guest.registration(nonce: enrollment.nonce), hostname: "cvm"))
        }
        // A registration is single-use.
        let once = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: try guest.hostID, purpose: "registration"))
        let body = try guest.registration(nonce: once.nonce)
        _ = try b.service.registration.registerHost(RegisterHostRequest(tee: body, hostname: "cvm-1"))
        assertCode(.nonceReused) { _ = try b.service.registration.registerHost(RegisterHostRequest(tee: body, hostname: "cvm-1")) }
        // Exactly one shape; a usable attester URL (pull mode: TEEPullTests); a usable host key.
        var both = RegisterHostRequest(tee: body, hostname: "cvm-1")
        both.ekCertificate = "AA=="
        assertCode(.badRequest) { _ = try b.service.registration.registerHost(both) }
        var pull = RegisterHostRequest(tee: body, hostname: "cvm-1")
        pull.attesterURL = "https://169.254.169.254/"
        assertCode(.badRequest) { _ = try b.service.registration.registerHost(pull) }
        var rsa = body
        rsa.hostKey = Base64.encode(try PrivateKey.generateRSA(bits: 2048).publicKey.spkiDER)
        assertCode(.teeHostKeyInvalid) { _ = try b.service.registration.registerHost(RegisterHostRequest(tee: rsa, hostname: "cvm-1")) }
        var unknown = body
        unknown.kind = "nitro"
        assertCode(.evidenceKindUnsupported) { _ = try b.service.registration.registerHost(RegisterHostRequest(tee: unknown, hostname: "cvm-1")) }
        assertCode(.badRequest) { _ = try b.service.registration.registerHost(RegisterHostRequest(ekCertificate: "AA==", ekPublic: "AA==", akPublic: "AA==", hostname: nil).withoutAK()) }
    }

    func testEvidenceOfAnotherPlatformOrShapeIsRefused() throws {
        let b = try broker()
        let snp = try SoftwareTEEGuest(.snpVCEK), tdx = try SoftwareTEEGuest(.tdx)
        try b.register(snp)
        // TDX evidence for an SEV-SNP host: not the evidence its policy requires.
        let challenge = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: try snp.hostID))
        let key = try PrivateKey.generate(.p256)
        let binding = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(challenge.nonce), agentSPKI: try key.publicKey.spkiDER)
        let csr = try CSR.create(key: key, commonName: "a").pem
        assertCode(.evidenceMissing) {
            _ = try b.service.enrollment.enroll(EnrollRequest(hostId: try snp.hostID, nonce: challenge.nonce, agentName: "a", csr: csr, tee: try tdx.evidence(binding: binding)))
        }
        // Both a quote and TEE evidence, or a TDX field in SEV-SNP evidence.
        var both = EnrollRequest(hostId: try snp.hostID, nonce: challenge.nonce, agentName: "a", csr: csr, tee: try snp.evidence(binding: binding))
        both.quote = QuoteBody(attest: "AA==", signature: "AA==", pcrs: [:])
        assertCode(.badRequest) { _ = try b.service.enrollment.enroll(both) }
        var mixed = try snp.evidence(binding: binding)
        mixed.evidence.quote = "AA=="
        assertCode(.badRequest) {
            _ = try b.service.enrollment.enroll(EnrollRequest(hostId: try snp.hostID, nonce: challenge.nonce, agentName: "a", csr: csr, tee: mixed))
        }
        // A TPM host presenting TEE evidence.
        try b.addHost(String(repeating: "1", count: 32))
        let tpmChallenge = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: String(repeating: "1", count: 32)))
        assertCode(.evidenceMissing) {
            _ = try b.service.enrollment.enroll(EnrollRequest(hostId: String(repeating: "1", count: 32), nonce: tpmChallenge.nonce, agentName: "a", csr: csr,
                                                              tee: try snp.evidence(binding: binding)))
        }
    }

    // MARK: re-attestation

    func testAChangedMeasurementAtReattestationUntrustsTheHostAndRevokes() throws {
        let b = try broker()
        for kind in [SoftwareTEEGuest.Kind.snpVCEK, .tdx] {
            var guest = try SoftwareTEEGuest(kind)
            try b.register(guest)
            let issued = try b.enroll(guest, agent: "a")
            XCTAssertEqual(try b.report(guest).result, .trusted)
            guest.measurement = [UInt8](repeating: 0x22, count: 48)
            let verdict = try b.report(guest)
            XCTAssertEqual(verdict.result, .rejected)
            XCTAssertEqual(verdict.codes, [kind == .tdx ? "tdx_mrtd_not_allowed" : "snp_measurement_not_allowed"])
            XCTAssertEqual(verdict.state, "untrusted")
            XCTAssertEqual(verdict.revoked, [issued.serial])
            XCTAssertNotNil(try b.store.certificate(serial: issued.serial)?.revokedAt)
            let record = try XCTUnwrap(b.store.attestations(HistoryQuery(hostID: try guest.hostID, kind: .reattestation)).first)
            XCTAssertEqual(record.claims?.tee?.measurement, Hex.encode(guest.measurement))
        }
    }
}

private extension RegisterHostRequest {
    /// The TPM shape with a field missing.
    func withoutAK() -> RegisterHostRequest {
        var r = self
        r.akPublic = nil
        return r
    }
}
