import Foundation
import VouchCore

/// What a policy requires of an Intel TDX trust domain (the `tdx:` section of a policy file).
/// The defaults refuse a debug TD, require SEPT_VE_DISABLE, accept the TCB statuses that need no
/// platform update (UpToDate, SWHardeningNeeded with a warning, ConfigurationNeeded and
/// ConfigurationAndSWHardeningNeeded with a warning) and refuse a quote without collateral.
/// Empty allowlists constrain nothing. Pure values; `TDXVerifier` applies them.
public struct TDXPolicy: Sendable, Equatable {
    /// A measurement with the name a policy gives it (shown in claims when it matches).
    public struct NamedValue: Sendable, Equatable {
        public var name: String
        public var value: [UInt8]
        public init(name: String, value: [UInt8]) {
            self.name = name
            self.value = value
        }
    }

    /// The TCB statuses a policy may accept outright. OutOfDate, OutOfDateConfigurationNeeded and
    /// the RelaunchAdvised statuses are accepted only through `tcbDateBaseline`; Revoked never.
    public static let acceptableStatuses: Set<String> = ["UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"]

    /// TDATTRIBUTES.DEBUG (and any other TUD bit) allowed.
    public var allowDebug = false
    /// TDATTRIBUTES.SEPT_VE_DISABLE must be set.
    public var requireSeptVEDisable = true
    /// Allowed XFAM values (8 bytes each, as quoted).
    public var xfam: [[UInt8]] = []
    /// Allowed MRTD values (48 bytes), by name. Empty: any MRTD (offline); the broker then
    /// refuses every host unless `allowAnyMeasurement`.
    public var mrtd: [NamedValue] = []
    /// The broker admits hosts under this section without an MRTD allowlist
    /// (`allowAnyMeasurement: true`). Off by default: a section that lists no `mrtd` admits no
    /// host through the broker (`tdx_mrtd_not_allowed`). The offline verifier
    /// (`vouch evidence verify`) does not read it.
    public var allowAnyMeasurement = false
    public var mrConfigID: [[UInt8]] = []
    public var mrOwner: [[UInt8]] = []
    public var mrOwnerConfig: [[UInt8]] = []
    /// Allowed values per RTMR index 0–3 (48 bytes each).
    public var rtmrs: [Int: [[UInt8]]] = [:]
    /// Statuses accepted outright (a subset of `acceptableStatuses`; must hold UpToDate).
    public var acceptedTCBStatuses: Set<String> = TDXPolicy.acceptableStatuses
    /// An out-of-date platform (OutOfDate, OutOfDateConfigurationNeeded, RelaunchAdvised,
    /// RelaunchAdvisedConfigurationNeeded) is accepted, with a warning, when its TCB level's
    /// tcbDate is on or after this date.
    public var tcbDateBaseline: Date?
    /// Advisory ids (INTEL-SA-…) that refuse a platform whose TCB level names them.
    public var deniedAdvisories: Set<String> = []
    /// REPORTDATA must be exactly these 64 bytes (a caller's nonce overrides it).
    public var reportData: [UInt8]?
    /// Accept a quote whose TCB cannot be judged (no collateral), with a warning.
    public var allowUnknownTCB = false
    /// The lowest tcbEvaluationDataNumber of collateral accepted (Intel raises it at each TCB
    /// recovery); older collateral still within its window is refused (`tdx_tcb_out_of_date`).
    public var minimumEvaluationDataNumber: Int?

    public init() {}

    /// Decodes the `tdx:` section (a mapping) of a policy document; unknown keys, wrong types
    /// and bad values are refused with `policy_invalid` naming file:line:column and the path.
    ///
    ///     tdx:
    ///       allowDebug: false
    ///       requireSeptVeDisable: true
    ///       xfam: [e702060000000000]
    ///       mrtd: [{name: ovmf-2024.02, value: <96 hex>}]
    ///       allowAnyMeasurement: false
    ///       mrConfigId: [<96 hex>]
    ///       mrOwner: [<96 hex>]
    ///       mrOwnerConfig: [<96 hex>]
    ///       rtmrs: {0: [<96 hex>], 1: [...], 2: [...], 3: [...]}
    ///       reportData: <128 hex>
    ///       tcb:
    ///         acceptedStatuses: [UpToDate, SWHardeningNeeded]
    ///         dateBaseline: 2024-03-13T00:00:00Z
    ///         deniedAdvisories: [INTEL-SA-00837]
    ///         allowUnknown: false
    ///         minimumEvaluationDataNumber: 17
    public static func decode(_ node: ConfigNode, path: String = "tdx") throws -> TDXPolicy {
        let m = try PolicyDecoder.Mapping(node, path: path)
        try m.allowOnly(["allowDebug", "requireSeptVeDisable", "xfam", "mrtd", "allowAnyMeasurement", "mrConfigId", "mrOwner", "mrOwnerConfig", "rtmrs", "reportData", "tcb"])
        var p = TDXPolicy()
        if let n = m.optional("allowDebug") { p.allowDebug = try PolicyDecoder.bool(n, m.child("allowDebug")) }
        if let n = m.optional("requireSeptVeDisable") { p.requireSeptVEDisable = try PolicyDecoder.bool(n, m.child("requireSeptVeDisable")) }
        if let n = m.optional("xfam") { p.xfam = try hexList(n, m.child("xfam"), bytes: 8) }
        if let n = m.optional("mrtd") {
            p.mrtd = try PolicyDecoder.sequence(n, path: m.child("mrtd")).enumerated().map { i, entry in
                let e = try PolicyDecoder.Mapping(entry, path: "\(m.child("mrtd"))[\(i)]")
                try e.allowOnly(["name", "value"])
                let name = try e.requiredString("name")
                guard name.value.utf8.count <= 128 else { throw PolicyDecoder.invalid(name.node, e.child("name"), "must be at most 128 bytes") }
                return NamedValue(name: name.value, value: try hex(try e.required("value"), e.child("value"), bytes: 48))
            }
        }
        if let n = m.optional("allowAnyMeasurement") { p.allowAnyMeasurement = try PolicyDecoder.bool(n, m.child("allowAnyMeasurement")) }
        if let n = m.optional("mrConfigId") { p.mrConfigID = try hexList(n, m.child("mrConfigId"), bytes: 48) }
        if let n = m.optional("mrOwner") { p.mrOwner = try hexList(n, m.child("mrOwner"), bytes: 48) }
        if let n = m.optional("mrOwnerConfig") { p.mrOwnerConfig = try hexList(n, m.child("mrOwnerConfig"), bytes: 48) }
        if let n = m.optional("rtmrs") {
            let r = try PolicyDecoder.Mapping(n, path: m.child("rtmrs"))
            for (k, v) in r.entries {
                guard let s = k.scalar, let index = Int(s), (0...3).contains(index) else {
                    throw PolicyDecoder.invalid(k, r.path, "keys must be RTMR indices 0-3")
                }
                p.rtmrs[index] = try hexList(v, r.child(s), bytes: 48)
            }
        }
        if let n = m.optional("reportData") { p.reportData = try hex(n, m.child("reportData"), bytes: 64) }
        if let n = m.optional("tcb") {
            let t = try PolicyDecoder.Mapping(n, path: m.child("tcb"))
            try t.allowOnly(["acceptedStatuses", "dateBaseline", "deniedAdvisories", "allowUnknown", "minimumEvaluationDataNumber"])
            if let n = t.optional("minimumEvaluationDataNumber") {
                p.minimumEvaluationDataNumber = try PolicyDecoder.integer(n, t.child("minimumEvaluationDataNumber"), 1...1_000_000)
            }
            if let s = t.optional("acceptedStatuses") {
                let list = try PolicyDecoder.sequence(s, path: t.child("acceptedStatuses"))
                var set = Set<String>()
                for item in list {
                    guard let v = item.scalar, acceptableStatuses.contains(v) else {
                        throw PolicyDecoder.invalid(item, t.child("acceptedStatuses"),
                                                    "must list only \(acceptableStatuses.sorted().joined(separator: ", ")) (out-of-date platforms are accepted through dateBaseline, revoked ones never)")
                    }
                    set.insert(v)
                }
                guard set.contains("UpToDate") else { throw PolicyDecoder.invalid(s, t.child("acceptedStatuses"), "must include UpToDate") }
                p.acceptedTCBStatuses = set
            }
            if let d = t.optional("dateBaseline") {
                guard let s = d.scalar, let date = Date.parseRFC3339(s) else {
                    throw PolicyDecoder.invalid(d, t.child("dateBaseline"), "must be an RFC 3339 date-time such as 2024-03-13T00:00:00Z")
                }
                p.tcbDateBaseline = date
            }
            if let a = t.optional("deniedAdvisories") {
                p.deniedAdvisories = Set(try PolicyDecoder.sequence(a, path: t.child("deniedAdvisories")).map { item in
                    guard let v = item.scalar, !v.isEmpty, v.utf8.count <= 64, !v.contains(" ") else {
                        throw PolicyDecoder.invalid(item, t.child("deniedAdvisories"), "each entry must be an advisory id such as INTEL-SA-00837")
                    }
                    return v
                })
            }
            if let u = t.optional("allowUnknown") { p.allowUnknownTCB = try PolicyDecoder.bool(u, t.child("allowUnknown")) }
        }
        return p
    }

    static func hex(_ node: ConfigNode, _ path: String, bytes: Int) throws -> [UInt8] {
        guard let s = node.scalar, Hex.isLowercase(s, length: bytes * 2...bytes * 2), let v = try? Hex.decode(s) else {
            throw PolicyDecoder.invalid(node, path, "must be \(bytes) bytes in lowercase hex (\(bytes * 2) digits)")
        }
        return v
    }

    static func hexList(_ node: ConfigNode, _ path: String, bytes: Int) throws -> [[UInt8]] {
        let list = try PolicyDecoder.sequence(node, path: path)
        guard !list.isEmpty else { throw PolicyDecoder.invalid(node, path, "must list at least one value") }
        return try list.map { try hex($0, path, bytes: bytes) }
    }
}
