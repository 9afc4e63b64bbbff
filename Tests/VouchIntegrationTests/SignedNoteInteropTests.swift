import Foundation
import XCTest
import VouchCore
import VouchCrypto

/// Signed notes and cosignatures against an independent implementation: a Go program
/// (Tests/Interop/signednote) on Debian's golang.org/x/mod/sumdb/note, built offline here. Each
/// side generates its own keys; each verifies what the other signed. Go or the package missing
/// is a failure, never a skip (`make deps` installs golang-go and golang-golang-x-mod-dev).
final class SignedNoteInteropTests: XCTestCase {
    static let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Interop/signednote/main.go")
    // A checkpoint body (c2sp.org/tlog-checkpoint): origin, size, root hash.
    static let checkpoint = "vouch.example/log\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

    // Go's build cache is content-addressed and safe to share: the standard library compiles once.
    static let goCache = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-go-build-cache").path

    var dir: URL!
    var peer: String!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-note-interop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        peer = dir.appendingPathComponent("notepeer").path
        // GOPATH is Debian's Go library tree; modules off, so nothing is fetched.
        let build = try run("/usr/bin/go", ["build", "-o", peer, Self.source.path],
                            env: ["GOPATH": "/usr/share/gocode", "GO111MODULE": "off", "GOPROXY": "off", "GOFLAGS": "",
                                  "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOCACHE": Self.goCache,
                                  "HOME": dir.path, "PATH": "/usr/bin:/bin"])
        XCTAssertEqual(build.status, 0, "go build: \(build.stderr)")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func testGoVerifiesOurNotesAndWeVerifyGos() throws {
        // Ours, verified by Go.
        let ours = try NoteSigner(name: "vouch.example/log", privateKey: try Ed25519PrivateKey.generate())
        let note = try SignedNote.sign(Self.checkpoint, with: [ours])
        let verified = try peerRun(["verify", ours.verifierKey.vkey, try write("ours.note", note)])
        XCTAssertEqual(verified.status, 0, verified.stderr)
        XCTAssertEqual(verified.stdout, Self.checkpoint)
        let tampered = note.replacingOccurrences(of: "20852163", with: "20852164")
        XCTAssertNotEqual(try peerRun(["verify", ours.verifierKey.vkey, try write("tampered.note", tampered)]).status, 0)

        // Go's keys and signature, verified by us; Go's skey read by us signs byte for byte alike.
        let generated = try peerRun(["generate", "go.example/log"])
        XCTAssertEqual(generated.status, 0, generated.stderr)
        let lines = generated.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2)
        let signed = try peerRun(["sign", lines[0], try write("text", Self.checkpoint)])
        XCTAssertEqual(signed.status, 0, signed.stderr)
        let goVKey = try NoteVerifierKey(vkey: lines[1])
        let theirs = try UnverifiedNote(signed.stdout).verify([goVKey])
        XCTAssertEqual(theirs.text, Self.checkpoint)
        XCTAssertEqual(theirs.verifiedBy, ["go.example/log"])
        XCTAssertEqual(try SignedNote.sign(Self.checkpoint, with: [try NoteSigner(skey: lines[0])]), signed.stdout)
        XCTAssertEqual(try NoteSigner(skey: lines[0]).verifierKey, goVKey)
    }

    /// cosignature/v1 both ways: Go reads our timestamp and verifies our signature over the
    /// header lines and the checkpoint; we verify Go's and read its timestamp.
    func testCosignaturesBothWays() throws {
        let witness = try NoteSigner(name: "witness.example/w1", type: .cosignatureV1, privateKey: try Ed25519PrivateKey.generate())
        XCTAssertEqual(try NoteVerifierKey(vkey: witness.verifierKey.vkey), witness.verifierKey)
        let log = try NoteSigner(name: "vouch.example/log", privateKey: try Ed25519PrivateKey.generate())
        let logNote = try UnverifiedNote(try SignedNote.sign(Self.checkpoint, with: [log])).verify([log.verifierKey])
        let cosigned = logNote.adding(try SignedNote.signature(of: logNote.text, by: witness, timestamp: 1_679_315_147))
        let both = try UnverifiedNote(cosigned).verify([log.verifierKey, witness.verifierKey])
        XCTAssertEqual(both.verifiedBy, ["vouch.example/log", "witness.example/w1"])
        XCTAssertEqual(both.verifications[1].timestamp, 1_679_315_147)
        // A cosigner needs a time; a plain signer takes none; a time past 2^63-1 is refused.
        for (signer, time) in [(witness, nil), (log, UInt64(1)), (witness, UInt64(1) << 63)] {
            XCTAssertThrowsError(try SignedNote.signature(of: logNote.text, by: signer, timestamp: time)) { XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue) }
        }

        let goCheck = try peerRun(["cosign-verify", witness.verifierKey.vkey, try write("cosigned.note", cosigned)])
        XCTAssertEqual(goCheck.status, 0, goCheck.stderr)
        XCTAssertEqual(goCheck.stdout, "1679315147\n" + Self.checkpoint)

        let goCosign = try peerRun(["cosign", "witness.example/go", "1700000000", try write("cp", Self.checkpoint)])
        XCTAssertEqual(goCosign.status, 0, goCosign.stderr)
        let vkeyLine = try XCTUnwrap(goCosign.stdout.split(separator: "\n").first)
        let goWitness = try NoteVerifierKey(vkey: String(vkeyLine))
        XCTAssertEqual(goWitness.type, .cosignatureV1)
        let goNote = String(goCosign.stdout.dropFirst(vkeyLine.count + 1))
        let v = try UnverifiedNote(goNote).verify([goWitness])
        XCTAssertEqual(v.text, Self.checkpoint)
        XCTAssertEqual(v.verifications.first?.timestamp, 1_700_000_000)
        // A cosignature is not a plain signature: the same key as type 0x01 has another key ID,
        // so the line is not its signature, and the note is unverified by it.
        let asPlain = try NoteVerifierKey(name: goWitness.name, type: .ed25519, publicKey: goWitness.publicKey)
        XCTAssertThrowsError(try UnverifiedNote(goNote).verify([asPlain])) { XCTAssertEqual(($0 as? VouchError)?.code, .noteUnverified) }
    }

    private func write(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    private func peerRun(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try run(peer, args, env: ["PATH": "/usr/bin:/bin"])
    }

    private func run(_ exe: String, _ args: [String], env: [String: String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Read both pipes before waiting (a full pipe would block the child); outputs are small.
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}
