import Foundation
import Synchronization
import VouchCore
import VouchCrypto

/// The spread of a set of measurements, for one printed line: count, p50, p90, p99 and max.
struct Distribution {
    let values: [Double]
    init(_ values: [Double]) { self.values = values.sorted() }

    func percentile(_ p: Double) -> Double {
        values.isEmpty ? 0 : values[Swift.min(values.count - 1, Swift.max(0, Int((Double(values.count) * p).rounded(.up)) - 1))]
    }
    var max: Double { values.last ?? 0 }
    var min: Double { values.first ?? 0 }

    /// "n=… p50=… p90=… p99=… max=…", each value formatted by `format` (seconds to text).
    func line(_ format: (Double) -> String) -> String {
        "n=\(values.count) p50=\(format(percentile(0.5))) p90=\(format(percentile(0.9))) p99=\(format(percentile(0.99))) max=\(format(max))"
    }
    static func ms(_ s: Double) -> String { String(format: "%.0fms", s * 1000) }
    static func seconds(_ s: Double) -> String { String(format: "%.1fs", s) }
}

/// Watches every replica's CRL and OCSP answers for the acknowledged revocations: one thread per
/// replica fetches the CRL (from its publication listener) and asks OCSP about each revocation it
/// has not shown yet, about 20 times a second, and notes when each revocation first showed in each
/// (the time the answer arrived). Every CRL fetched is kept (replica, time, number, digest) for
/// the numbering checks.
final class RevocationWatch: Sendable {
    /// An acknowledged revocation: the certificate, when `POST /v1/revoke` returned, through which
    /// replica, and the CRL number it answered.
    struct Ack: Sendable {
        let serial: String
        let certificate: Certificate
        let ocspRequest: [UInt8]
        let at: Date
        let via: Int
        let crlNumber: UInt64
    }

    /// One CRL fetched from one replica: when the request started and when the answer arrived.
    struct Fetch: Sendable {
        let replica: Int
        let started: Date
        let at: Date
        let number: UInt64
        let digest: [UInt8]
    }

    /// When a revocation first showed at a replica, in its CRL and in its OCSP answer.
    struct Seen: Sendable {
        var crl: Date?
        var ocsp: Date?
    }

    /// Whether `ack` showed at a replica wherever it can: OCSP always, the CRL only while the
    /// certificate has not expired (a CRL drops expired certificates).
    static func done(_ ack: Ack, _ seen: Seen?) -> Bool {
        seen?.ocsp != nil && (seen?.crl != nil || ack.certificate.notAfter < Date())
    }

    private struct State {
        var acks: [Ack] = []
        var seen: [[String: Seen]]
        var fetches: [Fetch] = []
        var problems: [String] = []
        var deadline: Date?
    }

    let replicas: ReplicaSet
    let issuer: Certificate
    let keyID: String
    private let state: Mutex<State>
    private let running = DispatchGroup()

    init(_ replicas: ReplicaSet) throws {
        self.replicas = replicas
        issuer = try Certificate(pem: replicas.caPEM)
        keyID = issuer.subjectKeyID
        state = Mutex(State(seen: Array(repeating: [:], count: replicas.count)))
    }

    /// Makes the acknowledgement of revoking `certificate` (PEM) for the watchers.
    func ack(serial: String, certificatePEM: String, at: Date, via: Int, crlNumber: UInt64) throws -> Ack {
        let cert = try Certificate(pem: certificatePEM)
        return Ack(serial: serial, certificate: cert, ocspRequest: try OCSPClient.request(certificate: cert, issuer: issuer), at: at, via: via,
                   crlNumber: crlNumber)
    }

    func add(_ ack: Ack) { state.withLock { $0.acks.append(ack) } }

    /// Starts one watcher thread per replica.
    func start() {
        for i in 0..<replicas.count {
            running.enter()
            let thread = Thread { [self] in
                watch(i)
                running.leave()
            }
            thread.name = "revocation-watch-\(i)"
            thread.start()
        }
    }

    /// Lets the watchers run until every replica showed every acknowledged revocation, or
    /// `timeout` passed; then stops them.
    func finish(timeout: TimeInterval) {
        state.withLock { $0.deadline = Date().addingTimeInterval(timeout) }
        running.wait()
    }

    var acks: [Ack] { state.withLock { $0.acks } }
    var fetches: [Fetch] { state.withLock { $0.fetches } }
    var problems: [String] { state.withLock { $0.problems } }
    func seen(_ replica: Int, _ serial: String) -> Seen? { state.withLock { $0.seen[replica][serial] } }

    /// The CRL of replica `i` now, parsed, and its DER (nil if it does not answer). An answer that
    /// is not a CRL (an error status, bytes that do not parse) is a problem.
    func crl(_ i: Int) -> (crl: CRL, der: [UInt8])? {
        guard let r = try? replicas.clients[i].publication.send("GET", "/v1/crl/\(keyID)", headers: [:], body: nil) else { return nil }
        guard r.status == 200, let crl = try? CRL(der: r.body) else {
            problem("replica \(i) answered a CRL request with \(r.status): \(String(decoding: r.body.prefix(300), as: UTF8.self))")
            return nil
        }
        return (crl, r.body)
    }

    /// Replica `i`'s OCSP answer about `ack`'s certificate, verified against the CA (nil if it
    /// does not answer). An answer that is not a verified OCSP response is a problem.
    func ocsp(_ i: Int, _ ack: Ack) -> OCSPCertificateStatus? {
        guard let r = try? replicas.clients[i].publication.send("POST", "/v1/ocsp", headers: ["Content-Type": "application/ocsp-request"], body: ack.ocspRequest) else {
            return nil
        }
        do {
            guard r.status == 200 else { throw VouchError(.http, "status \(r.status): \(String(decoding: r.body.prefix(300), as: UTF8.self))") }
            return try OCSPClient.verify(response: r.body, certificate: ack.certificate, issuer: issuer, at: Date())
        } catch {
            problem("replica \(i) answered OCSP for \(ack.serial) with \(error)")
            return nil
        }
    }

    private func problem(_ text: String) { state.withLock { $0.problems.append(text) } }

    private func watch(_ i: Int) {
        while true {
            let (pending, deadline) = state.withLock { s in (s.acks.filter { !Self.done($0, s.seen[i][$0.serial]) }, s.deadline) }
            if let deadline, pending.isEmpty || Date() > deadline { return }
            guard replicas.isUp(i) else { usleep(50_000); continue }
            let started = Date()
            if let fetched = crl(i) {
                let at = Date()
                let listed = Set(fetched.crl.revokedSerials)
                let number = fetched.crl.number ?? 0
                if fetched.crl.number == nil { problem("replica \(i) served a CRL without a number") }
                let digest = Crypto.sha256(fetched.der)
                state.withLock { s in
                    s.fetches.append(Fetch(replica: i, started: started, at: at, number: number, digest: digest))
                    for a in pending where listed.contains(a.serial) && s.seen[i][a.serial]?.crl == nil { s.seen[i][a.serial, default: Seen()].crl = at }
                }
            }
            for a in pending where seen(i, a.serial)?.ocsp == nil {
                guard case .revoked = ocsp(i, a) else { continue }
                let at = Date()
                state.withLock { $0.seen[i][a.serial, default: Seen()].ocsp = at }
            }
            usleep(50_000)
        }
    }
}

/// Polls every live replica's served checkpoint (`GET /checkpoint`) twice a second and keeps
/// every (replica, size, root) it saw, for the fork and rollback checks.
final class CheckpointWatch: Sendable {
    struct Served: Sendable, Equatable {
        let replica: Int
        let size: UInt64
        let root: String
    }

    let replicas: ReplicaSet
    private let seen = Mutex<[Served]>([])
    private let stopping = Mutex(false)
    private let running = DispatchGroup()

    init(_ replicas: ReplicaSet) { self.replicas = replicas }

    func start() {
        running.enter()
        let thread = Thread { [self] in
            while !stopping.withLock({ $0 }) {
                for i in replicas.live { if let s = served(i) { seen.withLock { $0.append(s) } } }
                usleep(500_000)
            }
            running.leave()
        }
        thread.name = "checkpoint-watch"
        thread.start()
    }

    func stop() {
        stopping.withLock { $0 = true }
        running.wait()
    }

    var served: [Served] { seen.withLock { $0 } }

    /// Replica `i`'s checkpoint: the note's second line is the size, the third the root (base64).
    func served(_ i: Int) -> Served? {
        guard let r = try? replicas.clients[i].api.send("GET", "/checkpoint", headers: [:], body: nil), r.status == 200 else { return nil }
        let lines = String(decoding: r.body, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count > 2, let size = UInt64(lines[1]) else { return nil }
        return Served(replica: i, size: size, root: String(lines[2]))
    }
}
