import Foundation
import XCTest
import VouchCrypto

/// vouchd's collateral-fetching options as `--check-config` judges them: off unless asked, each
/// URL https (plain http only to a loopback address), companions only with the vendor they
/// belong to, and not together with the read-only `--tdx-collateral` — refused before anything
/// is created (exit 2).
final class CollateralFetchOptionsTests: XCTestCase {
    func testFetchingOptionsAreCheckedBeforeAnythingIsCreated() throws {
        let dir = try TestEnv.tempDir("vouch-fetch-options")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ek = dir.appendingPathComponent("ek")
        try FileManager.default.createDirectory(at: ek, withIntermediateDirectories: true)
        let ca = try CertificateAuthority.create(commonName: "unused EK root", key: try PrivateKey.generate(), notBefore: Date(),
                                                 notAfter: Date().addingTimeInterval(3600))
        try Data(try ca.certificate.pem.utf8).write(to: ek.appendingPathComponent("root.pem"))
        let file = dir.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        let base = ["--data-dir", dir.appendingPathComponent("data").path, "--policy", TestEnv.packageRoot.appendingPathComponent("policies/development.yaml").path,
                    "--ek-roots", ek.path, "--check-config"]
        for valid in [["--fetch-collateral", "intel,amd"],
                      ["--fetch-collateral", "amd", "--amd-kds-url", "http://127.0.0.1:8080"],
                      ["--fetch-collateral", "intel", "--intel-pcs-url", "https://pccs.example.net:8081/pcs", "--intel-root-ca-crl-url", "http://[::1]:9/root.der",
                       "--collateral-cache", dir.appendingPathComponent("cache").path]] {
            let r = try TestEnv.run(TestEnv.bin("vouchd"), base + valid)
            XCTAssertEqual(r.status, 0, "\(valid): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("fetch-collateral: \(valid[1])  (--fetch-collateral)"), r.stdout)
        }
        for refused in [["--fetch-collateral", "nvidia"], ["--fetch-collateral", "intel,intel"],
                        ["--collateral-cache", dir.path], ["--amd-kds-url", "https://kdsintf.amd.com"],
                        ["--fetch-collateral", "intel", "--amd-kds-url", "https://kdsintf.amd.com"],
                        ["--fetch-collateral", "amd", "--amd-kds-url", "http://kdsintf.amd.com"],
                        ["--fetch-collateral", "amd", "--amd-kds-url", "https://kdsintf.amd.com/?x=1"],
                        ["--fetch-collateral", "amd", "--amd-kds-url", "ftp://127.0.0.1"],
                        ["--fetch-collateral", "intel", "--intel-root-ca-crl-url", "https://certificates.trustedservices.intel.com"],
                        // a query or fragment would not be sent: refused, not dropped
                        ["--fetch-collateral", "intel", "--intel-root-ca-crl-url", "https://pccs.example.net/sgx/certification/v4/rootcacrl?encoding=der"],
                        ["--fetch-collateral", "intel", "--intel-root-ca-crl-url", "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der#x"],
                        ["--fetch-collateral", "intel", "--collateral-cache", file.path],
                        ["--fetch-collateral", "intel", "--tdx-collateral", dir.path]] {
            let r = try TestEnv.run(TestEnv.bin("vouchd"), base + refused)
            XCTAssertEqual(r.status, 2, "\(refused): \(r.stdout)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("data").path), "a refused configuration changes nothing")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("cache").path), "--check-config creates no cache")
    }
}
