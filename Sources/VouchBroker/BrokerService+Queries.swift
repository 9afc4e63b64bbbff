import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchModel

/// Read-side queries (history, certificates, summary) and API token management.
extension BrokerService {
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
                guard let d = Date.parseISO8601(v) else { throw VouchError(.badRequest, "\(key) must be an RFC 3339 time", context: ["field": key]) }
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
        let items = rows.map { a in
            AttestationEntry(id: a.id, hostId: a.hostID, at: a.at.iso8601, kind: a.kind.rawValue,
                             result: a.trusted ? "trusted" : (a.codes.isEmpty ? "info" : "rejected"), codes: a.codes, message: a.message,
                             agentName: a.agentName, policy: a.policyName.map { "\($0) v\(a.policyVersion ?? 0)" }, policySha256: a.policySHA256,
                             pcrDigest: a.pcrDigest, serial: a.serial)
        }
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

    // MARK: Tokens

    /// Creates a named token; the secret is returned once and only its SHA-256 is kept.
    public func createToken(_ req: TokenCreateRequest) throws -> TokenInfo {
        guard req.name.range(of: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", options: .regularExpression) != nil else {
            throw VouchError(.badRequest, "token name must be 1-64 of A-Z, a-z, 0-9, '.', '_', '-'", context: ["field": "name"])
        }
        guard let scope = TokenScope(rawValue: req.scope) else {
            throw VouchError(.badRequest, "scope must be read or admin", context: ["field": "scope", "got": String(req.scope.prefix(32))])
        }
        let id = Hex.encode(try Crypto.randomBytes(8))
        let token = "vouch_\(scope.rawValue)_" + Hex.encode(try Crypto.randomBytes(32))
        let now = clock.now()
        try store.saveToken(TokenRecord(id: id, name: req.name, scope: scope, digest: Crypto.sha256(Array(token.utf8)), createdAt: now))
        log("API token \(id) (\(req.name), \(scope.rawValue)) created")
        return TokenInfo(id: id, name: req.name, scope: scope.rawValue, createdAt: now.iso8601, token: token)
    }

    public func listTokens() throws -> [TokenInfo] {
        try store.tokens().map { TokenInfo(id: $0.id, name: $0.name, scope: $0.scope.rawValue, createdAt: $0.createdAt.iso8601, revokedAt: $0.revokedAt?.iso8601) }
    }

    public func revokeToken(id: String) throws -> TokenInfo {
        guard Hex.isLowercase(id, length: 16...16) else {
            throw VouchError(.badRequest, "token id must be 16 hex digits", context: ["field": "id"])
        }
        guard try store.revokeToken(id: id, at: clock.now()), let t = try store.tokens().first(where: { $0.id == id }) else {
            throw VouchError(.notFound, "no unrevoked token with this id", context: ["id": id])
        }
        log("API token \(id) revoked")
        return TokenInfo(id: t.id, name: t.name, scope: t.scope.rawValue, createdAt: t.createdAt.iso8601, revokedAt: t.revokedAt?.iso8601)
    }

    /// The scope a presented bearer token grants (nil: not a valid token).
    public func scope(ofTokenDigest digest: [UInt8]) throws -> TokenScope? {
        guard let t = try store.token(digest: digest), t.revokedAt == nil else { return nil }
        return t.scope
    }
}

extension BrokerService {
    /// Ready to serve: not shutting down, and the store answers.
    public func ready() throws -> Bool {
        guard !closing.withLock({ $0 }) else { return false }
        _ = try store.latestDecisionTime()
        return true
    }
}
