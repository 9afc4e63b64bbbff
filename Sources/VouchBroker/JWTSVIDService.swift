import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchModel

extension ErrorCode {
    /// A JWT-SVID request's audience: not 1-8 values of 1-256 printable ASCII characters without spaces.
    public static let jwtSVIDAudienceInvalid = ErrorCode("jwt_svid_audience_invalid", status: 400)
    /// No agent certificate with this serial was issued by this broker on this host (another
    /// host's, a host certificate, or none at all: the same answer).
    public static let jwtSVIDSerialUnknown = ErrorCode("jwt_svid_serial_unknown", status: 404)
    /// The host is not trusted now (untrusted, unreachable, no verdict yet, or blocked).
    public static let jwtSVIDHostNotTrusted = ErrorCode("jwt_svid_host_not_trusted", status: 403)
}

/// JWT-SVIDs (the SPIFFE JWT-SVID specification) for agents of trusted hosts: a host's attester
/// asks, over mutual TLS with its host certificate, for a short-lived token naming one of its
/// agents' certificates, which it hands to the workload (the SPIFFE Workload API's
/// `FetchJWTSVID`). The token is signed ES256 by the broker's JWT-SVID key (`kid`: its RFC 7638
/// thumbprint; no `x5c`), which `keySet` publishes (`GET /v1/jwt-svid/jwks`, and the SPIFFE
/// bundle's `jwt-svid` key). Its claims:
///
///     sub    the agent certificate's SPIFFE ID
///     aud    the audiences asked for (an array)
///     iat    now; exp: min(now + `lifetime`, the certificate's notAfter)
///     jti    16 random bytes, hex
///     vouch  { hostId, serial, earDigest: "sha256:" + hex SHA-256 of the EAR (compact JWS) in the
///              certificate's attestation extension, policy: the policy's name,
///              attestedAt: when the broker decided (the EAR's iat, NumericDate) }
public struct JWTSVIDService: BrokerPart, Sendable {
    let context: BrokerContext

    /// How long a JWT-SVID is valid at most (never past its certificate's notAfter).
    public static let lifetime: TimeInterval = 300
    /// Audiences a request may name, and how long each may be.
    public static let maxAudiences = 8, maxAudienceLength = 256

    /// The JWT-SVID signing key as a JWK set (`kid`, `kty`, `crv`, `x`, `y`, `alg: ES256`,
    /// `use: jwt-svid`): only that key, no other kind.
    public var keySet: JWKSet { JWKSet(keys: [context.jwtSVIDSigner.jwk]) }

    /// Issues a JWT-SVID to the agent certificate `req.serial` of host `hostID`. The caller (`BrokerAPI`)
    /// has checked the TLS client certificate is the host's current host certificate
    /// (`RegistrationService.authenticateHost`: `client_certificate_required`, `client_certificate_mismatch`).
    /// Checks, in order: `audience` holds 1-8 values of 1-256 printable ASCII characters, no space
    /// (`jwt_svid_audience_invalid`); `serial` is 1-40 hex digits (`bad_request`); this broker
    /// issued an agent certificate with that serial on this host — not another host's, not a host
    /// certificate (`jwt_svid_serial_unknown`); it is not revoked (`certificate_revoked`); it is
    /// valid now, notBefore ≤ now < notAfter (`certificate_expired`, also for one not yet valid);
    /// the host is not blocked and its trust state is trusted (`jwt_svid_host_not_trusted`); the
    /// certificate carries its EAR (`attestation_missing`).
    public func issue(hostID: String, _ req: JWTSVIDIssueRequest) throws -> JWTSVIDIssueResponse {
        try Self.checkAudience(req.audience)
        guard req.serial.range(of: "^[0-9a-fA-F]{1,40}$", options: .regularExpression) != nil else {
            throw VouchError(.badRequest, "serial must be 1-40 hex digits", context: ["field": "serial"])
        }
        let serial = req.serial.lowercased()
        let host = try knownHost(hostID)
        let trust = try store.trust(hostID: host.id)
        guard let record = try store.certificate(serial: serial), record.hostID == host.id, serial != trust?.hostCertificateSerial,
              !config.isReservedSpiffeID(record.spiffeID) else {
            throw VouchError(.jwtSVIDSerialUnknown, "this broker issued no agent certificate with this serial on this host",
                             context: ["hostId": host.id, "serial": serial])
        }
        guard record.revokedAt == nil else {
            throw VouchError(.certificateRevoked, "the certificate is revoked", context: ["serial": serial])
        }
        let now = clock.now()
        guard record.notBefore <= now, now < record.notAfter else {
            throw VouchError(.certificateExpired, now < record.notBefore ? "the certificate is not valid yet" : "the certificate has expired",
                             context: ["serial": serial, "notAfter": record.notAfter.iso8601])
        }
        let state = host.blockedReason != nil ? TrustState.untrusted : (trust?.state ?? .unknown)
        guard state == .trusted else {
            throw VouchError(.jwtSVIDHostNotTrusted, "the host is not trusted now", context: ["hostId": host.id, "state": state.rawValue])
        }
        let certificate = try Certificate(pem: record.pem)
        guard let value = certificate.extensionValue(oid: AttestationExtension.oid) else {
            throw VouchError(.attestationMissing, "the certificate carries no attestation extension", context: ["serial": serial])
        }
        let ear = try AttestationExtension.ear(extensionValue: value)
        let attestation = try AttestationExtension(extensionValue: value)
        let iat = Int64(now.timeIntervalSince1970.rounded(.down))
        let exp = Int64(min(now.addingTimeInterval(Self.lifetime), record.notAfter).timeIntervalSince1970.rounded(.down))
        guard exp > iat else {
            throw VouchError(.certificateExpired, "the certificate expires within the second", context: ["serial": serial, "notAfter": record.notAfter.iso8601])
        }
        let claims: [String: Any] = [
            "sub": record.spiffeID, "aud": req.audience, "iat": iat, "exp": exp, "jti": Hex.encode(try Crypto.randomBytes(16)),
            "vouch": ["hostId": host.id, "serial": serial, "earDigest": "sha256:" + Hex.encode(Crypto.sha256(Array(ear.utf8))),
                      "policy": attestation.policyName, "attestedAt": Int64(attestation.attestedAt.timeIntervalSince1970)] as [String: Any],
        ]
        let payload = try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys, .withoutEscapingSlashes])
        let token = try context.jwtSVIDSigner.sign(payload: [UInt8](payload), typ: "JWT")
        let expiresAt = Date(timeIntervalSince1970: TimeInterval(exp))
        log("issued a JWT-SVID for \(record.spiffeID) (certificate \(serial)) to \(req.audience.joined(separator: ",")) until \(expiresAt.iso8601)")
        return JWTSVIDIssueResponse(token: token, spiffeId: record.spiffeID, expiresAt: expiresAt.iso8601)
    }

    /// 1-8 audiences, each 1-256 printable ASCII characters (0x21-0x7e: no space, no control).
    static func checkAudience(_ audience: [String]) throws {
        guard (1...maxAudiences).contains(audience.count) else {
            throw VouchError(.jwtSVIDAudienceInvalid, "audience must hold 1-\(maxAudiences) values", context: ["field": "audience", "got": "\(audience.count)"])
        }
        for (i, a) in audience.enumerated() where !(1...maxAudienceLength).contains(a.utf8.count) || !a.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) {
            throw VouchError(.jwtSVIDAudienceInvalid, "each audience is 1-\(maxAudienceLength) printable ASCII characters without spaces",
                             context: ["field": "audience.\(i)"])
        }
    }
}
