import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel
import VouchPolicy

extension RegistrationService {
    /// Registers (or re-registers) a CPU TEE host (SEV-SNP, TDX, Azure CVM) in one step: no credential
    /// activation, the report is the proof. Checks, in order, refusing at the first failure:
    /// 1. the request is well formed (by `registerHost`: `tee` alone, no EK, AK or `simulated`;
    ///    `attesterURL`, if given, as for a TPM host: pull mode); the evidence fields fit the kind
    ///    (`bad_request`, `evidence_kind_unsupported`); the nonce is 64 lowercase hex digits and
    ///    `hostKeySignature` is present, base64 (`bad_request`);
    /// 2. the host key is the DER SubjectPublicKeyInfo of an ECDSA P-256 or P-384 key
    ///    (`tee_host_key_invalid`); it gives the host id, `TEEHostIdentity.hostID(kind:hostKeySPKI:)`;
    /// 3. before any evidence is verified, the nonce: issued with purpose `registration` to that
    ///    host id less than the challenge TTL ago (`nonce_unknown`, `nonce_expired`). This bounds
    ///    replay, not work: registration challenges are free (unauthenticated, for any host id), so
    ///    anyone with a key of their own costs the broker one signature check and one verification
    ///    of the evidence per registration, as a TPM registration costs an EK chain verification;
    ///    the auth throttle does not apply (it counts failed bearer tokens);
    /// 3a. `hostKeySignature` verifies with the host key over
    ///    `TEEHostIdentity.signedMessage(binding: SHA-256(nonce ‖ SHA-256(hostKey)))`: the guest
    ///    holds the key its report will bind (`tee_host_mismatch`);
    /// 4. the evidence is authentic and its REPORT_DATA is exactly
    ///    `EnrollmentBinding.teeReportData(binding: SHA-256(nonce ‖ SHA-256(hostKey)))`, hostKey
    ///    the SPKI as sent (the kind's verifier, `TEEEvidenceVerifier.identify`: its stage-1
    ///    checks and codes, `tee_simulation_refused` among them); this gives the host's identity
    ///    (`TEEHostIdentity`: the host key, and for a VCEK-signed report the chip, for an Azure CVM
    ///    its vTPM's endorsement key); an Azure CVM's vTPM quote verifies with the AK its HCL report
    ///    names (`AzureEvidenceVerifier`);
    /// 5. the nonce was not used (`nonce_reused`);
    /// 6. a policy with the kind's section (`snp:`, `tdx:`; an Azure CVM: `snp:`, besides the `pcrs`
    ///    every policy has) applies to the labels and the endorsement's
    ///    issuer (`PolicySet.select`, `no_policy`);
    /// 7. the host is not blocked and keeps its labels (`host_revoked`, `labels_immutable`); a
    ///    registered host re-registers as what it registered as (`tee_host_mismatch`, 403): the
    ///    same platform, the same endorsement issuer (`ekIssuer`), the same `simulated` flag, and,
    ///    with a chip pin, a VCEK-signed report from that chip; with a vTPM endorsement key pin (Azure),
    ///    an HCL report naming that key.
    /// A refused request changes nothing.
    /// Then, in one transaction that fails if the host changed since it was read
    /// (`registration_invalid`): the host record (its platform, identity and host key), its trust
    /// record (pull mode at `attesterURL`, else push; the host key's pin, which a pull requires of
    /// the attester's TLS key; simulated when the evidence is the software TEE's; state and
    /// history kept on re-registration), the decision (kind `activation`), which consumes the
    /// nonce. The host certificate (SPIFFE ID spiffe://TD/host/ID) is issued for the host key: the
    /// attester's TLS server certificate in pull mode, its client certificate when it pushes.
    func registerTEEHost(_ tee: TEERegistrationBody, hostname: String, labels: [String: String], attesterURL: String?, now: Date) throws -> RegisterHostResponse {
        // 1 (`registerHost` checked attesterURL)
        let mode: AttestationMode = attesterURL == nil ? .push : .pull
        let raw = try Self.rawEvidence(tee: tee.kind, tee.evidence, hostKeySignature: nil, field: "tee")
        guard Hex.isLowercase(tee.nonce, length: 64...64) else {
            throw VouchError(.badRequest, "nonce must be 64 lowercase hex digits", context: ["field": "tee.nonce"])
        }
        let sentKey = try Base64.decode(tee.hostKey, field: "tee.hostKey")
        guard let signatureB64 = tee.hostKeySignature else {
            throw VouchError(.badRequest, "a CPU TEE host's registration needs hostKeySignature: the host key's signature over the registration's binding",
                             context: ["field": "tee.hostKeySignature"])
        }
        let signature = try Base64.decode(signatureB64, field: "tee.hostKeySignature")
        // 2
        let hostKey = try TEEHostIdentity.checkedHostKey(sentKey)
        let id = TEEHostIdentity.hostID(kind: raw.kind, hostKeySPKI: hostKey.spki)
        // 3
        let issuedAt: Date
        do {
            issuedAt = try nonces.open(tee.nonce, hostID: id, purpose: .registration, now: now, ttl: config.challengeTTL)
        } catch let e as VouchError {
            metrics.registration(e.code.rawValue)
            throw VouchError(e.code, "nonce was not issued for the registration of this host (\(e.message))", context: ["field": "tee.nonce", "hostId": id])
        }
        // 3a
        let binding = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(tee.nonce), agentSPKI: sentKey)
        guard TEEHostIdentity.verify(signature: signature, binding: binding, spki: hostKey.spki) else {
            metrics.registration(ErrorCode.teeHostMismatch.rawValue)
            throw VouchError(.teeHostMismatch, "hostKeySignature is not the host key's signature over this registration's binding",
                             context: ["field": "tee.hostKeySignature", "hostId": id, "expected": "a signature by the host key", "got": "a signature that does not verify"])
        }
        guard let verifier = evidenceVerifiers.verifier(for: raw.kind) as? any TEEEvidenceVerifier else {
            throw VouchError(.evidenceKindUnsupported, "this broker verifies no evidence of kind \(raw.kind.rawValue)", context: ["got": raw.kind.rawValue])
        }
        // 4
        let identified: TEEIdentification
        switch verifier.identify(raw, binding: binding, hostKey: hostKey.spki, at: now) {
        case let .success(i): identified = i
        case let .failure(e):
            metrics.registration(e.code.rawValue)
            log("refused \(raw.kind.rawValue) registration: \(e.code) \(e.message)")
            throw e
        }
        guard identified.hostID == id, identified.kind == raw.kind else {
            throw VouchError(.internalError, "the \(raw.kind.rawValue) verifier identified another host than the host key's", context: ["hostId": id])
        }
        // 5
        if try store.nonceUsed(tee.nonce) {
            throw VouchError(.nonceReused, "nonce has already been used", context: ["field": "tee.nonce"])
        }
        // 6
        guard let policy = policies.current.select(labels: labels, ekIssuer: identified.endorsementIssuer,
                                                            platform: identified.kind.policyPlatform ?? .tpm) else {
            metrics.registration(ErrorCode.noPolicy.rawValue)
            throw VouchError(.noPolicy, "no policy with an \(identified.kind == .tdx ? "tdx" : "snp") section applies to this host (its labels and endorsement issuer match none)",
                             context: ["ekIssuer": identified.endorsementIssuer])
        }
        // 7
        let existing = try store.host(id: id)
        let existingTrust = existing == nil ? nil : try store.trust(hostID: id)
        if let existing {
            if let reason = existing.blockedReason {
                metrics.registration(ErrorCode.hostRevoked.rawValue)
                throw VouchError(.hostRevoked, "this host was revoked by an operator and cannot register until unblocked", context: ["hostId": id, "reason": reason])
            }
            guard existing.labels == labels else {
                metrics.registration(ErrorCode.labelsImmutable.rawValue)
                throw VouchError(.labelsImmutable, "a registered host keeps its labels; an operator deletes the host (vouch host delete) to change them",
                                 context: ["hostId": id, "field": "labels"])
            }
            // A re-registration is the host registered before: its platform, its endorsement's
            // issuer, simulated or not.
            let platform = HostPlatform(rawValue: identified.kind.rawValue) ?? .tpm
            for (what, expected, got) in [("platform", existing.platform.rawValue, platform.rawValue),
                                          ("ekIssuer", existing.ekIssuer, identified.endorsementIssuer),
                                          ("simulated", String(existingTrust?.simulated ?? false), String(identified.simulated))] where expected != got {
                metrics.registration(ErrorCode.teeHostMismatch.rawValue)
                throw VouchError(.teeHostMismatch, "this host registered with other evidence (\(what)); an operator deletes the host (vouch host delete) to change it",
                                 context: ["hostId": id, "field": what, "expected": expected, "got": got])
            }
            // The chip pinned at registration holds for every later report, a re-registration's too.
            if !existing.ekPublic.isEmpty, !constantTimeEqual(existing.ekPublic, identified.identity.pin) {
                metrics.registration(ErrorCode.teeHostMismatch.rawValue)
                if identified.kind == .azureSNPVTPM {
                    throw VouchError(.teeHostMismatch, "this host registered with another vTPM; an operator deletes the host (vouch host delete) to change it",
                                     context: ["hostId": id, "expected": "an HCL report naming the registered vTPM endorsement key", "got": "one naming another"])
                }
                throw VouchError(.teeHostMismatch, "this host registered from another chip; an operator deletes the host (vouch host delete) to move it",
                                 context: ["hostId": id, "expected": "a VCEK-signed report from the registered chip",
                                           "got": identified.identity.chipID == nil ? "a report not signed by a VCEK" : "a report from another chip"])
            }
        }
        let certificate = try issueHostCertificate(hostID: id, publicKey: hostKey.key, now: now)
        let chip = identified.identity.pin
        var host = HostRecord(id: id, hostname: hostname, ekPublic: chip, ekCertificate: [], ekIssuer: identified.endorsementIssuer, labels: labels,
                              akPublic: hostKey.spki, akName: Crypto.sha256(hostKey.spki), akAlgorithm: hostKey.type, akState: .active,
                              activationDigest: nil, activationExpiresAt: nil, activationFailures: 0, registeredAt: existing?.registeredAt ?? now, updatedAt: now)
        host.version = existing?.version ?? 0
        host.platform = HostPlatform(rawValue: identified.kind.rawValue) ?? .tpm
        var trust = existingTrust ?? HostTrust(hostID: id, since: now, mode: mode, simulated: identified.simulated)
        trust.mode = mode
        trust.attesterURL = attesterURL
        trust.simulated = identified.simulated
        trust.hostCertificateSerial = certificate.serialHex
        trust.hostKeyPin = try Self.keyPin(hostKey.key)
        let identity = "host key \(hostKey.type)" + (chip.isEmpty ? "" : identified.kind == .azureSNPVTPM ? ", vTPM endorsement key pinned" : ", chip pinned")
        let record = AttestationRecord(hostID: id, at: now, kind: .activation, trusted: false, codes: [],
                                       message: (identified.simulated ? "SIMULATED host (software TEE); " : "") +
                                                "\(identified.kind.evidenceName) verified (\(identified.endorsementIssuer)); identity: \(identity); " +
                                                "policy \(policy.label); \(mode.rawValue) mode; host certificate \(certificate.serialHex)",
                                       nonce: tee.nonce, serial: certificate.serialHex, nonceExpiresAt: issuedAt.addingTimeInterval(config.challengeTTL))
        do {
            try store.activateHost(host, trust: trust, record: record)
        } catch let e as VouchError where e.code == .conflict {
            throw VouchError(.registrationInvalid, "the host changed during this registration; register again", context: ["field": "tee", "hostId": id])
        }
        metrics.registration("registered_\(identified.kind.rawValue)")
        verifiedLogs.remove(hostID: id)   // registered again: its earlier vTPM event log is no longer its
        log("host \(id) registered with \(identified.kind.evidenceName) (\(hostname)); identity \(identity); \(mode.rawValue) mode")
        return RegisterHostResponse(hostId: id, platform: identified.kind.rawValue, hostCertificate: try certificate.pem,
                                    caCertificate: try authorities.current.chainPEM, brokerSpiffeId: config.brokerSpiffeID)
    }

    /// The host's TLS certificate for a key the host's TEE evidence bound (no CSR: the report
    /// binds the key), as `issueHostCertificate(hostID:csrPEM:now:)` issues it for a TPM host.
    func issueHostCertificate(hostID: String, publicKey: PublicKey, now: Date) throws -> Certificate {
        let profile = LeafProfile(uriSANs: [config.hostSpiffeID(hostID)],
                                  notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(config.hostCertificateTTL), usage: .host)
        return try authorities.current.signer.issue(publicKey: publicKey, profile: profile, serial: nil)
    }
}
