import Foundation
import VouchAPI
import VouchAttestation
import VouchBroker
import VouchCore
import VouchCrypto
import VouchModel
import VouchTestSupport
import XCTest

/// Confidential VMs in pull mode, through the broker's services with the software TEE: a TEE
/// host registers with an attester URL and its host key's pin; the scheduler asks it for its
/// evidence (`EvidenceSource.evidence`, `POST /v1/evidence`), and the answer is judged as a push
/// report is — evidence bound to another nonce or of another kind is a failed verdict, an answer
/// that is no evidence for this pull a fault, and drift revokes after the policy's afterFailures.
final class TEEPullTests: XCTestCase {
    static let url = "https://cvm.test:9443"
    static let kinds: [SoftwareTEEGuest.Kind] = [.snpVCEK, .snpVLEK, .tdx]

    func broker(grace: TimeInterval = 0, afterFailures: Int = 1) throws -> Broker {
        var policy = SoftwareTEEs.policy()
        policy.reattestation.grace = grace
        policy.reattestation.afterFailures = afterFailures
        return try Broker(policy: policy, tee: SoftwareTEEs.trust, allowSimulatedHosts: true)
    }

    /// Registers the guest in pull mode at `url` and runs the scheduler to its first pull (2 s
    /// after it first sees a host without a verdict), which `first` answers.
    func pullHost(_ b: Broker, _ guest: SoftwareTEEGuest, first: @escaping ScriptedSource.EvidenceAnswer) throws -> (id: String, outcome: RoundOutcome?) {
        let id = try b.register(guest, attesterURL: Self.url).hostId
        b.source.scriptEvidence(Self.url, first)
        b.advance(by: 0)
        return (id, b.advance(by: 2)[id])
    }

    func code(_ kind: SoftwareTEEGuest.Kind, snp: String, tdx: String) -> String { kind == .tdx ? tdx : snp }

    func testATEEHostRegistersInPullModeWithItsHostKeyPinned() throws {
        let b = try broker()
        for kind in Self.kinds {
            let guest = try SoftwareTEEGuest(kind)
            let registered = try b.register(guest, attesterURL: Self.url)
            let hostCert = try Certificate(pem: try XCTUnwrap(registered.hostCertificate))
            let trust = try XCTUnwrap(b.store.trust(hostID: registered.hostId))
            XCTAssertEqual(trust.mode, .pull)
            XCTAssertEqual(trust.attesterURL, Self.url)
            // The attester's TLS key is the host certificate's, which is the host key.
            XCTAssertEqual(trust.hostKeyPin, "sha256//" + Base64.encode(Crypto.sha256(try hostCert.publicKey.spkiDER)))
            XCTAssertEqual(trust.hostKeyPin, "sha256//" + Base64.encode(Crypto.sha256(try guest.hostKeySPKI)))
            XCTAssertEqual(trust.hostCertificateSerial, hostCert.serialHex)
            let status = try b.service.queries.hostStatus(id: registered.hostId)
            XCTAssertEqual(status.trust?.mode, "pull")
            XCTAssertEqual(status.trust?.attesterURL, Self.url)
            XCTAssertTrue(try XCTUnwrap(b.store.latestAttestation(hostID: registered.hostId)).message.contains("pull mode"))
            // Registering again without the URL is push mode: the URL goes, the pin follows the new certificate.
            let again = try b.register(guest)
            let pushed = try XCTUnwrap(b.store.trust(hostID: registered.hostId))
            XCTAssertEqual(pushed.mode, .push)
            XCTAssertNil(pushed.attesterURL)
            XCTAssertEqual(pushed.hostCertificateSerial, try Certificate(pem: try XCTUnwrap(again.hostCertificate)).serialHex)
        }
    }

    func testPulledSNPAndTDXEvidenceIsTrusted() throws {
        for kind in Self.kinds {
            let b = try broker()
            let guest = try SoftwareTEEGuest(kind)
            let (id, outcome) = try pullHost(b, guest) { try guest.answer($0) }
            XCTAssertEqual(outcome, .verdict(trusted: true), "\(kind)")
            XCTAssertEqual(b.source.asked, 1)
            XCTAssertEqual(try b.state(id), .trusted)
            let record = try XCTUnwrap(b.store.latestAttestation(hostID: id))
            XCTAssertEqual(record.kind, .reattestation)
            XCTAssertTrue(record.trusted)
            XCTAssertEqual(record.claims?.tee?.kind, guest.evidenceKind)
            XCTAssertEqual(record.claims?.tee?.measurement, Hex.encode(SoftwareTEEs.good))
            // The next round is scheduled within the interval, answered the same way.
            b.source.scriptEvidence(Self.url) { try guest.answer($0) }
            XCTAssertEqual(b.advanceToNextRound(id)[id], .verdict(trusted: true))
            XCTAssertEqual(try b.store.trust(hostID: id)?.lastProblem, nil)
        }
    }

    /// An answer naming another nonce is no evidence for this pull (a fault: unreachable within
    /// the grace); evidence bound to another nonce than the one it names — a replayed report —
    /// fails its binding (a failed verdict).
    func testAnAnswerForAnotherNonceIsRefused() throws {
        let stale = String(repeating: "ab", count: 32)
        for kind in [SoftwareTEEGuest.Kind.snpVCEK, .tdx] {
            let b = try broker(grace: 3600)
            let guest = try SoftwareTEEGuest(kind)
            let (id, first) = try pullHost(b, guest) { try guest.answer($0) }
            XCTAssertEqual(first, .verdict(trusted: true))

            b.source.scriptEvidence(Self.url) { req in try guest.answer(QuoteRequest(nonce: stale, pcrSelection: req.pcrSelection)) }
            XCTAssertEqual(b.advanceToNextRound(id)[id], .fault("attester_fault"), "\(kind)")
            XCTAssertEqual(try b.state(id), .unreachable)
            XCTAssertEqual(try b.store.trust(hostID: id)?.lastProblem, "attester_fault")

            b.source.scriptEvidence(Self.url) { req in
                var replayed = try guest.answer(QuoteRequest(nonce: stale, pcrSelection: req.pcrSelection))
                replayed.nonce = req.nonce
                return replayed
            }
            XCTAssertEqual(b.advanceToNextRound(id)[id], .verdict(trusted: false))
            XCTAssertEqual(try b.state(id), .untrusted)
            XCTAssertEqual(try b.store.latestAttestation(hostID: id)?.codes,
                           [code(kind, snp: "snp_report_data_mismatch", tdx: "tdx_report_data_mismatch")])
        }
    }

    /// A TEE host's answer of another kind — a TPM quote, the other CPU TEE's evidence — is not
    /// the evidence its platform's policy requires: a failed verdict (`evidence_missing`). An
    /// answer that does not decode as evidence is a fault (`attester_fault`). Neither is trusted.
    func testAnAnswerOfTheWrongKindIsNotTrusted() throws {
        let tpm = try SoftwareTPM()
        for kind in [SoftwareTEEGuest.Kind.snpVCEK, .tdx] {
            let guest = try SoftwareTEEGuest(kind)
            var other = try SoftwareTEEGuest(kind == .tdx ? .snpVCEK : .tdx)
            other.hostKey = guest.hostKey   // even signed by the host key
            let wrong: [ScriptedSource.EvidenceAnswer] = [
                { req in AttestationReport(nonce: req.nonce, quote: try tpm.quote(req, at: Date(timeIntervalSince1970: 0), drifted: false)) },
                { [other] in try other.answer($0) },
            ]
            for answer in wrong {
                let b = try broker()
                let (id, outcome) = try pullHost(b, guest, first: answer)
                XCTAssertEqual(outcome, .verdict(trusted: false), "\(kind)")
                XCTAssertEqual(try b.state(id), .untrusted)
                XCTAssertEqual(try b.store.latestAttestation(hostID: id)?.codes, ["evidence_missing"])
            }
            let malformed: [ScriptedSource.EvidenceAnswer] = [
                { req in var r = try guest.answer(req); r.tee = nil; return r },                                        // no evidence
                { req in var r = try guest.answer(req); r.quote = QuoteBody(attest: "AA==", signature: "AA==", pcrs: [:]); return r },   // both
                { req in var r = try guest.answer(req); r.tee?.kind = "nitro"; return r },                            // unknown kind
                { req in var r = try guest.answer(req); r.tee?.evidence.quote = "not base64!"; return r },            // undecodable field
            ]
            for answer in malformed {
                let b = try broker(grace: 3600)
                let (id, outcome) = try pullHost(b, guest, first: answer)
                XCTAssertEqual(outcome, .fault("attester_fault"), "\(kind)")
                XCTAssertEqual(try b.state(id), .unreachable)
                XCTAssertEqual(try b.store.latestAttestation(hostID: id)?.codes, ["attester_fault"])
            }
        }
    }

    /// The same holds for a TPM host's `/v1/quote` answer (the same `judge`): a quote whose fields
    /// do not decode is the recorded fault `attester_fault`, not a round dropped unrecorded.
    func testATPMHostsUndecodableQuoteIsARecordedFault() throws {
        struct Garbled: EvidenceSource {
            func quote(attesterURL: String, pin: String, request: QuoteRequest) throws -> QuoteBody {
                QuoteBody(attest: "not base64!", signature: "AA==", pcrs: [:])
            }
            func evidence(attesterURL: String, pin: String, request: QuoteRequest) throws -> AttestationReport {
                throw VouchError(.attesterFault, "a TPM host is asked for a quote")
            }
        }
        let b = try broker(grace: 3600)
        let id = try b.addHost(String(repeating: "7", count: 32))
        XCTAssertEqual(b.service.reattestation.pullRound(hostID: id, source: Garbled()), .fault("attester_fault"))
        XCTAssertEqual(try b.state(id), .unreachable)
        XCTAssertEqual(try b.store.latestAttestation(hostID: id)?.codes, ["attester_fault"])
    }

    /// An answer that comes after the challenge TTL (an attester holding its evidence back) is no
    /// answer in time: the recorded fault `attester_timeout`, so the host is unreachable within the
    /// grace and untrusted once it has passed — never kept trusted by late answers. The scripted
    /// attester moves the broker's clock past the TTL before it answers.
    func testAnAnswerAfterTheChallengeTTLIsARecordedFault() throws {
        let ttl = BrokerConfig(trustDomain: "test.local").challengeTTL
        for kind in [SoftwareTEEGuest.Kind.snpVCEK, .tdx] {
            let b = try broker(grace: ttl)
            let guest = try SoftwareTEEGuest(kind)
            let (id, first) = try pullHost(b, guest) { try guest.answer($0) }
            XCTAssertEqual(first, .verdict(trusted: true))
            let clock = b.clock
            let late: ScriptedSource.EvidenceAnswer = { req in
                clock.advance(by: ttl + 1)
                return try guest.answer(req)
            }
            b.source.scriptEvidence(Self.url, late, late)
            XCTAssertEqual(b.advanceToNextRound(id)[id], .fault("attester_timeout"), "\(kind)")
            XCTAssertEqual(try b.state(id), .unreachable)
            XCTAssertEqual(try b.store.trust(hostID: id)?.lastProblem, "attester_timeout")
            XCTAssertEqual(try b.store.latestAttestation(hostID: id)?.codes, ["attester_timeout"])
            XCTAssertEqual(b.advanceToNextRound(id)[id], .fault("attester_timeout"))
            XCTAssertEqual(try b.state(id), .untrusted, "late past the grace")
        }
    }

    /// The same for a TPM host's late quote (the same `judge`).
    func testATPMHostsLateQuoteIsARecordedFault() throws {
        struct Late: EvidenceSource {
            let clock: ManualClock, tpm: SoftwareTPM, by: TimeInterval
            func quote(attesterURL: String, pin: String, request: QuoteRequest) throws -> QuoteBody {
                clock.advance(by: by)
                return try tpm.quote(request, at: clock.now(), drifted: false)
            }
            func evidence(attesterURL: String, pin: String, request: QuoteRequest) throws -> AttestationReport {
                throw VouchError(.attesterFault, "a TPM host is asked for a quote")
            }
        }
        let ttl = BrokerConfig(trustDomain: "test.local").challengeTTL
        let b = try broker(grace: 3600)
        let id = try b.addHost(String(repeating: "7", count: 32))
        let tpm = try XCTUnwrap(b.tpms[id])
        XCTAssertEqual(b.service.reattestation.pullRound(hostID: id, source: Late(clock: b.clock, tpm: tpm, by: 0)), .verdict(trusted: true))
        XCTAssertEqual(b.service.reattestation.pullRound(hostID: id, source: Late(clock: b.clock, tpm: tpm, by: ttl + 1)), .fault("attester_timeout"))
        XCTAssertEqual(try b.state(id), .unreachable)
        XCTAssertEqual(try b.store.latestAttestation(hostID: id)?.codes, ["attester_timeout"])
    }

    /// Drift (the launch measurement changes): each pull is a failed verdict; at the policy's
    /// afterFailures the host is untrusted and its agents' certificates revoked, in the order the
    /// TPM's pull rounds do it.
    func testDriftRevokesAfterThePolicysAfterFailures() throws {
        for kind in [SoftwareTEEGuest.Kind.snpVCEK, .tdx] {
            let b = try broker(afterFailures: 2)
            let guest = try SoftwareTEEGuest(kind)
            var drifted = guest
            drifted.measurement = [UInt8](repeating: 0x22, count: 48)
            let (id, first) = try pullHost(b, guest) { try guest.answer($0) }
            XCTAssertEqual(first, .verdict(trusted: true))
            let serial = try b.enroll(guest, agent: "payments").serial
            b.source.scriptEvidence(Self.url, { [drifted] in try drifted.answer($0) }, { [drifted] in try drifted.answer($0) })

            XCTAssertEqual(b.advanceToNextRound(id)[id], .verdict(trusted: false), "\(kind)")
            XCTAssertEqual(try b.state(id), .trusted, "one failed verdict of two")
            XCTAssertEqual(try b.store.trust(hostID: id)?.consecutiveFailures, 1)
            XCTAssertNil(try b.store.certificate(serial: serial)?.revokedAt)

            XCTAssertEqual(b.advanceToNextRound(id)[id], .verdict(trusted: false))
            XCTAssertEqual(try b.state(id), .untrusted)
            XCTAssertNotNil(try b.store.certificate(serial: serial)?.revokedAt)
            XCTAssertEqual(try b.store.latestAttestation(hostID: id)?.codes, [code(kind, snp: "snp_measurement_not_allowed", tdx: "tdx_mrtd_not_allowed")])
        }
    }
}

extension SoftwareTEEGuest {
    /// The attester's answer to a pull (`Attester.reattestationReport`): its evidence bound to
    /// the request's nonce as a push report's is, naming that nonce.
    func answer(_ req: QuoteRequest) throws -> AttestationReport {
        AttestationReport(nonce: req.nonce, tee: try evidence(binding: EnrollmentBinding.reattestationData(nonce: try Hex.decode(req.nonce))))
    }
}
