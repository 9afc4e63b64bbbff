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
        }
        try Bench.emit(results, to: args["out"])
        return 0
    }
}
