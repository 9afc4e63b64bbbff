import Foundation
import XCTest
import VouchAttestation
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchTEESim
import VouchTEEWire

/// The software GPU board: eight GPUs' evidence verifies as eight devices under the board's
/// software Device Identity CA (never NVIDIA's), every active measurement matches the references
/// of its two signed RIMs, an option override makes one block mismatch, a wrong nonce is refused;
/// the board persists; the attester's sources read options at every call; a missing NVML is
/// `gpu_unavailable`.
final class SoftwareGPUTests: XCTestCase {
    var scratch: URL!
    var platform: SimulatedGPUPlatform!
    let nonce = Array(0..<32).map { UInt8($0) ^ 0x5a }

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-gpu-\(UUID().uuidString.prefix(8))")
        platform = try SimulatedGPUPlatform(directory: scratch.path, count: 8)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: scratch)
    }

    var verifier: NvidiaGPUVerifier { NvidiaGPUVerifier(roots: [platform.deviceCA.certificate]) }

    func devices(_ options: [String: String] = [:], nonce: [UInt8]? = nil) throws -> [NvidiaGPUEvidence] {
        try platform.evidence(nonce: nonce ?? self.nonce, options: options).map { NvidiaGPUEvidence(transcript: $0.transcript, certificateChainPEM: $0.certificateChainPEM) }
    }

    /// The references of the two published RIMs, verified under the software CoRIM root, with
    /// RIM index i as SPDM block i + 1.
    func references() throws -> NvidiaGPUReferenceValues {
        let rims = try NvidiaRIMVerifier(roots: [platform.rimRoot.certificate])
        var alternatives: [Int: [[UInt8]]] = [:]
        for (component, version) in [(NvidiaRIMComponent.driver, SoftwareGPUFirmware.driverVersion), (.vbios, SoftwareGPUFirmware.vbiosVersion)] {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: platform.rimPath(component == .driver ? .driver : .vbios))))
            let rim = try rims.verify(bytes, component: component, expectedVersion: version, at: Date())
            XCTAssertEqual(rim.identity.product, "GH100")
            for m in rim.referenceValues.active {
                XCTAssertNil(alternatives[m.index + 1], "the two RIMs' active indices are disjoint")
                alternatives[m.index + 1] = m.alternatives
            }
        }
        return NvidiaGPUReferenceValues(alternatives: alternatives)
    }

    func testEightGPUsVerifyAsEightDevices() throws {
        let evidence = try devices()
        XCTAssertEqual(evidence.count, 8)
        var fwids = Set<String>()
        for device in evidence {
            guard case let .verified(claims, _) = verifier.verify(device, at: Date(), expectedNonce: nonce) else {
                return XCTFail("\(verifier.verify(device, at: Date(), expectedNonce: nonce))")
            }
            XCTAssertEqual(claims.driverVersion, SoftwareGPUFirmware.driverVersion)
            XCTAssertEqual(claims.vbiosVersion, SoftwareGPUFirmware.vbiosVersion)
            XCTAssertEqual(claims.project, "1010")
            XCTAssertEqual(claims.chipSKU, "882")
            XCTAssertEqual(claims.nonce, Hex.encode(nonce))
            XCTAssertEqual(claims.measurements.count, SoftwareGPUFirmware.blockCount)
            XCTAssertTrue(claims.deviceSubject.contains(TEESimulation.organization))
            fwids.insert(claims.fwid)
        }
        XCTAssertEqual(fwids.count, 8, "every GPU has its own FWID")
        // The bundle round-trips through the reader `vouch evidence verify` uses.
        XCTAssertEqual(try NvidiaGPUEvidence.bundle(json: try NvidiaGPUEvidence.bundleJSON(evidence)), evidence)
    }

    func testNVIDIAsPinnedRootRefusesTheSoftwareGPU() throws {
        guard case let .rejected(violations, _) = NvidiaGPUVerifier().verify(try devices()[0], at: Date(), expectedNonce: nonce) else {
            return XCTFail("a software GPU verified under NVIDIA's root")
        }
        XCTAssertEqual(violations.map(\.code), [.nvidiaGPUChainInvalid])
    }

    func testEveryActiveMeasurementMatchesTheRIMs() throws {
        let refs = try references()
        XCTAssertEqual(refs.active, Set(1...10))
        for device in try devices() {
            guard case let .verified(claims, _) = verifier.verify(device, at: Date(), expectedNonce: nonce, references: refs, requireReferences: true) else {
                return XCTFail("references refused")
            }
            XCTAssertEqual(claims.measurements.map(\.reference), [NvidiaGPUClaims.ReferenceResult](repeating: .matched, count: 10))
        }
    }

    func testAnOverrideMakesThatBlockMismatch() throws {
        let refs = try references()
        let evidence = try devices(["gpu3.block2": String(repeating: "ab", count: 48)])
        for (k, device) in evidence.enumerated() {
            let result = verifier.verify(device, at: Date(), expectedNonce: nonce, references: refs, requireReferences: true)
            guard k == 3 else {
                guard case .verified = result else { return XCTFail("GPU \(k): \(result)") }
                continue
            }
            guard case let .rejected(violations, claims) = result else { return XCTFail("the overridden GPU verified") }
            XCTAssertEqual(violations.map(\.code), [.nvidiaGPUMeasurementMismatch])
            XCTAssertEqual(claims?.measurements.filter { $0.reference != .matched }.map(\.index), [2])
            XCTAssertEqual(claims?.measurements.first { $0.index == 2 }?.digest, String(repeating: "ab", count: 48))
        }
    }

    func testAWrongNonceIsRefused() throws {
        let device = try devices(nonce: [UInt8](repeating: 7, count: 32))[0]
        guard case let .rejected(violations, _) = verifier.verify(device, at: Date(), expectedNonce: nonce) else { return XCTFail("a replayed nonce verified") }
        XCTAssertEqual(violations.map(\.code), [.nvidiaGPUNonceMismatch])
    }

    func testTheBoardPersistsAndPublishesItsRoots() throws {
        let again = try SimulatedGPUPlatform(directory: scratch.path, count: 2)
        XCTAssertEqual(again.gpus.count, 2)
        XCTAssertEqual(try again.gpus[1].certificate.der, try platform.gpus[1].certificate.der)
        XCTAssertEqual(try again.deviceCA.certificate.der, try platform.deviceCA.certificate.der)
        let mode = try FileManager.default.attributesOfItem(atPath: scratch.path + "/gpu-platform.json")[.posixPermissions] as? NSNumber
        XCTAssertEqual(mode?.intValue, 0o600)
        let published = try Certificate(pem: String(contentsOfFile: platform.deviceRootPath, encoding: .utf8))
        XCTAssertEqual(try published.der, try platform.deviceCA.certificate.der)
        let rimRoot = try Certificate(pem: String(contentsOfFile: platform.rimRootPath, encoding: .utf8))
        XCTAssertTrue(rimRoot.subject.contains(TEESimulation.organization))
        XCTAssertThrowsCode(try SimulatedGPUPlatform(directory: scratch.path, count: 17), .teeSimulationUnsupported)
    }

    func testOptionsAreCheckedAndReadAtEveryCall() throws {
        for bad in [["gpu8.block1": String(repeating: "00", count: 48)], ["gpu0.block11": String(repeating: "00", count: 48)],
                    ["gpu0.blok1": String(repeating: "00", count: 48)], ["gpu0.block1": "00"]] {
            XCTAssertThrowsCode(try platform.evidence(nonce: nonce, options: bad), .config)
        }
        let file = scratch.appendingPathComponent("options")
        let source = try SimulatedGPUEvidenceSource(platformDirectory: scratch.path, count: 8, optionsFile: file.path)
        func block1(_ k: Int) throws -> [UInt8] { try SPDMMeasurementTranscript(try source.gpuEvidence(nonce: nonce)[k].transcript).blocks[0].value }
        XCTAssertEqual(try block1(5), SoftwareGPUFirmware.measurement(block: 1))
        try "measurement=\(String(repeating: "11", count: 48))\ngpu5.block1=\(String(repeating: "cd", count: 48))\n".write(to: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try block1(5), [UInt8](repeating: 0xcd, count: 48))
        XCTAssertEqual(try SimulatedTEEOptions.read(file.path).measurement, [UInt8](repeating: 0x11, count: 48), "the software TEE reads the same file")
        try "gpu5.blockX=00\n".write(to: file, atomically: true, encoding: .utf8)
        XCTAssertThrowsCode(try source.gpuEvidence(nonce: nonce), .config)
    }

    func testMissingNVMLIsGPUUnavailable() throws {
        XCTAssertThrowsCode(try NVMLGPUEvidenceSource(libraryPath: "/nonexistent/libnvidia-ml.so.1").gpuEvidence(nonce: nonce), .gpuUnavailable)
        // A library that loads but is not NVML: its functions are missing.
        XCTAssertThrowsCode(try NVMLGPUEvidenceSource(libraryPath: "libc.so.6").gpuEvidence(nonce: nonce), .gpuUnavailable)
        XCTAssertThrowsCode(try NVMLGPUEvidenceSource(libraryPath: "/nonexistent").gpuEvidence(nonce: [1, 2]), .invalidValue)
    }

    /// A transcript that asks for fewer than all measurements, or answers with none, is malformed:
    /// a host could otherwise leave out the blocks a required reference comparison needs.
    func testATranscriptWithoutAllMeasurementsIsMalformed() throws {
        var one = try GPUSamples.transcript("h100-nvtrust-sample")
        one[3] = 0x01
        XCTAssertThrowsError(try SPDMMeasurementTranscript(one)) { XCTAssertEqual(($0 as? VouchError)?.code, .teeEvidenceMalformed) }
        let key = try PrivateKey.generate(.p384)
        let none = try SoftwareGPU(key: key, certificate: try Certificate(pem: GPUSamples.text("h100-nvtrust-sample/device_cert_chain.pem")),
                                   fwid: [UInt8](repeating: 1, count: 48)).transcript(nonce: [UInt8](repeating: 2, count: 32), blocks: [])
        XCTAssertThrowsError(try SPDMMeasurementTranscript(none)) { XCTAssertEqual(($0 as? VouchError)?.context["field"], "response.numberOfBlocks") }
    }
}
