import Foundation
import XCTest
import VouchCore
import VouchPolicy
import VouchTPMWire
import VouchYAML
import VouchEventLog

final class PolicyTests: XCTestCase {
    static let zero = String(repeating: "0", count: 64)
    static let valid = """
    apiVersion: vouch/v1
    name: test
    version: 3
    pcrs:
      bank: sha256
      values:
        0: ["\(zero)"]
        7: ["\(zero)", "\(String(repeating: "ab", count: 32))"]
    certificate:
      ttl: 10m
    """

    /// Input with PCRs and, optionally, a measured model manifest.
    func input(_ pcrs: PCRValues, _ manifest: String? = nil) -> PolicyInput {
        let clock = ClockState(resetCount: 1, restartCount: 0, clock: 1, safe: true)
        return PolicyInput(pcrs: pcrs, claims: EvidenceClaims(boot: nil, model: manifest.map { ModelClaims(manifestDigest: $0, files: []) },
                                                              clock: clock, rebootedSinceLastAttestation: false))
    }

    func decode(_ text: String, file: String = "p.yaml") throws -> Policy {
        try PolicyDecoder.decode(YAMLParser.parse(Array(text.utf8), file: file), sha256: "digest")
    }

    func assertRejected(_ text: String, path: String, line: Int? = nil, column: Int? = nil, file: StaticString = #filePath, sourceLine: UInt = #line) {
        XCTAssertThrowsError(try decode(text), file: file, line: sourceLine) { error in
            guard let e = error as? VouchError else { return XCTFail("untyped \(error)", file: file, line: sourceLine) }
            XCTAssertEqual(e.code, .policyInvalid, "\(e)", file: file, line: sourceLine)
            XCTAssertEqual(e.context["path"], path, "\(e)", file: file, line: sourceLine)
            XCTAssertEqual(e.context["file"], "p.yaml", file: file, line: sourceLine)
            if let line { XCTAssertEqual(e.context["line"], "\(line)", "\(e)", file: file, line: sourceLine) }
            if let column { XCTAssertEqual(e.context["column"], "\(column)", "\(e)", file: file, line: sourceLine) }
        }
    }

    func testValidPolicyDecodes() throws {
        let p = try decode(Self.valid)
        XCTAssertEqual(p.name, "test")
        XCTAssertEqual(p.version, 3)
        XCTAssertEqual(p.pcrBank, .sha256)
        XCTAssertEqual(p.pcrValues.keys.sorted(), [0, 7])
        XCTAssertEqual(p.pcrValues[7]?.count, 2)
        XCTAssertEqual(p.certificateTTL, 600)
        XCTAssertEqual(p.akAlgorithms, KeyTemplates.AKKind.allCases)
        XCTAssertEqual(p.pcrSelection.banks, [PCRBankSelection(hash: .sha256, pcrs: [0, 7])])
        XCTAssertEqual(p.sha256, "digest")
    }

    func testShippedPoliciesAreValid() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("policies")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".json") }
        XCTAssertFalse(files.isEmpty)
        for f in files {
            let path = dir.appendingPathComponent(f).path
            XCTAssertNoThrow(try PolicyDecoder.decode(YAMLParser.parse([UInt8](FileManager.default.contents(atPath: path)!), file: path), sha256: ""), f)
        }
    }

    func testJSONIsAccepted() throws {
        let json = #"{"apiVersion": "vouch/v1", "name": "j", "version": 1, "pcrs": {"bank": "sha1", "values": {"4": ["\#(String(repeating: "0", count: 40))"]}}}"#
        let p = try decode(json)
        XCTAssertEqual(p.pcrBank, .sha1)
        XCTAssertEqual(p.certificateTTL, 900, "default TTL is 15 minutes")
    }

    func testRejectionsNameTheKeyAndPosition() {
        assertRejected(Self.valid + "\nextra: 1", path: "extra", line: 11, column: 1)
        assertRejected(Self.valid.replacingOccurrences(of: "vouch/v1", with: "vouch/v2"), path: "apiVersion", line: 1, column: 13)
        assertRejected(Self.valid.replacingOccurrences(of: "name: test", with: "name: \"bad name\""), path: "name", line: 2)
        assertRejected(Self.valid.replacingOccurrences(of: "version: 3", with: "version: three"), path: "version", line: 3)
        assertRejected(Self.valid.replacingOccurrences(of: "version: 3", with: "version: 0"), path: "version")
        assertRejected(Self.valid.replacingOccurrences(of: "bank: sha256", with: "bank: md5"), path: "pcrs.bank", line: 5, column: 9)
        assertRejected(Self.valid.replacingOccurrences(of: "    0: [", with: "    24: ["), path: "pcrs.values", line: 7, column: 5)
        assertRejected(Self.valid.replacingOccurrences(of: "    0: [\"\(Self.zero)\"]", with: "    0: [\"00\"]"), path: "pcrs.values.0", line: 7)
        assertRejected(Self.valid.replacingOccurrences(of: "    0: [\"\(Self.zero)\"]", with: "    0: []"), path: "pcrs.values.0")
        assertRejected(Self.valid.replacingOccurrences(of: "    0: [\"\(Self.zero)\"]", with: "    0: \"\(Self.zero)\""), path: "pcrs.values.0")
        assertRejected(Self.valid.replacingOccurrences(of: "ttl: 10m", with: "ttl: 10 minutes"), path: "certificate.ttl", line: 10)
        assertRejected(Self.valid.replacingOccurrences(of: "ttl: 10m", with: "ttl: 30s"), path: "certificate.ttl")
        assertRejected(Self.valid.replacingOccurrences(of: "ttl: 10m", with: "ttl: 2d"), path: "certificate.ttl")
        assertRejected(Self.valid.replacingOccurrences(of: "ttl: 10m", with: "lifetime: 10m"), path: "certificate.lifetime")
        assertRejected(Self.valid.replacingOccurrences(of: "name: test\n", with: ""), path: "name")
        assertRejected(Self.valid.replacingOccurrences(of: "version: 3", with: "version: 3\nname: again"), path: "name", line: 4)
        assertRejected(Self.valid + "\nattestationKey:\n  algorithms: [dsa]", path: "attestationKey.algorithms")
        assertRejected("- just\n- a list", path: "document")
    }

    func testModelRules() throws {
        let m1 = String(repeating: "a1", count: 32), m2 = String(repeating: "b2", count: 32), m3 = String(repeating: "c3", count: 32)
        let p = try decode(Self.valid + "\nmodel:\n  required: true\n  allowed:\n    - name: llama\n      manifest: \(m1)\n  denied: [\"\(m2)\"]")
        XCTAssertEqual(p.model.required, true)
        XCTAssertEqual(p.modelName(for: m1), "llama")
        let zero = [UInt8](repeating: 0, count: 32)
        let pcrs = PCRValues([.sha256: [0: zero, 7: zero]])
        XCTAssertEqual(p.evaluate(input(pcrs, m1)), .satisfied)
        guard case let .violated(v1) = p.evaluate(input(pcrs, m2)) else { return XCTFail() }
        XCTAssertEqual(v1.map(\.code), [.modelDenied])
        guard case let .violated(v2) = p.evaluate(input(pcrs, m3)) else { return XCTFail() }
        XCTAssertEqual(v2.map(\.code), [.modelNotAllowed])
        XCTAssertEqual(v2.first?.path, "model.allowed")
        guard case let .violated(v3) = p.evaluate(input(PCRValues(), nil)) else { return XCTFail() }
        XCTAssertEqual(v3.map(\.code), [.pcrMissing, .pcrMissing, .modelMissing], "every violation is reported, in rule order")
        // Without model rules, any model (or none) is fine.
        XCTAssertEqual(try decode(Self.valid).evaluate(input(pcrs, m3)), .satisfied)

        assertRejected(Self.valid + "\nmodel:\n  denied: [\"abc\"]", path: "model.denied", line: 12)
        assertRejected(Self.valid + "\nmodel:\n  allowed:\n    - manifest: \(m1)", path: "model.allowed[0].name")
        assertRejected(Self.valid + "\nmodel:\n  allowed:\n    - name: x\n      manifest: \(m1.uppercased())", path: "model.allowed[0].manifest")
        assertRejected(Self.valid + "\nmodel:\n  required: yes please", path: "model.required")
        assertRejected(Self.valid + "\nmodel:\n  allow: []", path: "model.allow")
        assertRejected(Self.valid + "\nclock:\n  requireSafe: maybe", path: "clock.requireSafe")
    }

    func testYAMLSyntaxErrorsAndHostileDocuments() {
        let cases: [(String, String)] = [
            ("a: [unclosed", "syntax"),
            ("a: &x 1\nb: *x", "alias"),
            ("a: 1\n---\nb: 2", "two documents"),
            (String(repeating: "[", count: 100) + String(repeating: "]", count: 100), "deep"),
            ("", "empty"),
        ]
        for (text, label) in cases {
            XCTAssertThrowsError(try YAMLParser.parse(Array(text.utf8), file: "p.yaml"), label) { error in
                XCTAssertEqual((error as? VouchError)?.code, .yaml, label)
            }
        }
        XCTAssertThrowsError(try YAMLParser.parse([UInt8](repeating: 0x61, count: YAMLParser.maxBytes + 1), file: "big.yaml")) {
            XCTAssertEqual(($0 as? VouchError)?.code, .yaml)
        }
    }

    func testEvaluationListsEveryViolation() throws {
        let p = try decode(Self.valid)
        let zero = [UInt8](repeating: 0, count: 32)
        XCTAssertEqual(p.evaluate(input(PCRValues([.sha256: [0: zero, 7: [UInt8](repeating: 0xab, count: 32)]]))), .satisfied)
        let bad = [UInt8](repeating: 0x11, count: 32)
        guard case let .violated(v) = p.evaluate(input(PCRValues([.sha256: [0: bad]]))) else { return XCTFail("expected violations") }
        XCTAssertEqual(v.map(\.code), [.pcrNotAllowed, .pcrMissing])
        XCTAssertEqual(v.map(\.path), ["pcrs.values.0", "pcrs.values.7"])
        XCTAssertEqual(v[0].actual, Hex.encode(bad))
        // The right values in the wrong bank do not count.
        guard case .violated = p.evaluate(input(PCRValues([.sha1: [0: zero, 7: zero]]))) else { return XCTFail("wrong bank accepted") }
    }
}
