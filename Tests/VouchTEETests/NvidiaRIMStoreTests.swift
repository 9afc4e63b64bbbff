import Foundation
import XCTest
@testable import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEEWire
import VouchTestSupport
import VouchXMLSig

/// `NvidiaRIMStore` over the corpus RIMs (Tests/Fixtures/nvidia-gpu/rims): verified once, looked up
/// by the exact driver and VBIOS versions a GPU reports, re-checked for validity at the lookup
/// time, merged (RIM index i = SPDM block i + 1), conflicts and tampered files refused; and the
/// RIM verifier's component tie, CA-leaf and SignedInfo checks.
final class NvidiaRIMStoreTests: XCTestCase {
    static let at = GPUSamples.now
    static var rimDirectory: URL { get throws { try fixture("nvidia-gpu/rims") } }

    static func store(at: Date = at) throws -> NvidiaRIMStore {
        try NvidiaRIMStore(directory: try rimDirectory, verifier: try NvidiaRIMVerifier(), at: at)
    }

    func testLoadsEveryCorpusRIMAndTellsTheComponentFromTheSignedVersion() throws {
        let store = try Self.store()
        XCTAssertEqual(store.failures, [])
        XCTAssertEqual(store.verified.map(\.file), ["1010_0200_882_96005E0001_test_no_gpu.swidtag", "1010_0200_882_960074001A_PROD.swidtag",
                                                    "Driver_RIM_test_no_gpu.swidtag"])
        XCTAssertEqual(store.verified.map(\.rim.identity.component), [.vbios, .vbios, .driver])
        XCTAssertEqual(store.verified.map(\.rim.identity.version), ["96.00.5E.00.01", "96.00.74.00.1A", "545.00"])
    }

    /// The CoCo sample (driver 580.95.05, VBIOS 96.00.74.00.1A): the production VBIOS RIM is used,
    /// the driver RIM is missing; as the corpus manifest says, 11 of the VBIOS RIM's 12 active
    /// measurements match and RIM index 9 (block 10) does not.
    func testCoCoSampleAgainstTheStore() throws {
        let store = try Self.store()
        let e = try GPUSamples.evidence("h100-coco-ci-trustee")
        let outcome = NvidiaGPUVerifier().verify(e, at: Self.at, rims: store)
        guard case let .verified(claims, _) = outcome.result else { return XCTFail("\(outcome.result.violations)") }
        let lookup = try XCTUnwrap(outcome.lookup)
        XCTAssertEqual(lookup.used.map(\.file), ["1010_0200_882_960074001A_PROD.swidtag"])
        XCTAssertEqual(lookup.missing.map(\.component), [.driver])
        XCTAssertEqual(lookup.missing.map(\.version), ["580.95.05"])
        XCTAssertFalse(lookup.references.complete)
        let by = Dictionary(grouping: claims.measurements, by: \.reference).mapValues { Set($0.map(\.index)) }
        XCTAssertEqual(by[.matched], Set([1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 13]))
        XCTAssertEqual(by[.mismatched], [10])
        XCTAssertEqual(by[.missing]?.count, 52, "the driver's indices stay missing, never a pass")
        XCTAssertNil(by[.inactive])
        // Required: refused on the first measurement that is not matched.
        let required = NvidiaGPUVerifier().verify(e, at: Self.at, rims: store, requireReferences: true)
        XCTAssertEqual(required.result.violations.map(\.code), [.nvidiaGPUMeasurementMismatch])
        // The policy's rules name the device and every index.
        let violations = GPUPolicy().evaluate([claims.facts(device: "gpu[0]")])
        XCTAssertEqual(violations.filter { $0.code == .nvidiaGPUMeasurementMismatch }.map(\.path), ["gpu[0].measurements[10]"])
        XCTAssertEqual(violations.filter { $0.code == .gpuReferenceMissing }.count, 52)
    }

    /// Both test RIMs (driver 545.00, VBIOS 96.00.5E.00.01) make a complete set of 33 active
    /// indices; against the nvtrust sample (which nvtrust pairs with them in test mode) the
    /// manifest's 20 RIM indices mismatch, the other 13 match, and the rest are inactive.
    func testCompleteReferencesAgainstTheNvtrustSample() throws {
        let lookup = try Self.store().references(driverVersion: "545.00", vbiosVersion: "96.00.5E.00.01", at: Self.at)
        XCTAssertEqual(lookup.missing, [])
        XCTAssertEqual(lookup.used.map(\.rim.identity.component), [.driver, .vbios])
        XCTAssertTrue(lookup.references.complete)
        XCTAssertEqual(lookup.references.active.count, 33)
        let t = try SPDMMeasurementTranscript(GPUSamples.transcript("h100-nvtrust-sample"))
        let measurements = NvidiaGPUVerifier.compare(t.blocks, lookup.references)
        let rimIndices = [1, 2, 3, 7, 9, 11, 21, 22, 25, 26, 27, 29, 30, 31, 32, 34, 36, 37, 39, 40]
        XCTAssertEqual(Set(measurements.filter { $0.reference == .mismatched }.map(\.index)), Set(rimIndices.map { $0 + 1 }))
        XCTAssertEqual(measurements.filter { $0.reference == .matched }.count, 13)
        XCTAssertEqual(measurements.filter { $0.reference == .inactive }.count, 64 - 33)
        XCTAssertTrue(measurements.allSatisfy { $0.reference != .missing })
    }

    func testLookupIsByExactVersionAndRechecksValidity() throws {
        let store = try Self.store()
        // VBIOS hex digits compare without regard to case; the driver version exactly.
        XCTAssertNoThrow(try store.rim(.vbios, version: "96.00.74.00.1a", at: Self.at).get())
        XCTAssertThrowsError(try store.rim(.driver, version: "545.0", at: Self.at).get())
        XCTAssertThrowsError(try store.rim(.driver, version: "96.00.74.00.1A", at: Self.at).get(), "a VBIOS RIM is never the driver RIM")
        // After the test VBIOS RIM's signer expired (2025-06-22) and before the PROD one's (2025-09-05).
        let july = Date.parseRFC3339("2025-07-01T00:00:00Z")!
        guard case let .failure(expired) = store.rim(.vbios, version: "96.00.5E.00.01", at: july) else { return XCTFail("expired RIM used") }
        XCTAssertTrue(expired.reason.contains("not valid"), expired.reason)
        XCTAssertNoThrow(try store.rim(.vbios, version: "96.00.74.00.1A", at: july).get())
        let lookup = try store.references(driverVersion: "545.00", vbiosVersion: "96.00.74.00.1A", at: Date.parseRFC3339("2025-10-01T00:00:00Z")!)
        XCTAssertEqual(lookup.used.count, 0)
        XCTAssertEqual(lookup.missing.map(\.component), [.driver, .vbios])
        XCTAssertEqual(lookup.references.active, [])
        // Before any certificate is valid, too.
        XCTAssertEqual(try store.references(driverVersion: "545.00", vbiosVersion: "96.00.74.00.1A", at: Date(timeIntervalSince1970: 0)).used.count, 0)
    }

    func testFilesThatFailAreReportedAndNeverUsed() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("rim-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let prod = try Data(contentsOf: try Self.rimDirectory.appendingPathComponent("1010_0200_882_960074001A_PROD.swidtag"))
        var text = String(decoding: prod, as: UTF8.self)
        let digest = try XCTUnwrap(text.range(of: "ns2:Hash0=\"b558"))
        text.replaceSubrange(digest, with: "ns2:Hash0=\"b559")
        try Data(text.utf8).write(to: dir.appendingPathComponent("tampered.swidtag"))
        try Data("not xml".utf8).write(to: dir.appendingPathComponent("junk.xml"))
        try Data(repeating: 0x20, count: NvidiaRIMStore.maxFileBytes + 1).write(to: dir.appendingPathComponent("large.xml"))
        try Data(contentsOf: try Self.rimDirectory.appendingPathComponent("Driver_RIM_test_no_gpu.swidtag")).write(to: dir.appendingPathComponent("driver.swidtag"))
        try Data("hidden".utf8).write(to: dir.appendingPathComponent(".hidden"))
        let store = try NvidiaRIMStore(directory: dir, verifier: try NvidiaRIMVerifier(), at: Self.at)
        XCTAssertEqual(store.failures.map(\.file), ["junk.xml", "large.xml", "tampered.swidtag"])
        XCTAssertEqual(store.failures.map(\.code), [.xmlDocumentMalformed, .xmlDocumentMalformed, .xmlSignatureInvalid])
        XCTAssertEqual(store.verified.map(\.file), ["driver.swidtag"])
        let lookup = try store.references(driverVersion: "545.00", vbiosVersion: "96.00.74.00.1A", at: Self.at)
        XCTAssertEqual(lookup.missing.map(\.component), [.vbios], "the tampered VBIOS RIM is never used")
        // Another root: nothing verifies.
        let otherRoot = try CertificateAuthority.create(commonName: "other", key: try PrivateKey.generate(.p384), notBefore: Date(timeIntervalSince1970: 0),
                                                        notAfter: Date(timeIntervalSince1970: 4_000_000_000)).certificate
        let other = try NvidiaRIMStore(directory: try Self.rimDirectory, verifier: try NvidiaRIMVerifier(roots: [otherRoot]), at: Self.at)
        XCTAssertEqual(other.verified.count, 0)
        XCTAssertEqual(Set(other.failures.map(\.code)), [.rimChainInvalid])
        XCTAssertThrowsError(try NvidiaRIMStore(directory: dir.appendingPathComponent("absent"), verifier: try NvidiaRIMVerifier(), at: Self.at)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .config)
        }
        // Bounded: past maxFiles a directory is refused, and given files are reported, not verified.
        let many = (0...NvidiaRIMStore.maxFiles).map { (name: "f\($0)", bytes: [UInt8]?.none) }
        let bounded = NvidiaRIMStore(files: many, verifier: try NvidiaRIMVerifier(), at: Self.at)
        XCTAssertEqual(bounded.failures.count, NvidiaRIMStore.maxFiles + 1)
        XCTAssertEqual(bounded.failures.last?.message.contains("more than"), true)
        let crowded = dir.appendingPathComponent("crowded")
        try FileManager.default.createDirectory(at: crowded, withIntermediateDirectories: true)
        for i in 0...NvidiaRIMStore.maxFiles { try Data().write(to: crowded.appendingPathComponent("f\(i)")) }
        XCTAssertThrowsError(try NvidiaRIMStore(directory: crowded, verifier: try NvidiaRIMVerifier(), at: Self.at)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .config)
        }
    }

    func testAnIndexActiveInBothRIMsIsRefused() throws {
        func rim(_ active: [Int: Bool]) -> ReferenceValues {
            ReferenceValues(measurements: Dictionary(uniqueKeysWithValues: active.map {
                ($0.key, ReferenceMeasurement(index: $0.key, active: $0.value, alternatives: [[UInt8](repeating: UInt8($0.key), count: 48)]))
            }))
        }
        let merged = try NvidiaRIMStore.merge([rim([0: true, 1: false]), rim([1: true, 2: true])], complete: true)
        XCTAssertEqual(merged.active, [1, 2, 3], "RIM index i is block i + 1")
        XCTAssertEqual(merged.alternatives[2], [[UInt8](repeating: 1, count: 48)])
        XCTAssertThrowsError(try NvidiaRIMStore.merge([rim([4: true]), rim([4: true])], complete: true)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .rimIndexConflict)
        }
        XCTAssertNoThrow(try NvidiaRIMStore.merge([rim([4: false]), rim([4: true])], complete: true), "inactive in one RIM is no conflict")
    }

    func testARIMIsTiedToItsComponent() throws {
        let verifier = try NvidiaRIMVerifier()
        let vbios = try NvidiaRIMTests.bytes("rims/1010_0200_882_960074001A_PROD.swidtag")
        let driver = try NvidiaRIMTests.bytes(NvidiaRIMTests.driverRIM)
        XCTAssertThrowsError(try verifier.verify(vbios, component: .driver, at: Self.at)) { XCTAssertEqual(($0 as? VouchError)?.code, .rimComponentMismatch) }
        XCTAssertThrowsError(try verifier.verify(driver, component: .vbios, at: Self.at)) { XCTAssertEqual(($0 as? VouchError)?.code, .rimComponentMismatch) }
        XCTAssertEqual(try verifier.verify(vbios, at: Self.at).identity.component, .vbios)
        XCTAssertEqual(try verifier.verify(driver, at: Self.at).identity.component, .driver)
        XCTAssertEqual(NvidiaRIMComponent(version: "545.00"), .driver)
        XCTAssertEqual(NvidiaRIMComponent(version: "96.00.74.00.1A"), .vbios)
        XCTAssertNil(NvidiaRIMComponent(version: "GH100"))
    }

    /// A chain whose first certificate is a CA (here NVIDIA's L3 CA, which chains to the root) is
    /// refused as the signing leaf before its key is used.
    func testACACertificateIsNeverTheSigningLeaf() throws {
        let document = try UnverifiedXMLDocument(bytes: try NvidiaRIMTests.bytes(NvidiaRIMTests.driverRIM))
        let ders = try document.keyInfoCertificates()
        XCTAssertEqual(ders.count, 4)
        XCTAssertNoThrow(try NvidiaRIMVerifier().verifyChain(ders, at: Self.at))
        XCTAssertThrowsError(try NvidiaRIMVerifier().verifyChain(Array(ders.dropFirst()), at: Self.at)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .rimChainInvalid)
            XCTAssertEqual(($0 as? VouchError)?.context["check"], "leaf_is_ca")
        }
    }

    func testANamespacedAttributeInSignedInfoIsRefused() throws {
        let text = String(decoding: try NvidiaRIMTests.bytes(NvidiaRIMTests.driverRIM), as: UTF8.self)
        for (from, to) in [("<ds:SignedInfo>", "<ds:SignedInfo xml:lang=\"en\">"),
                           ("<ds:Reference URI=\"\"", "<ds:Reference xmlns:x=\"urn:x\" x:a=\"1\" URI=\"\"")] {
            XCTAssertTrue(text.contains(from), from)
            let changed = Array(text.replacingOccurrences(of: from, with: to).utf8)
            XCTAssertThrowsError(try NvidiaRIMVerifier().verify(changed, at: Self.at), to) {
                XCTAssertEqual(($0 as? VouchError)?.code, .xmlSignatureShape, to)
            }
        }
    }

    /// Seeded byte mutations of a RIM: the store either reports the file or, when the change is
    /// one canonicalisation erases (whitespace between attributes), holds the same reference values.
    func testSeededMutationsNeverChangeWhatTheStoreHolds() throws {
        let seed = TestSeed()
        var rng = seed.generator
        let original = try NvidiaRIMTests.bytes("rims/1010_0200_882_960074001A_PROD.swidtag")
        let verifier = try NvidiaRIMVerifier()
        let reference = try verifier.verify(original, at: Self.at)
        var files: [(name: String, bytes: [UInt8]?)] = []
        for i in 0..<24 {
            var bytes = original
            let offset = Int(rng.next() % UInt64(bytes.count))
            bytes[offset] = [0x20, 0x22, 0x3C, 0x30, 0x61, bytes[offset] ^ 0x01][Int(rng.next() % 6)]
            files.append(("m\(i)-\(offset)", bytes))
        }
        let store = NvidiaRIMStore(files: files, verifier: verifier, at: Self.at)
        XCTAssertEqual(store.failures.count + store.verified.count, files.count, "\(seed)")
        for entry in store.verified {
            XCTAssertEqual(entry.rim.referenceValues, reference.referenceValues, "\(seed) \(entry.file)")
            XCTAssertEqual(entry.rim.identity, reference.identity, "\(seed) \(entry.file)")
        }
    }

    /// Seeded mutations of version text: a string is never both kinds, and what parses prints back.
    func testSeededVersionMutations() throws {
        let seed = TestSeed()
        var rng = seed.generator
        let alphabet = Array("0123456789abcdefABCDEFG.x-+ ９".unicodeScalars)
        for base in ["550.90.07", "590.12", "96.00.74.00.1A", "545.00"] {
            for _ in 0..<200 {
                var scalars = Array(base.unicodeScalars)
                let at = Int(rng.next() % UInt64(scalars.count + 1))
                switch rng.next() % 3 {
                case 0 where at < scalars.count: scalars[at] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                case 1 where at < scalars.count: scalars.remove(at: at)
                default: scalars.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: at)
                }
                let text = String(String.UnicodeScalarView(scalars))
                let driver = NvidiaVersion(driver: text), vbios = NvidiaVersion(vbios: text)
                XCTAssertFalse(driver != nil && vbios != nil, "\(seed) \(text)")
                if let driver { XCTAssertEqual(NvidiaVersion(driver: driver.description), driver, "\(seed) \(text)") }
                if let vbios { XCTAssertEqual(NvidiaVersion(vbios: vbios.description), vbios, "\(seed) \(text)") }
                XCTAssertEqual(NvidiaRIMComponent(version: text) == nil, driver == nil && vbios == nil, "\(seed) \(text)")
            }
        }
    }
}
