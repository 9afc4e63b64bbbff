import Foundation
import XCTest
@testable import VouchAttestation
import VouchCore
import VouchPolicy
import VouchYAML

/// The `nitro:` policy section's decoder, alone and inside a Vouch policy file.
final class NitroPolicyTests: XCTestCase {
    private func decode(_ yaml: String) throws -> NitroPolicy {
        let root = try YAMLParser.parse(Array(yaml.utf8), file: "nitro.yaml")
        guard case let .mapping(entries) = root.value, let nitro = entries.first(where: { $0.key.scalar == "nitro" })?.value else {
            throw VouchError(.invalidValue, "no nitro key")
        }
        return try NitroPolicy.decode(nitro)
    }

    func testDefaultsAndValues() throws {
        XCTAssertEqual(try decode("nitro: {}\n"), NitroPolicy())
        let v = String(repeating: "ab", count: 48)
        let p = try decode("nitro:\n  allowDebug: true\n  maxAge: 60\n  pcrs:\n    0: [{name: app, value: \(v)}]\n    8: [{name: signer, value: \(v)}, {name: old, value: \(v)}]\n")
        XCTAssertTrue(p.allowDebug)
        XCTAssertEqual(p.maxAge, 60)
        XCTAssertEqual(p.pcrs[0]?.map(\.name), ["app"])
        XCTAssertEqual(p.pcrs[8]?.count, 2)
    }

    func testBadValuesAreRefused() {
        let v = String(repeating: "ab", count: 48)
        for yaml in ["nitro: {extra: 1}\n", "nitro: {allowDebug: maybe}\n", "nitro: {maxAge: 0}\n",
                     "nitro:\n  pcrs:\n    5: [{name: a, value: \(v)}]\n", "nitro:\n  pcrs:\n    0: []\n",
                     "nitro:\n  pcrs:\n    0: [{name: a, value: abcd}]\n", "nitro:\n  pcrs:\n    0: [{name: a, value: \(v), extra: 1}]\n"] {
            XCTAssertThrowsError(try decode(yaml), yaml) { XCTAssertEqual(($0 as? VouchError)?.code, .policyInvalid, yaml) }
        }
    }

    func testAPolicyFileCarriesItsNitroSection() throws {
        let yaml = "apiVersion: vouch/v1\nname: n\nversion: 1\npcrs: {bank: sha256, values: {0: [\(String(repeating: "00", count: 32))]}}\nnitro: {allowDebug: true}\n"
        let policy = try PolicyDecoder.decode(try YAMLParser.parse(Array(yaml.utf8), file: "p.yaml"), sha256: "x")
        XCTAssertEqual(policy.nitro?.allowDebug, true)
    }

    /// A pinned PCR the document lacks fails (the samples all carry PCR0-15, so step 8 is run
    /// on a PCR map directly); another value fails; a match is named.
    /// Debug mode shows as zero image, kernel or application hashes; any one of them zero (or
    /// absent) is debug, whatever PCR8 says (zero for an unsigned image).
    func testAnyOfPCR0To2ZeroOrAbsentIsADebugEnclave() {
        let set = [UInt8](repeating: 7, count: 48), zero = [UInt8](repeating: 0, count: 48)
        XCTAssertFalse(NitroPolicy.isDebug(pcrs: [0: set, 1: set, 2: set, 8: zero]))
        XCTAssertTrue(NitroPolicy.isDebug(pcrs: [0: zero, 1: zero, 2: zero, 8: zero]))
        XCTAssertTrue(NitroPolicy.isDebug(pcrs: [0: set, 1: zero, 2: set, 8: set]), "a zero PCR1 beside a signed image")
        XCTAssertTrue(NitroPolicy.isDebug(pcrs: [0: zero, 1: set, 2: set, 8: set]))
        XCTAssertTrue(NitroPolicy.isDebug(pcrs: [1: set, 2: set]), "PCR0 absent")
    }

    func testPinnedPCRsMustBePresentAndAllowed() {
        var policy = NitroPolicy()
        policy.pcrs[0] = [.init(name: "app", value: [UInt8](repeating: 1, count: 48))]
        policy.pcrs[4] = [.init(name: "instance", value: [UInt8](repeating: 2, count: 48))]
        policy.pcrs[8] = [.init(name: "signer", value: [UInt8](repeating: 3, count: 48))]
        let r = NitroVerifier.appraise(pcrs: [0: [UInt8](repeating: 1, count: 48), 8: [UInt8](repeating: 4, count: 48)], policy: policy)
        XCTAssertEqual(r.violations.map(\.code.rawValue), ["nitro_pcr_missing", "nitro_pcr_not_allowed"])
        XCTAssertEqual(r.violations.map(\.path), ["document.pcrs.4", "document.pcrs.8"])
        XCTAssertEqual(r.names, ["0": "app"])
    }
}
