import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchHTTPClient

/// Scale: a simulated fleet (`vouch-attester --simulate`) re-attested by a real vouchd over mutual
/// TLS for a bounded time (VOUCH_FLEET_SECONDS, default 180 s; VOUCH_FLEET_HOSTS, default 1,000).
final class FleetTests: XCTestCase {
    static func metric(_ text: String, _ name: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    func testSimulatedFleetIsReattestedWithoutErrors() throws {
        let env = ProcessInfo.processInfo.environment
        let count = Int(env["VOUCH_FLEET_HOSTS"] ?? "") ?? 1000
        let seconds = Double(env["VOUCH_FLEET_SECONDS"] ?? "") ?? 180
        let tpm = try SwTPM()   // only for the harness's EK roots; the fleet has no TPM
        let broker = try BrokerHarness(trusting: tpm, policy: try ReattestationTests.policy(in: tpm.dir, interval: "10s", grace: "30s"),
                                       extraArgs: ["--allow-simulated-hosts", "--reattest-concurrency", "16"])
        let port = TestEnv.freePorts(1)
        let fleet = try BackgroundProcess(TestEnv.bin("vouch-attester"), [
            "--simulate", "\(count)", "--broker", broker.url, "--ca", broker.brokerCAFile, "--listen", "127.0.0.1:\(port)", "--labels", "fleet=sim",
        ], log: broker.dir.appendingPathComponent("fleet.log"))
        defer { fleet.stop() }
        func metrics() throws -> String {
            try broker.metrics()
        }

        // Every host registered, activated and trusted by its first pull.
        let registered = Date()
        var trusted = 0.0
        while Date().timeIntervalSince(registered) < 120 {
            trusted = Self.metric(try metrics(), "vouch_hosts_by_trust{state=\"trusted\"}") ?? 0
            if trusted == Double(count) { break }
            XCTAssertTrue(fleet.process.isRunning, fleet.log)
            usleep(500_000)
        }
        XCTAssertEqual(trusted, Double(count), "hosts trusted after \(Int(Date().timeIntervalSince(registered)))s\n\(fleet.log)")
        let rampUp = Date().timeIntervalSince(registered)

        // Then the fleet runs: every host re-attested about every 10 s, with no fault and no rejection.
        let before = try metrics()
        let startCount = Self.metric(before, "vouch_attestations_total{result=\"trusted\"}") ?? 0
        usleep(UInt32(seconds * 1_000_000))
        let after = try metrics()
        let rounds = (Self.metric(after, "vouch_attestations_total{result=\"trusted\"}") ?? 0) - startCount
        let outcomes = after.split(separator: "\n").filter { $0.hasPrefix("vouch_attestations_total{") }
        XCTAssertEqual(outcomes.count, 1, "only trusted outcomes expected:\n\(outcomes.joined(separator: "\n"))")
        XCTAssertEqual(Self.metric(after, "vouch_hosts_by_trust{state=\"trusted\"}"), Double(count))
        // The rate depends on the machine, so it is printed, not asserted; what must hold is that
        // re-attestation went on (at least one round per host) with nothing but trusted outcomes.
        XCTAssertGreaterThanOrEqual(rounds, Double(count), "re-attestations in \(Int(seconds))s: \(Int(rounds)) for \(count) hosts")
        let verifySum = Self.metric(after, "vouch_verification_seconds_sum") ?? 0, verifyCount = Self.metric(after, "vouch_verification_seconds_count") ?? 1
        print("fleet: \(count) simulated hosts, trusted after \(String(format: "%.1f", rampUp))s; \(Int(rounds)) re-attestations in \(Int(seconds))s " +
              "(\(String(format: "%.0f", rounds / seconds))/s); mean verification \(String(format: "%.2f", verifySum / verifyCount * 1000)) ms")
    }

    func testSimulatedHostsAreRefusedUnlessAllowed() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let fleet = try SimulatedFleet(count: 1, broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
        XCTAssertThrowsError(try fleet.register(baseURL: nil)) { error in
            XCTAssertTrue("\(error)".contains("simulated_hosts_refused"), "\(error)")
        }
        XCTAssertEqual(try broker.status().hosts.count, 0)
    }
}
