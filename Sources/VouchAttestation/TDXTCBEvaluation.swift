import Foundation
import VouchCore
import VouchPolicy
import VouchTEEWire

/// The DCAP TCB algorithms for TDX (Intel's TDX TCB info v3 and QE identity v2 rules), as pure
/// functions over verified collateral and a verified quote.
enum TDXTCBEvaluation {
    /// TCB levels in the order the algorithm walks them, whatever order the document lists them
    /// in: descending by the 16 SGX component SVNs (compared as a sequence), then PCESVN, then the
    /// 16 TDX component SVNs; ties keep the document's order.
    static func sorted(_ levels: [TDXTCBInfo.Level]) -> [TDXTCBInfo.Level] {
        levels.enumerated().sorted { a, b in
            let x = a.element, y = b.element
            if x.sgxComponents != y.sgxComponents { return x.sgxComponents.lexicographicallyPrecedes(y.sgxComponents) == false }
            if x.pceSvn != y.pceSvn { return x.pceSvn > y.pceSvn }
            if x.tdxComponents != y.tdxComponents { return x.tdxComponents.lexicographicallyPrecedes(y.tdxComponents) == false }
            return a.offset < b.offset
        }.map(\.element)
    }

    /// The platform's TCB level: the first level (in `sorted` order) whose 16 SGX components are
    /// each ≤ the PCK certificate's, whose PCESVN is ≤ the certificate's, and whose TDX components
    /// are each ≤ TEE_TCB_SVN — from index 2 when TEE_TCB_SVN[1] (the module's major version) is
    /// above 0, because the module is then judged by its own identity, else all 16.
    static func platformLevel(_ levels: [TDXTCBInfo.Level], sgx: SGXPCKExtension, teeTcbSvn: [UInt8]) -> TDXTCBInfo.Level? {
        let start = teeTcbSvn.count > 1 && teeTcbSvn[1] > 0 ? 2 : 0
        return sorted(levels).first { level in
            guard level.sgxComponents.count == 16, sgx.tcbComponents.count == 16, level.tdxComponents.count == 16, teeTcbSvn.count == 16 else { return false }
            return (0..<16).allSatisfy { level.sgxComponents[$0] <= sgx.tcbComponents[$0] }
                && level.pceSvn <= sgx.pceSvn
                && (start..<16).allSatisfy { level.tdxComponents[$0] <= teeTcbSvn[$0] }
        }
    }

    /// The TDX module's identity check and TCB level. With TEE_TCB_SVN[1] (module major version)
    /// 0, the module is the TCB info's `tdxModule` and has no level of its own; above 0 it is the
    /// `tdxModuleIdentities` entry `TDX_%02X` of that version, whose first level (by descending
    /// ISVSVN) at or below TEE_TCB_SVN[0] gives its status. Either way MRSIGNERSEAM must equal
    /// the module's mrsigner and SEAMATTRIBUTES must equal its attributes under attributesMask.
    static func module(_ info: TDXTCBInfo, body: TDXQuoteBody) -> Result<(id: String?, level: TDXTCBInfo.ModuleLevel?), TDXRefusal> {
        let version = body.teeTcbSvn[1], svn = body.teeTcbSvn[0]
        let module: TDXTCBInfo.Module
        var identity: TDXTCBInfo.ModuleIdentity?
        if version == 0 {
            guard let m = info.tdxModule else {
                return .failure(TDXRefusal(.tdxModuleMismatch, "collateral.tcbInfo.tdxModule", expected: "a TDX module", actual: "absent"))
            }
            module = m
        } else {
            let hex = String(version, radix: 16, uppercase: true)   // TDX_%02X (String(format:) was 2 % of a warm verification)
            let id = "TDX_" + (hex.count < 2 ? "0" + hex : hex)
            guard let i = info.tdxModuleIdentities.first(where: { $0.id.uppercased() == id }) else {
                return .failure(TDXRefusal(.tdxModuleMismatch, "collateral.tcbInfo.tdxModuleIdentities", expected: "an identity \(id) (TEE_TCB_SVN[1] = \(version))",
                                           actual: info.tdxModuleIdentities.map(\.id).joined(separator: ",")))
            }
            identity = i
            module = i.module
        }
        guard body.mrSignerSeam == module.mrSigner else {
            return .failure(TDXRefusal(.tdxModuleMismatch, "quote.body.mrSignerSeam", expected: Hex.encode(module.mrSigner), actual: Hex.encode(body.mrSignerSeam)))
        }
        guard masked(body.seamAttributes, module.attributesMask) == masked(module.attributes, module.attributesMask) else {
            return .failure(TDXRefusal(.tdxModuleMismatch, "quote.body.seamAttributes", expected: "\(Hex.encode(module.attributes)) under mask \(Hex.encode(module.attributesMask))",
                                       actual: Hex.encode(body.seamAttributes)))
        }
        guard let identity else { return .success((nil, nil)) }
        let levels = identity.tcbLevels.enumerated().sorted { $0.element.isvSvn != $1.element.isvSvn ? $0.element.isvSvn > $1.element.isvSvn : $0.offset < $1.offset }
        guard let level = levels.first(where: { $0.element.isvSvn <= svn })?.element else {
            return .failure(TDXRefusal(.tdxModuleTCBLevelNotFound, "collateral.tcbInfo.tdxModuleIdentities.\(identity.id).tcbLevels",
                                       expected: "a level with isvsvn <= \(svn)", actual: identity.tcbLevels.map { "\($0.isvSvn)" }.joined(separator: ",")))
        }
        return .success((identity.id, level))
    }

    /// The QE report against the QE identity: MRSIGNER and ISVPRODID equal, MISCSELECT and
    /// ATTRIBUTES equal under their masks; then the QE's level, the first (by descending ISVSVN)
    /// at or below its ISVSVN.
    static func qe(_ identity: TDXQEIdentity, report: SGXReportBody) -> Result<TDXQEIdentity.Level, TDXRefusal> {
        let path = "quote.certificationData.qeReport"
        guard report.mrSigner == identity.mrSigner else {
            return .failure(TDXRefusal(.tdxQEIdentityMismatch, "\(path).mrSigner", expected: Hex.encode(identity.mrSigner), actual: Hex.encode(report.mrSigner)))
        }
        guard report.isvProdID == identity.isvProdID else {
            return .failure(TDXRefusal(.tdxQEIdentityMismatch, "\(path).isvProdId", expected: "\(identity.isvProdID)", actual: "\(report.isvProdID)"))
        }
        guard report.miscSelect & identity.miscSelectMask == identity.miscSelect & identity.miscSelectMask else {
            return .failure(TDXRefusal(.tdxQEIdentityMismatch, "\(path).miscSelect",
                                       expected: String(format: "%08x under mask %08x", identity.miscSelect, identity.miscSelectMask), actual: String(format: "%08x", report.miscSelect)))
        }
        guard masked(report.attributes, identity.attributesMask) == masked(identity.attributes, identity.attributesMask) else {
            return .failure(TDXRefusal(.tdxQEIdentityMismatch, "\(path).attributes",
                                       expected: "\(Hex.encode(identity.attributes)) under mask \(Hex.encode(identity.attributesMask))", actual: Hex.encode(report.attributes)))
        }
        let levels = identity.tcbLevels.enumerated().sorted { $0.element.isvSvn != $1.element.isvSvn ? $0.element.isvSvn > $1.element.isvSvn : $0.offset < $1.offset }
        guard let level = levels.first(where: { $0.element.isvSvn <= report.isvSvn })?.element else {
            return .failure(TDXRefusal(.tdxQETCBLevelNotFound, "\(path).isvSvn", expected: "a QE identity level with isvsvn <= \(report.isvSvn)",
                                       actual: identity.tcbLevels.map { "\($0.isvSvn)" }.joined(separator: ",")))
        }
        return .success(level)
    }

    /// Folds a TDX module's or the QE's status into the platform's (Intel's convergence rules):
    /// OutOfDate makes an up-to-date or SW-hardening platform OutOfDate and a configuration-needed
    /// one OutOfDateConfigurationNeeded (a relaunch-advised one likewise); Revoked makes it
    /// Revoked; anything else leaves it as it is.
    static func converge(_ platform: TDXTCBStatus, with other: TDXTCBStatus) -> TDXTCBStatus {
        switch other {
        case .revoked: return .revoked
        case .outOfDate:
            switch platform {
            case .upToDate, .swHardeningNeeded, .relaunchAdvised: return .outOfDate
            case .configurationNeeded, .configurationAndSWHardeningNeeded, .relaunchAdvisedConfigurationNeeded: return .outOfDateConfigurationNeeded
            default: return platform
            }
        default: return platform
        }
    }

    /// What the policy makes of a converged status (with the levels' earliest tcbDate and their
    /// advisories): UpToDate affirms; SWHardeningNeeded, ConfigurationNeeded and
    /// ConfigurationAndSWHardeningNeeded affirm with a warning naming the advisories when the
    /// policy accepts them (by default it does), else `tdx_tcb_status_refused`; the out-of-date
    /// statuses are refused (`tdx_tcb_out_of_date`) unless the policy's TCB date baseline is on or
    /// before the tcbDate, then affirmed with a warning; Revoked is always refused. Any advisory
    /// the policy denies refuses (`tdx_advisory_denied`).
    static func judge(_ status: TDXTCBStatus, tcbDate: Date, advisories: [String], policy: TDXPolicy) -> (violations: [PolicyViolation], warnings: [TEEWarning]) {
        var violations: [PolicyViolation] = [], warnings: [TEEWarning] = []
        let path = "tcb.status"
        var accepted: String { policy.acceptedTCBStatuses.sorted().joined(separator: ", ") }
        var list: String { advisories.isEmpty ? "" : " (\(advisories.joined(separator: ", ")))" }
        switch status {
        case .upToDate:
            break
        case .revoked:
            violations.append(PolicyViolation(code: .tdxTCBRevoked, path: path, expected: accepted, actual: status.rawValue))
        case .swHardeningNeeded, .configurationNeeded, .configurationAndSWHardeningNeeded:
            if policy.acceptedTCBStatuses.contains(status.rawValue) {
                let code = status == .swHardeningNeeded ? "tdx_tcb_sw_hardening_needed" : "tdx_tcb_configuration_needed"
                warnings.append(TEEWarning(code: code, message: "the platform's TCB status is \(status.rawValue)\(list)", advisories: advisories))
            } else {
                violations.append(PolicyViolation(code: .tdxTCBStatusRefused, path: path, expected: accepted, actual: status.rawValue))
            }
        case .outOfDate, .outOfDateConfigurationNeeded, .relaunchAdvised, .relaunchAdvisedConfigurationNeeded:
            if let baseline = policy.tcbDateBaseline, tcbDate >= baseline {
                warnings.append(TEEWarning(code: "tdx_tcb_out_of_date", message: "the platform's TCB status is \(status.rawValue), tcbDate \(tcbDate.iso8601) is on or after the policy's baseline \(baseline.iso8601)\(list)",
                                           advisories: advisories))
            } else {
                violations.append(PolicyViolation(code: .tdxTCBOutOfDate, path: path,
                                                  expected: policy.tcbDateBaseline.map { "tcbDate >= \($0.iso8601)" } ?? accepted,
                                                  actual: "\(status.rawValue), tcbDate \(tcbDate.iso8601)"))
            }
        }
        let denied = advisories.filter { policy.deniedAdvisories.contains($0) }
        if !denied.isEmpty {
            violations.append(PolicyViolation(code: .tdxAdvisoryDenied, path: "tcb.advisories", expected: "none of \(policy.deniedAdvisories.sorted().joined(separator: ", "))",
                                              actual: denied.joined(separator: ", ")))
        }
        return (violations, warnings)
    }

    static func masked(_ bytes: [UInt8], _ mask: [UInt8]) -> [UInt8] {
        (0..<max(bytes.count, mask.count)).map { i in (i < bytes.count ? bytes[i] : 0) & (i < mask.count ? mask[i] : 0) }
    }
}
