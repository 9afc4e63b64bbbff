import Foundation
import Synchronization

/// Counters the broker exposes in the Prometheus text format at `GET /metrics`.
public final class BrokerMetrics: Sendable {
    private struct State {
        var enrollments: [String: Int] = [:]      // result -> count ("issued" or a refusal code)
        var revocations = 0
        var policyReloads: [String: Int] = [:]    // "ok" | "refused"
        var registrations: [String: Int] = [:]    // "registered" | refusal code
    }
    private let state = Mutex(State())

    public init() {}

    func enrollment(_ result: String) { state.withLock { $0.enrollments[result, default: 0] += 1 } }
    func registration(_ result: String) { state.withLock { $0.registrations[result, default: 0] += 1 } }
    func revoked(_ n: Int) { state.withLock { $0.revocations += n } }
    func policyReload(ok: Bool) { state.withLock { $0.policyReloads[ok ? "ok" : "refused", default: 0] += 1 } }

    struct Gauges {
        var webhookOutboxDepth: [String: Int]
        var hostsByState: [String: Int]
        var policiesLoaded: Int
        var policyReloadFailing: Bool
        var crlNumber: UInt64
        var crlAgeSeconds: Double
        var certificatesByState: [String: Int]
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
        family("vouch_revocations_total", "counter", "Certificates revoked.", [("", Double(s.revocations))])
        family("vouch_policy_reloads_total", "counter", "Policy reloads by result; a refused reload keeps the running policies.", labelled("result", s.policyReloads))
        family("vouch_policy_reload_failing", "gauge", "1 while the last policy reload was refused.", [("", g.policyReloadFailing ? 1 : 0)])
        family("vouch_policies_loaded", "gauge", "Policies in force.", [("", Double(g.policiesLoaded))])
        family("vouch_hosts", "gauge", "Registered hosts by AK state.", labelled("ak_state", g.hostsByState))
        family("vouch_certificates", "gauge", "Issued certificates by state.", labelled("state", g.certificatesByState))
        family("vouch_crl_number", "gauge", "Number of the current CRL.", [("", Double(g.crlNumber))])
        family("vouch_webhook_outbox_depth", "gauge", "Events not yet delivered, per webhook subscriber.", labelled("subscriber", g.webhookOutboxDepth))
        family("vouch_crl_age_seconds", "gauge", "Seconds since the current CRL's thisUpdate.", [("", g.crlAgeSeconds.rounded())])
        return out
    }
}
