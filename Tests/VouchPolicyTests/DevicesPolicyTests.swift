import Foundation
import XCTest
import VouchCore
import VouchPolicy
import VouchYAML

/// The `devices:` section: strict decoding (unknown keys and bad values refused with the path),
/// NVIDIA version comparison, and the `devices.gpus` rules on GPU facts.
final class DevicesPolicyTests: XCTestCase {
    func decode(_ text: String) throws -> DevicesPolicy {
        let root = try YAMLParser.parse(Array(text.utf8), file: "devices.yaml")
        guard case let .mapping(entries) = root.value, let node = entries.first(where: { $0.key.scalar == "devices" })?.value else {
            throw VouchError(.invalidValue, "no devices section")
        }
        return try DevicesPolicy.decode(node)
    }

    func refusedPath(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String? {
        do {
            _ = try decode(text)
            XCTFail("decoded: \(text)", file: file, line: line)
            return nil
        } catch let e as VouchError {
            XCTAssertEqual(e.code, .policyInvalid, file: file, line: line)
            return e.context["path"]
        } catch {
            XCTFail("\(error)", file: file, line: line)
            return nil
        }
    }

    static let full = """
    devices:
      gpus:
        count: 8
        models:
          - {project: "1010", projectSKU: "0200", chipSKU: "882"}
          - {project: G520}
        minDriverVersion: "550.54.14"
        minVBIOSVersion: "96.00.74.00.1A"
        referenceValues: reported
    """

    func testEverySetting() throws {
        let gpus = try XCTUnwrap(try decode(Self.full).gpus)
        XCTAssertEqual(gpus.count, 8)
        XCTAssertEqual(gpus.models, [GPUPolicy.Model(project: "1010", projectSKU: "0200", chipSKU: "882"), GPUPolicy.Model(project: "G520")])
        XCTAssertEqual(gpus.minDriverVersion, NvidiaVersion(driver: "550.54.14"))
        XCTAssertEqual(gpus.minVBIOSVersion, NvidiaVersion(vbios: "96.00.74.00.1a"))
        XCTAssertEqual(gpus.referenceValues, .reported)
    }

    func testDefaultsRequireReferenceValues() throws {
        let gpus = try XCTUnwrap(try decode("devices: {gpus: {}}\n").gpus)
        XCTAssertNil(gpus.count)
        XCTAssertEqual(gpus.models, [])
        XCTAssertEqual(gpus.referenceValues, .required)
        XCTAssertNil(try decode("devices: {}\n").gpus)
    }

    func testBadSettingsAreRefusedWithTheirPath() {
        XCTAssertEqual(refusedPath("devices: {cpus: {}}\n"), "devices.cpus")
        XCTAssertEqual(refusedPath("devices: {gpus: {count: 8, model: [x]}}\n"), "devices.gpus.model")
        XCTAssertEqual(refusedPath("devices: {gpus: {count: 0}}\n"), "devices.gpus.count")
        XCTAssertEqual(refusedPath("devices: {gpus: {count: 17}}\n"), "devices.gpus.count")
        XCTAssertEqual(refusedPath("devices: {gpus: {count: eight}}\n"), "devices.gpus.count")
        XCTAssertEqual(refusedPath("devices: {gpus: {models: []}}\n"), "devices.gpus.models")
        XCTAssertEqual(refusedPath("devices: {gpus: {models: [GH100]}}\n"), "devices.gpus.models[0]")
        XCTAssertEqual(refusedPath("devices: {gpus: {models: [{chipSKU: '882'}]}}\n"), "devices.gpus.models[0].project")
        XCTAssertEqual(refusedPath("devices: {gpus: {models: [{project: '10 10'}]}}\n"), "devices.gpus.models[0].project")
        XCTAssertEqual(refusedPath("devices: {gpus: {models: [{project: '1010', sku: '1'}]}}\n"), "devices.gpus.models[0].sku")
        XCTAssertEqual(refusedPath("devices: {gpus: {minDriverVersion: '550'}}\n"), "devices.gpus.minDriverVersion")
        XCTAssertEqual(refusedPath("devices: {gpus: {minDriverVersion: '550.x'}}\n"), "devices.gpus.minDriverVersion")
        XCTAssertEqual(refusedPath("devices: {gpus: {minDriverVersion: '96.00.74.00.1A'}}\n"), "devices.gpus.minDriverVersion")
        XCTAssertEqual(refusedPath("devices: {gpus: {minVBIOSVersion: '550.54.14'}}\n"), "devices.gpus.minVBIOSVersion")
        XCTAssertEqual(refusedPath("devices: {gpus: {minVBIOSVersion: '96.00.74.00.1G'}}\n"), "devices.gpus.minVBIOSVersion")
        XCTAssertEqual(refusedPath("devices: {gpus: {referenceValues: optional}}\n"), "devices.gpus.referenceValues")
        XCTAssertEqual(refusedPath("devices: {gpus: {count: 1, count: 2}}\n"), "devices.gpus.count")
    }

    func testPolicyFileCarriesTheSection() throws {
        let text = """
        apiVersion: vouch/v1
        name: gpu-host
        version: 1
        snp: {}
        \(Self.full)
        """
        let policy = try PolicyDecoder.decode(try YAMLParser.parse(Array(text.utf8), file: "p.yaml"), sha256: "")
        XCTAssertEqual(policy.devices?.gpus?.count, 8)
        let bad = text.replacingOccurrences(of: "count: 8", with: "count: 8\n    extra: 1")
        XCTAssertThrowsError(try PolicyDecoder.decode(try YAMLParser.parse(Array(bad.utf8), file: "p.yaml"), sha256: "")) {
            XCTAssertEqual(($0 as? VouchError)?.context["path"], "devices.gpus.extra")
        }
    }

    func testDriverVersionComparison() throws {
        func v(_ s: String) throws -> NvidiaVersion { try XCTUnwrap(NvidiaVersion(driver: s), s) }
        XCTAssertTrue(try v("550.90.07").isAtLeast(v("550.54.14")))
        XCTAssertFalse(try v("550.54.13").isAtLeast(v("550.54.14")))
        XCTAssertTrue(try v("580.95.05").isAtLeast(v("550.54.14")))
        XCTAssertTrue(try v("590.12").isAtLeast(v("590.12.0")))
        XCTAssertEqual(try v("590.12"), try v("590.12.00"))
        XCTAssertFalse(try v("545.00").isAtLeast(v("550.54.14")))
        XCTAssertTrue(try v("1000.0").isAtLeast(v("999.99.99")), "numbers, not text")
        for bad in ["", "550", "550.", ".550", "550..1", "550.54.14.1.2", "550.a", "550.+1", "550.-1", "1234567.0", "５５０.1", "550.54 "] {
            XCTAssertNil(NvidiaVersion(driver: bad), bad)
        }
    }

    func testVBIOSVersionComparison() throws {
        func v(_ s: String) throws -> NvidiaVersion { try XCTUnwrap(NvidiaVersion(vbios: s), s) }
        XCTAssertTrue(try v("96.00.9F.00.01").isAtLeast(v("96.00.74.00.1A")))
        XCTAssertTrue(try v("96.00.A5.00.01").isAtLeast(v("96.00.9F.00.01")), "hex, not decimal")
        XCTAssertFalse(try v("96.00.5E.00.01").isAtLeast(v("96.00.74.00.1A")))
        XCTAssertFalse(try v("96.00.74.00.19").isAtLeast(v("96.00.74.00.1A")))
        XCTAssertEqual(try v("96.00.74.00.1a"), try v("96.00.74.00.1A"))
        XCTAssertEqual(try v("96.00.74.00.1a").description, "96.00.74.00.1A")
        for bad in ["", "96.00.74.00", "96.00.74.00.1A.00", "96.0.74.00.1A", "96.00.74.00.1G", "96.00.74.00.+1", "96-00-74-00-1A", "９6.00.74.00.1A"] {
            XCTAssertNil(NvidiaVersion(vbios: bad), bad)
        }
        // The kinds never compare: a driver version is never "at least" a VBIOS minimum.
        XCTAssertFalse(try XCTUnwrap(NvidiaVersion(driver: "999.0")).isAtLeast(try v("00.00.00.00.00")))
        XCTAssertNotEqual(NvidiaVersion(driver: "96.00"), NvidiaVersion(vbios: "96.00.00.00.00"))
    }

    static func gpu(_ i: Int, driver: String = "580.95.05", vbios: String = "96.00.74.00.1A", project: String? = "1010",
                    results: [GPUFacts.Reference] = [.matched, .inactive]) -> GPUFacts {
        GPUFacts(device: "gpu[\(i)]", driverVersion: driver, vbiosVersion: vbios, project: project, projectSKU: "0200", chipSKU: "882",
                 measurements: results.enumerated().map { GPUFacts.Measurement(index: $0.offset + 1, result: $0.element) })
    }

    func testEvaluateCountModelsAndVersions() throws {
        var rules = try XCTUnwrap(try decode(Self.full).gpus)
        rules.referenceValues = .required
        let eight = (0..<8).map { Self.gpu($0) }
        XCTAssertEqual(rules.evaluate(eight), [])
        XCTAssertEqual(rules.evaluate(Array(eight.dropLast())).map(\.code), [.gpuCountMismatch])
        XCTAssertEqual(rules.evaluate([]).map(\.code), [.gpuCountMismatch])
        XCTAssertEqual(GPUPolicy().evaluate([]).map(\.code), [.gpuCountMismatch], "no count: at least one GPU")
        var mixed = eight
        mixed[2] = Self.gpu(2, project: "9999")
        mixed[3] = Self.gpu(3, project: nil)
        mixed[5] = Self.gpu(5, driver: "550.54.13")
        mixed[6] = Self.gpu(6, vbios: "96.00.5E.00.01")
        mixed[7] = Self.gpu(7, driver: "not-a-version")
        let v = rules.evaluate(mixed)
        XCTAssertEqual(v.map(\.code), [.gpuModelNotAllowed, .gpuModelNotAllowed, .gpuVersionTooOld, .gpuVersionTooOld, .gpuVersionTooOld])
        XCTAssertEqual(v.map(\.path), ["gpu[2].model", "gpu[3].model", "gpu[5].driverVersion", "gpu[6].vbiosVersion", "gpu[7].driverVersion"])
        // G520 with any SKU is allowed by the second model.
        XCTAssertEqual(rules.evaluate((0..<8).map { Self.gpu($0, project: "G520") }), [])
    }

    func testRequiredReferencesRefuseMissingAndMismatched() throws {
        var rules = GPUPolicy()
        let gpus = [Self.gpu(0, results: [.matched, .missing, .inactive, .mismatched]), Self.gpu(1)]
        let v = rules.evaluate(gpus)
        XCTAssertEqual(v.map(\.code), [.gpuReferenceMissing, .nvidiaGPUMeasurementMismatch])
        XCTAssertEqual(v.map(\.path), ["gpu[0].measurements[2]", "gpu[0].measurements[4]"])
        rules.referenceValues = .reported
        XCTAssertEqual(rules.evaluate(gpus), [])
    }
}
