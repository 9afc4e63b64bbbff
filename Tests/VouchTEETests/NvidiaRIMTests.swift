import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTestSupport
import VouchXMLSig

/// NVIDIA RIMs (Tests/Fixtures/nvidia-rim): every RIM in the manifest verifies at the pinned time
/// with the identity and active indices the manifest states; an expired chain, altered digests
/// or attributes, a removed, duplicated or moved signature, a partial reference, wrapped
/// elements and DTDs are refused with their codes.
final class NvidiaRIMTests: XCTestCase {
    struct Manifest: Decodable {
        struct RIM: Decodable {
            var file: String
            var component: String
            var version: String
            var product: String
            var active: [Int]
            var resources: Int
        }
        var root: String
        var verify_at: Date
        var expired_at: Date
        var rims: [RIM]
    }

    static func manifest() throws -> Manifest {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(Manifest.self, from: Data(contentsOf: fixture("nvidia-rim/manifest.json")))
    }

    static func bytes(_ path: String) throws -> [UInt8] { try [UInt8](Data(contentsOf: fixture("nvidia-rim/\(path)"))) }

    static let driverRIM = "rims/Driver_RIM_test_no_gpu.swidtag"

    func testFixturesAreTheCorpusBytes() throws {
        let sums = String(decoding: try Self.bytes("SHA256SUMS"), as: UTF8.self)
        let lines = sums.split(separator: "\n")
        XCTAssertEqual(lines.count, 5)
        for line in lines {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            XCTAssertEqual(Hex.encode(Crypto.sha256(try Self.bytes(String(parts[1])))), String(parts[0]), String(parts[1]))
        }
    }

    func testCompiledInRootIsThePinnedFile() throws {
        let manifest = try Self.manifest()
        let file = try Certificate(pem: String(decoding: try Self.bytes(manifest.root), as: UTF8.self))
        let compiledIn = try Certificate(pem: NvidiaRoots.coRIMSigningRootPEM)
        XCTAssertEqual(try compiledIn.der, try file.der)
    }

    func testEveryManifestRIMVerifiesAtThePinnedTime() throws {
        let manifest = try Self.manifest()
        let verifier = try NvidiaRIMVerifier()
        XCTAssertEqual(manifest.rims.count, 3)
        for entry in manifest.rims {
            let component = try XCTUnwrap(NvidiaRIMComponent(rawValue: entry.component))
            let rim = try verifier.verify(try Self.bytes(entry.file), component: component, expectedVersion: entry.version, at: manifest.verify_at)
            XCTAssertEqual(rim.identity.component, component, entry.file)
            XCTAssertEqual(rim.identity.version, entry.version, entry.file)
            XCTAssertEqual(rim.identity.product, entry.product, entry.file)
            XCTAssertEqual(rim.referenceValues.measurements.count, entry.resources, entry.file)
            XCTAssertEqual(rim.referenceValues.active.map(\.index), entry.active, entry.file)
            for m in rim.referenceValues.measurements.values {
                XCTAssertTrue(m.alternatives.allSatisfy { $0.count == 48 }, "\(entry.file) index \(m.index)")
            }
        }
    }

    func testDriverRIMAlternatives() throws {
        let rim = try NvidiaRIMVerifier().verify(try Self.bytes(Self.driverRIM), component: .driver, at: try Self.manifest().verify_at)
        let m7 = try XCTUnwrap(rim.referenceValues.measurements[7])
        XCTAssertEqual(Hex.encode(m7.alternatives[0]), "0e0ee161b59bf124ce6b6dca6efa7616d28077862c0e57dca7d5efd63d00eeed4851922941e846a38c464cbedbc168d9")
        XCTAssertEqual(rim.referenceValues.measurements[23]?.alternatives.count, 2)
        XCTAssertEqual(rim.referenceValues.measurements[0]?.active, false)
    }

    func testExpiredSignerAndWrongVersionRefused() throws {
        let manifest = try Self.manifest()
        let verifier = try NvidiaRIMVerifier()
        for entry in manifest.rims {
            let component = try XCTUnwrap(NvidiaRIMComponent(rawValue: entry.component))
            XCTAssertThrowsCode(try verifier.verify(try Self.bytes(entry.file), component: component, at: manifest.expired_at), .rimChainInvalid)
        }
        XCTAssertThrowsCode(try verifier.verify(try Self.bytes(Self.driverRIM), component: .driver, expectedVersion: "550.90.07",
                                                at: manifest.verify_at), .rimVersionMismatch)
    }

    /// Replaces the first occurrence of `target` (which must be there) and verifies the result.
    func mutated(_ target: String, _ replacement: String, file: String = driverRIM) throws -> () throws -> VerifiedNvidiaRIM {
        let text = String(decoding: try Self.bytes(file), as: UTF8.self)
        let range = try XCTUnwrap(text.range(of: target), "mutation target missing: \(target)")
        let bytes = Array(text.replacingCharacters(in: range, with: replacement).utf8)
        let at = try Self.manifest().verify_at
        return { try NvidiaRIMVerifier().verify(bytes, component: .driver, at: at) }
    }

    func testSeededMutationsRefused() throws {
        let hash7 = "0e0ee161b59bf124ce6b6dca6efa7616d28077862c0e57dca7d5efd63d00eeed4851922941e846a38c464cbedbc168d9"
        let resource0 = #"<ns0:Resource type="Measurement" index="0" active="False""#
        let cases: [(String, String, String, ErrorCode)] = [
            ("digest value changed", hash7, "1" + hash7.dropFirst(), .xmlSignatureInvalid),
            ("attribute changed", resource0, #"<ns0:Resource type="Measurement" index="0" active="True""#, .xmlSignatureInvalid),
            ("version changed", #"colloquialVersion="545.00""#, #"colloquialVersion="550.90.07""#, .xmlSignatureInvalid),
            ("duplicated element", resource0, #"<ns0:Resource type="Measurement" index="99" active="True" alternatives="1" ns2:Hash0="\#(hash7)" name="x" size="48"/>"# + resource0, .xmlSignatureInvalid),
            ("reference to a fragment", #"<ds:Reference URI="">"#, ##"<ds:Reference URI="#x">"##, .xmlSignatureShape),
            ("enveloped transform removed", #"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#, "", .xmlSignatureShape),
            ("signature value changed", "<ds:SignatureValue>", "<ds:SignatureValue>AAAA", .xmlSignatureInvalid),
            ("doctype with external entity", "<SoftwareIdentity", #"<!DOCTYPE SoftwareIdentity [<!ENTITY x SYSTEM "file:///etc/passwd">]><SoftwareIdentity"#, .xmlDocumentRefused),
            ("internal entity", "<SoftwareIdentity", #"<!DOCTYPE SoftwareIdentity [<!ENTITY x "y">]><SoftwareIdentity"#, .xmlDocumentRefused),
            ("not well formed", "<ns0:Payload", "<ns0:Payload <", .xmlDocumentMalformed),
        ]
        for (name, target, replacement, code) in cases {
            let verify = try mutated(target, replacement)
            do { _ = try verify(); XCTFail("\(name): verified") } catch let e as VouchError {
                XCTAssertEqual(e.code, code, "\(name): \(e.message)")
            }
        }
    }

    func testSignatureRemovedDuplicatedOrWrappedRefused() throws {
        let text = String(decoding: try Self.bytes(Self.driverRIM), as: UTF8.self)
        let start = try XCTUnwrap(text.range(of: "<ds:Signature "))
        let end = try XCTUnwrap(text.range(of: "</ds:Signature>"))
        let signature = String(text[start.lowerBound..<end.upperBound])
        let unsigned = text.replacingOccurrences(of: signature, with: "")
        let at = try Self.manifest().verify_at
        func verify(_ s: String) throws { _ = try NvidiaRIMVerifier().verify(Array(s.utf8), component: .driver, at: at) }
        XCTAssertThrowsCode(try verify(unsigned), .xmlSignatureShape)
        // Duplicated signature.
        XCTAssertThrowsCode(try verify(text.replacingOccurrences(of: "</SoftwareIdentity>", with: signature + "</SoftwareIdentity>")), .xmlSignatureShape)
        // Wrapped: the signed document moved under a new root beside a forged payload.
        let wrapped = "<Wrapper>" + text + "<ns0:Payload xmlns:ns0=\"http://standards.iso.org/iso/19770/-2/2015/schema.xsd\"/></Wrapper>"
        XCTAssertThrowsCode(try verify(wrapped), .xmlSignatureShape)
        // Signature moved inside the payload (not a child of the root).
        let moved = unsigned.replacingOccurrences(of: "</ns0:Payload>", with: signature + "</ns0:Payload>")
        XCTAssertThrowsCode(try verify(moved), .xmlSignatureShape)
    }

    func testOtherRootRefused() throws {
        let amd = try Certificate.chain(pem: AMDRoots.chains[0].pem)
        let verifier = try NvidiaRIMVerifier(roots: [amd.last!])
        XCTAssertThrowsCode(try verifier.verify(try Self.bytes(Self.driverRIM), component: .driver, at: try Self.manifest().verify_at), .rimChainInvalid)
    }

    /// Seeded random byte changes: each is refused with a typed error, or (a change the signature
    /// does not cover, such as base64 line breaks) verifies to exactly the original values.
    func testRandomByteChangesRefusedOrIdentical() throws {
        let original = try Self.bytes(Self.driverRIM)
        let at = try Self.manifest().verify_at
        let verifier = try NvidiaRIMVerifier()
        let expected = try verifier.verify(original, component: .driver, at: at)
        var rng = SplitMix64(seed: 17)
        var refused = 0
        for _ in 0..<300 {
            var bytes = original
            let i = Int.random(in: 0..<bytes.count, using: &rng)
            bytes[i] = bytes[i] == 0x41 ? 0x42 : 0x41
            do {
                let rim = try verifier.verify(bytes, component: .driver, at: at)
                XCTAssertEqual(rim.referenceValues, expected.referenceValues, "byte \(i)")
                XCTAssertEqual(rim.identity, expected.identity, "byte \(i)")
            } catch is VouchError { refused += 1 }
        }
        XCTAssertGreaterThan(refused, 250)
    }

    /// Many namespace declarations over many elements make inclusive canonicalisation cost
    /// libxml2 minutes for a small document: refused while the tree is read, before libxmlsec1
    /// canonicalises anything; so are elements with too many attributes.
    func testNamespaceAndAttributeFloodsRefusedBeforeCanonicalisation() {
        let declarations = (0..<1000).map { " xmlns:p\($0)=\"urn:\($0)\"" }.joined()
        let flood = "<r\(declarations)>" + String(repeating: "<e/>", count: 1000) + "</r>"
        XCTAssertThrowsCode(try UnverifiedXMLDocument(bytes: Array(flood.utf8)), .xmlDocumentMalformed)
        let attributes = (0..<100).map { " a\($0)=\"v\"" }.joined()
        XCTAssertThrowsCode(try UnverifiedXMLDocument(bytes: Array("<r\(attributes)/>".utf8)), .xmlDocumentMalformed)
    }

    func testOversizedDocumentRefused() {
        XCTAssertThrowsCode(try UnverifiedXMLDocument(bytes: [UInt8](repeating: 0x20, count: XMLSignature.defaultMaxBytes + 1)), .xmlDocumentMalformed)
    }
}
