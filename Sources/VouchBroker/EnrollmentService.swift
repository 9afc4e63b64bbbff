import Foundation
import Synchronization
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel
import VouchPolicy
import VouchTPMWire

extension ErrorCode {
    public static let unknownHost = ErrorCode("unknown_host", status: 404)
    public static let akNotActivated = ErrorCode("ak_not_activated", status: 403)
    public static let activationFailed = ErrorCode("activation_failed", status: 403)
    public static let activationExpired = ErrorCode("activation_expired", status: 403)
    public static let nonceUnknown = ErrorCode("nonce_unknown", status: 403)
    public static let nonceExpired = ErrorCode("nonce_expired", status: 403)
    public static let csrMalformed = ErrorCode("csr_malformed", status: 400)
    public static let csrSignatureInvalid = ErrorCode("csr_signature_invalid", status: 400)
    public static let csrKeyNotAllowed = ErrorCode("csr_key_not_allowed", status: 400)
    public static let agentNameInvalid = ErrorCode("agent_name_invalid", status: 400)
    public static let policyRejected = ErrorCode("policy_rejected", status: 403)
    public static let spiffeIDUnresolved = ErrorCode("spiffe_id_unresolved", status: 403)
    public static let spiffeIDReserved = ErrorCode("spiffe_id_reserved", status: 403)
    public static let labelsInvalid = ErrorCode("labels_invalid", status: 400)
    public static let certificateRevoked = ErrorCode("certificate_revoked", status: 403)
    public static let certificateExpired = ErrorCode("certificate_expired", status: 403)
    public static let renewalInvalid = ErrorCode("renewal_invalid", status: 400)
    public static let renewalIdentityMismatch = ErrorCode("renewal_identity_mismatch", status: 403)
    public static let renewalProofInvalid = ErrorCode("renewal_proof_invalid", status: 403)
    public static let clockUnreliable = ErrorCode("clock_unreliable", status: 503)
}

/// Challenges, agent enrollment (and renewal) and certificate issuance: the path from a host's
/// fresh evidence to an agent's X.509-SVID.
public struct EnrollmentService: BrokerPart, Sendable {
    let context: BrokerContext

    static let agentNamePattern = "^[a-z0-9][a-z0-9._-]{0,62}$"

    // MARK: Challenges and enrollment

    /// Issues a single-use nonce for a host whose AK is active, with the PCRs its quote must cover.
    /// Writes nothing (see `NonceMinter`): the request is unauthenticated. Purpose `registration`
    /// (a CPU TEE host's registration report) is for the host id the host will register as,
    /// registered or not: no PCRs, no interval.
    public func createChallenge(_ req: ChallengeRequest) throws -> ChallengeResponse {
        guard let purpose = NonceMinter.Purpose(rawValue: req.purpose ?? "enrollment") else {
            throw VouchError(.badRequest, "purpose must be enrollment, attestation or registration",
                             context: ["field": "purpose", "got": String((req.purpose ?? "").prefix(32))])
        }
        if purpose == .registration {
            guard Hex.isLowercase(req.hostId, length: 32...32) else {
                throw VouchError(.badRequest, "host id must be 32 lowercase hex digits", context: ["field": "hostId"])
            }
            let now = clock.now()
            return ChallengeResponse(nonce: try nonces.mint(hostID: req.hostId, purpose: .registration, at: now),
                                     expiresAt: now.addingTimeInterval(config.challengeTTL).iso8601, pcrSelection: [])
        }
        let host = try knownHost(req.hostId)
        let policy = try attestablePolicy(for: host)
        let now = clock.now()
        let nonce = try nonces.mint(hostID: host.id, purpose: purpose, at: now)
        let expires = now.addingTimeInterval(config.challengeTTL)
        return ChallengeResponse(nonce: nonce, expiresAt: expires.iso8601, pcrSelection: Self.challengeSelection(policy),
                                 reattestationInterval: Int(policy.reattestation.interval))
    }

    /// Issues an agent certificate. Checks, in order, refusing at the first failure:
    /// 1. the request is well formed (agent name, nonce, base64 and hex fields);
    /// 2. the host is registered, not blocked, and its AK has completed credential activation;
    /// 3. the nonce was issued to this host for enrollment and has not expired (`NonceMinter`),
    ///    and was not used before;
    /// 4. the agent key: a CSR that parses and whose self-signature verifies, or (a TPM host only:
    ///    `bad_request` for a CPU TEE host) a TPM-bound key certified by the host's AK over the same
    ///    binding as the quote;
    /// 5. the evidence authenticates (`EvidenceVerifiers.authenticate`; for the TPM, QuoteVerifier:
    ///    AK signature, TPM origin, type, qualifying data = SHA-256(nonce ‖ SHA-256(agent
    ///    SubjectPublicKeyInfo)), PCR digest; for a CPU TEE, its verifier's authenticity checks,
    ///    REPORT_DATA = `EnrollmentBinding.teeReportData` of that binding, and the registered
    ///    host's chip or host key); with other devices (GPUs) in the request, the binding is
    ///    `EnrollmentBinding.composite` of that one and every device's digest, and each device's
    ///    own evidence carries the nonce (`NvidiaGPUEvidenceVerifier`);
    /// 6. the agent key type is one the broker and the policy allow;
    /// 7. every device's evidence verifies and the set satisfies the policy
    ///    (`EvidenceVerifiers.appraise`; for the TPM, event log and model log replay to the quoted
    ///    PCRs — claims are read only from events of quoted PCRs whose data hashes to their
    ///    digests — and the TPM clock did not go backwards from evidence recorded before this
    ///    nonce was issued; then `Appraiser`: the quoted PCRs and claims satisfy the policy);
    /// 8. the SPIFFE ID resolves and is not reserved.
    /// Steps 1-5 refuse requests nobody has authenticated yet (anyone can send a host id and a
    /// nonce): they write nothing durable and publish nothing (a log line and a metric). From 6 on,
    /// the request provably comes from the host's TPM: every decision is recorded with the policy's
    /// name, version and digest, and consumes the nonce in the same transaction.
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
        let rawEvidence = try Self.rawEvidence(req)
        // 2
        let host = try knownHost(req.hostId)
        if host.blockedReason != nil {
            try refuseUnauthenticated(host, req, VouchError(.hostRevoked, "this host was revoked by an operator", context: ["hostId": host.id]))
        }
        guard host.akState == .active else {
            try refuseUnauthenticated(host, req, VouchError(.akNotActivated, "host's attestation key has not completed credential activation", context: ["hostId": host.id]))
        }
        let policy = try applicablePolicy(for: host)
        // 3
        let issuedAt: Date
        do {
            issuedAt = try nonces.open(req.nonce, hostID: host.id, purpose: .enrollment, now: now, ttl: config.challengeTTL)
        } catch let e as VouchError {
            try refuseUnauthenticated(host, req, e)
        }
        if try store.nonceUsed(req.nonce) {
            try refuseUnauthenticated(host, req, VouchError(.nonceReused, "nonce has already been used", context: ["field": "nonce"]))
        }
        let nonceExpiresAt = issuedAt.addingTimeInterval(config.challengeTTL)
        // 4: the agent key — a CSR (proof of possession by its self-signature), or a TPM-bound key
        // certified by the host's AK over the same nonce binding as the quote.
        let agentKey: PublicKey
        var renewal: (RenewalBody, VerifiedCertificateRequest)?
        switch (req.csr, req.tpmKey) {
        case let (pem?, nil):
            let verified: VerifiedCertificateRequest?
            do { verified = try UnverifiedCertificateRequest(pemOrDER: Array(pem.utf8)).verify() } catch let e as VouchError {
                try refuseUnauthenticated(host, req, VouchError(.csrMalformed, e.message, context: e.context))
            }
            guard let csr = verified else {
                try refuseUnauthenticated(host, req, VouchError(.csrSignatureInvalid, "CSR signature does not verify with its own key (no proof of possession)"))
            }
            agentKey = csr.publicKey
            renewal = req.renewal.map { ($0, csr) }
        case let (nil, tpmKey?):
            guard host.platform == .tpm else {
                try refuseUnauthenticated(host, req, VouchError(.badRequest, "a TPM-bound key (tpmKey) is a TPM host's: a CPU TEE host enrolls with a CSR",
                                                                context: ["field": "tpmKey", "hostId": host.id]))
            }
            guard req.renewal == nil else {
                throw VouchError(.badRequest, "a TPM-bound key is renewed by enrolling a new one", context: ["field": "renewal"])
            }
            let keyPublic = try Base64.decode(tpmKey.publicArea, field: "tpmKey.publicArea")
            guard let pub = try? TPMTPublic(tpm2bPublic: keyPublic), let candidate = try? PublicKey(tpmPublic: pub), let spki = try? candidate.spkiDER else {
                try refuseUnauthenticated(host, req, VouchError(.keyCertificationInvalid, "tpmKey.publicArea is not a usable key"))
            }
            let expected = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(req.nonce), agentSPKI: spki)
            let ak: AttestationKey
            switch attestationKeys.key(host.akPublic) {
            case let .success(key): ak = key
            case let .failure(e): try refuseUnauthenticated(host, req, e)
            }
            switch CertifyVerifier.verify(attest: try Base64.decode(tpmKey.certifyInfo, field: "tpmKey.certifyInfo"),
                                          signature: try Base64.decode(tpmKey.signature, field: "tpmKey.signature"),
                                          ak: ak, keyPublic: keyPublic, expectedQualifyingData: expected, allowSHA1: policy.allowSHA1AK) {
            case let .success(certified): agentKey = certified.publicKey
            case let .failure(e): try refuseUnauthenticated(host, req, e)
            }
        default:
            throw VouchError(.badRequest, "give exactly one of csr and tpmKey", context: ["field": "csr"])
        }
        // 5
        let nonce = try Hex.decode(req.nonce)
        let qualifyingData = EnrollmentBinding.qualifyingData(nonce: nonce, agentSPKI: try agentKey.spkiDER)
        let verification = try verificationContext(host: host, policy: policy, binding: Self.platformBinding(qualifyingData, rawEvidence),
                                                   nonce: nonce, now: now)
        let evidenceSet: AuthenticatedEvidenceSet
        switch evidenceVerifiers.authenticate(rawEvidence, context: verification) {
        case let .authenticated(set): evidenceSet = set
        case let .rejected(errors): try refuseUnauthenticated(host, req, errors[0])
        }
        // From here on the request is the host's own: refusals are recorded and consume the nonce.
        func refuse(_ error: VouchError, violations: [PolicyViolation] = [], claims: EvidenceClaims? = nil) throws -> Never {
            let record = evidenceSet.record
            try self.refuse(host, req, policy, error, now, nonceExpiresAt: nonceExpiresAt, violations: violations, pcrDigest: record?.measurementDigest,
                            claims: claims, pcrs: record?.measurements, tee: record?.tee)
        }
        if let (body, csr) = renewal {
            do { try checkRenewal(body, host: host, agentName: req.agentName, csr: csr, now: now) } catch let e as VouchError { try refuse(e) }
        }
        // 6
        let keyType = agentKey.isEC ? "ec-p\(agentKey.bits)" : agentKey.isRSA ? "rsa-\(agentKey.bits)" : "other"
        guard Policy.allAgentKeyTypes.contains(keyType) else {
            try refuse(VouchError(.csrKeyNotAllowed, "agent key must be ECDSA P-256/P-384 or RSA of 2048-4096 bits", context: ["got": keyType]))
        }
        guard agentKey.hasSoundRSAExponent else {
            try refuse(VouchError(.csrKeyNotAllowed, "agent RSA key's public exponent must be odd and at least 3", context: ["got": keyType]))
        }
        // 7
        let evidence: TrustedEvidence
        switch evidenceVerifiers.appraise(evidenceSet, accepted: try acceptedState(hostID: host.id, nonceIssuedAt: issuedAt), context: verification,
                                          evidenceAge: now.timeIntervalSince(issuedAt), agentKeyType: keyType) {
        case let .trusted(e): evidence = e
        case let .rejected(violations, claims):
            let err = VouchError(violations[0].code, "evidence does not satisfy policy \(policy.label): " +
                                 violations.map(\.message).joined(separator: "; "), context: ["policy": policy.name])
            try refuse(err, violations: violations, claims: claims)
        }
        // 8
        guard let spiffeID = policy.spiffeID(trustDomain: config.trustDomain, hostID: host.id, hostname: host.hostname,
                                             agentName: req.agentName, labels: host.labels) else {
            try refuse(VouchError(.spiffeIDUnresolved, "the policy's SPIFFE ID template needs a value this host lacks (or makes no valid SPIFFE ID)",
                                  context: ["template": policy.certificate.spiffeIDTemplate]), claims: evidence.claims)
        }
        // The broker's and hosts' own identities are never issued to an agent (a template such as
        // spiffe://{trustDomain}/{agentName} with an agent named "vouchd" would otherwise be one).
        guard !config.isReservedSpiffeID(spiffeID) else {
            try refuse(VouchError(.spiffeIDReserved, "this SPIFFE ID is reserved for the broker or a host", context: ["got": spiffeID]), claims: evidence.claims)
        }
        return try issue(host: host, agentName: req.agentName, spiffeID: spiffeID, nonce: req.nonce, nonceExpiresAt: nonceExpiresAt,
                         agentKey: agentKey, evidence: evidence, policy: policy, now: now)
    }

    /// How far the broker's clock may fall behind its own latest recorded decision before it
    /// refuses to issue (certificates would carry a wrong validity and nonces a wrong expiry).
    static let maxClockRegression: TimeInterval = 300

    /// Issuance accepts only `TrustedEvidence`, which only the verifiers can produce.
    private func issue(host: HostRecord, agentName: String, spiffeID: String, nonce: String, nonceExpiresAt: Date, agentKey: PublicKey, evidence: TrustedEvidence,
                       policy: Policy, now: Date) throws -> EnrollResponse {
        let notBefore = now.addingTimeInterval(-30)   // tolerate small clock skew at relying parties
        if let last = try store.latestDecisionTime(), now < last.addingTimeInterval(-Self.maxClockRegression) {
            log("refusing to issue: clock \(now.iso8601) is behind the last recorded decision \(last.iso8601)")
            throw VouchError(.clockUnreliable, "the broker's clock is earlier than decisions it already recorded; not issuing until it is fixed",
                             context: ["now": now.iso8601, "lastDecision": last.iso8601])
        }
        let notAfter = now.addingTimeInterval(evidence.certificateTTL)   // already capped at re-attestation + grace
        // The certificate carries the key in its canonical form (EC: named curve, uncompressed
        // point), the form the EAR's vouch.subject digest is over: a relying party hashing the
        // certificate's SubjectPublicKeyInfo gets the same bytes whatever form the CSR used.
        let issuedKey = try agentKey.canonicalKey
        let ear = try certificateEAR(evidence, subject: try AttestationExtension.Subject(spiffeId: spiffeID, publicKey: agentKey),
                                     simulated: try store.trust(hostID: host.id)?.simulated ?? false, at: now, expiresAt: notAfter)
        let record = evidence.record
        let ca = authorities.current
        let profile = LeafProfile(uriSANs: [spiffeID], notBefore: notBefore, notAfter: notAfter,
                                  usage: .agent, crlDistributionPoint: config.crlURL.map { "\($0)/\(ca.keyID)" }, ocspURL: config.ocspURL,
                                  extensions: [(AttestationExtension.oid, AttestationExtension.extensionValue(ear: ear))])
        let attestation = AttestationRecord(hostID: host.id, at: now, kind: .enrollment, trusted: true, codes: [],
                                            message: "\(evidence.platform.kind.evidenceName) verified; policy \(evidence.policyName) v\(evidence.policyVersion) satisfied",
                                            agentName: agentName, nonce: nonce, policyName: evidence.policyName,
                                            policyVersion: evidence.policyVersion, policySHA256: evidence.policySHA256,
                                            pcrDigest: record.measurementDigest, claims: record.claims, pcrs: record.measurements,
                                            teeEvidence: record.tee.map(TEEEvidenceCopy.init), nonceExpiresAt: nonceExpiresAt)
        // A serial collision (2^-127 per pair) is refused by the store; retry with a fresh one.
        for _ in 0..<3 {
            let cert = try ca.signer.issue(publicKey: issuedKey, profile: profile, serial: nil)
            var record = attestation
            record.serial = cert.serialHex
            let pem = try cert.pem
            let certificate = CertificateRecord(serial: cert.serialHex, hostID: host.id, agentName: agentName, spiffeID: spiffeID,
                                                notBefore: cert.notBefore, notAfter: cert.notAfter, pem: pem, attestationID: 0, issuer: ca.keyID)
            do {
                // The certificate, its decision and event, and the host's trust step: one transaction.
                try ReattestationService(context: context).trustedEnrollment(hostID: host.id, policy: policy, now: now) { tx in
                    // Checked again in the transaction: a block or deletion committed since the
                    // checks of `enroll` wins, and no certificate is issued.
                    guard let current = try tx.host(id: host.id) else {
                        throw VouchError(.unknownHost, "the host was deleted while its agent enrolled", context: ["hostId": host.id])
                    }
                    try requireNotBlocked(current)
                    _ = try tx.recordIssuance(attestation: record, certificate: certificate)
                }
            } catch let e as VouchError where e.code == .conflict {
                continue
            }
            metrics.enrollment("issued")
            events.notify()
            log("issued \(cert.serialHex) to \(spiffeID) until \(cert.notAfter.iso8601)")
            return EnrollResponse(serial: cert.serialHex, spiffeId: spiffeID, certificate: pem, caCertificate: try ca.chainPEM,
                                  notBefore: cert.notBefore.iso8601, notAfter: cert.notAfter.iso8601, policy: "\(evidence.policyName) v\(evidence.policyVersion)")
        }
        throw VouchError(.internalError, "could not allocate a unique certificate serial")
    }

    /// The attestation result of this decision, for the certificate it issues: an EAR built from
    /// the evidence just verified (one submodule per device), valid as long as the certificate,
    /// signed by the broker's result signer.
    func certificateEAR(_ evidence: TrustedEvidence, subject: AttestationExtension.Subject, simulated: Bool, at now: Date, expiresAt: Date) throws -> String {
        var claims = evidence.attestationExtension(attestedAt: now)
        claims.subject = subject
        let payload = try claims.earPayload(
            device: evidence.platform.device, devices: evidence.results.map(\.device), verifierBuild: "vouchd (\(config.trustDomain))",
            expiresAt: expiresAt, simulated: simulated)
        return try context.resultSigner.sign(payload: payload, typ: "JWT")
    }

    /// Records a refused enrollment for the audit trail, then throws the refusal.
    /// Refuses a request nobody has authenticated yet (no verified quote): a log line and a
    /// metric, nothing durable, nothing published.
    private func refuseUnauthenticated(_ host: HostRecord, _ req: EnrollRequest, _ error: VouchError) throws -> Never {
        metrics.enrollment(error.code.rawValue)
        log("refused enrollment of \(req.agentName) on \(host.id) before its quote verified: \(error.code) \(error.message)")
        throw error
    }

    /// Records a refused enrollment whose quote verified (the audit trail; the nonce is consumed
    /// in the same transaction), publishes it, then throws the refusal.
    private func refuse(_ host: HostRecord, _ req: EnrollRequest, _ policy: Policy?, _ error: VouchError, _ now: Date, nonceExpiresAt: Date,
                        violations: [PolicyViolation] = [], pcrDigest: String?, claims: EvidenceClaims? = nil,
                        pcrs: [String: [String: String]]? = nil, tee: TEEEvidenceBytes? = nil) throws -> Never {
        let codes = violations.isEmpty ? [error.code.rawValue] : violations.map(\.code.rawValue)
        try store.transaction { tx in
            try tx.recordAttestation(AttestationRecord(hostID: host.id, at: now, kind: .enrollment, trusted: false, codes: codes,
                                                       message: error.message, agentName: req.agentName, nonce: req.nonce,
                                                       policyName: policy?.name, policyVersion: policy?.version, policySHA256: policy?.sha256,
                                                       pcrDigest: pcrDigest, claims: claims, pcrs: pcrs, teeEvidence: tee.map(TEEEvidenceCopy.init),
                                                       nonceExpiresAt: nonceExpiresAt))
            try tx.appendEvent(type: .attestationRejected, data: ["hostId": host.id, "agentName": req.agentName, "code": error.code.rawValue,
                                                                  "codes": codes.joined(separator: ",")], at: now)
        }
        metrics.enrollment(error.code.rawValue)
        events.notify()
        log("refused enrollment of \(req.agentName) on \(host.id): \(error.code) \(error.message)")
        if violations.isEmpty { throw error }
        throw PolicyRefusal(error: error, violations: violations)
    }

    /// Renewal checks, in order: the current certificate parses and chains to this CA at `now`
    /// (`certificate_expired` if only its validity fails), this broker issued it and it is not
    /// revoked, it names this host and agent, and its key signed the new CSR's DER.
    func checkRenewal(_ renewal: RenewalBody, host: HostRecord, agentName: String, csr: VerifiedCertificateRequest, now: Date) throws {
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
        guard key.verify(message: csr.der, signature: proof, scheme: scheme, hash: .sha256) else {
            throw VouchError(.renewalProofInvalid, "the renewal proof is not a signature by the current certificate's key", context: ["field": "renewal.proof"])
        }
    }

}


/// A policy refusal: the first violation's error plus every violation, for the API body.
public struct PolicyRefusal: Error, Sendable {
    public let error: VouchError
    public let violations: [PolicyViolation]
}
