import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
#if canImport(Glibc)
import Glibc
import VouchTestSupport
#endif

/// Hostile clients and failing parts: the broker degrades with clear errors and never issues a
/// certificate without verified evidence, nor loses what it acknowledged.
final class FaultTests: XCTestCase {
    func enroll(_ attester: Attester, _ name: String) throws -> EnrollResponse {
        try attester.enroll(AgentEnrollRequest(agentName: name, csr: try CSR.create(key: try PrivateKey.generate(), commonName: name).pem))
    }

    /// Finding: ten bogus tokens from a shared address used to make the valid admin token get 429.
    func testTokenGuessingIsRateLimitedWithoutLockingOutOperators() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        var guesser = try broker.admin()
        guesser.bearerToken = "vouch_guess"
        for _ in 0..<10 {
            XCTAssertEqual((try? guesser.raw("GET", "/v1/status")).map { _ in 200 } ?? 401, 401)
        }
        XCTAssertThrowsError(try guesser.raw("GET", "/v1/status")) {
            XCTAssertEqual(($0 as? APIFailure)?.status, 429)
            XCTAssertEqual(($0 as? APIFailure)?.error.code, "too_many_attempts")
        }
        // The operator behind the same address is not locked out: a valid token is always honoured.
        XCTAssertEqual(try broker.admin().raw("GET", "/v1/status").status, 200)
        XCTAssertEqual(try broker.vouch(["status"]).status, 0)
        XCTAssertThrowsError(try guesser.raw("GET", "/v1/status"), "the guesser still waits") {
            XCTAssertEqual(($0 as? APIFailure)?.error.code, "too_many_attempts")
        }
        XCTAssertEqual(try broker.client().raw("GET", "/v1/crl").status, 200, "public endpoints are not affected")
    }

    func testStalledClientsAreDisconnected() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, extraArgs: ["--connection-timeout", "2s"])
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = broker.port.bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        XCTAssertEqual(connected, 0)
        // Send half a TLS record and stall.
        let partial: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01]
        _ = partial.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        // The server may answer with a TLS alert; what matters is that it closes the connection.
        // Only the server can close it (the test never does), so no bound on how soon is needed;
        // the deadline only keeps a broken server from hanging the test.
        let deadline = Date().addingTimeInterval(60)
        var closed = false
        while Date() < deadline && !closed {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 1_000) > 0 else { continue }
            var buf = [UInt8](repeating: 0, count: 256)
            closed = read(fd, &buf, buf.count) <= 0
        }
        XCTAssertTrue(closed, "the stalled connection was not closed within 60 s (--connection-timeout 2s)")
        XCTAssertEqual(try broker.client().raw("GET", "/v1/health").status, 200)
    }

    /// Slowloris from one address (127.0.0.2; loopback answers all of 127/8): connections that
    /// trickle one header byte a second defeat the idle timeout, so the absolute request deadline
    /// must close them, and the per-address limit keeps the attacker from holding more than its
    /// share, so the honest client (127.0.0.1) can still fetch the CRL and revoke meanwhile.
    func testTricklingClientsCannotShutOutOtherAddresses() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, extraArgs: ["--max-connections-per-address", "8", "--request-deadline", "8s",
                                                                  "--connection-timeout", "60s"])
        let attester = broker.attester(for: tpm)
        try attester.register()
        let issued = try enroll(attester, "to-revoke")
        // Ten connections from 127.0.0.2, TLS completed, half a request line each, then one more
        // header byte per second for at most 30 s; reports which were refused and when each closed.
        let attacker = try BackgroundProcess("/usr/bin/python3", ["-c", """
        import select, socket, ssl, time
        ctx = ssl.create_default_context(cafile="\(broker.brokerCAFile)")
        held, refused = {}, 0
        for i in range(10):
            try:
                raw = socket.create_connection(("127.0.0.1", \(broker.port)), timeout=5, source_address=("127.0.0.2", 0))
                s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
                s.sendall(b"GET /v1/crl HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nX-Slow: ")
                held[i] = (s, time.monotonic())
            except (OSError, ssl.SSLError):
                refused += 1
        print("ready held=%d refused=%d" % (len(held), refused), flush=True)
        end = time.monotonic() + 30
        while held and time.monotonic() < end:
            time.sleep(1)
            for i, (s, t0) in list(held.items()):
                try:
                    s.sendall(b"x")
                    if select.select([s], [], [], 0)[0] and not s.recv(64): raise EOFError()
                except (OSError, ssl.SSLError, EOFError):
                    print("closed %d after %.0fs" % (i, time.monotonic() - t0), flush=True)
                    del held[i]
        print("done open=%d" % len(held), flush=True)
        """], log: broker.dir.appendingPathComponent("attacker.log"))
        defer { attacker.stop() }
        XCTAssertTrue(attacker.waitForLog("ready", timeout: 30), attacker.log)
        XCTAssertTrue(attacker.log.contains("ready held=8 refused=2"), "the per-address limit admits 8: \(attacker.log)")

        // While the attacker holds every connection it may, 127.0.0.1 is served.
        XCTAssertEqual(try broker.client().raw("GET", "/v1/crl").status, 200)
        let revoked = try broker.admin().call("POST", "/v1/revoke", body: RevokeRequest(serial: issued.serial), as: RevokeResponse.self)
        XCTAssertEqual(revoked.revoked, [issued.serial])

        // Trickling does not keep a connection: each is closed (well before the 60 s idle timeout).
        XCTAssertTrue(attacker.waitForLog("done", timeout: 40), attacker.log)
        XCTAssertTrue(attacker.log.contains("done open=0"), "trickling connections outlived the request deadline: \(attacker.log)")
        let lifetimes = attacker.log.split(separator: "\n").filter { $0.hasPrefix("closed ") }
            .compactMap { $0.split(separator: " ").last.flatMap { Int($0.dropLast()) } }
        XCTAssertEqual(lifetimes.count, 8, attacker.log)
        XCTAssertTrue(lifetimes.allSatisfy { $0 < 25 }, "closed by the request deadline, not the idle timeout: \(attacker.log)")
        XCTAssertEqual(try broker.client().raw("GET", "/v1/health").status, 200)
    }

    func testKilledTPMRefusesCleanlyAndRecovers() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let (process, socket) = try broker.startAttesterProcess(for: tpm)
        defer { process.stop() }
        tpm.stop()
        let out = broker.dir.appendingPathComponent("agent").path
        let r = try broker.vouch(["enroll", "--name", "during-outage", "--out", out], socket: socket)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("tpm"), r.stderr)
        XCTAssertEqual(try broker.status().certificates.count, 0)
        try tpm.start()
        XCTAssertEqual(try broker.vouch(["enroll", "--name", "after-outage", "--out", out], socket: socket).status, 0)
    }

    /// The attester disappears in the middle of an agent's enrollment: the agent gets a clear error
    /// and writes nothing; the broker issues nothing.
    func testAttesterVanishingMidEnrollment() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let socket = broker.dir.appendingPathComponent("vanishing.sock").path
        // Accepts the agent's request, reads it, and dies without answering.
        let vanisher = try BackgroundProcess("/usr/bin/python3", ["-c", """
        import os, socket
        s = socket.socket(socket.AF_UNIX); s.bind("\(socket)"); s.listen(1)
        print("listening", flush=True)
        c, _ = s.accept(); c.recv(65536); os._exit(1)
        """], log: broker.dir.appendingPathComponent("vanisher.log"))
        defer { vanisher.stop() }
        let deadline = Date().addingTimeInterval(5)
        while !vanisher.log.contains("listening") && Date() < deadline { usleep(50_000) }
        let out = broker.dir.appendingPathComponent("agent").path
        let r = try broker.vouch(["enroll", "--name", "orphan", "--out", out], socket: socket)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("enroll:") && r.stderr.contains("failed"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/orphan.key"), "nothing written for a failed enrollment")
        XCTAssertEqual(try broker.status().certificates.count, 0)
    }

    func testLockedDatabaseFailsClosed() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let attester = broker.attester(for: tpm)
        try attester.register()
        let db = broker.dir.appendingPathComponent("data/vouch.db").path
        // Another process holds the write lock longer than vouchd's 5 s busy timeout.
        let locker = try BackgroundProcess("/usr/bin/python3", ["-c", """
        import sqlite3, time
        c = sqlite3.connect("\(db)", isolation_level=None)
        c.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        time.sleep(8)
        c.execute("ROLLBACK")
        """], log: broker.dir.appendingPathComponent("locker.log"))
        let deadline = Date().addingTimeInterval(5)
        while !locker.log.contains("locked") && Date() < deadline { usleep(50_000) }
        XCTAssertThrowsError(try enroll(attester, "while-locked")) {
            XCTAssertEqual(($0 as? APIFailure)?.status, 500)
            XCTAssertEqual(($0 as? APIFailure)?.error.code, "database")
        }
        locker.stop()
        XCTAssertEqual(try broker.status().certificates.count, 0)
        XCTAssertNoThrow(try enroll(attester, "after-lock"))
    }

    func testFullDiskFailsClosedAndLosesNothing() throws {
        let mnt = try TestEnv.tempDir("vouch-tmpfs")
        // CI runs as root: a tmpfs that cannot be mounted fails the test rather than skipping the full-disk check.
        let mounted = try TestEnv.run("mount", ["-t", "tmpfs", "-o", "size=6m", "tmpfs", mnt.path])
        guard mounted.status == 0 else { throw TestFailure("cannot mount a tmpfs (run the tests as root, as CI does): \(mounted.stderr)") }
        defer { _ = try? TestEnv.run("umount", ["-l", mnt.path]) }
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, dataDir: mnt.appendingPathComponent("data"))
        let attester = broker.attester(for: tpm)
        try attester.register()
        let first = try enroll(attester, "before-full")
        let admin = try broker.admin()
        // Fill the disk.
        _ = try TestEnv.run("/bin/sh", ["-c", "dd if=/dev/zero of='\(mnt.path)/filler' bs=64k 2>/dev/null; true"])
        XCTAssertThrowsError(try enroll(attester, "while-full")) { XCTAssertEqual(($0 as? APIFailure)?.status, 500) }
        XCTAssertThrowsError(try admin.call("POST", "/v1/revoke", body: RevokeRequest(serial: first.serial), as: RevokeResponse.self)) {
            XCTAssertEqual(($0 as? APIFailure)?.status, 500, "a revocation that could not be stored is not acknowledged")
        }
        try FileManager.default.removeItem(atPath: mnt.path + "/filler")
        let status = try admin.call("GET", "/v1/status", as: StatusResponse.self)
        XCTAssertEqual(status.certificates.map(\.serial), [first.serial])
        XCTAssertEqual(status.certificates.first?.state, .valid, "the failed revocation left no trace")
        XCTAssertEqual(try admin.call("POST", "/v1/revoke", body: RevokeRequest(serial: first.serial), as: RevokeResponse.self).revoked, [first.serial])
        XCTAssertNoThrow(try enroll(attester, "after-full"))
        XCTAssertEqual(try TestEnv.run("sqlite3", [mnt.appendingPathComponent("data/vouch.db").path, "PRAGMA integrity_check"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines), "ok")
    }

    /// Decisions recorded an hour ahead of the broker's clock (a clock that ran fast and was set back,
    /// or was set back by an attacker): the broker refuses to issue until its clock has caught up.
    /// (A forward jump makes outstanding nonces expire: see RejectionTests.testExpiredNonce.)
    func testClockBehindRecordedDecisionsRefusesToIssue() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let attester = broker.attester(for: tpm)
        try attester.register()
        XCTAssertNoThrow(try enroll(attester, "on-time"))
        let db = broker.dir.appendingPathComponent("data/vouch.db").path
        let ahead = Date().addingTimeInterval(3600).timeIntervalSince1970
        XCTAssertEqual(try TestEnv.run("sqlite3", [db, "INSERT INTO attestations (host_id, at, kind, trusted, codes, message) VALUES ('x', \(ahead), 'enrollment', 0, '', 'recorded by a clock an hour ahead')"]).status, 0)
        XCTAssertThrowsError(try enroll(attester, "from-the-past")) {
            XCTAssertEqual(($0 as? APIFailure)?.status, 503)
            XCTAssertEqual(($0 as? APIFailure)?.error.code, "clock_unreliable")
        }
        XCTAssertTrue(broker.log.contains("refusing to issue: clock"))
        XCTAssertEqual(try TestEnv.run("sqlite3", [db, "DELETE FROM attestations WHERE host_id = 'x'"]).status, 0)
        XCTAssertEqual(try broker.status().certificates.count, 1)
        XCTAssertNoThrow(try enroll(attester, "recovered"))
    }
}
