import Foundation
import Synchronization
import VouchAPI
import VouchAttestation
import VouchAttesterKit
import VouchBroker
import VouchBrokerTestSupport
import VouchCore
import VouchCrypto
import VouchModel
import VouchPolicy
import VouchTestSupport
import VouchTPMWire
import XCTest

/// A host's TPM in software, for in-process tests: an ECC P-256 AK of the real template and quotes
/// in the real wire format (TPMS_ATTEST, TPMT_SIGNATURE), as `SimulatedFleet` makes them. Every
/// PCR holds its reset value (zeros) unless `drifted`; the TPM clock follows the test's clock.
struct SoftwareTPM: Sendable {
    let ak: SoftwareAK
    var akPublic: [UInt8] { ak.publicArea }   // TPM2B_PUBLIC
    var akName: [UInt8] { ak.name }

    init() throws { ak = try SoftwareAK() }

    /// An enrollment quote: qualifying data SHA-256(nonce ‖ SHA-256(agent SPKI)) over the challenge's PCRs.
    func enrollmentQuote(_ challenge: ChallengeResponse, agentSPKI: [UInt8], at now: Date, drifted: Bool = false) throws -> QuoteBody {
        let selection = PCRSelection(banks: challenge.pcrSelection.map { PCRBankSelection(hash: HashAlg(rawValue: $0.bank)!, pcrs: $0.pcrs) })
        var values: [HashAlg: [Int: [UInt8]]] = [:]
        for bank in selection.banks {
            for p in bank.pcrs { values[bank.hash, default: [:]][p] = [UInt8](repeating: drifted && p == 0 ? 0xab : 0, count: bank.hash.digestSize) }
        }
        return try ak.quote(qualifyingData: EnrollmentBinding.qualifyingData(nonce: try Hex.decode(challenge.nonce), agentSPKI: agentSPKI),
                            selection: selection, pcrs: PCRValues(values), clockMilliseconds: UInt64(now.timeIntervalSince1970 * 1000))
    }

    func quote(_ request: QuoteRequest, at now: Date, drifted: Bool) throws -> QuoteBody {
        let selection = PCRSelection(banks: request.pcrSelection.map { PCRBankSelection(hash: HashAlg(rawValue: $0.bank)!, pcrs: $0.pcrs) })
        var values: [HashAlg: [Int: [UInt8]]] = [:]
        for bank in selection.banks {
            for p in bank.pcrs { values[bank.hash, default: [:]][p] = [UInt8](repeating: drifted && p == 0 ? 0xab : 0, count: bank.hash.digestSize) }
        }
        return try ak.quote(qualifyingData: EnrollmentBinding.reattestationData(nonce: try Hex.decode(request.nonce)), selection: selection,
                            pcrs: PCRValues(values), clockMilliseconds: UInt64(now.timeIntervalSince1970 * 1000))   // the test's clock
    }
}

/// An `EvidenceSource` that answers as the test scripts it, per attester URL: a good quote, a
/// drifted quote (fails the policy), or a fault. Unscripted pulls are refused connections.
final class ScriptedSource: EvidenceSource {
    enum Answer: Sendable { case quote, drifted, fault(ErrorCode) }
    private let state = Mutex<(tpms: [String: SoftwareTPM], answers: [String: [Answer]], asked: Int)>(([:], [:], 0))
    let clock: ManualClock
    init(clock: ManualClock) { self.clock = clock }

    func attach(_ tpm: SoftwareTPM, url: String) { state.withLock { $0.tpms[url] = tpm } }
    func script(_ url: String, _ answers: Answer...) { state.withLock { $0.answers[url, default: []] += answers } }
    var asked: Int { state.withLock { $0.asked } }

    func quote(attesterURL: String, pin: String, request: QuoteRequest) throws -> QuoteBody {
        let (tpm, answer) = state.withLock { s -> (SoftwareTPM?, Answer) in
            s.asked += 1
            let next = s.answers[attesterURL]?.isEmpty == false ? s.answers[attesterURL]!.removeFirst() : .fault(.attesterUnreachable)
            return (s.tpms[attesterURL], next)
        }
        switch answer {
        case let .fault(code): throw VouchError(code, "scripted fault")
        case .quote, .drifted:
            guard let tpm else { throw VouchError(.attesterFault, "no TPM attached at \(attesterURL)") }
            if case .drifted = answer { return try tpm.quote(request, at: clock.now(), drifted: true) }
            return try tpm.quote(request, at: clock.now(), drifted: false)
        }
    }

    /// A CPU TEE host's answers (`POST /v1/evidence`), scripted per attester URL as functions of
    /// the request, taken in order; unscripted pulls are refused connections.
    typealias EvidenceAnswer = @Sendable (QuoteRequest) throws -> AttestationReport
    private let reports = Mutex<[String: [EvidenceAnswer]]>([:])
    func scriptEvidence(_ url: String, _ answers: EvidenceAnswer...) { reports.withLock { $0[url, default: []] += answers } }

    func evidence(attesterURL: String, pin: String, request: QuoteRequest) throws -> AttestationReport {
        state.withLock { $0.asked += 1 }
        let next = reports.withLock { r in r[attesterURL]?.isEmpty == false ? r[attesterURL]!.removeFirst() : nil }
        guard let next else { throw VouchError(.attesterUnreachable, "scripted fault") }
        return try next(request)
    }
}

/// A broker in this process: `BrokerService` wired as vouchd wires it (see Sources/vouchd/main.swift),
/// over an `InMemoryBrokerStore`, a `ManualClock`, a fixed policy set, a CA made here, and a
/// `Reattestor` over a `ScriptedSource`. Hosts are seeded as activated (registration and credential
/// activation need a TPM and are covered by the integration tests).
final class Broker {
    let clock = ManualClock()
    let store = InMemoryBrokerStore()
    let service: BrokerService
    let source: ScriptedSource
    let reattestor: Reattestor
    let policy: Policy
    /// Each seeded host's software TPM.
    private(set) var tpms: [String: SoftwareTPM] = [:]

    /// A policy over PCR 0 (zeros) with the given re-attestation settings.
    static func policy(interval: TimeInterval = 60, grace: TimeInterval = 0, afterFailures: Int = 1,
                       action: Policy.Reattestation.Action = .revoke) -> Policy {
        var p = Policy(name: "test", version: 1, pcrBank: .sha256, pcrValues: [0: [[UInt8](repeating: 0, count: 32)]])
        p.sha256 = String(repeating: "a", count: 64)
        p.reattestation.interval = interval
        p.reattestation.grace = grace
        p.reattestation.afterFailures = afterFailures
        p.reattestation.action = action
        return p
    }

    /// `tee`: the roots CPU TEE evidence is verified under; `allowSimulatedHosts` as vouchd's flag.
    init(policy: Policy = Broker.policy(), tee: TEETrust = TEETrust(), allowSimulatedHosts: Bool = false) throws {
        self.policy = policy
        let now = clock.now()
        let ca = try CertificateAuthority.create(commonName: "Vouch CA test.local", key: try PrivateKey.generate(.p256),
                                                 notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(10 * 365 * 86400))
        var config = BrokerConfig(trustDomain: "test.local")
        config.allowSimulatedHosts = allowSimulatedHosts
        service = BrokerService(config: config, policies: PolicyProvider(fixed: try PolicySet([policy]), clock: clock),
                                store: store, authorities: CASet(current: IssuingCA(signer: ca)), ekTrust: EKTrustStore(anchors: [], intermediates: []),
                                resultSigner: try JWSSigner(key: try PrivateKey.generate(.p256), chain: [ca.certificate]),
                                jwtSVIDSigner: try JWSSigner(key: try PrivateKey.generate(.p256), use: "jwt-svid"), clock: clock, tee: tee)
        source = ScriptedSource(clock: clock)
        reattestor = Reattestor(service: service, source: source, spread: { 0.5 })
    }

    /// Seeds an activated host (as `activateHost` leaves it): pull mode with a software TPM behind
    /// `https://ID.test:8444`, or push mode. Returns its id.
    @discardableResult
    func addHost(_ id: String, mode: AttestationMode = .pull) throws -> String {
        let tpm = try SoftwareTPM()
        let now = clock.now()
        let host = HostRecord(id: id, hostname: id, ekPublic: [1], ekCertificate: [2], ekIssuer: "test EK CA", akPublic: tpm.akPublic, akName: tpm.akName,
                              akAlgorithm: "ecc-p256", akState: .active, activationDigest: nil, activationExpiresAt: nil, activationFailures: 0,
                              registeredAt: now, updatedAt: now)
        let url = "https://\(id).test:8444"
        let trust = HostTrust(hostID: id, since: now, mode: mode, attesterURL: mode == .pull ? url : nil, hostCertificateSerial: "01",
                              hostKeyPin: mode == .pull ? "sha256//pin" : nil)
        try store.activateHost(host, trust: trust, record: AttestationRecord(hostID: id, at: now, kind: .activation, trusted: true, codes: [],
                                                                              message: "activated"))
        source.attach(tpm, url: url)
        tpms[id] = tpm
        return id
    }

    func url(_ id: String) -> String { "https://\(id).test:8444" }

    /// Records an agent certificate for the host, issued by the broker's CA (for revocation).
    func addCertificate(host: String, serial: String) throws {
        let now = clock.now()
        _ = try store.recordIssuance(attestation: AttestationRecord(hostID: host, at: now, kind: .enrollment, trusted: true, codes: [], message: "ok",
                                                                     agentName: "agent"),
                                     certificate: CertificateRecord(serial: serial, hostID: host, agentName: "agent", spiffeID: "spiffe://test.local/agent",
                                                                    notBefore: now, notAfter: now.addingTimeInterval(3600), pem: "", attestationID: 0,
                                                                    issuer: service.authorities.current.keyID))
    }

    /// Enrolls an agent on a seeded host the way `vouch enroll` does: a challenge, a fresh P-256 key
    /// and CSR, a quote binding both. `drifted`: PCR 0 differs from the policy.
    func enroll(_ host: String, agent: String, drifted: Bool = false, nonce reuse: ChallengeResponse? = nil,
                after delay: TimeInterval = 0) throws -> (response: EnrollResponse, challenge: ChallengeResponse) {
        let challenge = try reuse ?? service.enrollment.createChallenge(ChallengeRequest(hostId: host))
        clock.advance(by: delay)
        let key = try PrivateKey.generate(.p256)
        let csr = try CSR.create(key: key, commonName: agent)
        let quote = try XCTUnwrap(tpms[host]).enrollmentQuote(challenge, agentSPKI: try key.publicKey.spkiDER, at: clock.now(), drifted: drifted)
        let response = try service.enrollment.enroll(EnrollRequest(hostId: host, nonce: challenge.nonce, agentName: agent, csr: csr.pem, quote: quote))
        return (response, challenge)
    }

    func state(_ id: String) throws -> TrustState? { try store.trust(hostID: id)?.state }

    /// Moves the clock by `seconds`, then ticks and runs every pull round that is due (like
    /// `EmbeddedEventLoop.advanceTime(by:)`). Returns the outcomes by host.
    @discardableResult
    func advance(by seconds: TimeInterval) -> [String: RoundOutcome] {
        clock.advance(by: seconds)
        var outcomes: [String: RoundOutcome] = [:]
        for round in reattestor.tick(now: clock.now()) { outcomes[round.hostID] = reattestor.run(round) }
        return outcomes
    }

    /// Advances to the host's next due time and runs what is due then.
    @discardableResult
    func advanceToNextRound(_ id: String) -> [String: RoundOutcome] {
        guard let due = reattestor.nextDue(hostID: id) else { return advance(by: 0) }
        return advance(by: max(0, due.timeIntervalSince(clock.now())))
    }
}
