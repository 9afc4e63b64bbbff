import Foundation
import Synchronization
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchTestSupport

/// vouchd is killed with SIGKILL at random moments while agents enroll and operators revoke; after
/// every restart nothing acknowledged may be missing. Cycles: $VOUCH_CRASH_CYCLES (default 200).
final class CrashConsistencyTests: XCTestCase {
    func testNothingAcknowledgedIsLostAcrossKills() throws {
        let cycles = Int(ProcessInfo.processInfo.environment["VOUCH_CRASH_CYCLES"] ?? "") ?? 200
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let attester = broker.attester(for: tpm)
        try attester.register()
        let admin = try broker.admin()

        struct Acks { var issued: [String] = []; var revoked: [String] = []; var errors = 0 }
        let acks = Mutex(Acks())
        let running = Mutex(true)
        let load = Thread {
            var i = 0
            while running.withLock({ $0 }) {
                i += 1
                do {
                    let name = "a\(i)"
                    let issued = try attester.enroll(AgentEnrollRequest(agentName: name, csr: try CSR.create(key: try PrivateKey.generate(), commonName: name).pem))
                    acks.withLock { $0.issued.append(issued.serial) }
                    let r = try admin.call("POST", "/v1/revoke", body: RevokeRequest(serial: issued.serial, reason: "superseded"), as: RevokeResponse.self)
                    acks.withLock { $0.revoked += r.revoked }
                } catch {
                    acks.withLock { $0.errors += 1 }
                    usleep(10_000)
                }
            }
        }
        load.start()
        // The delays before each kill come from the seed; where a kill lands still depends on timing.
        let seed = TestSeed()
        var rng = seed.generator
        for _ in 0..<cycles {
            usleep(UInt32.random(in: 20_000...200_000, using: &rng))   // let requests get under way, then pull the plug
            broker.crash()
            try broker.start()
        }
        running.withLock { $0 = false }
        while load.isExecuting { usleep(10_000) }

        let a = acks.withLock { $0 }
        XCTAssertGreaterThan(a.revoked.count, 10, "the load made too little progress to mean anything")
        let crl = try CRL(der: try broker.client().raw("GET", "/v1/crl").body)
        let listed = Set(crl.revokedSerials)
        XCTAssertTrue(Set(a.revoked).isSubset(of: listed), "acknowledged revocations missing from the CRL: \(Set(a.revoked).subtracting(listed)), \(seed)")
        let stored = Set(try broker.status().certificates.map(\.serial))
        XCTAssertTrue(Set(a.issued).isSubset(of: stored), "acknowledged certificates missing: \(Set(a.issued).subtracting(stored)), \(seed)")

        let db = broker.dir.appendingPathComponent("data/vouch.db").path
        func sql(_ q: String) throws -> String { try TestEnv.run("sqlite3", [db, q]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
        XCTAssertEqual(try sql("PRAGMA integrity_check"), "ok")
        XCTAssertEqual(try sql("SELECT COUNT(*) FROM certificates c LEFT JOIN attestations a ON a.id = c.attestation_id WHERE a.id IS NULL OR a.trusted = 0"), "0",
                       "every certificate has its trusted attestation record")
        XCTAssertEqual(try sql("SELECT COUNT(*) FROM (SELECT serial FROM certificates GROUP BY serial HAVING COUNT(*) > 1)"), "0")
        let eventSerials = try sql("SELECT data FROM events WHERE type = 'certificate.revoked'")
        XCTAssertTrue(a.revoked.allSatisfy { eventSerials.contains("\"serial\":\"\($0)\"") }, "an acknowledged revocation has no event in the outbox")
        print("crash consistency: \(cycles) SIGKILLs, \(a.issued.count) issuances and \(a.revoked.count) revocations acknowledged, \(a.errors) interrupted requests, 0 lost")
    }
}
