import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchPolicy
import VouchTEEWire
import VouchTestSupport

/// A few CBOR items written out for tests (shortest heads).
private enum C {
    static func uint(_ n: Int) -> [UInt8] { CBOREncoder.head(0, n) }
    static func neg(_ n: Int) -> [UInt8] { CBOREncoder.head(1, -1 - n) }
    static func bstr(_ b: [UInt8]) -> [UInt8] { CBOREncoder.byteString(b) }
    static func text(_ s: String) -> [UInt8] { CBOREncoder.textString(s) }
    static func array(_ items: [[UInt8]]) -> [UInt8] { CBOREncoder.head(4, items.count) + items.flatMap { $0 } }
    static func map(_ pairs: [([UInt8], [UInt8])]) -> [UInt8] { CBOREncoder.head(5, pairs.count) + pairs.flatMap { $0.0 + $0.1 } }

    /// A document payload with every required field, `change` applied to its field list.
    static func payload(_ change: (inout [(String, [UInt8])]) -> Void = { _ in }) -> [UInt8] {
        var fields: [(String, [UInt8])] = [
            ("module_id", text("i-0-enc0")), ("digest", text("SHA384")), ("timestamp", uint(1_700_000_000_000)),
            ("pcrs", map((0..<16).map { (uint($0), bstr([UInt8](repeating: 0, count: 48))) })),
            ("certificate", bstr([0x30, 0x00])), ("cabundle", array([bstr([0x30, 0x00])])),
            ("public_key", [0xf6]), ("user_data", [0xf6]), ("nonce", [0xf6]),
        ]
        change(&fields)
        return map(fields.map { (text($0.0), $0.1) })
    }

    static let es384: [UInt8] = [0xa1, 0x01, 0x38, 0x22]

    static func sign1(protected: [UInt8] = es384, payload: [UInt8], signature: [UInt8] = [UInt8](repeating: 1, count: 96)) -> [UInt8] {
        array([bstr(protected), map([]), bstr(payload), bstr(signature)])
    }
}

/// The bounded CBOR reader, COSE_Sign1 and the attestation document's field rules, and seeded
/// mutations of the real samples (a changed byte is never verified).
final class NitroDocumentTests: XCTestCase {
    func field(_ bytes: [UInt8]) -> String? {
        do { _ = try NitroDocument(bytes: bytes); return nil } catch let e as VouchError {
            XCTAssertEqual(e.code, .teeEvidenceMalformed)
            return e.context["field"]
        } catch { return "\(error)" }
    }

    func cborRefused(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try CBORReader.decode(bytes, field: "t"), file: file, line: line) { e in
            XCTAssertEqual((e as? VouchError)?.code, .teeEvidenceMalformed, file: file, line: line)
        }
    }

    func testCBORReaderBounds() throws {
        XCTAssertEqual(try CBORReader.decode([0x82, 0x01, 0x20], field: "t"), .array([.unsigned(1), .negative(0)]))
        XCTAssertEqual(try CBORReader.decode([0x18, 0x05], field: "t"), .unsigned(5), "non-shortest heads are read")
        XCTAssertEqual(try CBORReader.decode([0xd2, 0xf6], field: "t"), .tagged(18, .null))
        cborRefused([0x9f, 0x01, 0xff])                 // indefinite-length array
        cborRefused([0x5f, 0x41, 0x00, 0xff])           // indefinite-length byte string
        cborRefused([0xa2, 0x01, 0x01, 0x01, 0x02])     // repeated map key
        cborRefused([0x5a, 0xff, 0xff, 0xff, 0xff])     // a length past the input
        cborRefused([0x9b] + [UInt8](repeating: 0xff, count: 8)) // a count past the input
        cborRefused([0x01, 0x02])                       // bytes after the item
        cborRefused([0xf9, 0x3c, 0x00])                 // a half float
        cborRefused([0x62, 0xff, 0xfe])                 // text that is not UTF-8
        cborRefused([0x1c])                             // reserved additional information
        cborRefused([0x19, 0x01])                       // a head cut short
        cborRefused([])
        cborRefused([UInt8](repeating: 0x81, count: 17) + [0x00]) // nesting deeper than 16
        XCTAssertNoThrow(try CBORReader.decode([UInt8](repeating: 0x81, count: 16) + [0x00], field: "t"))
    }

    func testCOSEAndDocumentRules() throws {
        XCTAssertNil(field(C.sign1(payload: C.payload())))
        XCTAssertNil(field([0xd2] + C.sign1(payload: C.payload())))
        XCTAssertEqual(field([0xd1] + C.sign1(payload: C.payload())), "cose")                      // tag 17 (COSE_Mac0)
        XCTAssertEqual(field(C.sign1(protected: [0xa1, 0x01, 0x26], payload: C.payload())), "cose.protected") // ES256
        XCTAssertEqual(field(C.sign1(payload: C.payload()) + [0x00]), "cose")                   // bytes after the message
        XCTAssertEqual(field(C.sign1(protected: [0xa2, 0x01, 0x38, 0x22, 0x04, 0x40], payload: C.payload())), "cose.protected")
        XCTAssertEqual(field(C.sign1(payload: C.payload(), signature: [UInt8](repeating: 1, count: 64))), "cose.signature")
        XCTAssertEqual(field(C.array([C.bstr(C.es384), C.map([]), [0xf6], C.bstr([UInt8](repeating: 1, count: 96))])), "cose.payload")
        func without(_ name: String) -> [UInt8] { C.sign1(payload: C.payload { $0.removeAll { $0.0 == name } }) }
        func with(_ name: String, _ value: [UInt8]) -> [UInt8] {
            C.sign1(payload: C.payload { f in
                if let i = f.firstIndex(where: { $0.0 == name }) { f[i].1 = value } else { f.append((name, value)) }
            })
        }
        for name in ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle"] { XCTAssertEqual(field(without(name)), "document.\(name)") }
        for name in ["public_key", "user_data", "nonce"] { XCTAssertNil(field(without(name)), name) }
        XCTAssertEqual(field(with("extra", C.uint(1))), "document.extra")
        XCTAssertEqual(field(with("module_id", C.text(""))), "document.module_id")
        XCTAssertEqual(field(with("digest", C.text("SHA256"))), "document.digest")
        XCTAssertEqual(field(with("timestamp", C.uint(0))), "document.timestamp")
        XCTAssertEqual(field(with("pcrs", C.map([]))), "document.pcrs")
        XCTAssertEqual(field(with("pcrs", C.map((0..<33).map { (C.uint($0), C.bstr([UInt8](repeating: 0, count: 48))) }))), "document.pcrs")
        XCTAssertEqual(field(with("pcrs", C.map([(C.uint(32), C.bstr([UInt8](repeating: 0, count: 48)))]))), "document.pcrs")
        XCTAssertEqual(field(with("pcrs", C.map([(C.uint(0), C.bstr([UInt8](repeating: 0, count: 47)))]))), "document.pcrs.0")
        for n in [32, 64] { XCTAssertNil(field(with("pcrs", C.map([(C.uint(0), C.bstr([UInt8](repeating: 0, count: n)))]))), "\(n)") }
        XCTAssertEqual(field(with("cabundle", C.array([]))), "document.cabundle")
        XCTAssertEqual(field(with("cabundle", C.array([C.bstr([UInt8](repeating: 0x30, count: 1025))]))), "document.cabundle[0]")
        XCTAssertEqual(field(with("certificate", C.bstr([]))), "document.certificate")
        XCTAssertEqual(field(with("public_key", C.bstr([]))), "document.public_key")
        XCTAssertNil(field(with("user_data", C.bstr([]))))
        XCTAssertNil(field(with("nonce", C.bstr([UInt8](repeating: 7, count: 512)))))
        XCTAssertEqual(field(with("nonce", C.bstr([UInt8](repeating: 7, count: 513)))), "document.nonce")
        XCTAssertEqual(field(with("user_data", C.text("x"))), "document.user_data")
        XCTAssertEqual(field([UInt8](repeating: 0, count: COSESign1.maxSize + 1)), "cose")
    }

    /// A parsed document's Sig_structure is the RFC 9052 array around its exact bytes.
    func testSigStructure() throws {
        let payload = C.payload()
        let doc = try NitroDocument(bytes: C.sign1(payload: payload))
        XCTAssertEqual(doc.cose.toBeSigned, C.array([C.text("Signature1"), C.bstr(C.es384), C.bstr([]), C.bstr(payload)]))
    }

    static let iterations = 300

    func testRandomMutationsOfTheSamplesAreNeverVerified() throws {
        let seed = TestSeed()
        var rng = seed.generator
        let verifier = try NitroVerifier()
        let manifest = try NitroSamples.manifest()
        var policy = NitroPolicy()
        policy.allowDebug = true
        let allowed: Set<String> = ["tee_evidence_malformed", "nitro_root_untrusted", "nitro_chain_invalid", "nitro_signature_invalid"]
        for i in 0..<Self.iterations {
            let dir = NitroSamples.dirs[Int.random(in: 0..<NitroSamples.dirs.count, using: &rng)]
            var bytes = try NitroSamples.document(dir)
            let offset = Int.random(in: 0..<bytes.count, using: &rng)
            bytes[offset] ^= UInt8.random(in: 1...255, using: &rng)
            let result = verifier.verify(document: bytes, at: NitroSamples.now(manifest[dir]!), policy: policy)
            XCTAssertEqual(result.violations.count, 1, "\(seed) #\(i) \(dir) \(offset)")
            XCTAssertTrue(allowed.contains(result.violations.first?.code.rawValue ?? "verified"), "\(seed) #\(i) \(dir) \(offset): \(result.violations)")
        }
    }
}
