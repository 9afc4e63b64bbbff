import Foundation
import VouchCore
import VouchEventLog

// JSON bodies of the Vouch API (docs/api.md). Binary values are base64, digests and nonces hex,
// times RFC 3339 UTC strings.

/// Every error body: a stable code, a sentence, and optional structured detail.
public struct APIError: Codable, Sendable, Equatable {
    public var code: String
    public var message: String
    public var context: [String: String]?
    public var violations: [Violation]?

    public struct Violation: Codable, Sendable, Equatable {
        public var code: String
        public var path: String
        public var expected: String
        public var actual: String
        public init(code: String, path: String, expected: String, actual: String) {
            self.code = code; self.path = path; self.expected = expected; self.actual = actual
        }
    }

    public init(code: String, message: String, context: [String: String]? = nil, violations: [Violation]? = nil) {
        self.code = code
        self.message = message
        self.context = context
        self.violations = violations
    }
}

/// A TPM host's registration (`ekCertificate`, `ekPublic`, `akPublic`), or a CPU TEE host's
/// (`tee`): exactly one of the two shapes.
public struct RegisterHostRequest: Codable, Sendable {
    public var ekCertificate: String?  // base64 DER
    public var ekPublic: String?       // base64 TPM2B_PUBLIC
    public var akPublic: String?       // base64 TPM2B_PUBLIC
    /// A CPU TEE host (SEV-SNP, TDX): registered in one step, no credential activation.
    public var tee: TEERegistrationBody?
    public var hostname: String?
    /// Labels policies match on (`match.labels`), e.g. {"env": "prod", "gpu": "h100"}.
    public var labels: [String: String]?
    /// Pull mode: the attester's HTTPS base URL, where the broker asks for quotes. Absent: push mode.
    public var attesterURL: String?
    /// A simulated host (`vouch-attester --simulate`): software AK, no TPM, no EK. Refused unless
    /// the broker allows simulated hosts.
    public var simulated: Bool?
    public init(ekCertificate: String, ekPublic: String, akPublic: String, hostname: String?, labels: [String: String]? = nil,
                attesterURL: String? = nil, simulated: Bool? = nil) {
        self.ekCertificate = ekCertificate; self.ekPublic = ekPublic; self.akPublic = akPublic; self.hostname = hostname; self.labels = labels
        self.attesterURL = attesterURL; self.simulated = simulated
    }

    /// A CPU TEE host's registration.
    public init(tee: TEERegistrationBody, hostname: String?, labels: [String: String]? = nil) {
        self.tee = tee; self.hostname = hostname; self.labels = labels
    }
}

/// A TPM host's registration challenge (`credentialBlob`, `encryptedSecret`,
/// `activationExpiresAt`, `registration`), or a CPU TEE host's completed registration (`platform`,
/// `akState`, `hostCertificate`, `caCertificate`, `brokerSpiffeId`).
public struct RegisterHostResponse: Codable, Sendable {
    public var hostId: String
    public var credentialBlob: String?   // base64 TPM2B_ID_OBJECT
    public var encryptedSecret: String?  // base64 TPM2B_ENCRYPTED_SECRET
    public var activationExpiresAt: String?
    /// The registration, sealed by the broker: sent back unchanged with the activation answer.
    /// Nothing about the host changes until then.
    public var registration: String?
    /// CPU TEE hosts: `sev-snp` or `tdx`.
    public var platform: String?
    /// CPU TEE hosts: `active` (registered and attestable).
    public var akState: String?
    /// CPU TEE hosts: the host certificate (PEM) for the host key, SPIFFE ID spiffe://TD/host/ID.
    public var hostCertificate: String?
    /// CPU TEE hosts: the CA chain (PEM) host certificates chain to.
    public var caCertificate: String?
    /// CPU TEE hosts: the SPIFFE ID the broker presents as a TLS client.
    public var brokerSpiffeId: String?
    public init(hostId: String, credentialBlob: String, encryptedSecret: String, activationExpiresAt: String, registration: String) {
        self.hostId = hostId; self.credentialBlob = credentialBlob; self.encryptedSecret = encryptedSecret; self.activationExpiresAt = activationExpiresAt
        self.registration = registration
    }

    /// A CPU TEE host's completed registration.
    public init(hostId: String, platform: String, hostCertificate: String, caCertificate: String, brokerSpiffeId: String) {
        self.hostId = hostId; self.platform = platform; self.akState = "active"; self.hostCertificate = hostCertificate
        self.caCertificate = caCertificate; self.brokerSpiffeId = brokerSpiffeId
    }
}

public struct ActivateHostRequest: Codable, Sendable {
    public var secret: String           // base64 of the credential ActivateCredential returned
    /// PEM CSR for the host's TLS certificate (mTLS in both directions of re-attestation).
    public var hostCSR: String?
    /// `RegisterHostResponse.registration`, unchanged.
    public var registration: String?
    public init(secret: String, hostCSR: String? = nil, registration: String?) {
        self.secret = secret; self.hostCSR = hostCSR; self.registration = registration
    }
}

public struct ActivateHostResponse: Codable, Sendable {
    public var hostId: String
    public var akState: String
    /// The host certificate (PEM) issued for `hostCSR`: SPIFFE ID spiffe://TD/host/ID.
    public var hostCertificate: String?
    /// The issuing CA chain (PEM) that host certificates chain to (the broker's own client
    /// certificate chains to the broker CA instead, which the attester already trusts).
    public var caCertificate: String?
    /// The SPIFFE ID the broker presents as a TLS client when it pulls quotes.
    public var brokerSpiffeId: String?
    public init(hostId: String, akState: String, hostCertificate: String? = nil, caCertificate: String? = nil, brokerSpiffeId: String? = nil) {
        self.hostId = hostId; self.akState = akState; self.hostCertificate = hostCertificate; self.caCertificate = caCertificate
        self.brokerSpiffeId = brokerSpiffeId
    }
}

public struct PCRSelectionBody: Codable, Sendable, Equatable {
    public var bank: String
    public var pcrs: [Int]
    public init(bank: String, pcrs: [Int]) { self.bank = bank; self.pcrs = pcrs }
}

public struct ChallengeRequest: Codable, Sendable {
    public var hostId: String
    /// `enrollment` (default: the quote binds an agent key), `attestation` (a re-attestation
    /// report the host pushes; the quote binds nothing else) or `registration` (a CPU TEE host's
    /// registration report, for the host id it will have: the host need not be registered yet).
    public var purpose: String?
    public init(hostId: String, purpose: String? = nil) { self.hostId = hostId; self.purpose = purpose }
}

public struct ChallengeResponse: Codable, Sendable {
    public var nonce: String            // hex, 32 bytes
    public var expiresAt: String
    /// Banks and PCRs the quote must cover.
    public var pcrSelection: [PCRSelectionBody]
    /// The policy's re-attestation interval in seconds: a push-mode host reports at least this often.
    public var reattestationInterval: Int?
    public init(nonce: String, expiresAt: String, pcrSelection: [PCRSelectionBody], reattestationInterval: Int? = nil) {
        self.nonce = nonce; self.expiresAt = expiresAt; self.pcrSelection = pcrSelection; self.reattestationInterval = reattestationInterval
    }
}

public struct QuoteBody: Codable, Sendable, Equatable {
    public var attest: String           // base64 TPMS_ATTEST
    public var signature: String        // base64 TPMT_SIGNATURE
    public var pcrs: [String: [String: String]]   // bank -> PCR index -> hex digest
    public var eventLog: String?        // base64 TCG PC Client firmware event log
    public var modelLog: String?        // base64 of the model measurement log (CEL JSON)
    public init(attest: String, signature: String, pcrs: [String: [String: String]], eventLog: String? = nil, modelLog: String? = nil) {
        self.attest = attest; self.signature = signature; self.pcrs = pcrs; self.eventLog = eventLog; self.modelLog = modelLog
    }
}

/// Renewal: the agent's current certificate, and its current key's signature (SHA-256) over the
/// DER of the new CSR, proving the renewing party holds that key.
public struct RenewalBody: Codable, Sendable {
    public var certificate: String      // PEM
    public var proof: String            // base64 signature
    public init(certificate: String, proof: String) { self.certificate = certificate; self.proof = proof }
}

/// A key created inside the host's TPM and certified by its AK (TPM2_Certify).
public struct TPMKeyBody: Codable, Sendable {
    public var publicArea: String       // base64 TPM2B_PUBLIC of the key
    public var certifyInfo: String      // base64 TPMS_ATTEST
    public var signature: String        // base64 TPMT_SIGNATURE by the AK
    public init(publicArea: String, certifyInfo: String, signature: String) {
        self.publicArea = publicArea; self.certifyInfo = certifyInfo; self.signature = signature
    }
}

public struct EnrollRequest: Codable, Sendable {
    public var hostId: String
    public var nonce: String
    public var agentName: String
    /// The agent's key: a CSR (PEM) for a software key, or `tpmKey` for a TPM-bound one; exactly one.
    public var csr: String?
    public var tpmKey: TPMKeyBody?
    /// The evidence: a TPM quote, or a CPU TEE's (`tee`); exactly one.
    public var quote: QuoteBody?
    public var tee: TEEEvidenceBody?
    /// Other devices' evidence (GPUs), bound through the platform's evidence
    /// (`DeviceEvidenceBody`); absent or empty for a platform-only request.
    public var devices: [DeviceEvidenceBody]?
    public var renewal: RenewalBody?
    public init(hostId: String, nonce: String, agentName: String, csr: String?, tpmKey: TPMKeyBody? = nil, quote: QuoteBody?, renewal: RenewalBody? = nil) {
        self.hostId = hostId; self.nonce = nonce; self.agentName = agentName; self.csr = csr; self.tpmKey = tpmKey; self.quote = quote; self.renewal = renewal
    }

    /// An enrollment with a CPU TEE's evidence.
    public init(hostId: String, nonce: String, agentName: String, csr: String, tee: TEEEvidenceBody, renewal: RenewalBody? = nil) {
        self.hostId = hostId; self.nonce = nonce; self.agentName = agentName; self.csr = csr; self.tee = tee; self.renewal = renewal
    }
}

public struct EnrollResponse: Codable, Sendable {
    public var serial: String
    public var spiffeId: String
    public var certificate: String      // PEM
    public var caCertificate: String    // PEM
    public var notBefore: String
    public var notAfter: String
    public var policy: String
    /// For a TPM-bound key, set by the attester: the key's blobs and the persistent parent handle
    /// (`tpm2_load -C PARENT -u public -r private`). The private blob is wrapped by the parent.
    public var tpmKeyPublic: String?
    public var tpmKeyPrivate: String?
    public var tpmKeyParent: String?
    public init(serial: String, spiffeId: String, certificate: String, caCertificate: String, notBefore: String, notAfter: String, policy: String) {
        self.serial = serial; self.spiffeId = spiffeId; self.certificate = certificate; self.caCertificate = caCertificate
        self.notBefore = notBefore; self.notAfter = notAfter; self.policy = policy
    }
}

/// What an agent sends to its host's attester over the local Unix socket.
public struct AgentEnrollRequest: Codable, Sendable {
    public var agentName: String
    /// A CSR for a software key, or nil with `tpmKey` to have the attester create the key in the TPM.
    public var csr: String?
    public var renewal: RenewalBody?
    public var tpmKey: Bool?
    public init(agentName: String, csr: String?, renewal: RenewalBody? = nil, tpmKey: Bool? = nil) {
        self.agentName = agentName; self.csr = csr; self.renewal = renewal; self.tpmKey = tpmKey
    }
}

/// `POST /v1/sign` on the attester's socket: the TPM-bound agent key in these blobs (what
/// `vouch enroll --tpm-key` wrote, base64) signs one SHA-256 digest (hex). Nothing else is
/// accepted: the key must have the agent-key template the attester creates.
public struct AgentSignRequest: Codable, Sendable {
    public var tpmKeyPublic: String
    public var tpmKeyPrivate: String
    public var digest: String
    public init(tpmKeyPublic: String, tpmKeyPrivate: String, digest: String) {
        self.tpmKeyPublic = tpmKeyPublic; self.tpmKeyPrivate = tpmKeyPrivate; self.digest = digest
    }
}

/// The attester's answer to `AgentSignRequest`: an ECDSA signature, DER, base64.
public struct AgentSignResponse: Codable, Sendable {
    public var signature: String
    public init(signature: String) { self.signature = signature }
}

/// `POST /v1/hosts/{hostId}/jwt-svids` (mutual TLS with the host certificate): a JWT-SVID for the
/// agent certificate `serial` this broker issued on that host, for `audience` (1-8 values).
public struct JWTSVIDIssueRequest: Codable, Sendable {
    public var serial: String
    public var audience: [String]
    public init(serial: String, audience: [String]) { self.serial = serial; self.audience = audience }
}

/// The JWT-SVID (compact JWS, ES256, `kid` in `GET /v1/jwt-svid/jwks`), its subject and when it
/// expires (RFC 3339).
public struct JWTSVIDIssueResponse: Codable, Sendable {
    public var token: String
    public var spiffeId: String
    public var expiresAt: String
    public init(token: String, spiffeId: String, expiresAt: String) { self.token = token; self.spiffeId = spiffeId; self.expiresAt = expiresAt }
}

public struct RevokeRequest: Codable, Sendable {
    public var serial: String?
    public var hostId: String?
    public var agentName: String?
    public var reason: String?
    /// With `hostId` alone: also block the host, so it can neither enroll, renew nor re-register
    /// until `POST /v1/hosts/{id}/unblock`.
    public var blockHost: Bool?
    public init(serial: String? = nil, hostId: String? = nil, agentName: String? = nil, reason: String? = nil, blockHost: Bool? = nil) {
        self.serial = serial; self.hostId = hostId; self.agentName = agentName; self.reason = reason; self.blockHost = blockHost
    }
}

public struct RevokeResponse: Codable, Sendable {
    public var revoked: [String]
    public var crlNumber: UInt64
    public init(revoked: [String], crlNumber: UInt64) { self.revoked = revoked; self.crlNumber = crlNumber }
}

public struct AttestationSummary: Codable, Sendable {
    public var at: String
    public var result: String           // "trusted" | "rejected" | "info"
    public var codes: [String]
    public var message: String
    public var policy: String?
    /// What the attestation established (trusted enrollments only).
    public var claims: EvidenceClaims?
    public init(at: String, result: String, codes: [String], message: String, policy: String?, claims: EvidenceClaims? = nil) {
        self.at = at; self.result = result; self.codes = codes; self.message = message; self.policy = policy; self.claims = claims
    }
}

public struct HostStatus: Codable, Sendable {
    public var hostId: String
    public var hostname: String
    public var labels: [String: String]?
    /// The policy that currently applies to this host ("name vN"), or nil when none matches.
    public var policy: String?
    public var akState: String
    public var akAlgorithm: String
    public var ekIssuer: String
    /// What the host attests with: `tpm`, `sev-snp` or `tdx`.
    public var platform: String?
    /// Why the host is blocked (revoked as a whole), if it is.
    public var blocked: String?
    public var registeredAt: String
    public var lastAttestation: AttestationSummary?
    /// Continuous re-attestation: trust state, since when, mode and failures.
    public var trust: HostTrustStatus?
    public init(hostId: String, hostname: String, labels: [String: String]? = nil, policy: String? = nil, akState: String, akAlgorithm: String,
                blocked: String? = nil, ekIssuer: String, registeredAt: String, lastAttestation: AttestationSummary?) {
        self.blocked = blocked
        self.hostId = hostId; self.hostname = hostname; self.labels = labels; self.policy = policy; self.akState = akState; self.akAlgorithm = akAlgorithm
        self.ekIssuer = ekIssuer; self.registeredAt = registeredAt; self.lastAttestation = lastAttestation
    }
}

public struct CertificateStatus: Codable, Sendable {
    public var serial: String
    public var hostId: String
    public var agentName: String
    public var spiffeId: String
    public var notBefore: String
    public var notAfter: String
    public var state: CertificateState
    public var revokedAt: String?
    public var revocationReason: String?
    public init(serial: String, hostId: String, agentName: String, spiffeId: String, notBefore: String, notAfter: String,
                state: CertificateState, revokedAt: String?, revocationReason: String?) {
        self.serial = serial; self.hostId = hostId; self.agentName = agentName; self.spiffeId = spiffeId
        self.notBefore = notBefore; self.notAfter = notAfter; self.state = state; self.revokedAt = revokedAt; self.revocationReason = revocationReason
    }
}

public struct PolicySummary: Codable, Sendable, Equatable {
    public var name: String
    public var version: Int
    public var priority: Int
    public var sha256: String
    public var file: String
    public var match: [String: String]
    public init(name: String, version: Int, priority: Int, sha256: String, file: String, match: [String: String]) {
        self.name = name; self.version = version; self.priority = priority; self.sha256 = sha256; self.file = file; self.match = match
    }
}

public struct PolicyStatus: Codable, Sendable {
    public var policies: [PolicySummary]
    public var loadedAt: String
    /// Why the last reload was refused (the policies above stayed in force), if it was.
    public var reloadError: APIError?
    public var reloadErrorAt: String?
    public init(policies: [PolicySummary], loadedAt: String, reloadError: APIError?, reloadErrorAt: String?) {
        self.policies = policies; self.loadedAt = loadedAt; self.reloadError = reloadError; self.reloadErrorAt = reloadErrorAt
    }
}

public struct StatusResponse: Codable, Sendable {
    public var trustDomain: String
    public var policies: PolicyStatus
    public var crlNumber: UInt64
    public var hosts: [HostStatus]
    public var certificates: [CertificateStatus]
    public init(trustDomain: String, policies: PolicyStatus, crlNumber: UInt64, hosts: [HostStatus], certificates: [CertificateStatus]) {
        self.trustDomain = trustDomain; self.policies = policies; self.crlNumber = crlNumber; self.hosts = hosts; self.certificates = certificates
    }
}

/// A host's last verified evidence, for `vouch policy test` and `vouch policy capture`: a TPM
/// host's quoted PCR values, or a CPU TEE host's report or quote (`tee`).
public struct EvidenceBundle: Codable, Sendable {
    public var hostId: String
    public var hostname: String
    public var labels: [String: String]
    public var ekIssuer: String
    public var at: String
    /// bank -> PCR index -> hex, from a quote whose signature verified.
    public var pcrs: [String: [String: String]]
    public var claims: EvidenceClaims?
    /// The decision made on it then.
    public var result: String
    public var codes: [String]
    public var policy: String?
    /// A CPU TEE host: the report or quote the claims came from, with what verifies it again
    /// offline (`pcrs` is then empty).
    public var tee: TEEEvidenceCopy?
    public init(hostId: String, hostname: String, labels: [String: String], ekIssuer: String, at: String, pcrs: [String: [String: String]],
                claims: EvidenceClaims?, result: String, codes: [String], policy: String?, tee: TEEEvidenceCopy? = nil) {
        self.hostId = hostId; self.hostname = hostname; self.labels = labels; self.ekIssuer = ekIssuer; self.at = at; self.pcrs = pcrs
        self.claims = claims; self.result = result; self.codes = codes; self.policy = policy; self.tee = tee
    }
}

/// JSON coding shared by every component: sorted keys, strict decoding with `bad_request` errors.
public enum JSONCodec {
    public static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? [UInt8](e.encode(value))) ?? Array(#"{"code":"internal","message":"encoding failed"}"#.utf8)
    }

    public static func pretty<T: Encodable>(_ value: T) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return (try? String(decoding: e.encode(value), as: UTF8.self)) ?? "{}"
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw VouchError(.badRequest, "request body is missing field \(pathString(ctx.codingPath + [key]))", context: ["field": pathString(ctx.codingPath + [key])])
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw VouchError(.badRequest, "field \(pathString(ctx.codingPath)) has the wrong type", context: ["field": pathString(ctx.codingPath)])
        } catch let DecodingError.valueNotFound(_, ctx) {
            throw VouchError(.badRequest, "field \(pathString(ctx.codingPath)) is null", context: ["field": pathString(ctx.codingPath)])
        } catch {
            throw VouchError(.badRequest, "request body is not valid JSON for this endpoint")
        }
    }

    private static func pathString(_ path: [CodingKey]) -> String {
        path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
    }
}
