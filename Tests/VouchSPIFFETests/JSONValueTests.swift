import XCTest
import VouchCore
import VouchSPIFFE

final class JSONValueTests: XCTestCase {
    func parse(_ s: String) throws -> JSONValue { try JSONValue(json: Array(s.utf8)) }

    func testBooleansAreNeverNumbersAndNumbersNeverBooleans() throws {
        XCTAssertEqual(try parse("[1, true, 0, false, 1.0, null]"),
                       .array([.number(1), .bool(true), .number(0), .bool(false), .number(1), .null]))
        XCTAssertNotEqual(try parse("true"), try parse("1"))
        XCTAssertEqual(String(decoding: JSONValue.array([.bool(true), .number(1), .bool(false), .number(0)]).json, as: UTF8.self), "[true,1,false,0]")
    }

    func testValuesOfEveryKindParseAndWriteBack() throws {
        let text = #"{"aud":["x","y"],"exp":1700000000,"f":-0.5,"big":1e300,"tiny":5e-324,"ok":true,"no":false,"n":null,"#
            + #""s":"q\"b\\s/\n\t\u0001\u00e9\ud83d\ude00","o":{"k":[{},[]]}}"#
        let value = try parse(text)
        guard case .object(let o) = value else { return XCTFail("not an object") }
        XCTAssertEqual(o["s"], .string("q\"b\\s/\n\t\u{1}é😀"))
        XCTAssertEqual(o["exp"], .number(1_700_000_000))
        XCTAssertEqual(o["tiny"], .number(Double.leastNonzeroMagnitude))
        // Keys sorted, integers without a fraction, '/' and non-ASCII as they are.
        XCTAssertEqual(String(decoding: value.json, as: UTF8.self),
                       #"{"aud":["x","y"],"big":1e+300,"exp":1700000000,"f":-0.5,"n":null,"no":false,"o":{"k":[{},[]]},"ok":true,"#
                       + #""s":"q\"b\\s/\n\t\u0001é😀","tiny":5e-324}"#)
        XCTAssertEqual(try JSONValue(json: value.json), value)
        // Whitespace around and inside; a scalar alone is a document.
        XCTAssertEqual(try parse(" \t\n{ \"a\" : [ 1 , 2 ] }\r\n"), .object(["a": .array([.number(1), .number(2)])]))
        XCTAssertEqual(try parse("\"x\""), .string("x"))
    }

    func testWhatStrictJSONRefuses() {
        let invalid = ["[1,]", "{\"a\":1,}", "01", "-", "1.", ".5", "+1", "1e", "NaN", "Infinity", "1e400", "[1]x", "'a'", "{a:1}",
                       "{\"a\":1,\"a\":2}", "\"\\ud800\"", "\"\\udc00x\"", "\"\\x\"", "\"a\u{1}\"", "tru", "nul", "[1 2]", "{\"a\" 1}", "{1:2}"]
        for text in invalid {
            XCTAssertThrowsError(try parse(text), text) { XCTAssertTrue([.invalidValue, .truncated].contains(($0 as? VouchError)?.code), "\(text): \($0)") }
        }
        refusal(.invalidValue, field: "json", try JSONValue(json: [0x22, 0xff, 0x22]))  // not UTF-8
        refusal(.truncated, field: "json", try parse("{\"a\":"))
        refusal(.truncated, field: "json", try parse(""))
        refusal(.truncated, field: "json", try parse("\"abc"))
        let duplicate = refusal(.invalidValue, field: "json", try parse("{\"a\":1,\"a\":2}"))
        XCTAssertEqual(duplicate?.context["offset"], "7")
    }

    func testNestingAndSizesAreBounded() throws {
        let deepest = String(repeating: "[", count: JSONValue.maxDepth) + String(repeating: "]", count: JSONValue.maxDepth)
        XCTAssertNoThrow(try parse(deepest))
        refusal(.invalidValue, try parse("[" + deepest + "]"))
        refusal(.invalidValue, try parse(String(repeating: "{\"a\":", count: 33) + "1" + String(repeating: "}", count: 33)))
        refusal(.invalidValue, try parse("[" + Array(repeating: "0", count: Protobuf.maxItems + 1).joined(separator: ",") + "]"))
        XCTAssertNoThrow(try parse("[" + Array(repeating: "0", count: Protobuf.maxItems).joined(separator: ",") + "]"))
        // The deepest JSON claims still fit a ValidateJWTSVIDResponse's nesting limit.
        var claims: JSONValue = .null
        for _ in 0..<JSONValue.maxDepth { claims = .object(["k": claims]) }
        let response = WorkloadAPI.ValidateJWTSVIDResponse(spiffeID: "spiffe://example.org/a", claims: claims)
        XCTAssertEqual(try WorkloadAPI.ValidateJWTSVIDResponse(protobuf: response.protobuf), response)
    }

    func testStructEncodingOfEveryKind() throws {
        // google.protobuf.Value's oneof members, each written even when it holds its default.
        let vectors: [(JSONValue, String)] = [
            (.null, "0800"), (.number(0), "110000000000000000"), (.number(1.5), "11000000000000f83f"),
            (.string(""), "1a00"), (.string("hi"), "1a026869"), (.bool(false), "2000"), (.bool(true), "2001"),
            (.object([:]), "2a00"), (.array([]), "3200"),
            (.object(["a": .null]), "2a090a070a0161120208" + "00"), (.array([.bool(true)]), "32040a022001"),
        ]
        for (value, encoding) in vectors {
            XCTAssertEqual(Hex.encode(value.protobufValue), encoding, "\(value)")
            XCTAssertEqual(try JSONValue(protobufValue: hex(encoding)), value)
        }
        XCTAssertEqual(JSONValue.object(["a": .null]).protobufStruct, hex("0a070a0161120208" + "00"))
        XCTAssertEqual(JSONValue.string("not an object").protobufStruct, [])
        XCTAssertEqual(JSONValue.number(.nan).protobufValue, JSONValue.null.protobufValue)
    }
}
