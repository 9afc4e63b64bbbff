@testable import VouchHTTPClient
import XCTest

/// The client's reading of the header lines curl hands it, byte for byte.
final class HeaderLineTests: XCTestCase {
    private func parse(_ s: String) -> HeaderLine {
        Array(s.utf8).withUnsafeBufferPointer { HeaderLine.parse($0) }
    }

    func testStatusLines() {
        XCTAssertEqual(parse("HTTP/1.1 200 OK\r\n"), .status(200))
        XCTAssertEqual(parse("HTTP/2 404 \r\n"), .status(404))
        XCTAssertEqual(parse("HTTP/1.1 100\r\n"), .status(100))
        XCTAssertEqual(parse("HTTP/1.1 2000 x\r\n"), .status(0))
        XCTAssertEqual(parse("HTTP/1.1 OK\r\n"), .status(0))
        XCTAssertEqual(parse("HTTP/1.1\r\n"), .status(0))
    }

    func testFieldsAreTrimmedAndKeepInnerSpacesAndColons() {
        XCTAssertEqual(parse("Content-Type: application/json\r\n"), .field("Content-Type", "application/json"))
        XCTAssertEqual(parse("X-A:\t b : c \r\n"), .field("X-A", "b : c"))
        XCTAssertEqual(parse("Empty:\r\n"), .field("Empty", ""))
        XCTAssertEqual(parse("Location: https://h:8443/x\r\n"), .field("Location", "https://h:8443/x"))
    }

    func testTheEndAndOtherLines() {
        XCTAssertEqual(parse("\r\n"), .end)
        XCTAssertEqual(parse(""), .end)
        XCTAssertEqual(parse("garbage\r\n"), .other)
    }
}
