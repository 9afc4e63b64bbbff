import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchModel
import VouchPolicy

/// The read side: status, hosts, the attestation history, certificates, the summary, verified
/// evidence, metrics and the loaded policies (with their reload). The EAR is in
/// `AttestationResults.swift`.
public struct QueryService: BrokerPart, Sendable {
    let context: BrokerContext

    // MARK: Status

    public func status() throws -> StatusResponse {
        let now = clock.now()
        let set = policies.current
        let trusts = Dictionary(uniqueKeysWithValues: try store.trusts().map { ($0.hostID, $0) })
        let hosts = try store.hosts().map { try hostStatus($0, trust: trusts[$0.id], policies: set) }
        let certs = try store.certificates().map { certificateStatus($0, now: now) }
        return StatusResponse(trustDomain: config.trustDomain, policies: policyStatus(), crlNumber: try store.currentCRL(issuer: authorities.current.keyID)?.number ?? 0,
                              hosts: hosts, certificates: certs)
    }

    /// A host as status, `GET /v1/hosts` and `GET /v1/hosts/{id}` show it.
    func hostStatus(_ h: HostRecord, trust: HostTrust?, policies set: PolicySet) throws -> HostStatus {
        let last = try store.latestAttestation(hostID: h.id).map { a in
            AttestationSummary(at: a.at.iso8601, result: a.trusted ? "trusted" : (a.codes.isEmpty ? "info" : "rejected"),
                               codes: a.codes, message: a.message, policy: a.policyName.map { "\($0) v\(a.policyVersion ?? 0)" },
                               claims: a.claims)
        }
        var status = HostStatus(hostId: h.id, hostname: h.hostname, labels: h.labels.isEmpty ? nil : h.labels,
                                policy: set.select(labels: h.labels, ekIssuer: h.ekIssuer, platform: h.platform.policyPlatform)?.label, akState: h.akState.rawValue, akAlgorithm: h.akAlgorithm,
                                blocked: h.blockedReason,
                                ekIssuer: h.ekIssuer, registeredAt: h.registeredAt.iso8601, lastAttestation: last)
        status.trust = trust.map(trustStatus)
        status.platform = h.platform.rawValue
        return status
    }

    /// A certificate as status and `GET /v1/certificates` show it.
    func certificateStatus(_ c: CertificateRecord, now: Date) -> CertificateStatus {
        CertificateStatus(serial: c.serial, hostId: c.hostID, agentName: c.agentName, spiffeId: c.spiffeID,
                          notBefore: c.notBefore.iso8601, notAfter: c.notAfter.iso8601, state: c.state(at: now),
                          revokedAt: c.revokedAt?.iso8601, revocationReason: c.revocationReason.map(\.name))
    }

    /// Hosts by AK state and by trust state, certificates by state: for /metrics and the summary.
    func stateCounts(now: Date) throws -> (hostsByAK: [String: Int], hostsByTrust: [String: Int], certificates: [String: Int]) {
        var ak = ["pending": 0, "active": 0]
        for h in try store.hosts() { ak[h.akState.rawValue, default: 0] += 1 }
        var trust = Dictionary(uniqueKeysWithValues: TrustState.allCases.map { ($0.rawValue, 0) })
        for t in try store.trusts() { trust[t.state.rawValue, default: 0] += 1 }
        var certs = Dictionary(uniqueKeysWithValues: CertificateState.allCases.map { ($0.rawValue, 0) })
        for c in try store.certificates() { certs[c.state(at: now).rawValue, default: 0] += 1 }
        return (ak, trust, certs)
    }

    /// One host's status.
    public func hostStatus(id: String) throws -> HostStatus {
        let host = try knownHost(id)
        return try hostStatus(host, trust: try store.trust(hostID: host.id), policies: policies.current)
    }

    // MARK: History

    /// The attestation history, newest first. Query parameters: `hostId`, `result`
    /// (trusted|rejected), `kind`, `from`/`until` (RFC 3339), `limit` (1-1000, default 100),
    /// `before` (the cursor from the previous page).
    public func history(_ params: [String: String]) throws -> AttestationPage {
        var q = HistoryQuery()
        let known: Set = ["hostId", "result", "kind", "from", "until", "limit", "before"]
        if let unknown = params.keys.first(where: { !known.contains($0) }) {
            throw VouchError(.badRequest, "unknown query parameter", context: ["field": String(unknown.prefix(64))])
        }
        if let h = params["hostId"] { q.hostID = try knownHost(h).id }
        switch params["result"] {
        case nil: break
        case "trusted"?: q.trusted = true
        case "rejected"?: q.trusted = false
        case let other?: throw VouchError(.badRequest, "result must be trusted or rejected", context: ["field": "result", "got": String(other.prefix(32))])
        }
        if let k = params["kind"] {
            guard let kind = AttestationKind(rawValue: k), kind.isFilterable else {
                throw VouchError(.badRequest, "unknown kind", context: ["field": "kind", "got": String(k.prefix(32))])
            }
            q.kind = kind
        }
        for (key, path) in [("from", \HistoryQuery.from), ("until", \HistoryQuery.until)] {
            if let v = params[key] {
                guard let d = Date.parseRFC3339(v) else { throw VouchError(.badRequest, "\(key) must be an RFC 3339 time", context: ["field": key]) }
                q[keyPath: path] = d
            }
        }
        if let l = params["limit"] {
            guard let n = Int(l), (1...1000).contains(n) else { throw VouchError(.badRequest, "limit must be 1-1000", context: ["field": "limit"]) }
            q.limit = n
        }
        if let b = params["before"] {
            guard let n = Int64(b), n > 0 else { throw VouchError(.badRequest, "before must be a cursor from a previous page", context: ["field": "before"]) }
            q.before = n
        }
        let rows = try store.attestations(q)
        let items = rows.map(AttestationEntry.init)
        return AttestationPage(items: items, next: rows.count == q.limit ? rows.last.map { "\($0.id)" } : nil)
    }

    // MARK: Certificates

    /// Agent certificates, optionally of one host, agent, SPIFFE ID or state (valid|expired|revoked).
    public func certificates(_ params: [String: String]) throws -> [CertificateStatus] {
        let known: Set = ["hostId", "agentName", "spiffeId", "state"]
        if let unknown = params.keys.first(where: { !known.contains($0) }) {
            throw VouchError(.badRequest, "unknown query parameter", context: ["field": String(unknown.prefix(64))])
        }
        var state: CertificateState?
        if let s = params["state"] {
            guard let parsed = CertificateState(rawValue: s) else {
                throw VouchError(.badRequest, "state must be valid, expired or revoked", context: ["field": "state"])
            }
            state = parsed
        }
        let now = clock.now()
        return try store.certificates().map { certificateStatus($0, now: now) }.filter { c in
            (params["hostId"].map { $0 == c.hostId } ?? true) && (params["agentName"].map { $0 == c.agentName } ?? true)
                && (params["spiffeId"].map { $0 == c.spiffeId } ?? true) && (state.map { $0 == c.state } ?? true)
        }
    }

    public func certificate(serial: String) throws -> (status: CertificateStatus, pem: String) {
        let s = serial.lowercased()
        guard Hex.isLowercase(s, length: 1...40) else {
            throw VouchError(.badRequest, "serial must be hex", context: ["field": "serial"])
        }
        guard let record = try store.certificate(serial: s) else {
            throw VouchError(.notFound, "no certificate with this serial", context: ["serial": s])
        }
        return (certificateStatus(record, now: clock.now()), record.pem)
    }

    // MARK: Summary

    public func summary() throws -> StatusSummary {
        let (ak, trust, certs) = try stateCounts(now: clock.now())
        return StatusSummary(trustDomain: config.trustDomain, hostsByState: trust, hostsByAKState: ak, certificatesByState: certs,
                             crlNumber: try store.currentCRL(issuer: authorities.current.keyID)?.number ?? 0,
                             policies: policies.current.policies.count, policyReloadError: policies.lastError?.error.message)
    }

    // MARK: Policies and evidence

    public func policyStatus() -> PolicyStatus {
        let err = policies.lastError
        return PolicyStatus(policies: policies.current.policies.map(Self.summary), loadedAt: policies.loadedAt.iso8601,
                            reloadError: err.map { APIError(code: $0.error.code.rawValue, message: $0.error.message, context: $0.error.context) },
                            reloadErrorAt: err?.at.iso8601)
    }

    static func summary(_ p: Policy) -> PolicySummary {
        var match = p.match.labels.mapKeys { "label:\($0)" }
        if let issuer = p.match.ekIssuer { match["ekIssuer"] = issuer }
        return PolicySummary(name: p.name, version: p.version, priority: p.priority, sha256: p.sha256, file: p.file, match: match)
    }

    /// Re-reads the policy files; the running policies stay if the new ones are invalid.
    public func reloadPolicies() throws -> PolicyStatus {
        if case let .failure(e) = policies.reload() { throw e }
        return policyStatus()
    }

    /// Prometheus text exposition of the broker's counters and gauges.
    public func metricsText() throws -> String {
        let now = clock.now()
        let (hosts, trust, certs) = try stateCounts(now: now)
        let crl = try store.currentCRL(issuer: authorities.current.keyID)
        var depth: [String: Int] = [:]
        // Subscribers are named by their position in --webhook: URLs may carry credentials.
        for (i, url) in config.webhookURLs.enumerated() { depth["\(i)"] = try store.undeliveredCount(subscriber: url) }
        return metrics.render(.init(webhookOutboxDepth: depth, hostsByState: hosts, policiesLoaded: policies.current.policies.count, policyReloadFailing: policies.lastError != nil,
                                    crlNumber: crl?.number ?? 0, crlAgeSeconds: crl.map { now.timeIntervalSince($0.thisUpdate) } ?? 0,
                                    certificatesByState: certs, hostsByTrust: trust))
    }

    /// The host's most recent verified evidence: a TPM host's quoted PCR values; a CPU TEE host's
    /// report or quote as authenticated then, with the endorsement, CRL, event log and collateral
    /// that verify it again (`tee`; `pcrs` empty). A TEE decision recorded before its bytes were
    /// kept has none to give: 404 until the host's next report.
    public func evidence(hostID: String) throws -> EvidenceBundle {
        let host = try knownHost(hostID)
        guard let a = try store.latestEvidence(hostID: host.id), a.pcrs != nil || a.teeEvidence != nil else {
            throw VouchError(.notFound, "this host has no verified evidence yet", context: ["hostId": host.id])
        }
        return EvidenceBundle(hostId: host.id, hostname: host.hostname, labels: host.labels, ekIssuer: host.ekIssuer, at: a.at.iso8601,
                              pcrs: a.pcrs ?? [:], claims: a.claims, result: a.trusted ? "trusted" : "rejected", codes: a.codes,
                              policy: a.policyName.map { "\($0) v\(a.policyVersion ?? 0)" }, tee: a.teeEvidence)
    }
    /// Ready to serve: not shutting down, and the store answers.
    public func ready() throws -> Bool {
        guard !context.closing.withLock({ $0 }) else { return false }
        _ = try store.latestDecisionTime()
        try context.revocations.checkNotBehind(issuer: authorities.current.keyID)   // crl_behind: 503
        return true
    }

    /// The host's trust record as the API shows it.
    func trustStatus(_ t: HostTrust) -> HostTrustStatus {
        HostTrustStatus(state: t.state.rawValue, since: t.since.iso8601, mode: t.mode.rawValue, simulated: t.simulated ? true : nil,
                        lastVerdictAt: t.lastVerdictAt?.iso8601, lastContactAt: t.lastContactAt?.iso8601,
                        consecutiveFailures: t.consecutiveFailures, lastProblem: t.lastProblem, attesterURL: t.attesterURL)
    }
}

extension Dictionary {
    func mapKeys<K: Hashable>(_ f: (Key) -> K) -> [K: Value] { Dictionary<K, Value>(uniqueKeysWithValues: map { (f($0.key), $0.value) }) }
}
