import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEEWire
import VouchTestSupport

/// The corpus's NVIDIA Hopper samples (Tests/Fixtures/nvidia-gpu, manifest.json) at the pinned time.
enum GPUSamples {
    static func text(_ path: String) throws -> String { try String(decoding: Data(contentsOf: fixture("nvidia-gpu/\(path)")), as: UTF8.self) }
    static func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: fixture("nvidia-gpu/\(path)"))) }
    static func transcript(_ dir: String) throws -> [UInt8] {
        try Hex.decode(text("\(dir)/attestation_report.hex").trimmingCharacters(in: .whitespacesAndNewlines))
    }
    static func evidence(_ dir: String, chain: String? = nil) throws -> NvidiaGPUEvidence {
        NvidiaGPUEvidence(transcript: try transcript(dir), certificateChainPEM: try text(chain ?? "\(dir)/device_cert_chain.pem"))
    }
    struct Manifest: Decodable {
        struct Sample: Decodable { var dir: String; var nonce: String?; var driver: String?; var vbios: String?; var project: String?; var chip_sku: String?; var fwid: String? }
        var verify_now: String
        var samples: [Sample]
    }
    static func manifest() throws -> Manifest { try JSONDecoder().decode(Manifest.self, from: Data(bytes("manifest.json"))) }
    static let now = Date.parseRFC3339("2025-01-01T00:00:00Z")!
    static let single = ["h100-nvtrust-sample", "h100-coco-ci-trustee"]
    static let ppcie = "h100-ppcie-8gpu-nvtrust/gpu_evidence.json"
}

final class NvidiaGPUTests: XCTestCase {
    let verifier = NvidiaGPUVerifier()

    func testManifestSamplesVerifyAtPinnedTime() throws {
        let manifest = try GPUSamples.manifest()
        XCTAssertEqual(Date.parseRFC3339(manifest.verify_now), GPUSamples.now)
        var checked = 0
        for sample in manifest.samples where GPUSamples.single.contains(sample.dir) {
            let nonce = try Hex.decode(XCTUnwrap(sample.nonce))
            let result = verifier.verify(try GPUSamples.evidence(sample.dir), at: GPUSamples.now, expectedNonce: nonce)
            guard case let .verified(claims, _) = result else { return XCTFail("\(sample.dir): \(result.violations)") }
            XCTAssertEqual(claims.driverVersion, sample.driver, sample.dir)
            XCTAssertEqual(claims.vbiosVersion, sample.vbios, sample.dir)
            XCTAssertEqual(claims.project, sample.project, sample.dir)
            XCTAssertEqual(claims.chipSKU, sample.chip_sku, sample.dir)
            XCTAssertEqual(claims.nonce, sample.nonce, sample.dir)
            if let fwid = sample.fwid { XCTAssertEqual(claims.fwid, fwid, sample.dir) }
            XCTAssertEqual(claims.measurements.count, 64, sample.dir)
            XCTAssertTrue(claims.measurements.allSatisfy { $0.reference == .missing && $0.digest?.count == 96 }, sample.dir)
            checked += 1
        }
        XCTAssertEqual(checked, 2)
    }

    /// trustee's claims for the nvtrust sample (another implementation): the same 64 digests, the
    /// same versions, project, SKUs and FWID.
    func testAgreesWithTrusteeClaims() throws {
        struct Trustee: Decodable {
            struct Config: Decodable { var chip_sku, driver_version, fwid, project, project_sku, vbios_version: String }
            var config: Config
            var measurements: [String: String]
        }
        let trustee = try JSONDecoder().decode(Trustee.self, from: Data(GPUSamples.bytes("h100-nvtrust-sample/trustee_expected_claims.json")))
        guard case let .verified(claims, _) = verifier.verify(try GPUSamples.evidence("h100-nvtrust-sample"), at: GPUSamples.now) else { return XCTFail() }
        XCTAssertEqual(trustee.measurements.count, 64)
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: claims.measurements.map { ("\($0.index)", $0.digest ?? "") }), trustee.measurements)
        XCTAssertEqual(claims.driverVersion, trustee.config.driver_version)
        XCTAssertEqual(claims.vbiosVersion.lowercased(), trustee.config.vbios_version)
        XCTAssertEqual(claims.fwid, trustee.config.fwid)
        XCTAssertEqual([claims.project, claims.projectSKU, claims.chipSKU], [trustee.config.project, trustee.config.project_sku, trustee.config.chip_sku])
    }

    func testCoCoSampleHasOneTrailingZeroOutsideTheSignature() throws {
        let t = try SPDMMeasurementTranscript(GPUSamples.transcript("h100-coco-ci-trustee"))
        XCTAssertEqual(t.trailingZeros, 1)
        let s = try SPDMMeasurementTranscript(GPUSamples.transcript("h100-nvtrust-sample"))
        XCTAssertEqual(s.trailingZeros, 0)
        XCTAssertEqual(s.signedBytes.count + 96, 4117)
    }

    func testPPCIeBundleVerifiesAsEightDevices() throws {
        let manifest = try GPUSamples.manifest()
        let sample = try XCTUnwrap(manifest.samples.first { $0.dir == "h100-ppcie-8gpu-nvtrust" })
        let devices = try NvidiaGPUEvidence.bundle(json: GPUSamples.bytes(GPUSamples.ppcie))
        XCTAssertEqual(devices.count, 8)
        var fwids = Set<String>()
        for (i, device) in devices.enumerated() {
            let result = verifier.verify(device, at: GPUSamples.now, expectedNonce: try Hex.decode(XCTUnwrap(sample.nonce)))
            guard case let .verified(claims, _) = result else { return XCTFail("GPU \(i): \(result.violations)") }
            XCTAssertEqual(claims.driverVersion, sample.driver)
            XCTAssertEqual(claims.vbiosVersion, sample.vbios)
            XCTAssertEqual(claims.project, sample.project)
            XCTAssertEqual(claims.chipSKU, sample.chip_sku)
            fwids.insert(claims.deviceSubject + claims.fwid)
        }
        XCTAssertEqual(fwids.count, 8, "eight distinct devices")
    }

    func testIncompleteChainsAreRefused() throws {
        for (file, code) in [("case2", ErrorCode.nvidiaGPUChainInvalid), ("case3", .nvidiaGPUChainInvalid), ("case4", .nvidiaGPUChainInvalid)] {
            let e = try GPUSamples.evidence("h100-nvtrust-sample", chain: "negative/hopper_cert_chain_\(file).pem")
            let result = verifier.verify(e, at: GPUSamples.now)
            XCTAssertEqual(result.violations.map(\.code), [code], file)
        }
    }

    func testWrongNonceOtherRootAndOtherChainAreRefused() throws {
        let e = try GPUSamples.evidence("h100-nvtrust-sample")
        XCTAssertEqual(verifier.verify(e, at: GPUSamples.now, expectedNonce: [UInt8](repeating: 1, count: 32)).violations.map(\.code), [.nvidiaGPUNonceMismatch])
        let snpRoot = try XCTUnwrap(Certificate.chain(pem: String(decoding: Data(contentsOf: fixture("sev-snp/roots/ask_ark_milan_vcek.pem")), as: UTF8.self)).last)
        XCTAssertEqual(NvidiaGPUVerifier(roots: [snpRoot]).verify(e, at: GPUSamples.now).violations.map(\.code), [.nvidiaGPUChainInvalid])
        // Another GPU's chain: the chain verifies, the signature does not.
        let swapped = NvidiaGPUEvidence(transcript: e.transcript, certificateChainPEM: try GPUSamples.text("h100-coco-ci-trustee/device_cert_chain.pem"))
        XCTAssertEqual(verifier.verify(swapped, at: GPUSamples.now).violations.map(\.code), [.nvidiaGPUSignatureInvalid])
    }

    func testReferenceComparison() throws {
        let e = try GPUSamples.evidence("h100-nvtrust-sample")
        let t = try SPDMMeasurementTranscript(e.transcript)
        var alternatives: [Int: [[UInt8]]] = [:]
        for b in t.blocks.prefix(3) { alternatives[Int(b.index)] = [[UInt8](repeating: 0, count: 48), b.value] }
        alternatives[4] = [[UInt8](repeating: 0, count: 48)]
        let refs = NvidiaGPUReferenceValues(alternatives: alternatives)
        guard case let .verified(claims, _) = verifier.verify(e, at: GPUSamples.now, references: refs) else { return XCTFail() }
        let byIndex = Dictionary(uniqueKeysWithValues: claims.measurements.map { ($0.index, $0.reference) })
        XCTAssertEqual(byIndex[1], .matched)
        XCTAssertEqual(byIndex[3], .matched)
        XCTAssertEqual(byIndex[4], .mismatched)
        XCTAssertEqual(byIndex[5], .missing)
        let refused = verifier.verify(e, at: GPUSamples.now, references: refs, requireReferences: true)
        XCTAssertEqual(refused.violations.map(\.code), [.nvidiaGPUMeasurementMismatch])
        // Without reference values a required comparison is refused, never a pass.
        XCTAssertEqual(verifier.verify(e, at: GPUSamples.now, requireReferences: true).violations.map(\.code), [.gpuReferenceMissing])
    }

    func testClaimsJSONNames() throws {
        guard case let .verified(claims, _) = verifier.verify(try GPUSamples.evidence("h100-nvtrust-sample"), at: GPUSamples.now) else { return XCTFail() }
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(claims)) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["nonce", "driverVersion", "vbiosVersion", "project", "projectSKU", "chipSKU", "fwid", "deviceSubject", "measurements"])
        let first = try XCTUnwrap((object["measurements"] as? [[String: Any]])?.first)
        XCTAssertEqual(Set(first.keys), ["index", "digest", "reference"])
    }

    func testCompiledInRootEqualsFixture() throws {
        XCTAssertEqual(NvidiaRoots.deviceIdentityCAPEM.trimmingCharacters(in: .whitespacesAndNewlines),
                       try GPUSamples.text("roots/nvidia_device_identity_ca.pem").trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
