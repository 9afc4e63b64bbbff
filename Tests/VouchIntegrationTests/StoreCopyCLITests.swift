import Foundation
import XCTest
import VouchCore
import VouchModel
import VouchStore
import VouchTestSupport

/// `vouch store copy` at the command line: a stopped broker's SQLite database copied into an empty
/// PostgreSQL database prints one line per table and the verified total; a second copy into the
/// now non-empty database is refused (exit 1, one line) and changes nothing; a command line
/// without a destination is a usage error (exit 2, one line).
final class StoreCopyCLITests: XCTestCase {
    var dir: URL!
    let t0 = Date(timeIntervalSince1970: 1_800_000_000.5)

    override func setUpWithError() throws { dir = try TestEnv.tempDir("vouch-store-copy") }
    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func lines(_ s: String) -> [Substring] { s.split(separator: "\n", omittingEmptySubsequences: true) }

    /// A data directory whose database has a host, its decision, two events and a token.
    func dataDir() throws -> String {
        let store = try SQLiteBrokerStore(path: dir.appendingPathComponent("vouch.db").path)
        let id = String(repeating: "c", count: 32)
        try store.activateHost(HostRecord(id: id, hostname: "h", ekPublic: [1], ekCertificate: [2], ekIssuer: "CN=EK", akPublic: [3], akName: [4],
                                          akAlgorithm: "ecc-p256", akState: .active, activationDigest: nil, activationExpiresAt: nil,
                                          activationFailures: 0, registeredAt: t0, updatedAt: t0),
                               trust: HostTrust(hostID: id, since: t0, mode: .push),
                               record: AttestationRecord(hostID: id, at: t0, kind: .activation, trusted: true, codes: [], message: "ok"))
        for type in [OutboxEventType.hostTrusted, .hostUntrusted] { _ = try store.appendEvent(type: type, data: ["hostId": id], at: t0) }
        try store.saveToken(TokenRecord(id: "tok", name: "ci", scope: .read, digest: [9, 9], createdAt: t0))
        return dir.path
    }

    func testACopyPrintsEveryTableAndASecondCopyIsRefused() throws {
        let data = try dataDir()
        let server = try PostgresServer.shared.get()
        let name = "cli_copy_\(UInt64.random(in: 0...UInt64.max))"
        let url = try server.createDatabase(name)
        let expected = ["hosts": 1, "host_trust": 1, "attestations": 1, "events": 2, "tokens": 1]

        // A dry run reads the data directory's database and writes nothing.
        let dry = try TestEnv.run(TestEnv.bin("vouch"), ["store", "copy", "--from", data, "--dry-run"])
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertEqual(lines(dry.stdout).count, StoreCopy.tables.count + 1, dry.stdout)

        let copy = try TestEnv.run(TestEnv.bin("vouch"), ["store", "copy", "--from", data + "/vouch.db", "--to", url])
        XCTAssertEqual(copy.status, 0, copy.stderr)
        XCTAssertEqual(copy.stderr, "")
        let printed = lines(copy.stdout)
        XCTAssertEqual(printed.count, StoreCopy.tables.count + 1, copy.stdout)
        var counts: [String: Int] = [:]
        for line in printed.dropLast() {
            let words = line.split(separator: " ")
            counts[String(words[0])] = Int(words[1])
        }
        XCTAssertEqual(counts, Dictionary(uniqueKeysWithValues: StoreCopy.tables.map { ($0.name, expected[$0.name] ?? 0) }))
        XCTAssertEqual(printed.last, "copied 6 rows; verified")
        XCTAssertEqual(lines(dry.stdout).dropLast(), printed.dropLast(), "the dry run counted the same")
        let census = "SELECT (SELECT count(*) FROM events) || ',' || (SELECT count(*) FROM hosts)"
        XCTAssertEqual(try server.psql(census, database: name), "2,1")

        let again = try TestEnv.run(TestEnv.bin("vouch"), ["store", "copy", "--from", data + "/vouch.db", "--to", url])
        XCTAssertEqual(again.status, 1, again.stderr)
        XCTAssertEqual(again.stdout, "")
        XCTAssertEqual(lines(again.stderr).count, 1, again.stderr)
        XCTAssertEqual(try server.psql(census, database: name), "2,1")
    }

    func testACommandLineWithoutADestinationIsAUsageError() throws {
        let data = try dataDir()
        for args in [["store", "copy", "--from", data], ["store", "copy", "--to", "postgres://vouch@127.0.0.1:1/vouch"],
                     ["store", "copy", "--from", data, "--to", "mysql://db/vouch"], ["store", "move"]] {
            let r = try TestEnv.run(TestEnv.bin("vouch"), args)
            XCTAssertEqual(r.status, 2, "vouch \(args): \(r.stderr)")
            XCTAssertEqual(r.stdout, "", "vouch \(args)")
            XCTAssertEqual(lines(r.stderr).count, 1, "vouch \(args): \(r.stderr)")
        }
    }
}
