import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchRuntime
import VouchTPMWire

/// The host's TLS identity from activation: its certificate (SPIFFE ID spiffe://TD/host/ID) and
/// key, the broker CA chain, and the SPIFFE ID the broker presents when it pulls.
public struct HostIdentity: Sendable {
    public var certificatePEM: String
    public var keyPEM: String
    public var caPEM: String
    public var brokerSpiffeID: String
    /// The same, as files (for libcurl), under the state directory.
    public var certificateFile: String?
    public var keyFile: String?
}

extension ErrorCode {
    public static let attesterNotRegistered = ErrorCode("attester_not_registered", status: 400)
}

extension PCRSelectionBody {
    /// The wire selection as a TPM selection: 1-8 banks of known hash algorithms, PCRs 0-23.
    static func selection(_ bodies: [PCRSelectionBody]) throws -> PCRSelection {
        guard (1...8).contains(bodies.count) else {
            throw VouchError(.badRequest, "pcrSelection must name 1-8 banks", context: ["field": "pcrSelection"])
        }
        return PCRSelection(banks: try bodies.map { b in
            guard let bank = HashAlg(rawValue: b.bank), !b.pcrs.isEmpty, b.pcrs.allSatisfy({ (0...23).contains($0) }) else {
                throw VouchError(.badRequest, "unknown PCR bank or index", context: ["field": "pcrSelection", "got": String(b.bank.prefix(16))])
            }
            return PCRBankSelection(hash: bank, pcrs: b.pcrs)
        })
    }
}

extension QuoteRequest {
    /// The broker's nonce, checked: 64 lowercase hex digits.
    func validatedNonce() throws -> [UInt8] {
        guard Hex.isLowercase(nonce, length: 64...64) else {
            throw VouchError(.badRequest, "nonce must be 64 lowercase hex digits", context: ["field": "nonce"])
        }
        return try Hex.decode(nonce)
    }

    /// The broker's quote request checked: the nonce and the selection.
    func validated() throws -> (nonce: [UInt8], selection: PCRSelection) {
        (try validatedNonce(), try PCRSelectionBody.selection(pcrSelection))
    }
}

extension Attester {
    public var identity: HostIdentity? { hostIdentity.withLock { $0 } }

    func keepHostIdentity(_ activated: ActivateHostResponse, key: PrivateKey) throws {
        guard let cert = activated.hostCertificate, let ca = activated.caCertificate, let broker = activated.brokerSpiffeId else {
            throw VouchError(.http, "the broker issued no host certificate at activation")
        }
        var identity = HostIdentity(certificatePEM: cert, keyPEM: try key.pem, caPEM: ca, brokerSpiffeID: broker)
        if let dir = config.stateDirectory {
            try Files.makeDirectory(dir)
            identity.certificateFile = dir + "/host.pem"
            identity.keyFile = dir + "/host.key"
            try Files.writeAtomically(Array((cert + ca).utf8), to: dir + "/host.pem", mode: 0o644)
            try Files.writeAtomically(Array(identity.keyPEM.utf8), to: dir + "/host.key", mode: 0o600)
            try Files.writeAtomically(Array(ca.utf8), to: dir + "/broker-ca.pem", mode: 0o644)
        }
        hostIdentity.withLock { $0 = identity }
    }

    /// A re-attestation quote for the broker: the PCRs it asks for, over
    /// SHA-256(nonce ‖ SHA-256("vouch re-attestation v1")), with the event and model logs.
    /// The measured state it covers is kept as the drift watcher's pending baseline
    /// (`deliveredQuote` makes it the baseline once the broker has it).
    public func reattestationQuote(_ req: QuoteRequest) throws -> QuoteBody {
        let (nonce, selection) = try req.validated()
        // The model log and PCR 23 are read before the quote: a change after this read shows as
        // drift to the watcher (one report too many), never as a change the broker missed.
        let extras = try preQuoteState(selection)
        let q = try quote(qualifyingData: EnrollmentBinding.reattestationData(nonce: nonce), selection: selection)
        quotedState.withLock { $0.pending = DriftBaseline(quoted: selection, pcrs: q.pcrs, extras: extras) }
        return try Self.quoteBody(q, eventLogPath: config.eventLogPath, modelLogPath: config.modelLogPath)
    }

    /// The re-attestation evidence for the broker's request, as a push report and a pull's
    /// `/v1/evidence` answer carry it: a confidential VM's report bound to
    /// SHA-256(nonce ‖ SHA-256("vouch re-attestation v1")) with the host key's signature over that
    /// binding (the request's `pcrSelection` is a TPM's, unused) — with GPUs, their evidence for the
    /// nonce and the report bound to `EnrollmentBinding.composite` of that binding and their
    /// digests —, or a TPM quote (`reattestationQuote`).
    public func reattestationReport(_ req: QuoteRequest) throws -> AttestationReport {
        guard let tee = config.tee else { return AttestationReport(nonce: req.nonce, quote: try reattestationQuote(req)) }
        let nonce = try req.validatedNonce()
        let (devices, binding) = try deviceEvidence(nonce: nonce, binding: EnrollmentBinding.reattestationData(nonce: nonce))
        var report = AttestationReport(nonce: req.nonce, tee: try teeEvidence(binding: binding, pcrSelection: try PCRSelectionBody.teeSelection(req.pcrSelection),
                                                                              source: tee))
        report.devices = devices
        return report
    }

    /// How long an idle connection to the broker is kept for the next push (seconds): above the
    /// push period at the default policy interval (80 % of 15 min).
    public static let pushKeepAliveSeconds = 1800

    /// Push mode, one report: a nonce from the broker, a quote (or a confidential VM's report), the report over mTLS with the host
    /// certificate. Returns the broker's verdict and the policy's interval (seconds).
    public func pushReport() throws -> (verdict: AttestationVerdict, interval: Int) {
        guard let hostID, let identity, let certFile = identity.certificateFile, let keyFile = identity.keyFile else {
            throw VouchError(.attesterNotRegistered, "this host has not completed registration (or has no state directory for its host certificate)")
        }
        let pushed = try BrokerReports.push(broker: broker, mtls: try hostClient(certificateFile: certFile, keyFile: keyFile), hostID: hostID) { challenge in
            try reattestationReport(QuoteRequest(nonce: challenge.nonce, pcrSelection: challenge.pcrSelection))
        }
        deliveredQuote()
        return pushed
    }

    /// The broker-facing API (pull mode, served over TLS with the host certificate), only for a
    /// client presenting the broker's certificate: `POST /v1/quote` (a TPM host: a `QuoteBody`)
    /// and `POST /v1/evidence` (an `AttestationReport`: what the host would push; the only
    /// endpoint of a confidential VM, which has no TPM quote to give).
    public func handleBroker(_ req: HTTPRequest) -> HTTPResponse {
        func json(_ status: Int, _ body: [UInt8]) -> HTTPResponse {
            HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: body)
        }
        func failure(_ status: Int, _ code: String, _ message: String) -> HTTPResponse {
            json(status, JSONCodec.encode(APIError(code: code, message: message)))
        }
        guard let identity else { return failure(503, "attester_not_registered", "this host has not completed registration") }
        guard let der = req.clientCertificate, let cert = try? Certificate(der: der), cert.uriSANs == [identity.brokerSpiffeID] else {
            return failure(401, "client_certificate_required", "only the broker (\(identity.brokerSpiffeID)) may ask for quotes")
        }
        guard req.method == "POST", req.path == "/v1/evidence" || (req.path == "/v1/quote" && config.tee == nil) else {
            return failure(404, "not_found", "no such endpoint" + (config.tee == nil ? "" : " (a confidential VM answers POST /v1/evidence)"))
        }
        do {
            let request = try JSONCodec.decode(QuoteRequest.self, from: req.body)
            let answer = req.path == "/v1/quote" ? JSONCodec.encode(try reattestationQuote(request)) : JSONCodec.encode(try reattestationReport(request))
            deliveredQuote()   // pull mode: the broker has it once answered (a lost answer is its fault, retried)
            return json(200, answer)
        } catch let e as VouchError {
            // TPM or TSM trouble is a fault the broker retries; anything else is the request's fault.
            return json(e.code == .tpm || e.code == .tsmUnavailable ? 503 : 400, JSONCodec.encode(APIError(code: e.code.rawValue, message: e.message, context: e.context.isEmpty ? nil : e.context)))
        } catch {
            return failure(500, "internal", "internal error")
        }
    }

    public var brokerHandler: @Sendable (HTTPRequest) -> HTTPResponse {
        { [self] req in self.handleBroker(req) }
    }
}
