import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto

/// Push events reach a webhook receiver signed, in order, with retries, and survive a restart.
final class WebhookTests: XCTestCase {
    /// A receiver that records each request (headers and body) as one JSON line, answering 500 to the
    /// first FAILS requests and 200 after.
    static let receiver = """
    import http.server, json, sys
    port, log, fails = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    count = 0
    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            global count
            body = self.rfile.read(int(self.headers["Content-Length"]))
            count += 1
            status = 500 if count <= fails else 200
            with open(log, "a") as f:
                f.write(json.dumps({"status": status, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode()}) + "\\n")
            self.send_response(status); self.end_headers()
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """

    func testEventsAreSignedOrderedRetriedAndDurable() throws {
        let tpm = try SwTPM()
        let dir = tpm.dir
        let script = dir.appendingPathComponent("receiver.py").path
        try Self.receiver.write(toFile: script, atomically: true, encoding: .utf8)
        let log = dir.appendingPathComponent("received.jsonl").path
        let port = TestEnv.freePorts(1)
        var receiver: BackgroundProcess? = try BackgroundProcess("/usr/bin/python3", [script, "\(port)", log, "2"], log: dir.appendingPathComponent("receiver.log"))
        XCTAssertTrue(TestEnv.waitForPort(port))
        let secret = String(repeating: "s3cr3t", count: 8)
        let secretFile = dir.appendingPathComponent("hook.secret").path
        try secret.write(toFile: secretFile, atomically: true, encoding: .utf8)
        let broker = try BrokerHarness(trusting: tpm, extraArgs: ["--webhook", "http://127.0.0.1:\(port)/hook", "--webhook-secret-file", secretFile])
        let attester = broker.attester(for: tpm)
        try attester.register()
        let issued = try attester.enroll(AgentEnrollRequest(agentName: "hooked", csr: try CSR.create(key: try PrivateKey.generate(), commonName: "hooked").pem))
        XCTAssertEqual(try broker.vouch(["revoke", "--serial", issued.serial]).status, 0)

        func delivered() -> [[String: Any]] {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
                .filter { $0["status"] as? Int == 200 }
        }
        func waitFor(_ type: String, timeout: TimeInterval = 15) -> [String: Any]? {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                if let e = delivered().first(where: { ($0["headers"] as? [String: String])?["x-vouch-event"] == type }) { return e }
                usleep(100_000)
            }
            return nil
        }
        let revoked = try XCTUnwrap(waitFor("certificate.revoked"), "revocation event not delivered: \(broker.log)")
        XCTAssertTrue(broker.log.contains("attempt 2 failed: HTTP 500"), "the first deliveries failed and were retried:\n\(broker.log)")

        // Every accepted delivery is signed over timestamp and body, and arrives in event order.
        var lastID = 0
        for d in delivered() {
            let h = d["headers"] as! [String: String], body = d["body"] as! String
            XCTAssertEqual(h["x-vouch-signature"], "sha256=" + Hex.encode(Crypto.hmac(.sha256, key: Array(secret.utf8), Array("\(h["x-vouch-timestamp"]!).\(body)".utf8))))
            let id = Int(h["x-vouch-event-id"]!)!
            XCTAssertGreaterThan(id, lastID, "out of order or duplicate")
            lastID = id
        }
        // No attempt, failed or not, ever goes to a later event before an earlier one is delivered.
        let attempted = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .map { Int(($0["headers"] as! [String: String])["x-vouch-event-id"]!)! }
        XCTAssertEqual(attempted, attempted.sorted(), "attempts overtook an undelivered event: \(attempted)")
        let event = try JSONSerialization.jsonObject(with: Data((revoked["body"] as! String).utf8)) as! [String: Any]
        XCTAssertEqual((event["data"] as? [String: String])?["serial"], issued.serial)
        XCTAssertEqual((event["data"] as? [String: String])?["spiffeId"], issued.spiffeId)
        // The first enrollment also made the host trusted (a good verdict), an event of its own.
        XCTAssertEqual(delivered().map { ($0["headers"] as! [String: String])["x-vouch-event"]! }.prefix(3), ["certificate.issued", "host.trusted", "certificate.revoked"])

        // Receiver down, a revocation happens, the broker restarts: the event is still delivered.
        receiver?.stop()
        receiver = nil
        let second = try attester.enroll(AgentEnrollRequest(agentName: "later", csr: try CSR.create(key: try PrivateKey.generate(), commonName: "later").pem))
        XCTAssertEqual(try broker.vouch(["revoke", "--serial", second.serial]).status, 0)
        Thread.sleep(forTimeInterval: 0.5)
        try broker.restart()
        let metrics = try broker.metrics()
        XCTAssertTrue(metrics.contains("vouch_webhook_outbox_depth{subscriber=\"0\"} 2"), metrics)
        receiver = try BackgroundProcess("/usr/bin/python3", [script, "\(port)", log, "0"], log: dir.appendingPathComponent("receiver2.log"))
        XCTAssertTrue(TestEnv.waitForPort(port))
        let deadline = Date().addingTimeInterval(20)
        var found = false
        while Date() < deadline && !found {
            found = delivered().contains { ($0["body"] as? String)?.contains(second.serial) == true && ($0["headers"] as? [String: String])?["x-vouch-event"] == "certificate.revoked" }
            usleep(200_000)
        }
        XCTAssertTrue(found, "the revocation made while the receiver was down was lost")
        receiver?.stop()
    }
}
