import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchLogClient
import VouchTLog
import VouchTestSupport

/// The witness over a log kept in a directory: it cosigns a log that grows, refuses rollbacks,
/// keeps both notes of a fork and cosigns nothing more, and refuses tiles or keys that do not
/// match.
final class WitnessTests: XCTestCase {
    var dir: URL!
    var logDir: URL!
    var stateDir: URL!
    var log: StaticTileLog!
    var witnessSigner: NoteSigner!

    override func setUpWithError() throws {
        dir = try tempDirectory("vouch-witness")
        logDir = dir.appendingPathComponent("log")
        stateDir = dir.appendingPathComponent("state")
        log = StaticTileLog(directory: logDir, signer: try StaticTileLog.logSigner())
        witnessSigner = try NoteSigner(name: "witness.example.net", type: .cosignatureV1, privateKey: Ed25519PrivateKey.generate())
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func witness(key: NoteVerifierKey? = nil, at seconds: TimeInterval = 1_800_000_000) throws -> Witness {
        let client = LogClient(source: DirectoryLogSource(directory: logDir.path), logKey: key ?? log.signer.verifierKey)
        return try Witness(client: client, signer: witnessSigner, stateDirectory: stateDir.path, clock: ManualClock(Date(timeIntervalSince1970: seconds)))
    }

    func testCosignsAGrowingLogAndAdvancesItsState() throws {
        var previous: UInt64?
        for (round, grow) in [5, 300, 700].enumerated() {
            log.append(grow)
            try log.publish()
            let r = try witness(at: 1_800_000_000 + Double(round)).round()
            XCTAssertEqual(r.checkpoint.size, log.tree.size)
            XCTAssertEqual(r.previousSize, previous)
            XCTAssertEqual(r.timestamp, 1_800_000_000 + UInt64(round))
            // The cosigned note verifies under both keys; the cosignature carries the timestamp.
            let v = try UnverifiedNote(r.note).verify([log.signer.verifierKey, witnessSigner.verifierKey])
            XCTAssertEqual(v.verifiedBy, [log.signer.name, witnessSigner.name])
            XCTAssertEqual(v.verifications.last?.timestamp, r.timestamp)
            XCTAssertEqual(try witness().storedCheckpoint()?.size, log.tree.size)
            previous = log.tree.size
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: stateDir.appendingPathComponent("example.org%2Fvouch-log/checkpoint").path))
    }

    func testSameCheckpointAgainReplacesThisWitnessesOwnCosignature() throws {
        log.append(3)
        try log.publish()
        let first = try witness().round()
        // The log now serves the note with the witness's cosignature appended (as vouchd does).
        try log.writeCheckpoint(first.note)
        let second = try witness(at: 1_800_000_100).round()
        let lines = try UnverifiedNote(second.note).signatures
        XCTAssertEqual(lines.map(\.name), [log.signer.name, witnessSigner.name])
        XCTAssertEqual(try UnverifiedNote(second.note).verify([witnessSigner.verifierKey]).verifications.first?.timestamp, 1_800_000_100)
    }

    func testRollbackIsRefusedAndStateKept() throws {
        log.append(10)
        let small = try log.publish()
        log.append(10)
        try log.publish()
        _ = try witness().round()
        try log.writeCheckpoint(small)
        assertCode(.witnessRollback, try witness().round())
        XCTAssertEqual(try witness().storedCheckpoint()?.size, 20)
    }

    func testForkOfTheSameSizeKeepsBothNotesAndStopsCosigning() throws {
        log.append(8)
        let first = try log.publish()
        _ = try witness().round()
        // Another tree of the same size, signed by the same log key.
        var other = StaticTileLog(directory: logDir, signer: log.signer)
        other.append(8, tag: "other")
        let forked = try other.publish()
        XCTAssertNotEqual(first, forked)
        let w = try witness()
        assertCode(.witnessFork, try w.round())
        let stored = try String(contentsOfFile: w.forkDirectory + "/stored.note", encoding: .utf8)
        let received = try String(contentsOfFile: w.forkDirectory + "/received.note", encoding: .utf8)
        XCTAssertEqual(try UnverifiedNote(stored).verify([log.signer.verifierKey]).text, try UnverifiedNote(first).verify([log.signer.verifierKey]).text)
        XCTAssertEqual(received, forked)
        XCTAssertEqual(try w.storedCheckpoint()?.rootHash, try log.tree.prover.root(size: 8))
        // The log returns to the first tree: still refused, and the evidence is not overwritten.
        try log.publish()
        assertCode(.witnessFork, try w.round())
        XCTAssertEqual(try String(contentsOfFile: w.forkDirectory + "/received.note", encoding: .utf8), forked)
    }

    func testGrowthThatDoesNotExtendTheStoredTreeIsAFork() throws {
        log.append(10)
        try log.publish()
        _ = try witness().round()
        var other = StaticTileLog(directory: logDir, signer: log.signer)
        other.append(300, tag: "rewritten")
        let forked = try other.publish()
        let w = try witness()
        assertCode(.witnessFork, try w.round())
        XCTAssertEqual(try String(contentsOfFile: w.forkDirectory + "/received.note", encoding: .utf8), forked)
        XCTAssertEqual(try w.storedCheckpoint()?.size, 10)
    }

    func testWrongLogKeyIsRefused() throws {
        log.append(4)
        try log.publish()
        // Another key under the log's name, and a key for another origin.
        assertCode(.noteUnverified, try witness(key: try StaticTileLog.logSigner().verifierKey).round())
        let elsewhere = try StaticTileLog.logSigner("other.example/vouch-log")
        try log.writeCheckpoint(try log.note(signer: elsewhere))
        assertCode(.logDataInvalid, try witness(key: elsewhere.verifierKey).round())
        XCTAssertFalse(FileManager.default.fileExists(atPath: stateDir.path + "/example.org%2Fvouch-log/checkpoint"))
    }

    func testTamperedTileIsRefusedNotCalledAFork() throws {
        log.append(10)
        try log.publish()
        _ = try witness().round()
        log.append(600)
        try log.publish()
        var tile = try Data(contentsOf: logDir.appendingPathComponent("tile/0/000"))
        tile[5] ^= 1
        try tile.write(to: logDir.appendingPathComponent("tile/0/000"))
        let w = try witness()
        assertCode(.logDataInvalid, try w.round())
        XCTAssertFalse(FileManager.default.fileExists(atPath: w.forkDirectory))
        XCTAssertEqual(try w.storedCheckpoint()?.size, 10)
    }

    func testFirstRoundChecksTheTilesAndAPlainKeyCannotWitness() throws {
        log.append(3)
        try log.publish()
        try log.write(Array(repeating: 7, count: 3 * 32), "tile/0/000.p/3")
        assertCode(.logDataInvalid, try witness().round())
        let client = LogClient(source: DirectoryLogSource(directory: logDir.path), logKey: log.signer.verifierKey)
        assertCode(.noteKeyInvalid, try Witness(client: client, signer: log.signer, stateDirectory: stateDir.path, clock: ManualClock()))
    }

    func testASecondProcessOnTheSameStateIsRefused() throws {
        log.append(3)
        try log.publish()
        let w = try witness()
        _ = try w.round()
        let fd = open(w.logDirectory + "/lock", O_RDWR)
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        assertCode(.conflict, try w.round())
        flock(fd, LOCK_UN)
        close(fd)
        XCTAssertNoThrow(try w.round())
    }
}
