import Foundation
import Synchronization
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTPMWire

extension ErrorCode {
    public static let unknownHost = ErrorCode("unknown_host")
    public static let akNotActivated = ErrorCode("ak_not_activated")
    public static let activationFailed = ErrorCode("activation_failed")
    public static let activationExpired = ErrorCode("activation_expired")
    public static let nonceUnknown = ErrorCode("nonce_unknown")
    public static let nonceExpired = ErrorCode("nonce_expired")
    public static let nonceReused = ErrorCode("nonce_reused")
    public static let csrMalformed = ErrorCode("csr_malformed")
    public static let csrSignatureInvalid = ErrorCode("csr_signature_invalid")
    public static let csrKeyNotAllowed = ErrorCode("csr_key_not_allowed")
    public static let agentNameInvalid = ErrorCode("agent_name_invalid")
    public static let policyRejected = ErrorCode("policy_rejected")
    public static let spiffeIDUnresolved = ErrorCode("spiffe_id_unresolved")
    public static let spiffeIDReserved = ErrorCode("spiffe_id_reserved")
    public static let labelsInvalid = ErrorCode("labels_invalid")
    public static let hostRevoked = ErrorCode("host_revoked")
    public static let certificateRevoked = ErrorCode("certificate_revoked")
    public static let certificateExpired = ErrorCode("certificate_expired")
    public static let renewalInvalid = ErrorCode("renewal_invalid")
    public static let renewalIdentityMismatch = ErrorCode("renewal_identity_mismatch")
    public static let renewalProofInvalid = ErrorCode("renewal_proof_invalid")
    public static let clockUnreliable = ErrorCode("clock_unreliable")
}

/// Signs certificates and CRLs: the CA, seen by the service only through this protocol.
public protocol CertificateSigner: Sendable {
    var caCertificate: Certificate { get }
    func issue(publicKey: PublicKey, profile: LeafProfile, serial: [UInt8]?) throws -> Certificate
    func makeCRL(entries: [RevokedEntry], number: UInt64, thisUpdate: Date, nextUpdate: Date) throws -> [UInt8]
    func ocspResponse(request: [UInt8], now: Date, validity: TimeInterval, lookup: (String) throws -> CertificateStatusValue) throws -> [UInt8]
}

extension CertificateAuthority: CertificateSigner {
    public var caCertificate: Certificate { certificate }

    public func ocspResponse(request: [UInt8], now: Date, validity: TimeInterval, lookup: (String) throws -> CertificateStatusValue) throws -> [UInt8] {
        try OCSPResponder(ca: self).respond(to: request, now: now, validity: validity, lookup: lookup)
    }
}

public struct BrokerConfig: Sendable {
    public var trustDomain: String
    /// How long a challenge nonce may be used.
    public var challengeTTL: TimeInterval = 60
    /// How long a registered host has to prove credential activation.
    public var activationTTL: TimeInterval = 300
    /// Wrong activation answers allowed before the host must register again.
    public var maxActivationFailures = 3
    /// CRL validity (nextUpdate - thisUpdate); a CRL is re-signed after half of it.
    public var crlValidity: TimeInterval = 300
    /// Public URL of the CRLs: certificates point at `<crlURL>/<issuing CA key id>`.
    public var crlURL: String?
    /// Public URL of the OCSP responder, written into certificates (Authority Information Access).
    public var ocspURL: String?
    /// How long an OCSP response may be cached (nextUpdate - thisUpdate).
    public var ocspValidity: TimeInterval = 300
    /// Webhook subscribers (for the outbox-depth metric; delivery is the dispatcher's).
    public var webhookURLs: [String] = []
    /// Accept hosts from `vouch-attester --simulate` (software AKs, no TPM): for scale tests only.
    public var allowSimulatedHosts = false
    /// Lifetime of host certificates (mTLS between broker and attester); hosts re-register to renew.
    public var hostCertificateTTL: TimeInterval = 30 * 86400

    public init(trustDomain: String) { self.trustDomain = trustDomain }

    /// The SPIFFE ID the broker presents as a TLS client when it pulls quotes from attesters.
    public var brokerSpiffeID: String { "spiffe://\(trustDomain)/vouchd" }
    /// The SPIFFE ID of a host certificate.
    public func hostSpiffeID(_ hostID: String) -> String { "spiffe://\(trustDomain)/host/\(hostID)" }
    /// True for the broker's own SPIFFE ID and any host's: never an agent's.
    public func isReservedSpiffeID(_ id: String) -> Bool {
        let hostPrefix = "spiffe://\(trustDomain)/host/"
        return id == brokerSpiffeID || (id.hasPrefix(hostPrefix) && !id.dropFirst(hostPrefix.count).contains("/"))
    }
}

/// The broker's decisions: registration, credential activation, challenges, enrollment,
/// revocation and status. Orchestration only: evidence is judged by VouchAttestation's verifiers,
/// certificates are made by the signer, state lives in the store.
public final class BrokerService: Sendable {
    public let config: BrokerConfig
    public let policies: PolicyProvider
    let store: BrokerStore
    public let authorities: CASet
    let ekTrust: EKTrustStore
    let clock: Clock
    let log: @Sendable (String) -> Void
    public let metrics = BrokerMetrics()
    public let events = EventNotifier()
    let openStreams = Mutex(0)
    let closing = Mutex(false)
    /// What relying parties poll, kept in memory: the committed CRL per issuer, and signed OCSP
    /// responses by request. `generation` counts revocations.
    struct ResponseCache {
        var crls: [String: CRLRecord] = [:]
        var ocsp: [[UInt8]: (at: Date, response: [UInt8])] = [:]
        var generation = 0
    }
    let responseCache = ReadMostly(ResponseCache())
    let attestationKeys = AttestationKeyCache()

    public init(config: BrokerConfig, policies: PolicyProvider, store: BrokerStore, authorities: CASet, ekTrust: EKTrustStore,
                clock: Clock, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.config = config
        self.policies = policies
        self.store = store
        self.authorities = authorities
        self.ekTrust = ekTrust
        self.clock = clock
        self.log = log
        policies.onReload { [metrics] ok in metrics.policyReload(ok: ok) }
    }

    static let agentNamePattern = "^[a-z0-9][a-z0-9._-]{0,62}$"

    // MARK: Registration

    /// Registers (or re-registers) a host. Checks, in order: the EK certificate chains to a trusted
    /// TPM manufacturer and certifies the EK; the AK is a restricted signing key of an allowed type.
    /// Then it makes a credential only that TPM can activate, for that AK's name.
    public func registerHost(_ req: RegisterHostRequest) throws -> RegisterHostResponse {
        let ekCert = try Base64.decode(req.ekCertificate, field: "ekCertificate")
        let ekPublic = try Base64.decode(req.ekPublic, field: "ekPublic")
        let akPublic = try Base64.decode(req.akPublic, field: "akPublic")
        let hostname = req.hostname ?? ""
        guard hostname.count <= 253, hostname.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }) else {
            throw VouchError(.badRequest, "hostname must be a DNS name", context: ["field": "hostname"])
        }
        let labels = req.labels ?? [:]
        guard labels.count <= 64 else { throw VouchError(.labelsInvalid, "at most 64 labels", context: ["field": "labels"]) }
        for (k, v) in labels {
            guard k.range(of: Policy.labelPattern, options: .regularExpression) != nil, v.count <= 253,
                  v.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "\u{0}" }) else {
                throw VouchError(.labelsInvalid, "label names are 1-63 of a-z, 0-9, '.', '_', '-', '/'; values up to 253 printable characters",
                                 context: ["field": "labels.\(k.prefix(64))"])
            }
        }
        let now = clock.now()
        let mode: AttestationMode = req.attesterURL == nil ? .push : .pull
        if let url = req.attesterURL {
            guard url.count <= 2048, url.hasPrefix("https://"), URL(string: url)?.host != nil, !url.contains(where: { $0.isWhitespace }) else {
                throw VouchError(.badRequest, "attesterURL must be an https URL", context: ["field": "attesterURL"])
            }
        }
        if req.simulated == true {
            return try registerSimulatedHost(req, hostname: hostname, labels: labels, mode: mode, now: now)
        }
        let endorsement = try EndorsementVerifier.verify(ekCertificateDER: ekCert, ekPublic: ekPublic, trust: ekTrust, now: now).get()
        guard let policy = policies.current.select(labels: labels, ekIssuer: endorsement.ekCertificateIssuer) else {
            throw VouchError(.noPolicy, "no policy applies to this host (its labels and EK issuer match none)", context: ["ekIssuer": endorsement.ekCertificateIssuer])
        }
        let (ak, kind) = try EndorsementVerifier.checkAttestationKey(akPublic, allowed: policy.akAlgorithms).get()
        let akName = CredentialProtection.name(of: ak)
        let secret = try Crypto.randomBytes(32)
        let made = try CredentialProtection.makeCredential(ek: endorsement.ekPublic, objectName: akName, credential: secret)

        let existing = try store.host(id: endorsement.hostID)
        if let reason = existing?.blockedReason {
            throw VouchError(.hostRevoked, "this host was revoked by an operator and cannot register until unblocked", context: ["hostId": endorsement.hostID, "reason": reason])
        }
        let expires = now.addingTimeInterval(config.activationTTL)
        try store.saveHost(HostRecord(id: endorsement.hostID, hostname: hostname, ekPublic: ekPublic, ekCertificate: ekCert,
                                      ekIssuer: endorsement.ekCertificateIssuer, labels: labels, akPublic: akPublic, akName: akName, akAlgorithm: kind.rawValue,
                                      akState: .pending, activationDigest: Crypto.sha256(secret), activationExpiresAt: expires,
                                      activationFailures: 0, registeredAt: existing?.registeredAt ?? now, updatedAt: now))
        try store.saveTrust(HostTrust(hostID: endorsement.hostID, since: now, mode: mode, attesterURL: req.attesterURL))
        try store.recordAttestation(AttestationRecord(hostID: endorsement.hostID, at: now, kind: "registration", trusted: false,
                                                      codes: [], message: "EK verified (\(endorsement.ekCertificateIssuer)); AK \(kind.rawValue) awaiting credential activation",
                                                      policyName: policy.name, policyVersion: policy.version, policySHA256: policy.sha256))
        metrics.registration("registered")
        log("host \(endorsement.hostID) registered (\(hostname)); AK \(kind.rawValue) pending activation; \(mode.rawValue) mode")
        return RegisterHostResponse(hostId: endorsement.hostID, credentialBlob: Base64.encode(made.credentialBlob),
                                    encryptedSecret: Base64.encode(made.encryptedSecret), activationExpiresAt: expires.iso8601)
    }

    /// The EK issuer recorded for simulated hosts; policies can match it (`match.ekIssuer`).
    public static let simulatedEKIssuer = "simulated (insecure, no TPM)"

    /// Registers a host of a simulated fleet: a software AK and no TPM, so nothing proves where
    /// the AK lives. Refused unless the broker allows simulated hosts; marked simulated everywhere.
    /// The activation secret is returned in the clear (`credentialBlob`, empty `encryptedSecret`), so
    /// activation runs the same path as for real hosts.
    private func registerSimulatedHost(_ req: RegisterHostRequest, hostname: String, labels: [String: String], mode: AttestationMode, now: Date) throws -> RegisterHostResponse {
        guard config.allowSimulatedHosts else {
            metrics.registration("simulated_hosts_refused")
            throw VouchError(.simulatedHostsRefused, "this broker does not accept simulated hosts (software AKs prove nothing)", context: ["field": "simulated"])
        }
        let akPublic = try Base64.decode(req.akPublic, field: "akPublic")
        guard let policy = policies.current.select(labels: labels, ekIssuer: Self.simulatedEKIssuer) else {
            throw VouchError(.noPolicy, "no policy applies to this simulated host", context: ["ekIssuer": Self.simulatedEKIssuer])
        }
        let (ak, kind) = try EndorsementVerifier.checkAttestationKey(akPublic, allowed: policy.akAlgorithms).get()
        let id = Hex.encode(Crypto.sha256(Array("simulated".utf8) + akPublic).prefix(16))
        let existing = try store.host(id: id)
        if let reason = existing?.blockedReason {
            throw VouchError(.hostRevoked, "this host was revoked by an operator and cannot register until unblocked", context: ["hostId": id, "reason": reason])
        }
        let secret = try Crypto.randomBytes(32)
        let expires = now.addingTimeInterval(config.activationTTL)
        try store.saveHost(HostRecord(id: id, hostname: hostname, ekPublic: [], ekCertificate: [], ekIssuer: Self.simulatedEKIssuer, labels: labels,
                                      akPublic: akPublic, akName: CredentialProtection.name(of: ak), akAlgorithm: kind.rawValue, akState: .pending,
                                      activationDigest: Crypto.sha256(secret), activationExpiresAt: expires, activationFailures: 0,
                                      registeredAt: existing?.registeredAt ?? now, updatedAt: now))
        try store.saveTrust(HostTrust(hostID: id, since: now, mode: mode, attesterURL: req.attesterURL, simulated: true))
        try store.recordAttestation(AttestationRecord(hostID: id, at: now, kind: "registration", trusted: false, codes: [],
                                                      message: "SIMULATED host (software AK \(kind.rawValue), no TPM)",
                                                      policyName: policy.name, policyVersion: policy.version, policySHA256: policy.sha256))
        metrics.registration("registered_simulated")
        return RegisterHostResponse(hostId: id, credentialBlob: Base64.encode(secret), encryptedSecret: "", activationExpiresAt: expires.iso8601)
    }

    /// Completes credential activation: the host proves its TPM holds both the certified EK and the AK.
    public func activateHost(id: String, _ req: ActivateHostRequest) throws -> ActivateHostResponse {
        var host = try knownHost(id)
        let now = clock.now()
        guard host.akState == .pending, let digest = host.activationDigest, let expires = host.activationExpiresAt else {
            throw VouchError(.conflict, "host has no pending credential activation; register again to rotate the AK", context: ["hostId": id])
        }
        guard now < expires else {
            throw VouchError(.activationExpired, "credential activation window has passed; register again", context: ["hostId": id, "expiredAt": expires.iso8601])
        }
        guard host.activationFailures < config.maxActivationFailures else {
            throw VouchError(.activationFailed, "too many wrong activation answers; register again", context: ["hostId": id])
        }
        let secret = try Base64.decode(req.secret, field: "secret")
        guard constantTimeEqual(Crypto.sha256(secret), digest) else {
            host.activationFailures += 1
            host.updatedAt = now
            try store.saveHost(host)
            try store.recordAttestation(AttestationRecord(hostID: id, at: now, kind: "activation", trusted: false,
                                                          codes: [ErrorCode.activationFailed.rawValue], message: "wrong credential activation answer"))
            throw VouchError(.activationFailed, "credential activation answer is wrong: the AK is not in the TPM that holds the certified EK", context: ["hostId": id])
        }
        var trust = try store.trust(hostID: id) ?? HostTrust(hostID: id, since: now, mode: .push)
        var hostCertificate: Certificate?
        if let pem = req.hostCSR {
            hostCertificate = try issueHostCertificate(host: host, csrPEM: pem, now: now)
        } else if trust.mode == .pull {
            throw VouchError(.badRequest, "pull mode needs a host certificate: send hostCSR", context: ["field": "hostCSR"])
        }
        host.akState = .active
        host.activationDigest = nil
        host.activationExpiresAt = nil
        host.activationFailures = 0
        host.updatedAt = now
        try store.saveHost(host)
        trust.hostCertificateSerial = hostCertificate?.serialHex
        trust.hostKeyPin = try hostCertificate.map { try Self.keyPin($0.publicKey) }
        try store.saveTrust(trust)
        try store.recordAttestation(AttestationRecord(hostID: id, at: now, kind: "activation", trusted: false, codes: [],
                                                      message: "AK activated" + (hostCertificate.map { "; host certificate \($0.serialHex)" } ?? "")))
        log("host \(id) AK activated")
        return ActivateHostResponse(hostId: id, akState: AKState.active.rawValue, hostCertificate: try hostCertificate?.pem,
                                    caCertificate: hostCertificate == nil ? nil : try authorities.current.chainPEM,
                                    brokerSpiffeId: config.brokerSpiffeID)
    }

    // MARK: Challenges and enrollment

    /// Issues a single-use nonce for a host whose AK is active, with the PCRs its quote must cover.
    public func createChallenge(_ req: ChallengeRequest) throws -> ChallengeResponse {
        guard [nil, "enrollment", "attestation"].contains(req.purpose) else {
            throw VouchError(.badRequest, "purpose must be enrollment or attestation", context: ["field": "purpose", "got": String((req.purpose ?? "").prefix(32))])
        }
        let host = try knownHost(req.hostId)
        let policy = try attestablePolicy(for: host)
        let now = clock.now()
        let nonce = Hex.encode(try Crypto.randomBytes(32))
        let expires = now.addingTimeInterval(config.challengeTTL)
        try store.insertChallenge(ChallengeRecord(nonce: nonce, hostID: host.id, createdAt: now, expiresAt: expires))
        return ChallengeResponse(nonce: nonce, expiresAt: expires.iso8601, pcrSelection: Self.challengeSelection(policy),
                                 reattestationInterval: Int(policy.reattestation.interval))
    }

    /// `quoteSelection` as a challenge names it.
    static func challengeSelection(_ policy: Policy) -> [PCRSelectionBody] {
        quoteSelection(policy).banks.map { PCRSelectionBody(bank: $0.hash.rawValue, pcrs: $0.pcrs) }
    }

    /// For a host that may be attested now — not blocked, AK activated — the policy that applies.
    func attestablePolicy(for host: HostRecord) throws -> Policy {
        try requireNotBlocked(host)
        guard host.akState == .active else {
            throw VouchError(.akNotActivated, "host's attestation key has not completed credential activation", context: ["hostId": host.id])
        }
        return try applicablePolicy(for: host)
    }

    /// The policy that applies to a registered host now.
    func applicablePolicy(for host: HostRecord) throws -> Policy {
        guard let p = policies.current.select(labels: host.labels, ekIssuer: host.ekIssuer) else {
            throw VouchError(.noPolicy, "no policy applies to this host any more", context: ["hostId": host.id])
        }
        return p
    }

    /// What enrollment quotes cover: `Policy.quoteSelection` (the policy's PCRs, those its
    /// event-log rules read, and SHA-256 PCR 23 for model measurements).
    static func quoteSelection(_ policy: Policy) -> PCRSelection {
        policy.quoteSelection
    }

    /// Issues an agent certificate. Checks, in order, refusing at the first failure:
    /// 1. the request is well formed (agent name, nonce, base64 and hex fields);
    /// 2. the host is registered and its AK has completed credential activation;
    /// 3. the nonce was issued to this host, is unused and unexpired (it is consumed now, pass or fail);
    /// 4. the CSR parses, its self-signature verifies, and its key type is allowed;
    /// 5. the quote verifies (QuoteVerifier: AK signature, TPM origin, type, qualifying data =
    ///    SHA-256(nonce ‖ SHA-256(CSR SubjectPublicKeyInfo)), PCR digest);
    /// 6. the appraisal (Appraiser): event log and model log replay to the quoted PCRs (the event
    ///    data claims are read from hashing to its digests), the TPM clock did not go backwards,
    ///    and the quoted PCRs and claims satisfy the policy.
    /// Every decision, trusted or not, is recorded with the policy's name, version and digest.
    public func enroll(_ req: EnrollRequest) throws -> EnrollResponse {
        let now = clock.now()
        // 1
        guard req.agentName.range(of: Self.agentNamePattern, options: .regularExpression) != nil else {
            throw VouchError(.agentNameInvalid, "agent name must be 1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
                             context: ["field": "agentName"])
        }
        guard Hex.isLowercase(req.nonce, length: 64...64) else {
            throw VouchError(.badRequest, "nonce must be 64 lowercase hex digits", context: ["field": "nonce"])
        }
        let attestBytes = try Base64.decode(req.quote.attest, field: "quote.attest")
        let sigBytes = try Base64.decode(req.quote.signature, field: "quote.signature")
        let eventLog = try req.quote.eventLog.map { try Base64.decode($0, field: "quote.eventLog") }
        let modelLog = try req.quote.modelLog.map { try Base64.decode($0, field: "quote.modelLog") }
        let pcrs = try PCRValues(hexMap: req.quote.pcrs, field: "quote.pcrs")
        // 2
        let host = try knownHost(req.hostId)
        if host.blockedReason != nil {
            try refuse(host, req, nil, VouchError(.hostRevoked, "this host was revoked by an operator", context: ["hostId": host.id]), now)
        }
        guard host.akState == .active else {
            try refuse(host, req, nil, VouchError(.akNotActivated, "host's attestation key has not completed credential activation", context: ["hostId": host.id]), now)
        }
        let policy = try applicablePolicy(for: host)
        // 3
        let issuedAt: Date
        switch try store.consumeChallenge(nonce: req.nonce, hostID: host.id, now: now) {
        case let .consumed(at): issuedAt = at
        case .unknown: try refuse(host, req, policy, VouchError(.nonceUnknown, "nonce was not issued to this host", context: ["field": "nonce"]), now)
        case .alreadyUsed: try refuse(host, req, policy, VouchError(.nonceReused, "nonce has already been used", context: ["field": "nonce"]), now)
        case .expired: try refuse(host, req, policy, VouchError(.nonceExpired, "nonce has expired; request a new challenge", context: ["field": "nonce"]), now)
        }
        // 4: the agent key — a CSR (proof of possession by its self-signature), or a TPM-bound key
        // certified by the host's AK over the same nonce binding as the quote.
        let agentKey: PublicKey
        switch (req.csr, req.tpmKey) {
        case let (pem?, nil):
            let csr: CSR
            do { csr = try CSR(pemOrDER: Array(pem.utf8)) } catch let e as VouchError {
                try refuse(host, req, policy, VouchError(.csrMalformed, e.message, context: e.context), now)
            }
            guard csr.signatureIsValid else {
                try refuse(host, req, policy, VouchError(.csrSignatureInvalid, "CSR signature does not verify with its own key (no proof of possession)"), now)
            }
            agentKey = try csr.publicKey
            if let renewal = req.renewal {
                do { try checkRenewal(renewal, host: host, agentName: req.agentName, csr: csr, now: now) } catch let e as VouchError {
                    try refuse(host, req, policy, e, now)
                }
            }
        case let (nil, tpmKey?):
            guard req.renewal == nil else {
                try refuse(host, req, policy, VouchError(.badRequest, "a TPM-bound key is renewed by enrolling a new one", context: ["field": "renewal"]), now)
            }
            let keyPublic = try Base64.decode(tpmKey.publicArea, field: "tpmKey.publicArea")
            guard let pub = try? TPMTPublic(tpm2bPublic: keyPublic), let candidate = try? PublicKey(tpmPublic: pub), let spki = try? candidate.spkiDER else {
                try refuse(host, req, policy, VouchError(.keyCertificationInvalid, "tpmKey.publicArea is not a usable key"), now)
            }
            let expected = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(req.nonce), agentSPKI: spki)
            let ak = try PublicKey(tpmPublic: try TPMTPublic(tpm2bPublic: host.akPublic))
            switch CertifyVerifier.verify(attest: try Base64.decode(tpmKey.certifyInfo, field: "tpmKey.certifyInfo"),
                                          signature: try Base64.decode(tpmKey.signature, field: "tpmKey.signature"),
                                          ak: ak, keyPublic: keyPublic, expectedQualifyingData: expected) {
            case let .success(certified): agentKey = certified.publicKey
            case let .failure(e): try refuse(host, req, policy, e, now)
            }
        default:
            throw VouchError(.badRequest, "give exactly one of csr and tpmKey", context: ["field": "csr"])
        }
        let keyType = agentKey.isEC ? "ec-p\(agentKey.bits)" : agentKey.isRSA ? "rsa-\(agentKey.bits)" : "other"
        guard Policy.allAgentKeyTypes.contains(keyType) else {
            try refuse(host, req, policy, VouchError(.csrKeyNotAllowed, "agent key must be ECDSA P-256/P-384 or RSA of 2048-4096 bits",
                                                     context: ["got": keyType]), now)
        }
        // 5
        let qualifyingData = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(req.nonce), agentSPKI: try agentKey.spkiDER)
        let quote: VerifiedQuote
        switch attestationKeys.verify(attest: attestBytes, signature: sigBytes, akPublic: host.akPublic, expectedQualifyingData: qualifyingData, pcrs: pcrs) {
        case let .verified(q): quote = q
        case let .rejected(errors): try refuse(host, req, policy, errors[0], now)
        }
        let pcrRecord = quote.pcrs.hexMap
        // 6
        let evidence: TrustedEvidence
        let previousClock = try store.lastTrustedClock(hostID: host.id)
        switch Appraiser.appraise(hostID: host.id, quote: quote, eventLog: eventLog, modelLog: modelLog, previousClock: previousClock,
                                  policy: policy, evidenceAge: now.timeIntervalSince(issuedAt), agentKeyType: keyType, digester: OpenSSLDigester()) {
        case let .trusted(e): evidence = e
        case let .rejected(violations, claims):
            let err = VouchError(violations[0].code, "evidence does not satisfy policy \(policy.label): " +
                                 violations.map(\.message).joined(separator: "; "), context: ["policy": policy.name])
            try refuse(host, req, policy, err, now, violations: violations, quote: quote, claims: claims, pcrs: pcrRecord)
        }
        guard let spiffeID = policy.spiffeID(trustDomain: config.trustDomain, hostID: host.id, hostname: host.hostname,
                                             agentName: req.agentName, labels: host.labels) else {
            try refuse(host, req, policy, VouchError(.spiffeIDUnresolved, "the policy's SPIFFE ID template needs a value this host lacks",
                                                     context: ["template": policy.certificate.spiffeIDTemplate]), now)
        }
        // The broker's and hosts' own identities are never issued to an agent (a template such as
        // spiffe://{trustDomain}/{agentName} with an agent named "vouchd" would otherwise be one).
        guard !config.isReservedSpiffeID(spiffeID) else {
            try refuse(host, req, policy, VouchError(.spiffeIDReserved, "this SPIFFE ID is reserved for the broker or a host", context: ["got": spiffeID]), now)
        }
        let issued = try issue(host: host, agentName: req.agentName, spiffeID: spiffeID, nonce: req.nonce, agentKey: agentKey, evidence: evidence,
                               pcrs: pcrRecord, now: now)
        try noteTrustedEnrollment(hostID: host.id, policy: policy.label, now: now)
        return issued
    }

    /// How far the broker's clock may fall behind its own latest recorded decision before it
    /// refuses to issue (certificates would carry a wrong validity and nonces a wrong expiry).
    static let maxClockRegression: TimeInterval = 300

    /// Issuance accepts only `TrustedEvidence`, which only the verifiers can produce.
    private func issue(host: HostRecord, agentName: String, spiffeID: String, nonce: String, agentKey: PublicKey, evidence: TrustedEvidence,
                       pcrs: [String: [String: String]], now: Date) throws -> EnrollResponse {
        let notBefore = now.addingTimeInterval(-30)   // tolerate small clock skew at relying parties
        if let last = try store.latestDecisionTime(), now < last.addingTimeInterval(-Self.maxClockRegression) {
            log("refusing to issue: clock \(now.iso8601) is behind the last recorded decision \(last.iso8601)")
            throw VouchError(.clockUnreliable, "the broker's clock is earlier than decisions it already recorded; not issuing until it is fixed",
                             context: ["now": now.iso8601, "lastDecision": last.iso8601])
        }
        let notAfter = now.addingTimeInterval(evidence.certificateTTL)   // already capped at re-attestation + grace
        let claimsExtension = AttestationExtension(
            hostId: host.id, attestedAt: now, evidenceType: "tpm2-quote", evidenceDigest: Crypto.sha256(evidence.quote.attest.raw),
            pcrBank: evidence.pcrBank.rawValue,
            pcrDigest: evidence.quote.pcrDigest, policyName: evidence.policyName, policyVersion: evidence.policyVersion,
            policyDigest: (try? Hex.decode(evidence.policySHA256)) ?? [], modelManifests: evidence.claims.model.map { [(try? Hex.decode($0.manifestDigest)) ?? []] } ?? [],
            secureBoot: evidence.claims.boot?.secureBoot)
        let ca = authorities.current
        let profile = LeafProfile(subjectCommonName: agentName, uriSANs: [spiffeID], notBefore: notBefore, notAfter: notAfter,
                                  usage: .agent, crlDistributionPoint: config.crlURL.map { "\($0)/\(ca.keyID)" }, ocspURL: config.ocspURL,
                                  extensions: [(AttestationExtension.oid, claimsExtension.der)])
        let attestation = AttestationRecord(hostID: host.id, at: now, kind: "enrollment", trusted: true, codes: [],
                                            message: "quote verified; policy \(evidence.policyName) v\(evidence.policyVersion) satisfied",
                                            agentName: agentName, nonce: nonce, policyName: evidence.policyName,
                                            policyVersion: evidence.policyVersion, policySHA256: evidence.policySHA256,
                                            pcrDigest: Hex.encode(evidence.quote.pcrDigest), claims: evidence.claims, pcrs: pcrs)
        // A serial collision (2^-127 per pair) is refused by the store; retry with a fresh one.
        for _ in 0..<3 {
            let cert = try ca.signer.issue(publicKey: agentKey, profile: profile, serial: nil)
            var record = attestation
            record.serial = cert.serialHex
            do {
                _ = try store.recordIssuance(attestation: record, certificate: CertificateRecord(
                    serial: cert.serialHex, hostID: host.id, agentName: agentName, spiffeID: spiffeID,
                    notBefore: cert.notBefore, notAfter: cert.notAfter, pem: try cert.pem, attestationID: 0, issuer: ca.keyID))
            } catch let e as VouchError where e.code == .conflict {
                continue
            }
            metrics.enrollment("issued")
            events.notify()
            log("issued \(cert.serialHex) to \(spiffeID) until \(cert.notAfter.iso8601)")
            return EnrollResponse(serial: cert.serialHex, spiffeId: spiffeID, certificate: try cert.pem, caCertificate: try ca.chainPEM,
                                  notBefore: cert.notBefore.iso8601, notAfter: cert.notAfter.iso8601, policy: "\(evidence.policyName) v\(evidence.policyVersion)")
        }
        throw VouchError(.internalError, "could not allocate a unique certificate serial")
    }

    /// Records a refused enrollment for the audit trail, then throws the refusal.
    private func refuse(_ host: HostRecord, _ req: EnrollRequest, _ policy: Policy?, _ error: VouchError, _ now: Date,
                        violations: [PolicyViolation] = [], quote: VerifiedQuote? = nil, claims: EvidenceClaims? = nil,
                        pcrs: [String: [String: String]]? = nil) throws -> Never {
        try store.recordAttestation(AttestationRecord(hostID: host.id, at: now, kind: "enrollment", trusted: false,
                                                      codes: violations.isEmpty ? [error.code.rawValue] : violations.map(\.code.rawValue),
                                                      message: error.message, agentName: req.agentName, nonce: req.nonce,
                                                      policyName: policy?.name, policyVersion: policy?.version, policySHA256: policy?.sha256,
                                                      pcrDigest: quote.map { Hex.encode($0.pcrDigest) }, claims: claims, pcrs: pcrs))
        metrics.enrollment(error.code.rawValue)
        try store.appendEvent(type: "attestation.rejected", data: ["hostId": host.id, "agentName": req.agentName, "code": error.code.rawValue,
                                                                   "codes": (violations.isEmpty ? [error.code.rawValue] : violations.map(\.code.rawValue)).joined(separator: ",")], at: now)
        events.notify()
        log("refused enrollment of \(req.agentName) on \(host.id): \(error.code) \(error.message)")
        if violations.isEmpty { throw error }
        throw PolicyRefusal(error: error, violations: violations)
    }

    func requireNotBlocked(_ host: HostRecord) throws {
        if let reason = host.blockedReason {
            throw VouchError(.hostRevoked, "this host was revoked by an operator", context: ["hostId": host.id, "reason": reason])
        }
    }

    /// Renewal checks, in order: the current certificate parses and chains to this CA at `now`
    /// (`certificate_expired` if only its validity fails), this broker issued it and it is not
    /// revoked, it names this host and agent, and its key signed the new CSR's DER.
    func checkRenewal(_ renewal: RenewalBody, host: HostRecord, agentName: String, csr: CSR, now: Date) throws {
        guard let current = try? Certificate(pem: renewal.certificate) else {
            throw VouchError(.renewalInvalid, "renewal certificate is not a PEM certificate", context: ["field": "renewal.certificate"])
        }
        let anchors = authorities.bundle, intermediates = authorities.signing.flatMap { [$0.signer.caCertificate] + $0.chain }
        if current.verify(anchors: anchors, intermediates: intermediates, at: now) != nil {
            if current.notAfter <= now, current.verify(anchors: anchors, intermediates: intermediates, at: current.notAfter.addingTimeInterval(-1)) == nil {
                throw VouchError(.certificateExpired, "the certificate to renew has expired; enroll afresh", context: ["serial": current.serialHex])
            }
            throw VouchError(.renewalInvalid, "the certificate to renew was not issued by this broker's CA", context: ["field": "renewal.certificate"])
        }
        guard let record = try store.certificate(serial: current.serialHex) else {
            throw VouchError(.renewalInvalid, "this broker has no record of the certificate to renew", context: ["serial": current.serialHex])
        }
        guard record.revokedAt == nil else {
            throw VouchError(.certificateRevoked, "the certificate to renew is revoked", context: ["serial": record.serial])
        }
        guard record.hostID == host.id, record.agentName == agentName else {
            throw VouchError(.renewalIdentityMismatch, "the certificate to renew belongs to another host or agent",
                             context: ["expected": "\(host.id)/\(agentName)", "got": "\(record.hostID)/\(record.agentName)"])
        }
        let proof = try Base64.decode(renewal.proof, field: "renewal.proof")
        let key = try current.publicKey
        let scheme: SignatureScheme = key.isEC ? .ecdsa : .rsassa
        guard key.verify(message: try csr.der, signature: proof, scheme: scheme, hash: .sha256) else {
            throw VouchError(.renewalProofInvalid, "the renewal proof is not a signature by the current certificate's key", context: ["field": "renewal.proof"])
        }
    }

    func knownHost(_ id: String) throws -> HostRecord {
        guard Hex.isLowercase(id, length: 32...32) else {
            throw VouchError(.badRequest, "host id must be 32 lowercase hex digits", context: ["field": "hostId"])
        }
        guard let host = try store.host(id: id) else {
            throw VouchError(.unknownHost, "no host is registered with this id", context: ["hostId": id])
        }
        return host
    }

}

/// A policy refusal: the first violation's error plus every violation, for the API body.
public struct PolicyRefusal: Error, Sendable {
    public let error: VouchError
    public let violations: [PolicyViolation]
}
