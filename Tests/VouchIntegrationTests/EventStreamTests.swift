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

    /// One address (127.0.0.2) opening 70 streams gets its share (4) and 429 `too_many_streams`
    /// with Retry-After for the rest; a relying party on 127.0.0.1 still gets its stream.
    func testOneAddressCannotTakeEveryStream() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let hog = try BackgroundProcess("/usr/bin/python3", ["-c", """
        import http.client, json, ssl, time
        ctx = ssl.create_default_context(cafile="\(broker.brokerCAFile)")
        streams, refused = [], []
        for i in range(70):
            c = http.client.HTTPSConnection("127.0.0.1", \(broker.port), context=ctx, timeout=10, source_address=("127.0.0.2", 0))
            c.request("GET", "/v1/events")
            r = c.getresponse()
            if r.status == 200:
                streams.append(c)
            else:
                body = json.loads(r.read() or b"{}")
                refused.append([str(r.status), body.get("code"), r.getheader("Retry-After")])
                c.close()
        print("summary " + json.dumps({"streams": len(streams), "refused": refused}), flush=True)
        time.sleep(60)
        """], log: broker.dir.appendingPathComponent("hog.log"))
        defer { hog.stop() }
        XCTAssertTrue(hog.waitForLog("summary", timeout: 60), hog.log)
        struct Summary: Decodable { let streams: Int; let refused: [[String?]] }
        let line = try XCTUnwrap(hog.log.split(separator: "\n").first { $0.hasPrefix("summary ") })
        let summary = try JSONDecoder().decode(Summary.self, from: Data(line.dropFirst("summary ".count).utf8))
        XCTAssertEqual(summary.streams, 4)
        XCTAssertEqual(summary.refused.count, 66)
        for r in summary.refused {
            XCTAssertEqual(r.count, 3)
            XCTAssertEqual(r.first ?? nil, "429")
            XCTAssertEqual(r.dropFirst().first ?? nil, "too_many_streams")
            XCTAssertNotNil(r.last ?? nil, "Retry-After is set")
        }
        // The relying party's stream opens (curl ends it after 3 s: exit 28, status 200).
        let rp = try TestEnv.run("/usr/bin/curl", ["-sN", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", broker.brokerCAFile, "\(broker.url)/v1/events"])
        XCTAssertEqual(rp.stdout, "200", rp.stderr)
    }
}
