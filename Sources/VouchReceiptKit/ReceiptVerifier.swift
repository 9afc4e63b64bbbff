import Foundation
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchLogClient
import VouchReceipts
import VouchTLog

/// Offline verification of a receipt bundle against a trust document. The checks, in order (each
/// failure is a `ReceiptViolation` with its own code; every check that can run does, so a refusal
/// lists all it found):
///
///  1. `receipt_malformed`: the bundle, its DSSE envelope (payload type in-toto) and the chain parse.
///  2. `receipt_signature_invalid`: a DSSE signature over PAE(type, payload) verifies with the
///     leaf certificate's key. Only then is the payload read (verify before you read) —
///  3. `receipt_malformed`: the in-toto Statement v1 and the receipt predicate parse.
///  4. `receipt_chain_invalid`: the leaf chains to the trust document's `agentRoots` at the
///     receipt's finish time (held inside the leaf's validity, which check 12 judges on its own).
///  5. `receipt_signer_not_agent`: the leaf is an agent identity: not a CA, exactly one URI SAN,
///     a SPIFFE ID in the trust domain that is neither the broker's nor a host's, and an
///     attestation extension.
///  6. `receipt_output_mismatch`: with the output, the subject digest is its SHA-256.
///     `receipt_request_mismatch`: with the request and salt, the predicate's commitment opens.
///  7. `receipt_ear_invalid`: the bundle's EAR is the one in the certificate, signed by
///     `spiffe://<trust domain>/vouchd` chaining to `brokerCA`, and names this certificate's key
///     and SPIFFE ID.
///     `receipt_not_affirming`: every submodule of the EAR says `affirming` (a simulated host or
///     device, or a GPU not fully matched or not shown unrevoked, says `warning`), unless
///     `Inputs.allowWarning`.
///  8. `receipt_claims_mismatch`: the predicate's model, agent, EAR digest, evidence digests,
///     policy digest and appraisal time are those of the certificate and its verified EAR.
///  9. `receipt_issuance_mismatch`: the issuance entry is present, of kind issuance, names this
///     certificate (digest, serial, SPIFFE ID), EAR digest and policy digest, its record is the
///     predicate's and its log index is the predicate's `issuanceIndex`.
///     `receipt_entry_mismatch`: a receipt entry, when present, is of kind receipt and names
///     this certificate, this Statement's digest and this output digest.
/// 10. `receipt_log_unverified`: each proof's checkpoint is signed by the log key and has the
///     log's origin; `receipt_inclusion_invalid`: the entry is included in that checkpoint's tree.
/// 11. `receipt_witnesses_insufficient`: with witness keys, at least `witnessThreshold` of them
///     cosigned every checkpoint.
/// 12. `receipt_outside_validity`: start ≤ finish, both inside the leaf's validity (notBefore ≤
///     start, finish < notAfter, as OpenSSL counts it), start not before the appraisal time; and
///     when the bundle carries the receipt's own log entry (check 9 passed), finish no later than
///     that entry's time (the broker's clock when it logged the receipt) plus `loggedTimeSkew`.
///     The receipt's time for revocation is then finish, or the logged time when earlier: the
///     log proves the receipt existed by then.
/// 13. `receipt_crl_invalid`: a CRL given is the leaf issuer's and signed by it, and, when it
///     does not list the leaf, is not older than the receipt's time (an older CRL cannot say the
///     leaf was not revoked by then); `receipt_revoked`: it lists the leaf as revoked at or before
///     the receipt's time — or for `keyCompromise` or `privilegeWithdrawn` (the broker's reason
///     after a failed re-attestation) at any time, unless the receipt's own log entry predates
///     that revocation (a key's thief could date a receipt before it).
/// 14. With a log (`Inputs.log`: a mirror's directory or the broker's URL), read whole:
///     `receipt_log_unverified`: its checkpoint is signed by the log key with the log's origin,
///     and its entry bundles make that checkpoint's root; `receipt_log_inconsistent`: it extends
///     every checkpoint verified in check 10 (at least as large, the same root at that size);
///     `receipt_revoked`: no revocation entry names the leaf (digest or serial) at or before the
///     receipt's time, nor one for `keyCompromise` or `privilegeWithdrawn` at any time unless the
///     receipt's log entry predates it. A later one is reported (`LogRevocationAnswer.revokedLater`).
public struct ReceiptVerifier: Sendable {
    public let trust: ReceiptTrust
    let hasher = MerkleHasher(sha256: { Crypto.sha256($0) })

    public init(trust: ReceiptTrust) { self.trust = trust }

    /// How far an agent's finish time may run ahead of the broker's clock when the broker logged
    /// the receipt (the broker's intake allows the same).
    public static let loggedTimeSkew: TimeInterval = 300
    /// Revocation reasons after which the signer's own times are not believed (RFC 5280
    /// reasonCodes): keyCompromise (1), and privilegeWithdrawn (9), which the broker writes when a
    /// host fails re-attestation — its key may be in other hands since. A receipt of a
    /// certificate revoked for one of them stands only if the log holds it from before the revocation.
    static let compromiseReasons: Set<Int> = [1, 9]
    static let compromiseReasonNames: Set<String> = ["keyCompromise", "privilegeWithdrawn"]

    /// What the caller brings besides the bundle.
    public struct Inputs: Sendable {
        public var output: [UInt8]?
        public var request: [UInt8]?
        public var salt: [UInt8]?
        public var crl: CRL?
        public var witnesses: [NoteVerifierKey]
        public var witnessThreshold: Int
        /// A copy of the log (`DirectoryLogSource`) or the log itself (`HTTPLogSource`) to read
        /// revocations from (check 14); read whole, every entry.
        public var log: (any LogSource)?
        /// Accept an EAR whose appraisal is `warning` somewhere (check 7).
        public var allowWarning = false
        public init(output: [UInt8]? = nil, request: [UInt8]? = nil, salt: [UInt8]? = nil, crl: CRL? = nil,
                    witnesses: [NoteVerifierKey] = [], witnessThreshold: Int = 0, log: (any LogSource)? = nil) {
            self.output = output; self.request = request; self.salt = salt; self.crl = crl
            self.witnesses = witnesses; self.witnessThreshold = witnessThreshold; self.log = log
        }
    }

    public func verify(bundle bytes: [UInt8], _ inputs: Inputs = Inputs()) -> ReceiptVerdict {
        var violations: [ReceiptViolation] = []
        func fail(_ code: ErrorCode, _ message: String) { violations.append(ReceiptViolation(code: code, message: message)) }
        let bundle: UnverifiedReceiptBundle, chain: [Certificate], certDigest: String
        do {
            bundle = try UnverifiedReceiptBundle(json: bytes)
            guard bundle.envelope.payloadType == DSSEEnvelope.inTotoPayloadType else {
                return .rejected([.init(code: .receiptMalformed, message: "the envelope's payload type is not \(DSSEEnvelope.inTotoPayloadType)")])
            }
            chain = try trust.chain(pem: bundle.chainPEM)
            guard !chain.isEmpty, chain.count <= 8 else { throw VouchError(.receiptMalformed, "the chain holds 1 to 8 certificates") }
            certDigest = try AgentReceiptClaims.certificateDigest(chain[0])
        } catch {
            return .rejected([.init(code: .receiptMalformed, message: Self.message(error))])
        }
        let leaf = chain[0]
        guard let key = try? leaf.publicKey, bundle.envelope.signatures.contains(where: {
            key.verify(message: bundle.envelope.pae, signature: $0.sig, scheme: key.isEC ? .ecdsa : .rsassa, hash: AgentReceiptClaims.hash(for: key))
        }) else {
            return .rejected([.init(code: .receiptSignatureInvalid, message: "no envelope signature verifies with the certificate's key")])
        }
        let statement: ReceiptStatement
        do { statement = try ReceiptStatement(json: bundle.envelope.payload) } catch {
            return .rejected([.init(code: .receiptMalformed, message: Self.message(error))])
        }
        let predicate = statement.predicate
        let started = predicate.started!, finished = predicate.finished!, appraised = predicate.appraised!
        // The chain and the EAR are judged at the receipt's time, kept inside the leaf's validity
        // (a receipt outside it is check 12's to name).
        // OpenSSL counts a certificate as expired from its notAfter second on.
        let at = min(max(finished, leaf.notBefore), leaf.notAfter.addingTimeInterval(-1))

        // 4. Chain.
        var issuer: Certificate?
        switch leaf.verifiedPath(anchors: trust.agentAnchors, intermediates: Array(chain.dropFirst()) + trust.agentIntermediates, at: at) {
        case .success(let path): issuer = path.count > 1 ? path[1] : nil
        case .failure(let e): fail(.receiptChainInvalid, "the certificate does not chain to the trust document's agent roots: \(e.message)")
        }
        // 5. Agent identity.
        let spiffe = leaf.uriSANs.first ?? ""
        if let problem = agentProblem(leaf) { fail(.receiptSignerNotAgent, problem) }
        // 6. Output and request.
        if let output = inputs.output, Crypto.sha256(output) != statement.outputSHA256 {
            fail(.receiptOutputMismatch, "the output's SHA-256 is not the receipt's subject digest")
        }
        if let request = inputs.request {
            // Only a salt of exactly the signer's length opens it (a longer one could carry a
            // prefix of another request: salt' = salt ‖ prefix).
            let opened = inputs.salt.flatMap { $0.count == RequestCommitment.saltBytes ? $0 : nil }
                .map { ReceiptFormat.digest(Crypto.sha256(RequestCommitment.message(salt: $0, request: request))) }
            if predicate.request == nil || opened != predicate.request?.commitment {
                fail(.receiptRequestMismatch, predicate.request == nil ? "the receipt commits to no request" : "the request and salt do not open the receipt's commitment")
            }
        }
        // 7. EAR.
        var claims: AttestationExtension?
        let certEAR = leaf.extensionValue(oid: AttestationExtension.oid).flatMap { try? AttestationExtension.ear(extensionValue: $0) }
        if let certEAR, certEAR == bundle.ear {
            do {
                // The EAR read once, from the certificate (equal to the bundle's).
                claims = try AttestationExtension.verified(certificate: leaf, ear: certEAR, anchors: trust.brokerAnchors,
                                                           signer: "spiffe://\(trust.trustDomain)/vouchd", at: at)
            } catch {
                fail(.receiptEARInvalid, "the certificate's EAR does not verify: \(Self.message(error))")
            }
        } else {
            fail(.receiptEARInvalid, "the bundle's EAR is not the one in the certificate")
        }
        if let claims, !inputs.allowWarning {
            let notAffirming = claims.statuses.filter { $0.value != "affirming" }.sorted { $0.key < $1.key }
            if claims.statuses.isEmpty || !notAffirming.isEmpty {
                fail(.receiptNotAffirming, claims.statuses.isEmpty ? "the EAR carries no appraisal status"
                     : "the EAR's appraisal is not affirming for " + notAffirming.map { "\($0.key) (\($0.value))" }.joined(separator: ", ")
                       + " (a simulated host or device, or a GPU not fully matched or not shown unrevoked); --allow-warning accepts it")
            }
        }
        // 8. Claims.
        let expected = claims.flatMap { try? AgentReceiptClaims(leaf: leaf, claims: $0, ear: bundle.ear, issuance: nil) }
        if let expected {
            var differ: [String] = []
            if predicate.model != expected.model { differ.append("model") }
            if predicate.agent != expected.agent { differ.append("agent") }
            if predicate.attestation.ear != expected.attestation.ear { differ.append("attestation.ear") }
            if predicate.attestation.evidence != expected.attestation.evidence { differ.append("attestation.evidence") }
            if predicate.attestation.policy != expected.attestation.policy { differ.append("attestation.policy") }
            if predicate.attestation.appraisedAt != expected.attestation.appraisedAt { differ.append("attestation.appraisedAt") }
            if !differ.isEmpty { fail(.receiptClaimsMismatch, "the predicate's \(differ.joined(separator: ", ")) differ from the certificate's attestation") }
        }
        // 9. Log entries.
        var issuanceIndex: UInt64?
        if let issuance = bundle.issuance {
            if let problem = issuanceProblem(issuance, leaf: leaf, certDigest: certDigest, expected: expected, predicate: predicate) {
                fail(.receiptIssuanceMismatch, problem)
            } else {
                issuanceIndex = issuance.proof.index
            }
        } else {
            fail(.receiptIssuanceMismatch, "the bundle carries no issuance entry and proof")
        }
        var loggedAt: Date?
        if let receipt = bundle.receipt {
            if let problem = receiptEntryProblem(receipt, leaf: leaf, certDigest: certDigest, statement: statement, payload: bundle.envelope.payload) {
                fail(.receiptEntryMismatch, problem)
            } else {
                loggedAt = (try? LogEntry(bytes: receipt.entry)).flatMap { Date.parseRFC3339($0.time) }
            }
        }
        // 10–11. Proofs, checkpoints, witnesses.
        var checkpoints: [CheckpointBody] = []
        var witnessNames = Set<String>()
        for (name, logged) in [("issuance", bundle.issuance), ("receipt", bundle.receipt)] {
            guard let logged else { continue }
            switch checkInclusion(logged, inputs) {
            case .success(let (body, witnesses)):
                checkpoints.append(body)
                witnessNames.formUnion(witnesses)
                if witnesses.count < inputs.witnessThreshold {
                    fail(.receiptWitnessesInsufficient, "the \(name) proof's checkpoint has \(witnesses.count) of the \(inputs.witnessThreshold) witness cosignatures required")
                }
            case .failure(let v): violations.append(ReceiptViolation(code: v.code, message: "the \(name) proof: \(v.message)"))
            }
        }
        // 12. Times.
        if started > finished || started < leaf.notBefore || finished >= leaf.notAfter || started < appraised {
            fail(.receiptOutsideValidity, "the receipt's times (\(predicate.startedAt) to \(predicate.finishedAt)) are not inside the certificate's validity "
                 + "(\(leaf.notBefore.iso8601) to \(leaf.notAfter.iso8601)) after the appraisal (\(predicate.attestation.appraisedAt))")
        }
        if let loggedAt, finished > loggedAt.addingTimeInterval(Self.loggedTimeSkew) {
            fail(.receiptOutsideValidity, "the receipt finished (\(predicate.finishedAt)) after the broker logged it (\(loggedAt.iso8601)), "
                 + "more than \(Int(Self.loggedTimeSkew)) s later")
        }
        let receiptTime = min(finished, loggedAt ?? finished)
        // 13. Revocation.
        if let crl = inputs.crl {
            if let issuer, crl.issuer == issuer.subject, crl.isSigned(by: issuer) {
                if let revoked = crl.revocation(serialHex: leaf.serialHex) {
                    if revoked.date <= receiptTime {
                        fail(.receiptRevoked, "the CRL lists the certificate as revoked at \(revoked.date.iso8601), at or before the receipt's time (\(receiptTime.iso8601))")
                    } else if let reason = revoked.reason, Self.compromiseReasons.contains(reason), !(loggedAt.map { $0 < revoked.date } ?? false) {
                        fail(.receiptRevoked, "the CRL lists the certificate as revoked at \(revoked.date.iso8601) for a compromised key or a failed "
                             + "attestation (reasonCode \(reason)): whoever held the key could date a receipt before that; only a receipt the log holds from before the revocation stands")
                    }
                } else if crl.thisUpdate < receiptTime {
                    fail(.receiptCRLInvalid, "the CRL (thisUpdate \(crl.thisUpdate.iso8601)) is older than the receipt (\(receiptTime.iso8601)): "
                         + "it cannot say the certificate was not revoked by then")
                }
            } else {
                fail(.receiptCRLInvalid, "the CRL is not signed by the certificate's issuer")
            }
        }
        // 14. Revocation from the log.
        var logAnswer: LogRevocationAnswer?
        if let source = inputs.log {
            let (answer, found) = checkLog(source, certDigest: certDigest, serial: leaf.serialHex, receiptTime: receiptTime, loggedAt: loggedAt,
                                           bundleCheckpoints: checkpoints, witnesses: inputs.witnesses, witnessThreshold: inputs.witnessThreshold)
            logAnswer = answer
            violations += found
        }
        guard violations.isEmpty, let claims else { return .rejected(violations) }
        return .verified(ReceiptFacts(statement: statement, spiffeId: spiffe, serial: leaf.serialHex, claims: claims,
                                      earSigner: "spiffe://\(trust.trustDomain)/vouchd", issuer: issuer?.subject ?? "",
                                      issuanceIndex: issuanceIndex ?? 0, checkpoints: checkpoints, witnesses: witnessNames.sorted(),
                                      outputChecked: inputs.output != nil, requestOpened: inputs.request != nil,
                                      revocationCheckedAt: inputs.crl?.thisUpdate, logged: bundle.receipt != nil, loggedAt: loggedAt,
                                      receiptTime: receiptTime, logRevocation: logAnswer))
    }

    func agentProblem(_ leaf: Certificate) -> String? {
        let sans = leaf.uriSANs
        guard !leaf.isCA, sans.count == 1 else { return "the signer is a CA or does not carry exactly one URI SAN" }
        let prefix = "spiffe://\(trust.trustDomain)/"
        guard sans[0].hasPrefix(prefix) else { return "the signer's SPIFFE ID \(sans[0]) is not in the trust domain \(trust.trustDomain)" }
        let path = sans[0].dropFirst(prefix.count)
        if path == "vouchd" || (path.hasPrefix("host/") && !path.dropFirst(5).contains("/")) {
            return "the signer \(sans[0]) is the broker or a host, not an agent"
        }
        guard leaf.extensionValue(oid: AttestationExtension.oid) != nil else { return "the signer's certificate carries no attestation: not an agent certificate" }
        return nil
    }

    func issuanceProblem(_ logged: UnverifiedReceiptBundle.LoggedEntry, leaf: Certificate, certDigest: String, expected: AgentReceiptClaims?, predicate: ReceiptPredicate) -> String? {
        guard let entry = try? LogEntry(bytes: logged.entry) else { return "the issuance entry is not a log entry" }
        guard entry.kind == .issuance else { return "the issuance entry is of kind \(entry.kind.rawValue)" }
        let fields = expected?.issuanceFields
            ?? [("certificate", certDigest), ("serial", leaf.serialHex), ("spiffe", leaf.uriSANs.first ?? "")]
        for (name, value) in fields where entry[name] != value { return "the issuance entry's \(name) is not the certificate's" }
        guard entry["attestation"] == predicate.attestation.record else { return "the issuance entry's attestation record is not the predicate's" }
        guard String(logged.proof.index) == predicate.attestation.issuanceIndex else { return "the issuance proof's index is not the predicate's issuanceIndex" }
        return nil
    }

    func receiptEntryProblem(_ logged: UnverifiedReceiptBundle.LoggedEntry, leaf: Certificate, certDigest: String, statement: ReceiptStatement, payload: [UInt8]) -> String? {
        guard let entry = try? LogEntry(bytes: logged.entry), entry.kind == .receipt else { return "the receipt entry is not a log entry of kind receipt" }
        let fields = [("spiffe", leaf.uriSANs.first ?? ""), ("serial", leaf.serialHex), ("certificate", certDigest),
                      ("statement", ReceiptFormat.digest(Crypto.sha256(payload))), ("output", ReceiptFormat.digest(statement.outputSHA256))]
        for (name, value) in fields where entry[name] != value { return "the receipt entry's \(name) is not this receipt's" }
        return nil
    }

    /// The entry's inclusion in a checkpoint the log key signed (with the witnesses that cosigned it).
    func checkInclusion(_ logged: UnverifiedReceiptBundle.LoggedEntry, _ inputs: Inputs) -> Result<(CheckpointBody, [String]), ReceiptViolation> {
        let note: VerifiedNote, body: CheckpointBody
        do {
            note = try UnverifiedNote(logged.proof.signedCheckpoint, maxBytes: TLogProofFile.maxBytes).verify([trust.logKey] + inputs.witnesses)
            guard note.verifications.contains(where: { $0.key == trust.logKey }) else { throw VouchError(.noteUnverified, "the log key did not sign") }
            body = try CheckpointBody(text: note.text)
            guard body.origin == trust.logOrigin else { throw VouchError(.noteUnverified, "the checkpoint's origin is \(body.origin), not \(trust.logOrigin)") }
        } catch {
            return .failure(.init(code: .receiptLogUnverified, message: "the checkpoint is not the log's: \(Self.message(error))"))
        }
        do {
            _ = try MerkleVerifier(hasher: hasher).verifyInclusion(leafHash: hasher.leafHash(logged.entry), index: logged.proof.index, size: body.size,
                                                                  proof: logged.proof.proof, root: body.rootHash)
        } catch {
            return .failure(.init(code: .receiptInclusionInvalid, message: "the entry is not in the checkpoint's tree: \(Self.message(error))"))
        }
        let witnesses = Set(note.verifications.filter { v in inputs.witnesses.contains(v.key) }.map(\.key.name))
        return .success((body, witnesses.sorted()))
    }

    static func message(_ error: any Error) -> String { (error as? VouchError)?.message ?? "\(error)" }
}

/// One failed check: its code and what was found.
public struct ReceiptViolation: Sendable, Equatable, Error {
    public let code: ErrorCode
    public let message: String
    public init(code: ErrorCode, message: String) { self.code = code; self.message = message }
}

public enum ReceiptVerdict: Sendable {
    case verified(ReceiptFacts)
    case rejected([ReceiptViolation])
}

/// What a verified receipt establishes.
public struct ReceiptFacts: Sendable {
    public let statement: ReceiptStatement
    public let spiffeId: String
    public let serial: String
    /// The EAR's claims, signature verified and bound to the certificate.
    public let claims: AttestationExtension
    /// Who signed the EAR (the broker) and the agent certificate's issuer.
    public let earSigner: String
    public let issuer: String
    public let issuanceIndex: UInt64
    /// The checkpoints the proofs verified against (issuance first).
    public let checkpoints: [CheckpointBody]
    /// Witnesses (of those given) that cosigned.
    public let witnesses: [String]
    public let outputChecked: Bool
    public let requestOpened: Bool
    /// The CRL's thisUpdate, when one was checked.
    public let revocationCheckedAt: Date?
    /// True when the receipt itself is in the log.
    public let logged: Bool
    /// The receipt entry's time (the broker's clock when it logged the receipt), when logged.
    public let loggedAt: Date?
    /// The time revocation is judged at: the Statement's finishedAt, or `loggedAt` when earlier.
    public let receiptTime: Date
    /// What reading the whole log established (check 14), when a log was given.
    public let logRevocation: LogRevocationAnswer?
}

extension ErrorCode {
    public static let receiptSignatureInvalid = ErrorCode("receipt_signature_invalid", status: 403)
    public static let receiptChainInvalid = ErrorCode("receipt_chain_invalid", status: 403)
    public static let receiptSignerNotAgent = ErrorCode("receipt_signer_not_agent", status: 403)
    public static let receiptOutputMismatch = ErrorCode("receipt_output_mismatch", status: 403)
    public static let receiptRequestMismatch = ErrorCode("receipt_request_mismatch", status: 403)
    public static let receiptEARInvalid = ErrorCode("receipt_ear_invalid", status: 403)
    /// The EAR's appraisal is not `affirming` for the platform or a device (`warning`: simulated,
    /// not fully matched, or revocation not shown); `vouch receipt verify --allow-warning` accepts it.
    public static let receiptNotAffirming = ErrorCode("receipt_not_affirming", status: 403)
    public static let receiptClaimsMismatch = ErrorCode("receipt_claims_mismatch", status: 403)
    public static let receiptIssuanceMismatch = ErrorCode("receipt_issuance_mismatch", status: 403)
    public static let receiptEntryMismatch = ErrorCode("receipt_entry_mismatch", status: 403)
    public static let receiptLogUnverified = ErrorCode("receipt_log_unverified", status: 403)
    public static let receiptInclusionInvalid = ErrorCode("receipt_inclusion_invalid", status: 403)
    public static let receiptWitnessesInsufficient = ErrorCode("receipt_witnesses_insufficient", status: 403)
    public static let receiptOutsideValidity = ErrorCode("receipt_outside_validity", status: 403)
    public static let receiptCRLInvalid = ErrorCode("receipt_crl_invalid", status: 403)
    public static let receiptRevoked = ErrorCode("receipt_revoked", status: 403)
}
