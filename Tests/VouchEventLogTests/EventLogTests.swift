import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTPMWire
import VouchTestSupport

final class EventLogTests: XCTestCase {
    let digester = OpenSSLDigester()

    func expected() throws -> [String: [String: [String: String]]] {
        let url = try fixture("tpm-eventlog/eventlogs/expected_pcrs.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        var out: [String: [String: [String: String]]] = [:]
        for (file, entry) in json["logs"] as! [String: [String: Any]] { out[file] = entry["pcrs"] as? [String: [String: String]] }
        return out
    }

    func log(_ name: String) throws -> TCGEventLog {
        try TCGEventLog(bytes: [UInt8](Data(contentsOf: fixture("tpm-eventlog/eventlogs/\(name)"))))
    }

    /// All ten real logs replay to exactly the PCR values their machines' TPMs reported (19 banks).
    func testEveryRealLogReplaysToTheExpectedPCRs() throws {
        let expected = try expected()
        XCTAssertEqual(expected.count, 10)
        var banksChecked = 0
        for (file, banks) in expected {
            let replayed = try log(file).replay(using: digester)
            for (bankName, pcrs) in banks {
                let bank = try XCTUnwrap(HashAlg(rawValue: bankName))
                for (index, hex) in pcrs {
                    XCTAssertEqual(replayed[bank]?[Int(index)!].map { Hex.encode($0) }, hex, "\(file) \(bankName) PCR\(index)")
                }
                banksChecked += 1
            }
        }
        XCTAssertEqual(banksChecked, 19)
    }

    func testFormatsAndStartupLocality() throws {
        let debian = try log("debian-10.bin"), rhel = try log("rhel8-uefi.bin"), glinux = try log("glinux-alex.bin")
        XCTAssertEqual(debian.format, .legacySHA1)
        XCTAssertEqual(debian.banks, [.sha1])
        XCTAssertEqual(rhel.format, .cryptoAgile)
        XCTAssertEqual(rhel.banks, [.sha1, .sha256, .sha384])
        XCTAssertEqual(glinux.startupLocality, 3)
        XCTAssertNil(rhel.startupLocality)
    }

    /// The GCE Shielded VM's own log replays to the PCRs its genuine quote signed.
    func testGCPLogReplaysToItsQuotedPCRs() throws {
        let f = try GCPQuoteFixture()
        guard case let .verified(q) = QuoteVerifier.verify(attest: f.attest, signature: f.signature, akPublic: try f.akTPMPublic(),
                                                           expectedQualifyingData: [], pcrs: f.pcrs, allowSHA1: true) else { return XCTFail("quote rejected") }
        let replayed = try TCGEventLog(bytes: f.eventLog).replay(using: digester)
        let quoted = q.pcrs.values[.sha1]!
        for pcr in [0, 4, 5, 7, 11, 12, 13, 14] {
            XCTAssertEqual(replayed[.sha1]?[pcr], quoted[pcr], "PCR\(pcr)")
        }
    }

    /// Through the appraiser, with the GCE Shielded VM's genuine quote (all 24 SHA-1 PCRs): the log's
    /// claims come from the PCRs it extends, and a variable's data altered under its digest is refused.
    func testAppraiserRefusesEventDataThatDoesNotMatchItsDigest() throws {
        let f = try GCPQuoteFixture()
        guard case let .verified(q) = QuoteVerifier.verify(attest: f.attest, signature: f.signature, akPublic: try f.akTPMPublic(),
                                                           expectedQualifyingData: [], pcrs: f.pcrs, allowSHA1: true) else { return XCTFail("quote rejected") }
        let policy = Policy(name: "t", version: 1, pcrBank: .sha1, pcrValues: [:])
        func appraise(_ log: [UInt8]) -> Appraisal {
            Appraiser.appraise(hostID: "h", quote: q, eventLog: log, modelLog: nil, previousClock: nil, policy: policy, digester: digester)
        }
        guard case let .trusted(evidence) = appraise(f.eventLog) else { return XCTFail("genuine log refused") }
        XCTAssertEqual(evidence.claims.boot?.pcrs, [0, 4, 5, 7, 11, 12, 13, 14])

        let log = try TCGEventLog(bytes: f.eventLog)
        let e = try XCTUnwrap(log.events.first { $0.type == EventType.efiVariableDriverConfig && $0.pcr == 7 })
        var tampered = f.eventLog
        tampered[log.events[e.sequence + 1].offset - 1] ^= 0x01   // the variable's last data byte
        guard case let .rejected(violations, claims) = appraise(tampered) else { return XCTFail("tampered log trusted") }
        XCTAssertEqual(violations.map(\.code), [.eventDataMismatch])
        XCTAssertEqual(violations.map(\.path), ["eventLog.events[\(e.sequence)].EV_EFI_VARIABLE_DRIVER_CONFIG"])
        XCTAssertNil(claims)
    }

    func testTruncatedAndCorruptLogsFailCleanly() throws {
        let bytes = [UInt8](try Data(contentsOf: fixture("tpm-eventlog/eventlogs/rhel8-uefi.bin")))
        var cut = 0
        for n in stride(from: 0, to: bytes.count, by: 37) {
            do { _ = try TCGEventLog(bytes: Array(bytes.prefix(n))) } catch let e as VouchError {
                XCTAssertTrue([.truncated, .invalidValue].contains(e.code), "\(e)")
                cut += 1
            }
        }
        XCTAssertGreaterThan(cut, 0)
        // Random corruption never traps (a trap ends the run; the seed printed first replays it).
        var rng = TestSeed().generator
        for _ in 0..<2000 {
            var b = bytes
            for _ in 0..<3 { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            if let l = try? TCGEventLog(bytes: b) {
                let replayed = l.replay(using: digester)
                if case let .verified(v) = l.verify(quotedPCRs: replayed, using: digester) { _ = v.claims }
                _ = l.events.map(\.summary)
            }
        }
        // A hostile event size cannot make the parser allocate: it is checked against what is left.
        let hugeEvent: [UInt8] = [0, 0, 0, 0, 4, 0, 0, 0] + [UInt8](repeating: 0, count: 20) + [0xff, 0xff, 0xff, 0xff]
        XCTAssertThrowsError(try TCGEventLog(bytes: hugeEvent)) { XCTAssertEqual(($0 as? VouchError)?.code, .truncated) }
        XCTAssertThrowsError(try TCGEventLog(bytes: hugeEvent.prefix(8) + [UInt8](repeating: 0, count: 20) + [2, 0, 0, 0, 0])) {
            XCTAssertEqual(($0 as? VouchError)?.code, .truncated)
        }
        // A PCR index beyond 23, and a crypto-agile event claiming 2^32-1 digests.
        XCTAssertThrowsError(try TCGEventLog(bytes: [24, 0, 0, 0, 4, 0, 0, 0] + [UInt8](repeating: 0, count: 24))) {
            XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue)
        }
        let specEnd = 32 + Int(bytes[28]) | Int(bytes[29]) << 8
        XCTAssertThrowsError(try TCGEventLog(bytes: Array(bytes.prefix(specEnd)) + [0, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])) {
            XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue)
        }
        XCTAssertThrowsError(try TCGEventLog(bytes: [UInt8](repeating: 0xff, count: 40)))
        XCTAssertThrowsError(try TCGEventLog(bytes: []))
    }

    /// A Spec ID event that names one algorithm twice is refused when parsed, with the entry
    /// named (an adversarial review found that such a log, sent beside a genuine quote, trapped
    /// the replay on a duplicate bank and stopped the broker). Every real log's table, with its
    /// second entry rewritten to repeat the first, is refused so.
    func testASpecIDEventNamingAnAlgorithmTwiceIsRefused() throws {
        var checked = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: try fixture("tpm-eventlog/eventlogs").path).sorted() where name.hasSuffix(".bin") {
            var bytes = [UInt8](try Data(contentsOf: fixture("tpm-eventlog/eventlogs/\(name)")))
            // The first event is the legacy TCG_PCR_EVENT carrying TCG_EfiSpecIDEvent: its data
            // starts at byte 32; numberOfAlgorithms at data offset 24, the (id, size) pairs from 28.
            guard bytes.count > 64, bytes[32..<47].elementsEqual(Array("Spec ID Event03".utf8)) else { continue }
            let count = Int(bytes[56]) | Int(bytes[57]) << 8
            guard count >= 2 else { continue }
            XCTAssertNoThrow(try TCGEventLog(bytes: bytes), name)
            bytes[64] = bytes[60]; bytes[65] = bytes[61]; bytes[66] = bytes[62]; bytes[67] = bytes[63]
            XCTAssertThrowsError(try TCGEventLog(bytes: bytes), name) { error in
                XCTAssertEqual((error as? VouchError)?.code, .invalidValue, name)
                XCTAssertEqual((error as? VouchError)?.context["field"], "specID.digestSizes[1].algorithmId", name)
            }
            checked += 1
        }
        XCTAssertGreaterThan(checked, 0, "logs with two or more banks")
    }
}
