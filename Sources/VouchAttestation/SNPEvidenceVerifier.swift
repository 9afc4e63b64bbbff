import Foundation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTEEWire

/// An SEV-SNP report authenticated for one request: from a genuine AMD chip (or the software TEE
/// where allowed), bound to the request, from the registered host. Stage 2 applies the policy.
struct AuthenticatedSNP: Sendable {
    let verified: VerifiedSNPReport
    let simulated: Bool
    /// SHA-256 of the report as sent.
    let evidenceDigest: [UInt8]
    /// The report, the endorsement that verified it and the CRL, for the record.
    let bytes: TEEEvidenceBytes

    var record: EvidenceRecord { record(SNPClaims(verified), warnings: []) }

    func record(_ claims: SNPClaims, warnings: [TEEWarning]) -> EvidenceRecord {
        EvidenceRecord(measurementDigest: Hex.encode(evidenceDigest),
                       claims: EvidenceClaims(tee: SNPEvidenceVerifier.summary(claims, warnings: warnings, simulated: simulated)), tee: bytes)
    }

    func summary(_ claims: SNPClaims, warnings: [TEEWarning]) -> VerifiedTEE {
        VerifiedTEE(claims: SNPEvidenceVerifier.summary(claims, warnings: warnings, simulated: simulated), evidenceDigest: evidenceDigest, evidence: bytes)
    }
}

/// The SEV-SNP path through the broker: a guest's attestation report with the VCEK or VLEK that
/// signed it (itself or in the extended request's certificate table) and optionally AMD's CRL,
/// verified by `SNPVerifier` under AMD's pinned roots — or, for evidence whose chain names the
/// software TEE, under its test roots when the broker allows simulated hosts.
public struct SNPEvidenceVerifier: TEEEvidenceVerifier {
    public var kind: EvidenceKind { .sevSNP }
    let pinned: SNPVerifier
    let simulated: SNPVerifier?

    /// Keep one per broker: `SNPVerifier` caches its chain checks.
    public init(trust: TEETrust) {
        pinned = SNPVerifier(trust: trust.snp)
        simulated = trust.simulatedSNP.map { SNPVerifier(trust: $0) }
    }

    /// Stage 1. Checks, in order, refusing at the first failure:
    /// 1. a certificate table parses and holds the VCEK or VLEK the report's SIGNING_KEY names
    ///    (`tee_evidence_malformed`; the report is read here only to pick the certificate);
    /// 2. an endorsement issued under the software TEE's roots (its issuer names the simulation's
    ///    organisation) is refused unless the broker allows simulated hosts (`tee_simulation_refused`);
    ///    it is then verified under those roots only, and anything else under AMD's;
    /// 3. `SNPVerifier.authenticate`: checks 1–9 (report parse and signature algorithm, the
    ///    VCEK/VLEK chain to the pinned ARK, validity, CRL, product line, CHIP_ID, TCB, signature;
    ///    `tee_evidence_malformed`, `snp_*`);
    /// 4. REPORT_DATA is exactly `EnrollmentBinding.teeReportData(binding: context.binding)`
    ///    (`snp_report_data_mismatch`);
    /// 5. the host is the registered one (`tee_host_mismatch`, `TEEHostIdentity.check`):
    ///    `hostKeySignature` verifies with the registered host key over
    ///    `TEEHostIdentity.signedMessage(binding:)`; for a host registered with a VCEK-signed
    ///    report, the report is VCEK-signed and its CHIP_ID is the registered one; the verified
    ///    VCEK/VLEK's issuer is the registered endorsement issuer; the report is the software TEE's
    ///    exactly when the host registered as simulated.
    public func authenticate(_ raw: RawEvidence, context: VerificationContext) -> EvidenceAuthentication {
        let snp: AuthenticatedSNP
        switch authenticated(raw, binding: context.binding, at: context.now) {
        case let .failure(e): return .rejected([e])
        case let .success(a): snp = a
        }
        // 5
        guard case let .sevSNP(evidence) = raw.payload else { return .rejected([Self.wrongKind]) }
        let chip = snp.verified.signer == .vcek ? snp.verified.report.chipID : nil
        if let e = TEEHostIdentity.check(context.enrolled.tee, kind: .sevSNP, signature: evidence.hostKeySignature, chipID: chip,
                                         endorsementIssuer: snp.verified.endorsement.issuer, simulated: snp.simulated, context: context) {
            return .rejected([e])
        }
        return .authenticated(AuthenticatedEvidence(device: raw.device, payload: .sevSNP(snp)))
    }

    /// Stage 2: check 10 of `SNPVerifier` (`SNPVerifier.appraise`) under the policy's `snp:`
    /// section (a policy without one never applies to an SEV-SNP host, `Policy.covers`; were it
    /// missing, `SNPPolicy()` would apply and refuse as below); every violation is reported
    /// (`snp_debug_enabled`, `snp_measurement_not_allowed`, `snp_tcb_too_old`, …). REPORT_DATA was
    /// checked in stage 1 against the request's binding, so a `reportData` in the section is not
    /// applied. A section without a measurement allowlist (`measurements`) refuses the report
    /// (`snp_measurement_not_allowed`, expected "an allowlist in the policy") unless it says
    /// `allowAnyMeasurement: true`. Without a CRL the result carries `snp_revocation_not_checked`.
    public func verify(_ evidence: AuthenticatedEvidence, accepted: AcceptedState, context: VerificationContext) -> EvidenceVerification {
        guard case let .sevSNP(snp) = evidence.payload else {
            return .rejected([Self.wrongKind.violation(device: evidence.device)], nil)
        }
        var policy = context.policy.snp ?? SNPPolicy()
        policy.reportData = nil
        let (claims, appraised) = SNPVerifier.appraise(snp.verified, policy: policy)
        var violations = appraised
        if policy.measurements.isEmpty && !policy.allowAnyMeasurement {
            violations.append(PolicyViolation(code: .snpMeasurementNotAllowed, path: "snp.measurements", expected: "an allowlist in the policy",
                                              actual: claims.measurement))
        }
        let warnings = snp.verified.revocationChecked ? [] :
            [TEEWarning(code: "snp_revocation_not_checked", message: "no CRL was given: the ASK/ASVK's revocation was not checked")]
        guard violations.isEmpty else { return .rejected(violations, snp.record(claims, warnings: warnings)) }
        return .verified(VerifiedEvidence(device: evidence.device, claims: .sevSNP(claims, warnings: warnings, summary: snp.summary(claims, warnings: warnings))))
    }

    /// Registration: stage 1's checks 1–4, then the identity: the host key its REPORT_DATA binds,
    /// and for a VCEK-signed report the chip (CHIP_ID) as an extra pin.
    public func identify(_ raw: RawEvidence, binding: [UInt8], hostKey: [UInt8], at now: Date) -> Result<TEEIdentification, VouchError> {
        authenticated(raw, binding: binding, at: now).map { snp in
            let v = snp.verified
            return TEEIdentification(kind: .sevSNP, identity: TEEHostIdentity(kind: .sevSNP, hostKey: hostKey, chipID: v.signer == .vcek ? v.report.chipID : nil,
                                                                              endorsementIssuer: v.endorsement.issuer, simulated: snp.simulated),
                                     endorsementIssuer: v.endorsement.issuer, simulated: snp.simulated,
                                     summary: snp.summary(SNPClaims(v), warnings: []))
        }
    }

    /// Stage 1's checks 1–4.
    func authenticated(_ raw: RawEvidence, binding: [UInt8], at now: Date) -> Result<AuthenticatedSNP, VouchError> {
        guard case let .sevSNP(evidence) = raw.payload else { return .failure(Self.wrongKind) }
        // 1
        let endorsement: [UInt8]
        switch evidence.endorsement {
        case let .certificate(der): endorsement = der
        case let .certificateTable(bytes):
            let table: SNPCertificateTable
            do { table = try SNPCertificateTable(bytes) } catch let e as VouchError { return .failure(e) } catch {
                return .failure(VouchError(.teeEvidenceMalformed, "the SNP certificate table does not parse", context: ["field": "certificateTable"]))
            }
            let vlek = (try? SNPReport(bytes: evidence.report))?.signingKey == .vlek
            guard let der = table.certificate(vlek ? .vlek : .vcek) else {
                return .failure(VouchError(.teeEvidenceMalformed, "the SNP certificate table holds no \(vlek ? "VLEK" : "VCEK")",
                                           context: ["field": "certificateTable", "expected": vlek ? "a VLEK entry" : "a VCEK entry"]))
            }
            endorsement = der
        }
        // 2
        var verifier = pinned, simulation = false
        if let cert = try? SNPVerifier.certificate(endorsement), TEETrust.isSimulation(issuer: cert.issuer) {
            guard let simulated else {
                return .failure(VouchError(.teeSimulationRefused, "the SEV-SNP evidence is the software TEE's and this broker does not allow simulated hosts",
                                           context: ["got": cert.issuer]))
            }
            verifier = simulated
            simulation = true
        }
        // 3
        let verified: VerifiedSNPReport
        switch verifier.authenticate(SNPEvidence(report: evidence.report, endorsementKey: endorsement, crl: evidence.crl), at: now) {
        case let .refused(v): return .failure(v.stageOneError)
        case let .authenticated(v): verified = v
        }
        // 4
        let expected = EnrollmentBinding.teeReportData(binding: binding)
        guard constantTimeEqual(verified.report.reportData, expected) else {
            return .failure(VouchError(.snpReportDataMismatch, "the report's REPORT_DATA does not bind this request",
                                       context: ["path": "snp.reportData", "expected": Hex.encode(expected), "got": Hex.encode(verified.report.reportData)]))
        }
        let bytes = TEEEvidenceBytes(kind: .sevSNP, report: evidence.report, endorsement: (try? verified.endorsement.der) ?? endorsement, crl: evidence.crl,
                                     eventLog: nil, collateral: nil, simulated: simulation)
        return .success(AuthenticatedSNP(verified: verified, simulated: simulation, evidenceDigest: Crypto.sha256(evidence.report), bytes: bytes))
    }

    /// The summary the attestation trail and the EAR carry.
    static func summary(_ c: SNPClaims, warnings: [TEEWarning], simulated: Bool) -> TEEClaims {
        TEEClaims(kind: EvidenceKind.sevSNP.rawValue, measurement: c.measurement, measurementName: c.measurementName, tcb: c.tcb.reported.raw,
                  tcbStatus: nil, debug: c.debug, signer: c.signer, platform: c.product.rawValue, rtmrs: nil, configId: c.hostData,
                  reportData: c.reportData, warnings: warnings.map(\.code), simulated: simulated)
    }

    static let wrongKind = VouchError(.internalError, "the SEV-SNP verifier was given evidence of another kind")
}
