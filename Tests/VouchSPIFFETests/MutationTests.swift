import XCTest
import VouchCore
import VouchSPIFFE
import VouchTestSupport

/// The fuzz target's property (`vouch-fuzz`'s workload-api) on seeded mutations of real
/// encodings, in every test run: hostile bytes give a value or a `VouchError`, and a value read
/// writes back to bytes that read to the same value.
final class MutationTests: XCTestCase {
    static let seeds: [[UInt8]] = [
        WorkloadAPI.X509SVIDResponse(svids: [WorkloadAPIMessageTests.svid], crl: [[0x30, 0x00]],
                                     federatedBundles: ["spiffe://other.org": [0x30, 0x00], "spiffe://b.org": []]).protobuf,
        WorkloadAPI.X509BundlesResponse(crl: [[1]], bundles: ["spiffe://example.org": [1, 2, 3]]).protobuf,
        WorkloadAPI.JWTSVIDRequest(audience: ["a", "b"], spiffeID: "spiffe://example.org/w").protobuf,
        WorkloadAPI.JWTSVIDResponse(svids: [WorkloadAPI.JWTSVID(spiffeID: "spiffe://example.org/w", svid: "a.b.c", hint: "h")]).protobuf,
        WorkloadAPI.JWTBundlesResponse(bundles: ["spiffe://example.org": Array("{}".utf8)]).protobuf,
        WorkloadAPI.ValidateJWTSVIDResponse(spiffeID: "spiffe://example.org/w", claims: .object([
            "a": .array([.number(1.5), .string("x"), .null, .bool(true), .object(["b": .array([])])]), "c": .object([:]),
        ])).protobuf,
        Array(#"{"aud":["x"],"exp":1,"o":{"k":[true,null,-0.5e3,"\u00e9"]}}"#.utf8),
        Array("spiffe://example.org/a/b".utf8),
    ]

    /// What the fuzz target checks, for one input.
    func check(_ bytes: [UInt8], _ seed: TestSeed) {
        func roundTrip<M: ProtobufMessage>(_: M.Type) {
            do {
                let m = try M(protobuf: bytes)
                XCTAssertEqual(try M(protobuf: m.protobuf), m, "\(M.self) \(Hex.encode(bytes)) \(seed)")
            } catch {
                XCTAssertTrue(error is VouchError, "\(error)")
            }
        }
        for type in WorkloadAPI.messageTypes { roundTrip(type) }
        if let v = try? JSONValue(protobufStruct: bytes) { XCTAssertEqual(try JSONValue(protobufStruct: v.protobufStruct), v, "\(seed)") }
        if let v = try? JSONValue(protobufValue: bytes) { XCTAssertEqual(try JSONValue(protobufValue: v.protobufValue), v, "\(seed)") }
        if let v = try? JSONValue(json: bytes) { XCTAssertEqual(try JSONValue(json: v.json), v, "\(Hex.encode(bytes)) \(seed)") }
        if let id = try? SPIFFEID.parse(String(decoding: bytes, as: UTF8.self)) {
            XCTAssertTrue(SPIFFEID.isValid("spiffe://\(id.trustDomain)\(id.path)"), "\(seed)")
        }
    }

    func testMutatedEncodingsReadToValuesThatRoundTripOrAreRefused() {
        let seed = TestSeed()
        var random = seed.generator
        let interesting: [UInt8] = [0x00, 0x01, 0x02, 0x05, 0x08, 0x0a, 0x12, 0x1a, 0x22, 0x2a, 0x32, 0x7f, 0x80, 0xff,
                                    UInt8(ascii: "\""), UInt8(ascii: "{"), UInt8(ascii: "["), UInt8(ascii: ","), UInt8(ascii: "/")]
        for original in Self.seeds {
            check(original, seed)
            for _ in 0..<400 {
                var bytes = original
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    let at = Int.random(in: 0...bytes.count, using: &random)
                    let byte = Bool.random(using: &random) ? interesting.randomElement(using: &random)! : UInt8.random(in: 0...255, using: &random)
                    switch Int.random(in: 0..<5, using: &random) {
                    case 0 where at < bytes.count: bytes[at] = byte
                    case 1 where at < bytes.count: bytes.remove(at: at)
                    case 2: bytes.insert(byte, at: at)
                    case 3: bytes = Array(bytes.prefix(at))
                    default: bytes += bytes.prefix(at)  // a field given again
                    }
                }
                check(bytes, seed)
            }
        }
    }
}
