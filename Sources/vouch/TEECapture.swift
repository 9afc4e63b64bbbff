import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchPolicy
import VouchTEEWire

// `vouch policy capture` for confidential VMs: a draft `snp:` or `tdx:` section holding exactly
// one report's or quote's values — drafted only from evidence that verifies.

/// What a TEE draft is made from: the verified claims, by kind.
enum CapturedTEE {
    case snp(SNPClaims)
    case azure(AzureSNPClaims)
    case tdx(TDXClaims)
}

/// Where the evidence of a draft came from, for its comments.
struct CaptureSource {
    var kind: EvidenceCLIKind
    /// The instant it was verified at (RFC 3339).
    var at: String
    /// "files a, b" or "host ID (hostname)".
    var origin: String
    var labels: [String: String] = [:]
    /// How to test the draft on the same evidence, for the header.
    var testHint: String
}

/// `vouch policy capture --kind KIND --at TIME [--roots DIR [--test-roots]] [--name NAME] FILE...`:
/// verifies the files as `vouch evidence verify` does (signatures, chains, CRL, collateral) and
/// drafts from them. Exit 0 drafted, 1 the evidence does not verify, 2 unreadable or usage.
func captureTEEFiles(_ args: Arguments) throws -> Int32 {
    guard args["evidence"] == nil, args["host"] == nil else {
        throw VouchError(.usage, "give --kind with evidence FILEs, or --evidence FILE, or --host ID: one of them")
    }
    let kind = try EvidenceCLIKind(args)
    let (atText, at) = try EvidenceCLIKind.at(args)
    guard !args.positional.isEmpty else { throw VouchError(.usage, "give the evidence FILEs (as for vouch evidence verify)") }
    let files: EvidenceFiles
    do { files = try EvidenceFiles(paths: args.positional) } catch let e as VouchError where e.code != .usage {
        CLI.error("vouch policy capture: \(CLI.oneLine(e.message))")
        return 2
    }
    let names = args.positional.map { URL(fileURLWithPath: $0).lastPathComponent }
    let source = CaptureSource(kind: kind, at: atText, origin: "files \(names.joined(separator: ", "))",
                               testHint: "vouch evidence verify --kind \(kind.rawValue) --at \(atText) --policy FILE \(args.positional.joined(separator: " "))")
    return try capture(kind, files, at: at, roots: try RootsOption(args), source: source, name: args["name"])
}

/// `--host ID` or `--evidence FILE` when the bundle is a CPU TEE host's (`tee`): the report or
/// quote the broker authenticated is verified again here, at the time the broker recorded it
/// (or `--at`), with the endorsement, CRL and collateral the broker used, under the pinned roots
/// (or `--roots`). Trusted, not re-checked: that it is this host's (its host-key signature and
/// REPORT_DATA binding to the broker's nonce were checked by the broker, and cannot be offline).
func captureTEEBundle(_ bundle: EvidenceBundle, _ tee: TEEEvidenceCopy, _ args: Arguments) throws -> Int32 {
    let kind: EvidenceCLIKind
    var known: [(kind: EvidenceFiles.Kind, path: String, bytes: [UInt8])] = []
    do {
        func add(_ k: EvidenceFiles.Kind, _ field: String, _ value: String?) throws {
            guard let value else { return }
            known.append((k, "tee.\(field)", try Base64.decode(value, field: "tee.\(field)")))
        }
        switch tee.kind {
        case EvidenceCLIKind.sevSNP.rawValue:
            kind = .sevSNP
            try add(.snpReport, "evidence.report", tee.evidence.report)
            try add(.certificate, "evidence.endorsement", tee.evidence.endorsement)
            try add(.crl, "evidence.crl", tee.evidence.crl)
        case EvidenceCLIKind.azureSNPVTPM.rawValue:
            kind = .azureSNPVTPM
            try add(.azureHCLReport, "evidence.report", tee.evidence.report)
            try add(.certificate, "evidence.endorsement", tee.evidence.endorsement)
            try add(.crl, "evidence.crl", tee.evidence.crl)
        case EvidenceCLIKind.tdx.rawValue:
            kind = .tdx
            try add(.tdxQuote, "evidence.quote", tee.evidence.quote)
            try add(.eventLog, "evidence.eventLog", tee.evidence.eventLog)
            try add(.tdxCollateralJSON, "collateral", tee.collateral)
        default:
            throw VouchError(.io, "the evidence bundle holds evidence of kind \(tee.kind.prefix(32)), which this vouch cannot verify")
        }
    } catch let e as VouchError where e.code != .usage {
        CLI.error("vouch policy capture: \(CLI.oneLine(e.message))")
        return 2
    }
    let roots = try RootsOption(args)
    if tee.simulated && roots == nil {
        throw VouchError(.usage, "host \(bundle.hostId) is simulated (software TEE): its evidence verifies only under the simulation's roots; give --roots DIR --test-roots, DIR holding that kind's (vouch-attester simulated-tee-platform's roots/\(kind == .tdx ? "tdx" : "sev-snp").pem)")
    }
    let atText = args["at"] ?? bundle.at
    guard let at = Date.parseRFC3339(atText) else { throw VouchError(.usage, "--at must be an RFC 3339 time") }
    let host = bundle.hostname.isEmpty ? bundle.hostId : "\(bundle.hostId) (\(bundle.hostname))"
    let source = CaptureSource(kind: kind, at: atText, origin: "host \(host), evidence recorded \(bundle.at)", labels: bundle.labels,
                               testHint: "vouch status --evidence \(bundle.hostId) --out e.json && vouch policy capture --evidence e.json")
    let name = args["name"] ?? "captured-\(bundle.hostname.isEmpty ? String(bundle.hostId.prefix(8)) : bundle.hostname)"
    return try capture(kind, EvidenceFiles(known: known), at: at, roots: roots, source: source, name: name)
}

/// Verifies, then prints the draft (exit 0), or the refusal (exit 1).
private func capture(_ kind: EvidenceCLIKind, _ files: EvidenceFiles, at: Date, roots: RootsOption?, source: CaptureSource, name: String?) throws -> Int32 {
    let result: TEEVerification<CapturedTEE>
    do {
        result = try verifiedForCapture(kind, files, at: at, roots: roots)
    } catch let e as VouchError where e.code == .config || e.code == .io {
        CLI.error("vouch policy capture: \(CLI.oneLine(e.message))")
        return 2
    }
    switch result {
    case let .rejected(violations, _):
        CLI.error("vouch policy capture: the \(kind.rawValue) evidence does not verify at \(source.at); nothing captured: "
                  + violations.map { "\($0.code.rawValue) \($0.path): expected \($0.expected), got \($0.actual)" }.joined(separator: "; "))
        return 1
    case let .verified(captured, warnings):
        let draft = draftTEEPolicy(captured, warnings: warnings, source: source, name: name)
        if captured.debug { CLI.error("vouch policy capture: warning: the guest is debuggable; the draft allows it only because this evidence does (review allowDebug)") }
        print(draft, terminator: "")
        return 0
    }
}

/// The evidence verified with every check of authenticity (signatures, chains, CRL, collateral
/// windows, a TCB level found) and a policy that allows what the draft itself then states:
/// debug, a migration agent, SEPT_VE_DISABLE clear. What remains refuses the capture.
func verifiedForCapture(_ kind: EvidenceCLIKind, _ files: EvidenceFiles, at: Date, roots: RootsOption?) throws -> TEEVerification<CapturedTEE> {
    var snp = SNPPolicy()
    snp.allowDebug = true
    snp.allowMigrationAgent = true
    var tdx = TDXPolicy()
    tdx.allowDebug = true
    tdx.requireSeptVEDisable = false
    switch kind {
    case .sevSNP:
        switch try snpVerification(files, at: at, nonce: nil, policy: snp, roots: roots) {
        case let .verified(c, warnings): return .verified(.snp(c), warnings: warnings)
        case let .rejected(v, _): return .rejected(v, claims: nil)
        }
    case .azureSNPVTPM:
        switch try azureVerification(files, at: at, nonce: nil, policy: snp, roots: roots) {
        case let .verified(c, warnings): return .verified(.azure(c), warnings: warnings)
        case let .rejected(v, _): return .rejected(v, claims: nil)
        }
    case .tdx:
        switch try tdxVerification(files, at: at, nonce: nil, policy: tdx, roots: roots) {
        case let .verified(c, warnings): return .verified(.tdx(c), warnings: warnings)
        case let .rejected(v, _): return .rejected(v, claims: nil)
        }
     case .nitro:
        throw VouchError(.usage, "policy capture drafts snp: and tdx: sections; write a nitro: section by hand (docs/policy.md)")
    case .nvidiaGPU, .composite:
        throw VouchError(.usage, "policy capture takes a CPU TEE's evidence (sev-snp, tdx, azure-snp-vtpm), not \(kind.rawValue)")
    }
}

extension CapturedTEE {
    var debug: Bool {
        switch self {
        case let .snp(c): return c.debug
        case let .azure(a): return a.snp.debug
        case let .tdx(c): return c.tdAttributes.debug
        }
    }

    var measurement: String {
        switch self {
        case let .snp(c): return c.measurement
        case let .azure(a): return a.snp.measurement
        case let .tdx(c): return c.mrtd
        }
    }
}

/// A draft policy (YAML) for confidential VMs only (no `pcrs`: it covers no TPM host) whose
/// `snp:` or `tdx:` section accepts exactly the captured values; comments name where each came
/// from; the verifier's warnings head it.
func draftTEEPolicy(_ captured: CapturedTEE, warnings: [TEEWarning], source: CaptureSource, name: String?) -> String {
    let safeName = draftName(name ?? "captured-\(source.kind.rawValue)-\(captured.measurement.prefix(8))")
    var y = draftHeader(comments: [
        "Draft captured by `vouch policy capture` from \(source.kind.rawValue) evidence verified at \(source.at)",
        "(\(source.origin)). It accepts exactly this guest's launch state and platform TCB, on confidential",
        "VMs only (no pcrs: it covers no TPM host). Review every value, then lint and test it:",
        "  vouch policy lint FILE && \(source.testHint)",
    ] + warnings.map { "Verifier warning \($0.code): \($0.message)\($0.advisories.isEmpty ? "" : " (\($0.advisories.joined(separator: ", ")))")." },
    name: safeName, description: "captured from \(source.kind.rawValue) evidence verified at \(source.at)", labels: source.labels)
    switch captured {
    case let .snp(c):
        y += snpSection(c, name: safeName, azure: nil)
    case let .azure(a):
        y += snpSection(a.snp, name: safeName, azure: a)
    case let .tdx(c):
        y += tdxSection(c, name: safeName)
    }
    return y
}

/// A section of a draft, written key by key, each after a comment saying where it came from.
/// A comment's lines are separated by "\n  # "; any other line break in it (from a value it
/// quotes) becomes a space.
private struct DraftSection {
    private(set) var text: String
    init(_ key: String) { text = "\(key):\n" }

    private static func comment(_ c: String) -> String {
        c.components(separatedBy: "\n  # ").map { "  # \(DraftText.comment($0))\n" }.joined()
    }
    mutating func add(_ comment: String, _ body: String) { text += Self.comment(comment) + "  \(body)\n" }
    /// `key: ["hex"]`: exactly the captured value, all zeros included. Zeros are a value too
    /// (HOST_DATA, MRCONFIGID, MROWNER and MROWNERCONFIG are the host's or owner's to choose):
    /// leaving the key out would accept any.
    mutating func exactly(_ key: String, _ hex: String, _ comment: String) {
        let zero = hex.allSatisfy { $0 == "0" }
        add(zero ? comment + " All zeros in this evidence (none given): the draft requires zeros.\n  # Leaving it out would accept any value the host chose." : comment,
            "\(key): [\"\(hex)\"]")
    }
    /// An allowlist of one named value.
    mutating func named(_ key: String, _ comment: String, name: String, value: String) {
        text += Self.comment(comment) + "  \(key):\n    - name: \(DraftText.quoted(name))\n      value: \"\(value)\"\n"
    }
    mutating func raw(_ lines: String) { text += lines }
}

private func snpSection(_ c: SNPClaims, name: String, azure: AzureSNPClaims?) -> String {
    var y = DraftSection("snp")
    if let azure {
        y.add("The SEV-SNP report inside the Azure HCL report; its REPORT_DATA binds the runtime claims (\(azure.runtimeClaimsHash)),\n"
              + "  # whose vTPM attestation key has SHA-256 \(azure.attestationKeySHA256). The vTPM's PCRs are not captured (no TPM quote\n"
              + "  # among the files).", "products: [\(c.product.rawValue)]")
    } else {
        y.add("The product line whose pinned ARK the \(c.signer.uppercased()) chains to (report version \(c.version)).", "products: [\(c.product.rawValue)]")
    }
    y.add(c.debug ? "WARNING: POLICY.DEBUG is SET in this report: the host can read and change the guest's memory. A production policy says false."
                  : "POLICY.DEBUG is clear in this report (guest policy \(c.policy.raw)).", "allowDebug: \(c.debug)")
    y.add("POLICY.MIGRATE_MA is \(c.policy.migrateMA ? "SET: a migration agent may be bound to this guest. Review." : "clear.")",
          "allowMigrationAgent: \(c.policy.migrateMA)")
    y.add("PLATFORM_INFO.SMT_EN is \(c.platformInfo.smtEnabled ? "set: the platform runs with SMT on" : "clear: SMT is off; false refuses a platform with SMT on").",
          "allowSMT: \(c.platformInfo.smtEnabled)")
    y.add("The VMPL this report was requested from.", "vmpl: [\(c.vmpl)]")
    y.add("Signed by a \(c.signer.uppercased()) issued by \(c.endorsement.issuer).", "signers: [\(c.signer)]")
    let t = c.tcb.reported
    let fmc = t.fmc.map { ", fmc: \($0)" } ?? ""
    y.raw("""
      # This report's REPORTED_TCB (\(t.raw)), which its \(c.signer.uppercased()) certifies: a lower patch level of any component is
      # refused. Raise it as AMD publishes fixes (committed and launch TCBs are not constrained).
      minimumTCB:
        \(c.product.rawValue):
          reported: {bootloader: \(t.bootloader), tee: \(t.tee), snp: \(t.snp), microcode: \(t.microcode)\(fmc)}

    """)
    if azure != nil {
        y.named("paravisorMeasurements", "MEASUREMENT: the launch digest of the paravisor (Azure's HCL firmware at VMPL 0), which wrote the HCL\n"
                + "  # report. Pin only paravisors: any other guest admitted here could write an HCL report of its own. Name the\n"
                + "  # paravisor release: the name goes into claims and EARs.", name: name, value: c.measurement)
    } else {
        y.named("measurements", "MEASUREMENT: the launch digest of the guest's initial memory (firmware, and kernel, initrd and command line\n"
                + "  # when measured). Name the image: the name goes into claims and EARs.", name: name, value: c.measurement)
    }
    y.exactly("hostData", c.hostData, "HOST_DATA the host supplied at launch.")
    y.exactly("idKeyDigests", c.idKeyDigest, "ID_KEY_DIGEST: the key that signed the guest's ID block.")
    y.exactly("authorKeyDigests", c.authorKeyDigest, "AUTHOR_KEY_DIGEST: the key that signed the ID key.")
    return y.text
}

private func tdxSection(_ c: TDXClaims, name: String) -> String {
    var y = DraftSection("tdx")
    let a = c.tdAttributes
    y.add(a.debug ? "WARNING: TDATTRIBUTES.DEBUG is SET in this quote: the host can read and change the TD's memory. A production policy says false."
                  : "TDATTRIBUTES.DEBUG is clear in this quote (attributes \(a.raw)).", "allowDebug: \(a.debug)")
    y.add("TDATTRIBUTES.SEPT_VE_DISABLE is \(a.septVeDisable ? "set" : "clear in this quote: true would refuse it. Review").",
          "requireSeptVeDisable: \(a.septVeDisable)")
    y.add("XFAM: the CPU extended features enabled in the TD.", "xfam: [\"\(c.xfam)\"]")
    y.named("mrtd", "MRTD: the TD's build-time measurement (its firmware). Name the image: the name goes into claims and EARs.", name: name, value: c.mrtd)
    y.exactly("mrConfigId", c.mrConfigId, "MRCONFIGID: the host's configuration of this TD.")
    y.exactly("mrOwner", c.mrOwner, "MROWNER: the TD's owner.")
    y.exactly("mrOwnerConfig", c.mrOwnerConfig, "MROWNERCONFIG: the owner's configuration.")
    y.raw("  # RTMRs \(c.rtmrsFromEventLog ? "replayed from the CCEL event log" : "as quoted (no event log among the evidence)"), zero ones too: a guest\n"
          + "  # that extends one this guest did not is refused. 0 firmware configuration, 1 boot loader and kernel, 2 kernel\n"
          + "  # command line and initrd, 3 extended at run time (drop an RTMR that changes from boot to boot).\n  rtmrs:\n"
          + c.rtmrs.enumerated().map { "    \($0.offset): [\"\($0.element)\"]\n" }.joined())
    var statuses = ["UpToDate"]
    if c.tcbStatus != "UpToDate", TDXPolicy.acceptableStatuses.contains(c.tcbStatus) { statuses.append(c.tcbStatus) }
    let advisories = c.advisories.isEmpty ? "" : "; advisories \(c.advisories.joined(separator: ", "))"
    y.raw("  # \(DraftText.comment("This platform's TCB status under the collateral (FMSPC \(c.fmspc)\(c.tcbDate.map { ", tcbDate \($0)" } ?? "")): \(c.tcbStatus)\(advisories)")).\n"
          + "  # Only it (and UpToDate) is accepted; collateral older than this TCB evaluation is refused.\n"
          + "  tcb:\n    acceptedStatuses: [\(statuses.joined(separator: ", "))]\n"
          + (c.tcbEvaluationDataNumber.map { "    minimumEvaluationDataNumber: \($0)\n" } ?? ""))
    return y.text
}
