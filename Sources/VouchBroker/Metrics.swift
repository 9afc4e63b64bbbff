import Foundation
import Synchronization

/// Counters the broker exposes in the Prometheus text format at `GET /metrics`.
public final class BrokerMetrics: Sendable {
    private struct State {
        var enrollments: [String: Int] = [:]      // result -> count ("issued" or a refusal code)
        var revocations = 0
        var policyReloads: [String: Int] = [:]    // "ok" | "refused"
        var registrations: [String: Int] = [:]    // "registered" | refusal code
        var attestations: [String: Int] = [:]     // re-attestation outcome: "trusted", a refusal code, or a fault code
        var verification = Histogram()
        var revocation = Histogram()
    }
    struct Histogram {
        var buckets = [Int](repeating: 0, count: BrokerMetrics.latencyBounds.count)
        var count = 0
        var sum = 0.0
        mutating func observe(_ seconds: Double) {
            if let i = BrokerMetrics.latencyBounds.firstIndex(where: { seconds <= $0 }) { buckets[i] += 1 }
            count += 1
            sum += seconds
        }
    }
    /// Upper bounds (seconds) of the latency histograms.
    static let latencyBounds: [Double] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]
    private let state = Mutex(State())

    public init() {}

    func enrollment(_ result: String) { state.withLock { $0.enrollments[result, default: 0] += 1 } }
    func registration(_ result: String) { state.withLock { $0.registrations[result, default: 0] += 1 } }
    func revoked(_ n: Int) { state.withLock { $0.revocations += n } }
    func attestation(_ result: String) { state.withLock { $0.attestations[result, default: 0] += 1 } }
    /// Records how long verifying one piece of evidence (quote, logs, policy) took.
    func verification(seconds: Double) { state.withLock { $0.verification.observe(seconds) } }
    /// Records how long a failed verdict took to become visible: revocations and CRL committed,
    /// event appended and streams woken.
    func revocation(seconds: Double) { state.withLock { $0.revocation.observe(seconds) } }
    func policyReload(ok: Bool) { state.withLock { $0.policyReloads[ok ? "ok" : "refused", default: 0] += 1 } }

    struct Gauges {
        var webhookOutboxDepth: [String: Int]
        var hostsByState: [String: Int]
        var policiesLoaded: Int
        var policyReloadFailing: Bool
        var crlNumber: UInt64
        var crlAgeSeconds: Double
        var certificatesByState: [String: Int]
        var hostsByTrust: [String: Int]
    }

    func render(_ g: Gauges) -> String {
        let s = state.withLock { $0 }
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(String, Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, v) in samples { out += "\(name)\(labels) \(v == v.rounded() ? String(Int64(v)) : String(v))\n" }
        }
        func labelled(_ key: String, _ d: [String: Int]) -> [(String, Double)] {
            d.sorted { $0.key < $1.key }.map { ("{\(key)=\"\($0.key)\"}", Double($0.value)) }
        }
        family("vouch_enrollments_total", "counter", "Enrollment decisions by result (issued, or the refusal code).", labelled("result", s.enrollments))
        family("vouch_registrations_total", "counter", "Host registrations by result.", labelled("result", s.registrations))
        family("vouch_attestations_total", "counter", "Re-attestation outcomes: trusted, the refusal code of a failed verdict, or the fault code when no evidence came.",
               labelled("result", s.attestations))
        func histogram(_ name: String, _ help: String, _ h: Histogram) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
            var cumulative = 0
            for (i, bound) in Self.latencyBounds.enumerated() {
                cumulative += h.buckets[i]
                out += "\(name)_bucket{le=\"\(bound)\"} \(cumulative)\n"
            }
            out += "\(name)_bucket{le=\"+Inf\"} \(h.count)\n\(name)_sum \(h.sum)\n\(name)_count \(h.count)\n"
        }
        histogram("vouch_verification_seconds", "Time to verify one piece of re-attestation evidence (quote signature, logs, policy).", s.verification)
        histogram("vouch_revocation_seconds", "From a failed verdict to its revocations, CRL and event committed.", s.revocation)
        family("vouch_hosts_by_trust", "gauge", "Registered hosts by re-attestation state.", labelled("state", g.hostsByTrust))
        family("vouch_revocations_total", "counter", "Certificates revoked.", [("", Double(s.revocations))])
        family("vouch_policy_reloads_total", "counter", "Policy reloads by result; a refused reload keeps the running policies.", labelled("result", s.policyReloads))
        family("vouch_policy_reload_failing", "gauge", "1 while the last policy reload was refused.", [("", g.policyReloadFailing ? 1 : 0)])
        family("vouch_policies_loaded", "gauge", "Policies in force.", [("", Double(g.policiesLoaded))])
        family("vouch_hosts", "gauge", "Registered hosts by AK state.", labelled("ak_state", g.hostsByState))
        family("vouch_certificates", "gauge", "Issued certificates by state.", labelled("state", g.certificatesByState))
        family("vouch_crl_number", "gauge", "Number of the current CRL.", [("", Double(g.crlNumber))])
        family("vouch_webhook_outbox_depth", "gauge", "Events not yet delivered, per webhook subscriber (its position in --webhook, from 0).", labelled("subscriber", g.webhookOutboxDepth))
        family("vouch_crl_age_seconds", "gauge", "Seconds since the current CRL's thisUpdate.", [("", g.crlAgeSeconds.rounded())])
        return out
    }
}
