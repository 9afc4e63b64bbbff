import Foundation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTEEWire

// An Azure confidential VM through the broker: the SEV-SNP report under the paravisor's HCL
// report is the root of trust (no EK certificate); the vTPM AK it binds signs the TPM quote, so
// the TPM path's PCR, event-log and model rules apply on top of the `snp:` section.
// docs/evidence.md, "Azure confidential VMs", lists the checks in order.

/// An Azure confidential VM's evidence as the host sends it, unverified.
public struct AzureRawEvidence: Sendable {
    /// The HCL report read from the vTPM's NV index 0x01400001.
    public var hclReport: [UInt8]
    /// The VCEK certificate (DER or PEM): the HCL report does not carry it.
    public var endorsement: [UInt8]
    /// AMD's CRL for the product line, if sent.
    public var crl: [UInt8]?
    /// The vTPM's quote, with the PCR values and logs it covers.
    public var quote: TPMQuoteEvidence
    /// The host key's signature over the request's binding (`TEEHostIdentity.signedMessage`).
    public var hostKeySignature: [UInt8]?

    public init(hclReport: [UInt8], endorsement: [UInt8], crl: [UInt8]? = nil, quote: TPMQuoteEvidence, hostKeySignature: [UInt8]? = nil) {
        self.hclReport = hclReport
        self.endorsement = endorsement
        self.crl = crl
        self.quote = quote
        self.hostKeySignature = hostKeySignature
    }
}

/// An Azure CVM's evidence authenticated for one request: a genuine SEV-SNP report at VMPL 0
/// binding runtime claims whose user data is this request's and whose AK signed the quote,
/// from the registered host. Stage 2 replays the quote's logs and applies the policy.
struct AuthenticatedAzure: Sendable {
    let report: VerifiedAzureSNPReport
    let quote: VerifiedQuote
    let eventLog: [UInt8]?
    let modelLog: [UInt8]?
    /// The DER SubjectPublicKeyInfo of the runtime claims' `HCLEkPub`.
    let vtpmEndorsementKey: [UInt8]
    let simulated: Bool
    /// `VerifiedAzureSNPReport.evidenceDigest`: SHA-256 of the HCL report's signed and bound
    /// parts (its SEV-SNP report, then its runtime claims).
    let evidenceDigest: [UInt8]
    /// The HCL report, the VCEK that verified it and AMD's CRL when sent, kept as the host's
    /// latest evidence (the vTPM quote's PCRs are kept as a TPM host's are).
    let bytes: TEEEvidenceBytes

    var summary: TEEClaims {
        SNPEvidenceVerifier.summary(SNPClaims(report.snp), warnings: [], simulated: simulated, kind: .azureSNPVTPM)
    }

    var record: EvidenceRecord {
        var claims = EvidenceClaims(tee: summary)
        claims.clock = ClockState(quote.clockInfo, firmwareVersion: quote.attest.firmwareVersion)
        return EvidenceRecord(measurementDigest: Hex.encode(quote.pcrDigest), measurements: quote.pcrs.hexMap, claims: claims, tee: bytes)
    }
}

/// The Azure CVM path through the broker (`azure-snp-vtpm`): the HCL report verified by
/// `AzureSNPVerifier` under AMD's pinned roots (or the software TEE's, where allowed), and the
/// vTPM quote by the AK its runtime claims name.
public struct AzureEvidenceVerifier: TEEEvidenceVerifier {
    public var kind: EvidenceKind { .azureSNPVTPM }
    let verifiers: SNPVerifiers
    let endorsements: (any SNPEndorsementSource)?
    /// The hosts' verified vTPM event logs, as `TPMEvidenceVerifier.eventLogs`.
    let eventLogs: VerifiedLogCache?

    /// Keep one per broker: `SNPVerifier` caches its chain checks.
    public init(trust: TEETrust, eventLogs: VerifiedLogCache? = nil) {
        verifiers = SNPVerifiers(trust: trust)
        endorsements = trust.snpEndorsements
        self.eventLogs = eventLogs
    }

    /// Stage 1. Checks, in order, refusing at the first failure:
    /// 1. a VCEK issued under the software TEE's roots is refused unless the broker allows
    ///    simulated hosts (`tee_simulation_refused`); it is then verified under those roots only,
    ///    anything else under AMD's;
    /// 2. `AzureSNPVerifier.authenticate`: the HCL report parses, its SEV-SNP report passes
    ///    `SNPVerifier`'s checks 1–9 with the VCEK (`tee_evidence_malformed`, `snp_*`), was made at
    ///    VMPL 0 (`azure_vmpl_not_zero`), its REPORT_DATA holds the runtime claims' digest
    ///    (`azure_runtime_claims_mismatch`), and the claims hold an acceptable RSA `HCLAkPub`
    ///    (`azure_runtime_claims_invalid`); the chain's revocation checked with the broker's own
    ///    CRL when it fetches AMD's, else the one sent;
    /// 2a. a broker that fetches AMD's CRLs had a current one for the VCEK's product line
    ///    (`snp_crl_unavailable`); a CRL the evidence sent is checked as well
    ///    (`snp_certificate_revoked`) — SEV-SNP's check 3a;
    /// 3. the runtime claims' `user-data` is the hex of
    ///    `EnrollmentBinding.teeReportData(binding: context.binding)` (any case;
    ///    `snp_report_data_mismatch`): the report was made for this request;
    /// 4. the runtime claims hold an acceptable RSA `HCLEkPub`, the vTPM's endorsement key
    ///    (`azure_runtime_claims_invalid`, as for `HCLAkPub`);
    /// 5. the vTPM quote verifies with `HCLAkPub` as an RSASSA SHA-256 key: `QuoteVerifier`'s
    ///    checks 0–8 with qualifying data = `context.binding` (`quote_signature_invalid` for a quote
    ///    another key signed, `quote_*`, `pcr_*` as for a TPM host);
    /// 6. the host is the registered one (`tee_host_mismatch`, `TEEHostIdentity.check`): the host
    ///    key's signature over the binding, the registered vTPM endorsement key, the VCEK's issuer,
    ///    simulated exactly when registered so.
    public func authenticate(_ raw: RawEvidence, context: VerificationContext) -> EvidenceAuthentication {
        let azure: AuthenticatedAzure
        switch authenticated(raw, binding: context.binding, allowSHA1: context.policy.allowSHA1AK, at: context.now) {
        case let .failure(e): return .rejected([e])
        case let .success(a): azure = a
        }
        // 6
        guard case let .azureSNPVTPM(evidence) = raw.payload else { return .rejected([Self.wrongKind]) }
        if let e = TEEHostIdentity.check(context.enrolled.tee, kind: .azureSNPVTPM, signature: evidence.hostKeySignature, chipID: nil,
                                         vtpmEndorsementKey: azure.vtpmEndorsementKey, endorsementIssuer: azure.report.snp.endorsement.issuer,
                                         simulated: azure.simulated, context: context) {
            return .rejected([e])
        }
        return .authenticated(AuthenticatedEvidence(device: raw.device, payload: .azureSNPVTPM(azure)))
    }

    /// Stage 2, refusing at the first step that fails (each reports every violation it finds):
    /// 1. the SEV-SNP report under the policy's `snp:` section, as for an SEV-SNP host
    ///    (`SNPEvidenceVerifier`'s stage 2: debug, VMPL, TCB, …) except that its MEASUREMENT, the
    ///    paravisor's, is judged by `paravisorMeasurements`, which must not be empty
    ///    (`snp_measurement_not_allowed`; `allowAnyMeasurement` does not apply);
    /// 2. the vTPM quote's logs and clock as for a TPM host (`TPMEvidenceVerifier.verifyQuoted`:
    ///    event log, model log, TPM clock and firmware).
    /// The appraisal then judges the quote's PCRs and the logs' claims by the policy's `pcrs`,
    /// event-log and model rules (`Appraiser`). Without a CRL the result carries
    /// `snp_revocation_not_checked`.
    public func verify(_ evidence: AuthenticatedEvidence, accepted: AcceptedState, context: VerificationContext) -> EvidenceVerification {
        guard case let .azureSNPVTPM(azure) = evidence.payload else {
            return .rejected([Self.wrongKind.violation(device: evidence.device)], nil)
        }
        // 1
        let (snp, violations, warnings) = SNPEvidenceVerifier.appraise(azure.report.snp, policy: context.policy, launch: .paravisor)
        let summary = VerifiedTEE(claims: SNPEvidenceVerifier.summary(snp, warnings: warnings, simulated: azure.simulated, kind: .azureSNPVTPM),
                                  evidenceDigest: azure.evidenceDigest, evidence: azure.bytes)
        guard violations.isEmpty else {
            var record = azure.record
            record.claims?.tee = summary.claims
            return .rejected(violations, record)
        }
        // 2
        switch TPMEvidenceVerifier.verifyQuoted(device: evidence.device, quote: azure.quote, eventLog: azure.eventLog, modelLog: azure.modelLog,
                                                accepted: accepted, policy: context.policy, digester: context.digester,
                                                eventLogs: eventLogs.map { ($0, context.hostID) }) {
        case let .rejected(violations, record):
            var record = record ?? azure.record
            if record.claims == nil { record.claims = EvidenceClaims(tee: summary.claims) } else { record.claims?.tee = summary.claims }
            return .rejected(violations, record)
        case let .verified(tpm):
            guard case let .tpm(quote, tpmClaims) = tpm.claims else { return .rejected([Self.wrongKind.violation(device: evidence.device)], nil) }
            var claims = tpmClaims
            claims.tee = summary.claims
            return .verified(VerifiedEvidence(device: evidence.device,
                                              claims: .azureSNPVTPM(quote, claims, snp: snp, warnings: warnings, summary: summary)))
        }
    }

    /// Registration: stage 1's checks 1–5 (the quote over the PCRs the attester chose), then the
    /// identity: the host key the user data binds, with the vTPM's endorsement key as its pin.
    public func identify(_ raw: RawEvidence, binding: [UInt8], hostKey: [UInt8], at now: Date) -> Result<TEEIdentification, VouchError> {
        authenticated(raw, binding: binding, allowSHA1: false, at: now).map { azure in
            let issuer = azure.report.snp.endorsement.issuer
            return TEEIdentification(kind: .azureSNPVTPM,
                                     identity: TEEHostIdentity(kind: .azureSNPVTPM, hostKey: hostKey, vtpmEndorsementKey: azure.vtpmEndorsementKey,
                                                               endorsementIssuer: issuer, simulated: azure.simulated),
                                     endorsementIssuer: issuer, simulated: azure.simulated,
                                     summary: VerifiedTEE(claims: azure.summary, evidenceDigest: azure.evidenceDigest, evidence: azure.bytes))
        }
    }

    /// Stage 1's checks 1–5.
    func authenticated(_ raw: RawEvidence, binding: [UInt8], allowSHA1: Bool, at now: Date) -> Result<AuthenticatedAzure, VouchError> {
        guard case let .azureSNPVTPM(evidence) = raw.payload else { return .failure(Self.wrongKind) }
        // 1
        let snp: SNPVerifier, simulation: Bool
        switch verifiers.verifier(for: evidence.endorsement) {
        case let .failure(e): return .failure(e)
        case let .success(chosen): (snp, simulation) = chosen
        }
        // The broker's own CRL, when it fetches AMD's, as for an SEV-SNP host.
        let (fetching, list, fetched) = SNPEvidenceVerifier.brokerCRL(endorsements, endorsement: evidence.endorsement, simulated: simulation, at: now)
        // 2
        let report: VerifiedAzureSNPReport
        switch AzureSNPVerifier(snp: snp).authenticate(hclReport: evidence.hclReport, endorsementKey: evidence.endorsement, crl: fetched ?? evidence.crl, at: now) {
        case let .refused(v): return .failure(v.stageOneError)
        case let .authenticated(r): report = r
        }
        // 2a (SEV-SNP's check 3a: a fetching broker's CRL must be there; one sent is checked too)
        if fetching, let e = SNPEvidenceVerifier.checkFetchedCRL(list.map { $0 == (report.snp.product, report.snp.signer) } == true ? fetched : nil,
                                                                 sent: evidence.crl, signer: report.snp.signer, endorsement: evidence.endorsement,
                                                                 verifier: snp, at: now) {
            return .failure(e)
        }
        // 3
        let expected = Hex.encode(EnrollmentBinding.teeReportData(binding: binding))
        guard let userData = report.runtimeClaims.userData, constantTimeEqual(Array(userData.lowercased().utf8), Array(expected.utf8)) else {
            return .failure(VouchError(.snpReportDataMismatch, "the HCL report's user data does not bind this request",
                                       context: ["path": "azure.runtimeClaims.user-data", "expected": expected,
                                                 "got": String((report.runtimeClaims.userData ?? "none").prefix(160))]))
        }
        // 4
        let ekSPKI: [UInt8]
        switch AzureSNPVerifier.vTPMKey(report.runtimeClaims.endorsementKey, kid: "HCLEkPub") {
        case let .refused(v): return .failure(v.stageOneError)
        case let .accepted(key):
            guard let spki = try? key.canonicalSPKIDER else {
                return .failure(PolicyViolation(code: .azureRuntimeClaimsInvalid, path: "azure.runtimeClaims.keys.HCLEkPub", expected: "an RSA key",
                                                actual: "an unusable key").stageOneError)
            }
            ekSPKI = spki
        }
        // 5
        let ak: AttestationKey
        do { ak = try AttestationKey(publicKey: report.attestationKey, scheme: .rsassa, hash: .sha256) } catch let e as VouchError {
            return .failure(e)
        } catch { return .failure(VouchError(.quoteSignatureInvalid, "the HCL report's attestation key cannot verify a quote")) }
        let quote: VerifiedQuote
        switch QuoteVerifier.verify(attest: evidence.quote.attest, signature: evidence.quote.signature, ak: ak, expectedQualifyingData: binding,
                                    pcrs: evidence.quote.pcrs, allowSHA1: allowSHA1) {
        case let .rejected(errors): return .failure(errors.first ?? VouchError(.quoteSignatureInvalid, "the vTPM quote does not verify"))
        case let .verified(q): quote = q
        }
        return .success(AuthenticatedAzure(report: report, quote: quote, eventLog: evidence.quote.eventLog, modelLog: evidence.quote.modelLog,
                                           vtpmEndorsementKey: ekSPKI, simulated: simulation, evidenceDigest: report.evidenceDigest,
                                           bytes: TEEEvidenceBytes(kind: .azureSNPVTPM, report: evidence.hclReport,
                                                                   endorsement: (try? report.snp.endorsement.der) ?? evidence.endorsement,
                                                                   crl: fetched ?? evidence.crl,
                                                                   eventLog: nil, collateral: nil, simulated: simulation)))
    }

    static let wrongKind = VouchError(.internalError, "the Azure CVM verifier was given evidence of another kind")
}
