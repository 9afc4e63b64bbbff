import Synchronization
import VouchCore
import VouchTPMWire

/// What the broker has already verified of each host's firmware event log, so that an appraisal
/// does only new work: a TPM's log only grows between reboots (the kernel appends; the firmware's
/// part never changes), and every re-attestation round sends the whole of it again.
///
/// An entry is a memo of one successful `TCGEventLog.verify` on exactly the bytes it describes:
/// their length, their SHA-256, the replay state after their last event (`ReplayState`), the
/// checked events of the PCRs that verification kept (each event's data already checked against
/// its digests, `VerifiedEvent.Content`), and, for the quote match it was verified under (which
/// PCRs kept, in which banks), the result's events and its boot claims as a fold (`ClaimsFold`)
/// that the new events continue. It is stored only after the verification succeeded.
/// A later log of the same host is appraised from the entry only when it is at least as long
/// and the SHA-256 of its first `length` bytes is the entry's: then only the bytes after that
/// are parsed (in the same format, numbered on), their events' data checked and the replay
/// continued from the entry's state, and the final replay must still equal the newly quoted
/// PCRs (the quote itself is never cached: its caller verifies it every time). Anything else —
/// a shorter log, another prefix, a tail that does not parse, a tail that brings the first
/// StartupLocality, a quote that keeps a PCR whose earlier events the entry did not check, any
/// refusal — takes the
/// full path (`TCGEventLog(bytes:)` and `verify`), whose answer is then the answer: a refusal is
/// always the full path's, and the cached path returns exactly what the full path would (the
/// parse, the replay and each event's data check depend on the bytes alone, and the quote is
/// matched again on the final state).
///
/// Keyed by host id, least recently used first out: bounded by `capacity` hosts and by
/// `maxBytes` of retained events (an estimate); `remove(hostID:)` when a host is deleted or
/// registers again. Thread safe: one `Mutex` over the table, held only to look up and to store;
/// the verification runs outside it. Two appraisals of one host at once each verify and the later
/// store wins — both entries are true memos of what they describe.
public final class VerifiedLogCache: Sendable {
    /// How an appraisal went.
    public enum Path: Sendable, Equatable {
        /// Parsed and replayed from the start (no entry, or one that did not apply).
        case full
        /// The same bytes as the entry: a digest comparison, the quote matched on the cached state.
        case unchanged
        /// The entry's bytes and `events` more.
        case appended(events: Int)
    }

    /// What `verify` answers: the full path's verdict, the verified log's claims (equal to
    /// `VerifiedEventLog.claims` of the verdict's log; nil when refused), and the path taken.
    public struct Outcome: Sendable {
        public let verdict: EventLogVerdict
        public let claims: BootClaims?
        public let path: Path
    }

    /// One host's verified log; a class so that a lookup under the lock copies one reference.
    final class Entry: Sendable {
        let length: Int
        let sha256: [UInt8]
        let format: TCGEventLog.Format
        let declaredAlgorithms: [(id: UInt16, size: Int)]
        let sizes: [UInt16: Int]
        /// The banks the log can be replayed in (`TCGEventLog.banks`).
        let banks: [HashAlg]
        /// How many events the log has (the next one's sequence number).
        let eventCount: Int
        let replay: ReplayState
        /// The PCRs whose events were checked and are kept in `events`.
        let checkedPCRs: Set<Int>
        /// The PCRs other events extend, which were not checked: a quote that makes the log speak
        /// for one of them takes the full path. (A PCR no event extends has nothing to check.)
        let uncheckedPCRs: Set<Int>
        /// The checked events of `checkedPCRs` in log order, with every digest they carry (a quote of
        /// fewer PCRs than an earlier one leaves the others' checked events here).
        let events: [VerifiedEvent]
        /// The quote match the entry was verified under, the result's events under it (digests of
        /// vouched banks only) and the claims fold over them.
        let match: TCGEventLog.QuoteMatch
        let verified: [VerifiedEvent]
        let fold: ClaimsFold
        /// An estimate of the bytes this entry retains.
        let cost: Int

        init(length: Int, sha256: [UInt8], format: TCGEventLog.Format, declaredAlgorithms: [(id: UInt16, size: Int)], sizes: [UInt16: Int],
             banks: [HashAlg], eventCount: Int, replay: ReplayState, checkedPCRs: Set<Int>, uncheckedPCRs: Set<Int>, events: [VerifiedEvent],
             match: TCGEventLog.QuoteMatch, verified: [VerifiedEvent], fold: ClaimsFold, cost: Int) {
            (self.length, self.sha256, self.format, self.declaredAlgorithms, self.sizes, self.banks) = (length, sha256, format, declaredAlgorithms, sizes, banks)
            (self.eventCount, self.replay, self.checkedPCRs, self.uncheckedPCRs, self.events) = (eventCount, replay, checkedPCRs, uncheckedPCRs, events)
            (self.match, self.verified, self.fold, self.cost) = (match, verified, fold, cost)
        }
    }

    public let capacity: Int
    public let maxBytes: Int
    private let table: Mutex<LRUTable<Entry>>

    /// At most `capacity` hosts (the fleet this broker serves) and about `maxBytes` of events.
    public init(capacity: Int, maxBytes: Int = 256 << 20) {
        self.capacity = max(1, capacity)
        self.maxBytes = max(0, maxBytes)
        self.table = Mutex(LRUTable())
    }

    /// Hosts with an entry.
    public var count: Int { table.withLock { $0.count } }

    /// Forgets the host's entry (deleted, or registered again).
    public func remove(hostID: String) { table.withLock { _ = $0.remove(hostID) } }

    public func removeAll() { table.withLock { $0.removeAll() } }

    /// `TCGEventLog(bytes:)`, `verify(quotedPCRs:excluding:using:)` and the verified log's claims,
    /// through the host's entry when it applies (see the type's documentation); a verified result
    /// becomes the host's entry. Throws what `TCGEventLog(bytes:)` throws for a log that does not parse.
    public func verify(hostID: String, log bytes: [UInt8], quotedPCRs quoted: [HashAlg: [Int: [UInt8]]], excluding: Set<Int> = [],
                       using digester: Digester) throws -> Outcome {
        if let entry = table.withLock({ $0.get(hostID) }), bytes.count >= entry.length, bytes.count <= TCGEventLog.maxBytes,
           digester.digest(.sha256, bytes.count == entry.length ? bytes : Array(bytes[..<entry.length])) == entry.sha256,
           let (outcome, next) = Self.extend(entry, with: bytes, quoted: quoted, excluding: excluding, digester: digester) {
            if let next { store(next, for: hostID) }
            return outcome
        }
        let log = try TCGEventLog(bytes: bytes)
        let state = log.replayState(using: digester)
        let replayed = state.values
        let verdict = log.verify(replayed: replayed, quotedPCRs: quoted, excluding: excluding, using: digester)
        guard case let .verified(v) = verdict else { return Outcome(verdict: verdict, claims: nil, path: .full) }
        var fold = ClaimsFold(pcrs: v.pcrs)
        for e in v.events { fold.add(e) }
        let outcome = Outcome(verdict: verdict, claims: fold.claims, path: .full)
        guard case let .success(match) = TCGEventLog.match(replayed: replayed, quoted: quoted, excluding: excluding, banks: log.banks) else { return outcome }
        // Every event of the kept PCRs again, with all its digests: `v` shows only the vouched banks'.
        var events: [VerifiedEvent] = []
        events.reserveCapacity(v.events.count)
        var checked = v.events.makeIterator()
        for e in log.events where e.type != EventType.noAction && match.kept.contains(e.pcr) {
            guard let c = checked.next(), c.sequence == e.sequence else { return outcome }
            events.append(VerifiedEvent(sequence: e.sequence, pcr: e.pcr, type: e.type, digests: e.digests, content: c.content))
        }
        let extended = Set(log.events.lazy.filter { $0.type != EventType.noAction }.map(\.pcr))
        store(Entry(bytes, sha256: digester.digest(.sha256, bytes), format: log.format, declared: log.declaredAlgorithms, eventCount: log.events.count,
                    replay: state, checkedPCRs: match.kept, uncheckedPCRs: extended.subtracting(match.kept), events: events,
                    match: match, verified: v.events, fold: fold), for: hostID)
        return outcome
    }

    /// The entry's verification carried on over the bytes after it, or nil when the full path must
    /// answer instead. Returns the outcome and the host's new entry, when it changed.
    static func extend(_ entry: Entry, with bytes: [UInt8], quoted: [HashAlg: [Int: [UInt8]]], excluding: Set<Int>,
                       digester: Digester) -> (Outcome, Entry?)? {
        var tail: [TCGEventLog.Event] = []
        if bytes.count > entry.length {
            // Parsed as inside the whole log: same format and sizes, numbered on, within maxEvents in all.
            var r = ByteReader(bytes)
            guard (try? r.bytes(entry.length, "prefix")) != nil else { return nil }
            do { try TCGEventLog.parseEvents(&r, into: &tail, base: entry.eventCount, format: entry.format, sizes: entry.sizes) } catch { return nil }
        }
        // The first StartupLocality sets PCR 0's starting value: one in the tail, with none before,
        // would have changed the replay of PCR 0 from the start.
        if entry.replay.locality == nil, tail.contains(where: TCGEventLog.isStartupLocality) { return nil }
        var replay = entry.replay
        if !tail.isEmpty { replay.extend(with: tail, using: digester) }
        // Kept PCRs the entry did not check have no events before the tail (`uncheckedPCRs`).
        guard case let .success(match) = TCGEventLog.match(replayed: replay.values, quoted: quoted, excluding: excluding, banks: entry.banks),
              match.kept.isDisjoint(with: entry.uncheckedPCRs) else { return nil }
        // The entry goes on holding every PCR whose events are all checked: those it held that the
        // tail does not extend, and the kept ones (whose tail events are checked below).
        var tailPCRs = Set<Int>()
        for e in tail where e.type != EventType.noAction { tailPCRs.insert(e.pcr) }
        let checkedPCRs = entry.checkedPCRs.subtracting(tailPCRs).union(match.kept)
        let keepsAll = checkedPCRs.isSuperset(of: entry.checkedPCRs)
        var events = keepsAll ? entry.events : entry.events.filter { checkedPCRs.contains($0.pcr) }
        var cost: Int? = keepsAll ? entry.cost : nil
        var verified: [VerifiedEvent], fold: ClaimsFold
        if match == entry.match {
            (verified, fold) = (entry.verified, entry.fold)
        } else {
            verified = entry.events.filter { match.kept.contains($0.pcr) }.map(match.vouchedOnly)
            fold = ClaimsFold(pcrs: match.kept.sorted())
            for e in verified { fold.add(e) }
        }
        for e in tail where e.type != EventType.noAction && match.kept.contains(e.pcr) {
            guard case let .success(content) = TCGEventLog.checkedContent(e, digester) else { return nil }
            let checked = VerifiedEvent(sequence: e.sequence, pcr: e.pcr, type: e.type, digests: e.digests, content: content)
            events.append(checked)
            cost? += Entry.cost(checked)
            verified.append(match.vouchedOnly(checked))
            fold.add(verified[verified.count - 1])
        }
        let outcome = Outcome(verdict: .verified(VerifiedEventLog(format: entry.format, banks: entry.banks, pcrs: match.kept.sorted(), events: verified)),
                              claims: fold.claims, path: bytes.count == entry.length ? .unchanged : .appended(events: tail.count))
        guard bytes.count > entry.length || match != entry.match else { return (outcome, nil) }
        let extended = entry.checkedPCRs.union(entry.uncheckedPCRs).union(tailPCRs)
        let next = Entry(bytes, sha256: bytes.count == entry.length ? entry.sha256 : digester.digest(.sha256, bytes), format: entry.format,
                         declared: entry.declaredAlgorithms, eventCount: entry.eventCount + tail.count, replay: replay, checkedPCRs: checkedPCRs,
                         uncheckedPCRs: extended.subtracting(checkedPCRs), events: events, match: match, verified: verified, fold: fold,
                         cost: cost)
        return (outcome, next)
    }

    /// Keeps `entry` for the host (the most recently used), then drops the least recently used
    /// hosts while over `capacity` or `maxBytes`. An entry alone above `maxBytes` is not kept.
    private func store(_ entry: Entry, for hostID: String) {
        guard entry.cost <= maxBytes else {
            table.withLock { _ = $0.remove(hostID) }
            return
        }
        table.withLock { t in
            t.set(hostID, entry, cost: entry.cost)
            while t.count > capacity || t.cost > maxBytes { t.removeOldest() }
        }
    }
}

extension VerifiedLogCache.Entry {
    /// What an entry keeps besides its events, roughly: the replay state, the digest, the claims' own fields.
    static func baseCost(_ replay: ReplayState) -> Int { 1024 + replay.pcrs.count * 24 * 64 }

    /// What one checked event costs an entry, roughly: its digests twice (all banks, and the
    /// vouched ones), the data its content read (shared by both event lists) and its claims.
    static func cost(_ e: VerifiedEvent) -> Int {
        var cost = 160 + e.digests.values.reduce(0) { $0 + 2 * ($1.count + 48) }
        switch e.content {
        case let .variable(name, data): cost += name.utf8.count + data.count * 2 + 64   // the dbx's entries again, as claims
        case let .separator(d): cost += d.count + 32
        case let .action(t), let .grubCommand(t), let .kernelCommandLine(t): cost += 2 * t.utf8.count + 32
        case let .image(path): cost += 2 * (path?.utf8.count ?? 0) + 96
        case .digestOnly: cost += 96
        }
        return cost
    }

    convenience init(_ bytes: [UInt8], sha256: [UInt8], format: TCGEventLog.Format, declared: [(id: UInt16, size: Int)], eventCount: Int,
                     replay: ReplayState, checkedPCRs: Set<Int>, uncheckedPCRs: Set<Int>, events: [VerifiedEvent], match: TCGEventLog.QuoteMatch,
                     verified: [VerifiedEvent], fold: ClaimsFold, cost: Int? = nil) {
        self.init(length: bytes.count, sha256: sha256, format: format, declaredAlgorithms: declared, sizes: TCGEventLog.digestSizes(declared),
                  banks: TCGEventLog(format: format, declaredAlgorithms: declared, events: []).banks, eventCount: eventCount, replay: replay,
                  checkedPCRs: checkedPCRs, uncheckedPCRs: uncheckedPCRs, events: events, match: match, verified: verified, fold: fold,
                  cost: cost ?? events.reduce(Self.baseCost(replay)) { $0 + Self.cost($1) })
    }
}
