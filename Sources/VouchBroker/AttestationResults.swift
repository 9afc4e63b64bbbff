import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel

/// Signs attestation results (EAR, JWT ES256) with a key whose certificate chains to the broker CA.
/// Its tokens name the key by `kid`; `jwk` is that key as published in `GET /v1/ear/jwks`.
public protocol ResultSigner: Sendable {
    func sign(payload: [UInt8], typ: String) throws -> String
    var jwk: JWK { get }
}

extension JWSSigner: ResultSigner {}

extension QueryService {
    /// The EAT profile of draft-ietf-rats-ear.
    public static let earProfile = "tag:github.com,2023:veraison/ear"
    /// How long an EAR may be relied on after it is issued (`exp - iat`).
    public static let earValidity: TimeInterval = 300

    /// The host's current attestation result as an EAR (draft-ietf-rats-ear) in a JWT signed ES256.
    /// `ear.status`: affirming (trusted), warning (unreachable, or a simulated host), contraindicated
    /// (untrusted), none (no verdict yet). `nonce` (8-64 characters) is echoed as `eat_nonce`.
    public func ear(hostID: String, nonce: String?, signer: ResultSigner) throws -> String {
        let host = try knownHost(hostID)
        if let nonce, nonce.count < 8 || nonce.count > 64 || !nonce.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) {
            throw VouchError(.badRequest, "nonce must be 8-64 characters of A-Z, a-z, 0-9, '-', '_'", context: ["field": "nonce"])
        }
        let now = clock.now()
        let trust = try store.trust(hostID: host.id)
        let last = try store.latestEvidence(hostID: host.id)
        let state = host.blockedReason != nil ? TrustState.untrusted : (trust?.state ?? .unknown)
        // A simulated host: registered as one, or its last evidence was the software TEE's.
        let simulated = (trust?.simulated ?? false) || last?.claims?.tee?.simulated == true
        let status: String
        var vector: [String: Int] = [:]
        switch state {
        case .trusted:
            status = simulated ? "warning" : "affirming"
            vector = ["instance-identity": 2, "hardware": simulated ? 0 : 2,
                      "executables": AttestationExtension.executablesClaim(tee: last?.claims?.tee), "configuration": 2]
        case .untrusted:
            status = "contraindicated"
            vector = ["instance-identity": 2, "configuration": 96]
        case .unreachable:
            status = "warning"
            vector = ["instance-identity": 2]
        case .unknown:
            status = "none"
        }
        var appraisal: [String: Any] = ["ear.status": status, "ear.trustworthiness-vector": vector]
        if let p = last?.policyName, let v = last?.policyVersion {
            appraisal["ear.appraisal-policy-id"] = "vouch:policy:\(p):v\(v)" + (last?.policySHA256.map { ":sha256:\($0)" } ?? "")
        }
        var hostClaims: [String: Any] = ["hostId": host.id, "hostname": host.hostname, "state": state.rawValue, "ekIssuer": host.ekIssuer]
        if let t = trust {
            hostClaims["since"] = Int(t.since.timeIntervalSince1970)
            hostClaims["mode"] = t.mode.rawValue
            if let v = t.lastVerdictAt { hostClaims["lastVerdictAt"] = Int(v.timeIntervalSince1970) }
            if t.simulated { hostClaims["simulated"] = true }
        }
        if let reason = host.blockedReason { hostClaims["blocked"] = reason }
        if let claims = last?.claims, let data = try? JSONEncoder().encode(claims), let object = try? JSONSerialization.jsonObject(with: data) {
            hostClaims["evidence"] = object
        }
        if let pcr = last?.pcrDigest { hostClaims["pcrDigest"] = pcr }
        var payload: [String: Any] = [
            "eat_profile": Self.earProfile,
            "iat": Int(now.timeIntervalSince1970),
            "exp": Int(now.addingTimeInterval(Self.earValidity).timeIntervalSince1970),
            "ear.verifier-id": ["developer": "Vouch", "build": "vouchd (\(config.trustDomain))"],
            "submods": AttestationExtension.submods(devices: Self.devices(of: host, claims: last?.claims), appraisal: appraisal,
                                                    verified: last?.claims?.devices ?? []),
            "vouch.host": hostClaims,
            "vouch.kind": AttestationExtension.hostStatusKind,
        ]
        if let nonce { payload["eat_nonce"] = nonce }
        let json = try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys, .withoutEscapingSlashes])
        return try signer.sign(payload: [UInt8](json), typ: "JWT")
    }

    /// The devices (EAR submodules) of a host's latest verdict: its platform (its TPM or CPU
    /// TEE) and the devices verified beside it (`EvidenceClaims.devices`, e.g. `gpu0` … `gpu7`),
    /// which the attestation record keeps in the platform's claims.
    static func devices(of host: HostRecord, claims: EvidenceClaims?) -> [String] {
        [(EvidenceKind(rawValue: host.platform.rawValue) ?? .tpm).defaultDevice] + (claims?.devices ?? []).map(\.device)
    }
}
