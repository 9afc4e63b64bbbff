import Foundation
import VouchCore
import VouchTEEWire

/// What a verified TDX quote establishes about a trust domain and its platform. JSON field names
/// are stable (`vouch evidence verify --kind tdx --json` prints them); byte strings are lowercase
/// hex, dates RFC 3339.
public struct TDXClaims: Sendable, Equatable, Codable {
    public struct TDAttributes: Sendable, Equatable, Codable {
        /// The 8 bytes as quoted (little-endian), hex.
        public var raw: String
        public var debug: Bool
        public var septVeDisable: Bool
        public var pks: Bool
        public var keyLocker: Bool
        public var perfmon: Bool
    }

    /// 4 or 5.
    public var quoteVersion: Int
    /// "1.0" (584-byte body) or "1.5" (648-byte body).
    public var tdxVersion: String
    public var teeTcbSvn: String
    public var teeTcbSvn2: String?
    public var mrSeam: String
    public var mrSignerSeam: String
    public var seamAttributes: String
    public var tdAttributes: TDAttributes
    public var xfam: String
    public var mrtd: String
    /// The policy's name for MRTD, when its allowlist has it.
    public var mrtdName: String?
    public var mrConfigId: String
    public var mrOwner: String
    public var mrOwnerConfig: String
    /// RTMR0–3.
    public var rtmrs: [String]
    /// True when a CCEL event log was given and replays to RTMR0–3 exactly.
    public var rtmrsFromEventLog: Bool
    public var reportData: String
    public var mrServiceTd: String?
    /// From the PCK certificate's SGX extension.
    public var fmspc: String
    public var pceId: String
    public var pceSvn: Int
    public var cpuSvn: String
    /// The converged TCB status (platform level with the TDX module and QE statuses folded in),
    /// or "Unknown" without collateral.
    public var tcbStatus: String
    /// The platform TCB level's own status, before convergence.
    public var platformTcbStatus: String?
    /// The earliest tcbDate of the TCB levels that decided the status.
    public var tcbDate: String?
    /// Advisory ids of the platform, TDX module and QE TCB levels, sorted, without repeats.
    public var advisories: [String]
    /// "TDX_01" and such when the module was judged through tdxModuleIdentities, else nil.
    public var moduleId: String?
    public var moduleTcbStatus: String?
    public var qeTcbStatus: String?
    public var qeIsvSvn: Int
    public var tcbEvaluationDataNumber: Int?
    public var collateralNextUpdate: String?
}

extension ErrorCode {
    /// The QE vendor id is not Intel's.
    public static let tdxQEVendorUnknown = ErrorCode("tdx_qe_vendor_unknown", status: 403)
    /// The PCK certificate chain in the quote does not verify to a pinned root at the given time.
    public static let tdxPCKChainInvalid = ErrorCode("tdx_pck_chain_invalid", status: 403)
    /// The PCK certificate (or its CA) is listed in its CRL.
    public static let tdxPCKRevoked = ErrorCode("tdx_pck_revoked", status: 403)
    /// The PCK certificate lacks a readable SGX extension.
    public static let tdxPCKExtensionInvalid = ErrorCode("tdx_pck_extension_invalid", status: 403)
    /// A CRL is not signed by its issuer, is for another issuer, or is outside thisUpdate..nextUpdate.
    public static let tdxCRLInvalid = ErrorCode("tdx_crl_invalid", status: 403)
    public static let tdxQEReportSignatureInvalid = ErrorCode("tdx_qe_report_signature_invalid", status: 403)
    /// The QE report's REPORTDATA is not SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes.
    public static let tdxQEReportDataMismatch = ErrorCode("tdx_qe_report_data_mismatch", status: 403)
    /// The TCB signing certificate chain (TCB info or QE identity issuer) does not verify.
    public static let tdxCollateralChainInvalid = ErrorCode("tdx_collateral_chain_invalid", status: 403)
    /// The TCB info or QE identity signature does not verify over its exact bytes.
    public static let tdxCollateralSignatureInvalid = ErrorCode("tdx_collateral_signature_invalid", status: 403)
    /// The TCB info or QE identity is outside issueDate..nextUpdate.
    public static let tdxCollateralExpired = ErrorCode("tdx_collateral_expired", status: 403)
    /// The QE identity is not TD_QE version 2, or the QE report does not match it.
    public static let tdxQEIdentityMismatch = ErrorCode("tdx_qe_identity_mismatch", status: 403)
    /// No QE identity TCB level is at or below the QE's ISVSVN.
    public static let tdxQETCBLevelNotFound = ErrorCode("tdx_qe_tcb_level_not_found", status: 403)
    public static let tdxQuoteSignatureInvalid = ErrorCode("tdx_quote_signature_invalid", status: 403)
    /// The TCB info is not TDX version 3 type 0, or its FMSPC or PCE-ID is not the PCK certificate's.
    public static let tdxTCBInfoMismatch = ErrorCode("tdx_tcb_info_mismatch", status: 403)
    /// No TCB level of the TCB info matches the platform (the DCAP TCB level algorithm).
    public static let tdxTCBLevelNotFound = ErrorCode("tdx_tcb_level_not_found", status: 403)
    /// MRSIGNERSEAM or the masked SEAMATTRIBUTES are not the TDX module's, or no module identity
    /// matches TEE_TCB_SVN's module version.
    public static let tdxModuleMismatch = ErrorCode("tdx_module_mismatch", status: 403)
    /// No TCB level of the TDX module identity is at or below the module's SVN.
    public static let tdxModuleTCBLevelNotFound = ErrorCode("tdx_module_tcb_level_not_found", status: 403)
    /// The converged TCB status is Revoked.
    public static let tdxTCBRevoked = ErrorCode("tdx_tcb_revoked", status: 403)
    /// The platform is out of date (OutOfDate, OutOfDateConfigurationNeeded, RelaunchAdvised…)
    /// and the policy's TCB date baseline does not cover its TCB level.
    public static let tdxTCBOutOfDate = ErrorCode("tdx_tcb_out_of_date", status: 403)
    /// The TCB status is one the policy does not accept.
    public static let tdxTCBStatusRefused = ErrorCode("tdx_tcb_status_refused", status: 403)
    /// No collateral: the TCB cannot be judged, and the policy does not accept that.
    public static let tdxTCBUnknown = ErrorCode("tdx_tcb_unknown", status: 403)
    /// A TCB level names an advisory the policy denies.
    public static let tdxAdvisoryDenied = ErrorCode("tdx_advisory_denied", status: 403)
    public static let tdxDebugRefused = ErrorCode("tdx_debug_refused", status: 403)
    public static let tdxSeptVEDisableRequired = ErrorCode("tdx_sept_ve_disable_required", status: 403)
    public static let tdxXFAMNotAllowed = ErrorCode("tdx_xfam_not_allowed", status: 403)
    public static let tdxMRTDNotAllowed = ErrorCode("tdx_mrtd_not_allowed", status: 403)
    public static let tdxMRConfigIDNotAllowed = ErrorCode("tdx_mrconfigid_not_allowed", status: 403)
    public static let tdxMROwnerNotAllowed = ErrorCode("tdx_mrowner_not_allowed", status: 403)
    public static let tdxMROwnerConfigNotAllowed = ErrorCode("tdx_mrownerconfig_not_allowed", status: 403)
    public static let tdxRTMRNotAllowed = ErrorCode("tdx_rtmr_not_allowed", status: 403)
    /// The CCEL event log does not parse (or extends a register it may not).
    public static let tdxEventLogMalformed = ErrorCode("tdx_event_log_malformed", status: 403)
    /// The CCEL event log does not replay to the quoted RTMRs.
    public static let tdxEventLogMismatch = ErrorCode("tdx_event_log_mismatch", status: 403)
    /// REPORTDATA is not exactly the expected 64 bytes.
    public static let tdxReportDataMismatch = ErrorCode("tdx_report_data_mismatch", status: 403)
}
