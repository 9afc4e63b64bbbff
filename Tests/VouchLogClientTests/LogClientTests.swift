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

    /// A source that records the paths it was asked for.
    final class Recording: LogSource, @unchecked Sendable {
        let inner: any LogSource
        private let lock = NSLock()
        private var seen: [String] = []
        init(_ inner: any LogSource) { self.inner = inner }
        var location: String { inner.location }
        var paths: [String] { lock.withLock { seen } }
        func fetch(_ path: String, maxBytes: Int) throws -> [UInt8] {
            lock.withLock { seen.append(path) }
            return try inner.fetch(path, maxBytes: maxBytes)
        }
    }

    func testMirrorCopiesAVerifiedLogAndRefusesATamperedOne() throws {
        log.append(700)
        try log.publish()
        let out = dir.appendingPathComponent("mirror")
        let mirrored = try LogMirror(client: client, directory: out.path).update()
        XCTAssertEqual(mirrored.size, 700)
        let copy = LogClient(source: DirectoryLogSource(directory: out.path), logKey: log.signer.verifierKey)
        let checkpoint = try copy.checkpoint()
        XCTAssertEqual(try copy.entry(650, in: checkpoint).entry, log.entries[650])
        XCTAssertNoThrow(try copy.checkTiles(of: checkpoint))
        // The log grows; a new full tile is altered: nothing is copied.
        log.append(100)
        try log.publish()
        let good = try Data(contentsOf: log.directory.appendingPathComponent("tile/0/002"))
        var bad = good
        bad[40] ^= 0x80
        try bad.write(to: log.directory.appendingPathComponent("tile/0/002"))
        assertCode(.logDataInvalid, try LogMirror(client: client, directory: out.path).update())
        XCTAssertEqual(try copy.checkpoint().size, 700)
        // Restored, the copy grows by what it lacks only: the full tiles it holds are not fetched again.
        try good.write(to: log.directory.appendingPathComponent("tile/0/002"))
        let recording = Recording(DirectoryLogSource(directory: log.directory.path))
        XCTAssertEqual(try LogMirror(client: LogClient(source: recording, logKey: log.signer.verifierKey), directory: out.path).update().size, 800)
        XCTAssertFalse(recording.paths.contains("tile/0/000") || recording.paths.contains("tile/entries/001"), "\(recording.paths)")
        XCTAssertTrue(recording.paths.contains("tile/0/002") && recording.paths.contains("tile/entries/003.p/32"), "\(recording.paths)")
        XCTAssertEqual(try copy.entry(799, in: try copy.checkpoint()).entry, log.entries[799])
        XCTAssertNoThrow(try copy.checkTiles(of: try copy.checkpoint()))
        // A log rewritten under the same key is a fork for the mirror too.
        var other = StaticTileLog(directory: log.directory, signer: log.signer)
        other.append(900, tag: "rewritten")
        try other.publish()
        assertCode(.witnessFork, try LogMirror(client: client, directory: out.path).update())
    }
}
