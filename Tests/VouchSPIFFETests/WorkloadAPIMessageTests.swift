import XCTest
import VouchCore
import VouchSPIFFE

/// The Workload API's messages: round trips, encodings byte for byte as protobuf (upb, through
/// py-spiffe's workload_pb2) writes them deterministically, and protobuf's merge rules.
final class WorkloadAPIMessageTests: XCTestCase {
    static let svid = WorkloadAPI.X509SVID(spiffeID: "spiffe://example.org/workload", x509SVID: [0x30, 0x03, 0x02, 0x01, 0x01],
                                           x509SVIDKey: [0x30, 0x00], bundle: [0x30, 0x01, 0x00], hint: "h")

    func testEveryMessageRoundTrips() throws {
        let big = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }  // a three-byte length
        let claims: JSONValue = .object(["sub": .string("spiffe://example.org/w"), "aud": .array([.string("a"), .string("b")]),
                                         "exp": .number(1_700_000_000), "ratio": .number(-0.25), "admin": .bool(false),
                                         "none": .null, "nested": .object(["deep": .array([.object([:]), .array([]), .number(1e300)])])])
        func check<M: ProtobufMessage>(_ m: M, line: UInt = #line) throws {
            XCTAssertEqual(try M(protobuf: m.protobuf), m, line: line)
        }
        try check(WorkloadAPI.X509SVIDRequest())
        try check(WorkloadAPI.X509SVIDResponse(svids: [Self.svid, WorkloadAPI.X509SVID(spiffeID: "spiffe://example.org/b", x509SVID: big)],
                                               crl: [[], [1, 2]], federatedBundles: ["spiffe://other.org": big, "spiffe://third.org": []]))
        try check(WorkloadAPI.X509BundlesRequest())
        try check(WorkloadAPI.X509BundlesResponse(crl: [[0x30, 0x00]], bundles: ["spiffe://example.org": [1], "spiffe://other.org": [2]]))
        try check(WorkloadAPI.JWTSVIDRequest(audience: ["a", "", "ü"], spiffeID: "spiffe://example.org/w"))
        try check(WorkloadAPI.JWTSVIDResponse(svids: [WorkloadAPI.JWTSVID(spiffeID: "spiffe://example.org/w", svid: "h.p.s", hint: "x"), WorkloadAPI.JWTSVID()]))
        try check(WorkloadAPI.JWTBundlesRequest())
        try check(WorkloadAPI.JWTBundlesResponse(bundles: ["spiffe://example.org": Array(#"{"keys":[]}"#.utf8)]))
        try check(WorkloadAPI.ValidateJWTSVIDRequest(audience: "a", svid: "h.p.s"))
        try check(WorkloadAPI.ValidateJWTSVIDResponse(spiffeID: "spiffe://example.org/w", claims: claims))
        // Defaults: empty messages encode to nothing; empty repeated items and map values stay.
        XCTAssertEqual(WorkloadAPI.X509SVID().protobuf, [])
        XCTAssertEqual(try WorkloadAPI.X509SVIDResponse(protobuf: WorkloadAPI.X509SVIDResponse(svids: [.init()], crl: [[]]).protobuf).svids.count, 1)
        XCTAssertEqual(try WorkloadAPI.ValidateJWTSVIDResponse(protobuf: []).claims, .object([:]))
    }

    /// Bytes py-spiffe 0.3.2's workload_pb2 wrote with SerializeToString(deterministic=True).
    func testEncodingsAreByteForByteWhatProtobufWrites() throws {
        let x509 = WorkloadAPI.X509SVIDResponse(svids: [Self.svid], crl: [[0x30, 0x00]], federatedBundles: ["spiffe://other.org": [0x30, 0x00]])
        let x509Bytes = "0a320a1d7370696666653a2f2f6578616d706c652e6f72672f776f726b6c6f6164120530030201011a02300022033001002a0168"
            + "120230001a180a127370696666653a2f2f6f746865722e6f726712023000"
        XCTAssertEqual(Hex.encode(x509.protobuf), x509Bytes)
        XCTAssertEqual(try WorkloadAPI.X509SVIDResponse(protobuf: hex(x509Bytes)), x509)

        let claims: JSONValue = .object(["z": .number(0), "a": .string(""), "n": .null, "f": .bool(false), "l": .array([]), "o": .object([:])])
        let validate = WorkloadAPI.ValidateJWTSVIDResponse(spiffeID: "", claims: claims)
        let validateBytes = "123d0a070a016112021a000a070a0166120220000a070a016c120232000a070a016e120208000a070a016f12022a000a0e0a017a1209110000000000000000"
        XCTAssertEqual(Hex.encode(validate.protobuf), validateBytes)
        XCTAssertEqual(try WorkloadAPI.ValidateJWTSVIDResponse(protobuf: hex(validateBytes)), validate)
        // Present but empty claims are an empty Struct field.
        XCTAssertEqual(Hex.encode(WorkloadAPI.ValidateJWTSVIDResponse().protobuf), "1200")
    }

    func testMapsAreWrittenSortedByKeyWhateverTheInsertionOrder() {
        var a = WorkloadAPI.JWTBundlesResponse()
        var b = WorkloadAPI.JWTBundlesResponse()
        let keys = (0..<50).map { "spiffe://td\($0).example" }
        for k in keys { a.bundles[k] = Array(k.utf8) }
        for k in keys.reversed() { b.bundles[k] = Array(k.utf8) }
        XCTAssertEqual(a.protobuf, b.protobuf)
        var r = ProtoReader(a.protobuf)
        var seen = [String]()
        while let (n, w) = try! r.next() { seen.append(try! r.stringBytesEntry(w, "bundles").key); _ = n }
        XCTAssertEqual(seen, keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
    }

    func testRepeatedOccurrencesMergeAsProtobufSays() throws {
        // Scalars: the last one wins. Repeated fields: appended. Map keys: the last value.
        var w = ProtoWriter()
        w.string(1, "spiffe://example.org/first")
        w.string(1, "spiffe://example.org/last")
        XCTAssertEqual(try WorkloadAPI.JWTSVID(protobuf: w.bytes).spiffeID, "spiffe://example.org/last")
        var m = ProtoWriter()
        m.map(1, ["spiffe://example.org": [1]])
        m.map(1, ["spiffe://example.org": [2]])
        XCTAssertEqual(try WorkloadAPI.JWTBundlesResponse(protobuf: m.bytes).bundles, ["spiffe://example.org": [2]])
        // An embedded message given twice merges: claims split across two Struct fields.
        let one = WorkloadAPI.ValidateJWTSVIDResponse(claims: .object(["a": .number(1), "b": .string("x")])).protobuf
        let two = WorkloadAPI.ValidateJWTSVIDResponse(claims: .object(["b": .string("y"), "c": .bool(true)])).protobuf
        XCTAssertEqual(try WorkloadAPI.ValidateJWTSVIDResponse(protobuf: one + two).claims,
                       .object(["a": .number(1), "b": .string("y"), "c": .bool(true)]))
        // A Value's oneof: the last member wins; the same message member twice merges.
        let s1 = JSONValue.object(["a": .null]).protobufValue, s2 = JSONValue.object(["b": .null]).protobufValue
        let n = JSONValue.number(2).protobufValue
        XCTAssertEqual(try JSONValue(protobufValue: s1 + s2), .object(["a": .null, "b": .null]))
        XCTAssertEqual(try JSONValue(protobufValue: s1 + n), .number(2))
        XCTAssertEqual(try JSONValue(protobufValue: s1 + n + s2), .object(["b": .null]))
        let l1 = JSONValue.array([.number(1)]).protobufValue, l2 = JSONValue.array([.number(2)]).protobufValue
        XCTAssertEqual(try JSONValue(protobufValue: l1 + l2), .array([.number(1), .number(2)]))
    }

    func testStructValuesThatJSONCannotHoldAreRefused() {
        refusal(.invalidValue, field: "Value.kind", try JSONValue(protobufValue: []))
        refusal(.invalidValue, field: "Value.kind", try JSONValue(protobufStruct: hex("0a030a0161")))  // an entry without a value
        for bits: UInt64 in [0x7ff8_0000_0000_0000, 0x7ff0_0000_0000_0000, 0xfff0_0000_0000_0000] {
            var w = ProtoWriter()
            w.double(2, Double(bitPattern: bits), always: true)
            refusal(.invalidValue, field: "Value.number_value", try JSONValue(protobufValue: w.bytes))
        }
        // Any NullValue number is null (an open enum), any non-zero bool is true.
        XCTAssertEqual(try JSONValue(protobufValue: hex("0805")), .null)
        XCTAssertEqual(try JSONValue(protobufValue: hex("2002")), .bool(true))
    }

    func testTheServiceMethodsPaths() {
        XCTAssertEqual(WorkloadAPI.Method.allCases.map(\.path), ["/SpiffeWorkloadAPI/FetchX509SVID", "/SpiffeWorkloadAPI/FetchX509Bundles",
                                                                  "/SpiffeWorkloadAPI/FetchJWTSVID", "/SpiffeWorkloadAPI/FetchJWTBundles",
                                                                  "/SpiffeWorkloadAPI/ValidateJWTSVID"])
        XCTAssertEqual(WorkloadAPI.Method.allCases.filter(\.isServerStreaming), [.fetchX509SVID, .fetchX509Bundles, .fetchJWTBundles])
    }
}
