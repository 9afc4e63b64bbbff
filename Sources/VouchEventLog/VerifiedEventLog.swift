import VouchCore
import VouchTPMWire

extension ErrorCode {
    /// A quoted PCR the log extends replays to another value than the quote signed.
    public static let eventLogMismatch = ErrorCode("event_log_mismatch", status: 403)
    /// An event whose digest is defined over its data carries data that does not hash to it.
    public static let eventDataMismatch = ErrorCode("event_data_mismatch", status: 403)
}

/// One reason a log was refused, in the shape policy violations take (the appraiser turns it
/// into one): the code, where (`eventLog.sha256.7`, `eventLog.events[12].EV_SEPARATOR`), and
/// what was expected and found.
public struct EventLogViolation: Error, Sendable, Equatable {
    public let code: ErrorCode
    public let path: String
    public let expected: String
    public let actual: String
}

public enum EventLogVerdict: Sendable {
    case verified(VerifiedEventLog)
    case rejected([EventLogViolation])
}

/// An event of a verified log, with the only reading of its data Vouch trusts.
public struct VerifiedEvent: Sendable, Equatable {
    public enum Content: Sendable, Equatable {
        /// UEFI_VARIABLE_DATA whose bytes hash to the event digest (or a documented firmware variant).
        /// Under the VariableData-only variant of boot variables the name is not covered: claims
        /// read only EV_EFI_VARIABLE_DRIVER_CONFIG variables, whose whole data is.
        case variable(name: String, data: [UInt8])
        /// EV_SEPARATOR data (00000000, or FFFFFFFF for a firmware error).
        case separator([UInt8])
        /// EV_EFI_ACTION / EV_ACTION text.
        case action(String)
        /// GRUB's measured strings in PCR 8: the digest is over the command or the command line itself.
        case grubCommand(String)
        case kernelCommandLine(String)
        /// EV_EFI_BOOT_SERVICES_APPLICATION: the digest is the image's Authenticode hash, which the
        /// data cannot be checked against. The path is read from unverified data: informational only.
        case image(unverifiedPath: String?)
        /// Data not read: either it cannot be checked against the digest (EV_IPL file measurements,
        /// EV_POST_CODE, drivers, …) or nothing reads it. Only the digest counts.
        case digestOnly
    }

    public let sequence: Int
    public let pcr: Int
    public let type: UInt32
    public let digests: [HashAlg: [UInt8]]
    public let content: Content

    public var typeName: String { EventType.name(type) }
}

/// A firmware event log checked against a verified quote: only the events of quoted PCRs that
/// replay to the quoted values, each with data read only after it was checked against its
/// digest. Boot claims come from this type and nothing else.
public struct VerifiedEventLog: Sendable, Equatable {
    public let format: TCGEventLog.Format
    public let banks: [HashAlg]
    /// The PCRs whose events were kept: quoted in a bank the log has, and replayed to the quote.
    public let pcrs: [Int]
    public let events: [VerifiedEvent]
}

extension TCGEventLog {
    /// Checks the log against the PCR values of a verified quote (bank → PCR → value) and returns
    /// the events that may be believed. In order:
    /// 1. replay (`replay(using:)`): for every quoted bank the log covers, every quoted PCR the
    ///    log extends must equal its quoted value (`event_log_mismatch`, path `eventLog.BANK.PCR`);
    ///    PCRs in `excluding` (the model log's PCR 23) are neither compared nor kept; when no
    ///    quoted PCR is covered at all, the log says nothing about this quote (`event_log_mismatch`);
    /// 2. events outside those PCRs are dropped, unread; kept events keep only their digests in the
    ///    banks where their PCR replayed to the quote (claims never read a bank the quote did not cover);
    /// 3. every kept event whose digest is defined over its data must hash to it in every bank it
    ///    carries (`event_data_mismatch`, path `eventLog.events[SEQ].TYPE`): see `checkedContent`.
    /// Every violation of the failing stage is reported.
    public func verify(quotedPCRs quoted: [HashAlg: [Int: [UInt8]]], excluding: Set<Int> = [], using digester: Digester) -> EventLogVerdict {
        verify(replayed: replay(using: digester), quotedPCRs: quoted, excluding: excluding, using: digester)
    }

    /// `verify` given the log's replay (`VerifiedLogCache` replays once and keeps the state).
    func verify(replayed: [HashAlg: [Int: [UInt8]]], quotedPCRs quoted: [HashAlg: [Int: [UInt8]]], excluding: Set<Int>,
                using digester: Digester) -> EventLogVerdict {
        let match: QuoteMatch
        switch Self.match(replayed: replayed, quoted: quoted, excluding: excluding, banks: banks) {
        case let .success(m): match = m
        case let .failure(mismatches): return .rejected(mismatches.violations)
        }
        var out: [VerifiedEvent] = []
        var bad: [EventLogViolation] = []
        for e in events where e.type != EventType.noAction && match.kept.contains(e.pcr) {
            switch Self.checkedContent(e, digester) {
            case let .success(content):
                out.append(match.vouchedOnly(VerifiedEvent(sequence: e.sequence, pcr: e.pcr, type: e.type, digests: e.digests, content: content)))
            case let .failure(v):
                bad.append(v)
            }
        }
        guard bad.isEmpty else { return .rejected(bad) }
        return .verified(VerifiedEventLog(format: format, banks: banks, pcrs: match.kept.sorted(), events: out))
    }

    /// Which PCRs a replay lets the log speak for, and in which banks: step 1 of `verify`.
    struct QuoteMatch: Sendable, Equatable {
        /// Quoted PCRs (less `excluding`) that the log extends in a quoted bank; all replayed to the quote.
        let kept: Set<Int>
        /// The banks in which each kept PCR replayed to a quoted value: only their digests may be
        /// read (a bank the quote does not cover for that PCR could say anything).
        let vouched: [Int: Set<HashAlg>]

        /// `e` with only the digests of banks its PCR replayed to the quote in.
        func vouchedOnly(_ e: VerifiedEvent) -> VerifiedEvent {
            let banks = vouched[e.pcr] ?? []
            return VerifiedEvent(sequence: e.sequence, pcr: e.pcr, type: e.type, digests: e.digests.filter { banks.contains($0.key) }, content: e.content)
        }
    }

    struct Mismatches: Error { let violations: [EventLogViolation] }

    /// Step 1 of `verify`: every quoted PCR the replay covers equals its quoted value, and at
    /// least one is covered; every mismatch is reported.
    static func match(replayed: [HashAlg: [Int: [UInt8]]], quoted: [HashAlg: [Int: [UInt8]]], excluding: Set<Int>,
                      banks: [HashAlg]) -> Result<QuoteMatch, Mismatches> {
        var mismatches: [EventLogViolation] = []
        var kept = Set<Int>()
        var vouched: [Int: Set<HashAlg>] = [:]
        for bank in quoted.keys.sorted(by: { $0.digestSize < $1.digestSize }) {
            guard let values = replayed[bank], let quotedValues = quoted[bank] else { continue }
            for pcr in quotedValues.keys.sorted() where !excluding.contains(pcr) {
                guard let value = values[pcr] else { continue }
                kept.insert(pcr)
                vouched[pcr, default: []].insert(bank)
                if value != quotedValues[pcr] {
                    mismatches.append(EventLogViolation(code: .eventLogMismatch, path: "eventLog.\(bank.rawValue).\(pcr)",
                                                        expected: Hex.encode(quotedValues[pcr] ?? []), actual: Hex.encode(value)))
                }
            }
        }
        if kept.isEmpty {
            mismatches.append(EventLogViolation(code: .eventLogMismatch, path: "eventLog", expected: "events for quoted PCRs in a quoted bank",
                                                actual: "banks \(banks.map(\.rawValue)), no quoted PCR covered"))
        }
        guard mismatches.isEmpty else { return .failure(Mismatches(violations: mismatches)) }
        return .success(QuoteMatch(kept: kept, vouched: vouched))
    }

    /// Whether `bytes` hash to the event's digest in every bank the event carries (and it carries one).
    static func digestsMatch(_ e: Event, _ bytes: [UInt8], _ digester: Digester) -> Bool {
        !e.digests.isEmpty && e.digests.allSatisfy { digester.digest($0.key, bytes) == $0.value }
    }

    /// The reading of an event's data, once the data is shown to be what was measured. Digests
    /// over the data (PFP 10.4.1), with the firmware variants seen in real logs and accepted
    /// exactly as described:
    /// - EV_SEPARATOR, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_ACTION, EV_ACTION, EV_EFI_GPT_EVENT,
    ///   EV_S_CRTM_VERSION: the whole event data.
    /// - EV_EFI_VARIABLE_BOOT / BOOT2: the whole UEFI_VARIABLE_DATA (the spec; physical machines in
    ///   the corpus), or only its VariableData (EDK2/OVMF, e.g. every GCE log), as go-attestation
    ///   also accepts.
    /// - EV_EFI_VARIABLE_AUTHORITY: the whole data; or, for shim builds before rhboot/shim commit
    ///   8a27a48 (go-attestation issue 157), whose VariableData lacks the EFI_SIGNATURE_DATA owner
    ///   GUID (it starts with a DER SEQUENCE) and which add one stray byte, the data without its
    ///   last byte.
    /// - EV_IPL in PCR 8 from GRUB: the event data is a prefix and a string (NUL-terminated), and
    ///   the digest is over the string alone: upstream "grub_cmd: " and "kernel_cmdline: " hash it
    ///   without the NUL; RHEL's "grub_kernel_cmdline " without it and RHEL's "grub_cmd " with it.
    ///   Other EV_IPL events (GRUB's file measurements in PCR 9, shim's MokList in PCR 14,
    ///   systemd-boot's UTF-16 options) hash something the data only names: digest only.
    static func checkedContent(_ e: Event, _ digester: Digester) -> Result<VerifiedEvent.Content, EventLogViolation> {
        func mismatch(_ what: String) -> Result<VerifiedEvent.Content, EventLogViolation> {
            let bank = e.digests.keys.max { $0.digestSize < $1.digestSize }
            let actual = bank.map { "\($0.rawValue) of the data \(Hex.encode(digester.digest($0, e.data)))" } ?? "no digest Vouch can compute"
            return .failure(EventLogViolation(code: .eventDataMismatch, path: "eventLog.events[\(e.sequence)].\(e.typeName)",
                                              expected: "event digest over \(what)", actual: actual))
        }
        switch e.type {
        case EventType.separator:
            return digestsMatch(e, e.data, digester) ? .success(.separator(e.data)) : mismatch("the separator data")
        case EventType.efiAction, EventType.action:
            return digestsMatch(e, e.data, digester) ? .success(.action(asciiText(e.data))) : mismatch("the action text")
        case EventType.efiGPTEvent, EventType.sCRTMVersion:
            return digestsMatch(e, e.data, digester) ? .success(.digestOnly) : mismatch("the event data")
        case EventType.efiVariableDriverConfig, EventType.efiVariableBoot, EventType.efiVariableBoot2, EventType.efiVariableAuthority:
            guard let v = UEFIVariable(e.data) else { return mismatch("a UEFI_VARIABLE_DATA (unparseable)") }
            if digestsMatch(e, e.data, digester) { return .success(.variable(name: v.name, data: v.data)) }
            if e.type == EventType.efiVariableBoot || e.type == EventType.efiVariableBoot2, digestsMatch(e, v.data, digester) {
                return .success(.variable(name: v.name, data: v.data))
            }
            if e.type == EventType.efiVariableAuthority, v.data.starts(with: [0x30, 0x82]), !e.data.isEmpty,
               digestsMatch(e, Array(e.data.dropLast()), digester), let trimmed = UEFIVariable(Array(e.data.dropLast())) {
                return .success(.variable(name: trimmed.name, data: trimmed.data))
            }
            return mismatch("the UEFI variable \(v.name)")
        case EventType.ipl where e.pcr == 8:
            guard let (kind, measured, hashesNUL) = grubString(e.data) else { return .success(.digestOnly) }
            guard digestsMatch(e, measured + (hashesNUL ? [0] : []), digester) else { return mismatch("GRUB's measured string") }
            let text = String(decoding: measured, as: UTF8.self)
            return .success(kind == .command ? .grubCommand(text) : .kernelCommandLine(text))
        case EventType.efiBootServicesApplication:
            return .success(.image(unverifiedPath: imagePath(e.data)))
        default:
            return .success(.digestOnly)
        }
    }

    enum GRUBKind { case command, kernelCommandLine }

    /// GRUB's PCR 8 strings: (kind, the measured string, whether its NUL is hashed too), or nil
    /// for an EV_IPL that is not one (its data is then never read).
    static func grubString(_ data: [UInt8]) -> (GRUBKind, [UInt8], Bool)? {
        let body = data.last == 0 ? Array(data.dropLast()) : data
        let forms: [(prefix: String, kind: GRUBKind, hashesNUL: Bool)] = [
            ("grub_cmd: ", .command, false), ("kernel_cmdline: ", .kernelCommandLine, false),      // upstream GRUB
            ("grub_cmd ", .command, true), ("grub_kernel_cmdline ", .kernelCommandLine, false),   // RHEL's GRUB
        ]
        for f in forms where body.starts(with: Array(f.prefix.utf8)) {
            return (f.kind, Array(body.dropFirst(f.prefix.utf8.count)), f.hashesNUL)
        }
        return nil
    }
}
