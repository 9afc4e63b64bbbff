import Foundation
import XCTest
import VouchCore
import VouchCrypto
@testable import VouchLogClient
import VouchTLog
import VouchTestSupport

/// The witness and log client against the adversarial review of #18: names that could leave the
/// state directory, names equal only under Unicode canonical equivalence, fork evidence that can
/// be checked offline, and cosignature timestamps that never go back.
final class WitnessHardeningTests: XCTestCase {
    var dir: URL!
    var logDir: URL!
    var stateDir: URL!
    var witnessSigner: NoteSigner!

    override func setUpWithError() throws {
        dir = try tempDirectory("vouch-witness-h")
        logDir = dir.appendingPathComponent("log")
        stateDir = dir.appendingPathComponent("state")
        witnessSigner = try NoteSigner(name: "witness.example.net", type: .cosignatureV1, privateKey: Ed25519PrivateKey.generate())
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func witness(_ log: StaticTileLog, key: NoteVerifierKey? = nil, at seconds: TimeInterval = 1_800_000_000) throws -> Witness {
        let client = LogClient(source: DirectoryLogSource(directory: logDir.path), logKey: key ?? log.signer.verifierKey)
        return try Witness(client: client, signer: witnessSigner, stateDirectory: stateDir.path, clock: ManualClock(Date(timeIntervalSince1970: seconds)))
    }

    func testALogNamedDotOrDotDotStaysInsideTheStateDirectory() throws {
        for (name, directory) in [("..", "%2E."), (".", "%2E"), (".hidden", "%2Ehidden"), ("a..b", "a..b")] {
            var log = StaticTileLog(directory: logDir, signer: try StaticTileLog.logSigner(name))
            log.append(2)
            try log.publish()
            let w = try witness(log)
            XCTAssertEqual(w.logDirectory, stateDir.path + "/" + directory, name)
            _ = try w.round()
            XCTAssertTrue(FileManager.default.fileExists(atPath: stateDir.path + "/" + directory + "/checkpoint"), name)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.path + "/checkpoint"), "nothing was written above the state directory")
    }

    func testATimestampNeverGoesBackWhenTheClockDoes() throws {
        var log = StaticTileLog(directory: logDir, signer: try StaticTileLog.logSigner())
        log.append(3)
        try log.publish()
        XCTAssertEqual(try witness(log, at: 1_800_000_100).round().timestamp, 1_800_000_100)
        log.append(3)
        try log.publish()
        let later = try witness(log, at: 1_800_000_000).round()
        XCTAssertEqual(later.timestamp, 1_800_000_100, "the clock went back 100 s; the cosignature does not")
        XCTAssertEqual(try UnverifiedNote(later.note).verify([witnessSigner.verifierKey]).verifications.first?.timestamp, 1_800_000_100)
    }

    func testAForkOfALargerTreeLeavesAProofAnyoneCanCheck() throws {
        var log = StaticTileLog(directory: logDir, signer: try StaticTileLog.logSigner())
        log.append(10)
        try log.publish()
        let w = try witness(log)
        let stored = try w.round().checkpoint
        var other = StaticTileLog(directory: logDir, signer: log.signer)
        other.append(300, tag: "rewritten")
        try other.publish()
        assertCode(.witnessFork, try w.round())
        let lines = try String(contentsOfFile: w.forkDirectory + "/proof.txt", encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "vouch.dev/fork-evidence/v1")
        XCTAssertEqual(lines[1], "stored 10 \(Base64.encode(stored.rootHash))")
        let newRoot = try other.tree.prover.root(size: 300), prefix = try other.tree.prover.root(size: 10)
        XCTAssertEqual(lines[2], "received 300 \(Base64.encode(newRoot))")
        XCTAssertEqual(lines[3], "prefix 10 \(Base64.encode(prefix))")
        XCTAssertEqual(lines[4], "consistency 10 300")
        XCTAssertNotEqual(prefix, stored.rootHash)
        // Offline: the proof leads from the received tree's prefix to the root the log signed.
        let proof = try lines.dropFirst(5).map { try Base64.decode($0, field: "proof") }
        XCTAssertNoThrow(try MerkleVerifier(hasher: MerkleHasher(sha256: { Crypto.sha256($0) }))
            .verifyConsistency(oldSize: 10, oldRoot: prefix, newSize: 300, newRoot: newRoot, proof: proof))
    }

    func testAnOriginEqualOnlyUnderCanonicalEquivalenceIsAnotherOrigin() throws {
        // "café" with a precomposed é (the key) and with e + combining acute (the checkpoint).
        let signer = try StaticTileLog.logSigner("caf\u{e9}.example/vouch-log")
        var log = StaticTileLog(directory: logDir, signer: signer)
        log.append(2)
        let body = try CheckpointBody(origin: "cafe\u{301}.example/vouch-log", size: 2, rootHash: try log.tree.prover.root(size: 2))
        XCTAssertEqual(body.origin, signer.name, "Swift's String == calls them equal")
        let client = LogClient(source: DirectoryLogSource(directory: logDir.path), logKey: signer.verifierKey)
        assertCode(.logDataInvalid, try client.verify(note: Array(try SignedNote.sign(body.text, with: [signer]).utf8)))
    }

    func testANoteSignatureNameMatchesItsKeyByteForByte() throws {
        let signer = try NoteSigner(name: "caf\u{e9}", privateKey: Ed25519PrivateKey.generate())
        let note = try SignedNote.sign("hello\n", with: [signer])
        XCTAssertNoThrow(try UnverifiedNote(note).verify([signer.verifierKey]))
        let renamed = note.replacingOccurrences(of: "\u{2014} caf\u{e9} ", with: "\u{2014} cafe\u{301} ")
        XCTAssertNotEqual(Array(renamed.utf8), Array(note.utf8))
        assertCode(.noteUnverified, try UnverifiedNote(renamed).verify([signer.verifierKey]))
    }

    func testAMirrorUpdateHoldsTheCopysLock() throws {
        var log = StaticTileLog(directory: logDir, signer: try StaticTileLog.logSigner())
        log.append(600)
        try log.publish()
        let out = dir.appendingPathComponent("mirror").path
        let mirror = LogMirror(client: LogClient(source: DirectoryLogSource(directory: logDir.path), logKey: log.signer.verifierKey), directory: out)
        XCTAssertEqual(try mirror.update().size, 600)
        log.append(300)
        try log.publish()
        let fd = open(out + "/lock", O_RDWR)
        defer { close(fd) }
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        assertCode(.conflict, try mirror.update())
        flock(fd, LOCK_UN)
        XCTAssertEqual(try mirror.update().size, 900)
        let copy = LogClient(source: DirectoryLogSource(directory: out), logKey: log.signer.verifierKey)
        XCTAssertNoThrow(try copy.checkTiles(of: try copy.checkpoint()))
        XCTAssertEqual(try copy.entry(899, in: try copy.checkpoint()).entry, log.entries[899])
    }
}
