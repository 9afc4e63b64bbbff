import Foundation
import Synchronization
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchTestSupport

/// The load and the killer of ReplicaChaosTests, each on its own seeded generator: agents enroll
/// on random simulated hosts through random replicas (a challenge from one replica may be
/// answered at another), operators revoke random acknowledged certificates through random
/// replicas (each acknowledgement goes to the `RevocationWatch` with the time `POST /v1/revoke`
/// returned), and the calling thread SIGKILLs a replica every 15-25 s (the log sequencer first,
/// then random ones) and restarts it 2-5 s later, so at most one replica is down at a time.
final class ChaosLoad: Sendable {
    struct Kill: Sendable {
        let replica: Int
        let at: Date
        /// Whether the replica held the log sequencer's lease.
        let sequencer: Bool
    }

    /// What the load got: certificates acknowledged (serial → PEM), requests that failed (by error
    /// code: a kill interrupts some), the kills, and anything that must not happen.
    struct Outcome: Sendable {
        var issued: [String: String] = [:]
        /// Acknowledged certificates not yet picked for revocation, with when they expire.
        var revocable: [(serial: String, notAfter: Date)] = []
        var enrollFailures = 0
        var revokeFailures = 0
        var failureCodes: [String: Int] = [:]
        var kills: [Kill] = []
        var problems: [String] = []
    }

    let replicas: ReplicaSet
    let fleet: SimulatedFleet
    let watch: RevocationWatch
    let seed: UInt64
    private let state = Mutex(Outcome())
    private let running = Mutex(true)

    init(replicas: ReplicaSet, fleet: SimulatedFleet, watch: RevocationWatch, seed: UInt64) {
        self.replicas = replicas; self.fleet = fleet; self.watch = watch; self.seed = seed
    }

    var outcome: Outcome { state.withLock { $0 } }
    private var isRunning: Bool { running.withLock { $0 } }

    /// Runs the load for `seconds` with the killer on this thread; returns once every replica is
    /// up again and the load threads ended.
    func run(seconds: TimeInterval) {
        let group = DispatchGroup()
        for (name, body) in [("chaos-enroll", enrollLoop), ("chaos-revoke", revokeLoop)] as [(String, @Sendable () -> Void)] {
            group.enter()
            let thread = Thread {
                body()
                group.leave()
            }
            thread.name = name
            thread.start()
        }
        killLoop(until: Date().addingTimeInterval(seconds))
        running.withLock { $0 = false }
        group.wait()
    }

    /// A request that failed: one a kill cut (no answer) is counted; one a replica refused (an
    /// answer with an error) must not happen and is a problem.
    private func failed(_ error: Error, enroll: Bool) {
        let what = enroll ? "enroll" : "revoke"
        let code = (error as? APIFailure)?.error.code ?? (error as? VouchError)?.code.rawValue ?? "other"
        state.withLock { s in
            if enroll { s.enrollFailures += 1 } else { s.revokeFailures += 1 }
            s.failureCodes["\(what) \(code)", default: 0] += 1
            if let refusal = error as? APIFailure { s.problems.append("\(what) refused at \(Date()): \(refusal) \(refusal.error.context ?? [:])") }
        }
    }

    private func enrollLoop() {
        var rng = SplitMix64(seed: seed &+ 1)
        guard let csrs = try? (0..<8).map({ i in try CSR.create(key: try PrivateKey.generate(), commonName: "chaos-\(i)").pem }) else {
            state.withLock { $0.problems.append("no CSRs") }
            return
        }
        var n = 0
        while isRunning {
            n += 1
            let host = Int(rng.next() % UInt64(fleet.hosts.count))
            do {
                let r = try fleet.enroll(host, agentName: "chaos-\(n)", csrPEM: csrs[n % csrs.count])
                let notAfter = try Certificate(pem: r.certificate).notAfter
                state.withLock { s in
                    if s.issued[r.serial] != nil { s.problems.append("serial \(r.serial) acknowledged twice") }
                    s.issued[r.serial] = r.certificate
                    s.revocable.append((r.serial, notAfter))
                }
            } catch {
                failed(error, enroll: true)
            }
            usleep(UInt32(100_000 + rng.next() % 300_000))
        }
    }

    private func revokeLoop() {
        var rng = SplitMix64(seed: seed &+ 2)
        while isRunning {
            usleep(UInt32(200_000 + rng.next() % 1_800_000))
            // Certificates live only an interval plus the grace (40 s here), and a CRL lists only
            // certificates not yet expired: revoked are those with at least 5 s left.
            let pick: (serial: String, pem: String)? = state.withLock { s in
                let soon = Date().addingTimeInterval(5)
                s.revocable.removeAll { $0.notAfter < soon }
                guard !s.revocable.isEmpty else { return nil }
                let serial = s.revocable.remove(at: Int(rng.next() % UInt64(s.revocable.count))).serial
                return (serial, s.issued[serial] ?? "")
            }
            let live = replicas.live
            guard let pick, !live.isEmpty else { continue }
            let i = live[Int(rng.next() % UInt64(live.count))]
            do {
                // Every live replica answers OCSP "good" first, and keeps that answer in its cache:
                // the revocation must replace it there too, not only in the store.
                let before = try watch.ack(serial: pick.serial, certificatePEM: pick.pem, at: Date(), via: i, crlNumber: 0)
                for j in live {
                    if case .revoked = watch.ocsp(j, before) { state.withLock { $0.problems.append("replica \(j) answered revoked for \(pick.serial) before its revocation") } }
                }
                let r = try replicas.clients[i].admin.call("POST", "/v1/revoke", body: RevokeRequest(serial: pick.serial, reason: "superseded"), as: RevokeResponse.self)
                let at = Date()
                guard r.revoked == [pick.serial] else {
                    state.withLock { $0.problems.append("revoking \(pick.serial) at replica \(i) answered \(r.revoked)") }
                    continue
                }
                watch.add(try watch.ack(serial: pick.serial, certificatePEM: pick.pem, at: at, via: i, crlNumber: r.crlNumber))
            } catch {
                failed(error, enroll: false)
            }
        }
    }

    /// Until `end`: wait 15-25 s, SIGKILL a random replica, wait 2-5 s, start it again. No kill
    /// whose restart would fall after `end`. A replica found not running that was not killed
    /// here died by itself: a problem.
    private func killLoop(until end: Date) {
        var rng = SplitMix64(seed: seed &+ 3)
        while true {
            let at = Date().addingTimeInterval(15 + Double(rng.next() % 10_001) / 1000)
            let down = 2 + Double(rng.next() % 3_001) / 1000
            guard at.addingTimeInterval(down) < end else { break }
            Thread.sleep(until: at)
            for i in 0..<replicas.count where !replicas.isUp(i) {
                state.withLock { $0.problems.append("replica \(i) stopped by itself:\n\(replicas.log(i).suffix(3000))") }
            }
            // The first kill takes the log sequencer (so every run hands its lease over), the
            // others a random replica.
            let sequencer = replicas.sequencer()
            let random = Int(rng.next() % UInt64(replicas.count))
            let i = state.withLock { $0.kills.isEmpty } ? sequencer ?? random : random
            state.withLock { $0.kills.append(Kill(replica: i, at: Date(), sequencer: i == sequencer)) }
            replicas.crash(i)
            Thread.sleep(forTimeInterval: down)
            var attempt = 0
            while true {
                attempt += 1
                do {
                    try replicas.restart(i)
                    break
                } catch {
                    state.withLock { $0.problems.append("replica \(i) did not start again (attempt \(attempt)): \(error)") }
                    if attempt == 3 { break }
                }
            }
        }
        Thread.sleep(until: end)
        for i in 0..<replicas.count where !replicas.isUp(i) {
            state.withLock { $0.problems.append("replica \(i) is not running at the end:\n\(replicas.log(i).suffix(3000))") }
        }
    }
}
