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
///
/// Each client is a thread of its own (DispatchQueue.concurrentPerform would run only as many at
/// once as there are cores: "32 clients" on two cores were two). The result says what the run
/// cost: this process's CPU over the measured window (getrusage), and with `--broker-pid
/// PID[,PID...]` the brokers' (utime + stime from /proc/PID/stat), both per enrollment — on a
/// machine where client and broker share the cores, that says which of them the rate is bound by.
enum EnrollBench {
    /// The shared state of the client threads.
    private final class Run: Sendable {
        struct Tally { var latencies: [Double] = []; var errors = 0; var firstError: String? }
        let tally = Mutex(Tally())
        let counter = Atomic<Int>(0)
    }

    static func run(_ argv: [String]) throws -> Int32 {
        let args = try Arguments(argv, options: ["broker", "ca", "hosts", "clients", "seconds", "out", "broker-pid"])
        let brokerPIDs = (args["broker-pid"] ?? "").split(separator: ",").compactMap { Int32($0) }
        let hosts = Int(args["hosts"] ?? "50") ?? 50, clients = Int(args["clients"] ?? "4") ?? 4
        let seconds = Double(args["seconds"] ?? "10") ?? 10
        let ca = try args.required("ca")
        let brokers = try args.required("broker").split(separator: ",").map { HTTPClient(.https(baseURL: String($0), caFile: ca)) }
        guard !brokers.isEmpty else { throw VouchError(.config, "--broker takes one URL or a comma-separated list") }
        let fleet = try SimulatedFleet(count: hosts, broker: brokers[0], hostnamePrefix: "bench")
        try fleet.register(baseURL: nil)
        let csrs = try (0..<32).map { i in try CSR.create(key: try PrivateKey.generate(), commonName: "bench-\(i)").pem }
        let state = Run()
        let deadline = Date().addingTimeInterval(seconds)
        let brokerTicks0 = brokerPIDs.map(cpuTicks), clientCPU0 = processCPUSeconds()
        let started = Date()
        let done = DispatchGroup()
        for k in 0..<clients {
            let broker = brokers[k % brokers.count]
            done.enter()
            let thread = Thread {
                while Date() < deadline {
                    let n = state.counter.add(1, ordering: .relaxed).newValue
                    let t0 = DispatchTime.now()
                    do {
                        _ = try fleet.enroll(n % hosts, agentName: "a\(n)", csrPEM: csrs[n % csrs.count], via: broker)
                        let ms = Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e6
                        state.tally.withLock { $0.latencies.append(ms) }
                    } catch {
                        state.tally.withLock { $0.errors += 1; if $0.firstError == nil { $0.firstError = "\(error)" } }
                    }
                }
                done.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        done.wait()
        let clientCPU = processCPUSeconds() - clientCPU0
        let brokerTicks1 = brokerPIDs.map(cpuTicks)
        let elapsed = Date().timeIntervalSince(started)
        let t = state.tally.withLock { $0 }
        let sorted = t.latencies.sorted()
        func pct(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
        let perEnrollment = Double(max(sorted.count, 1))
        var result: [String: Any] = ["enrollments": sorted.count, "errors": t.errors, "firstError": t.firstError ?? "", "seconds": elapsed,
                                     "rate": Double(sorted.count) / elapsed, "p50ms": pct(0.5), "p99ms": pct(0.99), "clients": clients, "hosts": hosts,
                                     "brokers": brokers.count, "clientCPUms": 1000 * clientCPU / perEnrollment]
        if !brokerPIDs.isEmpty, !(brokerTicks0 + brokerTicks1).contains(-1) {
            let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
            result["brokerCPUms"] = 1000 * Double(brokerTicks1.reduce(0, +) - brokerTicks0.reduce(0, +)) / hz / perEnrollment
        }
        let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
        if let out = args["out"] { try Files.writeAtomically([UInt8](data), to: out) }
        print(String(decoding: data, as: UTF8.self))
        return t.errors == 0 ? 0 : 1
    }

    /// utime + stime of process `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat, after
    /// the parenthesised command name); -1 if it cannot be read.
    static func cpuTicks(_ pid: Int32) -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return -1 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Int(fields[11]), let system = Int(fields[12]) else { return -1 }
        return user + system
    }

    /// This process's user + system CPU seconds so far.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }
}
