import Foundation
import VouchCore
import VouchEventLog
import VouchTPMWire

/// A trust policy: which hosts it covers and what their evidence must show before their agents
/// get certificates. See docs/policy.md for the file format. Values here are already validated.
public struct Policy: Sendable {
    public var name: String
    public var version: Int
    public var description = ""
    /// SHA-256 of the policy file's bytes and its path, recorded with every decision.
    public var sha256 = ""
    public var file = ""

    /// Precedence among policies that match a host: the highest wins; equal priorities are refused at load.
    public var priority = 0
    public var match = Match()

    public var akAlgorithms: [KeyTemplates.AKKind] = KeyTemplates.AKKind.allCases
    /// Accept AKs whose public area fixes SHA-1 as their signing hash (`attestationKey.allowSHA1`).
    /// Off by default: quotes and certifications are verified with the AK's own hash only.
    public var allowSHA1AK = false
    public var pcrBank: HashAlg
    public var pcrValues: [Int: [[UInt8]]]
    public var eventLog = EventLogRules()
    public var model = ModelRules()
    /// Oldest evidence accepted: time from the challenge nonce's issue to the decision.
    public var maxEvidenceAge: TimeInterval?
    /// Refuse quotes whose TPM clock is not marked safe (after an unorderly shutdown).
    public var requireSafeClock = false
    /// Accept a quote whose TPM firmwareVersion is below the host's last accepted one
    /// (`tpm.allowFirmwareDowngrade`). Off by default: a downgrade is refused (`firmware_downgraded`).
    public var allowFirmwareDowngrade = false
    /// Lowest TPM firmwareVersion accepted (`tpm.minimumFirmwareVersion`), if any.
    public var minimumFirmwareVersion: UInt64?
    public var certificate = CertificateTemplate()
    public var reattestation = Reattestation()
    /// The `snp:` section: what a host's SEV-SNP report must show; nil when the policy has none,
    /// and then the policy admits no SEV-SNP host (`covers`).
    public var snp: SNPPolicy?
    /// The `tdx:` section: what a host's TDX quote must show; nil when the policy has none, and
    /// then the policy admits no TDX host (`covers`).
    public var tdx: TDXPolicy?
    /// The `nitro:` section: what an AWS Nitro enclave's attestation document must show (read by
    /// `vouch evidence verify --kind nitro`; the broker does not admit Nitro hosts yet).
    public var nitro: NitroPolicy?
    /// The `devices:` section: the GPUs a host must present beside its CPU evidence (how many, which
    /// models, driver/VBIOS minimums, RIM-verified measurements); nil when the policy has none.
    public var devices: DevicesPolicy?

    public struct Match: Sendable, Equatable {
        /// Every label must be present on the host with this value.
        public var labels: [String: String] = [:]
        /// The EK certificate's issuer DN (RFC 2253, as `vouch status` shows it) must equal this.
        public var ekIssuer: String?
        public init() {}
        public var isCatchAll: Bool { labels.isEmpty && ekIssuer == nil }
    }

    public struct EventLogRules: Sendable, Equatable {
        public var required = false
        public var secureBoot = false
        public var bootApplicationsAllowed: [String] = []
        public var bootApplicationsDenied: [String] = []
        public var kernelCmdlineRequired: [String] = []
        public var kernelCmdlineForbidden: [String] = []
        public var dbxMustContain: [String] = []
        public init() {}
        public var hasRules: Bool {
            secureBoot || !bootApplicationsAllowed.isEmpty || !bootApplicationsDenied.isEmpty || !kernelCmdlineRequired.isEmpty
                || !kernelCmdlineForbidden.isEmpty || !dbxMustContain.isEmpty
        }

        /// The PCRs each rule reads its claims from (claims come only from quoted PCRs), keyed by
        /// the rule's path: Secure Boot and dbx are EFI variables measured into PCR 7; boot
        /// applications are EV_EFI_BOOT_SERVICES_APPLICATION events, in PCR 4 (boot manager and
        /// OS loaders; every real log in the test corpus) or PCR 2 (applications from option ROMs),
        /// so both are needed for an allow list to see every image; GRUB measures the kernel
        /// command line into PCR 8.
        public var requiredPCRs: [(rule: String, pcrs: [Int])] {
            var out: [(String, [Int])] = []
            if secureBoot { out.append(("eventLog.secureBoot", [7])) }
            if !bootApplicationsAllowed.isEmpty || !bootApplicationsDenied.isEmpty { out.append(("eventLog.bootApplications", [2, 4])) }
            if !kernelCmdlineRequired.isEmpty || !kernelCmdlineForbidden.isEmpty { out.append(("eventLog.kernelCommandLine", [8])) }
            if !dbxMustContain.isEmpty { out.append(("eventLog.dbxContains", [7])) }
            return out
        }
    }

    public struct ModelRules: Sendable, Equatable {
        public struct Allowed: Sendable, Equatable {
            public var name: String
            public var manifest: String
            public init(name: String, manifest: String) { self.name = name; self.manifest = manifest }
        }
        public var required = false
        public var allowed: [Allowed] = []
        public var denied: [String] = []
        /// Publishers whose OpenSSF model signatures the policy trusts, per signed model name
        /// (`model.publishers`, tried in this order): when non-empty, a measured model whose
        /// manifest `allowed` does not list must carry a signature from one of them that verifies
        /// and matches its files (docs/policy.md, "Signed models").
        public var publishers: [ModelPublisher] = []
        public init() {}
    }

    public struct CertificateTemplate: Sendable, Equatable {
        public var ttl: TimeInterval = 15 * 60
        public var maxTTL: TimeInterval = 24 * 3600
        public var spiffeIDTemplate = "spiffe://{trustDomain}/host/{hostId}/agent/{agentName}"
        public var agentKeyTypes: [String] = Policy.allAgentKeyTypes
        public init() {}
    }

    public struct Reattestation: Sendable, Equatable {
        public enum Action: String, Sendable { case revoke, untrust }
        public var interval: TimeInterval = 300
        public var action: Action = .revoke
        public var afterFailures = 1
        public var grace: TimeInterval = 0
        public init() {}
    }

    public static let allAgentKeyTypes = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"]
    public static let templatePlaceholders = ["{trustDomain}", "{hostId}", "{hostname}", "{agentName}"]

    public init(name: String, version: Int, pcrBank: HashAlg, pcrValues: [Int: [[UInt8]]]) {
        self.name = name
        self.version = version
        self.pcrBank = pcrBank
        self.pcrValues = pcrValues
    }

    public var certificateTTL: TimeInterval { certificate.ttl }

    /// The PCRs a quote must cover: every PCR the policy constrains, and every PCR its event-log
    /// rules read claims from (`EventLogRules.requiredPCRs`), all in `pcrs.bank`.
    public var pcrSelection: PCRSelection {
        let pcrs = Set(pcrValues.keys).union(eventLog.requiredPCRs.flatMap(\.pcrs))
        return PCRSelection(banks: [PCRBankSelection(hash: pcrBank, pcrs: pcrs.sorted())])
    }

    /// What the broker asks every quote for this policy to cover: `pcrSelection`, plus SHA-256
    /// PCR 23 for model measurements.
    public var quoteSelection: PCRSelection {
        var banks = pcrSelection.banks
        if let i = banks.firstIndex(where: { $0.hash == .sha256 }) {
            banks[i] = PCRBankSelection(hash: .sha256, pcrs: banks[i].pcrs + [ModelLog.pcr])
        } else {
            banks.append(PCRBankSelection(hash: .sha256, pcrs: [ModelLog.pcr]))
        }
        return PCRSelection(banks: banks)
    }

    public func matches(labels: [String: String], ekIssuer: String) -> Bool {
        match.labels.allSatisfy { labels[$0.key] == $0.value } && (match.ekIssuer.map { $0 == ekIssuer } ?? true)
    }

    /// The human name the policy gives a model manifest, if it lists it.
    public func modelName(for manifest: String) -> String? {
        model.allowed.first { $0.manifest == manifest }?.name
    }

    public var label: String { "\(name) v\(version)" }
}

/// One failed rule: the rule's path in the policy, what it expects and what the evidence shows.
public struct PolicyViolation: Sendable, Equatable, Codable {
    public var code: ErrorCode
    public var path: String
    public var expected: String
    public var actual: String

    public init(code: ErrorCode, path: String, expected: String, actual: String) {
        self.code = code
        self.path = path
        self.expected = expected
        self.actual = actual
    }

    public var message: String { "\(path): expected \(expected), got \(actual)" }
}

extension ErrorCode {
    public static let pcrNotAllowed = ErrorCode("pcr_not_allowed", status: 403)
    public static let pcrMissing = ErrorCode("pcr_missing", status: 403)
    public static let policyInvalid = ErrorCode("policy_invalid", status: 422)
    public static let noPolicy = ErrorCode("no_policy", status: 403)
    public static let eventLogMissing = ErrorCode("event_log_missing", status: 403)
    public static let secureBootDisabled = ErrorCode("secure_boot_disabled", status: 403)
    public static let bootApplicationNotAllowed = ErrorCode("boot_application_not_allowed", status: 403)
    public static let bootApplicationDenied = ErrorCode("boot_application_denied", status: 403)
    public static let kernelCmdlineMissing = ErrorCode("kernel_cmdline_missing", status: 403)
    public static let kernelCmdlineForbidden = ErrorCode("kernel_cmdline_forbidden", status: 403)
    public static let kernelCmdlineUnverified = ErrorCode("kernel_cmdline_unverified", status: 403)
    public static let dbxEntryMissing = ErrorCode("dbx_entry_missing", status: 403)
    public static let modelMissing = ErrorCode("model_missing", status: 403)
    /// The policy trusts model publishers (`model.publishers`); the measured model is neither on
    /// `model.allowed` nor carries a signature one of them made.
    public static let modelUnsigned = ErrorCode("model_unsigned", status: 403)
    public static let modelNotAllowed = ErrorCode("model_not_allowed", status: 403)
    public static let modelDenied = ErrorCode("model_denied", status: 403)
    public static let evidenceTooOld = ErrorCode("evidence_too_old", status: 403)
    public static let agentKeyNotAllowed = ErrorCode("agent_key_not_allowed", status: 403)
}

/// What a policy is evaluated on: PCR values from a verified quote, the claims the logs
/// established, the evidence's age and the agent key's type.
public struct PolicyInput: Sendable {
    public var pcrs: PCRValues
    public var claims: EvidenceClaims?
    public var evidenceAge: TimeInterval?
    public var agentKeyType: String?

    public init(pcrs: PCRValues, claims: EvidenceClaims? = nil, evidenceAge: TimeInterval? = nil, agentKeyType: String? = nil) {
        self.pcrs = pcrs; self.claims = claims; self.evidenceAge = evidenceAge; self.agentKeyType = agentKeyType
    }
}

/// The outcome of evaluating evidence against a policy: pure and total.
public enum PolicyDecision: Sendable, Equatable {
    case satisfied
    case violated([PolicyViolation])
}

extension Policy {
    /// Evaluates every rule and returns every violation, in the order of docs/policy.md:
    /// freshness, agent key, PCRs, event-log claims, model. The model rules, on the measured
    /// manifest: on `model.denied`, `model_denied`; else, with `model.publishers`, a manifest
    /// neither on `model.allowed` nor carrying a verified signature by one of them
    /// (`ModelClaims.signatures`, verified in the evidence's stage 2) is `model_unsigned`;
    /// else, with `model.allowed`, one not on it is `model_not_allowed`. No model measured, under
    /// `model.required`, `model.allowed` or `model.publishers`, is `model_missing`.
    public func evaluate(_ input: PolicyInput) -> PolicyDecision {
        var v: [PolicyViolation] = []
        func fail(_ code: ErrorCode, _ path: String, _ expected: String, _ actual: String) {
            v.append(PolicyViolation(code: code, path: path, expected: expected, actual: actual))
        }
        if let max = maxEvidenceAge, let age = input.evidenceAge, age > max {
            fail(.evidenceTooOld, "freshness.maxEvidenceAge", "at most \(Int(max)) s", "\(Int(age)) s")
        }
        if let key = input.agentKeyType, !certificate.agentKeyTypes.contains(key) {
            fail(.agentKeyNotAllowed, "certificate.agentKeyTypes", "one of [\(certificate.agentKeyTypes.joined(separator: ", "))]", key)
        }
        for index in pcrValues.keys.sorted() {
            let path = "pcrs.values.\(index)"
            guard let actual = input.pcrs.values[pcrBank]?[index] else {
                fail(.pcrMissing, path, "PCR \(index) in bank \(pcrBank.rawValue) quoted", "not quoted")
                continue
            }
            let allowed = pcrValues[index] ?? []
            if !allowed.contains(actual) {
                fail(.pcrNotAllowed, path, "one of [\(allowed.map { Hex.encode($0) }.joined(separator: ", "))]", Hex.encode(actual))
            }
        }
        if let boot = input.claims?.boot {
            // A rule can only be judged on claims from its PCRs: quoted, and extended by the log to
            // the quoted value. Otherwise a log that leaves a PCR's events out would hide them.
            let covered = Set(boot.pcrs ?? [])
            for (rule, pcrs) in eventLog.requiredPCRs {
                // Every firmware extends PCRs 0-7 at least with a separator, so a log always covers them.
                let missing = pcrs.filter { !covered.contains($0) }
                if !missing.isEmpty {
                    fail(.pcrMissing, rule, "PCRs \(pcrs) quoted in bank \(pcrBank.rawValue) and replayed from the event log",
                         "claims from PCRs \(covered.sorted())")
                }
            }
            if eventLog.secureBoot && boot.secureBoot != true {
                fail(.secureBootDisabled, "eventLog.secureBoot", "Secure Boot enabled", boot.secureBoot == false ? "disabled" : "not measured")
            }
            for app in boot.bootApplications {
                if eventLog.bootApplicationsDenied.contains(app.digest) {
                    fail(.bootApplicationDenied, "eventLog.bootApplications.denied", "no denied image", "\(app.path ?? "?") \(app.digest)")
                } else if !eventLog.bootApplicationsAllowed.isEmpty && !eventLog.bootApplicationsAllowed.contains(app.digest) {
                    fail(.bootApplicationNotAllowed, "eventLog.bootApplications.allowed", "an allowed image", "\(app.path ?? "?") \(app.digest)")
                }
            }
            // The token and dbx sets are built only for a policy with rules that read them: a
            // RHEL dbx is hundreds of entries, and every appraisal evaluates the policy.
            if !(eventLog.kernelCmdlineRequired.isEmpty && eventLog.kernelCmdlineForbidden.isEmpty) {
                let tokens = Set(boot.kernelCommandLines.flatMap { $0.split(separator: " ").map(String.init) })
                for required in eventLog.kernelCmdlineRequired where !tokens.contains(required) {
                    fail(.kernelCmdlineMissing, "eventLog.kernelCommandLine.required", required, boot.kernelCommandLines.isEmpty ? "no kernel command line measured" : "absent")
                }
                for forbidden in eventLog.kernelCmdlineForbidden where tokens.contains(forbidden) {
                    fail(.kernelCmdlineForbidden, "eventLog.kernelCommandLine.forbidden", "no \(forbidden)", "present")
                }
            }
            if !(eventLog.kernelCmdlineRequired.isEmpty && eventLog.kernelCmdlineForbidden.isEmpty), let unchecked = boot.uncheckedCommandEvents {
                fail(.kernelCmdlineUnverified, "eventLog.kernelCommandLine", "only GRUB strings in PCR 8, each checked against its digest",
                     "EV_IPL events \(unchecked) in PCR 8 whose data cannot be checked")
            }
            if !eventLog.dbxMustContain.isEmpty {
                let dbx = Set(boot.dbxEntries)
                for entry in eventLog.dbxMustContain where !dbx.contains(entry) {
                    fail(.dbxEntryMissing, "eventLog.dbxContains", entry, "not in the measured dbx (\(dbx.count) entries)")
                }
            }
        } else if eventLog.required || eventLog.hasRules {
            fail(.eventLogMissing, eventLog.required ? "eventLog.required" : "eventLog", "a firmware event log with the quote", "none")
        }
        if let measured = input.claims?.model {
            let manifest = measured.manifestDigest
            let listed = model.allowed.contains { $0.manifest == manifest }
            if model.denied.contains(manifest) {
                fail(.modelDenied, "model.denied", "a manifest not on the deny list", manifest)
            } else if !model.publishers.isEmpty {
                // Signed by a publisher of this policy, or admitted by the allowlist.
                let names = Set(model.publishers.map(\.name))
                if !listed && !(measured.signatures ?? []).contains(where: { names.contains($0.publisher) }) {
                    fail(.modelUnsigned, "model.publishers", "a model signed by one of [\(model.publishers.map(\.name).joined(separator: ", "))]"
                         + (model.allowed.isEmpty ? "" : " or an allowed manifest"), "\(manifest), no verified signature")
                }
            } else if !model.allowed.isEmpty && !listed {
                fail(.modelNotAllowed, "model.allowed", "one of [\(model.allowed.map { "\($0.name) \($0.manifest)" }.joined(separator: ", "))]", manifest)
            }
        } else if model.required || !model.allowed.isEmpty || !model.publishers.isEmpty {
            fail(.modelMissing, model.required ? "model.required" : model.allowed.isEmpty ? "model.publishers" : "model.allowed",
                 "a measured model (vouch-attester measure-model)", "no model log")
        }
        return v.isEmpty ? .satisfied : .violated(v)
    }

    /// A policy for confidential VMs only: it has an `snp:` or `tdx:` section and no `pcrs`
    /// (the file left them out). It covers no TPM host: with no PCR pinned it would judge a TPM's
    /// quote on nothing.
    public var isTEEOnly: Bool { pcrValues.isEmpty && (snp != nil || tdx != nil) }
}

/// The policies a broker serves, with deterministic precedence: among the policies whose `match`
/// fits a host, the one with the highest `priority` applies. Names and priorities are unique.
public struct PolicySet: Sendable {
    public let policies: [Policy]

    public init(_ policies: [Policy]) throws {
        guard !policies.isEmpty else { throw VouchError(.policyInvalid, "no policy files found") }
        var names: [String: Policy] = [:], priorities: [Int: Policy] = [:]
        for p in policies {
            if let other = names[p.name] {
                throw VouchError(.policyInvalid, "\(p.file): policy name \(p.name) is also used by \(other.file)", context: ["file": p.file, "path": "name"])
            }
            if let other = priorities[p.priority] {
                throw VouchError(.policyInvalid, "\(p.file): priority \(p.priority) is also used by \(other.file) (\(other.name)); priorities decide precedence and must differ",
                                 context: ["file": p.file, "path": "priority"])
            }
            names[p.name] = p
            priorities[p.priority] = p
        }
        self.policies = policies.sorted { $0.priority > $1.priority }
    }

    /// The policy for a host of `platform`, or nil when none matches: the highest-priority policy
    /// that covers the platform (`Policy.covers`) and whose `match` fits the labels and issuer.
    public func select(labels: [String: String], ekIssuer: String, platform: PolicyPlatform) -> Policy? {
        policies.first { $0.covers(platform) && $0.matches(labels: labels, ekIssuer: ekIssuer) }
    }
}

/// What a host attests with, as policy selection sees it; the raw values are the evidence kinds'.
public enum PolicyPlatform: String, Sendable, CaseIterable {
    case tpm
    case sevSNP = "sev-snp"
    case tdx
    /// An Azure confidential VM (SEV-SNP with the paravisor's vTPM): judged by the policy's `pcrs`
    /// (and event-log and model rules) for its vTPM quote and by its `snp:` section for the report.
    case azureSNPVTPM = "azure-snp-vtpm"
}

extension Policy {
    /// True when the policy can judge a host of `platform`: a TPM host under every policy that
    /// pins PCRs (all but `isTEEOnly` ones); a CPU TEE host only under a policy with its kind's
    /// section (`snp:`, `tdx:`): a policy written for TPM hosts says nothing about which guest may
    /// run, so it never admits one. An Azure confidential VM needs both: `pcrs` for its vTPM quote
    /// and an `snp:` section pinning its paravisor's launch (`snp.paravisorMeasurements`) for the
    /// SEV-SNP report under it — any other guest at VMPL 0 could write an HCL report of its own.
    public func covers(_ platform: PolicyPlatform) -> Bool {
        switch platform {
        case .tpm: return !isTEEOnly
        case .sevSNP: return snp != nil
        case .azureSNPVTPM: return snp?.paravisorMeasurements.isEmpty == false && !isTEEOnly
        case .tdx: return tdx != nil
        }
    }
}
