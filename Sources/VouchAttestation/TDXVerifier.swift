import Foundation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEEWire

/// What a caller expects of one quote beyond its policy: the REPORTDATA it bound (a nonce) and
/// the TD's CC event log (CCEL) to replay to the RTMRs.
public struct TDXExpectations: Sendable {
    /// REPORTDATA must be exactly these 64 bytes (overrides the policy's `reportData`).
    public var reportData: [UInt8]?
    /// The CCEL event log area; when given it must replay to RTMR0–3 exactly.
    public var eventLog: [UInt8]?

    public init(reportData: [UInt8]? = nil, eventLog: [UInt8]? = nil) {
        self.reportData = reportData
        self.eventLog = eventLog
    }
}

/// Verifies Intel TDX DCAP quotes (v4 and v5) with their collateral against pinned roots
/// (by default the Intel SGX Root CA, `IntelSGXRoot`). Checks, in order; steps 1–11 stop at the
/// first refusal, step 12 reports every violation it finds:
///
/// 1. the quote parses (`tee_evidence_malformed`): version 4 or 5, attestation key type 2
///    (ECDSA-256-with-P-256), TEE type 0x81, body type 2 or 3 with its size (v5), every length
///    field within its enclosing structure, certification data type 6 holding type 5;
/// 2. the QE vendor id is Intel's, 939a7233f79c4ca9940a0db3957f0607 (`tdx_qe_vendor_unknown`);
/// 3. with collateral: the root CA CRL is signed by a pinned root, and it and the PCK CRL are
///    current, thisUpdate ≤ now < nextUpdate (`tdx_crl_invalid`; `tee_evidence_malformed` if one
///    does not parse);
/// 4. the PCK certificate chain from the quote's certification data (PEM read strictly: only
///    certificate blocks, in path order, the chain's copy of the root byte for byte a pinned root)
///    verifies to a pinned root at `now` (`tdx_pck_chain_invalid`); with collateral the PCK CRL must be issued and signed by
///    the PCK certificate's CA (`tdx_crl_invalid`) and neither the PCK certificate nor its CA may
///    be revoked (PCK CRL, root CA CRL: `tdx_pck_revoked`); the PCK certificate carries a
///    P-256 key and a readable SGX extension 1.2.840.113741.1.13.1 (`tdx_pck_extension_invalid`);
/// 5. the QE report signature verifies with the PCK key (`tdx_qe_report_signature_invalid`);
/// 6. the QE report's REPORTDATA is SHA-256(attestation key ‖ QE auth data) followed by 32 zero
///    bytes, all 64 compared (`tdx_qe_report_data_mismatch`);
/// 7. with collateral, the QE identity: its issuer chain verifies to a pinned root (against the
///    root CA CRL), its leaf issued by the root itself and without the SGX extension (a PCK
///    certificate never signs collateral) (`tdx_collateral_chain_invalid`), its signature verifies over its exact bytes
///    (`tdx_collateral_signature_invalid`), it is TD_QE version 2 (`tdx_qe_identity_mismatch`),
///    issueDate ≤ now < nextUpdate (`tdx_collateral_expired`); the QE report's MRSIGNER and
///    ISVPRODID equal it and its MISCSELECT and ATTRIBUTES equal it under the masks
///    (`tdx_qe_identity_mismatch`); the QE's TCB level is the first at or below its ISVSVN
///    (`tdx_qe_tcb_level_not_found`). Without collateral, the QE report must be Intel's TD QE as
///    pinned here (MRSIGNER, ISVPRODID 2, MISCSELECT 0, no DEBUG: `tdx_qe_identity_mismatch`) and
///    the TDX module Intel-signed (MRSIGNERSEAM zero: `tdx_module_mismatch`) — otherwise any
///    enclave the platform's PCE certifies could sign for any TD;
/// 8. the quote signature (ECDSA P-256/SHA-256) verifies with the attestation key over header ‖
///    body (v5: header ‖ body descriptor ‖ body) (`tdx_quote_signature_invalid`). From here on
///    the quote is authentic and a refusal carries its claims;
/// 9. with collateral, the TCB info: chain, exact-bytes signature and window as in 7; TDX version 3,
///    tcbType 0, its tcbEvaluationDataNumber equal to the QE identity's, and FMSPC and PCE-ID
///    equal to the PCK certificate's SGX extension (`tdx_tcb_info_mismatch`); a number below the
///    policy's `tcb.minimumEvaluationDataNumber` is refused (`tdx_tcb_out_of_date`);
/// 10. the platform's TCB level by the DCAP algorithm (`TDXTCBEvaluation.platformLevel`: levels
///    sorted by the algorithm, 16 SGX components and PCESVN ≤ the PCK certificate's, TDX
///    components ≤ TEE_TCB_SVN from index 2 when TEE_TCB_SVN[1] > 0, first match)
///    (`tdx_tcb_level_not_found`);
/// 11. the TDX module: MRSIGNERSEAM and masked SEAMATTRIBUTES against `tdxModule`, or against the
///    `tdxModuleIdentities` entry TDX_%02X of TEE_TCB_SVN[1] when that is above 0
///    (`tdx_module_mismatch`), whose level at or below TEE_TCB_SVN[0] (`tdx_module_tcb_level_not_found`)
///    and then the QE's status are folded into the platform's (`TDXTCBEvaluation.converge`);
/// 12. policy: the converged TCB status (`TDXTCBEvaluation.judge`: `tdx_tcb_revoked`,
///    `tdx_tcb_out_of_date`, `tdx_tcb_status_refused`; without collateral `tdx_tcb_unknown` unless
///    the policy allows an unknown TCB) and denied advisories (`tdx_advisory_denied`);
///    TDATTRIBUTES: no debug bit unless allowed (`tdx_debug_refused`), SEPT_VE_DISABLE unless not
///    required (`tdx_sept_ve_disable_required`); XFAM, MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG
///    and RTMR allowlists (`tdx_xfam_not_allowed`, `tdx_mrtd_not_allowed`, …, `tdx_rtmr_not_allowed`);
///    the CC event log, when given, parses (`tdx_event_log_malformed`) and replays to RTMR0–3
///    exactly (`tdx_event_log_mismatch`); REPORTDATA equals the expected 64 bytes
///    (`tdx_report_data_mismatch`).
///
/// Verified collateral (3, 7, 9; by its exact bytes), PCK chains (4; by their exact bytes and the
/// collateral they were checked against) and QE report signatures (5; by the exact
/// report and signature bytes and the verified chain) are kept for the window in which the
/// verdict holds (CRL, collateral and certificate validity), as are parsed attestation keys
/// (`TDXVerificationCache`): repeated quotes from one platform cost the quote signature of 8,
/// the binding of 6 and the TCB evaluation.
public final class TDXVerifier: Sendable {
    public let roots: [Certificate]
    /// The pinned roots by their DER: a chain's copy of a root, byte for byte, is this object.
    let rootsByDER: [[UInt8]: Certificate]
    let cache = TDXVerificationCache()

    /// Trusts exactly `roots` (for instance the certificates of a directory of PEM roots).
    public init(roots: [Certificate]) {
        self.roots = roots
        var byDER: [[UInt8]: Certificate] = [:]
        for root in roots { if let der = try? root.der { byDER[der] = root } }
        rootsByDER = byDER
    }

    /// Trusts the pinned Intel SGX Root CA only.
    public convenience init() throws {
        self.init(roots: [try IntelSGXRoot.certificate()])
    }

    /// Parses `quote` and verifies it (see the type's doc comment); `collateral` nil verifies
    /// authenticity only (steps 1–6 and 8) and leaves the TCB unknown.
    public func verify(quote bytes: [UInt8], collateral: TDXCollateral?, at now: Date, policy: TDXPolicy = TDXPolicy(),
                       expectations: TDXExpectations = TDXExpectations()) -> TEEVerification<TDXClaims> {
        let quote: TDXQuote
        do { quote = try TDXQuote(bytes: bytes) } catch {
            let e = error as? VouchError
            return .rejected([PolicyViolation(code: .teeEvidenceMalformed, path: "quote." + (e?.context["field"] ?? ""),
                                              expected: e?.context["expected"] ?? "a TDX quote v4 or v5", actual: e?.message ?? "\(error)")], claims: nil)
        }
        return verify(quote: quote, collateral: collateral, at: now, policy: policy, expectations: expectations)
    }

    public func verify(quote: TDXQuote, collateral: TDXCollateral?, at now: Date, policy: TDXPolicy = TDXPolicy(),
                       expectations: TDXExpectations = TDXExpectations()) -> TEEVerification<TDXClaims> {
        var issuer: String?
        return verify(quote: quote, collateral: collateral, at: now, policy: policy, expectations: expectations, pckIssuer: &issuer)
    }

    /// `verify(quote:…)`, also giving the PCK certificate's issuer from the chain step 4 verified
    /// (set once step 4 passes; meaningful only for a quote found authentic, one with claims).
    func verify(quote: TDXQuote, collateral: TDXCollateral?, at now: Date, policy: TDXPolicy, expectations: TDXExpectations,
                pckIssuer: inout String?) -> TEEVerification<TDXClaims> {
        func refuse(_ r: TDXRefusal, _ claims: TDXClaims? = nil) -> TEEVerification<TDXClaims> { .rejected([r.violation], claims: claims) }
        let certification = quote.signatureData.certification

        // 2. QE vendor.
        guard quote.header.qeVendorID == TDXQuoteHeader.intelQEVendorID else {
            return refuse(TDXRefusal(.tdxQEVendorUnknown, "quote.header.qeVendorId", expected: Hex.encode(TDXQuoteHeader.intelQEVendorID),
                                     actual: Hex.encode(quote.header.qeVendorID)))
        }

        // 3. Collateral CRLs (the whole collateral is checked here, once per window, and each
        //    part's refusal reported at its own step).
        let outcome = collateral.map { checkCollateral($0, at: now) }
        var crls: TDXCRLs?
        if let outcome {
            switch outcome.crls {
            case let .failure(r): return refuse(r)
            case let .success(c): crls = c
            }
        }

        // 4. PCK chain.
        let pck: TDXVerifiedPCK
        switch checkPCKChain(certification.pckCertChain, collateral: outcome, crls: crls, at: now) {
        case let .failure(r): return refuse(r)
        case let .success(p): pck = p
        }
        pckIssuer = pck.issuer

        // 5. QE report signature (its verdict kept for the exact report and signature bytes and
        //    the verified chain, within the chain's window).
        let endorsement = pck.cacheKey.map { TDXEndorsementKey(chain: $0, report: ExactBytes(certification.qeReport.raw),
                                                                signature: ExactBytes(certification.qeReportSignature)) }
        if !(endorsement.map { cache.endorsed($0, at: now) } ?? false) {
            guard verifyRS(certification.qeReportSignature, certification.qeReport.raw, key: pck.key) else {
                return refuse(TDXRefusal(.tdxQEReportSignatureInvalid, "quote.certificationData.qeReportSignature",
                                         expected: "an ECDSA P-256 signature by the PCK key over the QE report", actual: "signature does not verify"))
            }
            if let endorsement { cache.store(endorsement: endorsement, window: pck.window) }
        }

        // 6. QE report data binds the attestation key and QE auth data.
        let binding = Crypto.sha256(quote.signatureData.attestationKey + certification.qeAuthData) + [UInt8](repeating: 0, count: 32)
        guard certification.qeReport.reportData == binding else {
            return refuse(TDXRefusal(.tdxQEReportDataMismatch, "quote.certificationData.qeReport.reportData", expected: Hex.encode(binding),
                                     actual: Hex.encode(certification.qeReport.reportData)))
        }

        // 7. QE identity: from the signed collateral, or — without collateral — Intel's TD QE
        //    as pinned here (any enclave the PCE certifies could otherwise vouch for any TD), and
        //    a TDX module signed by Intel (MRSIGNERSEAM zero).
        var qeLevel: TDXQEIdentity.Level?
        if let outcome {
            switch outcome.qeIdentity.flatMap({ TDXTCBEvaluation.qe($0, report: certification.qeReport) }) {
            case let .failure(r): return refuse(r)
            case let .success(l): qeLevel = l
            }
        } else if let r = Self.checkPinnedQE(certification.qeReport, body: quote.body) {
            return refuse(r)
        }

        // 8. Quote signature.
        guard let attestationKey = cache.attestationKey(quote.signatureData.attestationKey),
              verifyRS(quote.signatureData.signature, quote.signedBytes, key: attestationKey) else {
            return refuse(TDXRefusal(.tdxQuoteSignatureInvalid, "quote.signature", expected: "an ECDSA P-256 signature by the attestation key over the signed bytes",
                                     actual: "signature does not verify"))
        }
        var claims = Self.claims(quote, pck: pck.sgx, qeIsvSvn: certification.qeReport.isvSvn)

        var violations: [PolicyViolation] = []
        var warnings: [TEEWarning] = []
        if let outcome, let qeLevel {
            // 9. TCB info.
            let info: TDXTCBInfo
            switch outcome.tcbInfo {
            case let .failure(r): return refuse(r, claims)
            case let .success(i): info = i
            }
            claims.tcbEvaluationDataNumber = info.tcbEvaluationDataNumber
            claims.collateralNextUpdate = info.nextUpdate.iso8601
            // One evaluation of Intel's: the QE identity and the TCB info carry the same number, at
            // least the policy's floor (an older, still unexpired TCB info after a TCB recovery
            // would judge an out-of-date platform up to date).
            if case let .success(qe) = outcome.qeIdentity, qe.tcbEvaluationDataNumber != info.tcbEvaluationDataNumber {
                return refuse(TDXRefusal(.tdxTCBInfoMismatch, "collateral.tcbEvaluationDataNumber", expected: "the QE identity's \(qe.tcbEvaluationDataNumber)",
                                         actual: "\(info.tcbEvaluationDataNumber)"), claims)
            }
            if let floor = policy.minimumEvaluationDataNumber, info.tcbEvaluationDataNumber < floor {
                violations.append(PolicyViolation(code: .tdxTCBOutOfDate, path: "collateral.tcbEvaluationDataNumber", expected: ">= \(floor)",
                                                  actual: "\(info.tcbEvaluationDataNumber)"))
            }
            guard info.fmspc == pck.sgx.fmspc, info.pceID == pck.sgx.pceID else {
                return refuse(TDXRefusal(.tdxTCBInfoMismatch, "collateral.tcbInfo.fmspc", expected: "fmspc \(Hex.encode(pck.sgx.fmspc)), pceId \(Hex.encode(pck.sgx.pceID))",
                                         actual: "fmspc \(Hex.encode(info.fmspc)), pceId \(Hex.encode(info.pceID))"), claims)
            }
            // 10. Platform TCB level.
            guard let level = TDXTCBEvaluation.platformLevel(info.tcbLevels, sgx: pck.sgx, teeTcbSvn: quote.body.teeTcbSvn) else {
                return refuse(TDXRefusal(.tdxTCBLevelNotFound, "tcb.level", expected: "a TCB level at or below the platform's SVNs",
                                         actual: "PCK components \(Hex.encode(pck.sgx.tcbComponents)), PCESVN \(pck.sgx.pceSvn), TEE_TCB_SVN \(Hex.encode(quote.body.teeTcbSvn))"), claims)
            }
            claims.platformTcbStatus = level.status.rawValue
            // 11. TDX module, then convergence with the module's and the QE's statuses.
            let module: (id: String?, level: TDXTCBInfo.ModuleLevel?)
            switch TDXTCBEvaluation.module(info, body: quote.body) {
            case let .failure(r): return refuse(r, claims)
            case let .success(m): module = m
            }
            var status = level.status
            var dates = [level.tcbDate, qeLevel.tcbDate]
            var advisories = level.advisoryIDs + qeLevel.advisoryIDs
            if let m = module.level {
                status = TDXTCBEvaluation.converge(status, with: m.status)
                dates.append(m.tcbDate)
                advisories += m.advisoryIDs
            }
            status = TDXTCBEvaluation.converge(status, with: qeLevel.status)
            let tcbDate = dates.min()!
            advisories = Array(Set(advisories)).sorted()
            claims.moduleId = module.id
            claims.moduleTcbStatus = module.level?.status.rawValue
            claims.qeTcbStatus = qeLevel.status.rawValue
            claims.tcbStatus = status.rawValue
            claims.tcbDate = tcbDate.iso8601
            claims.advisories = advisories
            // 12. Policy, starting with the TCB status.
            let judged = TDXTCBEvaluation.judge(status, tcbDate: tcbDate, advisories: advisories, policy: policy)
            violations += judged.violations
            warnings += judged.warnings
        } else if policy.allowUnknownTCB {
            warnings.append(TEEWarning(code: "tdx_tcb_unknown", message: "no collateral: the quote is authentic but its platform's TCB status is unknown"))
        } else {
            violations.append(PolicyViolation(code: .tdxTCBUnknown, path: "tcb.status", expected: "collateral to judge the TCB by", actual: "Unknown"))
        }
        violations += Self.checkTD(quote.body, policy: policy, expectations: expectations, claims: &claims)
        return violations.isEmpty ? .verified(claims, warnings: warnings) : .rejected(violations, claims: claims)
    }

    /// Intel's TD Quoting Enclave as Intel PCS's QE identity (`TD_QE`) names it: MRSIGNER,
    /// ISVPRODID 2, MISCSELECT 0 (mask all), ATTRIBUTES 0x11 under mask FBFFFFFFFFFFFFFF (no
    /// DEBUG). Used when a quote comes without collateral.
    static let intelTDQEMRSigner: [UInt8] = try! Hex.decode("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5")
    static let intelTDQEAttributes: [UInt8] = [0x11] + [UInt8](repeating: 0, count: 15)
    static let intelTDQEAttributesMask: [UInt8] = [0xfb] + [UInt8](repeating: 0xff, count: 7) + [UInt8](repeating: 0, count: 8)

    static func checkPinnedQE(_ qe: SGXReportBody, body: TDXQuoteBody) -> TDXRefusal? {
        let masked = zip(qe.attributes, intelTDQEAttributesMask).map { $0 & $1 }
        let expected = zip(intelTDQEAttributes, intelTDQEAttributesMask).map { $0 & $1 }
        guard qe.mrSigner == intelTDQEMRSigner, qe.isvProdID == 2, qe.miscSelect == 0, masked == expected else {
            return TDXRefusal(.tdxQEIdentityMismatch, "quote.certificationData.qeReport",
                              expected: "Intel's TD QE (MRSIGNER \(Hex.encode(intelTDQEMRSigner)), ISVPRODID 2, no debug)",
                              actual: "MRSIGNER \(Hex.encode(qe.mrSigner)), ISVPRODID \(qe.isvProdID), ATTRIBUTES \(Hex.encode(qe.attributes))")
        }
        guard body.mrSignerSeam.allSatisfy({ $0 == 0 }) else {
            return TDXRefusal(.tdxModuleMismatch, "quote.body.mrSignerSeam", expected: "an Intel-signed TDX module (MRSIGNERSEAM zero)",
                              actual: Hex.encode(body.mrSignerSeam))
        }
        return nil
    }

    /// Step 12's checks of the TD itself: attributes, XFAM, measurement allowlists, the event
    /// log, REPORTDATA. Every violation is reported.
    static func checkTD(_ body: TDXQuoteBody, policy: TDXPolicy, expectations: TDXExpectations, claims: inout TDXClaims) -> [PolicyViolation] {
        var v: [PolicyViolation] = []
        let attributes = body.attributes
        if attributes.underDebug && !policy.allowDebug {
            v.append(PolicyViolation(code: .tdxDebugRefused, path: "td.attributes.debug", expected: "no TUD (debug) bit", actual: Hex.encode(body.tdAttributes)))
        }
        if !attributes.septVEDisable && policy.requireSeptVEDisable {
            v.append(PolicyViolation(code: .tdxSeptVEDisableRequired, path: "td.attributes.septVeDisable", expected: "SEPT_VE_DISABLE set", actual: Hex.encode(body.tdAttributes)))
        }
        func allow(_ code: ErrorCode, _ path: String, _ value: [UInt8], _ allowed: [[UInt8]]) {
            guard !allowed.isEmpty, !allowed.contains(value) else { return }
            v.append(PolicyViolation(code: code, path: path, expected: "one of \(allowed.map { Hex.encode($0) }.joined(separator: ", "))", actual: Hex.encode(value)))
        }
        allow(.tdxXFAMNotAllowed, "td.xfam", body.xfam, policy.xfam)
        if !policy.mrtd.isEmpty {
            if let named = policy.mrtd.first(where: { $0.value == body.mrTD }) { claims.mrtdName = named.name } else {
                v.append(PolicyViolation(code: .tdxMRTDNotAllowed, path: "td.mrtd", expected: "one of \(policy.mrtd.map(\.name).joined(separator: ", "))", actual: Hex.encode(body.mrTD)))
            }
        }
        allow(.tdxMRConfigIDNotAllowed, "td.mrConfigId", body.mrConfigID, policy.mrConfigID)
        allow(.tdxMROwnerNotAllowed, "td.mrOwner", body.mrOwner, policy.mrOwner)
        allow(.tdxMROwnerConfigNotAllowed, "td.mrOwnerConfig", body.mrOwnerConfig, policy.mrOwnerConfig)
        for i in 0..<4 { allow(.tdxRTMRNotAllowed, "td.rtmr\(i)", body.rtmrs[i], policy.rtmrs[i] ?? []) }
        if let log = expectations.eventLog {
            do {
                let replayed = try TDXEventLog.replay(log)
                var matched = true
                for i in 0..<4 where replayed[i] != body.rtmrs[i] {
                    matched = false
                    v.append(PolicyViolation(code: .tdxEventLogMismatch, path: "eventLog.rtmr\(i)", expected: Hex.encode(body.rtmrs[i]), actual: Hex.encode(replayed[i])))
                }
                claims.rtmrsFromEventLog = matched
            } catch {
                v.append(PolicyViolation(code: .tdxEventLogMalformed, path: "eventLog", expected: "a CC event log (TCG crypto agile, SHA-384)",
                                         actual: (error as? VouchError)?.message ?? "\(error)"))
            }
        }
        if let expected = expectations.reportData ?? policy.reportData, expected != body.reportData {
            v.append(PolicyViolation(code: .tdxReportDataMismatch, path: "td.reportData", expected: Hex.encode(expected), actual: Hex.encode(body.reportData)))
        }
        return v
    }

    /// ECDSA P-256/SHA-256 with a raw r‖s signature.
    func verifyRS(_ rs: [UInt8], _ message: [UInt8], key: PublicKey) -> Bool {
        guard rs.count == 64, let der = try? ecdsaSignatureDER(r: Array(rs[0..<32]), s: Array(rs[32..<64])) else { return false }
        return key.verify(message: message, signature: der, scheme: .ecdsa, hash: .sha256)
    }

    /// The claims of an authentic quote, before the TCB is judged.
    static func claims(_ q: TDXQuote, pck: SGXPCKExtension, qeIsvSvn: UInt16) -> TDXClaims {
        let b = q.body, a = b.attributes
        return TDXClaims(
            quoteVersion: q.version, tdxVersion: b.kind == .td15 ? "1.5" : "1.0", teeTcbSvn: Hex.encode(b.teeTcbSvn),
            teeTcbSvn2: b.kind == .td15 ? Hex.encode(b.teeTcbSvn2) : nil, mrSeam: Hex.encode(b.mrSeam), mrSignerSeam: Hex.encode(b.mrSignerSeam),
            seamAttributes: Hex.encode(b.seamAttributes),
            tdAttributes: .init(raw: Hex.encode(b.tdAttributes), debug: a.debug, septVeDisable: a.septVEDisable, pks: a.pks, keyLocker: a.keyLocker, perfmon: a.perfmon),
            xfam: Hex.encode(b.xfam), mrtd: Hex.encode(b.mrTD), mrtdName: nil, mrConfigId: Hex.encode(b.mrConfigID), mrOwner: Hex.encode(b.mrOwner),
            mrOwnerConfig: Hex.encode(b.mrOwnerConfig), rtmrs: b.rtmrs.map { Hex.encode($0) }, rtmrsFromEventLog: false, reportData: Hex.encode(b.reportData),
            mrServiceTd: b.kind == .td15 ? Hex.encode(b.mrServiceTD) : nil, fmspc: Hex.encode(pck.fmspc), pceId: Hex.encode(pck.pceID), pceSvn: Int(pck.pceSvn),
            cpuSvn: Hex.encode(pck.cpuSvn), tcbStatus: "Unknown", platformTcbStatus: nil, tcbDate: nil, advisories: [], moduleId: nil, moduleTcbStatus: nil,
            qeTcbStatus: nil, qeIsvSvn: Int(qeIsvSvn), tcbEvaluationDataNumber: nil, collateralNextUpdate: nil)
    }
}
