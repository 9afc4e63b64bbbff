import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchTestSupport

/// The whole receipt story with the real processes (docs/receipts.md, "How to verify a receipt
/// without Vouch's server"): vouchd with a swtpm host, an enrolled agent, `vouch trust get`,
/// `vouch log proof`, scripts/model-server.py behind `vouch-attester proxy`, receipts verified
/// offline by `vouch receipt verify`, logged with `vouch receipt log` (`POST /v1/receipts`),
/// refused when tampered with, revoked, not the broker's, or shown a forked log.
final class ReceiptsEndToEndTests: XCTestCase {
    var dir: URL!
    var broker: BrokerHarness!

    /// XCTest keeps test case objects until the run ends: the broker is stopped here, not when
    /// the object goes (a vouchd outlived the test process when it was left to deinit).
    override func tearDown() {
        broker?.stop()
        broker = nil
        super.tearDown()
    }

    func file(_ name: String) -> String { dir.appendingPathComponent(name).path }
    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        try Data(bytes).write(to: URL(fileURLWithPath: file(name)))
        return file(name)
    }
    func read(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: file(name)))) }

    /// `vouch receipt verify`; its exit status and the codes of its FAILED lines.
    func verify(_ bundle: String, _ extra: [String] = []) throws -> (status: Int32, codes: [String], stdout: String) {
        let r = try broker.vouch(["receipt", "verify", bundle, "--trust", file("trust.json")] + extra)
        let codes = r.stdout.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("FAILED ") else { return nil }
            return String(line.dropFirst(7).prefix(while: { $0 != ":" }))
        }
        return (r.status, codes, r.stdout + r.stderr)
    }

    /// A copy of a bundle's JSON with `change` applied to its object.
    func tampered(_ name: String, as out: String, _ change: (inout [String: Any]) throws -> Void) throws -> String {
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try read(name))) as? [String: Any])
        try change(&object)
        return try write(Array(try JSONSerialization.data(withJSONObject: object)), out)
    }

    /// One character of a string changed (kept in the same alphabet).
    static func flip(_ s: String, at offset: Int) -> String {
        var chars = Array(s)
        let i = offset >= 0 ? offset : chars.count + offset
        chars[i] = chars[i] == "A" ? "B" : "A"
        return String(chars)
    }

    /// A bundle's checkpoint with one character of its root hash changed.
    static func flipRoot(_ proof: String) -> String {
        var lines = proof.components(separatedBy: "\n")
        let blank = lines.firstIndex(of: "")!
        lines[blank + 3] = flip(lines[blank + 3], at: 5)   // origin, size, root
        return lines.joined(separator: "\n")
    }

    /// POST /v1/receipts: the status and error code (nil on 200).
    func submit(_ bundle: [UInt8]) throws -> (Int, String?) {
        let r = try HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile))
            .send("POST", "/v1/receipts", headers: ["Content-Type": "application/json"], body: bundle)
        let code = (try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])?["code"] as? String
        return (r.status, r.status == 200 ? nil : code)
    }

    func enroll(_ attester: Attester, _ name: String) throws -> EnrollResponse {
        let key = try PrivateKey.generate()
        let issued = try attester.enroll(AgentEnrollRequest(agentName: name, csr: try CSR.create(key: key, commonName: name).pem))
        _ = try write(Array((issued.certificate + issued.caCertificate).utf8), "\(name).pem")
        _ = try write(Array(try key.pem.utf8), "\(name).key")
        return issued
    }

    func testAReceiptFromTheProxyVerifiesOfflineAndIsLoggedAndTamperingRevocationAndForksAreRefused() throws {
        dir = try TestEnv.tempDir("vouch-receipts-e2e")
        defer { try? FileManager.default.removeItem(at: dir) }
        // A witness key, known to vouchd from the start.
        let keygen = try TestEnv.run(TestEnv.bin("vouch"), ["log", "keygen", "--name", "witness.test", "--out", file("w")])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let witnessVKey = try String(decoding: read("w.vkey"), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)

        let tpm = try SwTPM()
        broker = try BrokerHarness(trusting: tpm, policy: TestEnv.packageRoot.appendingPathComponent("policies/development.yaml").path,
                                   extraArgs: ["--log-witness", witnessVKey])
        let attester = broker.pushAttester(for: tpm, hostname: "receipts")
        _ = try attester.register()
        let agent = try enroll(attester, "answerer")
        let stranger = try enroll(attester, "stranger")

        // What a relying party and the agent fetch from the broker.
        XCTAssertEqual(try broker.vouch(["trust", "get", "--output", file("trust.json")]).status, 0)
        for name in ["answerer", "stranger"] {
            let proof = try broker.vouch(["log", "proof", "--certificate", file("\(name).pem"), "--output", file("\(name).issuance.json"), "--wait", "30s"])
            XCTAssertEqual(proof.status, 0, proof.stderr)
        }

        // The model server behind the receipt proxy.
        let modelPort = try freePort(), proxyPort = try freePort()
        let model = try BackgroundProcess("/usr/bin/python3", [TestEnv.packageRoot.appendingPathComponent("scripts/model-server.py").path,
                                                               "--listen", "127.0.0.1:\(modelPort)"], log: dir.appendingPathComponent("model.log"))
        defer { model.stop() }
        XCTAssertTrue(model.waitForLog("model-server listening", timeout: 30) && TestEnv.waitForPort(modelPort), model.log)
        let proxy = try BackgroundProcess(TestEnv.bin("vouch-attester"), [
            "proxy", "--upstream", "http://127.0.0.1:\(modelPort)", "--listen", "127.0.0.1:\(proxyPort)",
            "--cert", file("answerer.pem"), "--key", file("answerer.key"), "--issuance-proof", file("answerer.issuance.json"),
        ], log: dir.appendingPathComponent("proxy.log"))
        defer { proxy.stop() }
        XCTAssertTrue(TestEnv.waitForPort(proxyPort), proxy.log)
        let client = HTTPClient(.service(baseURL: "http://127.0.0.1:\(proxyPort)"), timeoutSeconds: 60)
        let json = ["Content-Type": "application/json"]

        // A JSON chat completion: the receipt in the Vouch-Receipt header, the salt beside it.
        let ask = Array(#"{"model":"vouch-echo","messages":[{"role":"user","content":"which model answered"}]}"#.utf8)
        let plain = try client.send("POST", "/v1/chat/completions", headers: json, body: ask)
        XCTAssertEqual(plain.status, 200, String(decoding: plain.body, as: UTF8.self) + proxy.log)
        _ = try write(plain.body, "answer.json")
        _ = try write(ask, "request.json")
        _ = try write(Array(try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(plain.header("vouch-receipt"))))), "answer.receipt.json")
        let salt = try XCTUnwrap(plain.header("vouch-receipt-salt"))

        // A streamed one: the output is every byte before the vouch-receipt event.
        let streamedAsk = Array(#"{"model":"vouch-echo","stream":true,"messages":[{"role":"user","content":"stream it"}]}"#.utf8)
        let stream = try client.open("POST", "/v1/chat/completions", headers: json, body: streamedAsk)
        var got: [UInt8] = []
        while let chunk = try stream.next() { got += chunk }
        let text = String(decoding: got, as: UTF8.self)
        let event = try XCTUnwrap(text.range(of: "event: vouch-receipt\ndata: "), text)
        let data = text[event.upperBound...].prefix(while: { $0 != "\n" })
        let saltField = try XCTUnwrap(data.range(of: #","salt":""#, options: .backwards))
        _ = try write(Array(text[..<event.lowerBound].utf8), "stream.txt")
        _ = try write(Array(data[data.index(data.startIndex, offsetBy: #"{"bundle":"#.count)..<saltField.lowerBound].utf8), "stream.receipt.json")
        _ = try write(streamedAsk, "stream-request.json")
        let streamSalt = String(data[saltField.upperBound...].prefix(64))

        // Both verify offline, with the three answers.
        for (bundle, output, request, s) in [("answer.receipt.json", "answer.json", "request.json", salt),
                                             ("stream.receipt.json", "stream.txt", "stream-request.json", streamSalt)] {
            let v = try verify(file(bundle), ["--output", file(output), "--request", file(request), "--salt", s])
            XCTAssertEqual(v.status, 0, v.stdout)
            for answer in ["model ", "environment ", "verified by ", "output ", "request commitment opened", "\nOK\n"] {
                XCTAssertTrue(v.stdout.contains(answer), "\(answer) missing: \(v.stdout)")
            }
            XCTAssertTrue(v.stdout.contains("receipt not logged"), v.stdout)
        }

        // Logged by the broker: the entry names this receipt; the bundle verifies with its proof.
        let logged = try broker.vouch(["receipt", "log", file("answer.receipt.json"), "--output", file("answer.logged.json")])
        XCTAssertEqual(logged.status, 0, logged.stderr)
        let v = try verify(file("answer.logged.json"), ["--output", file("answer.json")])
        XCTAssertEqual(v.status, 0, v.stdout)
        XCTAssertTrue(v.stdout.contains("receipt logged"), v.stdout)
        let loggedBundle = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try read("answer.logged.json"))) as? [String: Any])
        let receiptPart = try XCTUnwrap(loggedBundle["receipt"] as? [String: Any])
        let entry = String(decoding: try Base64.decode(try XCTUnwrap(receiptPart["entry"] as? String), field: "entry"), as: UTF8.self)
        let payload = try Base64.decode(try XCTUnwrap((loggedBundle["envelope"] as? [String: Any])?["payload"] as? String), field: "payload")
        let certificate = Hex.encode(Crypto.sha256(try Certificate(pem: agent.certificate).der))
        for line in ["kind receipt\n", "statement sha256:\(Hex.encode(Crypto.sha256(payload)))\n",
                     "output sha256:\(Hex.encode(Crypto.sha256(plain.body)))\n", "certificate sha256:\(certificate)\n",
                     "serial \(agent.serial)\n", "spiffe \(agent.spiffeId)\n"] {
            XCTAssertTrue(entry.contains(line), "\(line) missing from\n\(entry)")
        }

        // Tampering, one byte each: exit 1 and the failed check's code.
        var flippedOutput = plain.body
        flippedOutput[flippedOutput.count / 2] ^= 0x01
        let cases: [(String, String, (inout [String: Any]) throws -> Void)] = [
            ("payload", "receipt_signature_invalid", { b in
                var e = b["envelope"] as! [String: Any]
                e["payload"] = Self.flip(e["payload"] as! String, at: 40); b["envelope"] = e }),
            ("signature", "receipt_signature_invalid", { b in
                var e = b["envelope"] as! [String: Any]
                var sigs = e["signatures"] as! [[String: Any]]
                sigs[0]["sig"] = Self.flip(sigs[0]["sig"] as! String, at: 20); e["signatures"] = sigs; b["envelope"] = e }),
            ("chain", "receipt_chain_invalid", { b in
                var certs = try Certificate.chain(pem: b["chain"] as! String)
                var der = try certs[0].der
                der[der.count - 8] ^= 0x01   // inside the issuer's signature over the certificate
                certs[0] = try Certificate(der: der)
                b["chain"] = try certs.map { try $0.pem }.joined() }),
            ("ear", "receipt_ear_invalid", { b in b["ear"] = Self.flip(b["ear"] as! String, at: -10) }),
            ("issuance proof", "receipt_log_unverified", { b in
                var p = b["issuance"] as! [String: Any]
                p["proof"] = Self.flipRoot(p["proof"] as! String); b["issuance"] = p }),
        ]
        for (what, code, change) in cases {
            let r = try verify(try tampered("answer.logged.json", as: "tampered.json", change), ["--output", file("answer.json")])
            XCTAssertEqual(r.status, 1, what)
            XCTAssertTrue(r.codes.contains(code), "\(what): \(r.stdout)")
        }
        let receiptProof = try verify(try tampered("answer.logged.json", as: "tampered.json") { b in
            var p = b["receipt"] as! [String: Any]
            p["proof"] = Self.flipRoot(p["proof"] as! String); b["receipt"] = p
        })
        XCTAssertEqual(receiptProof.status, 1)
        XCTAssertTrue(receiptProof.codes.contains("receipt_log_unverified"), receiptProof.stdout)
        let output = try verify(file("answer.logged.json"), ["--output", try write(flippedOutput, "flipped.json")])
        XCTAssertEqual(output.status, 1)
        XCTAssertEqual(output.codes, ["receipt_output_mismatch"], output.stdout)

        // POST /v1/receipts refuses what does not verify (the verifier's code), changing nothing.
        let size = try broker.rowCount("log_entries")
        let payloadFlipped = try tampered("answer.receipt.json", as: "tampered.json", { b in
            var e = b["envelope"] as! [String: Any]
            e["payload"] = Self.flip(e["payload"] as! String, at: 40); b["envelope"] = e })
        XCTAssertEqual(try submit(try read("tampered.json")).1, "receipt_signature_invalid")
        XCTAssertEqual(try submit(try read(URL(fileURLWithPath: payloadFlipped).lastPathComponent)).0, 403)
        XCTAssertEqual(try submit(Array("{}".utf8)).1, "receipt_malformed")
        // ...and `vouch receipt log` says so: exit 1, the broker's code on its one line.
        let refused = try broker.vouch(["receipt", "log", file("tampered.json"), "--output", file("never.json")])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains("receipt_signature_invalid"), refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: file("never.json")))
        // Usage and unreadable input: exit 2.
        for args in [["receipt", "log", file("answer.receipt.json")], ["receipt", "log", file("missing.json"), "--output", file("x.json")],
                     ["receipt", "log", file("answer.json"), "--output", file("x.json")], ["log", "proof", "--output", file("x.json")],
                     ["log", "proof", "--certificate", file("answer.json"), "--output", file("x.json")],
                     ["log", "proof", "--certificate", file("answerer.pem"), "--output", file("x.json"), "--wait", "soon"]] {
            XCTAssertEqual(try broker.vouch(args).status, 2, args.joined(separator: " "))
        }
        // Schema-valid (docs/openapi.yaml) but nothing in it parses: a refusal, never a 4xx of form.
        let shaped = #"{"mediaType":"application/vnd.vouch.receipt.v1+json","envelope":{"payloadType":"","payload":"","signatures":[{"sig":""}]},"chain":"","ear":"","issuance":{"entry":"","proof":""}}"#
        XCTAssertEqual(try submit(Array(shaped.utf8)).0, 403)
        XCTAssertEqual(try submit(Array(shaped.utf8)).1, "receipt_content_invalid")
        // A receipt that finishes 10 minutes ahead of the broker's clock (inside the certificate's life).
        let later = Date().addingTimeInterval(600)
        let future = try broker.vouch(["receipt", "sign", "--cert", file("answerer.pem"), "--key", file("answerer.key"), "--output", file("answer.json"),
                                       "--issuance-proof", file("answerer.issuance.json"), "--started", later.iso8601, "--finished", later.iso8601,
                                       "--out", file("future.json")])
        XCTAssertEqual(future.status, 0, future.stderr)
        XCTAssertEqual(try submit(try read("future.json")).0, 403)
        XCTAssertEqual(try submit(try read("future.json")).1, "receipt_outside_validity")
        // A certificate this broker's store does not hold (its row gone: as if another broker issued it).
        let strangerReceipt = try broker.vouch(["receipt", "sign", "--cert", file("stranger.pem"), "--key", file("stranger.key"), "--output", file("answer.json"),
                                                "--issuance-proof", file("stranger.issuance.json"), "--out", file("stranger.json")])
        XCTAssertEqual(strangerReceipt.status, 0, strangerReceipt.stderr)
        XCTAssertEqual(try verify(file("stranger.json")).status, 0)
        let deleted = try TestEnv.run("/usr/bin/sqlite3", [broker.dataDir.appendingPathComponent("vouch.db").path,
                                                           "PRAGMA busy_timeout=5000; DELETE FROM certificates WHERE serial = '\(stranger.serial)'"])
        XCTAssertEqual(deleted.status, 0, deleted.stderr)
        XCTAssertEqual(try submit(try read("stranger.json")).1, "receipt_not_accepted")
        XCTAssertEqual(try broker.rowCount("log_entries"), size, "a refused receipt logs nothing")

        // The witness cosigns the broker's log and submits its cosignature; a proof fetched
        // afterwards carries it, and only such a receipt passes --witness ... --witnesses 1.
        let trust = try JSONCodec.decode(TrustDocument.self, from: try read("trust.json"))
        let witness = ["log", "witness", "--log-key", trust.log.vkey, "--key", file("w.skey"), "--state", file("wstate")]
        let cosigned = try broker.vouch(witness + ["--log", broker.url, "--ca", broker.brokerCAFile, "--submit"])
        XCTAssertEqual(cosigned.status, 0, cosigned.stderr)
        XCTAssertEqual(try broker.vouch(["log", "proof", "--certificate", file("answerer.pem"), "--output", file("cosigned.issuance.json")]).status, 0)
        XCTAssertTrue(String(decoding: try read("cosigned.issuance.json"), as: UTF8.self).contains("witness.test"))
        let witnessed = try broker.vouch(["receipt", "sign", "--cert", file("answerer.pem"), "--key", file("answerer.key"), "--output", file("answer.json"),
                                          "--issuance-proof", file("cosigned.issuance.json"), "--out", file("witnessed.json")])
        XCTAssertEqual(witnessed.status, 0, witnessed.stderr)
        let quorum = ["--witness", witnessVKey, "--witnesses", "1"]
        XCTAssertEqual(try verify(file("witnessed.json"), quorum).status, 0)
        let unwitnessed = try verify(file("answer.receipt.json"), quorum)
        XCTAssertEqual(unwitnessed.status, 1)
        XCTAssertEqual(unwitnessed.codes, ["receipt_witnesses_insufficient"], unwitnessed.stdout)

        // A fork: the same size, another tree, signed with the broker's own log.key (the attacker
        // holds it), shown to the same witness: refused, both notes kept as evidence.
        let size2 = try XCTUnwrap(UInt64(try broker.vouch(["log", "checkpoint", "--log", broker.url, "--ca", broker.brokerCAFile, "--log-key", trust.log.vkey])
            .stdout.split(separator: "\n")[1]))
        let logKey = try NoteSigner(skey: try String(contentsOf: broker.dataDir.appendingPathComponent("log.key"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines))
        var forged = StaticTileLog(directory: dir.appendingPathComponent("forged"), signer: logKey)
        forged.append(Int(size2), tag: "forged")
        let forgedNote = try forged.publish()
        let fork = try broker.vouch(witness + ["--log", dir.appendingPathComponent("forged").path])
        XCTAssertEqual(fork.status, 1, fork.stdout)
        XCTAssertTrue(fork.stderr.contains("witness_fork"), fork.stderr)
        let evidence = dir.appendingPathComponent("wstate/\(trust.log.origin.replacingOccurrences(of: "/", with: "%2F"))/fork")
        XCTAssertEqual(try String(contentsOf: evidence.appendingPathComponent("received.note"), encoding: .utf8), forgedNote)
        XCTAssertTrue(FileManager.default.fileExists(atPath: evidence.appendingPathComponent("stored.note").path))

        // Revoked: a receipt signed afterwards is refused with the broker's CRL, and not logged.
        XCTAssertEqual(try broker.vouch(["revoke", "--serial", agent.serial]).status, 0)
        // Its times a few seconds on (receipt times are whole seconds), so surely after the revocation.
        let after = Date().addingTimeInterval(3).iso8601
        let afterwards = try broker.vouch(["receipt", "sign", "--cert", file("answerer.pem"), "--key", file("answerer.key"), "--output", file("answer.json"),
                                           "--issuance-proof", file("answerer.issuance.json"), "--started", after, "--finished", after,
                                           "--out", file("revoked.json")])
        XCTAssertEqual(afterwards.status, 0, afterwards.stderr)
        XCTAssertEqual(try broker.vouch(["crl", "--out", file("ca.crl")]).status, 0)
        let revoked = try verify(file("revoked.json"), ["--crl", file("ca.crl")])
        XCTAssertEqual(revoked.status, 1)
        XCTAssertEqual(revoked.codes, ["receipt_revoked"], revoked.stdout)
        XCTAssertEqual(try submit(try read("revoked.json")).1, "receipt_not_accepted")
        XCTAssertEqual(try verify(file("answer.logged.json"), ["--crl", file("ca.crl")]).status, 0, "a receipt from before the revocation still verifies")
    }
}
