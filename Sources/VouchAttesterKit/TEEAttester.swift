import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchRuntime
import VouchTPMWire

// A confidential VM as a host (`vouch-attester --tee` or `--simulate-tee`): the same agent API
// and push loop as a TPM host, with the CPU TEE's report in place of TPM quotes. The host key (an
// ECDSA P-256 key made once, kept in the state directory with mode 0600) is the host
// certificate's key and, for a VLEK-signed SEV-SNP guest or a TDX guest, the host's identity:
// it signs every piece of evidence after registration (docs/evidence.md, "CPU TEE hosts").

extension Attester {
    /// Where the host key is kept.
    static let teeHostKeyFile = "tee-host.key"

    /// The host key: loaded from the state directory, or made there once.
    func loadOrCreateTEEHostKey() throws -> PrivateKey {
        if let key = teeHostKey.withLock({ $0 }) { return key }
        guard let dir = config.stateDirectory else {
            throw VouchError(.config, "a confidential VM host keeps its host key in a state directory: give --state-dir")
        }
        try Files.makeDirectory(dir)
        let path = dir + "/" + Self.teeHostKeyFile
        if !Files.exists(path) { _ = try Files.createOnce(Array(try PrivateKey.generate(.p256).pem.utf8), at: path, mode: 0o600) }
        let key = try PrivateKey(pem: String(decoding: try Files.readSecret(path, maxBytes: 16 << 10), as: UTF8.self))
        teeHostKey.withLock { $0 = key }
        return key
    }

    /// Registers the confidential VM in one step:
    /// 1. the host id it will have: its host key's, for its kind (`TEEHostIdentity`);
    /// 2. a registration challenge for that id;
    /// 3. a report whose REPORT_DATA binds the nonce and the host key, sent with the key and the
    ///    key's signature over the same binding (proof the guest holds it), and the attester URL
    ///    in pull mode;
    /// 4. the host certificate the broker issues for the host key, kept as a TPM host's is (in
    ///    pull mode, the TLS server certificate the broker pins the host key in).
    func registerTEE(_ source: any TEEEvidenceSource) throws -> String {
        let key = try loadOrCreateTEEHostKey()
        let spki = try key.publicKey.canonicalSPKIDER
        guard let kind = EvidenceKind(rawValue: source.kind.rawValue) else {
            throw VouchError(.unsupported, "no evidence kind \(source.kind.rawValue)")
        }
        let expected = TEEHostIdentity.hostID(kind: kind, hostKeySPKI: spki)
        let challenge = try broker.call("POST", "/v1/challenges", body: ChallengeRequest(hostId: expected, purpose: "registration"), as: ChallengeResponse.self)
        let binding = EnrollmentBinding.qualifyingData(nonce: try Hex.decode(challenge.nonce, field: "nonce"), agentSPKI: spki)
        let evidence = try source.evidence(binding: binding, pcrSelection: nil)
        var request = RegisterHostRequest(
            tee: TEERegistrationBody(kind: source.kind.rawValue, hostKey: Base64.encode(spki), nonce: challenge.nonce, evidence: evidence.fields,
                                     hostKeySignature: Base64.encode(try key.sign(TEEHostIdentity.signedMessage(binding: binding), hash: .sha256))),
            hostname: config.hostname, labels: config.labels.isEmpty ? nil : config.labels)
        request.attesterURL = config.attesterURL   // pull mode: the broker asks POST /v1/evidence there
        let registered = try broker.call("POST", "/v1/hosts", body: request, as: RegisterHostResponse.self)
        guard registered.hostId == expected else {
            throw VouchError(.http, "the broker registered this guest as another host than its evidence names", context: ["expected": expected, "got": registered.hostId])
        }
        try keepHostIdentity(ActivateHostResponse(hostId: registered.hostId, akState: registered.akState ?? "active", hostCertificate: registered.hostCertificate,
                                                  caCertificate: registered.caCertificate, brokerSpiffeId: registered.brokerSpiffeId), key: key)
        return registered.hostId
    }

    /// The evidence for one request's binding: a report bound to it (an Azure CVM's with a vTPM
    /// quote over `pcrSelection`), and the host key's signature over it.
    func teeEvidence(binding: [UInt8], pcrSelection: PCRSelection?, source: any TEEEvidenceSource) throws -> TEEEvidenceBody {
        let key = try loadOrCreateTEEHostKey()
        let evidence = try source.evidence(binding: binding, pcrSelection: pcrSelection)
        return TEEEvidenceBody(kind: source.kind.rawValue, evidence: evidence.fields,
                               hostKeySignature: Base64.encode(try key.sign(TEEHostIdentity.signedMessage(binding: binding), hash: .sha256)))
    }

    /// Enrolls an agent on a confidential VM: a challenge, the GPUs' evidence for its nonce (when
    /// the host has GPUs), a report binding the nonce, the CSR's key and the GPUs' evidence. A
    /// confidential VM has no TPM, so no TPM-bound agent key.
    func enrollTEE(_ req: AgentEnrollRequest, hostID: String, source: any TEEEvidenceSource) throws -> EnrollResponse {
        guard req.tpmKey != true else {
            throw VouchError(.badRequest, "this host is a confidential VM (\(source.kind.rawValue)) without a TPM: send a CSR", context: ["field": "tpmKey"])
        }
        guard let pem = req.csr else { throw VouchError(.badRequest, "give a CSR", context: ["field": "csr"]) }
        let spki = try CSR(pemOrDER: Array(pem.utf8)).publicKey.spkiDER
        let challenge = try broker.call("POST", "/v1/challenges", body: ChallengeRequest(hostId: hostID), as: ChallengeResponse.self)
        let nonce = try Hex.decode(challenge.nonce, field: "nonce")
        let (devices, binding) = try deviceEvidence(nonce: nonce, binding: EnrollmentBinding.qualifyingData(nonce: nonce, agentSPKI: spki))
        var request = EnrollRequest(hostId: hostID, nonce: challenge.nonce, agentName: req.agentName, csr: pem,
                                    tee: try teeEvidence(binding: binding, pcrSelection: try PCRSelectionBody.teeSelection(challenge.pcrSelection), source: source),
                                    renewal: req.renewal)
        request.devices = devices
        return try broker.call("POST", "/v1/enroll", body: request, as: EnrollResponse.self)
    }
}

extension PCRSelectionBody {
    /// The PCRs a challenge names for a confidential VM's evidence (only an Azure CVM's vTPM
    /// quotes them): nil when it names none.
    static func teeSelection(_ bodies: [PCRSelectionBody]) throws -> PCRSelection? {
        bodies.isEmpty ? nil : try selection(bodies)
    }
}
