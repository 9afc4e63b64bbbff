import Foundation
import Synchronization
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchTestSupport

/// `WorkloadIdentities`' rules with an injected clock and a broker that signs with a test CA:
/// issuance per entry, renewal at half the lifetime, withdrawal on a revocation or an untrusted
/// host, service through a broker outage but never past notAfter, bundle changes.
final class WorkloadIdentitiesTests: XCTestCase {
    /// A broker double: a CA that issues one-minute agent certificates from CSRs.
    final class FakeBroker: Sendable {
        struct State { var down = false; var refuse = false; var fault = false; var enrollments: [AgentEnrollRequest] = []; var bundle = "" }
        let clock: ManualClock
        let ca: CertificateAuthority
        let state = Mutex(State())

        init(clock: ManualClock) throws {
            self.clock = clock
            ca = try CertificateAuthority.create(commonName: "test CA", key: try PrivateKey.generate(), notBefore: clock.now().addingTimeInterval(-3600),
                                                 notAfter: clock.now().addingTimeInterval(86400))
            let pem = try ca.certificate.pem
            state.withLock { $0.bundle = pem }
        }

        var broker: WorkloadBroker {
            WorkloadBroker(
                enroll: { [self] req in
                    let s = state.withLock { s -> State in s.enrollments.append(req); return s }
                    if s.down { throw VouchError(.http, "connection refused") }
                    if s.refuse { throw APIFailure(status: 403, error: APIError(code: "policy_violation", message: "untrusted")) }
                    if s.fault { throw APIFailure(status: 502, error: APIError(code: "http_502", message: "a proxy's bad gateway")) }
                    let csr = try CSR(pemOrDER: Array((req.csr ?? "").utf8))
                    let now = clock.now()
                    let cert = try ca.issue(publicKey: try csr.publicKey, profile: LeafProfile(
                        uriSANs: ["spiffe://test.local/host/h1/agent/\(req.agentName)"], notBefore: now, notAfter: now.addingTimeInterval(60), usage: .agent))
                    return EnrollResponse(serial: cert.serialHex, spiffeId: "spiffe://test.local/host/h1/agent/\(req.agentName)", certificate: try cert.pem,
                                          caCertificate: try ca.certificate.pem, notBefore: now.iso8601, notAfter: now.addingTimeInterval(60).iso8601, policy: "p")
                },
                bundle: { [self] in
                    let s = state.withLock { $0 }
                    if s.down { throw VouchError(.http, "connection refused") }
                    return s.bundle
                },
                jwtSVID: { _, _ in throw VouchError(.http, "not in this test") },
                jwks: { [] })
        }
    }

    let entries = WorkloadEntries(entries: [WorkloadEntry(agent: "a", selectors: [WorkloadSelector(kind: .uid, value: "0")]),
                                            WorkloadEntry(agent: "b", selectors: [WorkloadSelector(kind: .uid, value: "1")])])

    func testIssuedRenewedAtHalfLifeAndServedThroughAnOutageButNeverPastExpiry() throws {
        let clock = ManualClock()
        let fake = try FakeBroker(clock: clock)
        let ids = WorkloadIdentities(entries: entries, broker: fake.broker, now: { clock.now() })
        ids.maintain()
        let first = ids.snapshot(["a", "b"])
        XCTAssertEqual(first.svids.map(\.agent), ["a", "b"])
        XCTAssertEqual(first.bundle, try fake.ca.certificate.der, "the bundle is the broker's, as DER")
        XCTAssertTrue(try first.svids[0].key.publicKey.isEqual(to: try Certificate(pem: first.svids[0].certificatePEM).publicKey))
        // Before half the lifetime nothing changes; after it, each is renewed with a proof by its current key.
        clock.advance(by: 29)
        ids.maintain()
        XCTAssertEqual(ids.snapshot(["a"]).svids.map(\.serial), [first.svids[0].serial])
        clock.advance(by: 2)
        ids.maintain()
        let renewed = ids.snapshot(["a", "b"])
        XCTAssertNotEqual(renewed.svids[0].serial, first.svids[0].serial)
        XCTAssertGreaterThan(renewed.generation, first.generation)
        XCTAssertEqual(fake.state.withLock { $0.enrollments.last?.renewal?.certificate }, first.svids[1].certificatePEM)
        // The broker goes away: the SVIDs are served until their notAfter, then dropped.
        fake.state.withLock { $0.down = true }
        clock.advance(by: 31)   // past the renewal point of the renewed ones: renewal fails, they stay
        ids.maintain()
        XCTAssertEqual(ids.snapshot(["a", "b"]).svids.map(\.serial), renewed.svids.map(\.serial))
        clock.advance(by: 30)   // past notAfter
        XCTAssertTrue(ids.snapshot(["a", "b"]).svids.isEmpty, "never served past notAfter, even before the loop drops them")
        ids.maintain()
        XCTAssertTrue(ids.snapshot(["a", "b"]).svids.isEmpty)
    }

    func testARevocationOrAnUntrustedHostWithdrawsAndARefusedRenewalToo() throws {
        let clock = ManualClock()
        let fake = try FakeBroker(clock: clock)
        let ids = WorkloadIdentities(entries: entries, broker: fake.broker, now: { clock.now() })
        ids.maintain()
        let held = ids.snapshot(["a", "b"])
        // A revocation of a's certificate: a is withdrawn and not enrolled again.
        ids.revoked(serial: held.svids[0].serial.uppercased())
        XCTAssertEqual(ids.snapshot(["a", "b"]).svids.map(\.agent), ["b"])
        XCTAssertNotNil(ids.refusal("a"))
        clock.advance(by: 5)
        ids.maintain()
        XCTAssertEqual(ids.snapshot(["a"]).svids.count, 0, "a revoked identity is not issued again")
        // Another serial (not held) changes nothing.
        let generation = ids.currentGeneration
        ids.revoked(serial: "01")
        XCTAssertEqual(ids.currentGeneration, generation)
        // An untrusted host: everything goes, nothing is issued until it is trusted again.
        ids.hostUntrusted("test")
        XCTAssertTrue(ids.snapshot(["a", "b"]).svids.isEmpty)
        let before = fake.state.withLock { $0.enrollments.count }
        clock.advance(by: 5)
        ids.maintain()
        XCTAssertEqual(fake.state.withLock { $0.enrollments.count }, before, "no enrollment while untrusted")
        ids.hostTrustedAgain()
        ids.maintain()
        XCTAssertEqual(ids.snapshot(["a", "b"]).svids.map(\.agent), ["b"], "b comes back with a fresh enrollment; a stays withdrawn")
        // A renewal the broker refuses withdraws the SVID at once.
        fake.state.withLock { $0.refuse = true }
        clock.advance(by: 31)
        ids.maintain()
        XCTAssertTrue(ids.snapshot(["b"]).svids.isEmpty)
    }

    /// An untrusted verdict with `action: revoke`: the broker revokes (privilegeWithdrawn) and then
    /// says the host is untrusted; when it is trusted again the identities come back, freshly enrolled.
    /// The watcher reads the events as the broker writes them.
    func testAnUntrustedVerdictDropsAndATrustedOneBringsBackThroughTheEvents() throws {
        let clock = ManualClock()
        let fake = try FakeBroker(clock: clock)
        let ids = WorkloadIdentities(entries: entries, broker: fake.broker, now: { clock.now() })
        ids.maintain()
        let held = ids.snapshot(["a", "b"]).svids
        let watcher = BrokerEventWatcher(hostID: "h1", identities: ids, open: { _, _ in throw VouchError(.http, "unused") })
        func event(_ id: Int, _ type: String, _ data: [String: String]) {
            let json = String(decoding: try! JSONSerialization.data(withJSONObject: ["id": id, "type": type, "data": data]), as: UTF8.self)
            watcher.handle("id: \(id)\nevent: \(type)\ndata: \(json)")
        }
        // Another host's events change nothing.
        event(1, "certificate.revoked", ["serial": held[0].serial, "hostId": "h2", "reason": "keyCompromise"])
        event(2, "host.untrusted", ["hostId": "h2"])
        XCTAssertEqual(ids.snapshot(["a", "b"]).svids.count, 2)
        for (i, svid) in held.enumerated() { event(3 + i, "certificate.revoked", ["serial": svid.serial, "hostId": "h1", "reason": "privilegeWithdrawn"]) }
        event(5, "host.untrusted", ["hostId": "h1"])
        XCTAssertTrue(ids.snapshot(["a", "b"]).svids.isEmpty)
        clock.advance(by: 5)
        ids.maintain()
        XCTAssertTrue(ids.snapshot(["a", "b"]).svids.isEmpty, "nothing while untrusted")
        event(6, "host.trusted", ["hostId": "h1"])
        ids.maintain()
        let back = ids.snapshot(["a", "b"]).svids
        XCTAssertEqual(back.map(\.agent), ["a", "b"])
        XCTAssertTrue(Set(back.map(\.serial)).isDisjoint(with: held.map(\.serial)), "fresh enrollments, not the revoked certificates")
        // A blocked host: everything goes; unblocked: back.
        event(7, "host.blocked", ["hostId": "h1"])
        XCTAssertTrue(ids.snapshot(["a", "b"]).svids.isEmpty)
        event(8, "host.unblocked", ["hostId": "h1"])
        ids.maintain()
        XCTAssertEqual(ids.snapshot(["a", "b"]).svids.count, 2)
        // An operator's revocation withdraws until restart.
        event(9, "certificate.revoked", ["serial": ids.snapshot(["a"]).svids[0].serial, "hostId": "h1", "reason": "keyCompromise"])
        event(10, "host.trusted", ["hostId": "h1"])
        ids.maintain()
        XCTAssertEqual(ids.snapshot(["a", "b"]).svids.map(\.agent), ["b"])
    }

    /// A broker fault (a 5xx, here a proxy's 502) during renewal keeps the SVID; only a refusal drops it.
    func testAFaultDuringRenewalKeepsTheSVID() throws {
        let clock = ManualClock()
        let fake = try FakeBroker(clock: clock)
        let ids = WorkloadIdentities(entries: entries, broker: fake.broker, now: { clock.now() })
        ids.maintain()
        let held = ids.snapshot(["a"]).svids.map(\.serial)
        fake.state.withLock { $0.fault = true }
        clock.advance(by: 31)
        ids.maintain()
        XCTAssertEqual(ids.snapshot(["a"]).svids.map(\.serial), held)
    }

    func testABundleChangeMovesTheGenerationAndWakesWaiters() throws {
        let clock = ManualClock()
        let fake = try FakeBroker(clock: clock)
        let ids = WorkloadIdentities(entries: entries, broker: fake.broker, now: { clock.now() })
        ids.maintain()
        let seen = ids.currentGeneration
        // The next CA appears in the trust bundle (a rotation is staged): fetched within a minute.
        let next = try CertificateAuthority.create(commonName: "next CA", key: try PrivateKey.generate(), notBefore: clock.now(), notAfter: clock.now().addingTimeInterval(86400))
        let both = try fake.ca.certificate.pem + next.certificate.pem
        fake.state.withLock { $0.bundle = both }
        clock.advance(by: 61)
        ids.maintain()
        XCTAssertTrue(ids.waitForChange(after: seen, timeout: 0))
        XCTAssertEqual(ids.snapshot([]).bundle, try fake.ca.certificate.der + next.certificate.der)
        // A waiter whose own condition holds is released by a nudge, without a change.
        let released = Mutex(false)
        let done = DispatchSemaphore(value: 0)
        Thread {
            let g = ids.currentGeneration
            ids.waitForChange(after: g, timeout: 30) { released.withLock { $0 } }
            done.signal()
        }.start()
        released.withLock { $0 = true }
        ids.nudge()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
    }
}
