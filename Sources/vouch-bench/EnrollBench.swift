import Foundation
import Synchronization
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchRuntime

/// `vouch-bench enroll`: end-to-end enrollment against a running vouchd (nonce → quote → verify →
/// policy → certificate → durable store) from simulated hosts, so no TPM emulator is in the way.
/// Each enrollment is two HTTPS requests (challenge, enroll) through the same pooled HTTP
/// client an attester uses, which keeps connections alive between requests.
///
/// `--broker URL[,URL...]`: replicas of one broker on a shared database (the same CA file). The
/// hosts register with the first; client k sends both requests of every enrollment to replica
/// k mod count, so the clients are spread evenly and a challenge is redeemed where it was issued.
enum EnrollBench {
    static func run(_ argv: [String]) throws -> Int32 {
        let args = try Arguments(argv, options: ["broker", "ca", "hosts", "clients", "seconds", "out"])
        let hosts = Int(args["hosts"] ?? "50") ?? 50, clients = Int(args["clients"] ?? "4") ?? 4
        let seconds = Double(args["seconds"] ?? "10") ?? 10
        let ca = try args.required("ca")
        let brokers = try args.required("broker").split(separator: ",").map { HTTPClient(.https(baseURL: String($0), caFile: ca)) }
        guard !brokers.isEmpty else { throw VouchError(.config, "--broker takes one URL or a comma-separated list") }
        let fleet = try SimulatedFleet(count: hosts, broker: brokers[0], hostnamePrefix: "bench")
        try fleet.register(baseURL: nil)
        let csrs = try (0..<32).map { i in try CSR.create(key: try PrivateKey.generate(), commonName: "bench-\(i)").pem }
        struct Tally { var latencies: [Double] = []; var errors = 0; var firstError: String? }
        let tally = Mutex(Tally())
        let counter = Atomic<Int>(0)
        let deadline = Date().addingTimeInterval(seconds)
        let started = Date()
        DispatchQueue.concurrentPerform(iterations: clients) { k in
            let broker = brokers[k % brokers.count]
            while Date() < deadline {
                let n = counter.add(1, ordering: .relaxed).newValue
                let t0 = DispatchTime.now()
                do {
                    _ = try fleet.enroll(n % hosts, agentName: "a\(n)", csrPEM: csrs[n % csrs.count], via: broker)
                    let ms = Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e6
                    tally.withLock { $0.latencies.append(ms) }
                } catch {
                    tally.withLock { $0.errors += 1; if $0.firstError == nil { $0.firstError = "\(error)" } }
                }
            }
        }
        let elapsed = Date().timeIntervalSince(started)
        let t = tally.withLock { $0 }
        let sorted = t.latencies.sorted()
        func pct(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        let result: [String: Any] = ["enrollments": sorted.count, "errors": t.errors, "firstError": t.firstError ?? "", "seconds": elapsed,
                                     "rate": Double(sorted.count) / elapsed, "p50ms": pct(0.5), "p99ms": pct(0.99), "clients": clients, "hosts": hosts,
                                     "brokers": brokers.count]
        let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        if let out = args["out"] { try Files.writeAtomically([UInt8](data), to: out) }
        print(String(decoding: data, as: UTF8.self))
        return t.errors == 0 ? 0 : 1
    }
}
