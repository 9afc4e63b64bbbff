import Foundation
import XCTest
import VouchAPI

/// The closed wire types encode as the JSON strings the API sent before they existed.
final class ClosedWireTypesTests: XCTestCase {
    func testRawValuesRoundTrip() throws {
        for r in VerdictResult.allCases { XCTAssertEqual(VerdictResult(rawValue: r.rawValue), r) }
        for s in CertificateState.allCases { XCTAssertEqual(CertificateState(rawValue: s.rawValue), s) }
        XCTAssertEqual(VerdictResult.allCases.map(\.rawValue), ["trusted", "rejected"])
        XCTAssertEqual(CertificateState.allCases.map(\.rawValue), ["valid", "expired", "revoked"])
        XCTAssertEqual(VerdictResult(trusted: true), .trusted)
        XCTAssertEqual(VerdictResult(trusted: false), .rejected)
        XCTAssertTrue(VerdictResult.trusted.isTrusted)
        XCTAssertFalse(VerdictResult.rejected.isTrusted)
    }

    func testJSONIsTheStringItWas() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let verdict = AttestationVerdict(hostId: "h", at: "t", result: .rejected, codes: ["c"], message: "m", state: "untrusted")
        XCTAssertEqual(String(decoding: try encoder.encode(verdict), as: UTF8.self),
                       #"{"at":"t","codes":["c"],"hostId":"h","message":"m","result":"rejected","state":"untrusted"}"#)
        let decoded = try JSONDecoder().decode(AttestationVerdict.self, from: Data(#"{"at":"t","codes":[],"hostId":"h","message":"","result":"trusted","state":"trusted"}"#.utf8))
        XCTAssertEqual(decoded.result, .trusted)

        let status = CertificateStatus(serial: "1", hostId: "h", agentName: "a", spiffeId: "s", notBefore: "b", notAfter: "e", state: .expired,
                                       revokedAt: nil, revocationReason: nil)
        XCTAssertTrue(String(decoding: try encoder.encode(status), as: UTF8.self).contains(#""state":"expired""#))
        for s in CertificateState.allCases {
            XCTAssertEqual(String(decoding: try encoder.encode([s]), as: UTF8.self), "[\"\(s.rawValue)\"]")
        }
    }

    /// A value outside the closed set is a decoding error (the client refuses it), not a trap.
    func testUnknownWireValueIsADecodingError() {
        XCTAssertThrowsError(try JSONDecoder().decode(AttestationVerdict.self,
                                                      from: Data(#"{"at":"t","codes":[],"hostId":"h","message":"","result":"maybe","state":"trusted"}"#.utf8)))
        XCTAssertThrowsError(try JSONDecoder().decode([CertificateState].self, from: Data(#"["suspended"]"#.utf8)))
    }
}
