import Foundation
import XCTest
import VouchCrypto
import VouchTestSupport

/// `vouch log` key checks (the review of #18): a witness key file refused for its mode is an
/// unreadable key (exit 2), and `--log-key` must be the log's Ed25519 key, not a cosignature key.
final class LogCLIKeyTests: XCTestCase {
    var dir: URL!
    var log: StaticTileLog!

    override func setUpWithError() throws {
        dir = try TestEnv.tempDir("vouch-log-key")
        log = StaticTileLog(directory: dir.appendingPathComponent("log"), signer: try StaticTileLog.logSigner())
        log.append(5)
        try log.publish()
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func vouch(_ args: [String]) throws -> TestEnv.RunResult { try TestEnv.run(TestEnv.bin("vouch"), ["log"] + args) }

    func testAKeyFileWithAnUnsafeModeExits2() throws {
        let keygen = try vouch(["keygen", "--name", "witness.example.net", "--out", dir.appendingPathComponent("w").path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let key = dir.appendingPathComponent("w.skey").path
        chmod(key, 0o644)
        let r = try vouch(["witness", "--log", log.directory.path, "--log-key", log.signer.verifierKey.vkey, "--key", key, "--state", dir.appendingPathComponent("s").path])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }

    func testACosignatureKeyIsNotALogKey() throws {
        let witnessKey = try NoteSigner(name: log.signer.name, type: .cosignatureV1, privateKey: Ed25519PrivateKey.generate()).verifierKey.vkey
        let r = try vouch(["checkpoint", "--log", log.directory.path, "--log-key", witnessKey])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertEqual(try vouch(["checkpoint", "--log", log.directory.path, "--log-key", log.signer.verifierKey.vkey]).status, 0)
    }
}
