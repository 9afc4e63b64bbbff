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
    let verifiers: SNPVerifiers
    let endorsements: (any SNPEndorsementSource)?

    /// Keep one per broker: `SNPVerifier` caches its chain checks.
    public init(trust: TEETrust) {
        verifiers = SNPVerifiers(trust: trust)
        endorsements = trust.snpEndorsements
    }

    /// Stage 1. Checks, in order, refusing at the first failure:
    /// 1. a certificate table parses and holds the VCEK or VLEK the report's SIGNING_KEY names
    ///    (`tee_evidence_malformed`; the report is read here only to pick the certificate); a
    ///    VCEK-signed report sent without its VCEK (no endorsement, or a table without one) gets
    ///    it from the broker's `SNPEndorsementSource` (`SNPVCEKRequest`: CHIP_ID, REPORTED_TCB and
    ///    product line as the unverified report says), or is refused (`snp_vcek_unavailable`:
    ///    no source, a VLEK-signed or chip-masked report, nothing got);
    /// 2. an endorsement issued under the software TEE's roots (its issuer names the simulation's
    ///    organisation) is refused unless the broker allows simulated hosts (`tee_simulation_refused`);
    ///    it is then verified under those roots only (with the CRL it sent, if any), and anything
    ///    else under AMD's — where the broker has an `SNPEndorsementSource`, with the source's
    ///    current CRL for the product line and key kind the endorsement's issuer names (the ASK
    ///    list for a VCEK, the ASVK list for a VLEK) in place of any the evidence sent;
    /// 3. `SNPVerifier.authenticate`: checks 1–9 (report parse and signature algorithm, the
    ///    VCEK/VLEK chain to the pinned ARK, validity, CRL, product line, CHIP_ID, TCB, signature;
    ///    `tee_evidence_malformed`, `snp_*`);
    /// 3a. where the broker fetches (AMD's roots only): `checkFetchedCRL` — the source's CRL for
    ///    the verified chain's product line and key kind was there (else `snp_crl_unavailable`:
    ///    never passed unchecked); a VLEK-signed report sent no CRL, and one a VCEK-signed report
    ///    sent passes step 5 as well (`snp_crl_invalid`, `snp_certificate_revoked`);
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
    /// `allowAnyMeasurement: true`. Without a CRL (the broker fetches none and the evidence sent
    /// none; or the software TEE's evidence sent none) the result carries `snp_revocation_not_checked`.
    public func verify(_ evidence: AuthenticatedEvidence, accepted: AcceptedState, context: VerificationContext) -> EvidenceVerification {
        guard case let .sevSNP(snp) = evidence.payload else {
            return .rejected([Self.wrongKind.violation(device: evidence.device)], nil)
        }
        let (claims, violations, warnings) = Self.appraise(snp.verified, policy: context.policy)
        guard violations.isEmpty else { return .rejected(violations, snp.record(claims, warnings: warnings)) }
        return .verified(VerifiedEvidence(device: evidence.device, claims: .sevSNP(claims, warnings: warnings, summary: snp.summary(claims, warnings: warnings))))
    }

    /// Registration: stage 1's checks 1–4 (with 3a), then the identity: the host key its REPORT_DATA binds,
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

    /// Stage 1's checks 1–4 (with 3a).
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
            if let der = table.certificate(vlek ? .vlek : .vcek) {
                endorsement = der
            } else if !vlek, endorsements != nil {
                switch fetchedVCEK(evidence.report, at: now) {
                case let .failure(e): return .failure(e)
                case let .success(der): endorsement = der
                }
            } else {
                return .failure(VouchError(.teeEvidenceMalformed, "the SNP certificate table holds no \(vlek ? "VLEK" : "VCEK")",
                                           context: ["field": "certificateTable", "expected": vlek ? "a VLEK entry" : "a VCEK entry"]))
            }
        case .absent:
            switch fetchedVCEK(evidence.report, at: now) {
            case let .failure(e): return .failure(e)
            case let .success(der): endorsement = der
            }
        }
        // 2
        let verifier: SNPVerifier, simulation: Bool
        switch verifiers.verifier(for: endorsement) {
        case let .failure(e): return .failure(e)
        case let .success(chosen): (verifier, simulation) = chosen
        }
        let (fetching, list, fetched) = Self.brokerCRL(endorsements, endorsement: endorsement, simulated: simulation, at: now)
        // 3
        let verified: VerifiedSNPReport
        switch verifier.authenticate(SNPEvidence(report: evidence.report, endorsementKey: endorsement, crl: fetched ?? evidence.crl), at: now) {
        case let .refused(v): return .failure(v.stageOneError)
        case let .authenticated(v): verified = v
        }
        // 3a (a list for another product line or key kind than the verified chain's is none)
        if fetching, let e = Self.checkFetchedCRL(list.map { $0 == (verified.product, verified.signer) } == true ? fetched : nil, sent: evidence.crl,
                                                 signer: verified.signer, endorsement: endorsement, verifier: verifier, at: now) {
            return .failure(e)
        }
        // 4
        let expected = EnrollmentBinding.teeReportData(binding: binding)
        guard constantTimeEqual(verified.report.reportData, expected) else {
            return .failure(VouchError(.snpReportDataMismatch, "the report's REPORT_DATA does not bind this request",
                                       context: ["path": "snp.reportData", "expected": Hex.encode(expected), "got": Hex.encode(verified.report.reportData)]))
        }
        let bytes = TEEEvidenceBytes(kind: .sevSNP, report: evidence.report, endorsement: (try? verified.endorsement.der) ?? endorsement,
                                     crl: fetched ?? evidence.crl,   // the broker's own CRL when it fetched one, else the host's
                                     eventLog: nil, collateral: nil, simulated: simulation)
        return .success(AuthenticatedSNP(verified: verified, simulated: simulation, evidenceDigest: Crypto.sha256(evidence.report), bytes: bytes))
    }

    /// Stage 2's SEV-SNP checks under `policy`'s `snp:` section (`SNPPolicy()` without one):
    /// `SNPVerifier.appraise` with the section's `reportData` not applied (the binding was checked
    /// in stage 1) and `launch`'s measurement allowlist, then the allowlist requirement — for a
    /// plain guest `measurements` unless `allowAnyMeasurement`; for an Azure CVM's paravisor
    /// `paravisorMeasurements` always; the warning when no CRL was given.
    static func appraise(_ verified: VerifiedSNPReport, policy: Policy, launch: SNPPolicy.Launch = .guest) -> (SNPClaims, [PolicyViolation], [TEEWarning]) {
        var section = policy.snp ?? SNPPolicy()
        section.reportData = nil
        var (claims, violations) = SNPVerifier.appraise(verified, policy: section, launch: launch)
        switch launch {
        case .guest where section.measurements.isEmpty && !section.allowAnyMeasurement:
            violations.append(PolicyViolation(code: .snpMeasurementNotAllowed, path: "snp.measurements", expected: "an allowlist in the policy",
                                              actual: claims.measurement))
        case .paravisor where section.paravisorMeasurements.isEmpty:
            violations.append(PolicyViolation(code: .snpMeasurementNotAllowed, path: "snp.paravisorMeasurements",
                                              expected: "an Azure CVM needs the paravisor's launch measurement pinned", actual: claims.measurement))
        default: break
        }
        let warnings = verified.revocationChecked ? [] :
            [TEEWarning(code: "snp_revocation_not_checked", message: "no CRL was given: the ASK/ASVK's revocation was not checked")]
        return (claims, violations, warnings)
    }

    /// The VCEK for a report sent without one, from the broker's `SNPEndorsementSource`.
    func fetchedVCEK(_ bytes: [UInt8], at now: Date) -> Result<[UInt8], VouchError> {
        let report: SNPReport
        do { report = try SNPReport(bytes: bytes) } catch {
            return .failure(error as? VouchError ?? VouchError(.teeEvidenceMalformed, "the SNP report does not parse", context: ["field": "report"]))
        }
        func unavailable(_ why: String, _ context: [String: String] = [:]) -> Result<[UInt8], VouchError> {
            .failure(VouchError(.snpVCEKUnavailable, "the report came without its VCEK and \(why)", context: context.merging(["path": "snp.endorsement"]) { a, _ in a }))
        }
        guard report.signingKey == .vcek else { return unavailable("it is not VCEK-signed: a VLEK must come with the report (VLEKs are not fetchable)") }
        guard let endorsements else { return unavailable("this broker fetches none (vouchd --fetch-collateral amd)") }
        guard let request = SNPVCEKRequest(report: report) else {
            return unavailable("it names no chip or product line to ask AMD's KDS for (CHIP_ID masked, or an unknown CPUID)")
        }
        guard let der = endorsements.vcek(request, at: now) else {
            return unavailable("none was to be had for this chip and TCB (AMD's KDS not reachable, refused, or over the broker's fetch rate)",
                               ["products": request.products.map(\.rawValue).joined(separator: ","), "reportedTcb": String(request.reportedTCB.raw, radix: 16)])
        }
        return .success(der)
    }

    /// The product line and key kind an ASK (`SEV-<Product>`: VCEKs) or ASVK
    /// (`SEV-VLEK-<Product>`: VLEKs) subject names (the issuer of a VCEK or VLEK).
    /// The broker's own CRL for `endorsement`, when it fetches AMD's (`fetching`; never for the
    /// software TEE's evidence): the list (product line, key kind) the endorsement's issuer names,
    /// and the source's current CRL of that list, if it has one.
    static func brokerCRL(_ endorsements: (any SNPEndorsementSource)?, endorsement: [UInt8], simulated: Bool,
                          at now: Date) -> (fetching: Bool, list: (SNPProduct, SNPSigningKey)?, crl: [UInt8]?) {
        guard !simulated, let endorsements else { return (false, nil, nil) }
        let list = (try? SNPVerifier.certificate(endorsement)).flatMap { intermediate(issuer: $0.issuer) }
        return (true, list, list.flatMap { endorsements.crl(product: $0.0, signer: $0.1, at: now) })
    }

    static func intermediate(issuer: String) -> (SNPProduct, SNPSigningKey)? {
        guard let cn = SNPTrustStore.commonName(issuer) else { return nil }
        for product in SNPProduct.allCases {
            if cn == "SEV-\(product.rawValue)" { return (product, .vcek) }
            if cn == "SEV-VLEK-\(product.rawValue)" { return (product, .vlek) }
        }
        return nil
    }

    /// Check 3a, for a broker that fetches: its CRL (`fetched`, already checked in check 3) must
    /// be there (`snp_crl_unavailable`); a CRL the evidence sent is then checked as well — either
    /// listing the ASK refuses (`snp_certificate_revoked`), so an old list from before a
    /// revocation cannot stand in for the broker's — except with a VLEK-signed report, which may
    /// send none (`snp_crl_invalid`): the ASVK list and the ASK list are both the ARK's and
    /// nothing in a CRL tells them apart, so a sent one cannot be shown to be the right list.
    static func checkFetchedCRL(_ fetched: [UInt8]?, sent: [UInt8]?, signer: SNPSigningKey, endorsement: [UInt8], verifier: SNPVerifier,
                                at now: Date) -> VouchError? {
        if signer == .vlek, sent != nil {
            return VouchError(.snpCRLInvalid, "a VLEK-signed report came with a CRL, which cannot be told to be AMD's ASVK list; this broker fetches that list itself",
                              context: ["path": "snp.crl", "expected": "no CRL with a VLEK-signed report", "got": "a CRL"])
        }
        guard fetched != nil else {
            return VouchError(.snpCRLUnavailable, "this broker fetches AMD's CRLs and has no current one for the report's product line (AMD's KDS not reachable or refusing)",
                              context: ["path": "snp.crl", "expected": "a current CRL of the \(signer == .vlek ? "ASVK" : "ASK") list", "got": "none"])
        }
        if let sent, case let .refused(v) = verifier.authenticateEndorsement(endorsement, signer: signer, crl: sent, at: now) { return v.stageOneError }
        return nil
    }

    /// The summary the attestation trail and the EAR carry.
    static func summary(_ c: SNPClaims, warnings: [TEEWarning], simulated: Bool, kind: EvidenceKind = .sevSNP) -> TEEClaims {
        TEEClaims(kind: kind.rawValue, measurement: c.measurement, measurementName: c.measurementName, tcb: c.tcb.reported.raw,
                  tcbStatus: nil, debug: c.debug, signer: c.signer, platform: c.product.rawValue, rtmrs: nil, configId: c.hostData,
                  reportData: c.reportData, warnings: warnings.map(\.code), simulated: simulated)
    }

    static let wrongKind = VouchError(.internalError, "the SEV-SNP verifier was given evidence of another kind")
}

/// A broker's SEV-SNP verifiers (the SEV-SNP and Azure CVM paths'): under AMD's pinned roots and,
/// where the broker allows simulated hosts, under the software TEE's.
struct SNPVerifiers: Sendable {
    let pinned: SNPVerifier
    let simulated: SNPVerifier?

    init(trust: TEETrust) {
        pinned = SNPVerifier(trust: trust.snp)
        simulated = trust.simulatedSNP.map { SNPVerifier(trust: $0) }
    }

    /// The verifier for an endorsement (VCEK/VLEK, DER or PEM) — the software TEE's for one whose
    /// issuer names the simulation's organisation (`tee_simulation_refused` when the broker allows
    /// no simulated hosts), AMD's pinned roots' for anything else — and whether it is the
    /// simulation's.
    func verifier(for endorsement: [UInt8]) -> Result<(SNPVerifier, simulated: Bool), VouchError> {
        guard let cert = try? SNPVerifier.certificate(endorsement), TEETrust.isSimulation(issuer: cert.issuer) else { return .success((pinned, false)) }
        guard let simulated else {
            return .failure(VouchError(.teeSimulationRefused, "the SEV-SNP evidence is the software TEE's and this broker does not allow simulated hosts",
                                       context: ["got": cert.issuer]))
        }
        return .success((simulated, true))
    }
}
