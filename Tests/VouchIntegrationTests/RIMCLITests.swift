import Foundation
import XCTest
import VouchTestSupport

/// `vouch evidence verify --kind nvidia-rim`: every RIM of Tests/Fixtures/nvidia-rim verifies at
/// the manifest's pinned time with its version and active indices, and is refused once its signer
/// expired; bad usage exits 2.
final class RIMCLITests: XCTestCase {
    func run(_ extra: [String]) throws -> (status: Int32, json: [String: Any], stderr: String) {
        let r = try TestEnv.run(TestEnv.bin("vouch"), ["evidence", "verify", "--kind", "nvidia-rim"] + extra)
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
        return (r.status, json, r.stderr)
    }

    func testEveryManifestRIMThroughTheCLI() throws {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("nvidia-rim/manifest.json"))) as! [String: Any]
        let at = manifest["verify_at"] as! String, expiredAt = manifest["expired_at"] as! String
        let rims = manifest["rims"] as! [[String: Any]]
        XCTAssertEqual(rims.count, 3)
        for rim in rims {
            let file = try fixture("nvidia-rim/\(rim["file"] as! String)").path
            let component = rim["component"] as! String
            let ok = try run(["--component", component, "--at", at, "--json", file])
            XCTAssertEqual(ok.status, 0, "\(file): \(ok.json) \(ok.stderr)")
            let claims = try XCTUnwrap(ok.json["claims"] as? [String: Any], file)
            XCTAssertEqual(claims["version"] as? String, rim["version"] as? String)
            XCTAssertEqual(claims["component"] as? String, component)
            let measurements = try XCTUnwrap(claims["measurements"] as? [[String: Any]])
            XCTAssertEqual(measurements.filter { $0["active"] as? Bool == true }.compactMap { $0["index"] as? Int }, rim["active"] as? [Int])
            let expired = try run(["--component", component, "--at", expiredAt, "--json", file])
            XCTAssertEqual(expired.status, 1, file)
            XCTAssertEqual((expired.json["violations"] as? [[String: Any]])?.first?["code"] as? String, "rim_chain_invalid")
            XCTAssertNil(expired.json["claims"] as? [String: Any])
        }
    }

    func testUsageAndUnreadableExitTwo() throws {
        let file = try fixture("nvidia-rim/rims/Driver_RIM_test_no_gpu.swidtag").path
        // Without --component the signed version tells it; the wrong one is refused.
        let told = try run(["--at", "2025-01-01T00:00:00Z", "--json", file])
        XCTAssertEqual(told.status, 0)
        XCTAssertEqual((told.json["claims"] as? [String: Any])?["component"] as? String, "driver")
        let wrong = try run(["--component", "vbios", "--at", "2025-01-01T00:00:00Z", "--json", file])
        XCTAssertEqual(wrong.status, 1)
        XCTAssertEqual((wrong.json["violations"] as? [[String: Any]])?.first?["code"] as? String, "rim_component_mismatch")
        XCTAssertEqual(try run(["--component", "gpu", "--at", "2025-01-01T00:00:00Z", file]).status, 2)
        XCTAssertEqual(try run(["--component", "driver", "--at", "2025-01-01T00:00:00Z", "/nonexistent/rim.xml"]).status, 2)
        let plain = try TestEnv.run(TestEnv.bin("vouch"), ["evidence", "verify", "--kind", "nvidia-rim", "--component", "driver", "--at", "2025-01-01T00:00:00Z", file])
        XCTAssertEqual(plain.status, 0)
        XCTAssertTrue(plain.stdout.hasPrefix("nvidia-rim: verified"), plain.stdout)
    }
}
