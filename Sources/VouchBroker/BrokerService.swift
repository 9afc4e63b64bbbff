import Foundation
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
}

/// Signs certificates and CRLs: the CA, seen by the service only through this protocol.
public protocol CertificateSigner: Sendable {
    var caCertificate: Certificate { get }
    func issue(publicKey: PublicKey, profile: LeafProfile, serial: [UInt8]?) throws -> Certificate
    func makeCRL(entries: [RevokedEntry], number: UInt64, thisUpdate: Date, nextUpdate: Date) throws -> [UInt8]
}

extension CertificateAuthority: CertificateSigner {
    public var caCertificate: Certificate { certificate }
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
    /// Public URL of the CRL, written into certificates as their CRL distribution point.
    public var crlURL: String?

    public init(trustDomain: String) { self.trustDomain = trustDomain }
}

/// The broker's decisions: registration, credential activation, challenges, enrollment,
/// revocation and status. Orchestration only: evidence is judged by VouchAttestation's verifiers,
/// certificates are made by the signer, state lives in the store.
public final class BrokerService: Sendable {
    public let config: BrokerConfig
    public let policy: Policy
    let store: BrokerStore
    let signer: CertificateSigner
    let ekTrust: EKTrustStore
    let clock: Clock
    let log: @Sendable (String) -> Void

    public init(config: BrokerConfig, policy: Policy, store: BrokerStore, signer: CertificateSigner, ekTrust: EKTrustStore,
                clock: Clock, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.config = config
        self.policy = policy
        self.store = store
        self.signer = signer
        self.ekTrust = ekTrust
        self.clock = clock
        self.log = log
    }

    static let hostIDPattern = "^[0-9a-f]{32}$"
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
        let now = clock.now()
        let endorsement = try EndorsementVerifier.verify(ekCertificateDER: ekCert, ekPublic: ekPublic, trust: ekTrust, now: now).get()
        let (ak, kind) = try EndorsementVerifier.checkAttestationKey(akPublic, allowed: policy.akAlgorithms).get()
        let akName = CredentialProtection.name(of: ak)
        let secret = try Crypto.randomBytes(32)
        let made = try CredentialProtection.makeCredential(ek: endorsement.ekPublic, objectName: akName, credential: secret)

        let existing = try store.host(id: endorsement.hostID)
        let expires = now.addingTimeInterval(config.activationTTL)
        try store.saveHost(HostRecord(id: endorsement.hostID, hostname: hostname, ekPublic: ekPublic, ekCertificate: ekCert,
                                      ekIssuer: endorsement.ekCertificateIssuer, akPublic: akPublic, akName: akName, akAlgorithm: kind.rawValue,
                                      akState: .pending, activationDigest: Crypto.sha256(secret), activationExpiresAt: expires,
                                      activationFailures: 0, registeredAt: existing?.registeredAt ?? now, updatedAt: now))
        try store.recordAttestation(AttestationRecord(hostID: endorsement.hostID, at: now, kind: "registration", trusted: false,
                                                      codes: [], message: "EK verified (\(endorsement.ekCertificateIssuer)); AK \(kind.rawValue) awaiting credential activation"))
        log("host \(endorsement.hostID) registered (\(hostname)); AK \(kind.rawValue) pending activation")
        return RegisterHostResponse(hostId: endorsement.hostID, credentialBlob: Base64.encode(made.credentialBlob),
                                    encryptedSecret: Base64.encode(made.encryptedSecret), activationExpiresAt: expires.iso8601)
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
        host.akState = .active
        host.activationDigest = nil
        host.activationExpiresAt = nil
        host.activationFailures = 0
        host.updatedAt = now
        try store.saveHost(host)
        try store.recordAttestation(AttestationRecord(hostID: id, at: now, kind: "activation", trusted: false, codes: [],
                                                      message: "AK activated"))
        log("host \(id) AK activated")
        return ActivateHostResponse(hostId: id, akState: AKState.active.rawValue)
    }

    // MARK: Challenges and enrollment

    /// Issues a single-use nonce for a host whose AK is active, with the PCRs its quote must cover.
    public func createChallenge(_ req: ChallengeRequest) throws -> ChallengeResponse {
        let host = try knownHost(req.hostId)
        guard host.akState == .active else {
            throw VouchError(.akNotActivated, "host's attestation key has not completed credential activation", context: ["hostId": host.id])
        }
        let now = clock.now()
        let nonce = Hex.encode(try Crypto.randomBytes(32))
        let expires = now.addingTimeInterval(config.challengeTTL)
        try store.insertChallenge(ChallengeRecord(nonce: nonce, hostID: host.id, createdAt: now, expiresAt: expires))
        return ChallengeResponse(nonce: nonce, expiresAt: expires.iso8601,
                                 pcrSelection: quoteSelection.banks.map { PCRSelectionBody(bank: $0.hash.rawValue, pcrs: $0.pcrs) })
    }

    /// What enrollment quotes cover: the policy's PCRs, plus SHA-256 PCR 23 for model measurements.
    var quoteSelection: PCRSelection {
        var banks = policy.pcrSelection.banks
        if let i = banks.firstIndex(where: { $0.hash == .sha256 }) {
            banks[i] = PCRBankSelection(hash: .sha256, pcrs: banks[i].pcrs + [ModelLog.pcr])
        } else {
            banks.append(PCRBankSelection(hash: .sha256, pcrs: [ModelLog.pcr]))
        }
        return PCRSelection(banks: banks)
    }

    /// Issues an agent certificate. Checks, in order, refusing at the first failure:
    /// 1. the request is well formed (agent name, nonce, base64 and hex fields);
    /// 2. the host is registered and its AK has completed credential activation;
    /// 3. the nonce was issued to this host, is unused and unexpired (it is consumed now, pass or fail);
    /// 4. the CSR parses, its self-signature verifies, and its key type is allowed;
    /// 5. the quote verifies (QuoteVerifier: AK signature, TPM origin, type, qualifying data =
    ///    SHA-256(nonce ‖ SHA-256(CSR SubjectPublicKeyInfo)), PCR digest);
    /// 6. the appraisal (Appraiser): event log and model log replay to the quoted PCRs, the TPM
    ///    clock did not go backwards, and the quoted PCRs satisfy the policy.
    /// Every decision, trusted or not, is recorded with the policy's name, version and digest.
    public func enroll(_ req: EnrollRequest) throws -> EnrollResponse {
        let now = clock.now()
        // 1
        guard req.agentName.range(of: Self.agentNamePattern, options: .regularExpression) != nil else {
            throw VouchError(.agentNameInvalid, "agent name must be 1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
                             context: ["field": "agentName"])
        }
        guard req.nonce.range(of: "^[0-9a-f]{64}$", options: .regularExpression) != nil else {
            throw VouchError(.badRequest, "nonce must be 64 lowercase hex digits", context: ["field": "nonce"])
        }
        let attestBytes = try Base64.decode(req.quote.attest, field: "quote.attest")
        let sigBytes = try Base64.decode(req.quote.signature, field: "quote.signature")
        let eventLog = try req.quote.eventLog.map { try Base64.decode($0, field: "quote.eventLog") }
        let modelLog = try req.quote.modelLog.map { try Base64.decode($0, field: "quote.modelLog") }
        var pcrs = PCRValues()
        for (bankName, values) in req.quote.pcrs {
            guard let bank = HashAlg(rawValue: bankName) else {
                throw VouchError(.badRequest, "quote.pcrs banks must be sha1, sha256, sha384 or sha512", context: ["field": "quote.pcrs.\(bankName)"])
            }
            for (k, v) in values {
                guard let i = Int(k), (0...PCRSelection.maxPCR).contains(i) else {
                    throw VouchError(.badRequest, "quote.pcrs keys must be PCR indices 0-23", context: ["field": "quote.pcrs.\(bankName).\(k)"])
                }
                pcrs.values[bank, default: [:]][i] = try Hex.decode(v, field: "quote.pcrs.\(bankName).\(k)")
            }
        }
        // 2
        let host = try knownHost(req.hostId)
        guard host.akState == .active else {
            try refuse(host, req, VouchError(.akNotActivated, "host's attestation key has not completed credential activation", context: ["hostId": host.id]), now)
        }
        // 3
        switch try store.consumeChallenge(nonce: req.nonce, hostID: host.id, now: now) {
        case .consumed: break
        case .unknown: try refuse(host, req, VouchError(.nonceUnknown, "nonce was not issued to this host", context: ["field": "nonce"]), now)
        case .alreadyUsed: try refuse(host, req, VouchError(.nonceReused, "nonce has already been used", context: ["field": "nonce"]), now)
        case .expired: try refuse(host, req, VouchError(.nonceExpired, "nonce has expired; request a new challenge", context: ["field": "nonce"]), now)
        }
        // 4
        let csr: CSR
        do { csr = try CSR(pemOrDER: Array(req.csr.utf8)) } catch let e as VouchError {
            try refuse(host, req, VouchError(.csrMalformed, e.message, context: e.context), now)
        }
        guard csr.signatureIsValid else {
            try refuse(host, req, VouchError(.csrSignatureInvalid, "CSR signature does not verify with its own key (no proof of possession)"), now)
        }
        let agentKey = try csr.publicKey
        guard (agentKey.isEC && [256, 384].contains(agentKey.bits)) || (agentKey.isRSA && agentKey.bits >= 2048) else {
            try refuse(host, req, VouchError(.csrKeyNotAllowed, "agent key must be ECDSA P-256/P-384 or RSA of at least 2048 bits",
                                                    context: ["got": "\(agentKey.isRSA ? "RSA" : agentKey.isEC ? "EC" : "other")-\(agentKey.bits)"]), now)
        }
        // 5
        let akPublic = try TPMTPublic(tpm2bPublic: host.akPublic)
        let qualifyingData = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(req.nonce), agentSPKI: try agentKey.spkiDER)
        let quote: VerifiedQuote
        switch QuoteVerifier.verify(attest: attestBytes, signature: sigBytes, akPublic: akPublic, expectedQualifyingData: qualifyingData, pcrs: pcrs) {
        case let .verified(q): quote = q
        case let .rejected(errors): try refuse(host, req, errors[0], now)
        }
        // 6
        let evidence: TrustedEvidence
        let previousClock = try store.lastTrustedClock(hostID: host.id)
        switch Appraiser.appraise(hostID: host.id, quote: quote, eventLog: eventLog, modelLog: modelLog, previousClock: previousClock,
                                  policy: policy, digester: OpenSSLDigester()) {
        case let .trusted(e): evidence = e
        case let .rejected(violations):
            let err = VouchError(violations[0].code, "evidence does not satisfy policy \(policy.name) v\(policy.version): " +
                                 violations.map(\.message).joined(separator: "; "), context: ["policy": policy.name])
            try refuse(host, req, err, now, violations: violations, quote: quote)
        }
        return try issue(host: host, agentName: req.agentName, nonce: req.nonce, agentKey: agentKey, evidence: evidence, now: now)
    }

    /// Issuance accepts only `TrustedEvidence`, which only the verifiers can produce.
    private func issue(host: HostRecord, agentName: String, nonce: String, agentKey: PublicKey, evidence: TrustedEvidence, now: Date) throws -> EnrollResponse {
        let spiffeID = "spiffe://\(config.trustDomain)/host/\(host.id)/agent/\(agentName)"
        let notBefore = now.addingTimeInterval(-30)   // tolerate small clock skew at relying parties
        let notAfter = now.addingTimeInterval(evidence.certificateTTL)
        let profile = LeafProfile(subjectCommonName: agentName, uriSANs: [spiffeID], notBefore: notBefore, notAfter: notAfter,
                                  usage: .agent, crlDistributionPoint: config.crlURL)
        let attestation = AttestationRecord(hostID: host.id, at: now, kind: "enrollment", trusted: true, codes: [],
                                            message: "quote verified; policy \(evidence.policyName) v\(evidence.policyVersion) satisfied",
                                            agentName: agentName, nonce: nonce, policyName: evidence.policyName,
                                            policyVersion: evidence.policyVersion, policySHA256: evidence.policySHA256,
                                            pcrDigest: Hex.encode(evidence.quote.pcrDigest), claims: evidence.claims)
        // A serial collision (2^-127 per pair) is refused by the store; retry with a fresh one.
        for _ in 0..<3 {
            let cert = try signer.issue(publicKey: agentKey, profile: profile, serial: nil)
            var record = attestation
            record.serial = cert.serialHex
            do {
                _ = try store.recordIssuance(attestation: record, certificate: CertificateRecord(
                    serial: cert.serialHex, hostID: host.id, agentName: agentName, spiffeID: spiffeID,
                    notBefore: cert.notBefore, notAfter: cert.notAfter, pem: try cert.pem, attestationID: 0))
            } catch let e as VouchError where e.code == .conflict {
                continue
            }
            log("issued \(cert.serialHex) to \(spiffeID) until \(cert.notAfter.iso8601)")
            return EnrollResponse(serial: cert.serialHex, spiffeId: spiffeID, certificate: try cert.pem, caCertificate: try signer.caCertificate.pem,
                                  notBefore: cert.notBefore.iso8601, notAfter: cert.notAfter.iso8601, policy: "\(evidence.policyName) v\(evidence.policyVersion)")
        }
        throw VouchError(.internalError, "could not allocate a unique certificate serial")
    }

    /// Records a refused enrollment for the audit trail, then throws the refusal.
    private func refuse(_ host: HostRecord, _ req: EnrollRequest, _ error: VouchError, _ now: Date,
                        violations: [PolicyViolation] = [], quote: VerifiedQuote? = nil) throws -> Never {
        try store.recordAttestation(AttestationRecord(hostID: host.id, at: now, kind: "enrollment", trusted: false,
                                                      codes: violations.isEmpty ? [error.code.rawValue] : violations.map(\.code.rawValue),
                                                      message: error.message, agentName: req.agentName, nonce: req.nonce,
                                                      policyName: policy.name, policyVersion: policy.version, policySHA256: policy.sha256,
                                                      pcrDigest: quote.map { Hex.encode($0.pcrDigest) }))
        log("refused enrollment of \(req.agentName) on \(host.id): \(error.code) \(error.message)")
        if violations.isEmpty { throw error }
        throw PolicyRefusal(error: error, violations: violations)
    }

    private func knownHost(_ id: String) throws -> HostRecord {
        guard id.range(of: Self.hostIDPattern, options: .regularExpression) != nil else {
            throw VouchError(.badRequest, "host id must be 32 lowercase hex digits", context: ["field": "hostId"])
        }
        guard let host = try store.host(id: id) else {
            throw VouchError(.unknownHost, "no host is registered with this id", context: ["hostId": id])
        }
        return host
    }

    // MARK: Revocation and CRL

    public static let reasonCodes: [String: Int] = [
        "unspecified": 0, "keyCompromise": 1, "affiliationChanged": 3, "superseded": 4,
        "cessationOfOperation": 5, "privilegeWithdrawn": 9,
    ]

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
        let reasonName = req.reason ?? "unspecified"
        guard let reason = Self.reasonCodes[reasonName] else {
            throw VouchError(.badRequest, "unknown revocation reason", context: ["field": "reason", "expected": Self.reasonCodes.keys.sorted().joined(separator: ","), "got": reasonName])
        }
        let (serials, crl) = try store.revoke(target, at: clock.now(), reason: reason, buildCRL: crlBuilder())
        guard !serials.isEmpty else {
            throw VouchError(.notFound, "no unrevoked certificate matches", context: ["target": "\(target)"])
        }
        log("revoked \(serials.joined(separator: ",")) (\(reasonName)); CRL #\(crl.number)")
        return RevokeResponse(revoked: serials, crlNumber: crl.number)
    }

    /// The current CRL, re-signed when half its validity has passed.
    public func currentCRL() throws -> CRLRecord {
        let now = clock.now()
        if let crl = try store.currentCRL(), now < crl.thisUpdate.addingTimeInterval(config.crlValidity / 2) {
            return crl
        }
        return try store.refreshCRL(buildCRL: crlBuilder())
    }

    private func crlBuilder() -> CRLBuilder {
        let signer = self.signer, clock = self.clock, validity = config.crlValidity
        return { revoked, number in
            let now = clock.now()
            let entries = revoked.filter { $0.notAfter > now }.compactMap { r in
                r.revokedAt.map { RevokedEntry(serialHex: r.serial, revokedAt: $0, reason: r.revocationReason ?? 0) }
            }
            let next = now.addingTimeInterval(validity)
            return CRLRecord(number: number, der: try signer.makeCRL(entries: entries, number: number, thisUpdate: now, nextUpdate: next),
                             thisUpdate: now, nextUpdate: next)
        }
    }

    // MARK: Status

    public func status() throws -> StatusResponse {
        let now = clock.now()
        let hosts = try store.hosts().map { h -> HostStatus in
            let last = try store.latestAttestation(hostID: h.id).map { a in
                AttestationSummary(at: a.at.iso8601, result: a.trusted ? "trusted" : (a.codes.isEmpty ? "info" : "rejected"),
                                   codes: a.codes, message: a.message, policy: a.policyName.map { "\($0) v\(a.policyVersion ?? 0)" },
                                   claims: a.claims)
            }
            return HostStatus(hostId: h.id, hostname: h.hostname, akState: h.akState.rawValue, akAlgorithm: h.akAlgorithm,
                              ekIssuer: h.ekIssuer, registeredAt: h.registeredAt.iso8601, lastAttestation: last)
        }
        let reasons = Dictionary(uniqueKeysWithValues: Self.reasonCodes.map { ($1, $0) })
        let certs = try store.certificates().map { c in
            CertificateStatus(serial: c.serial, hostId: c.hostID, agentName: c.agentName, spiffeId: c.spiffeID,
                              notBefore: c.notBefore.iso8601, notAfter: c.notAfter.iso8601,
                              state: c.revokedAt != nil ? "revoked" : (c.notAfter <= now ? "expired" : "valid"),
                              revokedAt: c.revokedAt?.iso8601, revocationReason: c.revocationReason.map { reasons[$0] ?? "\($0)" })
        }
        return StatusResponse(trustDomain: config.trustDomain, policy: "\(policy.name) v\(policy.version) sha256:\(policy.sha256.prefix(16))",
                              crlNumber: try store.currentCRL()?.number ?? 0, hosts: hosts, certificates: certs)
    }
}

/// A policy refusal: the first violation's error plus every violation, for the API body.
public struct PolicyRefusal: Error, Sendable {
    public let error: VouchError
    public let violations: [PolicyViolation]
}
