import Foundation
import XCTest
import VouchCore
import VouchTestSupport

/// The SPIFFE Workload API on `vouch-attester --workload-socket`, driven by unmodified py-spiffe
/// (`spiffe` 0.3.2 from PyPI, in a throwaway virtualenv) through scripts/spiffe-workload-check.py:
/// an X.509-SVID and bundle, a JWT-SVID validated by the API and locally, mutual TLS between two
/// workloads with only what py-spiffe handed them, a process matching no entry refused, the
/// rotation at half the lifetime seen on an open stream, and the removal after `vouch revoke`.
final class WorkloadAPITests: XCTestCase {
    var dir: URL!
    var python = ""
    var script = ""
    var socket = ""

    /// The check script as user `uid` (nil: this user, root in CI).
    func run(_ args: [String], uid: Int? = nil) throws -> TestEnv.RunResult {
        guard let uid else { return try TestEnv.run(python, [script] + args) }
        return try TestEnv.run("/usr/bin/setpriv", ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", python, script] + args)
    }

    func testPySpiffeGetsAttestedIdentitiesRotatedAndRemoved() throws {
        python = try PythonVenv.python("vouch-spiffe-venv", packages: ["spiffe==0.3.2"], probe: "import spiffe, grpc, cryptography")
        // A directory every user can reach: the socket is 0666, and other users run the script.
        dir = try TestEnv.tempDir("vouch-workload")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        script = dir.appendingPathComponent("check.py").path
        try FileManager.default.copyItem(atPath: TestEnv.packageRoot.appendingPathComponent("scripts/spiffe-workload-check.py").path, toPath: script)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: script)

        // Certificates for one minute: renewed at 30 s.
        let development = try String(contentsOf: TestEnv.packageRoot.appendingPathComponent("policies/development.yaml"), encoding: .utf8)
        let policy = dir.appendingPathComponent("short.yaml")
        try development.replacingOccurrences(of: "ttl: 15m", with: "ttl: 1m").write(to: policy, atomically: true, encoding: .utf8)
        let entries = dir.appendingPathComponent("entries.yaml")
        try """
        entries:
          - agent: server
            selectors: [unix:uid:0]
          - agent: client
            selectors: [unix:uid:1000, unix:gid:1000]
        """.write(to: entries, atomically: true, encoding: .utf8)

        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, policy: policy.path)
        socket = dir.appendingPathComponent("workload.sock").path
        let (attester, _) = try broker.startAttesterProcess(for: tpm, extraArgs: ["--workload-socket", socket, "--workload-entries", entries.path])
        defer { attester.stop() }
        XCTAssertTrue(attester.waitForLog("workload API on", timeout: 30), attester.log)

        // An X.509-SVID and bundle, a JWT-SVID, validated by the Workload API and by py-spiffe.
        let fetched = try run(["fetch", socket, "payments"])
        XCTAssertEqual(fetched.status, 0, fetched.stdout + fetched.stderr + attester.log)
        let facts = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(fetched.stdout.utf8)) as? [String: Any], fetched.stdout)
        let serverID = try XCTUnwrap(facts["spiffeId"] as? String)
        XCTAssertTrue(serverID.hasPrefix("spiffe://vouch.test/") && serverID.hasSuffix("/server"), serverID)
        XCTAssertEqual(facts["anchored"] as? Bool, true, "the chain leads to the bundle")
        XCTAssertEqual(facts["jwtSpiffeId"] as? String, serverID)
        XCTAssertEqual(facts["validatedSpiffeId"] as? String, serverID)
        XCTAssertEqual(facts["localSpiffeId"] as? String, serverID)
        XCTAssertEqual(facts["jwtAudience"] as? [String], ["payments"])

        // A process that matches no entry gets nothing, and no one else's SVID.
        let stranger = try run(["fetch", socket, "payments"], uid: 65534)
        XCTAssertEqual(stranger.status, 3, stranger.stdout + stranger.stderr)
        XCTAssertTrue(stranger.stdout.hasPrefix("ERROR PERMISSION_DENIED"), stranger.stdout)
        // A request without the workload.spiffe.io header is refused.
        let bare = try run(["noheader", socket])
        XCTAssertTrue(bare.stdout.hasPrefix("ERROR INVALID_ARGUMENT"), bare.stdout + bare.stderr)

        // Mutual TLS between two workloads (uid 0 and uid 1000) with only what py-spiffe handed them.
        let clientID = String(serverID.dropLast("server".count)) + "client"
        let port = try freePort()
        let server = try BackgroundProcess(python, [script, "serve", socket, "\(port)", clientID], log: dir.appendingPathComponent("serve.log"))
        defer { server.stop() }
        XCTAssertTrue(server.waitForLog("LISTENING", timeout: 60), server.log)
        let connect = try run(["connect", socket, "\(port)", serverID], uid: 1000)
        XCTAssertEqual(connect.status, 0, connect.stdout + connect.stderr)
        XCTAssertTrue(connect.stdout.contains("PEER \(serverID) SAID hello \(clientID) from \(serverID)"), connect.stdout)
        XCTAssertTrue(server.waitForLog("PEER \(clientID)", timeout: 30), server.log)

        // An open stream sees the rotation at half the lifetime, then the removal after a revocation.
        let watch = try BackgroundProcess(python, [script, "watch", socket], log: dir.appendingPathComponent("watch.log"))
        defer { watch.stop() }
        XCTAssertTrue(watch.waitForLog("SVID \(serverID)", timeout: 60), watch.log)
        func serials() -> [String] {
            watch.log.split(separator: "\n").filter { $0.hasPrefix("SVID ") }.map { String($0.split(separator: " ")[2]) }
        }
        let deadline = Date().addingTimeInterval(90)
        while Set(serials()).count < 2 && Date() < deadline { usleep(200_000) }
        XCTAssertGreaterThanOrEqual(Set(serials()).count, 2, "rotated: " + watch.log + attester.log)
        // spiffe://TD/host/HOST/agent/NAME: every certificate of agent "server" on this host.
        let path = serverID.split(separator: "/").map(String.init)
        let hostID = try XCTUnwrap(path.firstIndex(of: "host").map { path[$0 + 1] }, serverID)
        let revoke = try broker.vouch(["revoke", "--host", hostID, "--agent", "server"])
        XCTAssertEqual(revoke.status, 0, revoke.stderr)
        XCTAssertTrue(watch.waitForLog("ERROR PERMISSION_DENIED", timeout: 30), watch.log + attester.log)
        let afterwards = try run(["fetch", socket, "payments"])
        XCTAssertTrue(afterwards.stdout.hasPrefix("ERROR PERMISSION_DENIED"), afterwards.stdout)
        // The other workload keeps its identity.
        let other = try run(["fetch", socket, "payments"], uid: 1000)
        XCTAssertEqual(other.status, 0, other.stdout + other.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(other.stdout.utf8)) as? [String: Any])?["spiffeId"] as? String, clientID, other.stdout)
    }
}
