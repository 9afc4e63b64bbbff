import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchModel
import VouchPolicy

extension BrokerService {
    // MARK: Revocation and CRL

    public func revoke(_ req: RevokeRequest) throws -> RevokeResponse {
        let target: RevocationTarget
        switch (req.serial, req.hostId, req.agentName) {
        case let (serial?, nil, nil):
            guard serial.range(of: "^[0-9a-fA-F]{1,40}$", options: .regularExpression) != nil else {
                throw VouchError(.badRequest, "serial must be hex", context: ["field": "serial"])
            }
            target = .serial(serial.lowercased().drop { $0 == "0" }.isEmpty ? "0" : String(serial.lowercased().drop { $0 == "0" }))
        case let (nil, host?, agent?):
            _ = try knownHost(host)
            target = .agent(hostID: host, agentName: agent)
        case let (nil, host?, nil):
            _ = try knownHost(host)
            target = .host(host)
        default:
            throw VouchError(.badRequest, "name exactly one of: serial; hostId and agentName; hostId")
        }
        let reasonName = req.reason ?? RevocationReason.unspecified.name
        guard let reason = RevocationReason(name: reasonName), reason.isRequestable else {
            let expected = RevocationReason.allCases.filter(\.isRequestable).map(\.name).sorted()
            throw VouchError(.badRequest, "unknown revocation reason", context: ["field": "reason", "expected": expected.joined(separator: ","), "got": reasonName])
        }
        if req.blockHost == true {
            guard case let .host(id) = target else { throw VouchError(.badRequest, "blockHost goes with hostId alone", context: ["field": "blockHost"]) }
            _ = try knownHost(id)
            let now = clock.now()
            // The block, the revocations, their CRLs and the events: one transaction.
            let done = try revocations.change(at: now, decide: { _ in .init(value: (), revoke: (target, reason)) }) { tx, _, _ in
                try tx.setBlock(hostID: id, reason: "\(reasonName) at \(now.iso8601)")
                try tx.appendEvent(type: .hostBlocked, data: ["hostId": id, "reason": reasonName], at: now)
            }
            log("host \(id) blocked (\(reasonName))")
            events.notify()
            let serials = done.plan?.serials ?? []
            metrics.revoked(serials.count)
            return RevokeResponse(revoked: serials, crlNumber: try crlNumber(done.crls))
        }
        let (serials, crls) = try revocations.revoke(target, at: clock.now(), reason: reason)
        guard !serials.isEmpty else {
            throw VouchError(.notFound, "no unrevoked certificate matches", context: ["target": "\(target)"])
        }
        metrics.revoked(serials.count)
        events.notify()
        let number = try crlNumber(crls)
        log("revoked \(serials.joined(separator: ",")) (\(reasonName)); CRL #\(number)")
        return RevokeResponse(revoked: serials, crlNumber: number)
    }

    /// The number of the current CA's CRL after a revocation (its new one if it changed).
    func crlNumber(_ changed: [CRLRecord]) throws -> UInt64 {
        let id = authorities.current.keyID
        return try changed.first { $0.issuer == id }?.number ?? currentCRL().number
    }

    /// The CRL of the CA with key id `issuer` (default: the issuing CA); see `Revocations.currentCRL`.
    public func currentCRL(issuer: String? = nil) throws -> CRLRecord {
        try revocations.currentCRL(issuer: issuer ?? authorities.current.keyID)
    }

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
                                policy: set.select(labels: h.labels, ekIssuer: h.ekIssuer)?.label, akState: h.akState.rawValue, akAlgorithm: h.akAlgorithm,
                                blocked: h.blockedReason,
                                ekIssuer: h.ekIssuer, registeredAt: h.registeredAt.iso8601, lastAttestation: last)
        status.trust = trust.map(trustStatus)
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

    /// Rotates to the staged next CA (see CASet.rotate); returns the new issuing CA's certificate.
    public func rotateCA() throws -> String {
        let ca = try authorities.rotate()
        responseCache.write { $0.ocsp.removeAll(); $0.generation += 1 }
        log("CA rotated: now issuing with \(ca.signer.caCertificate.subject) (key id \(ca.keyID))")
        _ = try currentCRL()
        return try ca.chainPEM
    }

    /// One host's status.
    public func hostStatus(id: String) throws -> HostStatus {
        let host = try knownHost(id)
        return try hostStatus(host, trust: try store.trust(hostID: host.id), policies: policies.current)
    }

    /// Deregisters a host: revokes its agents' certificates (cessationOfOperation) and forgets its
    /// AK and trust state; it must register again. Its audit trail and certificates stay.
    public func deleteHost(id: String) throws -> RevokeResponse {
        // A blocked host stays registered, so its block keeps applying to its TPM; deleting it
        // would leave a block no operator could reach (`unblock` finds registered hosts only).
        if let reason = try knownHost(id).blockedReason {
            throw VouchError(.conflict, "this host is blocked; unblock it first (a blocked host stays registered so the block keeps applying)",
                             context: ["hostId": id, "reason": reason])
        }
        let now = clock.now()
        // The revocations, the deletion, its record and event: one transaction.
        let done = try revocations.change(at: now, decide: { _ in .init(value: (), revoke: (.host(id), .cessationOfOperation)) }) { tx, _, plan in
            let count = plan?.certificates.count ?? 0
            try tx.deleteHost(id: id)
            try tx.recordAttestation(AttestationRecord(hostID: id, at: now, kind: .deregistration, trusted: false, codes: [],
                                                       message: "deregistered by an operator; \(count) certificate(s) revoked"))
            try tx.appendEvent(type: .hostDeleted, data: ["hostId": id, "revoked": "\(count)"], at: now)
        }
        let serials = done.plan?.serials ?? []
        metrics.revoked(serials.count)
        events.notify()
        log("host \(id) deregistered; \(serials.count) certificate(s) revoked")
        return RevokeResponse(revoked: serials, crlNumber: try crlNumber(done.crls))
    }

    /// Lifts an operator's block on a host (it must still pass attestation to get certificates).
    public func unblock(hostID: String) throws -> HostStatus {
        _ = try knownHost(hostID)
        let now = clock.now()
        try store.transaction { tx in
            try tx.setBlock(hostID: hostID, reason: nil)
            try tx.appendEvent(type: .hostUnblocked, data: ["hostId": hostID], at: now)
        }
        events.notify()
        log("host \(hostID) unblocked")
        return try hostStatus(id: hostID)
    }

    // MARK: OCSP and trust bundle

    /// Answers a DER OCSPRequest from the store's records (RFC 6960).
    /// Signed responses are cached by request bytes for a quarter of their validity; every
    /// revocation empties the cache before it is answered, so no cached "good" outlives one.
    public func ocsp(request: [UInt8]) throws -> [UInt8] {
        let now = clock.now()
        if let hit = responseCache.read({ $0.ocsp[request] }), now >= hit.at, now < hit.at.addingTimeInterval(config.ocspValidity / 4) {
            return hit.response
        }
        // Answered by the CA the request names (current or previous); others get "unknown" from the current CA.
        let ca = authorities.signing.first { OCSPResponder.requestNames(request, issuer: $0.signer.caCertificate) } ?? authorities.current
        let generation = responseCache.read { $0.generation }
        let response = try ca.signer.ocspResponse(request: request, now: now, validity: config.ocspValidity) { serial in
            guard let c = try store.certificate(serial: serial) else { return .unknown }
            if let at = c.revokedAt { return .revoked(at: at, reason: (c.revocationReason ?? .unspecified).rawValue) }
            return .good
        }
        responseCache.write { c in
            // Not if a revocation happened meanwhile (the answer may predate it).
            guard c.generation == generation, request.count <= 4096 else { return }
            if c.ocsp.count >= 10_000 { c.ocsp.removeAll() }
            c.ocsp[request] = (now, response)
        }
        return response
    }

    /// The trust bundle: every root relying parties and attesters should trust now (issuing,
    /// previous and staged next CAs).
    public func bundlePEM() throws -> String { try authorities.bundle.map { try $0.pem }.joined() }

    /// The same bundle as a SPIFFE bundle (JWKS with x509-svid keys).
    public func spiffeBundle() throws -> [UInt8] {
        func b64url(_ b: [UInt8]) -> String {
            Base64.encode(b).replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        let keys: [[String: Any]] = try authorities.bundle.map { root in
            guard let jwk = try root.publicKey.ecJWKParameters else { throw VouchError(.internalError, "CA key is not an EC key") }
            return ["kty": "EC", "crv": jwk.crv, "x": b64url(jwk.x), "y": b64url(jwk.y), "use": "x509-svid", "x5c": [Base64.encode(try root.der)]]
        }
        let body: [String: Any] = ["keys": keys, "spiffe_refresh_hint": Int(config.crlValidity), "spiffe_sequence": 1]
        return [UInt8](try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes]))
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

    /// The host's most recent verified evidence.
    public func evidence(hostID: String) throws -> EvidenceBundle {
        let host = try knownHost(hostID)
        guard let a = try store.latestEvidence(hostID: host.id), let pcrs = a.pcrs else {
            throw VouchError(.notFound, "this host has no verified evidence yet", context: ["hostId": host.id])
        }
        return EvidenceBundle(hostId: host.id, hostname: host.hostname, labels: host.labels, ekIssuer: host.ekIssuer, at: a.at.iso8601,
                              pcrs: pcrs, claims: a.claims, result: a.trusted ? "trusted" : "rejected", codes: a.codes,
                              policy: a.policyName.map { "\($0) v\(a.policyVersion ?? 0)" })
    }
}

extension Dictionary {
    func mapKeys<K: Hashable>(_ f: (Key) -> K) -> [K: Value] { Dictionary<K, Value>(uniqueKeysWithValues: map { (f($0.key), $0.value) }) }
}
