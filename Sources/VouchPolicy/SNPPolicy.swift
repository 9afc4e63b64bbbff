import VouchCore
import VouchTEEWire

/// What a verified AMD SEV-SNP report must show (the `snp:` section of a policy file). Every
/// field is optional in the file; the defaults refuse a debuggable guest and a guest that allows
/// a migration agent, and constrain nothing else. `SNPVerifier` (VouchAttestation) applies it
/// after the report is authenticated, and reports every rule the report breaks.
///
/// ```yaml
/// snp:
///   allowDebug: false            # POLICY.DEBUG must be clear (default false)
///   allowMigrationAgent: false   # POLICY.MIGRATE_MA must be clear (default false)
///   allowSMT: true               # false: PLATFORM_INFO.SMT_EN must be clear (default true)
///   vmpl: [0]                    # allowed VMPLs (0-3); or
///   maxVMPL: 1                   # the highest allowed VMPL
///   signers: [vcek]              # vcek, vlek (default both)
///   products: [Milan, Genoa]     # product lines (default all)
///   minimumTCB:                  # per product line; a product not listed is refused
///     Milan:
///       reported: {bootloader: 3, tee: 0, snp: 8, microcode: 115}
///       committed: {snp: 8}
///       launch: {snp: 8}
///     Turin:
///       reported: {fmc: 0, bootloader: 0, tee: 0, snp: 0, microcode: 9}
///   measurements:                # allowed MEASUREMENTs (48-byte hex), each with a name
///     - {name: ovmf-2025.02, value: 6a06…}
///   allowAnyMeasurement: false   # the broker admits hosts without `measurements` (default false)
///   paravisorMeasurements:       # Azure CVMs only: the paravisor's launch MEASUREMENTs, each named
///     - {name: azure-hcl-2025.03, value: 9d2e…}
///   hostData: [<32-byte hex>]    # allowed HOST_DATA values
///   idKeyDigests: [<48-byte hex>]
///   authorKeyDigests: [<48-byte hex>]
///   reportData: <64-byte hex>    # REPORT_DATA exactly (usually given per request, not in a file)
/// ```
public struct SNPPolicy: Sendable, Equatable {
    public enum Signer: String, Sendable, CaseIterable, Codable { case vcek, vlek }

    /// Minimum security patch levels for one TCB_VERSION; components left nil are not checked.
    public struct TCBMinimum: Sendable, Equatable {
        public var bootloader: UInt8?
        public var tee: UInt8?
        public var snp: UInt8?
        public var microcode: UInt8?
        /// Turin only.
        public var fmc: UInt8?
        public init(bootloader: UInt8? = nil, tee: UInt8? = nil, snp: UInt8? = nil, microcode: UInt8? = nil, fmc: UInt8? = nil) {
            self.bootloader = bootloader
            self.tee = tee
            self.snp = snp
            self.microcode = microcode
            self.fmc = fmc
        }
        public var isEmpty: Bool { bootloader == nil && tee == nil && snp == nil && microcode == nil && fmc == nil }
    }

    /// The minimum TCBs for one product line.
    public struct MinimumTCB: Sendable, Equatable {
        public var reported: TCBMinimum
        public var committed: TCBMinimum
        public var launch: TCBMinimum
        public init(reported: TCBMinimum = TCBMinimum(), committed: TCBMinimum = TCBMinimum(), launch: TCBMinimum = TCBMinimum()) {
            self.reported = reported
            self.committed = committed
            self.launch = launch
        }
    }

    public struct Measurement: Sendable, Equatable {
        public var name: String
        public var value: [UInt8]
        public init(name: String, value: [UInt8]) {
            self.name = name
            self.value = value
        }
    }

    public var allowDebug = false
    public var allowMigrationAgent = false
    public var allowSMT = true
    /// Allowed VMPLs; nil allows any.
    public var allowedVMPLs: Set<UInt32>?
    /// The highest allowed VMPL; nil allows any.
    public var maxVMPL: UInt32?
    public var signers: Set<Signer> = Set(Signer.allCases)
    /// Allowed product lines; nil allows any.
    public var products: Set<SNPProduct>?
    /// Empty: no TCB minimum. Otherwise a report of a product line without an entry is refused.
    public var minimumTCB: [SNPProduct: MinimumTCB] = [:]
    /// A plain SEV-SNP guest's allowed launch measurements (never an Azure CVM's: see
    /// `paravisorMeasurements`). Empty: any measurement (offline); the broker then refuses every
    /// host unless `allowAnyMeasurement`.
    public var measurements: [Measurement] = []
    /// The broker admits plain SEV-SNP hosts under this section without a measurement allowlist
    /// (`allowAnyMeasurement: true`). Off by default: a section that lists no `measurements` admits
    /// no host through the broker (`snp_measurement_not_allowed`). Never for an Azure CVM. The
    /// offline verifier (`vouch evidence verify`) does not read it.
    public var allowAnyMeasurement = false
    /// An Azure CVM's allowed launch measurements: its paravisor's (the HCL firmware at VMPL 0),
    /// used for `azure-snp-vtpm` evidence only, as `measurements` is for plain SEV-SNP guests
    /// only. The HCL report's REPORT_DATA is only as good as the code that wrote it: any other
    /// guest at VMPL 0 could write an HCL report of its own, so the broker admits an Azure CVM
    /// only under a section that pins these (`Policy.covers`), whatever `allowAnyMeasurement` says.
    /// Empty: any (offline).
    public var paravisorMeasurements: [Measurement] = []
    /// Empty: any HOST_DATA.
    public var hostData: [[UInt8]] = []
    /// Empty: any ID_KEY_DIGEST.
    public var idKeyDigests: [[UInt8]] = []
    /// Empty: any AUTHOR_KEY_DIGEST.
    public var authorKeyDigests: [[UInt8]] = []
    /// When set, REPORT_DATA must be exactly these 64 bytes.
    public var reportData: [UInt8]?

    public init() {}

    /// Whose launch a report's MEASUREMENT is: a plain SEV-SNP guest's, or an Azure CVM's
    /// paravisor's (the SEV-SNP report inside an HCL report).
    public enum Launch: Sendable {
        case guest, paravisor
    }

    /// The allowlist for `launch`'s measurements and its key in the section.
    public func allowlist(_ launch: Launch) -> (key: String, values: [Measurement]) {
        switch launch {
        case .guest: return ("measurements", measurements)
        case .paravisor: return ("paravisorMeasurements", paravisorMeasurements)
        }
    }

    /// REPORT_DATA for a nonce shorter than 64 bytes: the nonce, then zeros (how guests put a
    /// verifier's nonce into the report). Nil for a nonce longer than 64 bytes.
    public static func reportData(nonce: [UInt8]) -> [UInt8]? {
        nonce.count <= 64 ? nonce + [UInt8](repeating: 0, count: 64 - nonce.count) : nil
    }

    /// Decodes the `snp:` mapping. Unknown keys, wrong types and bad values are refused with
    /// `policy_invalid` naming the file position and the key path (as `PolicyDecoder`).
    public static func decode(_ node: ConfigNode, path: String = "snp") throws -> SNPPolicy {
        let m = try PolicyDecoder.Mapping(node, path: path)
        try m.allowOnly(["allowDebug", "allowMigrationAgent", "allowSMT", "vmpl", "maxVMPL", "signers", "products", "minimumTCB",
                         "measurements", "allowAnyMeasurement", "paravisorMeasurements", "hostData", "idKeyDigests", "authorKeyDigests", "reportData"])
        var p = SNPPolicy()
        if let n = m.optional("allowDebug") { p.allowDebug = try PolicyDecoder.bool(n, m.child("allowDebug")) }
        if let n = m.optional("allowMigrationAgent") { p.allowMigrationAgent = try PolicyDecoder.bool(n, m.child("allowMigrationAgent")) }
        if let n = m.optional("allowSMT") { p.allowSMT = try PolicyDecoder.bool(n, m.child("allowSMT")) }
        if let n = m.optional("vmpl") {
            let list = try PolicyDecoder.sequence(n, path: m.child("vmpl"))
            guard !list.isEmpty else { throw PolicyDecoder.invalid(n, m.child("vmpl"), "must list at least one VMPL") }
            p.allowedVMPLs = Set(try list.map { UInt32(try PolicyDecoder.integer($0, m.child("vmpl"), 0...3)) })
        }
        if let n = m.optional("maxVMPL") { p.maxVMPL = UInt32(try PolicyDecoder.integer(n, m.child("maxVMPL"), 0...3)) }
        if let n = m.optional("signers") {
            let list = try PolicyDecoder.sequence(n, path: m.child("signers"))
            p.signers = Set(try list.map { e in
                guard let s = e.scalar, let signer = Signer(rawValue: s) else { throw PolicyDecoder.invalid(e, m.child("signers"), "must be vcek or vlek") }
                return signer
            })
            guard !p.signers.isEmpty else { throw PolicyDecoder.invalid(n, m.child("signers"), "must not be empty") }
        }
        if let n = m.optional("products") {
            let list = try PolicyDecoder.sequence(n, path: m.child("products"))
            p.products = Set(try list.map { try product($0, m.child("products")) })
            guard !(p.products ?? []).isEmpty else { throw PolicyDecoder.invalid(n, m.child("products"), "must not be empty") }
        }
        if let n = m.optional("minimumTCB") {
            let byProduct = try PolicyDecoder.Mapping(n, path: m.child("minimumTCB"))
            for (k, v) in byProduct.entries {
                let prod = try product(k, byProduct.path)
                let path = byProduct.child(prod.rawValue)
                let tcbs = try PolicyDecoder.Mapping(v, path: path)
                try tcbs.allowOnly(["reported", "committed", "launch"])
                var minimum = MinimumTCB()
                if let r = tcbs.optional("reported") { minimum.reported = try tcbMinimum(r, tcbs.child("reported"), prod) }
                if let c = tcbs.optional("committed") { minimum.committed = try tcbMinimum(c, tcbs.child("committed"), prod) }
                if let l = tcbs.optional("launch") { minimum.launch = try tcbMinimum(l, tcbs.child("launch"), prod) }
                p.minimumTCB[prod] = minimum
            }
        }
        if let n = m.optional("measurements") { p.measurements = try measurementList(n, m.child("measurements")) }
        if let n = m.optional("allowAnyMeasurement") { p.allowAnyMeasurement = try PolicyDecoder.bool(n, m.child("allowAnyMeasurement")) }
        if let n = m.optional("paravisorMeasurements") {
            p.paravisorMeasurements = try measurementList(n, m.child("paravisorMeasurements"))
            guard !p.paravisorMeasurements.isEmpty else {
                throw PolicyDecoder.invalid(n, m.child("paravisorMeasurements"), "must list at least one measurement (leave the key out for no Azure CVMs)")
            }
        }
        if let n = m.optional("hostData") { p.hostData = try hexList(n, m.child("hostData"), bytes: 32, what: "HOST_DATA") }
        if let n = m.optional("idKeyDigests") { p.idKeyDigests = try hexList(n, m.child("idKeyDigests"), bytes: 48, what: "SHA-384") }
        if let n = m.optional("authorKeyDigests") { p.authorKeyDigests = try hexList(n, m.child("authorKeyDigests"), bytes: 48, what: "SHA-384") }
        if let n = m.optional("reportData") {
            p.reportData = try Hex.decode(PolicyDecoder.digest(n, m.child("reportData"), bytes: 64, alg: "REPORT_DATA"))
        }
        return p
    }

    /// A list of `{name, value}` with 48-byte MEASUREMENTs.
    private static func measurementList(_ node: ConfigNode, _ path: String) throws -> [Measurement] {
        try PolicyDecoder.sequence(node, path: path).enumerated().map { i, entry in
            let e = try PolicyDecoder.Mapping(entry, path: "\(path)[\(i)]")
            try e.allowOnly(["name", "value"])
            let name = try e.requiredString("name").value
            return Measurement(name: name, value: try Hex.decode(PolicyDecoder.digest(try e.required("value"), e.child("value"), bytes: 48, alg: "MEASUREMENT")))
        }
    }

    private static func product(_ node: ConfigNode, _ path: String) throws -> SNPProduct {
        guard let s = node.scalar, let p = SNPProduct(rawValue: s) else {
            throw PolicyDecoder.invalid(node, path, "must be one of \(SNPProduct.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return p
    }

    private static func tcbMinimum(_ node: ConfigNode, _ path: String, _ product: SNPProduct) throws -> TCBMinimum {
        let m = try PolicyDecoder.Mapping(node, path: path)
        try m.allowOnly(product.hasFMC ? ["bootloader", "tee", "snp", "microcode", "fmc"] : ["bootloader", "tee", "snp", "microcode"])
        func level(_ key: String) throws -> UInt8? {
            guard let n = m.optional(key) else { return nil }
            return UInt8(try PolicyDecoder.integer(n, m.child(key), 0...255))
        }
        let t = TCBMinimum(bootloader: try level("bootloader"), tee: try level("tee"), snp: try level("snp"), microcode: try level("microcode"),
                           fmc: try level("fmc"))
        guard !t.isEmpty else { throw PolicyDecoder.invalid(node, path, "must name at least one component") }
        return t
    }

    private static func hexList(_ node: ConfigNode, _ path: String, bytes: Int, what: String) throws -> [[UInt8]] {
        let list = try PolicyDecoder.sequence(node, path: path)
        guard !list.isEmpty else { throw PolicyDecoder.invalid(node, path, "must list at least one value") }
        return try list.map { try Hex.decode(PolicyDecoder.digest($0, path, bytes: bytes, alg: what)) }
    }
}

extension ErrorCode {
    // SEV-SNP expectations (SNPPolicy), applied to an authenticated report.
    /// POLICY.DEBUG is set and the policy does not allow debuggable guests.
    public static let snpDebugEnabled = ErrorCode("snp_debug_enabled", status: 403)
    /// POLICY.MIGRATE_MA is set and the policy does not allow a migration agent.
    public static let snpMigrationAgentAllowed = ErrorCode("snp_migration_agent_allowed", status: 403)
    /// PLATFORM_INFO.SMT_EN is set and the policy does not allow SMT.
    public static let snpSMTEnabled = ErrorCode("snp_smt_enabled", status: 403)
    public static let snpVMPLNotAllowed = ErrorCode("snp_vmpl_not_allowed", status: 403)
    /// A TCB component is below the policy's minimum (or the product has no minimum listed).
    public static let snpTCBTooOld = ErrorCode("snp_tcb_too_old", status: 403)
    public static let snpMeasurementNotAllowed = ErrorCode("snp_measurement_not_allowed", status: 403)
    public static let snpHostDataMismatch = ErrorCode("snp_host_data_mismatch", status: 403)
    public static let snpIDKeyNotAllowed = ErrorCode("snp_id_key_not_allowed", status: 403)
    public static let snpAuthorKeyNotAllowed = ErrorCode("snp_author_key_not_allowed", status: 403)
    public static let snpSignerNotAllowed = ErrorCode("snp_signer_not_allowed", status: 403)
    public static let snpProductNotAllowed = ErrorCode("snp_product_not_allowed", status: 403)
    /// REPORT_DATA is not the expected 64 bytes (the nonce or key binding).
    public static let snpReportDataMismatch = ErrorCode("snp_report_data_mismatch", status: 403)
}
