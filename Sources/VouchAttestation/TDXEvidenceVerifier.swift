import Foundation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTEEWire

/// A TDX quote authenticated for one request (authentic, bound, from the registered host), with
/// the verdict `TDXVerifier` reached on it under the host's policy (stage 2 reveals it).
struct AuthenticatedTDX: Sendable {
    let outcome: TEEVerification<TDXClaims>
    /// The claims of the authentic quote.
    let claims: TDXClaims
    let simulated: Bool
    /// SHA-256 of the quote as sent.
    let evidenceDigest: [UInt8]
    /// The PCK certificate's issuer, from the chain `TDXVerifier` verified.
    let issuer: String
    /// The quote, the event log and the collateral it was judged with, for the record.
    let bytes: TEEEvidenceBytes

    var record: EvidenceRecord { record(claims, warnings: []) }

    func record(_ claims: TDXClaims, warnings: [TEEWarning]) -> EvidenceRecord {
        EvidenceRecord(measurementDigest: Hex.encode(evidenceDigest),
                       claims: EvidenceClaims(tee: TDXEvidenceVerifier.summary(claims, warnings: warnings, simulated: simulated)), tee: bytes)
    }

    func summary(_ claims: TDXClaims, warnings: [TEEWarning]) -> VerifiedTEE {
        VerifiedTEE(claims: TDXEvidenceVerifier.summary(claims, warnings: warnings, simulated: simulated), evidenceDigest: evidenceDigest, evidence: bytes)
    }
}

/// The TDX path through the broker: a TD's DCAP quote, with the collateral the broker holds for
/// its platform (`TDXCollateralSource`, by the PCK certificate's FMSPC), verified by `TDXVerifier`
/// under Intel's pinned SGX root — or, for a quote whose PCK certificate names the software TEE,
/// under its test roots when the broker allows simulated hosts.
public struct TDXEvidenceVerifier: TEEEvidenceVerifier {
    public var kind: EvidenceKind { .tdx }
    let pinned: TDXVerifier
    let simulated: TDXVerifier?
    let collateral: any TDXCollateralSource
    let hints = PCKHints()

    /// Keep one per broker: `TDXVerifier` caches verified collateral and PCK chains.
    public init(trust: TEETrust) {
        pinned = TDXVerifier(roots: trust.tdxRoots)
        simulated = trust.simulatedTDXRoots.map { TDXVerifier(roots: $0) }
        collateral = trust.tdxCollateral
    }

    /// Stage 1. Checks, in order, refusing at the first failure:
    /// 1. the quote parses (`tee_evidence_malformed`);
    /// 2. a PCK certificate issued under the software TEE's roots (its issuer names the
    ///    simulation's organisation) is refused unless the broker allows simulated hosts
    ///    (`tee_simulation_refused`); it is then verified under those roots only, anything else
    ///    under Intel's;
    /// 3. the collateral for the FMSPC the (still unverified) PCK certificate names, from the
    ///    broker's `TDXCollateralSource` (`TDXCollateralRequest`: a source that fetches first checks
    ///    the PCK chain against these roots; none: the TCB is unknown; unreadable:
    ///    `tee_evidence_malformed`);
    /// 4. `TDXVerifier.verify` under the policy's `tdx:` section (or `TDXPolicy()`'s defaults),
    ///    with the CCEL event log when sent: a refusal at its steps 1–8 (QE vendor, CRLs, PCK
    ///    chain, QE report signature and data, QE identity, quote signature: `tdx_*`) refuses
    ///    here — the quote is not authentic; its verdict on steps 9–12 is kept for stage 2;
    /// 5. REPORTDATA is exactly `EnrollmentBinding.teeReportData(binding: context.binding)`
    ///    (`tdx_report_data_mismatch`);
    /// 6. the host is the registered one (`tee_host_mismatch`, `TEEHostIdentity.check`):
    ///    `hostKeySignature` verifies with the registered host key over
    ///    `TEEHostIdentity.signedMessage(binding:)`; the PCK certificate's issuer, from the chain
    ///    step 4 verified, is the registered endorsement issuer; the quote is the software TEE's
    ///    exactly when the host registered as simulated.
    public func authenticate(_ raw: RawEvidence, context: VerificationContext) -> EvidenceAuthentication {
        let tdx: AuthenticatedTDX
        switch authenticated(raw, binding: context.binding, policy: context.policy.tdx ?? TDXPolicy(), at: context.now) {
        case let .failure(e): return .rejected([e])
        case let .success(a): tdx = a
        }
        // 6
        guard case let .tdx(evidence) = raw.payload else { return .rejected([Self.wrongKind]) }
        if let e = TEEHostIdentity.check(context.enrolled.tee, kind: .tdx, signature: evidence.hostKeySignature, chipID: nil,
                                         endorsementIssuer: tdx.issuer, simulated: tdx.simulated, context: context) {
            return .rejected([e])
        }
        return .authenticated(AuthenticatedEvidence(device: raw.device, payload: .tdx(tdx)))
    }

    /// Stage 2: `TDXVerifier`'s steps 9–12 as reached in stage 1 — the TCB info against the PCK
    /// certificate, the platform, TDX module and QE TCB levels, then the policy's `tdx:` section:
    /// the converged TCB status and advisories, TDATTRIBUTES (`tdx_debug_refused`,
    /// `tdx_sept_ve_disable_required`), XFAM, MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG and RTMR
    /// allowlists, the event log's replay; every violation of step 12 is reported. Warnings the
    /// policy lets through (SWHardeningNeeded, …) go into the claims. A section without an MRTD
    /// allowlist (`mrtd`) refuses the quote (`tdx_mrtd_not_allowed`, expected "an allowlist in the
    /// policy") unless it says `allowAnyMeasurement: true`; a policy without a `tdx:` section never
    /// applies to a TDX host (`Policy.covers`; were it missing, `TDXPolicy()` would refuse so).
    public func verify(_ evidence: AuthenticatedEvidence, accepted: AcceptedState, context: VerificationContext) -> EvidenceVerification {
        guard case let .tdx(tdx) = evidence.payload else {
            return .rejected([Self.wrongKind.violation(device: evidence.device)], nil)
        }
        let policy = context.policy.tdx ?? TDXPolicy()
        let unlisted = policy.mrtd.isEmpty && !policy.allowAnyMeasurement
            ? [PolicyViolation(code: .tdxMRTDNotAllowed, path: "tdx.mrtd", expected: "an allowlist in the policy", actual: tdx.claims.mrtd)] : []
        switch tdx.outcome {
        case let .verified(claims, warnings) where unlisted.isEmpty:
            return .verified(VerifiedEvidence(device: evidence.device, claims: .tdx(claims, warnings: warnings, summary: tdx.summary(claims, warnings: warnings))))
        case let .verified(claims, warnings):
            return .rejected(unlisted, tdx.record(claims, warnings: warnings))
        case let .rejected(violations, claims):
            return .rejected(violations + unlisted, tdx.record(claims ?? tdx.claims, warnings: []))
        }
    }

    /// Registration: stage 1's checks 1–5 (under the default `TDXPolicy`, whose verdict is not
    /// used: registration establishes identity; the policy judges enrollments). A TD is identified
    /// by the host key its REPORTDATA binds.
    public func identify(_ raw: RawEvidence, binding: [UInt8], hostKey: [UInt8], at now: Date) -> Result<TEEIdentification, VouchError> {
        authenticated(raw, binding: binding, policy: TDXPolicy(), at: now).map { tdx in
            TEEIdentification(kind: .tdx, identity: TEEHostIdentity(kind: .tdx, hostKey: hostKey, endorsementIssuer: tdx.issuer, simulated: tdx.simulated), endorsementIssuer: tdx.issuer, simulated: tdx.simulated,
                              summary: tdx.summary(tdx.claims, warnings: []))
        }
    }

    /// Stage 1's checks 1–5.
    func authenticated(_ raw: RawEvidence, binding: [UInt8], policy: TDXPolicy, at now: Date) -> Result<AuthenticatedTDX, VouchError> {
        guard case let .tdx(evidence) = raw.payload else { return .failure(Self.wrongKind) }
        // 1
        let quote: TDXQuote
        do { quote = try TDXQuote(bytes: evidence.quote) } catch {
            let e = error as? VouchError
            return .failure(VouchError(.teeEvidenceMalformed, e?.message ?? "the TDX quote does not parse",
                                       context: ["path": "quote." + (e?.context["field"] ?? ""), "expected": e?.context["expected"] ?? "a TDX quote v4 or v5"]))
        }
        // 2 (the PCK certificate is read here only to choose the roots and the collateral)
        let hint = hints.hint(quote.signatureData.certification.pckCertChain)
        var verifier = pinned, simulation = false
        if let issuer = hint.issuer, TEETrust.isSimulation(issuer: issuer) {
            guard let simulated else {
                return .failure(VouchError(.teeSimulationRefused, "the TDX quote is the software TEE's and this broker does not allow simulated hosts",
                                           context: ["got": issuer]))
            }
            verifier = simulated
            simulation = true
        }
        // 3
        var collateral: TDXCollateral?
        if let fmspc = hint.fmspc {
            // The chain is parsed and verified only when the source is about to fetch.
            let chainBytes = quote.signatureData.certification.pckCertChain, roots = verifier.roots
            let request = TDXCollateralRequest(fmspc: fmspc, pckCA: hint.issuer.flatMap { TDXPCKCA(issuer: $0) }, pckChainVerifies: {
                let chain = (try? Certificate.chain(pem: String(decoding: chainBytes.prefix { $0 != 0 }, as: UTF8.self))) ?? []
                guard let leaf = chain.first else { return false }
                return leaf.verify(anchors: roots, intermediates: Array(chain.dropFirst()), at: now) == nil
            })
            do { collateral = try self.collateral.collateral(for: request, at: now) } catch let e as VouchError { return .failure(e) } catch {
                return .failure(VouchError(.teeEvidenceMalformed, "the TDX collateral for this platform cannot be read", context: ["fmspc": Hex.encode(fmspc)]))
            }
        }
        // 4
        let expected = EnrollmentBinding.teeReportData(binding: binding)
        var pckIssuer: String?
        let outcome = verifier.verify(quote: quote, collateral: collateral, at: now, policy: policy,
                                      expectations: TDXExpectations(reportData: expected, eventLog: evidence.eventLog), pckIssuer: &pckIssuer)
        let claims: TDXClaims
        switch outcome {
        case let .verified(c, _): claims = c
        case let .rejected(_, c?): claims = c
        case let .rejected(violations, nil):
            return .failure(violations.first?.stageOneError ?? VouchError(.tdxQuoteSignatureInvalid, "the TDX quote is not authentic"))
        }
        guard let pckIssuer else { return .failure(VouchError(.internalError, "the TDX verifier found a quote authentic without a verified PCK chain")) }
        // 5
        guard claims.reportData == Hex.encode(expected) else {
            return .failure(VouchError(.tdxReportDataMismatch, "the quote's REPORTDATA does not bind this request",
                                       context: ["path": "td.reportData", "expected": Hex.encode(expected), "got": claims.reportData]))
        }
        let bytes = TEEEvidenceBytes(kind: .tdx, report: evidence.quote, endorsement: nil, crl: nil, eventLog: evidence.eventLog,
                                     collateral: collateral?.dcapQVLJSON, simulated: simulation)
        return .success(AuthenticatedTDX(outcome: outcome, claims: claims, simulated: simulation, evidenceDigest: Crypto.sha256(evidence.quote),
                                         issuer: pckIssuer, bytes: bytes))
    }

    /// The summary the attestation trail and the EAR carry.
    static func summary(_ c: TDXClaims, warnings: [TEEWarning], simulated: Bool) -> TEEClaims {
        TEEClaims(kind: EvidenceKind.tdx.rawValue, measurement: c.mrtd, measurementName: c.mrtdName, tcb: c.teeTcbSvn, tcbStatus: c.tcbStatus,
                  debug: c.tdAttributes.debug, signer: "pck", platform: c.fmspc, rtmrs: c.rtmrs, configId: c.mrConfigId,
                  reportData: c.reportData, warnings: warnings.map(\.code), simulated: simulated)
    }

    static let wrongKind = VouchError(.internalError, "the TDX verifier was given evidence of another kind")
}

/// What a quote's still unverified PCK certificate names, to choose the roots and the collateral
/// by (`TDXVerifier` then verifies the chain): its issuer and its SGX extension's FMSPC, read from
/// the chain's first certificate and kept by the SHA-256 of the chain's exact bytes (a digest, not
/// `ExactBytes`: these are unverified, and chains made to share a hashed prefix must not pile up
/// in one bucket) — parsing a
/// certificate costs OpenSSL 3.0 about as much as a warm verification of the whole quote.
final class PCKHints: Sendable {
    struct Hint: Sendable {
        let issuer: String?
        let fmspc: [UInt8]?
    }
    static let maxEntries = 4096
    private let entries = ReadMostly<[[UInt8]: Hint]>([:])

    func hint(_ chain: [UInt8]) -> Hint {
        let key = Crypto.sha256(chain)
        if let hit = entries.read({ $0[key] }) { return hit }
        let leaf = try? Certificate(pem: String(decoding: chain.prefix { $0 != 0 }, as: UTF8.self))
        let sgx = leaf?.extensionValue(oid: SGXPCKExtension.oid).flatMap { try? SGXPCKExtension(der: $0) }
        let hint = Hint(issuer: leaf?.issuer, fmspc: sgx?.fmspc)
        entries.write { e in
            if e.count >= Self.maxEntries { e.removeAll() }
            e[key] = hint
        }
        return hint
    }
}
