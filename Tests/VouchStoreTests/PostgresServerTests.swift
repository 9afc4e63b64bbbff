import Foundation
import XCTest
import VouchTestSupport

/// The PostgreSQL server tests start for themselves (VouchTestSupport's `PostgresServer`): a real
/// server from Debian's postgresql package, with databases of its own per test, that comes back
/// after a SIGKILL with what was committed, and that leaves nothing behind.
final class PostgresServerTests: XCTestCase {
    func testStartsGivesDatabasesSurvivesKill9AndStops() throws {
        let server = try PostgresServer()
        defer { server.shutdown() }
        XCTAssertEqual(server.url, "postgres://vouch@127.0.0.1:\(server.port)/vouch")
        XCTAssertEqual(try server.psql("SELECT 1"), "1")
        XCTAssertEqual(try server.psql("SHOW max_connections"), "200")
        XCTAssertEqual(try server.psql("SELECT current_user || '|' || current_database()"), "vouch|vouch")

        XCTAssertEqual(try server.createDatabase("alpha"), "postgres://vouch@127.0.0.1:\(server.port)/alpha")
        XCTAssertEqual(try server.createDatabase("beta"), "postgres://vouch@127.0.0.1:\(server.port)/beta")
        XCTAssertThrowsError(try server.createDatabase("alpha"))          // exists
        XCTAssertThrowsError(try server.createDatabase("Not-An-Identifier"))
        try server.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (7), (8)", database: "alpha")
        XCTAssertEqual(try server.psql("SELECT v, v * 2 FROM t ORDER BY v", database: "alpha"), "7|14\n8|16")
        XCTAssertEqual(try server.psql("SELECT count(*) FROM pg_tables WHERE tablename = 't'", database: "beta"), "0")
        XCTAssertThrowsError(try server.psql("SELECT nonsense FROM nowhere", database: "alpha"))

        // SIGKILL: the server is down, then crash recovery keeps what was committed.
        let port = server.port
        let started = try server.psql("SELECT pg_postmaster_start_time()")
        try server.kill9()
        XCTAssertThrowsError(try server.psql("SELECT 1"))
        try server.start()
        XCTAssertEqual(server.port, port)
        XCTAssertNotEqual(try server.psql("SELECT pg_postmaster_start_time()"), started)
        XCTAssertEqual(try server.psql("SELECT sum(v) FROM t", database: "alpha"), "15")
        XCTAssertEqual(try server.psql("SELECT 1", database: "beta"), "1")

        try server.restart()
        XCTAssertEqual(try server.psql("SELECT count(*) FROM t", database: "alpha"), "2")

        try server.stop()
        XCTAssertThrowsError(try server.psql("SELECT 1"))
        XCTAssertThrowsError(try server.kill9())
        try server.stop()                                                 // stopped already: nothing
        try server.start()
        XCTAssertEqual(try server.psql("SELECT 1"), "1")

        server.shutdown()
        XCTAssertFalse(FileManager.default.fileExists(atPath: server.directory.path))
        XCTAssertThrowsError(try server.psql("SELECT 1"))
        XCTAssertThrowsError(try server.start())
    }

    func testSharedServerGivesEachTestItsOwnDatabase() throws {
        let server = try PostgresServer.shared.get()
        XCTAssertTrue(try PostgresServer.shared.get() === server)
        let one = "t_" + UUID().uuidString.prefix(8).lowercased(), two = "t_" + UUID().uuidString.prefix(8).lowercased()
        XCTAssertEqual(try server.createDatabase(one), server.url(database: one))
        _ = try server.createDatabase(two)
        try server.psql("CREATE TABLE only_here (x text)", database: one)
        XCTAssertEqual(try server.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'", database: one), "1")
        XCTAssertEqual(try server.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'", database: two), "0")
    }

    /// A server whose test process has ended (here: its owner file names a process that is not the
    /// one now running with that pid) is stopped and its directory removed; a live one is kept.
    func testServersOfEndedTestProcessesAreStoppedAndRemoved() throws {
        let orphan = try PostgresServer(name: "orphan")
        defer { orphan.shutdown() }
        let kept = try PostgresServer(name: "kept")
        defer { kept.shutdown() }
        let pidText = try String(contentsOf: orphan.directory.appendingPathComponent("data/postmaster.pid"), encoding: .utf8)
        let postmaster = try XCTUnwrap(pid_t(try XCTUnwrap(pidText.split(separator: "\n").first)))
        // This process's pid with another start time: a process that has ended, its pid reused.
        try Data("\(getpid()) 1\n".utf8).write(to: orphan.directory.appendingPathComponent("owner"))

        PostgresServer.removeStaleDirectories()

        XCTAssertFalse(FileManager.default.fileExists(atPath: orphan.directory.path))
        XCTAssertFalse(isRunning(postmaster))
        XCTAssertThrowsError(try orphan.psql("SELECT 1"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: kept.directory.path))
        XCTAssertEqual(try kept.psql("SELECT current_database()"), "kept")
    }

    /// Present in /proc and not a zombie (exited, waiting to be reaped).
    private func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(close, offsetBy: 2)] != "Z"
    }
}
