import VouchCore
import VouchPolicy
import VouchTEEWire

extension SNPVerifier {
    /// Check 10: the claims of an authenticated report, and every way it falls short of
    /// `policy`, in this order: signer (`snp_signer_not_allowed`), product line
    /// (`snp_product_not_allowed`), POLICY.DEBUG (`snp_debug_enabled`), POLICY.MIGRATE_MA
    /// (`snp_migration_agent_allowed`), PLATFORM_INFO.SMT_EN (`snp_smt_enabled`), VMPL
    /// (`snp_vmpl_not_allowed`), minimum REPORTED/COMMITTED/LAUNCH TCB per component for the
    /// product line (`snp_tcb_too_old`), MEASUREMENT (`snp_measurement_not_allowed`), HOST_DATA
    /// (`snp_host_data_mismatch`), ID_KEY_DIGEST (`snp_id_key_not_allowed`), AUTHOR_KEY_DIGEST
    /// (`snp_author_key_not_allowed`), REPORT_DATA (`snp_report_data_mismatch`). A listed
    /// measurement's name goes into the claims. MEASUREMENT is judged by `launch`'s allowlist
    /// only: `measurements` for a plain guest, `paravisorMeasurements` for an Azure CVM's
    /// paravisor.
    public static func appraise(_ verified: VerifiedSNPReport, policy: SNPPolicy, launch: SNPPolicy.Launch = .guest)
        -> (claims: SNPClaims, violations: [PolicyViolation]) {
        let r = verified.report
        var claims = SNPClaims(verified)
        var out: [PolicyViolation] = []
        func refuse(_ code: ErrorCode, _ path: String, _ expected: String, _ actual: String) {
            out.append(PolicyViolation(code: code, path: path, expected: expected, actual: actual))
        }

        let signer: SNPPolicy.Signer = verified.signer == .vlek ? .vlek : .vcek
        if !policy.signers.contains(signer) {
            refuse(.snpSignerNotAllowed, "snp.signer", policy.signers.map(\.rawValue).sorted().joined(separator: " or "), signer.rawValue)
        }
        if let products = policy.products, !products.contains(verified.product) {
            refuse(.snpProductNotAllowed, "snp.product", products.map(\.rawValue).sorted().joined(separator: " or "), verified.product.rawValue)
        }
        if r.policy.debug && !policy.allowDebug {
            refuse(.snpDebugEnabled, "snp.policy.debug", "false", "true")
        }
        if r.policy.migrateMA && !policy.allowMigrationAgent {
            refuse(.snpMigrationAgentAllowed, "snp.policy.migrateMA", "false", "true")
        }
        if r.platformInfo.smtEnabled && !policy.allowSMT {
            refuse(.snpSMTEnabled, "snp.platformInfo.smtEnabled", "false", "true")
        }
        if let allowed = policy.allowedVMPLs, !allowed.contains(r.vmpl) {
            refuse(.snpVMPLNotAllowed, "snp.vmpl", allowed.sorted().map(String.init).joined(separator: " or "), "\(r.vmpl)")
        }
        if let max = policy.maxVMPL, r.vmpl > max {
            refuse(.snpVMPLNotAllowed, "snp.vmpl", "<= \(max)", "\(r.vmpl)")
        }
        if !policy.minimumTCB.isEmpty {
            if let minimum = policy.minimumTCB[verified.product] {
                for (name, tcb, floor) in [("reported", r.reportedTCB, minimum.reported), ("committed", r.committedTCB, minimum.committed),
                                           ("launch", r.launchTCB, minimum.launch)] {
                    let c = tcb.components(for: verified.product)
                    for (component, value, least) in [("fmc", c.fmc, floor.fmc), ("bootloader", c.bootloader, floor.bootloader), ("tee", c.tee, floor.tee),
                                                      ("snp", c.snp, floor.snp), ("microcode", c.microcode, floor.microcode)] {
                        guard let least else { continue }
                        guard let value, value >= least else {
                            refuse(.snpTCBTooOld, "snp.tcb.\(name).\(component)", ">= \(least)", value.map(String.init) ?? "absent")
                            continue
                        }
                    }
                }
            } else {
                refuse(.snpTCBTooOld, "snp.tcb", "a minimum TCB for \(verified.product.rawValue) in the policy",
                       "none (the policy lists \(policy.minimumTCB.keys.map(\.rawValue).sorted().joined(separator: ", ")))")
            }
        }
        let allowed = policy.allowlist(launch)
        if !allowed.values.isEmpty {
            if let match = allowed.values.first(where: { $0.value == r.measurement }) {
                claims.measurementName = match.name
            } else {
                refuse(.snpMeasurementNotAllowed, launch == .guest ? "snp.measurement" : "snp.\(allowed.key)",
                       "one of \(allowed.values.map(\.name).joined(separator: ", "))", Hex.encode(r.measurement))
            }
        }
        if !policy.hostData.isEmpty && !policy.hostData.contains(r.hostData) {
            refuse(.snpHostDataMismatch, "snp.hostData", policy.hostData.map(Hex.encode).joined(separator: " or "), Hex.encode(r.hostData))
        }
        if !policy.idKeyDigests.isEmpty && !policy.idKeyDigests.contains(r.idKeyDigest) {
            refuse(.snpIDKeyNotAllowed, "snp.idKeyDigest", policy.idKeyDigests.map(Hex.encode).joined(separator: " or "), Hex.encode(r.idKeyDigest))
        }
        if !policy.authorKeyDigests.isEmpty && !policy.authorKeyDigests.contains(r.authorKeyDigest) {
            refuse(.snpAuthorKeyNotAllowed, "snp.authorKeyDigest", policy.authorKeyDigests.map(Hex.encode).joined(separator: " or "), Hex.encode(r.authorKeyDigest))
        }
        if let expected = policy.reportData, !constantTimeEqual(expected, r.reportData) {
            refuse(.snpReportDataMismatch, "snp.reportData", Hex.encode(expected), Hex.encode(r.reportData))
        }
        return (claims, out)
    }
}
