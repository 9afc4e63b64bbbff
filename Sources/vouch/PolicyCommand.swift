import Foundation
import VouchAPI
import VouchCore
import VouchEventLog
import VouchPolicy
import VouchPolicyFiles
import VouchTPMWire

/// `vouch policy lint FILE…`, `vouch policy test FILE --evidence FILE`, `vouch policy capture …`.
func policyCommand(_ argv: [String]) throws -> Int32 {
    switch argv.first {
    case "lint": return try policyLint(Array(argv.dropFirst()))
    case "test": return try policyTest(Array(argv.dropFirst()))
    case "capture": return try policyCapture(Array(argv.dropFirst()))
    default: throw VouchError(.usage, "give a subcommand: lint, test or capture")
    }
}

/// Validates each file, then the set (unique names and priorities). Exit 0 all valid, 1 otherwise.
private func policyLint(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: [], positional: 10_000)
    guard !args.positional.isEmpty else { throw VouchError(.usage, "policy lint needs at least one FILE or directory") }
    let results: [(file: String, result: Result<Policy, VouchError>)]
    do { results = try PolicyFiles.loadEach(args.positional) } catch let e as VouchError {
        CLI.error(e.message)
        return 1
    }
    var ok = !results.isEmpty
    for (file, result) in results {
        switch result {
        case let .success(p):
            // The effective quote: pinned PCRs, the PCRs event-log rules read, and the model's PCR 23.
            let quoted = p.quoteSelection.banks.map { "\($0.hash.rawValue) \($0.pcrs.map(String.init).joined(separator: ","))" }.joined(separator: "; ")
            let tee = [PolicyPlatform.sevSNP, .azureSNPVTPM, .tdx].filter(p.covers).map(\.rawValue).joined(separator: ", ")
            let covers = p.isTEEOnly ? "confidential VMs only (\(tee))" : "quotes PCRs \(quoted)" + (tee.isEmpty ? "" : "; confidential VMs (\(tee))")
            print("\(file): ok (\(p.label), priority \(p.priority)); \(covers)")
        case let .failure(e):
            ok = false
            CLI.error(e.message)
        }
    }
    if ok {
        do { _ = try PolicySet(results.map { try $0.result.get() }) } catch let e as VouchError {
            CLI.error(e.message)
            ok = false
        }
    }
    if results.isEmpty { CLI.error("no policy files found") }
    return ok ? 0 : 1
}

private func readBundle(_ path: String) throws -> EvidenceBundle {
    guard let data = FileManager.default.contents(atPath: path) else { throw UnreadableInput(description: "cannot read \(path)") }
    do { return try JSONDecoder().decode(EvidenceBundle.self, from: data) } catch {
        throw UnreadableInput(description: "\(path) is not an evidence bundle (vouch status --evidence HOST writes one)")
    }
}

private func pcrValues(_ bundle: EvidenceBundle) throws -> PCRValues {
    do { return try PCRValues(hexMap: bundle.pcrs, field: "pcrs") } catch let e as VouchError {
        throw UnreadableInput(description: "bad PCR values in the evidence bundle: \(e.message) (\(e.context["field"] ?? "?"))")
    }
}

/// Evaluates a policy against a saved evidence bundle. Exit 0 satisfied, 1 violated, 2 bad input.
private func policyTest(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: ["evidence"], flags: ["json"], positional: 1)
    guard let file = args.positional.first else { throw VouchError(.usage, "policy test needs a policy FILE") }
    do {
        let policy: Policy
        do { policy = try PolicyFiles.load(file: file) } catch let e as VouchError { throw UnreadableInput(description: e.message) }
        let bundle = try readBundle(try args.required("evidence"))
        if let tee = bundle.tee {
            // PCR and log rules say nothing about a confidential VM: its section is applied by
            // verifying the report or quote again.
            throw UnreadableInput(description: "\(bundle.hostId)'s evidence is a \(tee.kind.prefix(16)) \(tee.kind == "tdx" ? "quote" : "report"): "
                                  + "test a policy on it with vouch evidence verify --policy FILE (vouch policy capture --evidence drafts one)")
        }
        let applies = policy.covers(.tpm) && policy.matches(labels: bundle.labels, ekIssuer: bundle.ekIssuer)
        let decision = policy.evaluate(PolicyInput(pcrs: try pcrValues(bundle), claims: bundle.claims))
        let violations: [PolicyViolation]
        if case let .violated(v) = decision { violations = v } else { violations = [] }
        if args.has("json") {
            struct Report: Encodable { let policy: String; let host: String; let appliesToHost: Bool; let satisfied: Bool; let violations: [PolicyViolation] }
            print(JSONCodec.pretty(Report(policy: policy.label, host: bundle.hostId, appliesToHost: applies, satisfied: violations.isEmpty, violations: violations)))
        } else {
            print("\(policy.label) on evidence of host \(bundle.hostId) (\(bundle.hostname)) from \(bundle.at):")
            if !applies { print("  note: this policy's match does not select this host") }
            if !policy.model.publishers.isEmpty {
                // The bundle carries the broker's verdicts on signatures, not the signatures:
                // publishers are matched by name here, their keys are not checked again.
                print("  note: model signatures are as the broker verified them under the policy it applied (publishers matched by name, not re-verified)")
            }
            if violations.isEmpty { print("  satisfied") }
            for v in violations { print("  \(v.code): \(v.path): expected \(v.expected), got \(v.actual)") }
        }
        return violations.isEmpty ? 0 : 1
    } catch let u as UnreadableInput {
        CLI.error("policy test: \(u)")
        return 2
    }
}

/// Prints a draft policy (YAML) that accepts exactly the given host's current evidence, for review:
/// a TPM host's from its evidence bundle; a confidential VM's from its report or quote, verified
/// here first (`TEECapture.swift`), given as files (`--kind`) or in the bundle.
private func policyCapture(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: CLI.brokerOptions.union(["evidence", "host", "name", "kind", "at", "roots"]), flags: ["test-roots"],
                             positional: 16)
    if args["kind"] != nil || !args.positional.isEmpty { return try captureTEEFiles(args) }
    let draft: String
    do {
        let bundle: EvidenceBundle
        if let file = args["evidence"] {
            bundle = try readBundle(file)
        } else if let host = args["host"] {
            let (client, _) = try CLI.broker(args, admin: true)
            bundle = try client.call("GET", "/v1/hosts/\(host)/evidence", as: EvidenceBundle.self)
        } else {
            throw VouchError(.usage, "give --evidence FILE or --host ID")
        }
        try checkBundleFields(bundle)
        if let tee = bundle.tee { return try captureTEEBundle(bundle, tee, args) }
        guard args["at"] == nil, args["roots"] == nil, !args.has("test-roots") else {
            throw VouchError(.usage, "--at, --roots and --test-roots are for a confidential VM's evidence; this is a TPM host's")
        }
        draft = try draftPolicy(bundle, name: args["name"] ?? "captured-\(bundle.hostname.isEmpty ? String(bundle.hostId.prefix(8)) : bundle.hostname)")
    } catch let u as UnreadableInput {
        CLI.error("policy capture: \(u)")
        return 2
    }
    print(draft)
    return 0
}

/// A TPM host's draft: its PCR values (one bank, PCR 23 left to the model rules), the boot
/// applications its event log names, its model manifest. Values that are not what they claim to
/// be (PCR indices and hex, digests) refuse the bundle; a boot application's path (unverified,
/// from the log) is a one-line comment.
func draftPolicy(_ b: EvidenceBundle, name: String) throws -> String {
    let safeName = draftName(name)
    let pcrs = try pcrValues(b)
    func digest(_ d: String, _ what: String) throws -> String {
        guard d.count.isMultiple(of: 2), Hex.isLowercase(d, length: 40...128) else {
            throw UnreadableInput(description: "the evidence bundle's \(what) is not a lowercase hex digest; not drafting from it")
        }
        return d
    }
    var y = draftHeader(comments: [
        "Draft captured by `vouch policy capture` from host \(b.hostId) (\(b.hostname)), evidence of \(b.at).",
        "It accepts exactly this host's current state. Review every value, then lint and test it:",
        "  vouch policy lint FILE && vouch policy test FILE --evidence EVIDENCE.json",
    ], name: safeName, description: "captured from \(b.hostname.isEmpty ? b.hostId : b.hostname) on \(b.at)", labels: b.labels)
    let bank = [HashAlg.sha256, .sha384, .sha512, .sha1].first { pcrs.values[$0] != nil } ?? .sha256
    y += "pcrs:\n  bank: \(bank.rawValue)\n  values:\n"
    for (k, v) in (pcrs.values[bank] ?? [:]).sorted(by: { $0.key < $1.key }) where k != 23 {
        y += "    \(k): [\"\(Hex.encode(v))\"]\n"
    }
    if let boot = b.claims?.boot {
        y += "eventLog:\n  required: true\n"
        if boot.secureBoot == true { y += "  secureBoot: true\n" }
        let apps = Array(Set(try boot.bootApplications.map { try digest($0.digest, "boot application digest") })).sorted()
        if !apps.isEmpty {
            y += "  bootApplications:\n    allowed:\n"
            for a in apps {
                let paths = boot.bootApplications.filter { $0.digest == a }.compactMap(\.path)
                y += "      - \"\(a)\"" + (paths.isEmpty ? "" : "   # \(DraftText.comment(paths[0]))") + "\n"
            }
        }
    }
    if let model = b.claims?.model {
        y += "model:\n  required: true\n  allowed:\n    - name: \(DraftText.quoted("\(safeName) model (\(model.files.count) files)"))\n"
            + "      manifest: \(try digest(model.manifestDigest, "model manifest digest"))\n"
    }
    return y
}
