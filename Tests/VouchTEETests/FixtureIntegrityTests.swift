import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchTestSupport

/// The TEE fixtures are the corpus's bytes: every file listed in a folder's SHA256SUMS is present
/// and has that digest (a missing or changed fixture fails here before any verifier test
/// misreads it).
final class FixtureIntegrityTests: XCTestCase {
    func testSHA256SUMSMatch() throws {
        for folder in ["sev-snp", "tdx", "nitro", "nvidia-gpu", "nvidia-rim"] {
            let sums = try String(decoding: Data(contentsOf: fixture("\(folder)/SHA256SUMS")), as: UTF8.self)
            var count = 0
            for line in sums.split(separator: "\n") {
                let parts = line.split(separator: " ", maxSplits: 1)
                XCTAssertEqual(parts.count, 2, "\(folder)/SHA256SUMS: \(line)")
                let expected = String(parts[0])
                let name = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: " *"))
                let bytes = try [UInt8](Data(contentsOf: fixture("\(folder)/\(name)")))
                XCTAssertEqual(Hex.encode(Crypto.sha256(bytes)), expected, "\(folder)/\(name)")
                count += 1
            }
            XCTAssertGreaterThan(count, ["nitro": 5, "nvidia-rim": 4][folder] ?? 10, folder)
        }
    }
}
