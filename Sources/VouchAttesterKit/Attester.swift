import Foundation
import Synchronization
import VouchAPI
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchRuntime
import VouchTPM
import VouchTPMWire

public struct AttesterConfig: Sendable {
    public var tcti: String
    public var akKind: KeyTemplates.AKKind
    /// Which endorsement key registers the host: RSA (certificate in NV 0x01c00002, or the
    /// high-range 0x01c00012) or ECC (P-256 at 0x01c0000a or 0x01c00014, then P-384 at 0x01c00016).
    public var ekKind: EKTemplate.Kind = .rsa
    public var hostname: String
    /// The firmware event log sent with each quote (nil: none).
    public var eventLogPath: String?
    /// The model measurement log written by `measure-model` (sent with each quote when it exists).
    public var modelLogPath: String?
    /// Labels sent at registration, which policies match on.
    public var labels: [String: String] = [:]
    /// Pull mode: the HTTPS base URL the broker reaches this attester at. Nil: push mode.
    public var attesterURL: String?
    /// Where the host certificate, its key (mode 0600) and the broker CA are written.
    public var stateDirectory: String?
    /// A confidential VM (SEV-SNP, TDX): its reports come from here and take the place of TPM
    /// quotes (`tcti`, the AK and EK settings and the logs are then unused). Push mode, or pull
    /// mode (`attesterURL`), where the broker asks `POST /v1/evidence`.
    public var tee: (any TEEEvidenceSource)?
    /// The host's GPUs: their evidence goes with every piece of the platform's, which binds it
    /// (`Attester.deviceEvidence`); nil: the host presents no GPUs.
    public var gpus: (any GPUEvidenceSource)?

    /// Where Linux exports the firmware event log.
    public static let systemEventLog = "/sys/kernel/security/tpm0/binary_bios_measurements"

    public init(tcti: String, akKind: KeyTemplates.AKKind = .eccP256, hostname: String, eventLogPath: String? = nil, modelLogPath: String? = nil) {
        self.tcti = tcti
        self.akKind = akKind
        self.hostname = hostname
        self.eventLogPath = eventLogPath
        self.modelLogPath = modelLogPath
    }
}

/// The host side of Vouch: keeps the AK in the TPM, registers the host (EK certificate +
/// credential activation), and makes quotes that bind an agent's key for enrollment.
/// TPM access is serialized; the TPM is opened per operation so other tools can share it.
public final class Attester: Sendable {
    public let config: AttesterConfig
    let broker: APIClient
    private let tpmLock = Mutex(())
    private let registeredHost = Mutex<String?>(nil)
    let hostIdentity = Mutex<HostIdentity?>(nil)
    /// A confidential VM's host key, once loaded (`loadOrCreateTEEHostKey`).
    let teeHostKey = Mutex<PrivateKey?>(nil)
    /// What the drift watcher compares with: the measured state of the last quote the broker got
    /// (`AttesterDrift.swift`), and the one of a quote made but not yet delivered.
    let quotedState = Mutex<(pending: DriftBaseline?, delivered: DriftBaseline?)>((nil, nil))

    public init(config: AttesterConfig, broker: HTTPTransport) {
        self.config = config
        self.broker = APIClient(transport: broker)
    }

    public var hostID: String? { registeredHost.withLock { $0 } }

    func withTPM<T>(_ body: (TPMDevice) throws -> T) throws -> T {
        try tpmLock.withLock { _ in
            let device = try TPMDevice(tcti: config.tcti)
            defer { device.close() }
            return try body(device)
        }
    }

    /// Registers this host with the broker and completes credential activation. Returns the host id.
    @discardableResult
    public func register() throws -> String {
        if let tee = config.tee {
            let id = try registerTEE(tee)
            registeredHost.withLock { $0 = id }
            return id
        }
        let (ekCert, ekPublic, akPublic) = try withTPM { tpm in
            let endorsement = try tpm.endorsement(config.ekKind)
            let (_, akPublic) = try tpm.createAttestationKey(config.akKind)
            return (endorsement.certificate, endorsement.ekPublic, akPublic)
        }
        let registration = try broker.call("POST", "/v1/hosts", body: RegisterHostRequest(
            ekCertificate: Base64.encode(ekCert), ekPublic: Base64.encode(ekPublic), akPublic: Base64.encode(akPublic),
            hostname: config.hostname, labels: config.labels.isEmpty ? nil : config.labels, attesterURL: config.attesterURL), as: RegisterHostResponse.self)
        let secret = try withTPM { tpm in
            let endorsement = try tpm.endorsement(config.ekKind)
            let (ak, _) = try tpm.createAttestationKey(config.akKind)
            return try tpm.activateCredential(ak: ak, ek: endorsement.ek, ekTemplate: endorsement.template, credentialBlob: try Base64.decode(registration.credentialBlob ?? "", field: "credentialBlob"),
                                              encryptedSecret: try Base64.decode(registration.encryptedSecret ?? "", field: "encryptedSecret"))
        }
        let hostKey = try PrivateKey.generate(.p256)
        let activated = try broker.call("POST", "/v1/hosts/\(registration.hostId)/activate",
                                        body: ActivateHostRequest(secret: Base64.encode(secret), hostCSR: try CSR.create(key: hostKey, commonName: config.hostname).pem,
                                                                  registration: registration.registration),
                                        as: ActivateHostResponse.self)
        try keepHostIdentity(activated, key: hostKey)
        registeredHost.withLock { $0 = registration.hostId }
        return registration.hostId
    }

    /// A quote over `selection` with `qualifyingData`, and the PCR values it covers. PCRs are read
    /// before and after the quote; if they moved in between, the quote is taken again.
    public func quote(qualifyingData: [UInt8], selection: PCRSelection) throws -> (attest: [UInt8], signature: [UInt8], pcrs: PCRValues) {
        try withTPM { tpm in
            try Self.quote(tpm: tpm, ak: try tpm.createAttestationKey(config.akKind).0, qualifyingData: qualifyingData, selection: selection)
        }
    }

    /// A quote by `ak` and the PCR values it covers, read before and after (up to three tries).
    static func quote(tpm: TPMDevice, ak: TPMObject, qualifyingData: [UInt8], selection: PCRSelection) throws -> (attest: [UInt8], signature: [UInt8], pcrs: PCRValues) {
        for _ in 0..<3 {
            let before = try tpm.readPCRs(selection)
            let q = try tpm.quote(ak: ak, qualifyingData: qualifyingData, selection: selection)
            let after = try tpm.readPCRs(selection)
            if before == after { return (q.attest, q.signature, after) }
        }
        throw VouchError(.tpm, "PCR values kept changing while quoting", context: ["transient": "true"])
    }

    /// Enrolls an agent: fetches a challenge, quotes with the agent key bound into the qualifying
    /// data, and asks the broker for a certificate.
    public func enroll(_ req: AgentEnrollRequest) throws -> EnrollResponse {
        guard let hostID else { throw VouchError(.attesterNotRegistered, "this host has not completed registration with the broker") }
        if let tee = config.tee { return try enrollTEE(req, hostID: hostID, source: tee) }
        let challenge = try broker.call("POST", "/v1/challenges", body: ChallengeRequest(hostId: hostID), as: ChallengeResponse.self)
        let nonce = try Hex.decode(challenge.nonce, field: "nonce")
        var tpmKey: (body: TPMKeyBody, priv: [UInt8], pub: [UInt8])?
        let spki: [UInt8]
        if req.tpmKey == true {
            guard req.csr == nil else { throw VouchError(.badRequest, "a TPM-bound key needs no CSR") }
            let made = try createCertifiedKey(nonce: nonce)
            tpmKey = made
            spki = try PublicKey(tpmPublic: TPMTPublic(tpm2bPublic: made.pub)).spkiDER
        } else {
            guard let pem = req.csr else { throw VouchError(.badRequest, "give a CSR, or ask for a TPM-bound key") }
            spki = try CSR(pemOrDER: Array(pem.utf8)).publicKey.spkiDER
        }
        let selection = try PCRSelectionBody.selection(challenge.pcrSelection)
        let q = try quote(qualifyingData: EnrollmentBinding.qualifyingData(nonce: nonce, agentSPKI: spki), selection: selection)
        var issued = try broker.call("POST", "/v1/enroll", body: EnrollRequest(
            hostId: hostID, nonce: challenge.nonce, agentName: req.agentName, csr: req.csr, tpmKey: tpmKey?.body,
            quote: try Self.quoteBody(q, eventLogPath: config.eventLogPath, modelLogPath: config.modelLogPath), renewal: req.renewal),
            as: EnrollResponse.self)
        if let tpmKey {
            issued.tpmKeyPublic = Base64.encode(tpmKey.pub)
            issued.tpmKeyPrivate = Base64.encode(tpmKey.priv)
            issued.tpmKeyParent = "0x" + String(KeyTemplates.srkHandle, radix: 16)
        }
        return issued
    }

    /// Creates an agent key under the SRK and has the AK certify it, bound to `nonce` and the key.
    func createCertifiedKey(nonce: [UInt8]) throws -> (body: TPMKeyBody, priv: [UInt8], pub: [UInt8]) {
        try withTPM { tpm in
            let srk = try tpm.storageRootKey()
            let (priv, pub) = try tpm.createAgentKey(parent: srk)
            let key = try tpm.load(parent: srk, private: priv, public: pub)
            let (ak, _) = try tpm.createAttestationKey(config.akKind)
            let spki = try PublicKey(tpmPublic: TPMTPublic(tpm2bPublic: pub)).spkiDER
            let c = try tpm.certify(object: key, ak: ak, qualifyingData: EnrollmentBinding.qualifyingData(nonce: nonce, agentSPKI: spki))
            return (TPMKeyBody(publicArea: Base64.encode(pub), certifyInfo: Base64.encode(c.attest), signature: Base64.encode(c.signature)), priv, pub)
        }
    }

    /// The wire form of a quote with the PCR values it covers and the logs that explain them.
    public static func quoteBody(_ q: (attest: [UInt8], signature: [UInt8], pcrs: PCRValues), eventLogPath: String?, modelLogPath: String?) throws -> QuoteBody {
        let eventLog = try eventLogPath.flatMap { FileManager.default.isReadableFile(atPath: $0) ? try Files.read($0) : nil }
        let modelLog = try modelLogPath.flatMap { Files.exists($0) ? try Files.read($0) : nil }
        return QuoteBody(attest: Base64.encode(q.attest), signature: Base64.encode(q.signature), pcrs: q.pcrs.hexMap,
                         eventLog: eventLog.map(Base64.encode), modelLog: modelLog.map(Base64.encode))
    }

    /// The local agent API (over the attester's Unix socket): `POST /v1/enroll`, `POST /v1/sign`
    /// (a TPM-bound agent key signs a digest) and `GET /v1/health`.
    /// Broker refusals pass through with their status and body.
    public func handle(_ req: HTTPRequest) -> HTTPResponse {
        func json(_ status: Int, _ body: [UInt8]) -> HTTPResponse {
            HTTPResponse(status: status, headers: [("Content-Type", "application/json")], body: body)
        }
        do {
            switch (req.method, req.path) {
            case ("GET", "/v1/health"):
                return json(200, JSONCodec.encode(["status": hostID == nil ? "unregistered" : "ok", "hostId": hostID ?? ""]))
            case ("POST", "/v1/enroll"):
                return json(201, JSONCodec.encode(try enroll(JSONCodec.decode(AgentEnrollRequest.self, from: req.body))))
            case ("POST", "/v1/sign"):
                return json(200, JSONCodec.encode(try signWithAgentKey(JSONCodec.decode(AgentSignRequest.self, from: req.body))))
            default:
                return json(404, JSONCodec.encode(APIError(code: "not_found", message: "no such endpoint")))
            }
        } catch let f as APIFailure {
            return json(f.status, JSONCodec.encode(f.error))
        } catch let e as VouchError {
            let status = e.code == .tpm || e.code == .http || e.code == .tsmUnavailable ? 503 : (e.code.rawValue == "attester_not_registered" ? 503 : 400)
            return json(status, JSONCodec.encode(APIError(code: e.code.rawValue, message: e.message, context: e.context.isEmpty ? nil : e.context)))
        } catch {
            return json(500, JSONCodec.encode(APIError(code: "internal", message: "internal error")))
        }
    }

    /// The handler to give an `HTTPServer` (built here, not in `main`, so it is not main-actor isolated).
    public var httpHandler: @Sendable (HTTPRequest) -> HTTPResponse {
        { [self] req in self.handle(req) }
    }
}
