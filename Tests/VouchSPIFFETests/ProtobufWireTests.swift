import XCTest
import VouchCore
import VouchSPIFFE

/// The refusal a body throws: its code must be `code`, and with `field`, its context's field.
@discardableResult
func refusal<T>(_ code: ErrorCode, field: String? = nil, _ body: @autoclosure () throws -> T,
                file: StaticString = #filePath, line: UInt = #line) -> VouchError? {
    do {
        _ = try body()
        XCTFail("expected \(code), got a value", file: file, line: line)
        return nil
    } catch let error as VouchError {
        XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
        if let field { XCTAssertEqual(error.context["field"], field, "\(error)", file: file, line: line) }
        return error
    } catch {
        XCTFail("not a VouchError: \(error)", file: file, line: line)
        return nil
    }
}

func hex(_ s: String) -> [UInt8] { try! Hex.decode(s) }

/// A varint's bytes, written by ProtoWriter.
func varintBytes(_ v: UInt64) -> [UInt8] {
    var w = ProtoWriter()
    w.varint(v)
    return w.bytes
}

/// The wire format itself: varints, tags, lengths, unknown fields and the reader's bounds.
final class ProtobufWireTests: XCTestCase {
    func testVarintsHaveTheSpecificationsEncodings() throws {
        let vectors: [(UInt64, String)] = [(0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (150, "9601"), (300, "ac02"),
                                           (UInt64(UInt32.max), "ffffffff0f"), (UInt64.max, "ffffffffffffffffff01")]
        for (value, encoding) in vectors {
            XCTAssertEqual(Hex.encode(varintBytes(value)), encoding, "\(value)")
            var r = ProtoReader(hex(encoding))
            XCTAssertEqual(try r.varint("v"), value)
            XCTAssertTrue(r.isAtEnd)
        }
    }

    func testVarintsLongerThanTenBytesOrPast64BitsAreRefused() {
        // Eleven bytes: ten with the continuation bit, then one more.
        var eleven = ProtoReader(hex("8080808080808080808000"))
        refusal(.invalidValue, field: "v", try eleven.varint("v"))
        // Ten bytes whose last carries more than the 64th bit.
        var overflow = ProtoReader(hex("ffffffffffffffffff02"))
        refusal(.invalidValue, field: "v", try overflow.varint("v"))
        // A redundant but 10-byte encoding of 1 is still a varint.
        var padded = ProtoReader(hex("81808080808080808000"))
        XCTAssertEqual(try padded.varint("v"), 1)
        // Input that ends inside one.
        var cut = ProtoReader(hex("ffff"))
        refusal(.truncated, field: "v", try cut.varint("v"))
        // As a message: an 11-byte tag, and an 11-byte length.
        refusal(.invalidValue, try WorkloadAPI.JWTSVID(protobuf: hex("8a8080808080808080808000")))
        refusal(.invalidValue, field: "JWTSVID.svid", try WorkloadAPI.JWTSVID(protobuf: hex("12ffffffffffffffffff8001")))
    }

    func testTagsWithFieldZeroGroupsOrUndefinedWireTypesAreRefused() {
        refusal(.invalidValue, field: "tag", try WorkloadAPI.X509SVIDRequest(protobuf: hex("0000")))       // field 0
        refusal(.invalidValue, try WorkloadAPI.X509SVIDRequest(protobuf: hex("0b0c")))                      // a group: start 1, end 1
        refusal(.invalidValue, try WorkloadAPI.X509SVIDRequest(protobuf: hex("0c")))                        // end-group alone
        refusal(.invalidValue, try WorkloadAPI.X509SVIDRequest(protobuf: hex("0e00")))                      // wire type 6
        refusal(.invalidValue, field: "tag", try WorkloadAPI.X509SVIDRequest(protobuf: hex("f8ffffff7f00"))) // field 2^32-1 > 2^29-1
        // The largest field number is a field like any other, skipped when unknown.
        XCTAssertNoThrow(try WorkloadAPI.X509SVIDRequest(protobuf: hex("f8ffffff0f00")))
    }

    func testLengthsPastTheEndAndTruncationAreRefused() throws {
        let svid = WorkloadAPI.X509SVID(spiffeID: "spiffe://example.org/a", x509SVID: [1, 2, 3], x509SVIDKey: [4], bundle: [5], hint: "h")
        let bytes = svid.protobuf
        // Every proper prefix that cuts a field is refused as truncated (a prefix that ends
        // between fields is a shorter valid message).
        var boundaries = Set<Int>()
        var r = ProtoReader(bytes)
        while let (n, w) = try r.next() { try r.skip(w, n); boundaries.insert(r.offset) }
        for cut in 1..<bytes.count where !boundaries.contains(cut) {
            refusal(.truncated, try WorkloadAPI.X509SVID(protobuf: Array(bytes.prefix(cut))))
        }
        // A length larger than the rest of the message, also when the outer message has bytes after it.
        refusal(.truncated, field: "X509SVID.x509_svid", try WorkloadAPI.X509SVID(protobuf: hex("1205010203")))
        let inner = hex("0a05") + [0x12, 0x09, 1, 2, 3]  // svid 1: 5 bytes, holding a length of 9
        refusal(.truncated, field: "X509SVID.x509_svid", try WorkloadAPI.X509SVIDResponse(protobuf: inner + hex("12020000")))
    }

    func testAKnownFieldWithTheWrongWireTypeIsRefused() {
        let cases: [(String, () throws -> Any)] = [
            ("X509SVID.spiffe_id", { try WorkloadAPI.X509SVID(protobuf: hex("0801")) }),          // varint for a string
            ("X509SVID.bundle", { try WorkloadAPI.X509SVID(protobuf: hex("210000000000000000")) }), // fixed64 for bytes
            ("X509SVIDResponse.svids", { try WorkloadAPI.X509SVIDResponse(protobuf: hex("0d00000000")) }),
            ("JWTSVIDRequest.audience", { try WorkloadAPI.JWTSVIDRequest(protobuf: hex("0800")) }),
            ("ValidateJWTSVIDResponse.claims", { try WorkloadAPI.ValidateJWTSVIDResponse(protobuf: hex("1001")) }),
            ("Value.number_value", { try JSONValue(protobufValue: hex("1001")) }),                // varint for a double
            ("Value.bool_value", { try JSONValue(protobufValue: hex("2200")) }),
            ("Struct.fields.key", { try JSONValue(protobufStruct: hex("0a020801")) }),
        ]
        for (field, body) in cases {
            let error = refusal(.invalidValue, field: field, try body())
            XCTAssertNotNil(error?.context["expected"], field)
        }
    }

    func testUnknownFieldsOfEveryWireTypeAreSkipped() throws {
        let known = WorkloadAPI.JWTSVID(spiffeID: "spiffe://example.org/a", svid: "x.y.z", hint: "h")
        var w = ProtoWriter()
        w.uint64(9, 300)                      // varint
        w.double(10, 1.5)                     // fixed64
        w.tag(11, .fixed32)
        var bytes = w.bytes + [1, 2, 3, 4]    // fixed32
        var tail = ProtoWriter()
        tail.bytes(12, [9, 9, 9])             // length-delimited
        tail.message(13) { $0.string(1, "nested unknown") }
        bytes = known.protobuf + bytes + tail.bytes
        XCTAssertEqual(try WorkloadAPI.JWTSVID(protobuf: bytes), known)
        // Empty request messages skip whatever they are sent, within the same bounds.
        XCTAssertEqual(try WorkloadAPI.X509SVIDRequest(protobuf: bytes), WorkloadAPI.X509SVIDRequest())
        refusal(.truncated, try WorkloadAPI.JWTBundlesRequest(protobuf: hex("1a05")))
        // An unknown fixed field cut short.
        refusal(.truncated, try WorkloadAPI.X509BundlesRequest(protobuf: hex("19000000")))
    }

    func testNestingDeeperThanTheLimitIsRefused() throws {
        // list_value inside list_value...: ListValue and Value alternate, two levels each time.
        func nestedLists(_ levels: Int) -> [UInt8] {
            var value: JSONValue = .null
            for _ in 0..<levels { value = .array([value]) }
            return value.protobufValue
        }
        XCTAssertNoThrow(try JSONValue(protobufValue: nestedLists(Protobuf.maxDepth / 2)))
        let error = refusal(.invalidValue, try JSONValue(protobufValue: nestedLists(Protobuf.maxDepth / 2 + 1)))
        XCTAssertEqual(error?.context["expected"], "<= \(Protobuf.maxDepth)")
        // The same in a response's claims: each JSON level is a Struct, a map entry and a Value.
        var claims: JSONValue = .object([:])
        for _ in 0..<40 { claims = .object(["a": claims]) }
        let response = WorkloadAPI.ValidateJWTSVIDResponse(spiffeID: "spiffe://example.org/a", claims: claims)
        refusal(.invalidValue, try WorkloadAPI.ValidateJWTSVIDResponse(protobuf: response.protobuf))
    }

    func testStringsBytesRepeatedFieldsAndMapsAreCapped() throws {
        let big = [UInt8](repeating: 0x41, count: Protobuf.maxLength + 1)
        refusal(.invalidValue, field: "X509SVID.x509_svid", try WorkloadAPI.X509SVID(protobuf: WorkloadAPI.X509SVID(x509SVID: big).protobuf))
        refusal(.invalidValue, field: "JWTSVID.svid", try WorkloadAPI.JWTSVID(protobuf: WorkloadAPI.JWTSVID(svid: String(decoding: big, as: UTF8.self)).protobuf))
        XCTAssertNoThrow(try WorkloadAPI.X509SVID(protobuf: WorkloadAPI.X509SVID(x509SVID: Array(big.dropLast())).protobuf))

        let many = (0...Protobuf.maxItems).map { "aud\($0)" }
        refusal(.invalidValue, field: "JWTSVIDRequest.audience", try WorkloadAPI.JWTSVIDRequest(protobuf: WorkloadAPI.JWTSVIDRequest(audience: many).protobuf))
        XCTAssertNoThrow(try WorkloadAPI.JWTSVIDRequest(protobuf: WorkloadAPI.JWTSVIDRequest(audience: Array(many.dropLast())).protobuf))
        refusal(.invalidValue, field: "X509SVIDResponse.crl", try WorkloadAPI.X509SVIDResponse(protobuf: WorkloadAPI.X509SVIDResponse(crl: many.map { Array($0.utf8) }).protobuf))
        let svids = (0...Protobuf.maxItems).map { _ in WorkloadAPI.JWTSVID() }
        refusal(.invalidValue, field: "JWTSVIDResponse.svids", try WorkloadAPI.JWTSVIDResponse(protobuf: WorkloadAPI.JWTSVIDResponse(svids: svids).protobuf))

        // Map entries count as they come, a repeated key included.
        var w = ProtoWriter()
        for _ in 0...Protobuf.maxItems { w.mapEntry(1, key: "spiffe://example.org") { $0.bytes(2, [1], always: true) } }
        refusal(.invalidValue, field: "JWTBundlesResponse.bundles", try WorkloadAPI.JWTBundlesResponse(protobuf: w.bytes))
        let members = Dictionary(uniqueKeysWithValues: many.map { ($0, JSONValue.null) })
        refusal(.invalidValue, field: "Struct.fields", try JSONValue(protobufStruct: JSONValue.object(members).protobufStruct))
        refusal(.invalidValue, field: "ListValue.values", try JSONValue(protobufValue: JSONValue.array(many.map { .string($0) }).protobufValue))
    }

    func testStringsMustBeUTF8() {
        refusal(.invalidValue, field: "JWTSVID.spiffe_id", try WorkloadAPI.JWTSVID(protobuf: hex("0a02c328")))
        refusal(.invalidValue, field: "X509SVIDResponse.federated_bundles.key", try WorkloadAPI.X509SVIDResponse(protobuf: hex("1a040a02ff00")))
        // The same bytes are fine where the field is bytes.
        XCTAssertEqual(try WorkloadAPI.X509SVID(protobuf: hex("1202c328")).x509SVID, [0xc3, 0x28])
    }

    func testWriterLeavesOutDefaultsExceptWhereAlwaysWritten() {
        var w = ProtoWriter()
        w.string(1, ""); w.bytes(2, []); w.uint64(3, 0); w.bool(4, false); w.double(5, 0)
        XCTAssertEqual(w.bytes, [])
        w.double(5, -0.0)
        XCTAssertEqual(Hex.encode(w.bytes), "290000000000000080")
        var a = ProtoWriter()
        a.string(1, "", always: true); a.bool(4, false, always: true)
        XCTAssertEqual(Hex.encode(a.bytes), "0a002000")
    }
}
