import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy

// `vouch evidence verify --kind composite`: a host's composite evidence offline — a CPU TEE's
// report (SEV-SNP) or quote (TDX) and its GPUs' SPDM evidence under one nonce, as the broker
// received it: the FILE is the JSON body of an enrollment (`POST /v1/enroll`: nonce, csr, tee,
// devices) or of a re-attestation report (nonce, tee, devices). Further FILEs are what the CPU
// evidence needs besides (a CRL, TDX collateral). The checks, in order:
// 1. the body decodes: a 64-hex nonce, `tee` of kind sev-snp or tdx, 1–16 `devices` named
//    gpu0 … gpu15 of kind nvidia-gpu; with --nonce, the body's nonce is that one;
// 2. the binding: an enrollment's CSR parses and its self-signature verifies, the binding then
//    SHA-256(nonce ‖ SHA-256(CSR SPKI)); a report's SHA-256(nonce ‖ SHA-256("vouch
//    re-attestation v1")); the composite of it and every device's digest, in the order sent;
// 3. every GPU verifies (`NvidiaGPUVerifier`, its request nonce the body's nonce), compared with
//    the RIMs of --rims when given, and the GPUs as a set satisfy --policy's `devices:` section;
// 4. the CPU evidence verifies as `--kind sev-snp|tdx` would, its REPORT_DATA exactly
//    SHA-512("vouch tee report-data v1" ‖ 0 ‖ composite), under the policy's section with --policy.
// Not checked offline: the GPU chains' revocation (OCSP) — the broker's `--nvidia-ocsp` is.
// The host key's signature over the binding is not checked: it needs the key the broker
// registered (a relying party trusts the broker's record of it, or the certificate's EAR).

/// The parts of a broker request body that the composite check reads (others are ignored).
struct CompositeBody: Decodable {
    var nonce: String
    var csr: String?
    var tee: TEEEvidenceBody?
    var devices: [DeviceEvidenceBody]?
}

/// What `--json` prints as the claims of a composite verification.
struct CompositeClaims: Codable, Sendable {
    /// `enrollment` (the binding names the CSR's key) or `re-attestation`.
    var purpose: String
    var nonce: String
    /// The composite binding the CPU evidence must carry, hex.
    var binding: String
    var platform: String
    var platformVerified: Bool
    var devices: [Device]

    struct Device: Codable, Sendable {
        var device: String
        /// The digest bound into the composite (`EnrollmentBinding.deviceDigest`), hex.
        var sha256: String
        var verified: Bool
        var claims: NvidiaGPUClaims?
    }
}

func verifyComposite(_ paths: [String], at: Date, nonce expectedNonce: [UInt8]?, sections: TEESections, roots: RootsOption?,
                     options: GPUOptions, gpuRoots: [Certificate]) throws -> EvidenceReport {
    // 1
    let bytes = try readEvidenceFile(paths[0])
    let body: CompositeBody
    do { body = try JSONDecoder().decode(CompositeBody.self, from: Data(bytes)) } catch {
        throw VouchError(.io, "\(paths[0]) is not an enrollment or re-attestation body (JSON with nonce, tee and devices)")
    }
    guard Hex.isLowercase(body.nonce, length: 64...64), let nonce = try? Hex.decode(body.nonce) else {
        throw VouchError(.io, "\(paths[0]): nonce must be 64 lowercase hex digits")
    }
    guard let tee = body.tee, let kind = EvidenceCLIKind(rawValue: tee.kind), kind == .sevSNP || kind == .tdx else {
        throw VouchError(.io, "\(paths[0]): the composite check reads a tee of kind sev-snp or tdx")
    }
    let devices = body.devices ?? []
    guard (1...16).contains(devices.count) else { throw VouchError(.io, "\(paths[0]): give 1-16 devices") }
    var gpus: [(name: String, evidence: NvidiaGPUEvidence)] = []
    for (i, d) in devices.enumerated() {
        guard d.device.range(of: DeviceEvidenceBody.namePattern, options: .regularExpression) != nil, d.kind == EvidenceKind.nvidiaGPU.rawValue,
              !gpus.contains(where: { $0.name == d.device }), let transcript = try? Base64.decode(d.evidence, field: "devices[\(i)].evidence") else {
            throw VouchError(.io, "\(paths[0]): devices[\(i)] is not a distinct gpu0-gpu15 of kind nvidia-gpu with base64 evidence")
        }
        gpus.append((d.device, NvidiaGPUEvidence(transcript: transcript, certificateChainPEM: d.certificateChain)))
    }
    var violations: [PolicyViolation] = []
    var warnings: [TEEWarning] = []
    if let expectedNonce, !constantTimeEqual(expectedNonce, nonce) {
        violations.append(PolicyViolation(code: .nvidiaGPUNonceMismatch, path: "nonce", expected: Hex.encode(expectedNonce), actual: body.nonce))
    } else if expectedNonce == nil {
        warnings.append(TEEWarning(code: "nonce_not_checked", message: "no --nonce: the evidence is bound to the body's own nonce, whose freshness is not shown"))
    }
    // 2
    let purpose: String, binding: [UInt8]
    if let pem = body.csr {
        guard let csr = try? CSR(pemOrDER: Array(pem.utf8)), csr.signatureIsValid, let spki = try? csr.publicKey.spkiDER else {
            throw VouchError(.io, "\(paths[0]): csr does not parse or its self-signature does not verify")
        }
        (purpose, binding) = ("enrollment", EnrollmentBinding.qualifyingData(nonce: nonce, agentSPKI: spki))
    } else {
        (purpose, binding) = ("re-attestation", EnrollmentBinding.reattestationData(nonce: nonce))
    }
    let composite = EnrollmentBinding.composite(binding: binding, devices: gpus.map { ($0.name, EvidenceKind.nvidiaGPU.rawValue, $0.evidence.bindingDigest) })
    // 3
    let verifier = NvidiaGPUVerifier(roots: gpuRoots)
    let store = try rimStore(options, at: at)
    for failure in store?.failures ?? [] {
        warnings.append(TEEWarning(code: failure.code.rawValue, message: "RIM \(failure.file) not used: \(CLI.oneLine(failure.message))"))
    }
    var deviceClaims: [CompositeClaims.Device] = []
    var facts: [GPUFacts] = []
    for gpu in gpus {
        let result = store.map { verifier.verify(gpu.evidence, at: at, expectedNonce: nonce, rims: $0).result }
            ?? verifier.verify(gpu.evidence, at: at, expectedNonce: nonce)
        switch result {
        case let .verified(claims, _):
            facts.append(claims.facts(device: gpu.name))
            deviceClaims.append(.init(device: gpu.name, sha256: Hex.encode(gpu.evidence.bindingDigest), verified: true, claims: claims))
        case let .rejected(v, claims):
            deviceClaims.append(.init(device: gpu.name, sha256: Hex.encode(gpu.evidence.bindingDigest), verified: false, claims: claims))
            violations += v.map { PolicyViolation(code: $0.code, path: "\(gpu.name).\($0.path)", expected: $0.expected, actual: $0.actual) }
        }
    }
    violations += NvidiaGPUEvidence.duplicateViolations(gpus.map { ($0.name, $0.evidence) })
    if let rules = options.gpus, violations.isEmpty { violations += rules.evaluate(facts) }
    // 4
    func decode(_ value: String?, _ name: String) throws -> [UInt8]? {
        guard let value else { return nil }
        guard let b = try? Base64.decode(value, field: name) else { throw VouchError(.io, "\(paths[0]): tee.evidence.\(name) is not base64") }
        return b
    }
    let extra = try EvidenceFiles(paths: Array(paths.dropFirst()))
    let reportData = EnrollmentBinding.teeReportData(binding: composite)
    let platformResult: (verified: Bool, violations: [PolicyViolation], warnings: [TEEWarning])
    switch kind {
    case .sevSNP:
        guard let report = try decode(tee.evidence.report, "report"), let endorsement = try decode(tee.evidence.endorsement, "endorsement") else {
            throw VouchError(.io, "\(paths[0]): SEV-SNP evidence needs report and endorsement (the VCEK or VLEK)")
        }
        var known: [(kind: EvidenceFiles.Kind, path: String, bytes: [UInt8])] = [(.snpReport, "tee.evidence.report", report), (.certificate, "tee.evidence.endorsement", endorsement)]
        if let crl = try decode(tee.evidence.crl, "crl") { known.append((.crl, "tee.evidence.crl", crl)) }
        let files = EvidenceFiles(known: known + extra.items.filter { $0.kind == .crl && known.allSatisfy { $0.kind != .crl } })
        let r = try snpVerification(files, at: at, nonce: reportData, policy: sections.snp, roots: roots)
        platformResult = (r.isVerified, r.violations, r.warnings)
    default:
        guard let quote = try decode(tee.evidence.quote, "quote") else { throw VouchError(.io, "\(paths[0]): TDX evidence needs quote") }
        var known: [(kind: EvidenceFiles.Kind, path: String, bytes: [UInt8])] = [(.tdxQuote, "tee.evidence.quote", quote)]
        if let log = try decode(tee.evidence.eventLog, "eventLog") { known.append((.eventLog, "tee.evidence.eventLog", log)) }
        let files = EvidenceFiles(known: known + extra.items.filter { $0.kind == .tdxCollateralJSON || $0.kind == .pcsFile })
        let r = try tdxVerification(files, at: at, nonce: reportData, policy: sections.tdx, roots: roots)
        platformResult = (r.isVerified, r.violations, r.warnings)
    }
    violations = platformResult.violations.map { PolicyViolation(code: $0.code, path: "\(kind.rawValue).\($0.path)", expected: $0.expected, actual: $0.actual) } + violations
    warnings = platformResult.warnings + warnings
    let claims = CompositeClaims(purpose: purpose, nonce: body.nonce, binding: Hex.encode(composite), platform: kind.rawValue,
                                 platformVerified: platformResult.verified, devices: deviceClaims)
    let result: TEEVerification<CompositeClaims> = violations.isEmpty ? .verified(claims, warnings: warnings) : .rejected(violations, claims: claims)
    var report = EvidenceReport(kind: "composite", result: result) { c in
        ["\(c.purpose) nonce \(c.nonce)", "binding    \(c.binding)", "\(c.platform)    \(c.platformVerified ? "verified" : "refused"), REPORT_DATA = the composite"]
            + c.devices.map { d in "\(d.device)       \(d.verified ? "verified" : "refused")  sha256 \(d.sha256)" + (d.claims.map { "  driver \($0.driverVersion)  VBIOS \($0.vbiosVersion)" } ?? "") }
    }
    report.warnings = warnings
    return report
}
