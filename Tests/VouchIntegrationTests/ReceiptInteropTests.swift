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
        let venv = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-receipt-venv").path
        if !FileManager.default.fileExists(atPath: venv + "/bin/python") 
            || (try? TestEnv.run(venv + "/bin/python", ["-c", "import securesystemslib, in_toto_attestation, cryptography"]))?.status != 0 {
            let made = try TestEnv.run("/usr/bin/python3", ["-m", "venv", venv])
            guard made.status == 0 else { throw TestFailure("python3 -m venv failed (make deps installs python3-venv): \(made.stderr)") }
            let pip = try TestEnv.run(venv + "/bin/pip", ["install", "-q", "securesystemslib[crypto]", "in-toto-attestation"])
            guard pip.status == 0 else { throw TestFailure("securesystemslib or in-toto-attestation could not be installed from PyPI: \(pip.stderr.suffix(300))") }
        }
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
        let r = try TestEnv.run(venv + "/bin/python", [dir.appendingPathComponent("check.py").path, dir.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "OK")
    }
}
