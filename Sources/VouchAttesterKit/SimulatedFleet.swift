import Foundation
import Synchronization
import VouchAPI
import VouchCore
import VouchCrypto
import VouchRuntime
import VouchTPMWire

/// `vouch-attester --simulate N`: N software hosts in one process for scale tests. INSECURE by
/// design — each AK is a software key, so nothing proves a TPM holds it; the broker refuses these
/// hosts unless started with --allow-simulated-hosts, and marks them simulated everywhere.
///
/// The wire formats are the real ones: a TPM2B_PUBLIC AK of the same template, TPMS_ATTEST quotes
/// with TPMT_SIGNATURE (ECDSA P-256, SHA-256), registration and activation through the same
/// endpoints, pull requests over mutual TLS, push reports and hints with each host's own host
/// certificate. Every simulated PCR holds its reset value (zeros), which the development policy
/// accepts, until the host drifts (`drift`), which it reports as an attester's drift watcher
/// would: a push host pushes a fresh quote, a pull host hints.
public final class SimulatedFleet: Sendable {
    public struct Host: Sendable {
        public let index: Int
        let ak: SoftwareAK
        /// TPM2B_PUBLIC of the AK.
        public var akPublic: [UInt8] { ak.publicArea }
    }

    public let hosts: [Host]
    let broker: APIClient
    let hostnamePrefix: String
    let labels: [String: String]
    /// The fleet's one TLS key: every simulated host's certificate is issued for it, so one server
    /// (and one pinned key) serves them all.
    public let tlsKey: PrivateKey
    private let state = Mutex(State())
    private struct State {
        /// Hosts whose PCR 7 has "drifted" (a changed Secure Boot policy): their quotes fail a
        /// policy that expects the reset value.
        var drifted: Set<Int> = []
        var hostIDs: [Int: String] = [:]
        var certificates: [Int: String] = [:]
        var caPEM = ""
        var brokerSpiffeID = ""
        var quotes = 0
        /// Hosts registered in pull mode (the others push).
        var pulled: Set<Int> = []
        /// When each host drifted (the instant its PCR 7 changed).
        var driftedAt: [Int: Date] = [:]
        /// Each host's unsolicited reports, paced as an attester's (`ReportGate`).
        var gates: [Int: ReportGate] = [:]
        /// The serial of the agent `enrollAgentOnEveryHost` enrolled on each host.
        var agentSerials: [Int: String] = [:]
        /// Each host's client for its push reports and hints, made at its first: a connection of
        /// its own, kept between reports as an attester process keeps its one.
        var reportClients: [Int: APIClient] = [:]
    }
    /// Where each host's certificate (`host-INDEX.pem`) and the fleet's key (`host.key`) are kept
    /// for libcurl, which presents them as TLS client identity.
    let identityDirectory: String

    /// `identityDirectory`: where the host certificates are written (default a new temporary directory).
    public init(count: Int, broker: HTTPTransport, hostnamePrefix: String = "sim", labels: [String: String] = [:], identityDirectory: String? = nil) throws {
        self.broker = APIClient(transport: broker)
        self.hostnamePrefix = hostnamePrefix
        self.labels = labels
        self.tlsKey = try PrivateKey.generate(.p256)
        hosts = try (0..<count).map { i in Host(index: i, ak: try SoftwareAK()) }
        self.identityDirectory = identityDirectory ?? NSTemporaryDirectory() + "vouch-sim-" + UUID().uuidString
        try Files.makeDirectory(self.identityDirectory)
        try Files.writeAtomically(Array(try tlsKey.pem.utf8), to: self.identityDirectory + "/host.key", mode: 0o600)
    }

    public var quotesServed: Int { state.withLock { $0.quotes } }
    public var registeredCount: Int { state.withLock { $0.hostIDs.count } }
    public func hostID(_ index: Int) -> String? { state.withLock { $0.hostIDs[index] } }

    /// Registers and activates the hosts in `range` (default all; pull mode at `baseURL`/sim/INDEX
    /// when given, else push), `concurrency` at a time. Returns how many are registered.
    @discardableResult
    public func register(_ range: Range<Int>? = nil, baseURL: String?, concurrency: Int = 8) throws -> Int {
        let range = range ?? hosts.indices
        let csr = try CSR.create(key: tlsKey, commonName: hostnamePrefix).pem
        let failures = Mutex<[String]>([])
        let next = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: max(1, concurrency)) { _ in
            while true {
                let i: Int = next.withLock { n in defer { n += 1 }; return range.lowerBound + n }
                guard i < range.upperBound else { return }
                do { try register(hosts[i], csr: csr, baseURL: baseURL) } catch {
                    failures.withLock { $0.append("host \(i): \(error)") }
                }
            }
        }
        let failed = failures.withLock { $0 }
        if let first = failed.first { throw VouchError(.http, "\(failed.count) simulated host(s) failed to register; first: \(first)") }
        return registeredCount
    }

    private func register(_ h: Host, csr: String, baseURL: String?) throws {
        let reg = try broker.call("POST", "/v1/hosts", body: RegisterHostRequest(
            ekCertificate: "", ekPublic: "", akPublic: Base64.encode(h.akPublic), hostname: String(format: "%@-%05d", hostnamePrefix, h.index),
            labels: labels.isEmpty ? nil : labels, attesterURL: baseURL.map { "\($0)/sim/\(h.index)" }, simulated: true), as: RegisterHostResponse.self)
        // A simulated registration returns the activation secret in the clear (there is no EK).
        let activated = try broker.call("POST", "/v1/hosts/\(reg.hostId)/activate",
                                        body: ActivateHostRequest(secret: reg.credentialBlob ?? "", hostCSR: csr, registration: reg.registration), as: ActivateHostResponse.self)
        if let cert = activated.hostCertificate {
            try Files.writeAtomically(Array((cert + (activated.caCertificate ?? "")).utf8), to: identityDirectory + "/host-\(h.index).pem", mode: 0o644)
        }
        state.withLock { s in
            s.hostIDs[h.index] = reg.hostId
            if baseURL != nil { s.pulled.insert(h.index) }
            s.certificates[h.index] = activated.hostCertificate
            s.caPEM = activated.caCertificate ?? s.caPEM
            s.brokerSpiffeID = activated.brokerSpiffeId ?? s.brokerSpiffeID
        }
    }

    /// Makes hosts `indices` drift: from now on their PCR 7 is not the reset value. Each then
    /// reports it at once, as an attester's drift watcher does (`reportDrift`), unless `report` is
    /// false (hosts without a watcher: the next scheduled round finds the change). Returns the
    /// instant of the change (one for all) and the reports that failed.
    @discardableResult
    public func drift(_ indices: some Sequence<Int>, concurrency: Int = 16, report: Bool = true) -> (at: Date, failures: [String]) {
        let list = Array(indices)
        let at = Date()
        state.withLock { s in
            s.drifted.formUnion(list)
            for i in list { s.driftedAt[i] = at }
        }
        return (at, report ? reportDrift(list, concurrency: concurrency) : [])
    }

    /// When host `index` drifted (nil: it has not).
    public func driftedAt(_ index: Int) -> Date? { state.withLock { $0.driftedAt[index] } }

    /// The serial of the agent `enrollAgentOnEveryHost` enrolled on host `index`.
    public func agentSerial(_ index: Int) -> String? { state.withLock { $0.agentSerials[index] } }

    /// What each of `indices` does when its measurements change, as an attester's drift watcher
    /// (`DriftWatcher`): a push host pushes a fresh report, a pull host hints; one unsolicited
    /// report a second per host (`ReportGate`: a report the gate holds waits for it). Returns
    /// the failures. `concurrency` threads of their own report at once: hosts drift and report
    /// independently, and `DispatchQueue.concurrentPerform` would run no more iterations at
    /// once than the machine has cores (two reports in flight on a 2-core machine).
    func reportDrift(_ indices: [Int], concurrency: Int) -> [String] {
        let shared = DriftReports()
        let reporters = DispatchGroup()
        for _ in 0..<max(1, min(concurrency, indices.count)) {
            reporters.enter()
            Thread { [self] in
                defer { reporters.leave() }
                reportDrift(indices, shared)
            }.start()
        }
        reporters.wait()
        return shared.failures.withLock { $0 }
    }

    /// What the reporters of one `reportDrift` share: the next host to report, and the failures.
    private final class DriftReports: Sendable {
        let next = Mutex(0)
        let failures = Mutex<[String]>([])
    }

    /// One reporter of `reportDrift`: takes the next host until none is left.
    private func reportDrift(_ indices: [Int], _ shared: DriftReports) {
        while true {
            let n: Int = shared.next.withLock { n in defer { n += 1 }; return n }
            guard n < indices.count else { return }
            let i = indices[n]
            let wait: Date = state.withLock { s in
                var gate = s.gates[i] ?? ReportGate()
                defer { s.gates[i] = gate }
                let at = gate.nextAllowed(now: Date())
                _ = gate.admit(now: at)
                return at
            }
            let delay = wait.timeIntervalSinceNow
            if delay > 0 { usleep(UInt32(delay * 1_000_000)) }
            do {
                if state.withLock({ $0.pulled.contains(i) }) { _ = try hint(i) } else { _ = try pushReport(i) }
            } catch {
                shared.failures.withLock { $0.append("host \(i): \(error)") }
            }
        }
    }

    /// Writes `{"hosts": [{"hostId", "serial", "driftAt"}]}` to `path`: each host, its agent's
    /// serial, and once it drifted the instant (Unix time, seconds) — for benchmarks that time
    /// what follows a drift.
    public func writeDriftRecord(to path: String) throws {
        let hosts = hosts.indices.map { i -> [String: String] in
            var h = ["hostId": hostID(i) ?? "", "serial": agentSerial(i) ?? ""]
            if let at = driftedAt(i) { h["driftAt"] = String(format: "%.6f", at.timeIntervalSince1970) }
            return h
        }
        try Files.writeAtomically(JSONCodec.encode(["hosts": hosts]), to: path, mode: 0o644)
    }

    /// Host `index`'s broker client with its host certificate: one per host, with a connection of
    /// its own kept between its reports (the hosts share this process, and a pooled connection made
    /// with one host's certificate is never another's).
    func hostClient(_ index: Int) throws -> APIClient {
        if let client = state.withLock({ $0.reportClients[index] }) { return client }
        let client = try BrokerReports.hostClient(broker: broker, certificateFile: identityDirectory + "/host-\(index).pem",
                                                  keyFile: identityDirectory + "/host.key", ownConnection: true)
        return state.withLock { s in
            if let other = s.reportClients[index] { return other }
            s.reportClients[index] = client
            return client
        }
    }

    /// Push mode, one report of host `index` (the attester's code path: `BrokerReports.push`).
    @discardableResult
    public func pushReport(_ index: Int) throws -> (verdict: AttestationVerdict, interval: Int) {
        guard let id = hostID(index) else { throw VouchError(.config, "simulated host \(index) is not registered") }
        return try BrokerReports.push(broker: broker, mtls: try hostClient(index), hostID: id) { challenge in
            let nonce = try Hex.decode(challenge.nonce, field: "nonce")
            return AttestationReport(nonce: challenge.nonce, quote: try quote(hosts[index], qualifyingData: EnrollmentBinding.reattestationData(nonce: nonce),
                                                                                selection: try PCRSelectionBody.selection(challenge.pcrSelection)))
        }
    }

    /// Pull mode: host `index` asks the broker to pull it now (`BrokerReports.hint`).
    @discardableResult
    public func hint(_ index: Int) throws -> HintResponse {
        guard let id = hostID(index) else { throw VouchError(.config, "simulated host \(index) is not registered") }
        return try BrokerReports.hint(try hostClient(index), hostID: id, reason: "measurements_changed")
    }

    /// Every push host reports once, `concurrency` at a time; returns the policy interval the
    /// broker named (seconds; nil if no report got through) and the number of failures.
    public func pushAll(concurrency: Int = 8) -> (interval: Int?, failures: Int) {
        let pushers = hosts.indices.filter { i in state.withLock { !$0.pulled.contains(i) && $0.hostIDs[i] != nil } }
        let interval = Mutex<Int?>(nil), failures = Mutex(0), next = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: max(1, min(concurrency, pushers.count))) { _ in
            while true {
                let n: Int = next.withLock { n in defer { n += 1 }; return n }
                guard n < pushers.count else { return }
                do { let r = try pushReport(pushers[n]); interval.withLock { $0 = r.interval } } catch { failures.withLock { $0 += 1 } }
            }
        }
        return (interval.withLock { $0 }, failures.withLock { $0 })
    }

    /// Enrolls an agent on simulated host `index` exactly as the attester does: a nonce, a quote
    /// binding the nonce and the CSR's key, the enrollment request. Returns the broker's answer.
    /// `via`: another broker of the same deployment to ask (a replica on the same database; the
    /// challenge and the enrollment both go there); default the one the fleet registered with.
    public func enroll(_ index: Int, agentName: String, csrPEM: String, via other: HTTPTransport? = nil) throws -> EnrollResponse {
        guard let id = hostID(index) else { throw VouchError(.config, "simulated host \(index) is not registered") }
        let broker = other.map { APIClient(transport: $0) } ?? self.broker
        let challenge = try broker.call("POST", "/v1/challenges", body: ChallengeRequest(hostId: id), as: ChallengeResponse.self)
        let spki = try CSR(pemOrDER: Array(csrPEM.utf8)).publicKey.spkiDER
        let selection = try PCRSelectionBody.selection(challenge.pcrSelection)
        let q = try quote(hosts[index], qualifyingData: EnrollmentBinding.qualifyingData(nonce: try Hex.decode(challenge.nonce), agentSPKI: spki), selection: selection)
        return try broker.call("POST", "/v1/enroll", body: EnrollRequest(hostId: id, nonce: challenge.nonce, agentName: agentName, csr: csrPEM, quote: q),
                               as: EnrollResponse.self)
    }

    /// Enrolls an agent named "agent" on every registered host (one shared CSR); returns the
    /// number of failures.
    public func enrollAgentOnEveryHost() throws -> Int {
        let csr = try CSR.create(key: try PrivateKey.generate(), commonName: "sim-agent").pem
        let failures = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: hosts.count) { i in
            do {
                let issued = try enroll(i, agentName: "agent", csrPEM: csr)
                state.withLock { $0.agentSerials[i] = issued.serial }
            } catch { failures.withLock { $0 += 1 } }
        }
        return failures.withLock { $0 }
    }

    /// The TLS material the fleet's server presents: host 0's certificate (all share the key),
    /// without the CA, as a real attester serves it.
    public func serverIdentity() throws -> (certificatePEM: String, keyPEM: String, caPEM: String) {
        let (cert, ca) = state.withLock { ($0.certificates[0], $0.caPEM) }
        guard let cert else { throw VouchError(.config, "the fleet has not registered") }
        return (cert, try tlsKey.pem, ca)
    }

    /// A quote as a TPM makes it: TPMS_ATTEST (TPM_ST_ATTEST_QUOTE) over the selected PCRs (all at
    /// their reset value) with `qualifyingData`, signed ECDSA P-256/SHA-256 by the host's AK.
    public func quote(_ h: Host, qualifyingData: [UInt8], selection: PCRSelection) throws -> QuoteBody {
        let drifted = state.withLock { $0.drifted.contains(h.index) }
        var values: [HashAlg: [Int: [UInt8]]] = [:]
        for bank in selection.banks {
            for p in bank.pcrs {
                values[bank.hash, default: [:]][p] = [UInt8](repeating: drifted && p == 7 ? 0xab : 0, count: bank.hash.digestSize)
            }
        }
        let quote = try h.ak.quote(qualifyingData: qualifyingData, selection: selection, pcrs: PCRValues(values),
                                   clockMilliseconds: UInt64(Date().timeIntervalSince1970 * 1000))   // never goes back
        state.withLock { $0.quotes += 1 }
        return quote
    }

    /// The broker-facing API of the whole fleet: `POST /sim/INDEX/v1/quote`, only for a client
    /// presenting the broker's certificate.
    public func handle(_ req: HTTPRequest) -> HTTPResponse {
        func json(_ status: Int, _ body: [UInt8]) -> HTTPResponse { HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: body) }
        let broker = state.withLock { $0.brokerSpiffeID }
        guard let der = req.clientCertificate, let cert = try? Certificate(der: der), cert.uriSANs == [broker] else {
            return json(401, JSONCodec.encode(APIError(code: "client_certificate_required", message: "only the broker may ask for quotes")))
        }
        let parts = req.path.split(separator: "/").map(String.init)
        guard req.method == "POST", parts.count == 4, parts[0] == "sim", parts[2] == "v1", parts[3] == "quote",
              let i = Int(parts[1]), hosts.indices.contains(i) else {
            return json(404, JSONCodec.encode(APIError(code: "not_found", message: "no such endpoint")))
        }
        do {
            let (nonce, selection) = try JSONCodec.decode(QuoteRequest.self, from: req.body).validated()
            return json(200, JSONCodec.encode(try quote(hosts[i], qualifyingData: EnrollmentBinding.reattestationData(nonce: nonce), selection: selection)))
        } catch let e as VouchError {
            return json(400, JSONCodec.encode(APIError(code: e.code.rawValue, message: e.message)))
        } catch {
            return json(500, JSONCodec.encode(APIError(code: "internal", message: "internal error")))
        }
    }

    public var httpHandler: @Sendable (HTTPRequest) -> HTTPResponse { { [self] req in self.handle(req) } }
}
