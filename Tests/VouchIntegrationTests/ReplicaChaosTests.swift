import Foundation
import Synchronization
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPServer
import VouchTestSupport

/// Issue #21: vouchd replicas on one PostgreSQL database keep their promises while replicas are
/// killed. Three replicas run under enrollment, revocation and re-attestation load for
/// $VOUCH_CHAOS_SECONDS (default 180) while a killer SIGKILLs one every 15-25 s (the log
/// sequencer first, then random ones) and restarts it 2-5 s later (never two down at once).
/// Then: every acknowledged revocation showed in every live replica's CRL and OCSP within 1 s
/// (the distribution is printed); no serial twice; CRL numbers never go back at a replica and one
/// number is one CRL everywhere; each host was re-attested once per interval (the gaps are
/// printed); no two checkpoints of one size with different roots, the log verifies; the database
/// passes pg_amcheck and its references hold. Randomness comes from $VOUCH_TEST_SEED (printed).
/// A second test cuts the replicas' LISTEN connections.
final class ReplicaChaosTests: XCTestCase {
    /// The fleet: simulated pull hosts re-attested every `interval`.
    static let hosts = 60
    static let interval: TimeInterval = 10
    /// A host's rounds never come closer than this, kills included: a claimed round is due again
    /// one interval after its claim whoever runs it, and a killed claimant either committed its
    /// verdict (then the next round comes an interval after the claim, less the pull's few
    /// milliseconds) or committed nothing...
    static let minimumGap = 0.8 * interval
    /// ...nor further apart than this: a round claimed by a replica killed before it reported
    /// comes back one interval after its claim (`claimRounds`), so two intervals, plus the time
    /// the replacing round takes and the scheduler's ticks.
    static let maximumGap = 2 * interval + 5

    func testReplicasKilledAtRandomUnderLoadKeepEveryPromise() throws {
        let seconds = Double(ProcessInfo.processInfo.environment["VOUCH_CHAOS_SECONDS"] ?? "") ?? 180
        let seed = TestSeed()
        let tpm = try SwTPM()   // only for the harness's EK roots; the fleet has no TPM
        let policy = try ReattestationTests.policy(in: tpm.dir, interval: "\(Int(Self.interval))s", grace: "30s")
        // CRLs valid 6 s: re-signed by whichever replica is asked once 3 s old, so replicas also
        // race to re-sign, not only to revoke.
        let replicas = try ReplicaSet(count: 3, tpm: tpm, policy: policy,
                                      extraArgs: ["--allow-simulated-hosts", "--crl-validity", "6s", "--reattest-concurrency", "8"],
                                      databaseName: "chaos_\(UInt64.random(in: 0...UInt64.max))")

        // The fleet registers through replica 0 and serves quotes to every replica over mutual TLS.
        let router = ReplicaRouter(replicas, seed: seed.value, pinned: 0)
        let fleet = try SimulatedFleet(count: Self.hosts, broker: router, hostnamePrefix: "chaos")
        let fleetPort = TestEnv.freePorts(1)
        let baseURL = "https://127.0.0.1:\(fleetPort)"
        try fleet.register(0..<1, baseURL: baseURL)
        let identity = try fleet.serverIdentity()
        let server = try HTTPServer(listen: .tls(host: "127.0.0.1", port: fleetPort, certificatePEM: identity.certificatePEM, keyPEM: identity.keyPEM),
                                    threads: 4, clientTrustPEM: try String(contentsOfFile: replicas.brokerCAFile, encoding: .utf8), handler: fleet.httpHandler)
        defer { server.stop() }
        try fleet.register(1..<Self.hosts, baseURL: baseURL)
        try TestEnv.waitFor("all \(Self.hosts) simulated hosts trusted", timeout: 120) {
            try replicas.psql("SELECT count(*) FROM host_trust WHERE state = 'trusted'") == "\(Self.hosts)"
        }
        router.pin(nil)

        let watch = try RevocationWatch(replicas)
        let checkpoints = CheckpointWatch(replicas)
        watch.start()
        checkpoints.start()
        let chaos = ChaosLoad(replicas: replicas, fleet: fleet, watch: watch, seed: seed.value)
        let started = Date()
        chaos.run(seconds: seconds)
        let ended = Date()
        XCTAssertEqual(replicas.live.count, 3, "every replica runs again after the chaos")
        watch.finish(timeout: 20)
        checkpoints.stop()

        let load = chaos.outcome
        XCTAssertEqual(load.problems, [], "\(seed)")
        XCTAssertGreaterThanOrEqual(load.kills.count, Int(seconds / 25) - 1, "the killer ran")
        XCTAssertGreaterThan(load.issued.count, Int(seconds), "too few enrollments to mean anything")
        XCTAssertGreaterThan(watch.acks.count, Int(seconds / 5), "too few revocations to mean anything")

        let latency = checkRevocations(replicas, watch, seed: seed)
        checkCRLNumbers(watch, seed: seed)
        let gaps = try checkReattestation(replicas, from: started, to: ended, kills: load.kills, seed: seed)
        let logSize = try checkLog(replicas, checkpoints, seed: seed)
        replicas.stopAll()
        try checkDatabase(replicas, issued: load.issued, revoked: watch.acks.map(\.serial), seed: seed)

        print("replica chaos: \(Int(seconds))s, 3 replicas, \(load.kills.count) SIGKILLs (\(load.kills.map { "r\($0.replica)\($0.sequencer ? " (sequencer)" : "")@\(Int($0.at.timeIntervalSince(started)))s" }.joined(separator: " "))); "
              + "\(load.issued.count) enrollments acknowledged (\(load.enrollFailures) interrupted), \(watch.acks.count) revocations acknowledged "
              + "(\(load.revokeFailures) interrupted; by code \(load.failureCodes.sorted { $0.key < $1.key })); \(watch.fetches.count) CRLs fetched; log size \(logSize); \(seed)")
        print("replica chaos: revocation -> every live replica's CRL: \(latency.crl.line(Distribution.ms)); OCSP: \(latency.ocsp.line(Distribution.ms))")
        print("replica chaos: re-attestation gaps per host (interval \(Int(Self.interval))s): \(gaps.line(Distribution.seconds)) min=\(Distribution.seconds(gaps.min))")
    }

    /// Issue #21: "A replica whose LISTEN connection is cut still converges." Two replicas; while
    /// every `vouchd-listen` connection is terminated as soon as it is made (the server itself
    /// terminates them every 10 ms), each revocation at one replica shows in the other's CRL and
    /// OCSP (both cached beforehand) within 1 s; once the cutting stops the LISTEN connections
    /// come back and a revocation shows within 1 s again.
    func testReplicaWhoseListenConnectionIsCutStillConverges() throws {
        let tpm = try SwTPM()
        let replicas = try ReplicaSet(count: 2, tpm: tpm, policy: TestEnv.packageRoot.appendingPathComponent("policies/development.yaml").path,
                                      extraArgs: ["--allow-simulated-hosts"], databaseName: "listen_\(UInt64.random(in: 0...UInt64.max))")
        let fleet = try SimulatedFleet(count: 1, broker: ReplicaRouter(replicas, seed: 1, pinned: 0), hostnamePrefix: "listen")
        try fleet.register(baseURL: nil)   // push mode: nothing pulls it, and its 15 min interval outlasts the test
        let csr = try CSR.create(key: try PrivateKey.generate(), commonName: "listen").pem
        let issued = try (0..<6).map { try fleet.enroll(0, agentName: "agent-\($0)", csrPEM: csr) }
        let watch = try RevocationWatch(replicas)
        try TestEnv.waitFor("both replicas' LISTEN connections", timeout: 10) { try Self.listeners(replicas) == 2 }

        /// Revokes certificate `n` at replica `at` and returns how long until replica `observer`'s
        /// CRL and OCSP both show it, after filling the observer's caches with the state before.
        func revoke(_ n: Int, at: Int, observer: Int) throws -> TimeInterval {
            let ack0 = try watch.ack(serial: issued[n].serial, certificatePEM: issued[n].certificate, at: Date(), via: at, crlNumber: 0)
            XCTAssertFalse(watch.crl(observer)?.crl.revokedSerials.contains(issued[n].serial) ?? true)
            guard case .good = watch.ocsp(observer, ack0) else { throw TestFailure("replica \(observer) does not answer good for \(issued[n].serial) before") }
            _ = try replicas.clients[at].admin.call("POST", "/v1/revoke", body: RevokeRequest(serial: issued[n].serial), as: RevokeResponse.self)
            let acked = Date()
            var crlSeen: Date?, ocspSeen: Date?
            while Date().timeIntervalSince(acked) < 5, crlSeen == nil || ocspSeen == nil {
                if crlSeen == nil, watch.crl(observer)?.crl.revokedSerials.contains(issued[n].serial) == true { crlSeen = Date() }
                if ocspSeen == nil, case .revoked = watch.ocsp(observer, ack0) { ocspSeen = Date() }
                usleep(20_000)
            }
            guard let crlSeen, let ocspSeen else { throw TestFailure("revocation \(n) never showed at replica \(observer)") }
            return max(crlSeen, ocspSeen).timeIntervalSince(acked)
        }

        // Inside the server, every 10 ms for 8 s: every LISTEN connection terminated, so that
        // a reconnected one lives a few milliseconds; the terminations are counted in a table.
        try replicas.psql("CREATE TABLE listen_cuts (n INTEGER NOT NULL)")
        let cutFailure = Mutex<String?>(nil)
        let cutter = Thread {
            do { try replicas.psql("""
                DO $$ DECLARE n INTEGER := 0; p INTEGER; until TIMESTAMPTZ := clock_timestamp() + INTERVAL '8 seconds'; BEGIN
                  WHILE clock_timestamp() < until LOOP
                    PERFORM pg_stat_clear_snapshot();
                    FOR p IN SELECT pid FROM pg_stat_activity WHERE application_name = 'vouchd-listen' LOOP
                      IF pg_terminate_backend(p) THEN n := n + 1; END IF;
                    END LOOP;
                    PERFORM pg_sleep(0.01);
                  END LOOP;
                  INSERT INTO listen_cuts VALUES (n);
                END $$
                """) } catch { cutFailure.withLock { $0 = "\(error)" } }
        }
        cutter.start()
        try TestEnv.waitFor("the LISTEN connections to be cut", timeout: 5) { try Self.listeners(replicas) == 0 }
        var delays: [TimeInterval] = []
        for (n, (at, observer)) in [(0, 1), (1, 0), (0, 1), (1, 0)].enumerated() { delays.append(try revoke(n, at: at, observer: observer)) }
        XCTAssertTrue(cutter.isExecuting, "the revocations outlasted the cutting: make it longer")
        while cutter.isExecuting { usleep(10_000) }
        XCTAssertNil(cutFailure.withLock { $0 })
        let cuts = Int(try replicas.psql("SELECT n FROM listen_cuts")) ?? 0
        XCTAssertGreaterThan(cuts, 10, "LISTEN connections terminated")
        XCTAssertTrue(delays.allSatisfy { $0 < 1 }, "with LISTEN cut, revocations showed after \(delays.map(Distribution.ms))")

        // The LISTEN connections come back, and with them the quick path.
        try TestEnv.waitFor("both replicas' LISTEN connections again", timeout: 10) { try Self.listeners(replicas) == 2 }
        let after = try [revoke(4, at: 0, observer: 1), revoke(5, at: 1, observer: 0)]
        XCTAssertTrue(after.allSatisfy { $0 < 1 }, "after LISTEN came back, revocations showed after \(after.map(Distribution.ms))")
        XCTAssertEqual(watch.problems, [])
        print("replica LISTEN cut: \(cuts) connections terminated; revocation -> other replica's CRL and OCSP while cut: "
              + "\(delays.map(Distribution.ms).joined(separator: " ")); after: \(after.map(Distribution.ms).joined(separator: " "))")
    }

    static func listeners(_ replicas: ReplicaSet) throws -> Int {
        Int(try replicas.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vouchd-listen'")) ?? -1
    }
}
