import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchLogClient
import VouchTLog
import VouchTestSupport

/// Reading a log: inclusion from entry bundles, partial tiles the log dropped, bounded fetches
/// over HTTP, and the verified mirror.
final class LogClientTests: XCTestCase {
    var dir: URL!
    var log: StaticTileLog!

    override func setUpWithError() throws {
        dir = try tempDirectory("vouch-logclient")
        log = StaticTileLog(directory: dir.appendingPathComponent("log"), signer: try StaticTileLog.logSigner())
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    var client: LogClient { LogClient(source: DirectoryLogSource(directory: log.directory.path), logKey: log.signer.verifierKey) }

    func testEntriesAreProvenIncluded() throws {
        log.append(600)
        try log.publish()
        let checkpoint = try client.checkpoint()
        for index: UInt64 in [0, 255, 256, 513, 599] {
            let (entry, inclusion) = try client.entry(index, in: checkpoint)
            XCTAssertEqual(entry, log.entries[Int(index)])
            XCTAssertEqual(inclusion.root, checkpoint.rootHash)
        }
        assertCode(.tlogProofInvalid, try client.entry(600, in: checkpoint))
        // A bundle whose entry was changed is refused.
        var bundle = log.entries[512..<600].map { $0 }
        bundle[1] = Array("forged\n".utf8)
        try log.write(try EntryBundle.encode(bundle), "tile/entries/002.p/88")
        assertCode(.logDataInvalid, try client.entry(513, in: checkpoint))
    }

    func testAPartialTileTheLogDroppedIsReadFromTheFullTile() throws {
        log.append(100)
        let small = try log.publish()
        log.append(200)
        try log.publish()
        try FileManager.default.removeItem(at: log.directory.appendingPathComponent("tile/0/000.p/100"))
        try FileManager.default.removeItem(at: log.directory.appendingPathComponent("tile/entries/000.p/100"))
        let old = try client.verify(note: Array(small.utf8))
        XCTAssertNoThrow(try client.checkTiles(of: old))
        XCTAssertEqual(try client.entry(99, in: old).entry, log.entries[99])
        guard case .consistent = try client.consistency(oldSize: old.size, oldRoot: old.rootHash, new: try client.checkpoint()) else {
            return XCTFail("the grown log extends the old one")
        }
    }

    func testHTTPSourceBoundsAndStatuses() throws {
        struct Fake: HTTPTransport {
            let responses: [String: HTTPResponse]
            func send(_ method: String, _ path: String, headers: [String: String], body: [UInt8]?) throws -> HTTPResponse {
                responses[path] ?? HTTPResponse(status: 404)
            }
        }
        log.append(2)
        let note = try log.note()
        let big = HTTPResponse(status: 200, body: Array(repeating: 0x41, count: LogLimits.maxCheckpointBytes + 1))
        let ok = LogClient(source: HTTPLogSource(transport: Fake(responses: ["/checkpoint": HTTPResponse(status: 200, body: Array(note.utf8))]), location: "fake"),
                           logKey: log.signer.verifierKey)
        XCTAssertEqual(try ok.checkpoint().size, 2)
        assertCode(.logFetchFailed, try ok.checkTiles(of: ok.checkpoint()))
        let huge = LogClient(source: HTTPLogSource(transport: Fake(responses: ["/checkpoint": big]), location: "fake"), logKey: log.signer.verifierKey)
        assertCode(.logFetchFailed, try huge.checkpoint())
        let failing = LogClient(source: HTTPLogSource(transport: Fake(responses: ["/checkpoint": HTTPResponse(status: 500)]), location: "fake"), logKey: log.signer.verifierKey)
        assertCode(.logFetchFailed, try failing.checkpoint())
        assertCode(.logFetchFailed, try DirectoryLogSource(directory: log.directory.path).fetch("../etc/passwd", maxBytes: 10))
    }

    func testEmptyTreeCheckpointMustCarryTheEmptyRoot() throws {
        let empty = try SignedNote.sign(try CheckpointBody(origin: log.signer.name, size: 0, rootHash: StaticTileLog.hasher.emptyRoot).text, with: [log.signer])
        XCTAssertEqual(try client.verify(note: Array(empty.utf8)).size, 0)
        let wrong = try SignedNote.sign(try CheckpointBody(origin: log.signer.name, size: 0, rootHash: Array(repeating: 0, count: 32)).text, with: [log.signer])
        assertCode(.logDataInvalid, try client.verify(note: Array(wrong.utf8)))
    }

    func testMirrorCopiesAVerifiedLogAndRefusesATamperedOne() throws {
        log.append(70_000 / 100)
        try log.publish()
        let out = dir.appendingPathComponent("mirror")
        let mirrored = try LogMirror(client: client, directory: out.path).update()
        XCTAssertEqual(mirrored.size, 700)
        let copy = LogClient(source: DirectoryLogSource(directory: out.path), logKey: log.signer.verifierKey)
        let checkpoint = try copy.checkpoint()
        XCTAssertEqual(try copy.entry(650, in: checkpoint).entry, log.entries[650])
        XCTAssertNoThrow(try copy.checkTiles(of: checkpoint))
        // The log grows; a full tile deep in the tree is altered: nothing is copied.
        log.append(100)
        try log.publish()
        var tile = try Data(contentsOf: log.directory.appendingPathComponent("tile/0/001"))
        tile[40] ^= 0x80
        try tile.write(to: log.directory.appendingPathComponent("tile/0/001"))
        assertCode(.logDataInvalid, try LogMirror(client: client, directory: out.path).update())
        XCTAssertEqual(try copy.checkpoint().size, 700)
        // A log rewritten under the same key is a fork for the mirror too.
        var other = StaticTileLog(directory: log.directory, signer: log.signer)
        other.append(800, tag: "rewritten")
        try other.publish()
        assertCode(.witnessFork, try LogMirror(client: client, directory: out.path).update())
    }
}
