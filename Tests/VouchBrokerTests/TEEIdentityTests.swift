import Foundation
import VouchAPI
import VouchAttestation
import VouchBroker
import VouchCore
import VouchCrypto
import VouchModel
import XCTest

/// Who a confidential VM is, for the broker: every TEE host is its host key (its id from it, its
/// signature on every piece of evidence); an SEV-SNP host registered with a VCEK also has its chip
/// pinned. Guests on one chip are different hosts and cannot speak for each other.
final class TEEIdentityTests: XCTestCase {
    func assertCode(_ code: ErrorCode, _ body: () throws -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { e in
            XCTAssertEqual((e as? VouchError)?.code ?? (e as? PolicyRefusal)?.error.code, code, "\(e)", line: line)
        }
    }

    func broker() throws -> Broker {
        try Broker(policy: SoftwareTEEs.policy(), tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
    }

    /// Enrollment evidence for `host` made by `guest` (another guest's, in the attacks).
    func enroll(_ b: Broker, host: String, as guest: SoftwareTEEGuest) throws -> EnrollResponse {
        let challenge = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: host))
        let key = try PrivateKey.generate(.p256)
        let binding = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(challenge.nonce), agentSPKI: try key.publicKey.spkiDER)
        return try b.service.enrollment.enroll(EnrollRequest(hostId: host, nonce: challenge.nonce, agentName: "a",
                                                             csr: try CSR.create(key: key, commonName: "a").pem, tee: try guest.evidence(binding: binding)))
    }

    func testGuestsOnOneChipAreDifferentHostsAndCannotSpeakForEachOther() throws {
        let b = try broker()
        let a = try SoftwareTEEGuest(.snpVCEK), other = try SoftwareTEEGuest(.snpVCEK)
        let hostA = try b.register(a)
        let before = try XCTUnwrap(b.store.host(id: hostA.hostId))
        let trustBefore = try b.store.trust(hostID: hostA.hostId)
        let hostB = try b.register(other)
        XCTAssertNotEqual(hostA.hostId, hostB.hostId, "same chip, another guest: another host")
        XCTAssertEqual(try b.store.host(id: hostA.hostId), before, "B's registration left A alone")
        XCTAssertEqual(try b.store.trust(hostID: hostA.hostId), trustBefore)
        // B's report, from the same chip, for A's host id: B's host key did not sign it for A.
        let commits = b.store.commits
        assertCode(.teeHostMismatch) { _ = try self.enroll(b, host: hostA.hostId, as: other) }
        XCTAssertEqual(b.store.commits, commits, "refused before authentication: nothing written")
        XCTAssertNoThrow(try enroll(b, host: hostA.hostId, as: a))
        XCTAssertNoThrow(try enroll(b, host: hostB.hostId, as: other))
    }

    func testEveryTEEHostSignsItsEvidenceAChipHostToo() throws {
        let b = try broker()
        for kind in [SoftwareTEEGuest.Kind.snpVCEK, .snpVLEK, .tdx] {
            let guest = try SoftwareTEEGuest(kind)
            try b.register(guest)
            assertCode(.teeHostMismatch) { _ = try b.enroll(guest, agent: "a", signed: false) }
            XCTAssertNoThrow(try b.enroll(guest, agent: "a"))
        }
    }

    func testAChipPinnedHostReportsAndReRegistersOnlyFromItsChip() throws {
        let b = try broker()
        var guest = try SoftwareTEEGuest(.snpVCEK)
        let registered = try b.register(guest)
        XCTAssertEqual(try b.report(guest).result, .trusted)
        guest.onOtherChip = true   // the same guest key, another chip
        assertCode(.teeHostMismatch) { _ = try b.enroll(guest, agent: "a") }
        let verdict = try b.report(guest)
        XCTAssertEqual(verdict.result, .rejected)
        XCTAssertEqual(verdict.codes, ["tee_host_mismatch"])
        let host = try b.store.host(id: registered.hostId)
        let trust = try b.store.trust(hostID: registered.hostId)
        assertCode(.teeHostMismatch) { try b.register(guest) }
        XCTAssertEqual(try b.store.host(id: registered.hostId), host, "a refused re-registration changes nothing")
        XCTAssertEqual(try b.store.trust(hostID: registered.hostId), trust)
        // A VLEK-signed report does not carry the pinned chip either.
        var vlek = try SoftwareTEEGuest(.snpVLEK)
        vlek.hostKey = guest.hostKey
        assertCode(.teeHostMismatch) { _ = try b.enroll(vlek, agent: "a") }
    }

    // MARK: later evidence is the registered host's

    func testLaterEvidenceKeepsTheRegisteredEndorsementIssuer() throws {
        let b = try broker()
        // Registered with a VLEK (no chip pin): a VCEK-signed report, even signed by its host key,
        // comes under another issuer (the ASK, not the ASVK).
        let vlek = try SoftwareTEEGuest(.snpVLEK)
        let registered = try b.register(vlek)
        var vcek = try SoftwareTEEGuest(.snpVCEK)
        vcek.hostKey = vlek.hostKey
        assertCode(.teeHostMismatch) { _ = try b.enroll(vcek, agent: "a") }
        XCTAssertEqual(try b.report(vcek).codes, ["tee_host_mismatch"])
        XCTAssertNoThrow(try b.enroll(vlek, agent: "a"))
        XCTAssertEqual(try b.store.host(id: registered.hostId)?.ekIssuer, SoftwareTEEs.snp.asvk.subject)
        // A TDX host whose PCK issuer is not the registered one (the record is edited here: the
        // software TEE has one PCK CA).
        let td = try SoftwareTEEGuest(.tdx)
        let tdHost = try b.register(td)
        XCTAssertEqual(try b.store.host(id: tdHost.hostId)?.ekIssuer, SoftwareTEEs.tdx.pckCA.certificate.subject, "the issuer of the verified PCK chain")
        try edit(b, tdHost.hostId) { h, _ in h.ekIssuer = "CN=Another PCK CA" }
        assertCode(.teeHostMismatch) { _ = try b.enroll(td, agent: "a") }
    }

    func testLaterEvidenceIsSimulatedExactlyWhenTheHostRegisteredAsSimulated() throws {
        let b = try broker()
        for kind in [SoftwareTEEGuest.Kind.snpVCEK, .snpVLEK, .tdx] {
            let guest = try SoftwareTEEGuest(kind)
            let registered = try b.register(guest)
            XCTAssertEqual(try b.store.trust(hostID: registered.hostId)?.simulated, true)
            try edit(b, registered.hostId) { _, t in t.simulated = false }
            assertCode(.teeHostMismatch) { _ = try b.enroll(guest, agent: "a") }
            XCTAssertEqual(try b.report(guest).codes, ["tee_host_mismatch"])
        }
    }

    /// Edits a host's records in the store (what the software TEE cannot produce itself).
    func edit(_ b: Broker, _ id: String, _ change: (inout HostRecord, inout HostTrust) -> Void) throws {
        var h = try XCTUnwrap(b.store.host(id: id)), t = try XCTUnwrap(b.store.trust(hostID: id))
        change(&h, &t)
        try b.store.activateHost(h, trust: t, record: AttestationRecord(hostID: id, at: b.clock.now(), kind: .activation, trusted: false, codes: [], message: "edited"))
    }

    func testATEEHostsAgentKeyIsACSRNotATPMBoundKey() throws {
        let b = try broker()
        let guest = try SoftwareTEEGuest(.tdx)
        let registered = try b.register(guest)
        let challenge = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: registered.hostId))
        let binding = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(challenge.nonce), agentSPKI: try PrivateKey.generate(.p256).publicKey.spkiDER)
        var req = EnrollRequest(hostId: registered.hostId, nonce: challenge.nonce, agentName: "a", csr: nil,
                                tpmKey: TPMKeyBody(publicArea: "AA==", certifyInfo: "AA==", signature: "AA=="), quote: nil)
        req.tee = try guest.evidence(binding: binding)
        let commits = b.store.commits
        XCTAssertThrowsError(try b.service.enrollment.enroll(req)) { e in
            XCTAssertEqual((e as? VouchError)?.code, .badRequest)
            XCTAssertEqual((e as? VouchError)?.context["field"], "tpmKey")
        }
        XCTAssertEqual(b.store.commits, commits)
    }

    // MARK: registration proves the host key is held

    func register(_ b: Broker, _ guest: SoftwareTEEGuest, signed: Bool = true, signer: PrivateKey? = nil) throws -> RegisterHostResponse {
        let challenge = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: try guest.hostID, purpose: "registration"))
        return try b.service.registration.registerHost(RegisterHostRequest(tee: try guest.registration(nonce: challenge.nonce, signed: signed, signer: signer),
                                                                           hostname: "cvm-1"))
    }

    func testRegistrationNeedsTheHostKeysSignature() throws {
        let b = try broker()
        for kind in [SoftwareTEEGuest.Kind.snpVCEK, .snpVLEK, .tdx] {
            let guest = try SoftwareTEEGuest(kind)
            assertCode(.badRequest) { _ = try self.register(b, guest, signed: false) }
            assertCode(.teeHostMismatch) { _ = try self.register(b, guest, signer: try PrivateKey.generate(.p256)) }
        }
        XCTAssertEqual(try b.store.hosts(), [], "nothing registered")
    }

    /// A genuine guest binding a victim's public host key into its report cannot take over the
    /// victim's host id: it cannot sign with the victim's key.
    func testAGuestBindingAnotherGuestsPublicKeyCannotReRegisterIt() throws {
        let b = try broker()
        for kind in [SoftwareTEEGuest.Kind.snpVCEK, .snpVLEK, .tdx] {
            let victim = try SoftwareTEEGuest(kind)
            let registered = try b.register(victim)
            let host = try b.store.host(id: registered.hostId), trust = try b.store.trust(hostID: registered.hostId)
            let attacker = try PrivateKey.generate(.p256)
            assertCode(.teeHostMismatch) { _ = try self.register(b, victim, signer: attacker) }
            XCTAssertEqual(try b.store.host(id: registered.hostId), host, "nothing changed")
            XCTAssertEqual(try b.store.trust(hostID: registered.hostId), trust, "the victim keeps its host certificate")
        }
    }

    func testAReRegistrationKeepsThePlatformIssuerAndSimulatedFlag() throws {
        let b = try broker()
        // A VLEK host re-registering with a VCEK-signed report: another endorsement issuer (ASK, not ASVK).
        let vlek = try SoftwareTEEGuest(.snpVLEK)
        let registered = try b.register(vlek)
        let host = try XCTUnwrap(b.store.host(id: registered.hostId)), trust = try XCTUnwrap(b.store.trust(hostID: registered.hostId))
        var vcek = try SoftwareTEEGuest(.snpVCEK)
        vcek.hostKey = vlek.hostKey
        XCTAssertEqual(try vcek.hostID, registered.hostId)
        XCTAssertThrowsError(try b.register(vcek)) { e in
            XCTAssertEqual((e as? VouchError)?.code, .teeHostMismatch)
            XCTAssertEqual((e as? VouchError)?.context["field"], "ekIssuer")
        }
        XCTAssertEqual(try b.store.host(id: registered.hostId), host, "nothing changed")
        XCTAssertEqual(try b.store.trust(hostID: registered.hostId), trust)
        // The same evidence again re-registers (a new host certificate).
        XCTAssertNoThrow(try b.register(vlek))
        // A host recorded as not simulated does not come back as a simulated one, nor under
        // another platform (the records are edited here: the software TEE cannot make real evidence).
        for edit in [{ (h: inout HostRecord, t: inout HostTrust) in t.simulated = false }, { (h: inout HostRecord, t: inout HostTrust) in h.platform = .tdx }] {
            var h = try XCTUnwrap(b.store.host(id: registered.hostId)), t = try XCTUnwrap(b.store.trust(hostID: registered.hostId))
            edit(&h, &t)
            try b.store.activateHost(h, trust: t, record: AttestationRecord(hostID: h.id, at: b.clock.now(), kind: .activation, trusted: false, codes: [], message: "edited"))
            let before = try b.store.host(id: registered.hostId)
            assertCode(.teeHostMismatch) { try b.register(vlek) }
            XCTAssertEqual(try b.store.host(id: registered.hostId), before)
            var back = try XCTUnwrap(b.store.host(id: registered.hostId))
            back.platform = .sevSNP
            try b.store.activateHost(back, trust: try XCTUnwrap(b.store.trust(hostID: back.id)).withSimulated(true),
                                     record: AttestationRecord(hostID: h.id, at: b.clock.now(), kind: .activation, trusted: false, codes: [], message: "restored"))
        }
        XCTAssertNoThrow(try b.register(vlek))
    }
}

private extension HostTrust {
    func withSimulated(_ simulated: Bool) -> HostTrust {
        var t = self
        t.simulated = simulated
        return t
    }
}
