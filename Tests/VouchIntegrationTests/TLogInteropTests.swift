import Foundation
import XCTest
import VouchCrypto
import VouchTestSupport

/// A third party verifies a log Vouch wrote: aics-tlog (PyPI), an independent Python
/// implementation of C2SP tlog-tiles, tlog-checkpoint, signed-note and tlog-cosignature, checks
/// the checkpoint's signature, an entry's inclusion from the tiles, the consistency of two
/// checkpoints, a cosignature made by `vouch log witness`, and a copy made by `vouch log mirror`.
///
/// aics-tlog 0.2.1 declares Requires-Python >= 3.12, and Debian 12's python3 is 3.11. Its code
/// uses nothing newer than 3.11 (it compiles and imports there, and this test runs every command
/// it relies on), so it is installed into a throwaway 3.11 venv with pip's
/// `--ignore-requires-python`, pinned to exact versions so a new release cannot change the test.
final class TLogInteropTests: XCTestCase {
    static let packages = ["aics-tlog==0.2.1", "cryptography==50.0.2"]

    static func aicsTLog() throws -> String {
        let python = try PythonVenv.python("vouch-aics-tlog-venv", packages: packages, probe: "import aics_tlog", pipOptions: ["--ignore-requires-python"])
        return (python as NSString).deletingLastPathComponent + "/aics-tlog"
    }

    struct Report { let status: Int32; let json: [String: Any]; let stderr: String }

    func aics(_ args: [String]) throws -> Report {
        let r = try TestEnv.run(try Self.aicsTLog(), args)
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]) ?? [:]
        return Report(status: r.status, json: json, stderr: r.stdout + r.stderr)
    }

    func testAICSTLogVerifiesAVouchLogItsWitnessAndItsMirror() throws {
        let dir = try TestEnv.tempDir("vouch-aics")
        defer { try? FileManager.default.removeItem(at: dir) }
        var log = StaticTileLog(directory: dir.appendingPathComponent("log"), signer: try StaticTileLog.logSigner())
        let vkey = log.signer.verifierKey.vkey
        log.append(300)
        try log.publish()
        let old = dir.appendingPathComponent("old.note")
        try log.note().write(to: old, atomically: true, encoding: .utf8)
        log.append(413)
        try log.publish()

        // The checkpoint and the right edge of the tiles.
        let cp = try aics(["verify-checkpoint", "--tiles", log.directory.path, "--log-key", vkey])
        XCTAssertEqual(cp.status, 0, cp.stderr)
        XCTAssertEqual(cp.json["ok"] as? Bool, true, cp.stderr)
        XCTAssertEqual(cp.json["size"] as? Int, 713, cp.stderr)
        XCTAssertEqual(cp.json["origin"] as? String, "example.org/vouch-log")
        XCTAssertEqual(cp.json["tiles_ok"] as? Bool, true, cp.stderr)
        // Another key under the same name is refused.
        let wrong = try aics(["verify-checkpoint", "--tiles", log.directory.path, "--log-key", try StaticTileLog.logSigner().verifierKey.vkey])
        XCTAssertNotEqual(wrong.status, 0)

        // An entry's inclusion, its bytes proven from the entry bundle.
        let entryOut = dir.appendingPathComponent("entry")
        let inc = try aics(["verify-inclusion", "--tiles", log.directory.path, "--log-key", vkey, "--index", "517", "--entry-out", entryOut.path])
        XCTAssertEqual(inc.status, 0, inc.stderr)
        XCTAssertEqual(inc.json["index"] as? Int, 517, inc.stderr)
        XCTAssertEqual([UInt8](try Data(contentsOf: entryOut)), log.entries[517])

        // The tree of 713 entries extends the saved checkpoint of 300.
        let cons = try aics(["verify-consistency", "--tiles", log.directory.path, "--log-key", vkey, "--old-checkpoint", old.path])
        XCTAssertEqual(cons.status, 0, cons.stderr)
        XCTAssertEqual(cons.json["old_size"] as? Int, 300, cons.stderr)
        XCTAssertEqual(cons.json["new_size"] as? Int, 713, cons.stderr)
        // A saved checkpoint of another tree under the same key: aics-tlog calls it rewritten history.
        var other = StaticTileLog(directory: dir.appendingPathComponent("other"), signer: log.signer)
        other.append(300, tag: "other")
        let otherNote = dir.appendingPathComponent("other.note")
        try other.note().write(to: otherNote, atomically: true, encoding: .utf8)
        let forked = try aics(["verify-consistency", "--tiles", log.directory.path, "--log-key", vkey, "--old-checkpoint", otherNote.path])
        XCTAssertEqual(forked.status, 1, forked.stderr)
        XCTAssertEqual(forked.json["ok"] as? Bool, false, forked.stderr)

        // A cosignature by `vouch log witness`, counted toward a quorum of one.
        let keygen = try TestEnv.run(TestEnv.bin("vouch"), ["log", "keygen", "--name", "witness.example.net", "--out", dir.appendingPathComponent("w").path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let wvkey = try String(contentsOf: dir.appendingPathComponent("w.vkey"), encoding: .utf8).trimmingCharacters(in: .newlines)
        let state = dir.appendingPathComponent("state")
        let w = try TestEnv.run(TestEnv.bin("vouch"), ["log", "witness", "--log", log.directory.path, "--log-key", vkey,
                                                         "--key", dir.appendingPathComponent("w.skey").path, "--state", state.path])
        XCTAssertEqual(w.status, 0, w.stderr)
        let cosigned = state.appendingPathComponent("example.org%2Fvouch-log/checkpoint").path
        let quorum = try aics(["verify-checkpoint", "--note", cosigned, "--log-key", vkey, "--witness-key", wvkey, "--quorum", "1", "--max-age", "3600"])
        XCTAssertEqual(quorum.status, 0, quorum.stderr)
        XCTAssertEqual(quorum.json["cosignatures"] as? Int, 1, quorum.stderr)
        XCTAssertEqual(quorum.json["size"] as? Int, 713, quorum.stderr)
        // The log's own note has no cosignature: the same quorum fails.
        let bare = try aics(["verify-checkpoint", "--note", log.directory.appendingPathComponent("checkpoint").path, "--log-key", vkey,
                             "--witness-key", wvkey, "--quorum", "1"])
        XCTAssertNotEqual(bare.status, 0)

        // `vouch log mirror` writes a copy aics-tlog reads like the log itself.
        let mirror = dir.appendingPathComponent("mirror")
        let m = try TestEnv.run(TestEnv.bin("vouch"), ["log", "mirror", "--log", log.directory.path, "--log-key", vkey, "--out", mirror.path])
        XCTAssertEqual(m.status, 0, m.stderr)
        let fromMirror = try aics(["verify-inclusion", "--tiles", mirror.path, "--log-key", vkey, "--index", "712"])
        XCTAssertEqual(fromMirror.status, 0, fromMirror.stderr)
    }
}
