import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchPolicyFiles
import VouchTEEWire
import VouchYAML

/// `vouch evidence verify --kind sev-snp|tdx|azure-snp-vtpm|nitro|nvidia-gpu --at RFC3339 [--nonce HEX]
/// [--policy FILE] [--roots DIR] [--json] FILE...`: verifies a CPU TEE's evidence offline, as a
/// relying party or an auditor would, from the files a sample is made of (their kinds are told
/// by their content, not their names; see `EvidenceFiles`). Without `--policy`, authenticity and
/// freshness (signatures, chains, CRLs, collateral windows, a TCB level found) and the
/// verifier's defaults; with it, the policy's `snp:`, `tdx:` or `nitro:` section too. `--nonce`:
/// REPORT_DATA must be these bytes (zero-padded to 64); a Nitro document's `nonce` exactly these
/// (1-512) bytes; for nvidia-gpu, `--rims DIR` compares with the RIMs of DIR and the policy's
/// `devices:` section applies (EvidenceGPU.swift). Exit 0 verified, 1 refused, 2 unreadable or usage.
func evidenceCommand(_ argv: [String]) throws -> Int32 {
    guard argv.first == "verify" else { throw VouchError(.usage, "give a subcommand: verify --kind KIND --at TIME FILE...") }
    let args = try Arguments(Array(argv.dropFirst()), options: ["kind", "at", "nonce", "policy", "roots", "component", "rims", "rim-roots", "gpu-roots"], flags: ["json", "test-roots"], positional: 16)
    if args["kind"] == "nvidia-rim" { return try rimCommand(args) }
    guard args["component"] == nil else { throw VouchError(.usage, "--component is for --kind nvidia-rim") }
    let kind = try EvidenceCLIKind(args)
    guard kind == .nvidiaGPU || (args["rims"] == nil && args["rim-roots"] == nil) else { throw VouchError(.usage, "--rims and --rim-roots are for --kind nvidia-gpu") }
    let (atText, at) = try EvidenceCLIKind.at(args)
    guard !args.positional.isEmpty else { throw VouchError(.usage, "give the evidence FILEs") }
    var nonce: [UInt8]?
    if let hex = args["nonce"] {
        let most = kind == .nitro ? 512 : 64
        guard let bytes = try? Hex.decode(hex, field: "nonce"), (1...most).contains(bytes.count) else {
            throw VouchError(.usage, "--nonce must be 1-\(most) bytes of hex")
        }
        // Zeros bind nothing: report data of zeros is what a guest sends when it was given none.
        guard bytes.contains(where: { $0 != 0 }) else { throw VouchError(.usage, "--nonce of only zero bytes binds nothing") }
        nonce = bytes
    }
    let files: EvidenceFiles
    let sections: TEESections
    do {
        // A composite's first FILE is a request body (JSON), read by `verifyComposite`.
        files = kind == .composite ? EvidenceFiles(known: []) : try EvidenceFiles(paths: args.positional)
        sections = try args["policy"].map { try TEESections(file: $0) } ?? TEESections()
    } catch let e as VouchError {
        CLI.error("vouch evidence: \(CLI.oneLine(e.message))")
        return 2
    }
    let report: EvidenceReport
    do {
        let roots = try RootsOption(args)
        switch kind {
        case .sevSNP: report = try verifySNP(files, at: at, nonce: nonce, policy: sections.snp, roots: roots)
        case .azureSNPVTPM: report = try verifyAzure(files, at: at, nonce: nonce, policy: sections.snp, roots: roots)
        case .tdx: report = try verifyTDX(files, at: at, nonce: nonce, policy: sections.tdx, roots: roots)
        case .nitro: report = try verifyNitro(files, at: at, nonce: nonce, policy: sections.nitro, roots: roots)
        case .composite:
            guard nonce == nil || nonce?.count == 32 else { throw VouchError(.usage, "--nonce for composite is the challenge nonce: 32 bytes of hex") }
            let options = GPUOptions(rims: args["rims"], rimRoots: args["rim-roots"], testRoots: args.has("test-roots"), gpus: sections.devices?.gpus)
            report = try verifyComposite(args.positional, at: at, nonce: nonce, sections: sections, roots: roots, options: options,
                                         gpuRoots: try nvidiaRoots(args["gpu-roots"].map { RootsOption(directory: $0, pinned: !args.has("test-roots")) }))
        case .nvidiaGPU:
            let options = GPUOptions(rims: args["rims"], rimRoots: args["rim-roots"], testRoots: args.has("test-roots"), gpus: sections.devices?.gpus)
            report = try verifyNvidiaGPU(files, at: at, nonce: nonce, roots: roots, options: options)
        }
    } catch let e as VouchError where e.code == .usage || e.code == .config || e.code == .io {
        CLI.error("vouch evidence: \(CLI.oneLine(e.message))")
        return 2
    }
    if args.has("json") {
        print(report.json)
    } else {
        print("\(kind.rawValue): \(report.verified ? "verified" : "refused") at \(atText)")
        for w in report.warnings { print("warning    \(w.code): \(w.message)\(w.advisories.isEmpty ? "" : " (\(w.advisories.joined(separator: ", ")))")") }
        for v in report.violations { print("violation  \(v.code): \(v.path): expected \(v.expected), got \(v.actual)") }
        for line in report.summary { print(line) }
    }
    return report.verified ? 0 : 1
}

enum EvidenceCLIKind: String {
    case sevSNP = "sev-snp", tdx, azureSNPVTPM = "azure-snp-vtpm", nitro, nvidiaGPU = "nvidia-gpu", composite

    /// `--kind`, required.
    init(_ args: Arguments) throws {
        guard let name = args["kind"], let kind = EvidenceCLIKind(rawValue: name) else {
            throw VouchError(.usage, "--kind must be sev-snp, tdx, azure-snp-vtpm, nitro, nvidia-gpu, composite or nvidia-rim")
        }
        self = kind
    }

    /// `--at`, required: its text and the instant.
    static func at(_ args: Arguments) throws -> (String, Date) {
        guard let text = args["at"], let at = Date.parseRFC3339(text) else {
            throw VouchError(.usage, "--at must be an RFC 3339 time (the instant to verify at, e.g. 2025-06-01T00:00:00Z)")
        }
        return (text, at)
    }
}

/// What `evidence verify` prints: `verified`, the kind, `claims` (the verifier's, absent when
/// authenticity failed), `warnings` and `violations` ({code, path, expected, actual}).
struct EvidenceReport {
    var verified: Bool
    var kind: String
    var claimsJSON: String?
    var warnings: [TEEWarning]
    var violations: [PolicyViolation]
    var summary: [String]

    init<C: Codable & Sendable>(kind: String, result: TEEVerification<C>, summary: (C) -> [String]) {
        self.kind = kind
        switch result {
        case let .verified(claims, warnings):
            (verified, self.warnings, violations) = (true, warnings, [])
            claimsJSON = JSONCodec.pretty(claims)
            self.summary = summary(claims)
        case let .rejected(v, claims):
            (verified, warnings, violations) = (false, [], v)
            claimsJSON = claims.map { JSONCodec.pretty($0) }
            self.summary = claims.map(summary) ?? []
        }
    }

    var json: String {
        struct Out: Encodable {
            let verified: Bool
            let kind: String
            let warnings: [TEEWarning]
            let violations: [V]
        }
        struct V: Encodable { let code, path, expected, actual: String }
        var text = JSONCodec.pretty(Out(verified: verified, kind: kind, warnings: warnings,
                                        violations: violations.map { V(code: $0.code.rawValue, path: $0.path, expected: $0.expected, actual: $0.actual) }))
        // The claims are the verifier's own JSON, spliced in as the `claims` member.
        let claims = claimsJSON ?? "null"
        guard let close = text.lastIndex(of: "}") else { return text }
        text = String(text[..<close]).trimmingCharacters(in: .whitespacesAndNewlines) + ",\n  \"claims\" : " + claims.replacingOccurrences(of: "\n", with: "\n  ") + "\n}"
        return text
    }
}

/// A policy's TEE sections for `--policy FILE`: a Vouch policy file (its `snp:`, `tdx:`, `nitro:`
/// and `devices:`), or a YAML/JSON mapping holding only those sections.
struct TEESections {
    var snp: SNPPolicy?
    var tdx: TDXPolicy?
    var nitro: NitroPolicy?
    var devices: DevicesPolicy?

    init() {}

    init(file: String) throws {
        let bytes = try readEvidenceFile(file)
        let root = try YAMLParser.parse(bytes, file: file)
        guard case let .mapping(entries) = root.value, !entries.isEmpty else {
            throw VouchError(.config, "\(file): not a Vouch policy file, nor a mapping of snp:, tdx: and nitro: sections")
        }
        if entries.contains(where: { $0.key.scalar == "apiVersion" }) {
            let policy = try PolicyFiles.load(file: file)
            (snp, tdx, nitro, devices) = (policy.snp, policy.tdx, policy.nitro, policy.devices)
            return
        }
        for (key, node) in entries {
            switch key.scalar {
            case "snp": snp = try SNPPolicy.decode(node)
            case "tdx": tdx = try TDXPolicy.decode(node)
            case "nitro": nitro = try NitroPolicy.decode(node)
            case "devices": devices = try DevicesPolicy.decode(node)
            default: throw VouchError(.config, "\(key.mark): \(key.scalar ?? "a key") is not snp, tdx, nitro or devices (a file of TEE sections holds only those)")
            }
        }
    }
}

/// Reads an input file (at most 16 MiB); an unreadable one is exit 2.
func readEvidenceFile(_ path: String) throws -> [UInt8] {
    guard let attributes = try? FileManager.default.attributesOfItem(atPath: path), let size = attributes[.size] as? NSNumber,
          size.intValue <= 16 << 20, let data = FileManager.default.contents(atPath: path) else {
        throw VouchError(.io, "cannot read \(path) (a readable file of at most 16 MiB)")
    }
    return [UInt8](data)
}

// MARK: SEV-SNP and Azure

/// `--roots DIR` and `--test-roots`: roots other than the compiled-in ones. Pinned (the default):
/// they must be AMD's ARKs / Intel's root by fingerprint (e.g. fresher copies of AMD's chains);
/// with `--test-roots`, whatever DIR holds is trusted (a software TEE's chain — never for real
/// evidence: a sample folder's own roots would vouch for themselves).
struct RootsOption {
    var directory: String
    var pinned: Bool

    init(directory: String, pinned: Bool) {
        self.directory = directory
        self.pinned = pinned
    }

    /// `--roots DIR [--test-roots]`; nil without `--roots` (the compiled-in roots).
    init?(_ args: Arguments) throws {
        guard let directory = args["roots"] else {
            guard !args.has("test-roots") || args["rim-roots"] != nil else { throw VouchError(.usage, "--test-roots needs --roots DIR or --rim-roots PEM") }
            return nil
        }
        self.directory = directory
        pinned = !args.has("test-roots")
    }
}

private func snpStore(_ roots: RootsOption?) throws -> SNPTrustStore {
    guard let roots else { return try AMDRoots.trustStore() }
    return try SNPTrustStore(directory: URL(fileURLWithPath: roots.directory), pinning: roots.pinned ? .amd : .asLoaded)
}

private func snpPolicy(_ policy: SNPPolicy?, nonce: [UInt8]?) -> SNPPolicy {
    var p = policy ?? SNPPolicy()
    if let nonce { p.reportData = padded(nonce) }
    return p
}

/// A nonce of 1-64 bytes as the 64 bytes of report data it stands for (zero-padded).
func padded(_ nonce: [UInt8]) -> [UInt8] { nonce + [UInt8](repeating: 0, count: max(0, 64 - nonce.count)) }

private func snpSummary(_ c: SNPClaims) -> [String] {
    ["product    \(c.product) (signer \(c.signer), report v\(c.version))",
     "measurement \(c.measurement)",
     "debug      \(c.debug)  vmpl \(c.vmpl)",
     "reportData \(c.reportData)"]
}

func verifySNP(_ files: EvidenceFiles, at: Date, nonce: [UInt8]?, policy: SNPPolicy?, roots: RootsOption?) throws -> EvidenceReport {
    EvidenceReport(kind: "sev-snp", result: try snpVerification(files, at: at, nonce: nonce, policy: policy, roots: roots), summary: snpSummary)
}

/// The SEV-SNP report among `files` verified with the VCEK or VLEK and CRL among them.
func snpVerification(_ files: EvidenceFiles, at: Date, nonce: [UInt8]?, policy: SNPPolicy?, roots: RootsOption?) throws -> TEEVerification<SNPClaims> {
    let report = try files.one(.snpReport, "an SEV-SNP report (1184 bytes, or its hex)")
    let endorsement = try files.one(.certificate, "the VCEK or VLEK certificate (DER or PEM)")
    let verifier = SNPVerifier(trust: try snpStore(roots))
    return verifier.verify(SNPEvidence(report: report, endorsementKey: endorsement, crl: try files.atMostOne(.crl, "CRL")), at: at,
                           policy: snpPolicy(policy, nonce: nonce))
}

/// The Azure HCL report among `files` verified with the VCEK and CRL among them.
func azureVerification(_ files: EvidenceFiles, at: Date, nonce: [UInt8]?, policy: SNPPolicy?, roots: RootsOption?) throws -> TEEVerification<AzureSNPClaims> {
    let hcl = try files.one(.azureHCLReport, "an Azure HCL report (HCLA header)")
    let endorsement = try files.one(.certificate, "the VCEK certificate (DER or PEM)")
    let verifier = AzureSNPVerifier(snp: SNPVerifier(trust: try snpStore(roots)))
    var p = policy ?? SNPPolicy()
    // On Azure REPORT_DATA carries the runtime claims' hash; a relying party's nonce goes into the
    // runtime claims (user-data), compared exactly (zero-padded to 64 bytes).
    p.reportData = nil
    return verifier.verify(hclReport: hcl, endorsementKey: endorsement, crl: try files.atMostOne(.crl, "CRL"), at: at, policy: p,
                           userData: nonce.map(padded))
}

func verifyAzure(_ files: EvidenceFiles, at: Date, nonce: [UInt8]?, policy: SNPPolicy?, roots: RootsOption?) throws -> EvidenceReport {
    let result = try azureVerification(files, at: at, nonce: nonce, policy: policy, roots: roots)
    return EvidenceReport(kind: "azure-snp-vtpm", result: result) { c in
        snpSummary(c.snp) + ["vTPM AK    sha256:\(c.attestationKeySHA256)", "userData   \(c.userData ?? "none")"]
    }
}

// MARK: TDX

private func tdxRoots(_ option: RootsOption?) throws -> [Certificate] {
    guard let option else { return [try IntelSGXRoot.certificate()] }
    return try pemRoots(option, fingerprint: IntelSGXRoot.sha256Fingerprint, name: "the Intel SGX Root CA")
}

/// The self-signed certificates of `*.pem` files in `--roots DIR`; pinned, each must have
/// `fingerprint` (SHA-256 of its DER).
func pemRoots(_ option: RootsOption, fingerprint: String, name: String) throws -> [Certificate] {
    let out = try selfSignedRoots(in: option.directory)
    if option.pinned {
        for root in out where Hex.encode(Crypto.sha256(try root.der)) != fingerprint {
            throw VouchError(.config, "\(option.directory) holds a root that is not \(name) (\(root.subject)); --test-roots trusts other roots")
        }
    }
    return out
}

/// The self-signed certificates in the *.pem files of `--roots DIR`; none is a config error.
func selfSignedRoots(in roots: String) throws -> [Certificate] {
    let dir = URL(fileURLWithPath: roots)
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else {
        throw VouchError(.config, "cannot read the roots directory \(roots)")
    }
    var out: [Certificate] = []
    for name in names.sorted() where name.hasSuffix(".pem") {
        out += try Certificate.chain(pem: String(decoding: try readEvidenceFile(dir.appendingPathComponent(name).path), as: UTF8.self)).filter(\.isSelfSigned)
    }
    guard !out.isEmpty else { throw VouchError(.config, "\(roots) holds no self-signed root certificate (*.pem)") }
    return out
}

func verifyTDX(_ files: EvidenceFiles, at: Date, nonce: [UInt8]?, policy: TDXPolicy?, roots: RootsOption?) throws -> EvidenceReport {
    EvidenceReport(kind: "tdx", result: try tdxVerification(files, at: at, nonce: nonce, policy: policy, roots: roots)) { c in
        ["TCB        \(c.tcbStatus) (FMSPC \(c.fmspc))",
         "MRTD       \(c.mrtd)\(c.mrtdName.map { " (\($0))" } ?? "")",
         "debug      \(c.tdAttributes.debug)  RTMRs \(c.rtmrsFromEventLog ? "replayed from the event log" : "as quoted")",
         "reportData \(c.reportData)"]
    }
}

/// The TDX quote among `files` verified with the collateral (dcap-qvl JSON or PCS files) and
/// CCEL log among them.
func tdxVerification(_ files: EvidenceFiles, at: Date, nonce: [UInt8]?, policy: TDXPolicy?, roots: RootsOption?) throws -> TEEVerification<TDXClaims> {
    let quote = try files.one(.tdxQuote, "a TDX quote")
    var collateral: TDXCollateral?
    do {
        if let json = try files.atMostOne(.tdxCollateralJSON, "collateral JSON") {
            collateral = try TDXCollateral(dcapQVLJSON: json)
        } else if !files.all(.pcsFile).isEmpty {
            let byName = Dictionary(files.all(.pcsFile).map { (URL(fileURLWithPath: $0.path).lastPathComponent, $0.bytes) }, uniquingKeysWith: { a, _ in a })
            collateral = try TDXCollateral.pcsFiles { byName[$0] }
        }
    } catch let e as VouchError {
        // Collateral that does not parse is unreadable input, not a refusal of the quote.
        throw VouchError(.io, "the collateral does not parse: \(e.message)")
    }
    let verifier = TDXVerifier(roots: try tdxRoots(roots))
    let expectations = TDXExpectations(reportData: nonce.map(padded), eventLog: try files.atMostOne(.eventLog, "CCEL event log"))
    return verifier.verify(quote: quote, collateral: collateral, at: at, policy: policy ?? TDXPolicy(), expectations: expectations)
}

// MARK: AWS Nitro Enclaves

func verifyNitro(_ files: EvidenceFiles, at: Date, nonce: [UInt8]?, policy: NitroPolicy?, roots: RootsOption?) throws -> EvidenceReport {
    EvidenceReport(kind: "nitro", result: try nitroVerification(files, at: at, nonce: nonce, policy: policy, roots: roots)) { c in
        ["module     \(c.moduleId) at \(c.timestamp)",
         "PCR0       \(c.pcrs["0"] ?? "absent")\(c.pcrNames["0"].map { " (\($0))" } ?? "")",
         "debug      \(c.debug)",
         "nonce      \(c.nonce ?? "none")"]
    }
}

/// The Nitro attestation document among `files` verified against the AWS root (or `--roots`).
func nitroVerification(_ files: EvidenceFiles, at: Date, nonce: [UInt8]?, policy: NitroPolicy?, roots: RootsOption?) throws -> TEEVerification<NitroClaims> {
    let document = try files.one(.nitroDocument, "an AWS Nitro attestation document (CBOR COSE_Sign1 or its base64)")
    let verifier: NitroVerifier
    if let roots {
        let found = try pemRoots(roots, fingerprint: NitroRoot.sha256Fingerprint, name: "the AWS Nitro Enclaves root")
        guard found.count == 1 else { throw VouchError(.config, "\(roots.directory) must hold one root for --kind nitro, not \(found.count)") }
        verifier = try NitroVerifier(root: found[0])
    } else {
        verifier = try NitroVerifier()
    }
    return verifier.verify(document: document, at: at, policy: policy ?? NitroPolicy(), expectations: NitroExpectations(nonce: nonce))
}
