import Foundation
import XCTest
import VouchCrypto
import VouchTestSupport

/// `vouch log`: exit 2 for usage errors and unreadable keys, 1 for refusals (wrong key, rollback,
/// fork), 0 when the witness cosigned; the fork evidence stays in the state directory.
final class LogCLITests: XCTestCase {
    var dir: URL!
    var log: StaticTileLog!
    var vkey: String { log.signer.verifierKey.vkey }

    override func setUpWithError() throws {
        dir = try TestEnv.tempDir("vouch-log-cli")
        log = StaticTileLog(directory: dir.appendingPathComponent("log"), signer: try StaticTileLog.logSigner())
        log.append(20)
        try log.publish()
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func vouch(_ args: [String]) throws -> TestEnv.RunResult { try TestEnv.run(TestEnv.bin("vouch"), ["log"] + args) }

    func keygen() throws -> String {
        let r = try vouch(["keygen", "--name", "witness.example.net", "--out", dir.appendingPathComponent("w").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        return dir.appendingPathComponent("w.skey").path
    }

    func witness(_ extra: [String] = []) throws -> TestEnv.RunResult {
        try vouch(["witness", "--log", log.directory.path, "--log-key", vkey, "--key", dir.appendingPathComponent("w.skey").path,
                   "--state", dir.appendingPathComponent("state").path] + extra)
    }

    func testUsageErrorsExit2() throws {
        _ = try keygen()
        for args in [["frobnicate"], ["checkpoint", "--log-key", vkey], ["checkpoint", "--log", dir.appendingPathComponent("missing").path, "--log-key", vkey],
                     ["checkpoint", "--log", log.directory.path, "--log-key", "not-a-key"], ["checkpoint", "--log", "http://127.0.0.1:1", "--log-key", vkey],
                     ["checkpoint", "--log", "https://127.0.0.1:1", "--log-key", vkey], ["keygen", "--name", "bad name", "--out", dir.appendingPathComponent("x").path]] {
            let r = try TestEnv.run(TestEnv.bin("vouch"), ["log"] + args, env: ["VOUCH_CA": ""])
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
        XCTAssertEqual(try witness(["--submit"]).status, 2)
        // A key file that is not a witness key, and keygen refusing to overwrite.
        try "PRIVATE+KEY+nope".write(to: dir.appendingPathComponent("bad.skey"), atomically: true, encoding: .utf8)
        chmod(dir.appendingPathComponent("bad.skey").path, 0o600)
        let bad = try vouch(["witness", "--log", log.directory.path, "--log-key", vkey, "--key", dir.appendingPathComponent("bad.skey").path, "--state", dir.path])
        XCTAssertEqual(bad.status, 2, bad.stderr)
        XCTAssertEqual(try vouch(["keygen", "--name", "witness.example.net", "--out", dir.appendingPathComponent("w").path]).status, 1)
    }

    func testCheckpointPrintsTheVerifiedNoteAndRefusesAnotherKey() throws {
        let r = try vouch(["checkpoint", "--log", log.directory.path, "--log-key", vkey, "--check-tiles"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, try String(contentsOf: log.directory.appendingPathComponent("checkpoint"), encoding: .utf8))
        let other = try StaticTileLog.logSigner().verifierKey.vkey
        let refused = try vouch(["checkpoint", "--log", log.directory.path, "--log-key", other])
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1)
    }

    func testWitnessCosignsThenRefusesRollbackAndFork() throws {
        _ = try keygen()
        let old = try log.note()
        log.append(300)
        try log.publish()
        let first = try witness()
        XCTAssertEqual(first.status, 0, first.stderr)
        let wkey = try NoteVerifierKey(vkey: try String(contentsOf: dir.appendingPathComponent("w.vkey"), encoding: .utf8).trimmingCharacters(in: .newlines))
        let cosigned = try String(contentsOf: dir.appendingPathComponent("state/example.org%2Fvouch-log/checkpoint"), encoding: .utf8)
        XCTAssertEqual(try UnverifiedNote(cosigned).verify([wkey]).verifiedBy, ["witness.example.net"])
        XCTAssertTrue(first.stdout.hasSuffix(cosigned))
        // Rollback: exit 1, state kept.
        try log.writeCheckpoint(old)
        XCTAssertEqual(try witness().status, 1)
        XCTAssertEqual(try String(contentsOf: dir.appendingPathComponent("state/example.org%2Fvouch-log/checkpoint"), encoding: .utf8), cosigned)
        // Fork: another tree under the same key; exit 1 and both notes kept.
        var other = StaticTileLog(directory: log.directory, signer: log.signer)
        other.append(400, tag: "rewritten")
        let forked = try other.publish()
        XCTAssertEqual(try witness().status, 1)
        XCTAssertEqual(try String(contentsOf: dir.appendingPathComponent("state/example.org%2Fvouch-log/fork/received.note"), encoding: .utf8), forked)
        XCTAssertEqual(try witness().status, 1)
    }

    /// A witness key file refused for its mode is an unreadable key (exit 2), like any other.
    func testAKeyFileWithAnUnsafeModeExits2() throws {
        let key = try keygen()
        chmod(key, 0o644)
        let r = try witness()
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }

    /// `--log-key` is the log's Ed25519 note key, never a cosignature key under the log's name.
    func testACosignatureKeyIsNotALogKey() throws {
        let witnessKey = try NoteSigner(name: log.signer.name, type: .cosignatureV1, privateKey: Ed25519PrivateKey.generate()).verifierKey.vkey
        let r = try vouch(["checkpoint", "--log", log.directory.path, "--log-key", witnessKey])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertEqual(try vouch(["checkpoint", "--log", log.directory.path, "--log-key", vkey]).status, 0)
    }
}
