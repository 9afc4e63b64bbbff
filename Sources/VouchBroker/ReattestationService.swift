import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel
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
/// Both calls throw a fault — `attester_unreachable`, `attester_timeout` or `attester_fault` —
/// when no answer of the endpoint's shape comes back, and never judge the evidence.
public protocol EvidenceSource: Sendable {
    /// A TPM host: asks the attester at `attesterURL` (whose TLS key must match `pin`) for a
    /// quote (`POST /v1/quote`, answered with a `QuoteBody`).
    func quote(attesterURL: String, pin: String, request: QuoteRequest) throws -> QuoteBody
    /// A CPU TEE host: asks the attester for its evidence (`POST /v1/evidence`, answered with an
    /// `AttestationReport`, the body a push report is).
    func evidence(attesterURL: String, pin: String, request: QuoteRequest) throws -> AttestationReport
}

/// The outcome of one re-attestation round for the scheduler: a verdict, or a fault.
public enum RoundOutcome: Sendable, Equatable {
    case verdict(trusted: Bool)
    case fault(String)
}

/// Continuous re-attestation: judging reports (pushed or pulled), faults, the trust state
/// machine applied in one transaction (`applyTrust`), pull rounds and overdue pushes for the
/// scheduler.
public struct ReattestationService: BrokerPart, Sendable {
    let context: BrokerContext

    // MARK: Verdicts

    /// Judges a re-attestation report (pushed by the host, or pulled by the scheduler). Checks, in
    /// order, refusing at the first failure:
    /// 1. the host is registered, not blocked, its AK activated, and a policy applies;
    /// 2. the nonce was issued to this host for attestation, is unexpired and unused — else a 4xx
    ///    and no verdict (pull rounds check the nonce they hold in memory instead); a push
    ///    report's nonce is recorded as used with the verdict, in its transaction;
    /// 3. the evidence authenticates (`EvidenceVerifiers.authenticate`; for the TPM, QuoteVerifier;
    ///    for a CPU TEE, its verifier, REPORT_DATA = `EnrollmentBinding.teeReportData` of the
    ///    binding, and the registered chip or host key) bound to SHA-256(nonce ‖ SHA-256("vouch
    ///    re-attestation v1")) — with other devices (GPUs), to `EnrollmentBinding.composite` of it
    ///    and their digests, each device's own evidence carrying the nonce;
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
    /// verdict (push reports), until when; or throws. A `pulled` report whose evidence does not
    /// decode is the attester's fault (`attester_fault`), not a request's (`bad_request`, …).
    private func judge(host: HostRecord, _ report: AttestationReport, pulled: Bool = false,
                       consumeNonce: (_ nonce: String, _ host: HostRecord, _ now: Date) throws -> (issuedAt: Date, storeUntil: Date?)) throws -> AttestationVerdict {
        let started = DispatchTime.now()
        let now = clock.now()
        // 1
        let policy = try attestablePolicy(for: host)
        guard Hex.isLowercase(report.nonce, length: 64...64) else {
            throw VouchError(.badRequest, "nonce must be 64 lowercase hex digits", context: ["field": "nonce"])
        }
        let rawEvidence: [RawEvidence]
        do { rawEvidence = try Self.rawEvidence(report) } catch let e as VouchError where pulled {
            throw VouchError(.attesterFault, "the attester's answer is not evidence: \(e.message)", context: e.context)
        }
        // 2
        let (issuedAt, nonceExpiresAt) = try consumeNonce(report.nonce, host, now)
        // 3
        let nonce = try Hex.decode(report.nonce)
        let verification = try verificationContext(host: host, policy: policy,
                                                   binding: Self.platformBinding(EnrollmentBinding.reattestationData(nonce: nonce), rawEvidence),
                                                   nonce: nonce, now: now)
        let evidenceSet: AuthenticatedEvidenceSet
        switch evidenceVerifiers.authenticate(rawEvidence, context: verification) {
        case let .authenticated(set): evidenceSet = set
        case let .rejected(errors):
            metrics.verification(seconds: Self.seconds(since: started))
            return try verdict(host: host, policy: policy, trusted: false, codes: errors.map(\.code.rawValue),
                               message: errors.map(\.message).joined(separator: "; "), nonce: report.nonce, nonceExpiresAt: nonceExpiresAt, now: now)
        }
        // 4
        let appraisal = evidenceVerifiers.appraise(evidenceSet, accepted: try acceptedState(hostID: host.id, nonceIssuedAt: issuedAt), context: verification,
                                                   evidenceAge: now.timeIntervalSince(issuedAt))
        metrics.verification(seconds: Self.seconds(since: started))
        switch appraisal {
        case let .trusted(evidence):
            return try verdict(host: host, policy: policy, trusted: true, codes: [],
                               message: "\(evidence.platform.kind.evidenceName) verified; policy \(policy.label) satisfied", nonce: report.nonce,
                               nonceExpiresAt: nonceExpiresAt, now: now,
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
                               record: EvidenceRecord(measurementDigest: record?.measurementDigest, measurements: record?.measurements, claims: claims,
                                                      tee: record?.tee))
        }
    }

    static func seconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }

    /// Records a verdict and moves the host's trust state (`TrustStateMachine.verdict`), in one
    /// transaction with the revocation a failure calls for.
    private func verdict(host: HostRecord, policy: Policy, trusted: Bool, codes: [String], message: String, nonce: String, nonceExpiresAt: Date?, now: Date,
                         record: EvidenceRecord? = nil) throws -> AttestationVerdict {
        let decided = DispatchTime.now()
        let record = AttestationRecord(hostID: host.id, at: now, kind: .reattestation, trusted: trusted, codes: codes, message: message,
                                       nonce: nonce, policyName: policy.name, policyVersion: policy.version, policySHA256: policy.sha256,
                                       pcrDigest: record?.measurementDigest, claims: record?.claims, pcrs: record?.measurements,
                                       teeEvidence: record?.tee.map(TEEEvidenceCopy.init), nonceExpiresAt: nonceExpiresAt)
        let (step, revoked) = try applyTrust(hostID: host.id, policy: policy, codes: codes, now: now, decided: decided, record: { _ in record }) {
            TrustStateMachine.verdict($0, trusted: trusted, problem: codes.first, rule: .init(policy), now: now)
        }
        metrics.attestation(trusted ? "trusted" : (codes.first ?? "rejected"))
        if !trusted {
            log("host \(host.id) failed re-attestation (\(codes.joined(separator: ","))), \(step.trust.consecutiveFailures) in a row; state \(step.trust.state.rawValue)")
        }
        return AttestationVerdict(hostId: host.id, at: now.iso8601, result: VerdictResult(trusted: trusted), codes: codes, message: message,
                                  state: step.trust.state.rawValue, revoked: revoked.isEmpty ? nil : revoked)
    }

    /// Codes as the public event stream shows them: how a pull failed (refused, timed out, broken
    /// TLS) would tell anyone reading events what answers at a host-chosen address, so every
    /// pull fault reads `no_evidence` there; the audit trail (read token) keeps the exact code.
    static func publicCodes(_ codes: [String]) -> [String] {
        let pullFaults: Set<String> = [ErrorCode.attesterUnreachable.rawValue, ErrorCode.attesterTimeout.rawValue, ErrorCode.attesterFault.rawValue]
        return codes.map { pullFaults.contains($0) ? "no_evidence" : $0 }
    }

    /// Takes one step of the trust state machine on the host's stored record and commits, in one
    /// transaction (read and written under it, so concurrent verdicts and faults on one host never
    /// lose an update), the new record, the decision `record` makes of the step, the revocation it
    /// calls for (every unrevoked certificate of the host's agents, `privilegeWithdrawn`, with the
    /// CRLs signed before the transaction: `Revocations.change`) and its event. A host without a
    /// trust record gets none (its step is computed, nothing of it is stored but the decision).
    /// Returns the step and the revoked serials.
    @discardableResult
    func applyTrust(hostID: String, policy: Policy?, codes: [String], now: Date, decided: DispatchTime = .now(), onlyWithRecord: Bool = false,
                    alongside: (any StoreTransaction) throws -> Void = { _ in },
                    record: (TrustStateMachine.Step) -> AttestationRecord?,
                    step take: (HostTrust) -> TrustStateMachine.Step) throws -> (step: TrustStateMachine.Step, revoked: [String]) {
        let done = try revocations.change(at: now, decide: { tx -> Revocations.Decision<(stored: Bool, step: TrustStateMachine.Step)> in
            let stored = try tx.trust(hostID: hostID)
            let unchanged = TrustStateMachine.Step(trust: stored ?? HostTrust(hostID: hostID, since: now, mode: .push), previous: stored?.state ?? .unknown)
            let step = stored == nil && onlyWithRecord ? unchanged : take(unchanged.trust)
            return .init(value: (stored != nil, step), revoke: step.revoke ? (.host(hostID), .privilegeWithdrawn) : nil)
        }) { tx, decision, plan in
            try alongside(tx)
            guard decision.stored || !onlyWithRecord else { return }
            if let r = record(decision.step) { try tx.recordAttestation(r) }
            if decision.stored { try tx.saveTrust(decision.step.trust) }
            let step = decision.step, count = plan?.certificates.count ?? 0
            switch step.event(revokedCount: count) {
            case .hostTrusted?:
                try tx.appendEvent(type: .hostTrusted, data: ["hostId": hostID, "previous": step.previous.rawValue, "policy": policy?.label ?? ""], at: now)
            case .hostUntrusted?:
                try tx.appendEvent(type: .hostUntrusted, data: ["hostId": hostID, "codes": Self.publicCodes(codes).joined(separator: ","), "policy": policy?.label ?? "",
                                                               "action": policy?.reattestation.action.rawValue ?? "", "revoked": "\(count)"], at: now)
            case .hostUnreachable?:
                try tx.appendEvent(type: .hostUnreachable, data: ["hostId": hostID, "code": Self.publicCodes(codes)[0], "previous": step.previous.rawValue], at: now)
            case nil, .some:
                break
            }
        }
        let step = done.value.step, revoked = done.plan?.serials ?? []
        if step.event(revokedCount: revoked.count) != nil { events.notify() }
        if step.revoke { metrics.revoked(revoked.count) }
        if step.failed, step.event(revokedCount: revoked.count) != nil {
            metrics.revocation(seconds: Self.seconds(since: decided))
            log("host \(hostID) untrusted (\(codes.joined(separator: ","))); \(policy?.reattestation.action.rawValue ?? "untrust"): \(revoked.count) certificate(s) revoked")
        } else if step.trust.state != step.previous, step.trust.state == .trusted {
            log("host \(hostID) trusted (was \(step.previous.rawValue))")
        }
        return (step, revoked)
    }

    /// Records a fault — no evidence came (unreachable, timeout, TPM busy, missed push report, clock
    /// not yet safe): `TrustStateMachine.fault`. The host is `unreachable`, not failed, until the
    /// policy's grace has passed since the spell began; then the fault counts as a failed verdict
    /// and `onFailure` applies.
    @discardableResult
    public func fault(hostID: String, code: String, message: String) throws -> TrustState {
        let now = clock.now()
        let host = try knownHost(hostID)
        // A host no policy applies to any more has no grace: `TrustStateMachine.fault` with no rule.
        let policy: Policy?
        do { policy = try applicablePolicy(for: host) } catch let e as VouchError where e.code == .noPolicy { policy = nil }
        metrics.attestation(code)
        let (step, _) = try applyTrust(hostID: host.id, policy: policy, codes: [code], now: now, record: { step in
            switch step.faultRecord {
            case let .failedAfterGrace(seconds)?:
                return AttestationRecord(hostID: host.id, at: now, kind: .reattestation, trusted: false, codes: [code],
                                         message: "no evidence for \(seconds)s (grace \(Int(policy?.reattestation.grace ?? 0))s): \(message)",
                                         policyName: policy?.name, policyVersion: policy?.version, policySHA256: policy?.sha256)
            case .unreachable?:
                return AttestationRecord(hostID: host.id, at: now, kind: .fault, trusted: false, codes: [code],
                                         message: "\(message) (unreachable; untrusted if it lasts \(Int(policy?.reattestation.grace ?? 0))s)",
                                         policyName: policy?.name, policyVersion: policy?.version, policySHA256: policy?.sha256)
            case nil:
                return nil
            }
        }) { TrustStateMachine.fault($0, code: code, rule: policy.map(TrustStateMachine.Rule.init), now: now) }
        if step.faultRecord == .unreachable { log("host \(host.id) unreachable: \(code) \(message)") }
        return step.trust.state
    }

    /// A trusted enrollment is fresh verified evidence under the same policy: a good verdict for
    /// a host with a trust record (`TrustStateMachine.trustedEnrollment`), committed with what
    /// `issuance` writes (the certificate, its decision and event) in one transaction.
    func trustedEnrollment(hostID: String, policy: Policy, now: Date, issuance: (any StoreTransaction) throws -> Void) throws {
        try applyTrust(hostID: hostID, policy: policy, codes: [], now: now, onlyWithRecord: true, alongside: issuance, record: { _ in nil }) {
            TrustStateMachine.trustedEnrollment($0, now: now)
        }
    }

    // MARK: Rounds, for the scheduler

    /// One pull round: a fresh nonce, the evidence from the attester over mTLS, a verdict. The
    /// nonce lives only in this call (the broker asks and checks the answer itself), so it is never
    /// stored: it is accepted for this one report, within the challenge TTL, and nowhere else.
    /// A TPM host is asked for a quote (`POST /v1/quote`, as attesters always answered), any other
    /// platform for its evidence (`POST /v1/evidence`, an `AttestationReport`). Either answer is
    /// judged as a push report is (`judge`): evidence of another kind than the host's platform is
    /// a failed verdict (`evidence_missing`); evidence bound to another nonce fails its binding
    /// check. No evidence is a fault: the source's, `attester_fault` for an answer that names
    /// another nonce or does not decode as evidence (`rawEvidence` refuses it), or
    /// `attester_timeout` for one that comes after the challenge TTL (vouchd refuses a
    /// `--pull-timeout` that allows it, but a clock may jump).
    public func pullRound(hostID: String, source: EvidenceSource) -> RoundOutcome {
        do {
            let host = try knownHost(hostID)
            let policy = try attestablePolicy(for: host)
            guard let t = try store.trust(hostID: host.id), let url = t.attesterURL, let pin = t.hostKeyPin else {
                return .fault("not_pullable")
            }
            let nonce = Hex.encode(try Crypto.randomBytes(32))
            let issuedAt = clock.now()
            let request = QuoteRequest(nonce: nonce, pcrSelection: Self.challengeSelection(policy))
            let report: AttestationReport
            do {
                if host.platform == .tpm {
                    report = AttestationReport(nonce: nonce, quote: try source.quote(attesterURL: url, pin: pin, request: request))
                } else {
                    report = try source.evidence(attesterURL: url, pin: pin, request: request)
                    guard report.nonce == nonce else {
                        throw VouchError(.attesterFault, "the attester answered another nonce", context: ["field": "nonce"])
                    }
                }
            } catch let e as VouchError {
                _ = try fault(hostID: host.id, code: e.code.rawValue, message: e.message)
                return .fault(e.code.rawValue)
            }
            let v: AttestationVerdict
            do {
                v = try judge(host: host, report, pulled: true) { got, _, now in
                    guard got == nonce else { throw VouchError(.nonceUnknown, "the attester answered another nonce", context: ["field": "nonce"]) }
                    guard now < issuedAt.addingTimeInterval(config.challengeTTL) else {
                        throw VouchError(.nonceExpired, "the attester answered after the challenge expired", context: ["field": "nonce"])
                    }
                    return (issuedAt, nil)   // held in memory for this one pull: nothing to store
                }
            } catch let e as VouchError where e.code == .attesterFault {
                // The answer does not decode as evidence: nothing to judge, as a push report that
                // does not decode is a 400 and no verdict.
                _ = try fault(hostID: host.id, code: e.code.rawValue, message: e.message)
                return .fault(e.code.rawValue)
            } catch let e as VouchError where e.code == .nonceExpired {
                // An answer after the nonce expired is no answer in time: a fault like a timeout,
                // so that the grace runs and the host does not stay trusted on late answers.
                _ = try fault(hostID: host.id, code: ErrorCode.attesterTimeout.rawValue, message: e.message)
                return .fault(ErrorCode.attesterTimeout.rawValue)
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
        struct Match: Hashable { let labels: [String: String]; let ekIssuer: String; let platform: HostPlatform }
        var intervals: [Match: TimeInterval?] = [:]   // policy selection once per distinct (labels, issuer, platform)
        return try store.attestableHosts().compactMap { h in
            let match = Match(labels: h.labels, ekIssuer: h.ekIssuer, platform: h.platform)
            let interval = intervals[match] ?? set.select(labels: h.labels, ekIssuer: h.ekIssuer, platform: h.platform.policyPlatform)?.reattestation.interval
            intervals[match] = interval
            guard let interval else { return nil }
            return (h.id, h.mode, interval, h.state)
        }
    }
}
