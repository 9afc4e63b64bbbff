import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto

/// The Server-Sent Events stream, read by curl: the backlog, a revocation as it happens, and resuming.
final class EventStreamTests: XCTestCase {
    func testRevocationsArriveOnTheStream() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let attester = broker.attester(for: tpm)
        try attester.register()
        let issued = try attester.enroll(AgentEnrollRequest(agentName: "streamed", csr: try CSR.create(key: try PrivateKey.generate(), commonName: "streamed").pem))

        let out = broker.dir.appendingPathComponent("events.txt")
        let curl = try BackgroundProcess("/usr/bin/curl", ["-sN", "-m", "20", "--cacert", broker.brokerCAFile, "-o", out.path, "\(broker.url)/v1/events"],
                                         log: broker.dir.appendingPathComponent("curl.log"))
        defer { curl.stop() }
        func streamed() -> String { (try? String(contentsOf: out, encoding: .utf8)) ?? "" }
        func waitFor(_ text: String) -> Bool {
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline { if streamed().contains(text) { return true }; usleep(50_000) }
            return false
        }
        XCTAssertTrue(waitFor("event: certificate.issued"), "backlog not streamed: \(streamed())")
        XCTAssertEqual(try broker.vouch(["revoke", "--serial", issued.serial]).status, 0)
        XCTAssertTrue(waitFor("event: certificate.revoked"), "revocation not streamed: \(streamed())")
        XCTAssertTrue(streamed().contains("\"serial\":\"\(issued.serial)\""))
        let revokedID = try XCTUnwrap(streamed().components(separatedBy: "id: ").last?.split(separator: "\n").first.flatMap { Int($0) })

        // Resuming after the issued event yields the revocation only.
        let resumed = try TestEnv.run("/usr/bin/curl", ["-sN", "-m", "2", "--cacert", broker.brokerCAFile, "-H", "Last-Event-ID: \(revokedID - 1)", "\(broker.url)/v1/events"])
        XCTAssertTrue(resumed.stdout.contains("id: \(revokedID)\nevent: certificate.revoked"), resumed.stdout)
        XCTAssertFalse(resumed.stdout.contains("certificate.issued"))
        // The broker keeps answering other requests while streams are open.
        XCTAssertNoThrow(try broker.status())
        XCTAssertEqual(try broker.client().transport.send("GET", "/v1/events?after=-3", headers: [:], body: nil).status, 400)
    }
}
