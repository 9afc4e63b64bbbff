import Foundation
import XCTest
import VouchAttestation
import VouchCore

final class AttestationExtensionTests: XCTestCase {
    let sample = AttestationExtension(hostId: String(repeating: "ab", count: 16), attestedAt: Date(timeIntervalSince1970: 1_800_000_000),
                                      evidenceType: "tpm2-quote", evidenceDigest: [UInt8](repeating: 1, count: 32), pcrBank: "sha256",
                                      pcrDigest: [UInt8](repeating: 2, count: 32), policyName: "fleet", policyVersion: 300,
                                      policyDigest: [UInt8](repeating: 3, count: 32), modelManifests: [[UInt8](repeating: 4, count: 32)], secureBoot: true)

    func testRoundTripAndOptionalFields() throws {
        XCTAssertEqual(try AttestationExtension(der: sample.der), sample)
        var bare = sample
        bare.modelManifests = []
        bare.secureBoot = nil
        XCTAssertEqual(try AttestationExtension(der: bare.der), bare)
        XCTAssertEqual(sample.der.first, 0x30)
    }

    func testEveryTruncationAndTrailingBytesAreRefused() {
        let der = sample.der
        for n in 0..<der.count {
            XCTAssertThrowsError(try AttestationExtension(der: Array(der.prefix(n))), "prefix \(n)")
        }
        XCTAssertThrowsError(try AttestationExtension(der: der + [0])) { XCTAssertEqual(($0 as? VouchError)?.code, .trailingBytes) }
        var wrongVersion = der
        let i = der.firstIndex(of: 0x02)!   // first INTEGER: version
        wrongVersion[i + 2] = 9
        XCTAssertThrowsError(try AttestationExtension(der: wrongVersion)) { XCTAssertEqual(($0 as? VouchError)?.code, .unsupported) }
    }
}
