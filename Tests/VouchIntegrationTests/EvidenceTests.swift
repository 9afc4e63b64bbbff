import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchHTTPClient
import VouchTPM
import VouchTPMWire
import VouchTestSupport

/// Event logs, model measurement and TPM clock tracking through the real broker and swtpm.
final class EvidenceTests: XCTestCase {
    func status(_ broker: BrokerHarness) throws -> HostStatus { try XCTUnwrap(try broker.status().hosts.first) }

    func enroll(_ attester: Attester, _ name: String = "agent") throws -> EnrollResponse {
        try attester.enroll(AgentEnrollRequest(agentName: name, csr: try CSR.create(key: try PrivateKey.generate(), commonName: name).pem))
    }

    func assertRefused(_ code: String, _ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual((error as? APIFailure)?.error.code, code, "\(error)", file: file, line: line)
        }
    }

    /// A policy file allowing exactly the given SHA-256 PCR values.
    func writePolicy(_ pcrs: [Int: [UInt8]], in dir: URL, extra: String = "") throws -> String {
        var yaml = "apiVersion: vouch/v1\nname: measured\nversion: 1\npcrs:\n  bank: sha256\n  values:\n"
        for (i, v) in pcrs.sorted(by: { $0.key < $1.key }) { yaml += "    \(i): [\"\(Hex.encode(v))\"]\n" }
        let path = dir.appendingPathComponent("policy-\(UUID().uuidString.prefix(6)).yaml").path
        try (yaml + extra).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The swtpm "boots" the firmware of a real machine (its log's SHA-256 digests are extended into
    /// the TPM); the log then replays to the quote, and its claims — read only from the quoted
    /// PCRs, here 0-8 — reach status. Another machine's log does not.
    func testFirmwareEventLogMustReplayToTheQuote() throws {
        let logURL = try fixture("tpm-eventlog/eventlogs/rhel8-uefi.bin")
        let log = try TCGEventLog(bytes: [UInt8](Data(contentsOf: logURL)))
        let tpm = try SwTPM()
        let device = try TPMDevice(tcti: tpm.tcti)
        for e in log.events where e.type != EventType.noAction { try device.pcrExtend(e.pcr, digests: [.sha256: e.digests[.sha256]!]) }
        device.close()
        let replayed = log.replay(using: OpenSSLDigester())[.sha256]!
        let policy = try writePolicy(replayed.filter { $0.key <= 8 }, in: tpm.dir)
        let broker = try BrokerHarness(trusting: tpm, policy: policy)

        let good = Attester(config: AttesterConfig(tcti: tpm.tcti, hostname: "rhel8", eventLogPath: logURL.path),
                            broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
        try good.register()
        _ = try enroll(good)
        let boot = try XCTUnwrap(try status(broker).lastAttestation?.claims?.boot)
        XCTAssertEqual(boot.pcrs, Array(0...8))
        XCTAssertEqual(boot.secureBoot, true)
        XCTAssertTrue(boot.kernelCommandLines.contains { $0.contains("root=UUID=") })

        let otherLog = logURL.deletingLastPathComponent().appendingPathComponent("ubuntu-2104-no-dbx.bin").path
        let liar = Attester(config: AttesterConfig(tcti: tpm.tcti, hostname: "rhel8", eventLogPath: otherLog),
                            broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
        try liar.register()
        assertRefused("event_log_mismatch") { _ = try enroll(liar) }
        let junk = tpm.dir.appendingPathComponent("junk.log").path
        try Data([1, 2, 3, 4]).write(to: URL(fileURLWithPath: junk))
        let broken = Attester(config: AttesterConfig(tcti: tpm.tcti, hostname: "rhel8", eventLogPath: junk),
                              broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
        try broken.register()
        assertRefused("event_log_malformed") { _ = try enroll(broken) }
        XCTAssertEqual(try broker.status().certificates.count, 1)
    }

    /// Findings 3 and 4 through the daemon. The swtpm boots rhel8's firmware (Secure Boot on).
    /// (a) A policy that quotes only PCR 0 gets no claims from other PCRs: no Secure Boot, no
    /// kernel command line, whatever the log says about them. (b) The SecureBoot variable's data
    /// byte flipped with its digest unchanged is refused (`event_data_mismatch`) and issues nothing;
    /// the refusal is recorded (the quote verified: the host's TPM made the request).
    func testClaimsOnlyFromQuotedPCRsAndEventDataMatchingItsDigest() throws {
        let logURL = try fixture("tpm-eventlog/eventlogs/rhel8-uefi.bin")
        var bytes = [UInt8](try Data(contentsOf: logURL))
        let log = try TCGEventLog(bytes: bytes)
        let tpm = try SwTPM()
        let device = try TPMDevice(tcti: tpm.tcti)
        for e in log.events where e.type != EventType.noAction { try device.pcrExtend(e.pcr, digests: [.sha256: e.digests[.sha256]!]) }
        device.close()
        let replayed = log.replay(using: OpenSSLDigester())[.sha256]!

        let onlyPCR0 = try BrokerHarness(trusting: tpm, policy: try writePolicy(replayed.filter { $0.key == 0 }, in: tpm.dir))
        let host = Attester(config: AttesterConfig(tcti: tpm.tcti, hostname: "rhel8", eventLogPath: logURL.path),
                            broker: HTTPClient(.https(baseURL: onlyPCR0.url, caFile: onlyPCR0.brokerCAFile)))
        try host.register()
        _ = try enroll(host)
        let boot = try XCTUnwrap(try status(onlyPCR0).lastAttestation?.claims?.boot)
        XCTAssertEqual(boot.pcrs, [0])
        XCTAssertNil(boot.secureBoot)
        XCTAssertTrue(boot.kernelCommandLines.isEmpty && boot.bootApplications.isEmpty && boot.dbxEntries.isEmpty)

        // The SecureBoot variable (PCR 7): flip its one data byte, keep the digest.
        let utf16Name = Array("SecureBoot".utf16.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] })
        // UEFI_VARIABLE_DATA: VariableName GUID (16), name length (8), data length (8), name, data.
        let event = try XCTUnwrap(log.events.first { e in
            e.pcr == 7 && e.type == EventType.efiVariableDriverConfig && e.data.count > 32 + utf16Name.count &&
                Array(e.data[32..<(32 + utf16Name.count)]) == utf16Name
        })
        let at = try XCTUnwrap(bytes.indices.first { bytes[$0...].starts(with: event.data) })
        bytes[at + event.data.count - 1] ^= 0x01
        let forgedLog = tpm.dir.appendingPathComponent("forged.bin")
        try Data(bytes).write(to: forgedLog)
        let broker = try BrokerHarness(trusting: tpm, policy: try writePolicy(replayed.filter { $0.key <= 8 }, in: tpm.dir))
        let liar = Attester(config: AttesterConfig(tcti: tpm.tcti, hostname: "rhel8", eventLogPath: forgedLog.path),
                            broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
        try liar.register()
        assertRefused("event_data_mismatch") { _ = try enroll(liar) }
        XCTAssertEqual(try broker.status().certificates.count, 0)
        XCTAssertEqual(try status(broker).lastAttestation?.codes.first, "event_data_mismatch")
    }

    /// The broker keeps the host's verified log (`VerifiedLogCache`): enrolling again with the same
    /// log gives the same claims; a byte changed inside that log (same length, every digest kept)
    /// is still refused, without the host registering again; the genuine log is accepted after.
    func testVerifiedLogCacheNeverPassesAChangedLog() throws {
        let logURL = try fixture("tpm-eventlog/eventlogs/rhel8-uefi.bin")
        let genuine = [UInt8](try Data(contentsOf: logURL))
        let log = try TCGEventLog(bytes: genuine)
        let tpm = try SwTPM()
        let device = try TPMDevice(tcti: tpm.tcti)
        for e in log.events where e.type != EventType.noAction { try device.pcrExtend(e.pcr, digests: [.sha256: e.digests[.sha256]!]) }
        device.close()
        let replayed = log.replay(using: OpenSSLDigester())[.sha256]!
        let broker = try BrokerHarness(trusting: tpm, policy: try writePolicy(replayed.filter { $0.key <= 8 }, in: tpm.dir))
        let path = tpm.dir.appendingPathComponent("binary_bios_measurements")
        try Data(genuine).write(to: path)
        let host = Attester(config: AttesterConfig(tcti: tpm.tcti, hostname: "rhel8", eventLogPath: path.path),
                            broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
        try host.register()
        _ = try enroll(host, "a")
        let first = try XCTUnwrap(try status(broker).lastAttestation?.claims?.boot)
        _ = try enroll(host, "b")
        XCTAssertEqual(try status(broker).lastAttestation?.claims?.boot, first)

        // The dbx variable's last data byte (PCR 7), its digests unchanged.
        let dbx = try XCTUnwrap(log.events.first { $0.pcr == 7 && $0.type == EventType.efiVariableDriverConfig && UEFIVariable($0.data)?.name == "dbx" })
        let end = dbx.sequence + 1 < log.events.count ? log.events[dbx.sequence + 1].offset : genuine.count
        var forged = genuine
        forged[end - 1] ^= 0x01
        try Data(forged).write(to: path)
        assertRefused("event_data_mismatch") { _ = try enroll(host, "c") }
        XCTAssertEqual(try status(broker).lastAttestation?.codes.first, "event_data_mismatch")

        try Data(genuine).write(to: path)
        _ = try enroll(host, "d")
        XCTAssertEqual(try status(broker).lastAttestation?.claims?.boot, first)
        XCTAssertEqual(try broker.status().certificates.count, 3)
    }

    /// measure-model through the real attester executable; the broker's manifest digest equals the one
    /// `sha256sum | sort | sha256sum` gives; an edited log is refused.
    func testModelMeasurementReachesTheBroker() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let model = tpm.dir.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: model.appendingPathComponent("shards"), withIntermediateDirectories: true)
        try Data("{\"arch\": \"llama\"}".utf8).write(to: model.appendingPathComponent("config.json"))
        try Data((0..<100_000).map { UInt8($0 % 251) }).write(to: model.appendingPathComponent("shards/00001.safetensors"))
        try Data("tokenizer".utf8).write(to: model.appendingPathComponent("tokenizer.json"))
        let logPath = tpm.dir.appendingPathComponent("model-log.json").path
        let measure = try TestEnv.run(TestEnv.bin("vouch-attester"), ["measure-model", "--tcti", tpm.tcti, "--model-log", logPath, model.path])
        XCTAssertEqual(measure.status, 0, measure.stderr)

        // Independent computation with coreutils.
        let shell = try TestEnv.run("/bin/sh", ["-c", "cd / && find '\(model.path)' -type f -exec sha256sum {} + | LC_ALL=C sort -k2 | sha256sum | cut -d' ' -f1"])
        let expected = shell.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(measure.stdout.contains("manifest \(expected)"), measure.stdout + " vs " + expected)

        let attester = Attester(config: AttesterConfig(tcti: tpm.tcti, hostname: "gpu", modelLogPath: logPath),
                                broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
        try attester.register()
        _ = try enroll(attester)
        let claims = try XCTUnwrap(try status(broker).lastAttestation?.claims?.model)
        XCTAssertEqual(claims.manifestDigest, expected)
        XCTAssertEqual(claims.files.map(\.name).sorted(), ["config.json", "shards/00001.safetensors", "tokenizer.json"].map { model.path + "/" + $0 })

        // A log that claims another file content is refused; so is a log for a PCR 23 never extended.
        var log = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: logPath))) as! [[String: Any]]
        var content = log[0]["content"] as! [String: Any]
        content["sha256"] = String(repeating: "ab", count: 32)
        log[0]["content"] = content
        log[0]["digests"] = [["hashAlg": "sha256", "digest": String(repeating: "ab", count: 32)]]
        try JSONSerialization.data(withJSONObject: log).write(to: URL(fileURLWithPath: logPath))
        assertRefused("model_log_mismatch") { _ = try enroll(attester) }
        try Data("not json".utf8).write(to: URL(fileURLWithPath: logPath))
        assertRefused("model_log_malformed") { _ = try enroll(attester) }
    }

    /// A policy's model allowlist and denylist decide on the measured manifest.
    func testModelPolicyThroughTheBroker() throws {
        let tpm = try SwTPM()
        let weights = tpm.dir.appendingPathComponent("weights.safetensors").path
        try Data("weights v1".utf8).write(to: URL(fileURLWithPath: weights))
        let logPath = tpm.dir.appendingPathComponent("model-log.json").path
        let claims = try ModelMeasurement.measure(paths: [weights], tcti: tpm.tcti, logPath: logPath)
        let zero = [UInt8](repeating: 0, count: 32)
        let pcrs = Dictionary(uniqueKeysWithValues: (0...7).map { ($0, zero) })
        let other = String(repeating: "ab", count: 32)
        let cases: [(String, String?)] = [
            ("model:\n  allowed:\n    - name: approved\n      manifest: \(claims.manifestDigest)\n", nil),
            ("model:\n  allowed:\n    - name: something else\n      manifest: \(other)\n", "model_not_allowed"),
            ("model:\n  denied: [\"\(claims.manifestDigest)\"]\n", "model_denied"),
        ]
        for (rules, refusal) in cases {
            let broker = try BrokerHarness(trusting: tpm, policy: try writePolicy(pcrs, in: tpm.dir, extra: rules))
            let attester = Attester(config: AttesterConfig(tcti: tpm.tcti, hostname: "gpu", modelLogPath: logPath),
                                    broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
            try attester.register()
            if let refusal { assertRefused(refusal) { _ = try enroll(attester) } } else { XCTAssertNoThrow(try enroll(attester)) }
        }
        // A required model, and a host that measured none.
        let broker = try BrokerHarness(trusting: tpm, policy: try writePolicy(pcrs, in: tpm.dir, extra: "model:\n  required: true\n"))
        let bare = broker.attester(for: tpm)
        try bare.register()
        assertRefused("model_missing") { _ = try enroll(bare) }
    }

    /// Streaming: measuring a 1 GiB artefact keeps the attester's memory far below the file's size.
    func testMeasuringALargeArtefactStreams() throws {
        let tpm = try SwTPM()
        let big = tpm.dir.appendingPathComponent("weights.bin").path
        XCTAssertTrue(FileManager.default.createFile(atPath: big, contents: nil))
        let fh = try FileHandle(forWritingTo: URL(fileURLWithPath: big))
        try fh.truncate(atOffset: 1 << 30)   // sparse: reads as zeros
        try fh.close()
        let r = try TestEnv.run("/usr/bin/time", ["-f", "maxrss_kb=%M", TestEnv.bin("vouch-attester"), "measure-model", "--tcti", tpm.tcti,
                                                  "--model-log", tpm.dir.appendingPathComponent("log.json").path, big])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("(1073741824 bytes)"))
        let rss = Int(r.stderr.components(separatedBy: "maxrss_kb=").last!.trimmingCharacters(in: .whitespacesAndNewlines)) ?? .max
        XCTAssertLessThan(rss, 200 * 1024, "resident memory grew with the file: \(rss) KiB for a 1 GiB artefact")
    }

    /// Rolling the TPM's state back to an earlier snapshot makes resetCount go backwards: refused.
    func testTPMStateRollbackIsRefused() throws {
        let tpm = try SwTPM()
        tpm.stop()
        try tpm.snapshot("old")
        try tpm.start(); tpm.stop()
        try tpm.start()           // two boots after the snapshot
        let broker = try BrokerHarness(trusting: tpm)
        let attester = broker.attester(for: tpm)
        try attester.register()
        _ = try enroll(attester)
        let first = try XCTUnwrap(try status(broker).lastAttestation?.claims?.clock)
        _ = try enroll(attester, "second")
        XCTAssertEqual(try status(broker).lastAttestation?.claims?.rebootedSinceLastAttestation, false)

        tpm.stop()
        try tpm.start()           // a genuine reboot is noticed and accepted
        _ = try enroll(attester, "after-reboot")
        let rebooted = try XCTUnwrap(try status(broker).lastAttestation?.claims)
        XCTAssertEqual(rebooted.rebootedSinceLastAttestation, true)
        XCTAssertGreaterThan(try XCTUnwrap(rebooted.clock).resetCount, first.resetCount)

        tpm.stop()
        try tpm.restore("old")
        try tpm.start()           // one boot after the snapshot: behind what the broker has seen
        assertRefused("clock_regressed") { _ = try enroll(attester, "rolled-back") }
        XCTAssertEqual(try status(broker).lastAttestation?.codes, ["clock_regressed"])
    }

    func testPolicyCanRequireASafeClock() throws {
        let tpm = try SwTPM()
        let zero = [UInt8](repeating: 0, count: 32)
        let policy = try writePolicy(Dictionary(uniqueKeysWithValues: (0...7).map { ($0, zero) }), in: tpm.dir, extra: "clock:\n  requireSafe: true\n")
        let broker = try BrokerHarness(trusting: tpm, policy: policy)
        let attester = broker.attester(for: tpm)
        try attester.register()
        _ = try enroll(attester)   // freshly manufactured: the last shutdown was orderly, safe = 1
        XCTAssertEqual(try status(broker).lastAttestation?.claims?.clock?.safe, true)
        // Stopped without TPM2_Shutdown (a power loss): the TPM reports safe = 0 until it records its clock.
        tpm.stop()
        try tpm.start()
        assertRefused("clock_not_safe") { _ = try enroll(attester, "after-power-loss") }
    }
}
