import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel
import VouchPolicy
import VouchTPMWire

// The broker's evidence wiring: which verifiers it accepts evidence with, how a request's wire
// fields become `RawEvidence`, and which accepted state a verifier sees. Enrollment and
// re-attestation call only these and `EvidenceVerifiers`; adding a kind of evidence changes this
// file and VouchAttestation, never them.

extension AttestationKeyCache: AttestationKeyResolver {}

extension BrokerPart {
    /// The broker's verifiers, one per kind: the TPM quote path, with AKs from the cache and
    /// event logs through `eventLogs`, the CPU TEE paths (SEV-SNP, TDX, Azure CVM, whose vTPM
    /// event log also goes through `eventLogs`) under `tee`'s roots and collateral, and NVIDIA
    /// GPUs presented beside them under `tee.gpu`.
    static func evidenceVerifiers(keys: AttestationKeyCache, eventLogs: VerifiedLogCache, tee: TEETrust) -> EvidenceVerifiers {
        EvidenceVerifiers([TPMEvidenceVerifier(keys: keys, eventLogs: eventLogs), SNPEvidenceVerifier(trust: tee), TDXEvidenceVerifier(trust: tee),
                           AzureEvidenceVerifier(trust: tee, eventLogs: eventLogs), NvidiaGPUEvidenceVerifier(trust: tee.gpu)])
    }

    /// An enrollment's evidence, decoded (`bad_request` naming the field) but unverified.
    static func rawEvidence(_ req: EnrollRequest) throws -> [RawEvidence] {
        try rawEvidence(quote: req.quote, tee: req.tee) + rawDevices(req.devices)
    }

    /// A re-attestation report's evidence, decoded (`bad_request` naming the field) but unverified.
    static func rawEvidence(_ report: AttestationReport) throws -> [RawEvidence] {
        try rawEvidence(quote: report.quote, tee: report.tee) + rawDevices(report.devices)
    }

    /// At most this many devices beside the platform (an HGX board has eight GPUs).
    static var maxDevices: Int { 16 }
    /// The largest SPDM transcript and PEM chain a GPU may send (a real H100's are about 4 KiB and 5 KiB).
    static var maxDeviceEvidenceBytes: Int { 64 * 1024 }

    /// A request's devices beside the platform (`devices`), decoded but unverified: at most
    /// `maxDevices`, each named `gpu0` … `gpu15`, of kind `nvidia-gpu` (else
    /// `evidence_kind_unsupported`), its evidence base64 and both parts at most
    /// `maxDeviceEvidenceBytes` (`bad_request` naming the field).
    static func rawDevices(_ bodies: [DeviceEvidenceBody]?) throws -> [RawEvidence] {
        guard let bodies, !bodies.isEmpty else { return [] }
        guard bodies.count <= maxDevices else {
            throw VouchError(.badRequest, "at most \(maxDevices) devices", context: ["field": "devices"])
        }
        return try bodies.enumerated().map { i, body in
            let field = "devices[\(i)]"
            guard body.device.range(of: DeviceEvidenceBody.namePattern, options: .regularExpression) != nil else {
                throw VouchError(.badRequest, "a device is named gpu0 to gpu15", context: ["field": "\(field).device"])
            }
            guard EvidenceKind(rawValue: body.kind) == .nvidiaGPU else {
                throw VouchError(.evidenceKindUnsupported, "devices[].kind must be nvidia-gpu", context: ["field": "\(field).kind", "got": String(body.kind.prefix(32))])
            }
            // Base64 of at most maxDeviceEvidenceBytes bytes: the schema's maxLength (87384).
            guard body.evidence.utf8.count <= (maxDeviceEvidenceBytes + 2) / 3 * 4, body.certificateChain.utf8.count <= maxDeviceEvidenceBytes else {
                throw VouchError(.badRequest, "a device's evidence or chain is larger than \(maxDeviceEvidenceBytes) bytes", context: ["field": field])
            }
            let transcript = try Base64.decode(body.evidence, field: "\(field).evidence")
            return RawEvidence(device: body.device, payload: .nvidiaGPU(NvidiaGPUEvidence(transcript: transcript, certificateChainPEM: body.certificateChain)))
        }
    }

    /// The binding the platform's evidence must carry for a request holding `raw`: `binding`
    /// itself when the platform comes alone, else `EnrollmentBinding.composite` of it and every
    /// other device's digest, in the order sent.
    static func platformBinding(_ binding: [UInt8], _ raw: [RawEvidence]) -> [UInt8] {
        EnrollmentBinding.composite(binding: binding, devices: raw.compactMap { r in r.payload.deviceDigest.map { (r.device, r.kind.rawValue, $0) } })
    }

    /// A request's one piece of evidence: a TPM quote or a CPU TEE's, exactly one.
    static func rawEvidence(quote: QuoteBody?, tee: TEEEvidenceBody?) throws -> [RawEvidence] {
        switch (quote, tee) {
        case let (quote?, nil): return [try rawEvidence(quote: quote)]
        case let (nil, tee?): return [try rawEvidence(tee: tee.kind, tee.evidence, hostKeySignature: tee.hostKeySignature, field: "tee")]
        default: throw VouchError(.badRequest, "give exactly one of quote and tee", context: ["field": "quote"])
        }
    }

    /// A CPU TEE's evidence fields as its kind's `RawEvidence`: the fields the kind needs are
    /// present and base64, the other kind's are absent (`bad_request` naming the field); an
    /// unknown kind is `evidence_kind_unsupported`.
    static func rawEvidence(tee kind: String, _ f: TEEEvidenceFields, hostKeySignature: String?, field: String) throws -> RawEvidence {
        func decode(_ value: String?, _ name: String) throws -> [UInt8]? { try value.map { try Base64.decode($0, field: "\(field).evidence.\(name)") } }
        func absent(_ values: [(String?, String)]) throws {
            if let (_, name) = values.first(where: { $0.0 != nil }) {
                throw VouchError(.badRequest, "\(name) is not \(kind) evidence", context: ["field": "\(field).evidence.\(name)"])
            }
        }
        let signature = try hostKeySignature.map { try Base64.decode($0, field: "\(field).hostKeySignature") }
        switch EvidenceKind(rawValue: kind) {
        case .sevSNP?:
            try absent([(f.quote, "quote"), (f.eventLog, "eventLog"), (f.vtpmQuote.map { _ in "" }, "vtpmQuote")])
            guard let report = try decode(f.report, "report") else {
                throw VouchError(.badRequest, "SEV-SNP evidence needs report", context: ["field": "\(field).evidence.report"])
            }
            let endorsement: SNPRawEvidence.Endorsement
            switch (try decode(f.endorsement, "endorsement"), try decode(f.certificateTable, "certificateTable")) {
            case let (cert?, nil): endorsement = .certificate(cert)
            case let (nil, table?): endorsement = .certificateTable(table)
            case (nil, nil): endorsement = .absent   // the broker fetches the VCEK when it may (else snp_vcek_unavailable)
            default: throw VouchError(.badRequest, "SEV-SNP evidence takes at most one of endorsement and certificateTable",
                                      context: ["field": "\(field).evidence.endorsement"])
            }
            return RawEvidence(device: EvidenceKind.sevSNP.defaultDevice,
                               payload: .sevSNP(SNPRawEvidence(report: report, endorsement: endorsement, crl: try decode(f.crl, "crl"), hostKeySignature: signature)))
        case .tdx?:
            try absent([(f.report, "report"), (f.endorsement, "endorsement"), (f.certificateTable, "certificateTable"), (f.crl, "crl"),
                        (f.vtpmQuote.map { _ in "" }, "vtpmQuote")])
            guard let quote = try decode(f.quote, "quote") else {
                throw VouchError(.badRequest, "TDX evidence needs quote", context: ["field": "\(field).evidence.quote"])
            }
            return RawEvidence(device: EvidenceKind.tdx.defaultDevice,
                               payload: .tdx(TDXRawEvidence(quote: quote, eventLog: try decode(f.eventLog, "eventLog"), hostKeySignature: signature)))
        case .azureSNPVTPM?:
            try absent([(f.certificateTable, "certificateTable"), (f.quote, "quote"), (f.eventLog, "eventLog")])
            guard let report = try decode(f.report, "report"), let endorsement = try decode(f.endorsement, "endorsement"), let quote = f.vtpmQuote else {
                throw VouchError(.badRequest, "Azure CVM evidence needs report (the HCL report), endorsement (the VCEK) and vtpmQuote",
                                 context: ["field": "\(field).evidence.\(f.report == nil ? "report" : f.endorsement == nil ? "endorsement" : "vtpmQuote")"])
            }
            guard case let .tpm(tpmQuote) = try rawEvidence(quote: quote, field: "\(field).evidence.vtpmQuote").payload else {
                throw VouchError(.internalError, "a quote body decoded as another kind of evidence")
            }
            return RawEvidence(device: EvidenceKind.azureSNPVTPM.defaultDevice,
                               payload: .azureSNPVTPM(AzureRawEvidence(hclReport: report, endorsement: endorsement, crl: try decode(f.crl, "crl"),
                                                                       quote: tpmQuote, hostKeySignature: signature)))
        case .tpm?, .nvidiaGPU?, nil:
            throw VouchError(.evidenceKindUnsupported, "tee.kind must be sev-snp, tdx or azure-snp-vtpm", context: ["field": "\(field).kind", "got": String(kind.prefix(32))])
        }
    }

    /// The TPM quote of a request (`field`: where it is in the body), its fields decoded in the
    /// order they always were.
    static func rawEvidence(quote: QuoteBody, field: String = "quote") throws -> RawEvidence {
        let attest = try Base64.decode(quote.attest, field: "\(field).attest")
        let signature = try Base64.decode(quote.signature, field: "\(field).signature")
        let eventLog = try quote.eventLog.map { try Base64.decode($0, field: "\(field).eventLog") }
        let modelLog = try quote.modelLog.map { try Base64.decode($0, field: "\(field).modelLog") }
        let pcrs = try PCRValues(hexMap: quote.pcrs, field: "\(field).pcrs")
        return .tpm(TPMQuoteEvidence(attest: attest, signature: signature, pcrs: pcrs, eventLog: eventLog, modelLog: modelLog))
    }

    /// What the broker expects of the host's evidence: bound to `binding` (its devices' to
    /// `nonce`, the challenge), from the keys or
    /// identity the host enrolled, of its platform's kind, judged under `policy` at `now`. For a
    /// CPU TEE host this reads its trust record (whether it registered as simulated).
    func verificationContext(host: HostRecord, policy: Policy, binding: [UInt8], nonce: [UInt8]? = nil, now: Date) throws -> VerificationContext {
        let simulated = host.platform == .tpm ? false : (try store.trust(hostID: host.id)?.simulated ?? false)
        return VerificationContext(hostID: host.id, binding: binding, nonce: nonce, enrolled: Self.enrolledKeys(host, simulated: simulated), policy: policy,
                                   digester: OpenSSLDigester(), platform: EvidenceKind(rawValue: host.platform.rawValue) ?? .tpm, now: now)
    }

    /// The keys and identity a host registered: a TPM host's AK; a CPU TEE host's host key
    /// (`akPublic`), for SEV-SNP registered with a VCEK its chip pin (`ekPublic`; an Azure CVM: its
    /// vTPM's endorsement key there), its endorsement
    /// issuer (`ekIssuer`) and whether it registered as simulated (its trust record), as
    /// `HostRecord` documents.
    static func enrolledKeys(_ host: HostRecord, simulated: Bool) -> EnrolledKeys {
        switch host.platform {
        case .tpm: return EnrolledKeys(akPublic: host.akPublic)
        case .sevSNP:
            return EnrolledKeys(tee: TEEHostIdentity(kind: .sevSNP, hostKey: host.akPublic, chipID: host.ekPublic.isEmpty ? nil : host.ekPublic,
                                                     endorsementIssuer: host.ekIssuer, simulated: simulated))
        case .tdx: return EnrolledKeys(tee: TEEHostIdentity(kind: .tdx, hostKey: host.akPublic, endorsementIssuer: host.ekIssuer, simulated: simulated))
        case .azureSNPVTPM:
            return EnrolledKeys(tee: TEEHostIdentity(kind: .azureSNPVTPM, hostKey: host.akPublic, vtpmEndorsementKey: host.ekPublic,
                                                     endorsementIssuer: host.ekIssuer, simulated: simulated))
        }
    }

    /// What the host had accepted before, read once its evidence is authenticated: the TPM clock
    /// of its last trusted quote, with the lag allowed for a quote whose nonce was issued at
    /// `nonceIssuedAt` (`clockTolerance`).
    func acceptedState(hostID: String, nonceIssuedAt: Date) throws -> AcceptedState {
        let previous = try store.lastTrustedClock(hostID: hostID)
        return AcceptedState(clock: previous?.clock, clockTolerance: Self.clockTolerance(previousAt: previous?.at, nonceIssuedAt: nonceIssuedAt))
    }

    /// How far (ms) a quote's TPM clock may lag the host's latest accepted quote within one boot.
    /// Quotes the TPM made in clock order may reach the broker out of order (concurrent
    /// enrollments, a queued request): this quote was made after its nonce was issued, and the
    /// previous one before it was recorded, so it can lag by at most the time between the two,
    /// plus a second for clock granularity and rate. Previous evidence recorded before the nonce
    /// allows no lag at all; reset and restart counts are never allowed to go back. A TPM rolled
    /// back to an earlier state therefore passes only if that state is within this window —
    /// at most the nonce lifetime — of its latest accepted one.
    static func clockTolerance(previousAt: Date?, nonceIssuedAt: Date) -> UInt64 {
        guard let previousAt, previousAt > nonceIssuedAt else { return 0 }
        return UInt64((previousAt.timeIntervalSince(nonceIssuedAt) * 1000).rounded(.up)) + 1000
    }
}

extension TEEEvidenceCopy {
    /// The bytes a TEE verifier authenticated, as the store keeps them and the API serves them.
    init(_ b: TEEEvidenceBytes) {
        let e = b.kind == .tdx
            ? TEEEvidenceFields(quote: Base64.encode(b.report), eventLog: b.eventLog.map(Base64.encode))
            : TEEEvidenceFields(report: Base64.encode(b.report), endorsement: b.endorsement.map(Base64.encode), crl: b.crl.map(Base64.encode))
        self.init(kind: b.kind.rawValue, evidence: e, collateral: b.collateral.map(Base64.encode), simulated: b.simulated)
    }
}

extension HostPlatform {
    /// The platform a policy is selected for (`PolicySet.select`): a CPU TEE host only under a
    /// policy with its kind's section.
    var policyPlatform: PolicyPlatform {
        switch self {
        case .tpm: return .tpm
        case .sevSNP: return .sevSNP
        case .tdx: return .tdx
        case .azureSNPVTPM: return .azureSNPVTPM
        }
    }
}
