import Foundation
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTPM
import VouchTPMWire

/// In-process benchmarks: quote verification and the full appraisal path, against quotes made
/// by a real (software) TPM, and event-log replay over real logs. Results are JSON.
public enum Bench {
    struct Result: Encodable {
        var name: String
        var unit: String
        var rate: Double
        var detail: String
        /// How many signatures one unit verifies, where a ratio against `openssl speed` needs it.
        var signatures: Int? = nil
    }

    /// Writes `results` as JSON to `out` (stdout without it) and one line per result to stderr.
    static func emit(_ results: [Result], to out: String?) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try e.encode(results)
        if let out { try json.write(to: URL(fileURLWithPath: out)) } else { print(String(decoding: json, as: UTF8.self)) }
        for r in results { FileHandle.standardError.write(Data("\(r.name): \(Int(r.rate)) \(r.unit)\n".utf8)) }
    }

    /// The options of the fixture benches (`tee`, `gpu`): `--fixtures DIR` (required), `--seconds`
    /// per measurement (default 3), `--out FILE`.
    static func fixtureOptions(_ argv: [String]) throws -> (fixtures: URL, seconds: Double, out: String?) {
        let args = try Arguments(argv, options: ["fixtures", "out", "seconds"])
        return (URL(fileURLWithPath: try args.required("fixtures")), Double(args["seconds"] ?? "3") ?? 3, args["out"])
    }

    /// Runs `body` repeatedly for about `seconds` and returns calls per second.
    public static func rate(seconds: Double, _ body: () throws -> Void) rethrows -> Double {
        var n = 0
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            for _ in 0..<16 { try body() }
            n += 16
        }
        return Double(n) / Date().timeIntervalSince(start)
    }

    public static func run(_ argv: [String]) throws -> Int32 {
        let args = try Arguments(argv, options: ["tcti", "logs", "out", "seconds"])
        let seconds = Double(args["seconds"] ?? "3") ?? 3
        var results: [Result] = []

        // Event-log replay over every real log.
        let logDir = try args.required("logs")
        let files = try FileManager.default.contentsOfDirectory(atPath: logDir).filter { $0.hasSuffix(".bin") }.sorted()
        let logs = try files.map { [UInt8](try Data(contentsOf: URL(fileURLWithPath: logDir + "/" + $0))) }
        let digester = OpenSSLDigester()
        let events = try logs.reduce(0) { $0 + (try TCGEventLog(bytes: $1)).events.count }
        let bytes = logs.reduce(0) { $0 + $1.count }
        let replays = try rate(seconds: seconds) { for l in logs { _ = try TCGEventLog(bytes: l).replay(using: digester) } }
        results.append(Result(name: "event-log replay", unit: "events/s", rate: replays * Double(events),
                              detail: "\(files.count) real logs, \(events) events, \(bytes) bytes per pass; \(String(format: "%.1f", replays * Double(bytes) / 1_048_576)) MB/s"))

        // Quotes from the TPM: one plain, and one over PCRs that replay a real firmware log.
        let tpm = try TPMDevice(tcti: try args.required("tcti"))
        defer { tpm.close() }
        let rhel = try TCGEventLog(bytes: [UInt8](try Data(contentsOf: URL(fileURLWithPath: logDir + "/rhel8-uefi.bin"))))
        for e in rhel.events where e.type != EventType.noAction { try tpm.pcrExtend(e.pcr, digests: [.sha256: e.digests[.sha256]!]) }
        let replayed = rhel.replay(using: digester)[.sha256]!
        var policy = Policy(name: "bench", version: 1, pcrBank: .sha256, pcrValues: Dictionary(uniqueKeysWithValues: replayed.filter { $0.key <= 9 }.map { ($0.key, [$0.value]) }))
        policy.eventLog.secureBoot = true
        let selection = PCRSelection(banks: [PCRBankSelection(hash: .sha256, pcrs: Array(0...9) + [14, 23])])
        let rhelBytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: logDir + "/rhel8-uefi.bin")))
        for kind in KeyTemplates.AKKind.allCases {
            let (ak, akBytes) = try tpm.createAttestationKey(kind)
            let akPublic = try TPMTPublic(tpm2bPublic: akBytes)
            let key = try AttestationKey(tpmPublic: akPublic)
            let nonce = try Crypto.randomBytes(32)
            let q = try tpm.quote(ak: ak, qualifyingData: nonce, selection: selection)
            let pcrs = try tpm.readPCRs(selection)
            tpm.flush(ak)
            let verify = try rate(seconds: seconds) {
                guard case .verified = QuoteVerifier.verify(attest: q.attest, signature: q.signature, ak: key, expectedQualifyingData: nonce, pcrs: pcrs) else {
                    throw VouchError(.internalError, "genuine quote rejected")
                }
            }
            results.append(Result(name: "quote verify \(kind.rawValue)", unit: "quotes/s", rate: verify, detail: "signature, origin, binding, PCR digest (12 PCRs)"))
            let appraise = try rate(seconds: seconds) {
                guard case let .verified(vq) = QuoteVerifier.verify(attest: q.attest, signature: q.signature, ak: key, expectedQualifyingData: nonce, pcrs: pcrs),
                      case .trusted = Appraiser.appraise(hostID: "bench", quote: vq, eventLog: rhelBytes, modelLog: nil, previousClock: nil,
                                                         policy: policy, digester: digester) else {
                    throw VouchError(.internalError, "genuine evidence rejected")
                }
            }
            results.append(Result(name: "quote verify + event-log replay + policy \(kind.rawValue)", unit: "quotes/s", rate: appraise,
                                  detail: "rhel8-uefi log (\(rhel.events.count) events) replayed against the quote, claims, 10-PCR policy with Secure Boot"))
            results += try cachedAppraisals(kind: kind.rawValue, seconds: seconds, log: rhelBytes, events: rhel, bank: .sha256,
                                            selection: Set(selection.banks[0].pcrs), policy: policy, digester: digester) { vqBody in
                guard case let .verified(vq) = QuoteVerifier.verify(attest: q.attest, signature: q.signature, ak: key, expectedQualifyingData: nonce, pcrs: pcrs) else {
                    throw VouchError(.internalError, "genuine quote rejected")
                }
                try vqBody(vq)
            }
        }
        try Bench.emit(results, to: args["out"])
        return 0
    }

    /// The full appraisal (quote verification included: `withQuote` verifies it and passes it on)
    /// through a `VerifiedLogCache`: the host's entry holding the same log (every round after the
    /// first for a host that did not reboot), and holding the log without its last event (the log
    /// grew by one: the cache's digest check, then that event parsed, replayed and checked). For
    /// the second, each batch of hosts is primed with the shorter log before the clock starts (against
    /// its own replay: priming only), so the measured calls are exactly one-event growths.
    static func cachedAppraisals(kind: String, seconds: Double, log: [UInt8], events: TCGEventLog, bank: HashAlg, selection: Set<Int>, policy: Policy,
                                 digester: Digester, withQuote: ((VerifiedQuote) throws -> Void) throws -> Void) throws -> [Result] {
        func appraise(_ vq: VerifiedQuote, host: String, cache: VerifiedLogCache) throws {
            guard case .trusted = Appraiser.appraise(hostID: host, quote: vq, eventLog: log, modelLog: nil, previousClock: nil, policy: policy,
                                                     digester: digester, eventLogs: cache) else {
                throw VouchError(.internalError, "genuine evidence rejected")
            }
        }
        let unchanged = VerifiedLogCache(capacity: 1)
        try withQuote { try appraise($0, host: "bench", cache: unchanged) }
        let unchangedRate = try rate(seconds: seconds) { try withQuote { try appraise($0, host: "bench", cache: unchanged) } }

        // Primed as the previous round would have left it: the same PCR selection, the shorter log's values.
        let shorter = Array(log[..<events.events[events.events.count - 1].offset])
        let shorterPCRs = try TCGEventLog(bytes: shorter).replay(using: digester).filter { $0.key == bank }.mapValues { $0.filter { selection.contains($0.key) } }
        let batch = 256
        let grown = VerifiedLogCache(capacity: batch)
        var measured = 0.0, calls = 0
        while measured < seconds {
            for i in 0..<batch {
                guard case .verified = try grown.verify(hostID: "h\(i)", log: shorter, quotedPCRs: shorterPCRs, excluding: [23], using: digester).verdict else {
                    throw VouchError(.internalError, "the shorter log did not verify")
                }
            }
            let start = Date()
            for i in 0..<batch { try withQuote { try appraise($0, host: "h\(i)", cache: grown) } }
            measured += Date().timeIntervalSince(start)
            calls += batch
        }
        let last = events.events[events.events.count - 1]
        return [
            Result(name: "full appraisal, log unchanged since the last round (verified-log cache) \(kind)", unit: "quotes/s", rate: unchangedRate,
                   detail: "as the row before, the host's cache entry holding the same \(log.count)-byte log: SHA-256 of it compared, the quote matched on the cached replay state, claims"),
            Result(name: "full appraisal, log grew by one event (cache + 1 event) \(kind)", unit: "quotes/s", rate: Double(calls) / measured,
                   detail: "the entry holding all but the last event (\(last.typeName), PCR \(last.pcr)): SHA-256 of the cached prefix, that event parsed, replayed and checked, SHA-256 of the whole for the new entry, claims"),
        ]
    }
}
