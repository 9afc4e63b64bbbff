import Foundation
import XCTest
import VouchCore
import VouchEventLog
import VouchPolicy
import VouchPolicyFiles
import VouchTPMWire
import VouchYAML

/// Every key of the policy language, every rejection (by code and path), precedence and loading.
final class PolicyLanguageTests: XCTestCase {
    static let z = String(repeating: "0", count: 64)
    static let a = String(repeating: "a", count: 64), b = String(repeating: "b", count: 64), c = String(repeating: "c", count: 64)

    static let full = """
    apiVersion: vouch/v1
    name: full
    version: 7
    description: every key
    priority: 50
    match:
      labels: {role: inference, env: prod}
      ekIssuer: "CN=swtpm-localca"
    attestationKey:
      algorithms: [rsa-2048]
      trust: activation
      allowSHA1: true
    pcrs:
      bank: sha256
      values:
        7: ["\(z)"]
    eventLog:
      required: true
      secureBoot: true
      bootApplications:
        allowed: ["\(a)"]
        denied: ["\(b)"]
      kernelCommandLine:
        required: [ro]
        forbidden: [rd.break]
      dbxContains: ["\(c)"]
    model:
      required: true
      allowed:
        - {name: m, manifest: "\(a)"}
      denied: ["\(b)"]
    freshness:
      maxEvidenceAge: 30s
    clock:
      requireSafe: true
    tpm:
      allowFirmwareDowngrade: true
      minimumFirmwareVersion: "20191023"
    certificate:
      ttl: 10m
      maxTTL: 1h
      spiffeIDTemplate: "spiffe://{trustDomain}/{label:env}/{hostname}/{agentName}"
      agentKeyTypes: [ec-p384]
    reattestation:
      interval: 60s
      onFailure: {action: untrust, afterFailures: 3, grace: 45s}
    """

    func decode(_ text: String) throws -> Policy {
        try PolicyDecoder.decode(YAMLParser.parse(Array(text.utf8), file: "p.yaml"), sha256: "s")
    }

    func assertRejected(_ text: String, _ path: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try decode(text), file: file, line: line) { error in
            let e = error as? VouchError
            XCTAssertEqual(e?.code, .policyInvalid, "\(error)", file: file, line: line)
            XCTAssertEqual(e?.context["path"], path, "\(error)", file: file, line: line)
            XCTAssertNotNil(e?.context["line"], file: file, line: line)
        }
    }

    func testEveryKeyDecodes() throws {
        let p = try decode(Self.full)
        XCTAssertEqual(p.priority, 50)
        XCTAssertEqual(p.match.labels, ["role": "inference", "env": "prod"])
        XCTAssertEqual(p.match.ekIssuer, "CN=swtpm-localca")
        XCTAssertEqual(p.akAlgorithms, [.rsa2048])
        XCTAssertTrue(p.eventLog.required && p.eventLog.secureBoot)
        XCTAssertEqual(p.eventLog.bootApplicationsAllowed, [Self.a])
        XCTAssertEqual(p.eventLog.bootApplicationsDenied, [Self.b])
        XCTAssertEqual(p.eventLog.kernelCmdlineRequired, ["ro"])
        XCTAssertEqual(p.eventLog.kernelCmdlineForbidden, ["rd.break"])
        XCTAssertEqual(p.eventLog.dbxMustContain, [Self.c])
        XCTAssertEqual(p.model.allowed, [.init(name: "m", manifest: Self.a)])
        XCTAssertEqual(p.model.denied, [Self.b])
        XCTAssertEqual(p.maxEvidenceAge, 30)
        XCTAssertTrue(p.requireSafeClock)
        XCTAssertTrue(p.allowSHA1AK)
        XCTAssertTrue(p.allowFirmwareDowngrade)
        XCTAssertEqual(p.minimumFirmwareVersion, 0x2019_1023)
        let minimal = try decode("apiVersion: vouch/v1\nname: m\nversion: 1\npcrs:\n  bank: sha256\n  values:\n    7: [\"\(Self.z)\"]\n")
        XCTAssertFalse(minimal.allowSHA1AK, "SHA-1 AKs only where allowed")
        XCTAssertFalse(minimal.allowFirmwareDowngrade)
        XCTAssertNil(minimal.minimumFirmwareVersion)
        XCTAssertEqual(p.certificate.ttl, 600)
        XCTAssertEqual(p.certificate.maxTTL, 3600)
        XCTAssertEqual(p.certificate.agentKeyTypes, ["ec-p384"])
        XCTAssertEqual(p.reattestation.interval, 60)
        XCTAssertEqual(p.reattestation.action, .untrust)
        XCTAssertEqual(p.reattestation.afterFailures, 3)
        XCTAssertEqual(p.reattestation.grace, 45)
        XCTAssertEqual(p.spiffeID(trustDomain: "t.example", hostID: "h", hostname: "gpu-1", agentName: "a1", labels: ["env": "prod"]),
                       "spiffe://t.example/prod/gpu-1/a1")
        XCTAssertNil(p.spiffeID(trustDomain: "t", hostID: "h", hostname: "gpu-1", agentName: "a1", labels: [:]), "missing label")
        XCTAssertNil(p.spiffeID(trustDomain: "t", hostID: "h", hostname: "gpu-1", agentName: "a1", labels: ["env": "a/b"]), "label value with a slash")
    }

    func testEveryKeyRejectsBadValues() {
        let f = Self.full
        let cases: [(String, String, String)] = [
            ("priority: 50", "priority: high", "priority"),
            ("priority: 50", "priority: 99999999", "priority"),
            ("  labels: {role: inference, env: prod}", "  labels: {Role: x}", "match.labels"),
            ("  labels: {role: inference, env: prod}", "  labels: [x]", "match.labels"),
            ("  ekIssuer: \"CN=swtpm-localca\"", "  ekIssuer: [a]", "match.ekIssuer"),
            ("  ekIssuer: \"CN=swtpm-localca\"", "  subject: x", "match.subject"),
            ("  trust: activation", "  trust: certificate", "attestationKey.trust"),
            ("  required: true\n  secureBoot: true", "  required: yes\n  secureBoot: true", "eventLog.required"),
            ("  secureBoot: true", "  secureBoot: on", "eventLog.secureBoot"),
            ("    allowed: [\"\(Self.a)\"]\n    denied: [\"\(Self.b)\"]\n  kernel", "    allowed: [\"abc\"]\n    denied: [\"\(Self.b)\"]\n  kernel", "eventLog.bootApplications.allowed"),
            ("    denied: [\"\(Self.b)\"]\n  kernel", "    denied: [\"\(Self.b.uppercased())\"]\n  kernel", "eventLog.bootApplications.denied"),
            ("    required: [ro]", "    required: [\"ro quiet\"]", "eventLog.kernelCommandLine.required"),
            ("    forbidden: [rd.break]", "    forbidden: rd.break", "eventLog.kernelCommandLine.forbidden"),
            ("  dbxContains: [\"\(Self.c)\"]", "  dbxContains: [\"zz\"]", "eventLog.dbxContains"),
            ("  dbxContains: [\"\(Self.c)\"]", "  dbx: []", "eventLog.dbx"),
            ("    - {name: m, manifest: \"\(Self.a)\"}", "    - {name: m, manifest: \"short\"}", "model.allowed[0].manifest"),
            ("  maxEvidenceAge: 30s", "  maxEvidenceAge: 2d", "freshness.maxEvidenceAge"),
            ("  maxEvidenceAge: 30s", "  maxAge: 30s", "freshness.maxAge"),
            ("  requireSafe: true", "  requireSafe: 1", "clock.requireSafe"),
            ("  allowSHA1: true", "  allowSHA1: yes", "attestationKey.allowSHA1"),
            ("  allowFirmwareDowngrade: true", "  allowFirmwareDowngrade: 1", "tpm.allowFirmwareDowngrade"),
            ("  minimumFirmwareVersion: \"20191023\"", "  minimumFirmwareVersion: \"0x20191023\"", "tpm.minimumFirmwareVersion"),
            ("  minimumFirmwareVersion: \"20191023\"", "  minimumFirmwareVersion: \"10000000000000000\"", "tpm.minimumFirmwareVersion"),
            ("  minimumFirmwareVersion: \"20191023\"", "  minimumFirmware: \"1\"", "tpm.minimumFirmware"),
            ("  ttl: 10m\n  maxTTL: 1h", "  ttl: 2h\n  maxTTL: 1h", "certificate.ttl"),
            ("  maxTTL: 1h", "  maxTTL: 30d", "certificate.maxTTL"),
            ("{trustDomain}/{label:env}/{hostname}/{agentName}", "{trustDomain}/{hostname}", "certificate.spiffeIDTemplate"),
            ("spiffe://{trustDomain}/{label:env}", "https://{trustDomain}/{label:env}", "certificate.spiffeIDTemplate"),
            ("{label:env}/{hostname}", "{label:Env}/{unknown}", "certificate.spiffeIDTemplate"),
            ("  agentKeyTypes: [ec-p384]", "  agentKeyTypes: [dsa-1024]", "certificate.agentKeyTypes"),
            ("  agentKeyTypes: [ec-p384]", "  agentKeyTypes: []", "certificate.agentKeyTypes"),
            ("  interval: 60s", "  interval: 1s", "reattestation.interval"),
            ("action: untrust", "action: shrug", "reattestation.onFailure.action"),
            ("afterFailures: 3", "afterFailures: 0", "reattestation.onFailure.afterFailures"),
            ("grace: 45s", "grace: soon", "reattestation.onFailure.grace"),
        ]
        for (from, to, path) in cases {
            XCTAssertTrue(f.contains(from), "fixture lacks \(from)")
            assertRejected(f.replacingOccurrences(of: from, with: to), path)
        }
    }

    func claims(secureBoot: Bool? = true, apps: [String] = [a], cmdline: String = "ro quiet", dbx: [String] = [c], model: String? = a,
                pcrs: [Int]? = Array(0...9), unchecked: [Int]? = nil) -> EvidenceClaims {
        var boot = BootClaims()
        boot.pcrs = pcrs
        boot.uncheckedCommandEvents = unchecked
        boot.secureBoot = secureBoot
        boot.bootApplications = apps.map { .init(pcr: 4, digest: $0, path: "/EFI/x.efi") }
        boot.kernelCommandLines = [cmdline]
        boot.dbxEntries = dbx
        return EvidenceClaims(boot: boot, model: model.map { ModelClaims(manifestDigest: $0, files: []) },
                              clock: ClockState(resetCount: 1, restartCount: 0, clock: 1, safe: true), rebootedSinceLastAttestation: false)
    }

    func codes(_ p: Policy, _ claims: EvidenceClaims?, age: TimeInterval? = 1, key: String? = "ec-p384") -> [ErrorCode] {
        let pcrs = PCRValues([.sha256: [7: [UInt8](repeating: 0, count: 32)]])
        guard case let .violated(v) = p.evaluate(PolicyInput(pcrs: pcrs, claims: claims, evidenceAge: age, agentKeyType: key)) else { return [] }
        return v.map(\.code)
    }

    func testEveryRuleDecides() throws {
        let p = try decode(Self.full)
        XCTAssertEqual(codes(p, claims()), [])
        XCTAssertEqual(codes(p, claims(), age: 31), [.evidenceTooOld])
        XCTAssertEqual(codes(p, claims(), key: "ec-p256"), [.agentKeyNotAllowed])
        XCTAssertEqual(codes(p, claims(secureBoot: false)), [.secureBootDisabled])
        XCTAssertEqual(codes(p, claims(secureBoot: nil)), [.secureBootDisabled])
        XCTAssertEqual(codes(p, claims(apps: [Self.a, Self.c])), [.bootApplicationNotAllowed])
        XCTAssertEqual(codes(p, claims(apps: [Self.b])), [.bootApplicationDenied])
        XCTAssertEqual(codes(p, claims(cmdline: "quiet")), [.kernelCmdlineMissing])
        XCTAssertEqual(codes(p, claims(cmdline: "ro rd.break")), [.kernelCmdlineForbidden])
        XCTAssertEqual(codes(p, claims(dbx: [])), [.dbxEntryMissing])
        XCTAssertEqual(codes(p, claims(model: Self.b)), [.modelDenied])
        XCTAssertEqual(codes(p, claims(model: Self.c)), [.modelNotAllowed])
        XCTAssertEqual(codes(p, claims(model: nil)), [.modelMissing])
        let noBoot = EvidenceClaims(boot: nil, model: ModelClaims(manifestDigest: Self.a, files: []),
                                    clock: ClockState(resetCount: 1, restartCount: 0, clock: 1, safe: true), rebootedSinceLastAttestation: false)
        XCTAssertEqual(codes(p, noBoot), [.eventLogMissing])
        // All at once: every violation, in rule order.
        XCTAssertEqual(codes(p, claims(secureBoot: false, apps: [Self.b], cmdline: "rd.break", dbx: [], model: nil), age: 99, key: "rsa-2048"),
                       [.evidenceTooOld, .agentKeyNotAllowed, .secureBootDisabled, .bootApplicationDenied, .kernelCmdlineMissing,
                        .kernelCmdlineForbidden, .dbxEntryMissing, .modelMissing])
    }

    /// Event-log rules read claims from fixed PCRs: the broker quotes them, and a rule whose PCRs
    /// the log did not replay to the quote is refused rather than judged on missing events.
    func testEventLogRulesNeedTheirPCRs() throws {
        let p = try decode(Self.full)
        XCTAssertEqual(p.pcrSelection.banks.map(\.hash), [.sha256])
        XCTAssertEqual(p.pcrSelection.banks.first?.pcrs, [2, 4, 7, 8])
        XCTAssertEqual(p.quoteSelection.banks.first?.pcrs, [2, 4, 7, 8, 23])
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: p.eventLog.requiredPCRs.map { ($0.rule, $0.pcrs) }),
                       ["eventLog.secureBoot": [7], "eventLog.bootApplications": [2, 4], "eventLog.kernelCommandLine": [8], "eventLog.dbxContains": [7]])
        // Without event-log rules, only the pinned PCRs (and the model's) are quoted.
        var plain = p
        plain.eventLog = Policy.EventLogRules()
        XCTAssertEqual(plain.quoteSelection.banks.first?.pcrs, [7, 23])

        XCTAssertEqual(codes(p, claims(pcrs: [0, 2, 4, 7])), [.pcrMissing])           // PCR 8 not replayed: the command line is unknown
        XCTAssertEqual(codes(p, claims(pcrs: [0])), [.pcrMissing, .pcrMissing, .pcrMissing, .pcrMissing])
        XCTAssertEqual(codes(p, claims(pcrs: nil)), [.pcrMissing, .pcrMissing, .pcrMissing, .pcrMissing], "claims that do not say their PCRs prove nothing")
        XCTAssertEqual(codes(p, claims(unchecked: [40])), [.kernelCmdlineUnverified])
        var noCmdline = p
        noCmdline.eventLog.kernelCmdlineRequired = []
        noCmdline.eventLog.kernelCmdlineForbidden = []
        XCTAssertEqual(codes(noCmdline, claims(pcrs: [2, 4, 7], unchecked: [40])), [], "no command-line rule, so PCR 8 is neither needed nor read")
    }

    func testPrecedence() throws {
        func policy(_ name: String, _ priority: Int, _ labels: [String: String], issuer: String? = nil) throws -> Policy {
            var p = try decode(PolicyTests.valid.replacingOccurrences(of: "name: test", with: "name: \(name)"))
            p.priority = priority
            p.match.labels = labels
            p.match.ekIssuer = issuer
            p.file = "\(name).yaml"
            return p
        }
        let set = try PolicySet([try policy("default", 0, [:]), try policy("prod", 10, ["env": "prod"]),
                                 try policy("prod-gpu", 20, ["env": "prod", "gpu": "h100"]), try policy("vendor", 5, [:], issuer: "CN=Acme EK CA")])
        XCTAssertEqual(set.select(labels: [:], ekIssuer: "CN=x", platform: .tpm)?.name, "default")
        XCTAssertEqual(set.select(labels: ["env": "prod"], ekIssuer: "CN=x", platform: .tpm)?.name, "prod")
        XCTAssertEqual(set.select(labels: ["env": "prod", "gpu": "h100"], ekIssuer: "CN=x", platform: .tpm)?.name, "prod-gpu")
        XCTAssertEqual(set.select(labels: ["gpu": "h100"], ekIssuer: "CN=Acme EK CA", platform: .tpm)?.name, "vendor")
        XCTAssertEqual(set.select(labels: ["env": "prod"], ekIssuer: "CN=Acme EK CA", platform: .tpm)?.name, "prod", "higher priority wins")
        XCTAssertNil(try PolicySet([try policy("only-prod", 1, ["env": "prod"])]).select(labels: [:], ekIssuer: "CN=x", platform: .tpm))
        XCTAssertThrowsError(try PolicySet([try policy("a", 1, [:]), try policy("b", 1, ["x": "y"])])) {
            XCTAssertEqual(($0 as? VouchError)?.context["path"], "priority")
        }
        XCTAssertThrowsError(try PolicySet([try policy("a", 1, [:]), try policy("a", 2, [:])])) {
            XCTAssertEqual(($0 as? VouchError)?.context["path"], "name")
        }
        XCTAssertThrowsError(try PolicySet([])) { XCTAssertEqual(($0 as? VouchError)?.code, .policyInvalid) }
    }

    /// A CPU TEE host is matched only by a policy with its kind's section: a TPM policy that fits
    /// its labels says nothing about which guest may run, so it never admits one.
    func testTEEHostsMatchOnlyPoliciesWithTheirSection() throws {
        func policy(_ name: String, _ priority: Int, snp: Bool = false, tdx: Bool = false) throws -> Policy {
            var p = try decode(PolicyTests.valid.replacingOccurrences(of: "name: test", with: "name: \(name)"))
            p.priority = priority
            p.match.labels = ["env": "prod"]
            p.snp = snp ? SNPPolicy() : nil
            p.tdx = tdx ? TDXPolicy() : nil
            return p
        }
        let tpmOnly = try PolicySet([try policy("prod", 10)])
        XCTAssertEqual(tpmOnly.select(labels: ["env": "prod"], ekIssuer: "CN=x", platform: .tpm)?.name, "prod")
        XCTAssertNil(tpmOnly.select(labels: ["env": "prod"], ekIssuer: "CN=x", platform: .sevSNP))
        XCTAssertNil(tpmOnly.select(labels: ["env": "prod"], ekIssuer: "CN=x", platform: .tdx))
        let set = try PolicySet([try policy("prod", 10), try policy("prod-snp", 5, snp: true), try policy("prod-tdx", 1, tdx: true)])
        XCTAssertEqual(set.select(labels: ["env": "prod"], ekIssuer: "CN=x", platform: .tpm)?.name, "prod")
        XCTAssertEqual(set.select(labels: ["env": "prod"], ekIssuer: "CN=x", platform: .sevSNP)?.name, "prod-snp")
        XCTAssertEqual(set.select(labels: ["env": "prod"], ekIssuer: "CN=x", platform: .tdx)?.name, "prod-tdx")
        XCTAssertNil(set.select(labels: [:], ekIssuer: "CN=x", platform: .sevSNP), "the section does not widen the labels matched")
    }

    /// A policy for confidential VMs only leaves `pcrs` out: it covers no TPM host (nothing of a
    /// quote would be judged). Without an `snp:` or `tdx:` section `pcrs` stays required.
    func testAPolicyWithATEESectionMayLeavePCRsOutAndThenCoversNoTPMHost() throws {
        let m = String(repeating: "6a", count: 48)
        let teeOnly = try decode("""
        apiVersion: vouch/v1
        name: cvm
        version: 1
        snp:
          measurements: [{name: guest, value: "\(m)"}]
        tdx:
          mrtd: [{name: td, value: "\(m)"}]
        """)
        XCTAssertTrue(teeOnly.isTEEOnly)
        XCTAssertEqual(teeOnly.pcrValues, [:])
        XCTAssertEqual(PolicyPlatform.allCases.filter(teeOnly.covers), [.sevSNP, .tdx])
        let set = try PolicySet([teeOnly])
        XCTAssertNil(set.select(labels: [:], ekIssuer: "CN=x", platform: .tpm), "a TPM host finds no policy: no_policy")
        XCTAssertEqual(set.select(labels: [:], ekIssuer: "CN=x", platform: .tdx)?.name, "cvm")
        // With pcrs as well, it covers TPM hosts too.
        var both = try decode(PolicyTests.valid)
        both.snp = SNPPolicy()
        XCTAssertFalse(both.isTEEOnly)
        XCTAssertTrue(both.covers(.tpm))
        for text in ["apiVersion: vouch/v1\nname: x\nversion: 1\n", "apiVersion: vouch/v1\nname: x\nversion: 1\nmodel: {required: true}\n"] {
            XCTAssertThrowsError(try decode(text), text) { e in
                XCTAssertEqual((e as? VouchError)?.code, .policyInvalid)
                XCTAssertEqual((e as? VouchError)?.context["path"], "pcrs", "without a TEE section pcrs is required")
            }
        }
        XCTAssertThrowsError(try decode("apiVersion: vouch/v1\nname: x\nversion: 1\npcrs: {bank: sha256}\nsnp: {}\n")) { e in
            XCTAssertEqual((e as? VouchError)?.context["path"], "pcrs.values", "pcrs given is pcrs checked")
        }
    }

    func testLoadingFilesAndDirectories() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-policies-\(UUID().uuidString.prefix(6))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try PolicyTests.valid.write(to: dir.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
        try Self.full.write(to: dir.appendingPathComponent("b.yml"), atomically: true, encoding: .utf8)
        try "ignored".write(to: dir.appendingPathComponent("README.md"), atomically: true, encoding: .utf8)
        let set = try PolicyFiles.loadSet([dir.path])
        XCTAssertEqual(set.policies.map(\.name), ["full", "test"], "sorted by priority")
        XCTAssertEqual(set.policies[0].file, dir.appendingPathComponent("b.yml").path)
        XCTAssertEqual(set.policies[1].sha256.count, 64)
        try "apiVersion: vouch/v1\nname: broken\n".write(to: dir.appendingPathComponent("c.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try PolicyFiles.loadSet([dir.path])) {
            XCTAssertEqual(($0 as? VouchError)?.context["file"], dir.appendingPathComponent("c.json").path)
        }
        XCTAssertThrowsError(try PolicyFiles.loadSet([dir.appendingPathComponent("missing").path])) { XCTAssertEqual(($0 as? VouchError)?.code, .config) }
    }
}
