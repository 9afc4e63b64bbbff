import Foundation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTEEWire

// NVIDIA GPUs in the broker: a GPU's evidence is a device presented beside the host's platform
// (its TPM or CPU TEE) in the same request. The GPU's SPDM request carries the challenge nonce;
// the platform's evidence binds the digest of every GPU's evidence (`EnrollmentBinding.composite`),
// so the platform's signature covers the set. docs/evidence.md, "Composite evidence: GPUs beside
// the platform, under one nonce", lists the checks in order.

extension NvidiaGPUEvidence {
    /// The digest the platform's evidence binds this GPU's evidence by
    /// (`EnrollmentBinding.deviceDigest` of kind `nvidia-gpu` over the transcript and the PEM chain, as sent).
    public var bindingDigest: [UInt8] {
        EnrollmentBinding.deviceDigest(kind: EvidenceKind.nvidiaGPU.rawValue, parts: [transcript, Array(certificateChainPEM.utf8)])
    }
}

extension NvidiaGPUEvidence {
    /// SHA-256 of the first certificate's SubjectPublicKeyInfo — the leaf's once the evidence
    /// verified (`NvidiaGPUVerifier` check 2 takes the first certificate as the leaf); nil when
    /// the chain does not parse. Which GPU it is, for refusing one GPU given twice.
    public var leafKeyDigest: [UInt8]? {
        guard let leaf = try? Certificate.chain(pem: certificateChainPEM).first else { return nil }
        return NvidiaGPUVerifier.deviceKey(of: leaf)
    }

    /// One refusal (`nvidia_gpu_duplicate_device`, path `NAME.certificates`) for each device,
    /// named as given, whose evidence repeats an earlier device's leaf key: one GPU presented twice.
    public static func duplicateViolations(_ devices: [(name: String, evidence: NvidiaGPUEvidence)]) -> [PolicyViolation] {
        var seen: [[UInt8]: String] = [:]
        var out: [PolicyViolation] = []
        for (name, e) in devices {
            guard let key = e.leafKeyDigest else { continue }
            if let first = seen[key] {
                out.append(PolicyViolation(code: .nvidiaGPUDuplicateDevice, path: "\(name).certificates", expected: "a GPU other than \(first)", actual: "the same GPU"))
            } else {
                seen[key] = name
            }
        }
        return out
    }
}

extension NvidiaGPUVerifier {
    /// Which GPU a verified leaf is: SHA-256 of its canonical SubjectPublicKeyInfo (the GPU's
    /// DICE alias key; the FWID names firmware, shared by a board's GPUs). `DeviceClaims.deviceKey`,
    /// and the key every duplicate check compares.
    public static func deviceKey(of leaf: Certificate) -> [UInt8]? {
        (try? leaf.publicKey.canonicalSPKIDER).map(Crypto.sha256)
    }
}

/// The roots and reference values GPU evidence is verified under: NVIDIA's pinned Device
/// Identity CA (`NvidiaRoots`) and the RIMs the broker holds; the software GPU's test roots and
/// RIMs kept apart, used only for evidence whose chain names the simulation's organisation.
public struct GPUTrust: Sendable {
    public var deviceRoots: [Certificate]
    /// The RIMs verified under NVIDIA's CoRIM root (`vouchd --nvidia-rims DIR`); nil: none, every
    /// measurement "missing".
    public var references: NvidiaRIMStore?
    public var simulatedDeviceRoots: [Certificate]?
    /// The OCSP answers for device chains (`vouchd --nvidia-ocsp DIR`); nil: none, every chain's
    /// status missing (a policy with `revocation: required` refuses).
    public var ocsp: OCSPStore?
    /// The software GPU's RIM signing roots (`nvidia-rim.pem` of `--simulated-tee-roots`).
    public var simulatedRIMRoots: [Certificate]?
    /// The RIMs verified under `simulatedRIMRoots`: the only references a software GPU is compared with.
    public var simulatedReferences: NvidiaRIMStore?

    public init(deviceRoots: [Certificate] = [NvidiaRoots.deviceIdentityCA], references: NvidiaRIMStore? = nil) {
        self.deviceRoots = deviceRoots
        self.references = references
    }
}

/// A GPU's evidence authenticated for one request (stage 1 passed).
struct AuthenticatedGPU: Sendable {
    /// The verifier's claims, every measurement not yet compared ("missing").
    let claims: NvidiaGPUClaims
    /// The authenticated evidence (stage 2 reads its measurement blocks).
    let evidence: NvidiaGPUEvidence
    /// `NvidiaGPUEvidence.bindingDigest`.
    let digest: [UInt8]
    let simulated: Bool
    /// `good`, `missing` or `none` (`DeviceClaims.revocation`).
    let revocation: String
    /// SHA-256 of the leaf's SubjectPublicKeyInfo (`DeviceClaims.deviceKey`).
    let deviceKey: [UInt8]
}

/// The NVIDIA GPU path through the broker.
public struct NvidiaGPUEvidenceVerifier: EvidenceVerifier {
    public var kind: EvidenceKind { .nvidiaGPU }
    let trust: GPUTrust
    /// One verifier per root set, kept: each keeps the device chains it verified
    /// (`NvidiaGPUChainCache`), so a GPU's chain above its leaf is verified once per window.
    let pinned: NvidiaGPUVerifier
    let simulatedVerifier: NvidiaGPUVerifier?

    /// Keep one per broker (its verifiers cache the chains they verified).
    public init(trust: GPUTrust) {
        self.trust = trust
        pinned = NvidiaGPUVerifier(roots: trust.deviceRoots)
        simulatedVerifier = trust.simulatedDeviceRoots.map { NvidiaGPUVerifier(roots: $0) }
    }

    /// Stage 1. Checks, in order, refusing at the first failure:
    /// 1. the request has a challenge nonce (`nvidia_gpu_nonce_mismatch` otherwise);
    /// 2. a chain that names the software GPU's organisation (`TEETrust.simulationOrganization`)
    ///    is refused unless the broker trusts the software GPU's roots and the host registered as
    ///    simulated (`tee_simulation_refused`); it is verified under those roots only, anything
    ///    else under NVIDIA's pinned Device Identity CA;
    /// 3. `NvidiaGPUVerifier` checks 1–6: the SPDM transcript parses, the chain verifies at the
    ///    check time, the P-384 signature over request ‖ response, the FWID is the leaf's, the
    ///    request nonce is the challenge nonce, driver and VBIOS versions present
    ///    (`tee_evidence_malformed`, `nvidia_gpu_*`);
    /// 4. revocation (`ChainRevocation` over the broker's `OCSPStore`, every certificate below the
    ///    root but the leaf, as NVIDIA's verifier does): a verified `revoked` answer refuses
    ///    (`certificate_revoked_ocsp`); a missing or `unknown` one refuses only under
    ///    `devices.gpus.revocation: required` (`revocation_status_unknown`), else it is reported.
    /// That the evidence belongs to this host and this request is the platform's proof: its
    /// signed binding covers this evidence's digest (`EnrollmentBinding.composite`).
    public func authenticate(_ raw: RawEvidence, context: VerificationContext) -> EvidenceAuthentication {
        guard case let .nvidiaGPU(evidence) = raw.payload else {
            return .rejected([VouchError(.internalError, "the NVIDIA GPU verifier was given \(raw.kind.rawValue) evidence")])
        }
        // 1
        guard let nonce = context.nonce else {
            return .rejected([VouchError(.nvidiaGPUNonceMismatch, "GPU evidence is accepted only for a challenge nonce",
                                         context: ["device": raw.device, "expected": "a challenge nonce", "got": "none"])])
        }
        // 2
        let simulated = Self.namesSimulation(evidence.certificateChainPEM)
        let verifier: NvidiaGPUVerifier
        if simulated {
            guard let simulatedVerifier, context.enrolled.tee?.simulated == true else {
                return .rejected([VouchError(.teeSimulationRefused, "the GPU evidence is the software GPU's and this broker or host does not allow it",
                                             context: ["device": raw.device])])
            }
            verifier = simulatedVerifier
        } else {
            verifier = pinned
        }
        let roots = verifier.roots
        // 3
        let (result, leaf) = verifier.verifyDevice(evidence, at: context.now, expectedNonce: nonce, references: nil, requireReferences: false)
        switch result {
        case let .verified(claims, _):
            guard let leaf, let deviceKey = NvidiaGPUVerifier.deviceKey(of: leaf) else {
                return .rejected([VouchError(.internalError, "a verified GPU has no leaf key", context: ["device": raw.device])])
            }
            // 4
            let revocation: String
            switch revocationStatus(evidence, roots: roots, device: raw.device, context: context) {
            case let .success(status): revocation = status
            case let .failure(error): return .rejected([error])
            }
            return .authenticated(AuthenticatedEvidence(device: raw.device, payload: .nvidiaGPU(
                AuthenticatedGPU(claims: claims, evidence: evidence, digest: evidence.bindingDigest, simulated: simulated, revocation: revocation,
                                 deviceKey: deviceKey))))
        case let .rejected(violations, _):
            let v = violations[0]
            return .rejected([VouchError(v.code, "\(raw.device): \(v.path): expected \(v.expected), got \(v.actual)",
                                         context: ["device": raw.device, "path": v.path, "expected": v.expected, "got": v.actual])])
        }
    }

    /// Check 4 of stage 1, on a chain that verified: `good`, `missing`, `none` (nothing below the
    /// root but the leaf to ask about), or the refusal. The certificates asked about are those of
    /// the path OpenSSL verified (leaf to pinned root), never the order the host sent them in: a
    /// reordered or root-less PEM must not hide a revoked intermediate.
    func revocationStatus(_ evidence: NvidiaGPUEvidence, roots: [Certificate], device: String, context: VerificationContext) -> Result<String, VouchError> {
        let required = context.policy.devices?.gpus?.revocation == .required
        guard let sent = try? Certificate.chain(pem: evidence.certificateChainPEM), let leaf = sent.first,
              case let .success(path) = leaf.verifiedPath(anchors: roots, intermediates: Array(sent.dropFirst()), at: context.now) else {
            return .failure(VouchError(.internalError, "a verified GPU chain no longer verifies", context: ["device": device]))
        }
        let result: ChainRevocation.Result
        do { result = try ChainRevocation.check(chain: path, store: trust.ocsp ?? OCSPStore(responses: []), at: context.now, skipLeaf: true) } catch {
            return .failure(VouchError(.revocationStatusUnknown, "\(device): the GPU chain's revocation cannot be checked: \(error)", context: ["device": device]))
        }
        if result.entries.isEmpty { return .success("none") }
        switch result.summary {
        case .allGood: return .success("good")
        case .someMissing where !required: return .success("missing")
        case .someRevoked, .someMissing:
            // `requireAllGood` names the first certificate revoked or without an answer.
            do { try result.requireAllGood(chain: "nvidia-gpu") } catch let e as VouchError {
                return .failure(VouchError(e.code, "\(device): \(e.message)", context: e.context.merging(["device": device]) { a, _ in a }))
            } catch {}
            return .failure(VouchError(result.summary == .someRevoked ? .certificateRevokedOCSP : .revocationStatusUnknown,
                                       "\(device): the GPU chain is not shown unrevoked", context: ["device": device]))
        }
    }

    /// Stage 2. Checks, in order:
    /// 1. the reference values for the GPU's driver and VBIOS versions (`NvidiaRIMStore`: the RIM
    ///    for exactly each version, valid at the check time; the software GPU's only from RIMs
    ///    signed under its own RIM root) combine: an index active in both RIMs refuses
    ///    (`rim_index_conflict`);
    /// 2. each measurement is compared with them (`NvidiaGPUVerifier` check 7): matched,
    ///    mismatched, inactive (both RIMs found, neither checks the index) or missing (no RIM for
    ///    it); an active reference index the GPU did not report is mismatched.
    /// Nothing here refuses a mismatch: the policy's `devices.gpus` rules do (`Appraiser`).
    public func verify(_ evidence: AuthenticatedEvidence, accepted: AcceptedState, context: VerificationContext) -> EvidenceVerification {
        guard case let .nvidiaGPU(gpu) = evidence.payload else {
            return .rejected([VouchError(.internalError, "the NVIDIA GPU verifier was given \(evidence.kind.rawValue) evidence").violation(device: evidence.device)], nil)
        }
        var unjudged = Self.summary(device: evidence.device, gpu.claims, digest: gpu.digest, rims: [], simulated: gpu.simulated)
        unjudged.revocation = gpu.revocation
        unjudged.deviceKey = Hex.encode(gpu.deviceKey)
        // 1
        var lookup: NvidiaRIMStore.Lookup?
        if let store = gpu.simulated ? trust.simulatedReferences : trust.references {
            do { lookup = try store.references(driverVersion: gpu.claims.driverVersion, vbiosVersion: gpu.claims.vbiosVersion, at: context.now) } catch {
                let e = error as? VouchError
                return .rejected([PolicyViolation(code: e?.code ?? .rimIndexConflict, path: "evidence.\(evidence.device).rims",
                                                  expected: "driver and VBIOS RIMs with disjoint active indices", actual: e?.message ?? "\(error)")],
                                 EvidenceRecord(measurementDigest: unjudged.sha256, claims: EvidenceClaims(devices: [unjudged])))
            }
        }
        // 2 (the transcript authenticated in stage 1; it parses)
        guard let transcript = try? SPDMMeasurementTranscript(gpu.evidence.transcript) else {
            return .rejected([VouchError(.internalError, "authenticated GPU evidence no longer parses").violation(device: evidence.device)], nil)
        }
        var claims = gpu.claims
        claims.measurements = NvidiaGPUVerifier.compare(transcript.blocks, lookup?.references)
        var summary = Self.summary(device: evidence.device, claims, digest: gpu.digest, rims: lookup?.used.map(\.rim.identity.tagId) ?? [], simulated: gpu.simulated)
        summary.revocation = gpu.revocation
        summary.deviceKey = Hex.encode(gpu.deviceKey)
        return .verified(VerifiedEvidence(device: evidence.device, claims: .nvidiaGPU(claims, summary: summary)))
    }

    /// What the trail, the EAR and the certificate carry of a verified GPU.
    static func summary(device: String, _ c: NvidiaGPUClaims, digest: [UInt8], rims: [String], simulated: Bool) -> DeviceClaims {
        let results = Set(c.measurements.map(\.reference))
        let overall = results.contains(.mismatched) ? "mismatched" : results.contains(.missing) || !results.contains(.matched) ? "missing" : "matched"
        return DeviceClaims(device: device, kind: EvidenceKind.nvidiaGPU.rawValue, sha256: Hex.encode(digest), driverVersion: c.driverVersion,
                            vbiosVersion: c.vbiosVersion, project: c.project, projectSKU: c.projectSKU, chipSKU: c.chipSKU, fwid: c.fwid,
                            referenceValues: overall, rims: rims, simulated: simulated)
    }

    /// True when a certificate of the PEM chain is issued by or names the software GPU's organisation.
    static func namesSimulation(_ pem: String) -> Bool {
        guard let chain = try? Certificate.chain(pem: pem) else { return false }
        return chain.contains { TEETrust.isSimulation(issuer: $0.issuer) || TEETrust.isSimulation(issuer: $0.subject) }
    }
}
