import XCTest
import VouchCore
import VouchSPIFFE

final class SPIFFEIDTests: XCTestCase {
    func testValidIDsSplitIntoTrustDomainAndPath() throws {
        let cases: [(String, String, String)] = [
            ("spiffe://example.org", "example.org", ""),
            ("spiffe://example.org/workload", "example.org", "/workload"),
            ("spiffe://a-b_c.9/Host/ID-1/agent/x.y_z", "a-b_c.9", "/Host/ID-1/agent/x.y_z"),
            ("spiffe://td/...", "td", "/..."),
        ]
        for (id, domain, path) in cases {
            let parsed = try SPIFFEID.parse(id)
            XCTAssertEqual(parsed.trustDomain, domain, id)
            XCTAssertEqual(parsed.path, path, id)
        }
        let longest = "spiffe://td/" + String(repeating: "a", count: SPIFFEID.maxLength - 12)
        XCTAssertNoThrow(try SPIFFEID.parse(longest))
        refusal(.invalidValue, field: "spiffe_id", try SPIFFEID.parse(longest + "a"))
    }

    func testEachRuleOfTheSpecificationRefusesWithItsReason() {
        let cases: [(String, String)] = [
            ("https://example.org/a", "scheme"), ("SPIFFE://example.org/a", "scheme"), ("spiffe:/example.org", "scheme"), ("", "scheme"),
            ("spiffe://", "trust_domain"), ("spiffe:///a", "trust_domain"), ("spiffe://Example.org/a", "trust_domain"),
            ("spiffe://user@example.org/a", "trust_domain"), ("spiffe://example.org:8443/a", "trust_domain"),
            ("spiffe://example.org?q=1", "trust_domain"), ("spiffe://example.org#f", "trust_domain"), ("spiffe://exämple.org", "trust_domain"),
            ("spiffe://example.org/", "path"), ("spiffe://example.org//a", "path"), ("spiffe://example.org/a/", "path"),
            ("spiffe://example.org/./a", "path"), ("spiffe://example.org/a/..", "path"), ("spiffe://example.org/a?x", "path"),
            ("spiffe://example.org/a#x", "path"), ("spiffe://example.org/a%2Fb", "path"), ("spiffe://example.org/a b", "path"),
            ("spiffe://example.org/ü", "path"),
        ]
        for (id, reason) in cases {
            let error = refusal(.invalidValue, field: "spiffe_id", try SPIFFEID.parse(id))
            XCTAssertEqual(error?.context["reason"], reason, id)
            XCTAssertFalse(SPIFFEID.isValid(id), id)
        }
    }
}
