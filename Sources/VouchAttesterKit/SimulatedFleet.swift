import Foundation
import Synchronization
import VouchAPI
import VouchCore
import VouchCrypto
import VouchTPMWire

/// `vouch-attester --simulate N`: N software hosts in one process for scale tests. INSECURE by
/// design — each AK is a software key, so nothing proves a TPM holds it; the broker refuses these
/// hosts unless started with --allow-simulated-hosts, and marks them simulated everywhere.
///
/// The wire formats are the real ones: a TPM2B_PUBLIC AK of the same template, TPMS_ATTEST quotes
/// with TPMT_SIGNATURE (ECDSA P-256, SHA-256), registration and activation through the same
/// endpoints, pull requests over mutual TLS. Every simulated PCR holds its reset value (zeros),
/// which the development policy accepts.
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
    }

    public init(count: Int, broker: HTTPTransport, hostnamePrefix: String = "sim", labels: [String: String] = [:]) throws {
        self.broker = APIClient(transport: broker)
        self.hostnamePrefix = hostnamePrefix
        self.labels = labels
        self.tlsKey = try PrivateKey.generate(.p256)
        hosts = try (0..<count).map { i in Host(index: i, ak: try SoftwareAK()) }
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
        state.withLock { s in
            s.hostIDs[h.index] = reg.hostId
            s.certificates[h.index] = activated.hostCertificate
            s.caPEM = activated.caCertificate ?? s.caPEM
            s.brokerSpiffeID = activated.brokerSpiffeId ?? s.brokerSpiffeID
        }
    }

    /// Makes hosts `indices` drift: from now on their PCR 7 is not the reset value.
    public func drift(_ indices: some Sequence<Int>) { state.withLock { $0.drifted.formUnion(indices) } }

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
            do { _ = try enroll(i, agentName: "agent", csrPEM: csr) } catch { failures.withLock { $0 += 1 } }
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
