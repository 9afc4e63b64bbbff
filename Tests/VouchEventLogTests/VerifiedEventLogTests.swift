import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchTPMWire
import VouchTestSupport

/// `TCGEventLog.verify`: claims come only from quoted PCRs that replay to the quote, and only from
/// event data that hashes to the event's digest.
final class VerifiedEventLogTests: XCTestCase {
    let digester = OpenSSLDigester()

    func bytes(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: fixture("tpm-eventlog/eventlogs/\(name)")))
    }

    /// The PCR values the machines' TPMs reported (go-eventlog's test data), as a quote would carry them.
    func expectedPCRs() throws -> [String: [HashAlg: [Int: [UInt8]]]] {
        let url = try fixture("tpm-eventlog/eventlogs/expected_pcrs.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        var out: [String: [HashAlg: [Int: [UInt8]]]] = [:]
        for (file, entry) in json["logs"] as! [String: [String: Any]] {
            for (bank, pcrs) in entry["pcrs"] as! [String: [String: String]] {
                for (index, hex) in pcrs { out[file, default: [:]][HashAlg(rawValue: bank)!, default: [:]][Int(index)!] = try Hex.decode(hex) }
            }
        }
        return out
    }

    /// The "quote" for tampering tests: the untouched log's own replay, restricted to `pcrs`.
    func quoted(_ original: [UInt8], pcrs: Set<Int>? = nil) throws -> [HashAlg: [Int: [UInt8]]] {
        try TCGEventLog(bytes: original).replay(using: digester).mapValues { $0.filter { pcrs?.contains($0.key) ?? true } }
    }

    func verified(_ log: [UInt8], against quote: [HashAlg: [Int: [UInt8]]]) throws -> VerifiedEventLog {
        switch try TCGEventLog(bytes: log).verify(quotedPCRs: quote, using: digester) {
        case let .verified(v): return v
        case let .rejected(violations): throw TestFailure("rejected: \(violations)")
        }
    }

    func rejection(_ log: [UInt8], against quote: [HashAlg: [Int: [UInt8]]]) throws -> [EventLogViolation] {
        guard case let .rejected(v) = try TCGEventLog(bytes: log).verify(quotedPCRs: quote, using: digester) else {
            XCTFail("verified")
            return []
        }
        return v
    }

    /// Where an event's data starts in the raw log (the data ends each event).
    func dataRange(_ log: TCGEventLog, _ e: TCGEventLog.Event, total: Int) -> Range<Int> {
        let end = e.sequence + 1 < log.events.count ? log.events[e.sequence + 1].offset : total
        return (end - e.data.count)..<end
    }

    /// The event the predicate picks, and the log's bytes with `edit` applied to that event's data
    /// (same length, so the structure and every digest stay as they were).
    func tampered(_ name: String, where pick: (TCGEventLog.Event) -> Bool, edit: (inout [UInt8]) -> Void) throws -> (TCGEventLog.Event, [UInt8]) {
        var raw = try bytes(name)
        let log = try TCGEventLog(bytes: raw)
        let e = try XCTUnwrap(log.events.first(where: pick), "no such event in \(name)")
        let range = dataRange(log, e, total: raw.count)
        var data = Array(raw[range])
        edit(&data)
        XCTAssertEqual(data.count, range.count)
        raw.replaceSubrange(range, with: data)
        return (e, raw)
    }

    func variable(_ name: String) -> (TCGEventLog.Event) -> Bool {
        { $0.type == EventType.efiVariableDriverConfig && $0.pcr == 7 && UEFIVariable($0.data)?.name == name }
    }

    /// Every real log verifies against the PCRs its TPM reported, with every kept event's data
    /// checked (including the firmware variants: VariableData-only boot variables on GCE, old
    /// shim's authority events in debian-10 and COS 85/93, RHEL's and upstream GRUB's strings).
    func testEveryRealLogVerifiesAgainstItsPCRs() throws {
        let expected = try expectedPCRs()
        XCTAssertEqual(expected.count, 10)
        for (file, quote) in expected.sorted(by: { $0.key < $1.key }) {
            let raw = try bytes(file)
            let v = try verified(raw, against: quote)
            XCTAssertEqual(Set(v.pcrs), Set(quote.values.flatMap(\.keys)), file)
            // Against its full replay (PCR 14 too where the expectations leave it out), every event is kept and checked.
            let all = try verified(raw, against: try quoted(raw))
            let log = try TCGEventLog(bytes: raw)
            XCTAssertEqual(all.events.count, log.events.filter { $0.type != EventType.noAction }.count, file)
            for e in all.events where [EventType.separator, EventType.efiVariableDriverConfig, EventType.efiAction].contains(e.type) {
                XCTAssertNotEqual(e.content, .digestOnly, "\(file) event \(e.sequence)")
            }
        }
    }

    func testDecodedClaims() throws {
        let rhelBytes = try bytes("rhel8-uefi.bin")
        let rhel = try verified(rhelBytes, against: try quoted(rhelBytes)).claims
        XCTAssertEqual(rhel.secureBoot, true)
        XCTAssertEqual(Set(rhel.variables.keys), ["PK", "KEK", "db", "dbx"])
        XCTAssertTrue(rhel.bootApplications.contains { ($0.path ?? "").lowercased().hasSuffix("shimx64.efi") }, "\(rhel.bootApplications)")
        XCTAssertTrue(rhel.kernelCommandLines.contains { $0.contains("root=") }, "\(rhel.kernelCommandLines)")
        XCTAssertEqual(rhel.grubCommands.count, 49)
        XCTAssertEqual(rhel.separatedPCRs, Array(0...7))
        XCTAssertEqual(rhel.separatorErrors, [])
        XCTAssertTrue(rhel.efiActions.contains("Calling EFI Application from Boot Option"))
        XCTAssertNil(rhel.uncheckedCommandEvents)
        let ubuntu = try bytes("ubuntu-2104-no-secure-boot.bin")
        let u = try verified(ubuntu, against: try quoted(ubuntu)).claims
        XCTAssertEqual(u.secureBoot, false)
        XCTAssertEqual(u.kernelCommandLines.count, 1)
        let arch = try bytes("arch-linux-workstation.bin")
        let a = try verified(arch, against: try quoted(arch)).claims
        XCTAssertNil(a.secureBoot, "a zero-length SecureBoot variable is not a claim")
        // systemd-boot's UTF-16 options in PCR 8 cannot be checked: listed, never read as a command line.
        XCTAssertEqual(a.kernelCommandLines, [])
        XCTAssertEqual(a.uncheckedCommandEvents?.count, 1)
    }

    /// Flipping SecureBoot's data byte 0 → 1 leaves every digest (so the replay) unchanged.
    func testFlippedSecureBootByteIsRefused() throws {
        let original = try bytes("ubuntu-2104-no-secure-boot.bin")
        let (e, raw) = try tampered("ubuntu-2104-no-secure-boot.bin", where: variable("SecureBoot")) { data in
            XCTAssertEqual(data.last, 0)
            data[data.count - 1] = 1
        }
        XCTAssertEqual(try TCGEventLog(bytes: raw).replay(using: digester), try quoted(original), "the replay cannot see it")
        let v = try rejection(raw, against: try quoted(original))
        XCTAssertEqual(v.map(\.code), [.eventDataMismatch])
        XCTAssertEqual(v.first?.path, "eventLog.events[\(e.sequence)].EV_EFI_VARIABLE_DRIVER_CONFIG")
    }

    func testFlippedDBXEntryIsRefused() throws {
        let original = try bytes("rhel8-uefi.bin")
        let (e, raw) = try tampered("rhel8-uefi.bin", where: variable("dbx")) { data in data[data.count - 5] ^= 0x01 }
        let v = try rejection(raw, against: try quoted(original, pcrs: [7]))
        XCTAssertEqual(v.map(\.code), [.eventDataMismatch])
        XCTAssertEqual(v.first?.path, "eventLog.events[\(e.sequence)].EV_EFI_VARIABLE_DRIVER_CONFIG")
    }

    /// Upstream GRUB ("kernel_cmdline: …") and RHEL's ("grub_kernel_cmdline …"), one byte changed.
    func testChangedKernelCommandLineIsRefused() throws {
        for (file, prefix) in [("ubuntu-2104-no-dbx.bin", "kernel_cmdline: "), ("rhel8-uefi.bin", "grub_kernel_cmdline ")] {
            let original = try bytes(file)
            let (e, raw) = try tampered(file, where: { $0.pcr == 8 && $0.data.starts(with: Array(prefix.utf8)) }) { data in
                data[prefix.utf8.count + 2] ^= 0x20
            }
            let v = try rejection(raw, against: try quoted(original, pcrs: [8]))
            XCTAssertEqual(v.map(\.code), [.eventDataMismatch], file)
            XCTAssertEqual(v.first?.path, "eventLog.events[\(e.sequence)].EV_IPL", file)
        }
        // Renaming the prefix makes the event unreadable, not invisible: it is listed as unchecked.
        let original = try bytes("ubuntu-2104-no-dbx.bin")
        let (e, raw) = try tampered("ubuntu-2104-no-dbx.bin", where: { $0.pcr == 8 && $0.data.starts(with: Array("kernel_cmdline".utf8)) }) { data in
            data[0] = UInt8(ascii: "x")
        }
        let claims = try verified(raw, against: try quoted(original, pcrs: [8])).claims
        XCTAssertEqual(claims.kernelCommandLines, [])
        XCTAssertEqual(claims.uncheckedCommandEvents, [e.sequence])
    }

    /// Claims come only from quoted PCRs: a quote of PCR 0 alone says nothing about Secure Boot,
    /// boot applications or the command line.
    func testClaimsComeOnlyFromQuotedPCRs() throws {
        let raw = try bytes("rhel8-uefi.bin")
        let v = try verified(raw, against: try quoted(raw, pcrs: [0]))
        XCTAssertEqual(v.pcrs, [0])
        XCTAssertTrue(v.events.allSatisfy { $0.pcr == 0 })
        let c = v.claims
        XCTAssertNil(c.secureBoot)
        XCTAssertEqual(c.variables, [:])
        XCTAssertEqual(c.dbxEntries, [])
        XCTAssertEqual(c.kernelCommandLines, [])
        XCTAssertEqual(c.bootApplications, [])
        XCTAssertEqual(c.pcrs, [0])
        // A bank the log lacks does not count: quoting only sha512 covers nothing.
        let sha512 = [HashAlg.sha512: [0: [UInt8](repeating: 0, count: 64)]]
        XCTAssertEqual(try rejection(raw, against: sha512).map(\.code), [.eventLogMismatch])
    }

    /// A quoted PCR the log extends to another value is refused, in every bank that differs.
    func testMismatchInAQuotedPCRIsRefused() throws {
        let raw = try bytes("rhel8-uefi.bin")
        var quote = try quoted(raw, pcrs: [0, 7])
        quote[.sha256]?[7]?[0] ^= 0xff
        let v = try rejection(raw, against: quote)
        XCTAssertEqual(v.map(\.code), [.eventLogMismatch])
        XCTAssertEqual(v.map(\.path), ["eventLog.sha256.7"])
        // A PCR the caller excludes (the model log's 23) is neither compared nor kept.
        var model = try quoted(raw, pcrs: [0])
        model[.sha256]?[23] = [UInt8](repeating: 1, count: 32)
        XCTAssertEqual(try TCGEventLog(bytes: raw).verify(quotedPCRs: model, excluding: [23], using: digester).isVerified, true)
    }

    /// Random byte corruption (seeded; the seed is printed to replay a failure) never crashes, and a
    /// corrupted log that still verifies against the original quote never claims more than the
    /// original: event types are covered by no digest, so a relabelled event may drop a claim
    /// (Secure Boot not measured, dbx empty) or add a boot application, but never hide one, and a
    /// command line that cannot be read is reported as unchecked.
    func testRandomCorruptionNeverWidensClaims() throws {
        let original = try bytes("rhel8-uefi.bin")
        let quote = try quoted(original)
        let before = try verified(original, against: quote).claims
        let seed = TestSeed()
        var rng = seed.generator
        for round in 0..<1500 {
            var b = original
            for _ in 0..<3 { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            guard let log = try? TCGEventLog(bytes: b) else { continue }
            _ = log.events.map(\.summary)
            guard case let .verified(v) = log.verify(quotedPCRs: quote, using: digester) else { continue }
            let after = v.claims
            let context = "\(seed) round \(round)"
            XCTAssertTrue(after.secureBoot == before.secureBoot || after.secureBoot == nil, context)
            XCTAssertTrue(after.dbxEntries == before.dbxEntries || after.dbxEntries.isEmpty, context)
            XCTAssertTrue(Set(after.efiActions).isSubset(of: before.efiActions), context)
            XCTAssertTrue(Set(before.bootApplications.map(\.digest)).isSubset(of: after.bootApplications.map(\.digest)), context)
            if after.uncheckedCommandEvents == nil {
                XCTAssertEqual(after.kernelCommandLines, before.kernelCommandLines, context)
                XCTAssertEqual(after.grubCommands, before.grubCommands, context)
            }
        }
    }
}

extension EventLogVerdict {
    var isVerified: Bool { if case .verified = self { true } else { false } }
}
