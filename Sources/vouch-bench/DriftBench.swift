import Foundation
import Synchronization
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchRuntime

/// `vouch-bench drift-watch`: how long a host's drift takes to show where relying parties look.
/// Reads the simulated fleet's `--drift-record` (each host's id and agent serial), then watches
/// the broker the way relying parties do — the CRL (`GET /v1/crl`, fetched again and again), OCSP
/// (`POST /v1/ocsp` for each agent certificate, from `--ocsp-threads` clients in turn) and the
/// event stream (`GET /v1/events?from=latest`, `certificate.revoked` frames) — and notes when
/// each serial first shows as revoked in each. Once every serial has shown everywhere (or
/// `--timeout` passed), it reads the record again for each host's drift instant and writes one
/// JSON row per view (p50/p90/p99/max of drift → seen, milliseconds) to `--out`. Same machine,
/// same wall clock as the fleet; a view polled (CRL, OCSP) is seen at most one poll late, which
/// the rows' details state. With `--broker-pid` and `--fleet-pid`, each row also says how busy
/// the broker, the simulated fleet and this watcher were (share of one core, /proc and getrusage
/// sampled every 50 ms) from the drift instant until every serial showed in every view: the
/// watchers poll, and on a small machine their load is part of what the latencies measure.
/// Reports, never asserts.
enum DriftBench {
    enum View: String, CaseIterable, Sendable { case crl = "CRL", ocsp = "OCSP", sse = "SSE" }

    static func run(_ argv: [String]) throws -> Int32 {
        let args = try Arguments(argv, options: ["broker", "ca", "token", "record", "out", "label", "timeout", "ocsp-threads", "broker-pid", "fleet-pid", "views"])
        let views = try (args["views"] ?? "crl,ocsp,sse").split(separator: ",").map { name in
            guard let v = View.allCases.first(where: { $0.rawValue.lowercased() == name.lowercased() }) else {
                throw VouchError(.usage, "--views: crl, ocsp or sse, comma-separated")
            }
            return v
        }
        let brokerPID = args["broker-pid"].flatMap { Int32($0) }, fleetPID = args["fleet-pid"].flatMap { Int32($0) }
        let base = try args.required("broker"), ca = try args.required("ca"), recordPath = try args.required("record")
        let token = try Files.readString(try args.required("token")).trimmingCharacters(in: .whitespacesAndNewlines)
        let timeout = try parseDuration(args["timeout"] ?? "120s", field: "--timeout")
        let ocspThreads = max(1, Int(args["ocsp-threads"] ?? "8") ?? 8)
        let label = args["label"] ?? "drift"
        @Sendable func client() -> HTTPClient { HTTPClient(.https(baseURL: base, caFile: ca)) }

        // CPU of the broker, the fleet and this process, every 50 ms from now until the views are done.
        let samples = Mutex<[CPUSample]>([])
        let sampling = Atomic<Bool>(true)
        Thread.detachNewThread {
            while sampling.load(ordering: .relaxed) {
                let sample = CPUSample(at: Date().timeIntervalSince1970, broker: brokerPID.map(EnrollBench.cpuTicks) ?? -1,
                                       fleet: fleetPID.map(EnrollBench.cpuTicks) ?? -1, watcher: EnrollBench.processCPUSeconds())
                samples.withLock { $0.append(sample) }
                usleep(50_000)
            }
        }

        // The hosts and their agents, once the fleet has enrolled them.
        var hosts: [[String: String]] = []
        let waitUntil = Date().addingTimeInterval(timeout)
        while hosts.isEmpty || hosts.contains(where: { ($0["serial"] ?? "").isEmpty }) {
            guard Date() < waitUntil else { throw VouchError(.io, "no complete drift record at \(recordPath)") }
            hosts = (try? readRecord(recordPath)) ?? []
            if hosts.isEmpty { usleep(100_000) }
        }
        let admin = client()
        let issuers = try Certificate.chain(pem: String(decoding: try admin.send("GET", "/v1/ca").body, as: UTF8.self))
        var fetched: [(serial: String, cert: Certificate, issuer: Certificate)] = []
        for h in hosts {
            let serial = h["serial"] ?? ""
            let pem = try admin.send("GET", "/v1/certificates/\(serial)?format=pem", headers: ["Authorization": "Bearer \(token)"]).body
            let cert = try Certificate(pem: String(decoding: pem, as: UTF8.self))
            guard let issuer = issuers.first(where: { $0.subject == cert.issuer }) else { throw VouchError(.config, "no issuer for agent \(serial)") }
            fetched.append((serial.lowercased(), cert, issuer))
        }
        let certificates = fetched
        let seen = Mutex<[View: [String: Date]]>([:])
        let all = Set(certificates.map(\.serial))
        @Sendable func note(_ view: View, _ serial: String) {
            let at = Date()
            seen.withLock { s in if s[view]?[serial] == nil, all.contains(serial) { s[view, default: [:]][serial] = at } }
        }
        @Sendable func done(_ view: View) -> Bool { !views.contains(view) || seen.withLock { ($0[view]?.count ?? 0) >= all.count } }
        let deadline = Date().addingTimeInterval(timeout)
        @Sendable func running(_ view: View) -> Bool { !done(view) && Date() < deadline }

        // The event stream: connected before the drift (the fleet drifts --drift-after after enrolling).
        let events = try client().open("GET", "/v1/events?from=latest", headers: ["Accept": "text/event-stream"])
        let group = DispatchGroup()
        Thread.detachNewThread {
            group.enter()
            defer { group.leave() }
            var buffer = ""
            while running(.sse), let chunk = try? events.next() {
                buffer += String(decoding: chunk, as: UTF8.self)
                while let end = buffer.range(of: "\n\n") {
                    let frame = buffer[..<end.lowerBound]
                    buffer.removeSubrange(..<end.upperBound)
                    guard frame.contains("event: certificate.revoked"), let line = frame.split(separator: "\n").first(where: { $0.hasPrefix("data: ") }),
                          let object = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any],
                          let data = object["data"] as? [String: Any], let serial = data["serial"] as? String else { continue }
                    note(.sse, serial.lowercased())
                }
            }
            events.cancel()
        }
        let crlPolls = Mutex(0)
        let crlKeys = certificates.map { ($0.cert.serialHex.lowercased(), $0.serial) }
        Thread.detachNewThread {
            group.enter()
            defer { group.leave() }
            let c = client()
            while running(.crl) {
                guard let der = try? c.send("GET", "/v1/crl").body, let crl = try? CRL(der: der) else { usleep(10_000); continue }
                crlPolls.withLock { $0 += 1 }
                // One pass over the CRL's entries, not one per certificate (200 × 200 serials
                // decoded per fetch kept a core busy, beside the broker it is meant to watch).
                let revoked = Set(crl.revokedSerials.map { $0.lowercased() })
                for (hex, serial) in crlKeys where revoked.contains(hex) { note(.crl, serial) }
                usleep(5_000)
            }
        }
        let ocspRequests = Mutex(0)
        for t in 0..<ocspThreads {
            let mine = certificates.enumerated().filter { $0.offset % ocspThreads == t }.map(\.element)
            Thread.detachNewThread {
                group.enter()
                defer { group.leave() }
                let c = client()
                var pending = mine
                while !pending.isEmpty && views.contains(.ocsp) && Date() < deadline {
                    pending = pending.filter { x in
                        guard let request = try? OCSPClient.request(certificate: x.cert, issuer: x.issuer),
                              let answer = try? c.send("POST", "/v1/ocsp", headers: ["Content-Type": "application/ocsp-request"], body: request).body,
                              case .revoked? = try? OCSPClient.verify(response: answer, certificate: x.cert, issuer: x.issuer, at: Date()) else {
                            ocspRequests.withLock { $0 += 1 }
                            return true
                        }
                        ocspRequests.withLock { $0 += 1 }
                        note(.ocsp, x.serial)
                        return false
                    }
                }
            }
        }
        usleep(200_000)   // the threads have entered the group
        _ = group.wait(timeout: .now() + timeout + 5)
        usleep(100_000)   // a CPU sample after the last view showed the last host
        sampling.store(false, ordering: .relaxed)

        // Each host's drift instant, from the record the fleet wrote after the drift.
        var driftAt: [String: Double] = [:]
        let recordUntil = Date().addingTimeInterval(30)
        while driftAt.count < all.count && Date() < recordUntil {
            for h in (try? readRecord(recordPath)) ?? [] {
                if let s = h["serial"], let at = h["driftAt"].flatMap(Double.init) { driftAt[s.lowercased()] = at }
            }
            if driftAt.count < all.count { usleep(200_000) }
        }
        let observed = seen.withLock { $0 }
        let lastSeen = observed.values.flatMap(\.values).map(\.timeIntervalSince1970).max()
        let load = CPUSample.load(samples.withLock { $0 }, from: driftAt.values.min(), to: lastSeen)
        var rows: [String] = []
        for view in views {
            let latencies = all.compactMap { s -> Double? in
                guard let at = observed[view]?[s], let d = driftAt[s] else { return nil }
                return (at.timeIntervalSince1970 - d) * 1000
            }.sorted()
            func q(_ p: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int((p * Double(latencies.count)).rounded(.up)) - 1)] }
            let how: String
            switch view {
            case .crl: how = "GET /v1/crl polled every ~5 ms (\(crlPolls.withLock { $0 }) fetches)"
            case .ocsp: how = "POST /v1/ocsp for each certificate in turn from \(ocspThreads) clients (\(ocspRequests.withLock { $0 }) requests)"
            case .sse: how = "certificate.revoked frames on one GET /v1/events stream"
            }
            var row: [String: Any] = [
                "name": "drift to revocation visible, \(label): \(view.rawValue)", "unit": "ms (p99)", "rate": q(0.99),
                "p50ms": q(0.5), "p90ms": q(0.9), "p99ms": q(0.99), "maxms": latencies.last ?? 0, "hosts": all.count, "seen": latencies.count,
                "detail": String(format: "PCR change -> %@ shows the agent revoked: p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms; %d/%d hosts seen; %@",
                                 view.rawValue, q(0.5), q(0.9), q(0.99), latencies.last ?? 0, latencies.count, all.count, how),
            ]
            if let load {
                row["detail"] = (row["detail"] as? String ?? "") + "; " + load.text
                row["cpu"] = load.json
            }
            rows.append(String(decoding: try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
        }
        let text = rows.joined(separator: "\n") + "\n"
        if let out = args["out"] { try Files.writeAtomically(Array(text.utf8), to: out, mode: 0o644) } else { print(text, terminator: "") }
        return 0
    }

    /// CPU used so far by the broker and the fleet (clock ticks; -1 unknown) and by this process
    /// (seconds), at one instant.
    struct CPUSample: Sendable {
        var at: Double, broker: Int, fleet: Int, watcher: Double

        /// Each process's share of one core from the last sample at or before `from` to the first
        /// at or after `to` (Unix seconds): a window at most 50 ms wider on each side. Nil without
        /// both instants, or when the samples do not cover them.
        static func load(_ samples: [CPUSample], from: Double?, to: Double?) -> (text: String, json: [String: Double])? {
            guard let from, let to, to > from,
                  let first = samples.last(where: { $0.at <= from }),
                  let last = samples.first(where: { $0.at >= to }), last.at > first.at else { return nil }
            let span = last.at - first.at, hz = Double(sysconf(Int32(_SC_CLK_TCK)))
            func share(_ a: Int, _ b: Int) -> Double? { a < 0 || b < 0 ? nil : 100 * Double(b - a) / hz / span }
            var json = ["windowSeconds": span, "watcherPercent": 100 * (last.watcher - first.watcher) / span]
            var parts: [String] = []
            if let b = share(first.broker, last.broker) { json["brokerPercent"] = b; parts.append(String(format: "broker %.0f %%", b)) }
            if let f = share(first.fleet, last.fleet) { json["fleetPercent"] = f; parts.append(String(format: "simulated fleet %.0f %%", f)) }
            parts.append(String(format: "these watchers %.0f %%", json["watcherPercent"] ?? 0))
            return (String(format: "CPU from the drift until the last of all views showed the last host (the same window in each view's row; %.2f s, /proc ticks of %.0f ms; as %% of one core): ",
                           span, 1000 / hz) + parts.joined(separator: ", "), json)
        }
    }

    /// The fleet's `--drift-record`: `{"hosts": [{"hostId", "serial", "driftAt"?}]}`.
    static func readRecord(_ path: String) throws -> [[String: String]] {
        guard let object = try JSONSerialization.jsonObject(with: Data(try Files.read(path))) as? [String: Any],
              let hosts = object["hosts"] as? [[String: String]] else { throw VouchError(.invalidValue, "not a drift record: \(path)") }
        return hosts
    }
}
