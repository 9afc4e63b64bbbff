import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchReceiptTestSupport
import VouchReceipts
import VouchTestSupport

/// Receipts read by third-party tools (PyPI, in a throwaway virtualenv): securesystemslib's DSSE
/// code verifies the envelope with the agent certificate's public key (and refuses a changed
/// payload), and in-toto-attestation's Statement v1 type validates the payload.
final class ReceiptInteropTests: XCTestCase {
    static let script = #"""
    import json, sys
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey
    from google.protobuf import json_format
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement

    d = sys.argv[1]
    text = open(d + "/envelope.json").read()
    raw = json.loads(text)
    key = SSlibKey(raw["signatures"][0]["keyid"], "ecdsa", "ecdsa-sha2-nistp256", {"public": open(d + "/agent.pub.pem").read()})
    env = Envelope.from_dict(json.loads(text))
    assert env.pae() == open(d + "/pae.bin", "rb").read(), "PAE differs"
    env.verify([key], 1)
    raw["payload"] = raw["payload"][:-4] + ("AAAA" if raw["payload"][-4:] != "AAAA" else "BBBB")
    try:
        Envelope.from_dict(json.loads(json.dumps(raw))).verify([key], 1)
        sys.exit("a changed payload verified")
    except VerificationError:
        pass
    stmt = Statement.copy_from_pb(json_format.Parse(env.payload.decode(), statement_pb2.Statement()))
    stmt.validate()
    assert stmt.pb.predicate_type == "https://vouch.dev/receipt/v1"
    assert stmt.pb.subject[0].digest["sha256"] == open(d + "/output.sha256").read()
    print("OK")
    """#

    func testSecureSystemsLibAndInTotoAttestationAcceptTheReceipt() throws {
        let python = try PythonVenv.python("vouch-receipt-venv", packages: ["securesystemslib[crypto]", "in-toto-attestation"],
                                           probe: "import securesystemslib, in_toto_attestation, cryptography")
        let world = try ReceiptFixture()
        let output = Array("an answer\n".utf8)
        let bundle = try UnverifiedReceiptBundle(json: try world.signer().sign(output: output, request: Array("a question".utf8), startedAt: world.now,
                                                                                finishedAt: world.now.addingTimeInterval(1)).bundle)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-receipt-interop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(bundle.envelope.json).write(to: dir.appendingPathComponent("envelope.json"))
        try Data(bundle.envelope.pae).write(to: dir.appendingPathComponent("pae.bin"))
        try Data(try world.agentCert.publicKey.pem.utf8).write(to: dir.appendingPathComponent("agent.pub.pem"))
        try Data(Hex.encode(Crypto.sha256(output)).utf8).write(to: dir.appendingPathComponent("output.sha256"))
        try Data(Self.script.utf8).write(to: dir.appendingPathComponent("check.py"))
        let r = try TestEnv.run(python, [dir.appendingPathComponent("check.py").path, dir.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "OK")
    }

    /// `vouch receipt sign` then `vouch receipt verify` on files, with the exit codes the CLI promises.
    func testTheCLISignsAndVerifiesOffline() throws {
        let world = try ReceiptFixture(now: Date().addingTimeInterval(-60))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-receipt-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        func write(_ name: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: dir.appendingPathComponent(name)) }
        try write("agent.pem", Array(try world.chainPEM.utf8))
        try write("agent.key", Array(try world.agentKey.pem.utf8))
        try write("answer.txt", Array("42\n".utf8))
        try write("prompt.txt", Array("what?\n".utf8))
        let issuance = world.issuance!
        try write("issuance.json", Array(#"{"index":"\#(issuance.proof.index)","entry":"\#(Base64.encode(issuance.entry))","proof":"# .utf8)
                  + Array(try JSONEncoder().encode(issuance.proof.text)) + Array("}".utf8))
        try write("trust.json", Array(try JSONEncoder().encode(try world.trust)))
        let vouch = TestEnv.bin("vouch")
        let signed = try TestEnv.run(vouch, ["receipt", "sign", "--cert", path("agent.pem"), "--key", path("agent.key"), "--output", path("answer.txt"),
                                             "--request", path("prompt.txt"), "--issuance-proof", path("issuance.json"), "--out", path("r.json")])
        XCTAssertEqual(signed.status, 0, signed.stdout + signed.stderr)
        let salt = try XCTUnwrap(signed.stdout.split(separator: "\n").first { $0.hasPrefix("salt ") }).dropFirst(5)
        let ok = try TestEnv.run(vouch, ["receipt", "verify", path("r.json"), "--trust", path("trust.json"), "--output", path("answer.txt"),
                                         "--request", path("prompt.txt"), "--salt", String(salt)])
        XCTAssertEqual(ok.status, 0, ok.stdout + ok.stderr)
        XCTAssertTrue(ok.stdout.hasSuffix("OK\n"), ok.stdout)
        XCTAssertTrue(ok.stdout.contains("model        sha256:" + String(repeating: "04", count: 32)), ok.stdout)
        try write("other.txt", Array("41\n".utf8))
        let refused = try TestEnv.run(vouch, ["receipt", "verify", path("r.json"), "--trust", path("trust.json"), "--output", path("other.txt")])
        XCTAssertEqual(refused.status, 1, refused.stdout + refused.stderr)
        XCTAssertTrue(refused.stdout.contains("FAILED receipt_output_mismatch:"), refused.stdout)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        let unreadable = try TestEnv.run(vouch, ["receipt", "verify", path("missing.json"), "--trust", path("trust.json")])
        XCTAssertEqual(unreadable.status, 2, unreadable.stderr)
        let usage = try TestEnv.run(vouch, ["receipt", "verify", path("r.json")])
        XCTAssertEqual(usage.status, 2, usage.stderr)

        // --log: the world's log as a mirror directory; then the same entries under another key.
        func publish(_ signer: NoteSigner) throws {
            var log = StaticTileLog(directory: dir.appendingPathComponent("log"), signer: signer)
            for e in world.entries { log.append(entry: e) }
            try log.publish()
        }
        try publish(world.logSigner)
        let logged = try TestEnv.run(vouch, ["receipt", "verify", path("r.json"), "--trust", path("trust.json"), "--log", path("log")])
        XCTAssertEqual(logged.status, 0, logged.stdout + logged.stderr)
        XCTAssertTrue(logged.stdout.contains("not revoked by the receipt's time as of log size \(world.tree.size)"), logged.stdout)
        try publish(try StaticTileLog.logSigner(world.origin))
        let foreign = try TestEnv.run(vouch, ["receipt", "verify", path("r.json"), "--trust", path("trust.json"), "--log", path("log")])
        XCTAssertEqual(foreign.status, 1, foreign.stdout + foreign.stderr)
        XCTAssertTrue(foreign.stdout.contains("FAILED receipt_log_unverified:"), foreign.stdout)
        let noLog = try TestEnv.run(vouch, ["receipt", "verify", path("r.json"), "--trust", path("trust.json"), "--log", path("nothing")])
        XCTAssertEqual(noLog.status, 2, noLog.stderr)
    }
}
