import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTPMWire

extension ErrorCode {
    public static let simulatedHostsRefused = ErrorCode("simulated_hosts_refused", status: 403)
    public static let clientCertificateRequired = ErrorCode("client_certificate_required", status: 401)
    public static let clientCertificateMismatch = ErrorCode("client_certificate_mismatch", status: 403)
    /// Faults: no verdict, the host is unreachable until the policy's grace ends.
    public static let attesterUnreachable = ErrorCode("attester_unreachable", status: 502)
    public static let attesterTimeout = ErrorCode("attester_timeout", status: 502)
    public static let attesterFault = ErrorCode("attester_fault", status: 502)
    public static let reportOverdue = ErrorCode("report_overdue", status: 400)
}

/// Where pull-mode evidence comes from: the attester's HTTPS endpoint, reached with mutual TLS.
public protocol EvidenceSource: Sendable {
    /// Asks the attester at `attesterURL` (whose TLS key must match `pin`) for a quote. Throws a
    /// fault — `attester_unreachable`, `attester_timeout` or `attester_fault` — when no evidence
    /// comes back; never judges the evidence.
    func quote(attesterURL: String, pin: String, request: QuoteRequest) throws -> QuoteBody
}

/// The outcome of one re-attestation round for the scheduler: a verdict, or a fault.
public enum RoundOutcome: Sendable, Equatable {
    case verdict(trusted: Bool)
    case fault(String)
}

extension BrokerService {
    /// "sha256//BASE64(SHA-256(SubjectPublicKeyInfo))", the pin format libcurl takes.
    static func keyPin(_ key: PublicKey) throws -> String { "sha256//" + Base64.encode(Crypto.sha256(try key.spkiDER)) }

    /// Issues the host's TLS certificate (SPIFFE ID spiffe://TD/host/ID, client and server auth)
    /// for a CSR whose self-signature verifies. It secures transport between broker and attester;
    /// it is not an attestation result and is never listed with agent certificates.
    func issueHostCertificate(hostID: String, csrPEM: String, now: Date) throws -> Certificate {
        let csr: CSR
        do { csr = try CSR(pemOrDER: Array(csrPEM.utf8)) } catch let e as VouchError {
            throw VouchError(.csrMalformed, e.message, context: ["field": "hostCSR"])
        }
        guard csr.signatureIsValid else {
            throw VouchError(.csrSignatureInvalid, "host CSR signature does not verify with its own key", context: ["field": "hostCSR"])
        }
        let ca = authorities.current
        let profile = LeafProfile(uriSANs: [config.hostSpiffeID(hostID)],
                                  notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(config.hostCertificateTTL), usage: .host)
        return try ca.signer.issue(publicKey: try csr.publicKey, profile: profile, serial: nil)
    }

    /// Checks a push request's TLS client certificate: present (verified by the TLS layer against
    /// the broker's CAs), naming this host, and the one issued at its latest activation.
    public func authenticateHost(id: String, clientCertificate der: [UInt8]?) throws {
        guard let der else {
            throw VouchError(.clientCertificateRequired, "this endpoint needs the host certificate as TLS client certificate", context: ["hostId": id])
        }
        let cert = try Certificate(der: der)
        guard cert.uriSANs == [config.hostSpiffeID(id)], let trust = try store.trust(hostID: id), trust.hostCertificateSerial == cert.serialHex else {
            throw VouchError(.clientCertificateMismatch, "the client certificate is not this host's current host certificate",
                             context: ["hostId": id, "got": cert.uriSANs.first ?? cert.subject])
        }
    }

    // MARK: Verdicts

    /// Judges a re-attestation report (pushed by the host, or pulled by the scheduler). Checks, in
    /// order, refusing at the first failure:
    /// 1. the host is registered, not blocked, its AK activated, and a policy applies;
    /// 2. the nonce was issued to this host for attestation, is unexpired and unused — else a 4xx
    ///    and no verdict (pull rounds check the nonce they hold in memory instead); a push
    ///    report's nonce is recorded as used with the verdict, in its transaction;
    /// 3. the evidence authenticates (`EvidenceVerifiers.authenticate`; for the TPM, QuoteVerifier)
    ///    bound to SHA-256(nonce ‖ SHA-256("vouch re-attestation v1"));
    /// 4. every device's evidence verifies and the set satisfies the policy
    ///    (`EvidenceVerifiers.appraise`; for the TPM, logs replay to the quoted PCRs and the event
    ///    data read hashes to its digests, the TPM clock did not go back; then `Appraiser`).
    /// A failed 3 or 4 is a failed verdict (the policy's `onFailure` acts after `afterFailures`);
    /// `clock_not_safe` alone is a fault (the TPM clock may become safe; retried, not judged).
    public func judgeReport(hostID: String, _ report: AttestationReport) throws -> AttestationVerdict {
        try judge(host: try knownHost(hostID), report) { [self] nonce, host, now in
            let issuedAt = try nonces.open(nonce, hostID: host.id, purpose: .attestation, now: now, ttl: config.challengeTTL)
            guard try !store.nonceUsed(nonce) else { throw VouchError(.nonceReused, "nonce has already been used", context: ["field": "nonce"]) }
            return (issuedAt, issuedAt.addingTimeInterval(config.challengeTTL))
        }
    }

    /// `judgeReport` for a registered host, with step 2 given: `consumeNonce` accepts the report's
    /// nonce and returns when it was issued and, when the store must record it as used with the
    /// verdict (push reports), until when; or throws.
    private func judge(host: HostRecord, _ report: AttestationReport,
                       consumeNonce: (_ nonce: String, _ host: HostRecord, _ now: Date) throws -> (issuedAt: Date, storeUntil: Date?)) throws -> AttestationVerdict {
        let started = DispatchTime.now()
        let now = clock.now()
        // 1
        let policy = try attestablePolicy(for: host)
        guard Hex.isLowercase(report.nonce, length: 64...64) else {
            throw VouchError(.badRequest, "nonce must be 64 lowercase hex digits", context: ["field": "nonce"])
        }
        let rawEvidence = try Self.rawEvidence(report)
        // 2
        let (issuedAt, nonceExpiresAt) = try consumeNonce(report.nonce, host, now)
        // 3
        let context = Self.verificationContext(host: host, policy: policy, binding: EnrollmentBinding.reattestationData(nonce: try Hex.decode(report.nonce)))
        let evidenceSet: AuthenticatedEvidenceSet
        switch evidenceVerifiers.authenticate(rawEvidence, context: context) {
        case let .authenticated(set): evidenceSet = set
        case let .rejected(errors):
            metrics.verification(seconds: Self.seconds(since: started))
            return try verdict(host: host, policy: policy, trusted: false, codes: errors.map(\.code.rawValue),
                               message: errors.map(\.message).joined(separator: "; "), nonce: report.nonce, nonceExpiresAt: nonceExpiresAt, now: now)
        }
        // 4
        let appraisal = evidenceVerifiers.appraise(evidenceSet, accepted: try acceptedState(hostID: host.id, nonceIssuedAt: issuedAt), context: context,
                                                   evidenceAge: now.timeIntervalSince(issuedAt))
        metrics.verification(seconds: Self.seconds(since: started))
        switch appraisal {
        case let .trusted(evidence):
            return try verdict(host: host, policy: policy, trusted: true, codes: [],
                               message: "quote verified; policy \(policy.label) satisfied", nonce: report.nonce, nonceExpiresAt: nonceExpiresAt, now: now,
                               record: evidence.record)
        case let .rejected(violations, claims):
            if violations.allSatisfy({ $0.code == .clockNotSafe }) {
                _ = try fault(hostID: host.id, code: ErrorCode.clockNotSafe.rawValue, message: "the TPM clock is not yet safe; retrying")
                throw VouchError(.clockNotSafe, "the TPM clock is not yet safe; not judged, retry later", context: ["hostId": host.id, "transient": "true"])
            }
            let record = evidenceSet.record
            return try verdict(host: host, policy: policy, trusted: false, codes: violations.map(\.code.rawValue),
                               message: "evidence does not satisfy policy \(policy.label): " + violations.map(\.message).joined(separator: "; "),
                               nonce: report.nonce, nonceExpiresAt: nonceExpiresAt, now: now,
                               record: EvidenceRecord(measurementDigest: record?.measurementDigest, measurements: record?.measurements, claims: claims))
        }
    }

    static func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }

    /// Records a verdict and moves the host's trust state: a good verdict makes it trusted (its
    /// revoked certificates stay revoked); a failed one counts toward `afterFailures`, then applies
    /// `onFailure`.
    private func verdict(host: HostRecord, policy: Policy, trusted: Bool, codes: [String], message: String, nonce: String, nonceExpiresAt: Date?, now: Date,
                         record: EvidenceRecord? = nil) throws -> AttestationVerdict {
        let decided = DispatchTime.now()
        let record = AttestationRecord(hostID: host.id, at: now, kind: .reattestation, trusted: trusted, codes: codes, message: message,
                                       nonce: nonce, policyName: policy.name, policyVersion: policy.version, policySHA256: policy.sha256,
                                       pcrDigest: record?.measurementDigest, claims: record?.claims, pcrs: record?.measurements, nonceExpiresAt: nonceExpiresAt)
        var t = try store.trust(hostID: host.id) ?? HostTrust(hostID: host.id, since: now, mode: .push)
        t.lastVerdictAt = now
        t.lastContactAt = now
        t.consecutiveFaults = 0
        t.unreachableSince = nil
        var revoked: [String] = []
        if trusted {
            t.consecutiveFailures = 0
            t.lastProblem = nil
            let was = t.state
            t.enter(.trusted, at: now)
            try store.recordVerdict(record, trust: t)   // the steady state of every round: one transaction
            metrics.attestation("trusted")
            if was != .trusted {
                try store.appendEvent(type: .hostTrusted, data: ["hostId": host.id, "previous": was.rawValue, "policy": policy.label], at: now)
                events.notify()
                log("host \(host.id) trusted (was \(was.rawValue))")
            }
        } else {
            try store.recordAttestation(record)
            metrics.attestation(codes.first ?? "rejected")
            t.consecutiveFailures += 1
            t.lastProblem = codes.first
            if t.consecutiveFailures >= policy.reattestation.afterFailures {
                revoked = try fail(&t, policy: policy, codes: codes, now: now, decided: decided)
            } else if t.state == .unreachable {
                t.enter(.unknown, at: now)
            }
            try store.saveTrust(t)
            log("host \(host.id) failed re-attestation (\(codes.joined(separator: ","))), \(t.consecutiveFailures) in a row; state \(t.state.rawValue)")
        }
        return AttestationVerdict(hostId: host.id, at: now.iso8601, result: VerdictResult(trusted: trusted), codes: codes, message: message,
                                  state: t.state.rawValue, revoked: revoked.isEmpty ? nil : revoked)
    }

    /// Codes as the public event stream shows them: how a pull failed (refused, timed out, broken
    /// TLS) would tell anyone reading events what answers at a host-chosen address, so every
    /// pull fault reads `no_evidence` there; the audit trail (read token) keeps the exact code.
    static func publicCodes(_ codes: [String]) -> [String] {
        let pullFaults: Set<String> = [ErrorCode.attesterUnreachable.rawValue, ErrorCode.attesterTimeout.rawValue, ErrorCode.attesterFault.rawValue]
        return codes.map { pullFaults.contains($0) ? "no_evidence" : $0 }
    }

    /// Applies the policy's `onFailure` action: the host becomes untrusted and, with `revoke`, every
    /// unrevoked certificate of its agents is revoked (CRL re-signed in the same transaction; OCSP
    /// and the event stream read the same rows). Returns the revoked serials.
    private func fail(_ t: inout HostTrust, policy: Policy, codes: [String], now: Date, decided: DispatchTime = .now()) throws -> [String] {
        let was = t.state
        t.enter(.untrusted, at: now)
        var serials: [String] = []
        if policy.reattestation.action == .revoke {
            serials = try revokeInStore(.host(t.hostID), at: now, reason: .privilegeWithdrawn).serials
            metrics.revoked(serials.count)
        }
        if was != .untrusted || !serials.isEmpty {
            try store.appendEvent(type: .hostUntrusted, data: ["hostId": t.hostID, "codes": Self.publicCodes(codes).joined(separator: ","), "policy": policy.label,
                                                                 "action": policy.reattestation.action.rawValue, "revoked": "\(serials.count)"], at: now)
            events.notify()
            metrics.revocation(seconds: Self.seconds(since: decided))
            log("host \(t.hostID) untrusted (\(codes.joined(separator: ","))); \(policy.reattestation.action.rawValue): \(serials.count) certificate(s) revoked")
        }
        return serials
    }

    /// Records a fault — no evidence came (unreachable, timeout, TPM busy, missed push report, clock
    /// not yet safe). The host is `unreachable`, not failed, until the policy's grace has passed
    /// since the spell began; then the fault counts as a failed verdict and `onFailure` applies.
    @discardableResult
    public func fault(hostID: String, code: String, message: String) throws -> TrustState {
        let now = clock.now()
        let host = try knownHost(hostID)
        var t = try store.trust(hostID: host.id) ?? HostTrust(hostID: host.id, since: now, mode: .push)
        t.consecutiveFaults += 1
        t.lastProblem = code
        metrics.attestation(code)
        let spellStart = t.unreachableSince ?? now
        t.unreachableSince = spellStart
        guard t.state != .untrusted else { try store.saveTrust(t); return t.state }
        let policy = try? applicablePolicy(for: host)
        let grace = policy?.reattestation.grace ?? 0
        if now.timeIntervalSince(spellStart) >= grace {
            let reason = "no evidence for \(Int(now.timeIntervalSince(spellStart)))s (grace \(Int(grace))s): \(message)"
            try store.recordAttestation(AttestationRecord(hostID: host.id, at: now, kind: .reattestation, trusted: false, codes: [code],
                                                          message: reason, policyName: policy?.name, policyVersion: policy?.version,
                                                          policySHA256: policy?.sha256))
            if let policy {
                t.consecutiveFailures += 1
                _ = try fail(&t, policy: policy, codes: [code], now: now)
            } else {
                t.enter(.untrusted, at: now)
            }
        } else if t.state != .unreachable {
            let was = t.state
            t.enter(.unreachable, at: now)
            try store.recordAttestation(AttestationRecord(hostID: host.id, at: now, kind: .fault, trusted: false, codes: [code],
                                                          message: "\(message) (unreachable; untrusted if it lasts \(Int(grace))s)",
                                                          policyName: policy?.name, policyVersion: policy?.version, policySHA256: policy?.sha256))
            try store.appendEvent(type: .hostUnreachable, data: ["hostId": host.id, "code": Self.publicCodes([code])[0], "previous": was.rawValue], at: now)
            events.notify()
            log("host \(host.id) unreachable: \(code) \(message)")
        }
        try store.saveTrust(t)
        return t.state
    }

    /// A trusted enrollment is fresh verified evidence under the same policy: a good verdict.
    func noteTrustedEnrollment(hostID: String, policy: String, now: Date) throws {
        guard var t = try store.trust(hostID: hostID) else { return }
        let was = t.state
        t.lastVerdictAt = now
        t.lastContactAt = now
        t.consecutiveFailures = 0
        t.consecutiveFaults = 0
        t.unreachableSince = nil
        t.lastProblem = nil
        t.enter(.trusted, at: now)
        try store.saveTrust(t)
        if was != .trusted {
            try store.appendEvent(type: .hostTrusted, data: ["hostId": hostID, "previous": was.rawValue, "policy": policy], at: now)
            events.notify()
        }
    }

    // MARK: Rounds, for the scheduler

    /// One pull round: a fresh nonce, a quote from the attester over mTLS, a verdict. The nonce
    /// lives only in this call (the broker asks and checks the answer itself), so it is never
    /// stored: it is accepted for this one report, within the challenge TTL, and nowhere else.
    public func pullRound(hostID: String, source: EvidenceSource) -> RoundOutcome {
        do {
            let host = try knownHost(hostID)
            let policy = try attestablePolicy(for: host)
            guard let t = try store.trust(hostID: host.id), let url = t.attesterURL, let pin = t.hostKeyPin else {
                return .fault("not_pullable")
            }
            let nonce = Hex.encode(try Crypto.randomBytes(32))
            let issuedAt = clock.now()
            let body: QuoteBody
            do {
                body = try source.quote(attesterURL: url, pin: pin, request: QuoteRequest(nonce: nonce, pcrSelection: Self.challengeSelection(policy)))
            } catch let e as VouchError {
                _ = try fault(hostID: host.id, code: e.code.rawValue, message: e.message)
                return .fault(e.code.rawValue)
            }
            let v = try judge(host: host, AttestationReport(nonce: nonce, quote: body)) { got, _, now in
                guard got == nonce else { throw VouchError(.nonceUnknown, "the attester answered another nonce", context: ["field": "nonce"]) }
                guard now < issuedAt.addingTimeInterval(config.challengeTTL) else {
                    throw VouchError(.nonceExpired, "the attester answered after the challenge expired", context: ["field": "nonce"])
                }
                return (issuedAt, nil)   // held in memory for this one pull: nothing to store
            }
            return .verdict(trusted: v.result.isTrusted)
        } catch let e as VouchError {
            if e.code != .clockNotSafe { log("re-attestation of \(hostID) not judged: \(e.code) \(e.message)") }
            return .fault(e.code.rawValue)
        } catch {
            log("re-attestation of \(hostID) failed: \(error)")
            return .fault(ErrorCode.internalError.rawValue)
        }
    }

    /// A push host that has not reported within its interval plus slack is a fault (missed report).
    public func checkPushReport(hostID: String, interval: TimeInterval) -> RoundOutcome? {
        do {
            guard let t = try store.trust(hostID: hostID) else { return nil }
            let last = t.lastContactAt ?? t.since
            guard clock.now().timeIntervalSince(last) > interval + Self.pushSlack(interval) else { return nil }
            _ = try fault(hostID: hostID, code: ErrorCode.reportOverdue.rawValue,
                          message: "no report since \(last.iso8601) (interval \(Int(interval))s)")
            return .fault(ErrorCode.reportOverdue.rawValue)
        } catch {
            return .fault(ErrorCode.internalError.rawValue)
        }
    }

    /// How late a push report may be before it counts as missed.
    static func pushSlack(_ interval: TimeInterval) -> TimeInterval { max(5, interval / 2) }

    /// What the scheduler needs for every host it should re-attest: active AK, not blocked, a
    /// policy, a trust record.
    public func schedulableHosts() throws -> [(id: String, mode: AttestationMode, interval: TimeInterval, state: TrustState)] {
        let set = policies.current
        struct Match: Hashable { let labels: [String: String]; let ekIssuer: String }
        var intervals: [Match: TimeInterval?] = [:]   // policy selection once per distinct (labels, issuer)
        return try store.attestableHosts().compactMap { h in
            let match = Match(labels: h.labels, ekIssuer: h.ekIssuer)
            let interval = intervals[match] ?? set.select(labels: h.labels, ekIssuer: h.ekIssuer)?.reattestation.interval
            intervals[match] = interval
            guard let interval else { return nil }
            return (h.id, h.mode, interval, h.state)
        }
    }

    /// The host's trust record as the API shows it.
    func trustStatus(_ t: HostTrust) -> HostTrustStatus {
        HostTrustStatus(state: t.state.rawValue, since: t.since.iso8601, mode: t.mode.rawValue, simulated: t.simulated ? true : nil,
                        lastVerdictAt: t.lastVerdictAt?.iso8601, lastContactAt: t.lastContactAt?.iso8601,
                        consecutiveFailures: t.consecutiveFailures, lastProblem: t.lastProblem, attesterURL: t.attesterURL)
    }
}
