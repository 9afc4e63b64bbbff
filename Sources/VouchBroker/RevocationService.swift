import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel

/// Operator revocation (a certificate, an agent, a host; blocks, unblocks, deletion), the CRL and
/// OCSP answers relying parties poll, the trust bundle, and CA rotation. The revocations
/// themselves — planned, CRLs signed outside the store lock, committed in one transaction with
/// the change — are `Revocations`.
public struct RevocationService: BrokerPart, Sendable {
    let context: BrokerContext

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
            let done = try revocations.change(at: now, expecting: (target, reason), decide: { _ in .init(value: (), revoke: (target, reason)) }) { tx, _, _ in
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
        let done = try revocations.change(at: now, expecting: (.host(id), .cessationOfOperation), decide: { _ in .init(value: (), revoke: (.host(id), .cessationOfOperation)) }) { tx, _, plan in
            let count = plan?.certificates.count ?? 0
            // Checked again in the transaction: a block committed since the check above wins.
            if let reason = try tx.host(id: id)?.blockedReason {
                throw VouchError(.conflict, "this host is blocked; unblock it first (a blocked host stays registered so the block keeps applying)",
                                 context: ["hostId": id, "reason": reason])
            }
            try tx.deleteHost(id: id)
            try tx.recordAttestation(AttestationRecord(hostID: id, at: now, kind: .deregistration, trusted: false, codes: [],
                                                       message: "deregistered by an operator; \(count) certificate(s) revoked"))
            try tx.appendEvent(type: .hostDeleted, data: ["hostId": id, "revoked": "\(count)"], at: now)
        }
        verifiedLogs.remove(hostID: id)
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
        return try QueryService(context: context).hostStatus(id: hostID)
    }

    /// Rotates to the staged next CA (see CASet.rotate); returns the new issuing CA's certificate.
    public func rotateCA() throws -> String {
        // One replica rotating alone would leave the others issuing, and signing CRLs, under the
        // old CA: on a shared store, rotation is a restart of every replica (docs/operations.md).
        guard config.replicaSecret == nil else {
            throw VouchError(.conflict, "this broker is one of several replicas: rotate the CA by staging it in every replica's data directory and restarting them")
        }
        let ca = try authorities.rotate()
        responseCache.write { $0.ocsp.removeAll(); $0.generation += 1 }
        log("CA rotated: now issuing with \(ca.signer.caCertificate.subject) (key id \(ca.keyID))")
        _ = try currentCRL()
        return try ca.chainPEM
    }

    // MARK: OCSP and trust bundle

    /// Answers a DER OCSPRequest from the store's records (RFC 6960).
    /// Signed responses are cached by request bytes for a quarter of their validity; every
    /// revocation empties the cache before it is answered, so no cached "good" outlives one.
    public func ocsp(request: [UInt8]) throws -> [UInt8] {
        let now = clock.now()
        if let hit = responseCache.read({ $0.usable ? $0.ocsp[request] : nil }), now >= hit.at, now < hit.at.addingTimeInterval(config.ocspValidity / 4) {
            return hit.response
        }
        // Answered by the CA the request names (current or previous); others get "unknown" from the current CA.
        let ca = authorities.signing.first { OCSPResponder.requestNames(request, issuer: $0.signer.caCertificate) } ?? authorities.current
        let generation = responseCache.read { $0.generation }
        // A store behind a published CRL may have lost revocations: no "good" is signed from it.
        try revocations.checkNotBehind(issuer: ca.keyID)
        let response = try ca.signer.ocspResponse(request: request, now: now, validity: config.ocspValidity) { serial in
            guard let c = try store.certificate(serial: serial) else { return .unknown }
            if let at = c.revokedAt { return .revoked(at: at, reason: (c.revocationReason ?? .unspecified).rawValue) }
            return .good
        }
        responseCache.write { c in
            // Not if a revocation happened meanwhile (the answer may predate it).
            guard c.usable, c.generation == generation, request.count <= 4096 else { return }
            if c.ocsp.count >= 10_000 { c.ocsp.removeAll() }
            c.ocsp[request] = (now, response)
        }
        return response
    }

    /// The trust bundle: every root relying parties and attesters should trust now (issuing,
    /// previous and staged next CAs).
    public func bundlePEM() throws -> String { try authorities.bundle.map { try $0.pem }.joined() }

    /// The same bundle as a SPIFFE bundle (the SPIFFE Trust Domain and Bundle specification): a
    /// JWKS with the roots as `x509-svid` keys (each with its certificate in `x5c`) and the
    /// JWT-SVID signing key as a `jwt-svid` key (with its `kid`).
    public func spiffeBundle() throws -> [UInt8] {
        func b64url(_ b: [UInt8]) -> String {
            Base64.encode(b).replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        }
        var keys: [[String: Any]] = try authorities.bundle.map { root in
            guard let jwk = try root.publicKey.ecJWKParameters else { throw VouchError(.internalError, "CA key is not an EC key") }
            return ["kty": "EC", "crv": jwk.crv, "x": b64url(jwk.x), "y": b64url(jwk.y), "use": "x509-svid", "x5c": [Base64.encode(try root.der)]]
        }
        let jwt = context.jwtSVIDSigner.jwk
        keys.append(["kty": jwt.kty, "crv": jwt.crv, "x": jwt.x, "y": jwt.y, "kid": jwt.thumbprint, "use": "jwt-svid", "alg": "ES256"])
        let body: [String: Any] = ["keys": keys, "spiffe_refresh_hint": Int(config.crlValidity), "spiffe_sequence": 1]
        return [UInt8](try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys, .withoutEscapingSlashes]))
    }
}
