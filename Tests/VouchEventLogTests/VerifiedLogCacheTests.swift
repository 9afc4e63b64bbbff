import Foundation
import Synchronization
import XCTest
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchTPMWire
import VouchTestSupport

/// `VerifiedLogCache`: a log appraised through a host's entry answers exactly as the full path
/// (`TCGEventLog(bytes:)` then `verify`), and only bytes that verified before are ever skipped.
final class VerifiedLogCacheTests: XCTestCase {
    let digester = OpenSSLDigester()
    typealias Quote = [HashAlg: [Int: [UInt8]]]

    func realLogs() throws -> [(name: String, bytes: [UInt8])] {
        let dir = try fixture("tpm-eventlog/eventlogs")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".bin") }.sorted()
        XCTAssertEqual(names.count, 10)
        return try names.map { ($0, [UInt8](try Data(contentsOf: dir.appendingPathComponent($0)))) }
    }

    /// The PCR selection each machine's TPM reported (go-eventlog's expected_pcrs.json): bank → PCRs.
    func reportedSelections() throws -> [String: [HashAlg: Set<Int>]] {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("tpm-eventlog/eventlogs/expected_pcrs.json"))) as! [String: Any]
        var out: [String: [HashAlg: Set<Int>]] = [:]
        for (file, entry) in json["logs"] as! [String: [String: Any]] {
            for (bank, pcrs) in entry["pcrs"] as! [String: [String: String]] {
                out[file, default: [:]][HashAlg(rawValue: bank)!] = Set(pcrs.keys.compactMap { Int($0) })
            }
        }
        return out
    }

    /// What a TPM that measured exactly `bytes` would quote: their replay, in `selection` when given.
    func quote(_ bytes: [UInt8], _ selection: [HashAlg: Set<Int>]? = nil) throws -> Quote {
        let replayed = try TCGEventLog(bytes: bytes).replay(using: digester)
        guard let selection else { return replayed }
        var out: Quote = [:]
        for (bank, pcrs) in selection { out[bank] = (replayed[bank] ?? [:]).filter { pcrs.contains($0.key) } }
        return out
    }

    func uncached(_ bytes: [UInt8], _ quote: Quote) throws -> EventLogVerdict {
        try TCGEventLog(bytes: bytes).verify(quotedPCRs: quote, excluding: [23], using: digester)
    }

    func assertSame(_ a: EventLogVerdict, _ b: EventLogVerdict, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        switch (a, b) {
        case let (.verified(x), .verified(y)):
            XCTAssertEqual(x, y, message, file: file, line: line)
            XCTAssertEqual(x.claims, y.claims, message, file: file, line: line)
        case let (.rejected(x), .rejected(y)):
            XCTAssertEqual(x, y, message, file: file, line: line)
        default:
            XCTFail("\(message): \(a) vs \(b)", file: file, line: line)
        }
    }

    /// `outcome` is `expected` (the full path's verdict), with the claims of its verified log.
    func assertOutcome(_ outcome: VerifiedLogCache.Outcome, _ expected: EventLogVerdict, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        assertSame(outcome.verdict, expected, message, file: file, line: line)
        if case let .verified(v) = expected {
            XCTAssertEqual(outcome.claims, v.claims, message, file: file, line: line)
        } else {
            XCTAssertNil(outcome.claims, message, file: file, line: line)
        }
    }

    /// Every real log, split after every event: the prefix verified (against a quote of the prefix)
    /// and then the whole log (against a quote of the whole) through the cache gives exactly the
    /// uncached result and claims, taking the appended path whenever the prefix verified; and the
    /// same log again takes the unchanged path, with the same result. Both with quotes of every
    /// PCR the log extends and with the PCR selection the machine's TPM reported.
    func testEverySplitPointGivesTheFullPathsResult() throws {
        let selections = try reportedSelections()
        var appended = 0
        for (name, raw) in try realLogs() {
            let log = try TCGEventLog(bytes: raw)
            for selection in [nil, selections[name]] {
                let wholeQuote = try quote(raw, selection)
                let expected = try uncached(raw, wholeQuote)
                guard case .verified = expected else { return XCTFail("\(name) does not verify against its own replay") }
                for k in 1...log.events.count {
                    let cache = VerifiedLogCache(capacity: 4)
                    let end = k < log.events.count ? log.events[k].offset : raw.count
                    let prefix = Array(raw[..<end])
                    let prefixQuote = try quote(prefix, selection)
                    let first = try cache.verify(hostID: "h", log: prefix, quotedPCRs: prefixQuote, excluding: [23], using: digester)
                    XCTAssertEqual(first.path, .full)
                    assertOutcome(first, try uncached(prefix, prefixQuote), "\(name) prefix of \(k) events")
                    let prefixVerified: Bool
                    if case .verified = first.verdict { prefixVerified = true } else { prefixVerified = false }
                    XCTAssertEqual(cache.count, prefixVerified ? 1 : 0, "only a verified log enters the cache")

                    let second = try cache.verify(hostID: "h", log: raw, quotedPCRs: wholeQuote, excluding: [23], using: digester)
                    assertOutcome(second, expected, "\(name) split after \(k) events")
                    if prefixVerified {
                        XCTAssertEqual(second.path, k == log.events.count ? .unchanged : .appended(events: log.events.count - k), "\(name) split after \(k)")
                        if k < log.events.count { appended += 1 }
                    }
                    let third = try cache.verify(hostID: "h", log: raw, quotedPCRs: wholeQuote, excluding: [23], using: digester)
                    XCTAssertEqual(third.path, .unchanged, "\(name) split after \(k), again")
                    assertOutcome(third, expected, "\(name) split after \(k), again")
                }
            }
        }
        XCTAssertGreaterThan(appended, 1000, "the appended path was taken")
    }

    /// Where the data of the event picked by `pick` lies in `raw`.
    func dataRange(_ raw: [UInt8], where pick: (TCGEventLog.Event) -> Bool) throws -> Range<Int> {
        let log = try TCGEventLog(bytes: raw)
        let e = try XCTUnwrap(log.events.first(where: pick))
        let end = e.sequence + 1 < log.events.count ? log.events[e.sequence + 1].offset : raw.count
        return (end - e.data.count)..<end
    }

    /// A byte changed inside the cached prefix — in an event's data (digests untouched, so only
    /// the data check sees it) or in a digest (so the replay does) — misses the cache and is refused
    /// as the full path refuses it, alone or with events appended; the genuine log still hits after.
    func testChangedByteInsideTheCachedPrefixMissesAndIsRefused() throws {
        let raw = try realLogs().first { $0.name == "rhel8-uefi.bin" }!.bytes
        let log = try TCGEventLog(bytes: raw)
        let k = log.events.count - 5
        let prefix = Array(raw[..<log.events[k].offset])
        let cache = VerifiedLogCache(capacity: 4)
        let prefixQuote = try quote(prefix)
        guard case .verified = try cache.verify(hostID: "h", log: prefix, quotedPCRs: prefixQuote, using: digester).verdict else { return XCTFail("genuine prefix refused") }

        let dbx = try dataRange(prefix) { $0.type == EventType.efiVariableDriverConfig && $0.pcr == 7 && UEFIVariable($0.data)?.name == "dbx" }
        var dataChanged = prefix
        dataChanged[dbx.upperBound - 5] ^= 0x01
        let sep = try XCTUnwrap(log.events.first { $0.type == EventType.separator && $0.pcr == 4 && $0.sequence < k })
        var digestChanged = prefix
        digestChanged[sep.offset + 12 + 2 + 3] ^= 0x80   // after pcrIndex, eventType, digests.count and the first hashAlg: its digest
        for (what, changed, code) in [("data", dataChanged, ErrorCode.eventDataMismatch), ("digest", digestChanged, ErrorCode.eventLogMismatch)] {
            XCTAssertNotEqual(changed, prefix)
            for tampered in [changed, changed + raw[prefix.count...]] {
                let q = tampered.count == prefix.count ? prefixQuote : try quote(raw)
                let r = try cache.verify(hostID: "h", log: tampered, quotedPCRs: q, using: digester)
                XCTAssertEqual(r.path, .full, what)
                guard case let .rejected(v) = r.verdict else { XCTFail("\(what): a changed byte verified"); continue }
                XCTAssertTrue(v.map(\.code).contains(code), "\(what): \(v.map(\.code))")
                assertOutcome(r, try TCGEventLog(bytes: tampered).verify(quotedPCRs: q, using: digester), what)
            }
        }
        XCTAssertEqual(try cache.verify(hostID: "h", log: prefix, quotedPCRs: prefixQuote, using: digester).path, .unchanged)
        XCTAssertEqual(try cache.verify(hostID: "h", log: raw, quotedPCRs: try quote(raw), using: digester).path, .appended(events: 5))
    }

    /// A grown log whose quote is the old one (the new events' PCRs no longer match), a shorter
    /// log, a tail that does not parse, and a host with no entry all answer as the full path.
    func testMismatchesShorterLogsAndBadTailsTakeTheFullPath() throws {
        let raw = try realLogs().first { $0.name == "rhel8-uefi.bin" }!.bytes
        let log = try TCGEventLog(bytes: raw)
        let prefix = Array(raw[..<log.events[log.events.count - 3].offset])
        let cache = VerifiedLogCache(capacity: 4)
        let prefixQuote = try quote(prefix)
        _ = try cache.verify(hostID: "h", log: raw, quotedPCRs: try quote(raw), using: digester)

        // Shorter than the entry: full path, verified against its own quote; the entry is now the prefix.
        let shorter = try cache.verify(hostID: "h", log: prefix, quotedPCRs: prefixQuote, using: digester)
        XCTAssertEqual(shorter.path, .full)
        assertOutcome(shorter, try TCGEventLog(bytes: prefix).verify(quotedPCRs: prefixQuote, using: digester), "shorter")

        // Grown, against the stale quote: refused exactly as the full path refuses it.
        let stale = try cache.verify(hostID: "h", log: raw, quotedPCRs: prefixQuote, using: digester)
        XCTAssertEqual(stale.path, .full)
        guard case let .rejected(v) = stale.verdict else { return XCTFail("a log that outgrew its quote verified") }
        XCTAssertEqual(Set(v.map(\.code)), [.eventLogMismatch])
        assertOutcome(stale, try TCGEventLog(bytes: raw).verify(quotedPCRs: prefixQuote, using: digester), "stale quote")

        // A tail that ends inside an event: the full path's parse error.
        let truncated = Array(raw.dropLast(3))
        XCTAssertThrowsError(try cache.verify(hostID: "h", log: truncated, quotedPCRs: try quote(raw), using: digester)) { e in
            XCTAssertEqual((e as? VouchError)?.code, .truncated)
        }
        // Another host's entry is never used.
        XCTAssertEqual(try cache.verify(hostID: "other", log: prefix, quotedPCRs: prefixQuote, using: digester).path, .full)
        XCTAssertEqual(try cache.verify(hostID: "h", log: prefix, quotedPCRs: prefixQuote, using: digester).path, .unchanged)
    }

    /// The same log quoted over fewer PCRs, or one bank only, is answered from the entry with the
    /// full path's result for that quote; over a PCR whose events the entry did not check, in full.
    func testAnotherQuoteOfTheSameLog() throws {
        let raw = try realLogs().first { $0.name == "rhel8-uefi.bin" }!.bytes
        let cache = VerifiedLogCache(capacity: 4)
        let narrow = try quote(raw, [.sha256: [0, 7]])
        let r0 = try cache.verify(hostID: "h", log: raw, quotedPCRs: narrow, excluding: [23], using: digester)
        XCTAssertEqual(r0.path, .full)
        assertOutcome(r0, try uncached(raw, narrow), "PCRs 0 and 7")
        for q in [try quote(raw, [.sha256: [7]]), try quote(raw, [.sha1: [0, 7]]), narrow] {
            let r = try cache.verify(hostID: "h", log: raw, quotedPCRs: q, excluding: [23], using: digester)
            XCTAssertEqual(r.path, .unchanged)
            assertOutcome(r, try uncached(raw, q), "\(q.mapValues { $0.keys.sorted() })")
        }
        let wide = try quote(raw, [.sha256: Set(0...9)])
        let r = try cache.verify(hostID: "h", log: raw, quotedPCRs: wide, excluding: [23], using: digester)
        XCTAssertEqual(r.path, .full, "PCRs 1-6, 8 and 9 have events the entry did not check")
        assertOutcome(r, try uncached(raw, wide), "PCRs 0-9")
        XCTAssertEqual(try cache.verify(hostID: "h", log: raw, quotedPCRs: wide, excluding: [23], using: digester).path, .unchanged)
    }

    /// A legacy (SHA-1) event, as `TCG_PCClientPCREvent` lays it out.
    func legacyEvent(pcr: UInt32, type: UInt32, digest: [UInt8], data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for v in [pcr, type] { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        out += digest
        withUnsafeBytes(of: UInt32(data.count).littleEndian) { out += $0 }
        return out + data
    }

    /// A StartupLocality event first seen in the tail would change PCR 0's starting value for the
    /// events before it: the cache takes the full path, which applies it from the start.
    func testStartupLocalityInTheTailTakesTheFullPath() throws {
        let version = Array("1.0".utf8)
        let prefix = legacyEvent(pcr: 0, type: EventType.sCRTMVersion, digest: digester.digest(.sha1, version), data: version)
        let whole = prefix + legacyEvent(pcr: 0, type: EventType.noAction, digest: [UInt8](repeating: 0, count: 20), data: Array("StartupLocality".utf8) + [0, 3])
        XCTAssertEqual(try TCGEventLog(bytes: whole).startupLocality, 3)
        let cache = VerifiedLogCache(capacity: 4)
        guard case .verified = try cache.verify(hostID: "h", log: prefix, quotedPCRs: try quote(prefix), using: digester).verdict else { return XCTFail("prefix refused") }
        XCTAssertNotEqual(try quote(prefix), try quote(whole), "the locality changes PCR 0")
        let r = try cache.verify(hostID: "h", log: whole, quotedPCRs: try quote(whole), using: digester)
        XCTAssertEqual(r.path, .full)
        assertOutcome(r, try uncached(whole, try quote(whole)), "locality")
    }

    /// Bounded by hosts (least recently used out) and by bytes; `remove` forgets a host.
    func testBoundsAndRemoval() throws {
        let raw = try realLogs().first { $0.name == "rhel8-uefi.bin" }!.bytes
        let q = try quote(raw)
        let cache = VerifiedLogCache(capacity: 2)
        for h in ["a", "b"] { _ = try cache.verify(hostID: h, log: raw, quotedPCRs: q, using: digester) }
        XCTAssertEqual(try cache.verify(hostID: "a", log: raw, quotedPCRs: q, using: digester).path, .unchanged)   // a is now the newest
        _ = try cache.verify(hostID: "c", log: raw, quotedPCRs: q, using: digester)                                  // b goes
        XCTAssertEqual(cache.count, 2)
        XCTAssertEqual(try cache.verify(hostID: "a", log: raw, quotedPCRs: q, using: digester).path, .unchanged)
        XCTAssertEqual(try cache.verify(hostID: "c", log: raw, quotedPCRs: q, using: digester).path, .unchanged)
        XCTAssertEqual(try cache.verify(hostID: "b", log: raw, quotedPCRs: q, using: digester).path, .full)
        cache.remove(hostID: "b")
        XCTAssertEqual(cache.count, 1)
        XCTAssertEqual(try cache.verify(hostID: "b", log: raw, quotedPCRs: q, using: digester).path, .full)
        cache.removeAll()
        XCTAssertEqual(cache.count, 0)

        let tiny = VerifiedLogCache(capacity: 10, maxBytes: 1024)
        _ = try tiny.verify(hostID: "a", log: raw, quotedPCRs: q, using: digester)
        XCTAssertEqual(tiny.count, 0, "an entry larger than the byte bound is not kept")
    }

    /// Many threads appraising several hosts' growing logs at once all get the full path's answers.
    func testConcurrentAppraisalsAgreeWithTheFullPath() throws {
        let raw = try realLogs().first { $0.name == "rhel8-uefi.bin" }!.bytes
        let log = try TCGEventLog(bytes: raw)
        let versions = [log.events.count - 4, log.events.count - 2, log.events.count].map { k in Array(raw[..<(k < log.events.count ? log.events[k].offset : raw.count)]) }
        let expected = try versions.map { v in (v, try quote(v), try uncached(v, try quote(v))) }
        let cache = VerifiedLogCache(capacity: 3)
        let failures = Mutex(0)
        let digester = self.digester
        DispatchQueue.concurrentPerform(iterations: 48) { i in
            let (bytes, q, want) = expected[(i / 5) % expected.count]
            guard let got = try? cache.verify(hostID: "h\(i % 4)", log: bytes, quotedPCRs: q, excluding: [23], using: digester),
                  case let .verified(a) = got.verdict, case let .verified(b) = want, a == b, got.claims == b.claims else {
                failures.withLock { $0 += 1 }
                return
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, 0)
        XCTAssertLessThanOrEqual(cache.count, 3)
    }
}
