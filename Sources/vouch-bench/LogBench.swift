import Foundation
import Synchronization
import VouchBroker
import VouchCore
import VouchCrypto
import VouchModel
import VouchStore
import VouchTLog

/// `vouch-bench log --seconds S --out FILE`: the broker's transparency log in process, on the real
/// SQLite store in a scratch directory. (1) Decisions recorded by concurrent writers (each with its
/// verdict entry in the log outbox, in its own transaction, through group commit) while the
/// sequencer runs a round every 100 ms, signing a checkpoint whenever the tree grew: entries
/// appended and covered by a signed checkpoint per second. (2) Inclusion proofs (tlog-proof files
/// against the served checkpoint, from stored subtree hashes) generated per second. Reports only.
enum LogBench {
    struct Result: Encodable { var name: String; var unit: String; var rate: Double; var detail: String }

    static func run(_ argv: [String]) throws -> Int32 {
        let args = try Arguments(argv, options: ["seconds", "out", "writers"])
        let seconds = Double(args["seconds"] ?? "3") ?? 3, writers = Int(args["writers"] ?? "8") ?? 8
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-bench-log-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try SQLiteBrokerStore(path: dir.appendingPathComponent("vouch.db").path, logEntries: BrokerLogEntries())
        let signer = try BrokerBootstrap.logSigner(path: dir.appendingPathComponent("log.key").path, trustDomain: "bench.local")
        let log = try TransparencyLog(signer: signer, store: store, clock: SystemClock(), checkpointFile: dir.appendingPathComponent("log-checkpoint").path)
        try log.step()

        let hostID = String(repeating: "b", count: 32)
        @Sendable func record(_ store: SQLiteBrokerStore, _ w: Int, _ n: Int) {
            _ = try? store.recordAttestation(AttestationRecord(hostID: hostID, at: Date(), kind: .reattestation, trusted: n % 10 != 0,
                                                               codes: n % 10 == 0 ? ["pcr_not_allowed"] : [], message: "bench \(w)",
                                                               policyName: "bench", policyVersion: 1, policySHA256: String(repeating: "a", count: 64)))
        }
        // The same writers on a store that keeps no log: what the outbox insert costs a decision.
        let plain = try SQLiteBrokerStore(path: dir.appendingPathComponent("plain.db").path)
        let recorded = Atomic<Int>(0)
        let plainStart = Date()
        DispatchQueue.concurrentPerform(iterations: writers) { w in
            var n = 0
            while Date().timeIntervalSince(plainStart) < seconds { n += 1; record(plain, w, n) }
            recorded.add(n, ordering: .relaxed)
        }
        let plainRate = Double(recorded.load(ordering: .relaxed)) / Date().timeIntervalSince(plainStart)

        let done = Atomic<Bool>(false)
        let checkpoints = Atomic<Int>(0)
        let sequencer = Thread {
            while !done.load(ordering: .relaxed) {
                if (try? log.step()) != nil { checkpoints.add(1, ordering: .relaxed) }
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        let started = Date()
        sequencer.start()
        DispatchQueue.concurrentPerform(iterations: writers) { w in
            var n = 0
            while Date().timeIntervalSince(started) < seconds { n += 1; record(store, w, n) }
        }
        done.store(true, ordering: .relaxed)
        while sequencer.isExecuting { Thread.sleep(forTimeInterval: 0.01) }
        if try log.step() != nil { checkpoints.add(1, ordering: .relaxed) }
        let elapsed = Date().timeIntervalSince(started)
        let size = try store.logSize()
        var results = [Result(name: "log appends with checkpoints", unit: "entries/s", rate: Double(size) / elapsed,
                              detail: "\(writers) writers recording decisions (each its own durable transaction with its verdict entry, group commit), the sequencer every 100 ms: \(size) entries, \(checkpoints.load(ordering: .relaxed)) signed checkpoints in \(String(format: "%.1f", elapsed)) s; the same writers without a log: \(Int(plainRate)) decisions/s")]

        var n = 0
        var rng = SystemRandomNumberGenerator()
        let proofStart = Date()
        while Date().timeIntervalSince(proofStart) < seconds {
            for _ in 0..<64 { _ = try log.inclusion(index: UInt64.random(in: 0..<size, using: &rng)).proof.text }
            n += 64
        }
        results.append(Result(name: "log inclusion proofs", unit: "proofs/s", rate: Double(n) / Date().timeIntervalSince(proofStart),
                              detail: "random entries of a \(size)-entry log: the entry, its proof from stored subtree hashes (SQLite), the tlog-proof text with the signed checkpoint"))
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try e.encode(results)
        if let out = args["out"] { try json.write(to: URL(fileURLWithPath: out)) } else { print(String(decoding: json, as: UTF8.self)) }
        for r in results { FileHandle.standardError.write(Data("\(r.name): \(Int(r.rate)) \(r.unit)\n".utf8)) }
        return 0
    }
}
