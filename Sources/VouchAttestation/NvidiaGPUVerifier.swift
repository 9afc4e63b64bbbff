import Foundation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEEWire

extension ErrorCode {
    /// The GPU's certificate chain (leaf first) does not verify to the pinned NVIDIA Device
    /// Identity CA at the check time: too short, a certificate missing or expired, another root.
    public static let nvidiaGPUChainInvalid = ErrorCode("nvidia_gpu_chain_invalid", status: 403)
    /// The SPDM MEASUREMENTS signature does not verify with the leaf's P-384 key.
    public static let nvidiaGPUSignatureInvalid = ErrorCode("nvidia_gpu_signature_invalid", status: 403)
    /// The FWID in the opaque data is not one of the leaf certificate's TCG DICE FWIDs.
    public static let nvidiaGPUFWIDMismatch = ErrorCode("nvidia_gpu_fwid_mismatch", status: 403)
    /// The request nonce in the evidence is not the expected challenge.
    public static let nvidiaGPUNonceMismatch = ErrorCode("nvidia_gpu_nonce_mismatch", status: 403)
    /// The signed opaque data lacks the driver or VBIOS version.
    public static let nvidiaGPUVersionMissing = ErrorCode("nvidia_gpu_version_missing", status: 403)
    // `nvidia_gpu_measurement_mismatch` is declared in VouchPolicy (DevicesPolicy.swift): the
    // `devices.gpus` rules refuse with it too.
}

/// NVIDIA GPU evidence as a host sends it, unverified: the SPDM GET_MEASUREMENTS request ‖
/// MEASUREMENTS response and the device certificate chain (PEM, leaf first).
public struct NvidiaGPUEvidence: Sendable, Equatable {
    public var transcript: [UInt8]
    public var certificateChainPEM: String
    public init(transcript: [UInt8], certificateChainPEM: String) {
        self.transcript = transcript
        self.certificateChainPEM = certificateChainPEM
    }
}

/// Reference values for one GPU's measurements, as the driver and VBIOS RIMs give them: for each
/// active index (SPDM measurement block index) the digests it may have. A RIM's Resource `index`
/// i (0-based) is SPDM block i + 1; whoever fills this from verified RIMs converts.
public struct NvidiaGPUReferenceValues: Sendable, Equatable {
    /// Measurement block index → allowed digests (any one matches).
    public var alternatives: [Int: [[UInt8]]]
    /// The indices that must be compared; an index not here has no reference.
    public var active: Set<Int>
    /// True when every RIM that covers this GPU was found: an index outside `active` is then
    /// "inactive" (no RIM checks it). False (the default): such an index is "missing", since an
    /// absent RIM might have covered it.
    public var complete: Bool
    public init(alternatives: [Int: [[UInt8]]], active: Set<Int>? = nil, complete: Bool = false) {
        self.alternatives = alternatives
        self.active = active ?? Set(alternatives.keys)
        self.complete = complete
    }
}

/// What a verified NVIDIA GPU report says. JSON names are the property names.
public struct NvidiaGPUClaims: Sendable, Equatable, Codable {
    /// `matched` / `mismatched` against the RIM alternatives; `missing`: no reference (a RIM that
    /// would cover the index was not found); `inactive`: both RIMs were found and neither checks it.
    public enum ReferenceResult: String, Sendable, Codable { case matched, mismatched, missing, inactive }
    public struct Measurement: Sendable, Equatable, Codable {
        public var index: Int
        /// Lowercase hex; nil for an active reference index the evidence lacks.
        public var digest: String?
        public var reference: ReferenceResult
    }
    /// Hex of the requester's nonce.
    public var nonce: String
    public var driverVersion: String
    public var vbiosVersion: String
    public var project: String?
    public var projectSKU: String?
    public var chipSKU: String?
    /// Hex of the FWID (opaque field 20), equal to one in the leaf certificate.
    public var fwid: String
    /// The leaf certificate's subject (RFC 2253).
    public var deviceSubject: String
    public var measurements: [Measurement]
}

/// Verifies one NVIDIA Hopper GPU's SPDM evidence, offline. Checks, in order (docs/evidence.md,
/// "NVIDIA GPU evidence"):
/// 1. the transcript parses (`SPDMMeasurementTranscript`: SPDM 1.1, every length bounded);
/// 2. the chain is 2–8 PEM certificates, leaf first; the leaf is an end entity that may sign (not
///    basicConstraints cA TRUE; keyUsage present with digitalSignature); a self-signed last
///    certificate is the pinned root itself; the leaf verifies through the others to a pinned
///    NVIDIA Device Identity CA, every certificate valid at the check time, and was issued by the
///    next certificate directly (`nvidia_gpu_chain_invalid`). The certificates above the leaf are
///    verified once per verifier and validity window (`NvidiaGPUChainCache`); the leaf's own
///    checks run on every call;
/// 3. the leaf key is ECDSA P-384 and the signature (r ‖ s) verifies over request ‖ response
///    without the signature, SHA-384 (`nvidia_gpu_signature_invalid`);
/// 4. the FWID in the signed opaque data is one of the FWIDs in the leaf's TCG DICE TcbInfo
///    extension, 2.23.133.5.4.1 (`nvidia_gpu_fwid_mismatch`);
/// 5. the request nonce equals the expected nonce, when one is given (`nvidia_gpu_nonce_mismatch`);
/// 6. the driver and VBIOS versions are present in the opaque data (`nvidia_gpu_version_missing`);
/// 7. each measurement is compared with the reference values, when given: matched, mismatched,
///    missing or (references complete, index checked by no RIM) inactive; with
///    `requireReferences`, a mismatched one is refused (`nvidia_gpu_measurement_mismatch`), else a
///    missing one (`gpu_reference_missing`). Without reference values every measurement is
///    "missing", which is reported, never a pass of a reference check.
public struct NvidiaGPUVerifier: Sendable {
    public static let tcbInfoOID = "2.23.133.5.4.1"
    public static let maxChainLength = 8
    static let keyUsageOID = "2.5.29.15"
    public let roots: [Certificate]
    /// Chains verified by this verifier (and its copies).
    let cache = NvidiaGPUChainCache()

    public init(roots: [Certificate] = [NvidiaRoots.deviceIdentityCA]) { self.roots = roots }

    public func verify(_ evidence: NvidiaGPUEvidence, at now: Date, expectedNonce: [UInt8]? = nil,
                       references: NvidiaGPUReferenceValues? = nil, requireReferences: Bool = false) -> TEEVerification<NvidiaGPUClaims> {
        verifyDevice(evidence, at: now, expectedNonce: expectedNonce, references: references, requireReferences: requireReferences).result
    }

    /// The same, with the reference values chosen by the verified driver and VBIOS versions
    /// (`lookup` runs after check 6; a violation it returns refuses the evidence, with its claims).
    func verify(_ evidence: NvidiaGPUEvidence, at now: Date, expectedNonce: [UInt8]?, requireReferences: Bool,
                lookup: (_ driver: String, _ vbios: String) -> Result<NvidiaGPUReferenceValues?, LookupFailure>) -> TEEVerification<NvidiaGPUClaims> {
        verifyDevice(evidence, at: now, expectedNonce: expectedNonce, requireReferences: requireReferences, lookup: lookup).result
    }

    /// `verify` with fixed references, and the leaf that signed the evidence once the chain verified.
    func verifyDevice(_ evidence: NvidiaGPUEvidence, at now: Date, expectedNonce: [UInt8]?, references: NvidiaGPUReferenceValues?,
                      requireReferences: Bool) -> (result: TEEVerification<NvidiaGPUClaims>, leaf: Certificate?) {
        verifyDevice(evidence, at: now, expectedNonce: expectedNonce, requireReferences: requireReferences) { _, _ in .success(references) }
    }

    /// Checks 1–7, with the leaf that signed the evidence once the chain verified.
    func verifyDevice(_ evidence: NvidiaGPUEvidence, at now: Date, expectedNonce: [UInt8]?, requireReferences: Bool,
                      lookup: (_ driver: String, _ vbios: String) -> Result<NvidiaGPUReferenceValues?, LookupFailure>)
        -> (result: TEEVerification<NvidiaGPUClaims>, leaf: Certificate?) {
        func refuse(_ code: ErrorCode, _ path: String, _ expected: String, _ actual: String) -> TEEVerification<NvidiaGPUClaims> {
            .rejected([PolicyViolation(code: code, path: path, expected: expected, actual: actual)], claims: nil)
        }
        // 1. Parse.
        let t: SPDMMeasurementTranscript
        do { t = try SPDMMeasurementTranscript(evidence.transcript) } catch {
            let e = error as? VouchError
            return (refuse(.teeEvidenceMalformed, "spdm." + (e?.context["field"] ?? ""), "a well-formed SPDM 1.1 transcript", e?.message ?? "\(error)"), nil)
        }
        // 2. Chain.
        let leaf: Certificate
        switch checkChain(evidence.certificateChainPEM, at: now) {
        case let .failure(reason): return (refuse(.nvidiaGPUChainInvalid, "certificates", "a chain to the NVIDIA Device Identity CA", reason.description), nil)
        case let .success(l): leaf = l
        }
        // 3. Signature.
        guard let key = try? leaf.publicKey, key.isEC, key.bits == 384, t.signature.count == 96,
              let der = try? ecdsaSignatureDER(r: Array(t.signature[0..<48]), s: Array(t.signature[48..<96])),
              key.verify(message: t.signedBytes, signature: der, scheme: .ecdsa, hash: .sha384) else {
            return (refuse(.nvidiaGPUSignatureInvalid, "spdm.signature", "ECDSA P-384/SHA-384 by the leaf", "does not verify"), leaf)
        }
        // 4. FWID.
        let certFWIDs = (leaf.extensionValue(oid: Self.tcbInfoOID)).map(Self.fwids) ?? []
        guard let fwid = t.fwid, certFWIDs.contains(fwid) else {
            return (refuse(.nvidiaGPUFWIDMismatch, "spdm.opaque.fwid", certFWIDs.isEmpty ? "a leaf with a DICE TcbInfo FWID" : Hex.encode(certFWIDs[0]),
                          t.fwid.map(Hex.encode) ?? "absent"), leaf)
        }
        // 5. Nonce.
        if let expectedNonce, !constantTimeEqual(expectedNonce, t.requestNonce) {
            return (refuse(.nvidiaGPUNonceMismatch, "spdm.request.nonce", Hex.encode(expectedNonce), Hex.encode(t.requestNonce)), leaf)
        }
        // 6. Versions.
        guard let driver = t.driverVersion, let vbios = t.vbiosVersion else {
            return (refuse(.nvidiaGPUVersionMissing, "spdm.opaque", "driver and VBIOS versions", "absent"), leaf)
        }
        // 7. References.
        let references: NvidiaGPUReferenceValues?
        var lookupViolation: PolicyViolation?
        switch lookup(driver, vbios) {
        case let .success(r): references = r
        case let .failure(f): (references, lookupViolation) = (nil, f.violation)
        }
        let measurements = Self.compare(t.blocks, references)
        let claims = NvidiaGPUClaims(nonce: Hex.encode(t.requestNonce), driverVersion: driver, vbiosVersion: vbios,
                                     project: t.opaqueString(.project), projectSKU: t.opaqueString(.projectSKU),
                                     chipSKU: t.opaqueString(.chipSKU), fwid: Hex.encode(fwid), deviceSubject: leaf.subject,
                                     measurements: measurements)
        if let lookupViolation { return (.rejected([lookupViolation], claims: claims), leaf) }
        if requireReferences, let bad = measurements.first(where: { $0.reference == .mismatched }) ?? measurements.first(where: { $0.reference == .missing }) {
            return (.rejected([PolicyViolation(code: bad.reference == .mismatched ? .nvidiaGPUMeasurementMismatch : .gpuReferenceMissing,
                                               path: "spdm.measurements[\(bad.index)]", expected: "matched", actual: bad.reference.rawValue)], claims: claims), leaf)
        }
        return (.verified(claims, warnings: []), leaf)
    }

    /// Step 2: the leaf, or why the chain fails.
    func checkChain(_ pem: String, at now: Date) -> Result<Certificate, ChainFailure> {
        guard let chain = try? Certificate.chain(pem: pem), !chain.isEmpty else { return .failure(ChainFailure("no certificate parses")) }
        guard chain.count >= 2, chain.count <= Self.maxChainLength else {
            return .failure(ChainFailure("\(chain.count) certificates (2–\(Self.maxChainLength) expected: the leaf and its issuers)"))
        }
        let leaf = chain[0], intermediates = Array(chain.dropFirst())
        // The GPU leaf signs SPDM responses: an end entity allowed to sign, never a CA.
        guard !leaf.isCA else { return .failure(ChainFailure("the first certificate is a CA (basicConstraints cA TRUE), not the GPU's signing leaf")) }
        guard leaf.extensionValue(oid: Self.keyUsageOID) != nil, leaf.mayDigitallySign else {
            return .failure(ChainFailure("the leaf's keyUsage lacks digitalSignature"))
        }
        let key = NvidiaGPUChainCache.key(intermediates)
        if key.map({ cache.verified($0, at: now) }) != true {
            let last = chain[chain.count - 1]
            if last.isSelfSigned, !roots.contains(where: { root in (try? root.der).map { $0 == (try? last.der) } ?? false }) {
                return .failure(ChainFailure("the chain ends at another root (\(last.subject))"))
            }
            if let error = leaf.verify(anchors: roots, intermediates: intermediates, at: now) {
                return .failure(ChainFailure(error.message))
            }
        }
        // On every call, cached or not: the leaf's signature by the next certificate, and both valid now.
        if let error = leaf.verify(anchors: [intermediates[0]], at: now, partialChain: true) {
            return .failure(ChainFailure("the leaf is not issued by the next certificate: \(error.message)"))
        }
        if let key, !cache.verified(key, at: now) {
            var window = TDXWindow()
            for c in intermediates + roots { window.narrow(by: c) }
            cache.store(key, window: window)
        }
        return .success(leaf)
    }

    /// Why reference values could not be chosen (e.g. `rim_index_conflict`).
    struct LookupFailure: Error { var violation: PolicyViolation }

    struct ChainFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// The FWID digests in a TcbInfo extension value: every SEQUENCE { OID, OCTET STRING } found
    /// among the top-level elements of the extension's SEQUENCE and inside a `fwids [6]` list
    /// (TCG DICE TcbInfo; NVIDIA's leaf carries the FWID as such a pair directly in the SEQUENCE).
    /// Anything that does not parse yields no FWID.
    static func fwids(_ value: [UInt8]) -> [[UInt8]] {
        var outer = DER.Reader(value)
        guard var body = try? outer.sequence("tcbInfo") else { return [] }
        var found: [[UInt8]] = []
        func pair(_ element: [UInt8]) -> [UInt8]? {
            var r = DER.Reader(element)
            guard var s = try? r.sequence("fwid"), (try? s.read(DER.objectIdentifierTag, "fwid.hashAlg")) != nil,
                  let digest = try? s.octetString("fwid.digest"), s.isAtEnd else { return nil }
            return digest
        }
        var count = 0
        while !body.isAtEnd, count < 32, let element = try? body.element("tcbInfo.element") {
            count += 1
            if element.first == DER.sequenceTag, let d = pair(element) { found.append(d) }
            if element.first == DER.contextTag(6, constructed: true) {
                var list = DER.Reader(element)
                guard let content = try? list.read(DER.contextTag(6, constructed: true), "fwids") else { continue }
                var items = DER.Reader(content)
                while !items.isAtEnd, found.count < 32, let item = try? items.element("fwids.item") {
                    if let d = pair(item) { found.append(d) }
                }
            }
        }
        return found
    }

    static func compare(_ blocks: [SPDMMeasurementTranscript.Block], _ references: NvidiaGPUReferenceValues?) -> [NvidiaGPUClaims.Measurement] {
        var out = blocks.map { b -> NvidiaGPUClaims.Measurement in
            let index = Int(b.index)
            guard let references, references.active.contains(index) else {
                let complete = references?.complete ?? false
                return .init(index: index, digest: Hex.encode(b.value), reference: complete ? .inactive : .missing)
            }
            let allowed = references.alternatives[index] ?? []
            return .init(index: index, digest: Hex.encode(b.value), reference: allowed.contains(b.value) ? .matched : .mismatched)
        }
        if let references {
            let present = Set(blocks.map { Int($0.index) })
            for index in references.active.sorted() where !present.contains(index) {
                out.append(.init(index: index, digest: nil, reference: .mismatched))
            }
        }
        return out
    }
}

extension NvidiaGPUEvidence {
    /// At most this many GPUs in one bundle (an HGX board has eight).
    public static let maxBundleDevices = 16
    public static let maxBundleBytes = 1 << 20

    /// The evidence of several GPUs as NVIDIA's PPCIe tooling writes it: a JSON array of objects
    /// whose `evidence` is the base64 SPDM transcript and `certificate` the base64 PEM chain (other
    /// members, such as the unsigned `nonce` and versions, are ignored: the verifier reads them
    /// from the signed transcript). Throws `tee_evidence_malformed`.
    public static func bundle(json: [UInt8]) throws -> [NvidiaGPUEvidence] {
        struct Entry: Decodable { var evidence: String; var certificate: String }
        guard json.count <= maxBundleBytes else {
            throw VouchError(.teeEvidenceMalformed, "the GPU evidence bundle is larger than \(maxBundleBytes) bytes", context: ["field": "bundle"])
        }
        guard let entries = try? JSONDecoder().decode([Entry].self, from: Data(json)) else {
            throw VouchError(.teeEvidenceMalformed, "the GPU evidence bundle is not a JSON array of {evidence, certificate}", context: ["field": "bundle"])
        }
        guard !entries.isEmpty, entries.count <= maxBundleDevices else {
            throw VouchError(.teeEvidenceMalformed, "the GPU evidence bundle holds \(entries.count) devices (1–\(maxBundleDevices))", context: ["field": "bundle"])
        }
        return try entries.enumerated().map { i, e in
            guard let transcript = Data(base64Encoded: e.evidence), let chain = Data(base64Encoded: e.certificate) else {
                throw VouchError(.teeEvidenceMalformed, "GPU \(i) in the bundle is not base64", context: ["field": "bundle[\(i)]"])
            }
            return NvidiaGPUEvidence(transcript: [UInt8](transcript), certificateChainPEM: String(decoding: chain, as: UTF8.self))
        }
    }
}

extension NvidiaGPUClaims {
    /// What the `devices.gpus` policy rules read of these (verified) claims; `device` names the
    /// GPU in violations, e.g. `gpu[3]`.
    public func facts(device: String) -> GPUFacts {
        GPUFacts(device: device, driverVersion: driverVersion, vbiosVersion: vbiosVersion, project: project, projectSKU: projectSKU,
                 chipSKU: chipSKU, measurements: measurements.map { m in
                     let result: GPUFacts.Reference
                     switch m.reference {
                     case .matched: result = .matched
                     case .mismatched: result = .mismatched
                     case .missing: result = .missing
                     case .inactive: result = .inactive
                     }
                     return GPUFacts.Measurement(index: m.index, result: result)
                 })
    }
}
