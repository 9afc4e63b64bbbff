import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTEESim
import VouchTEEWire
import VouchTestSupport

/// Composite evidence through the broker's verifiers (`EvidenceVerifiers`): a software SEV-SNP
/// guest's report binding the corpus's eight real H100s (the PPCIe sample, whose SPDM nonce stands
/// for the challenge nonce) by `EnrollmentBinding.composite`; any GPU dropped, added, reordered,
/// renamed or changed breaks the report's binding, and a GPU whose nonce is not the challenge's is
/// refused on its own.
final class CompositeEvidenceTests: XCTestCase {
    let hostKey = try! PrivateKey.generate(.p256)
    var spki: [UInt8] { try! hostKey.publicKey.canonicalSPKIDER }
    let agentSPKI = try! PrivateKey.generate(.p256).publicKey.canonicalSPKIDER
    var host: TEEHostIdentity {
        TEEHostIdentity(kind: .sevSNP, hostKey: spki, chipID: SNPSim.milan.chipID, endorsementIssuer: SNPSim.milan.ask.subject, simulated: true)
    }

    func verifiers() throws -> EvidenceVerifiers {
        let trust = TEETrust().trustingSimulation(snp: try SNPSim.store([SNPSim.milan]), tdxRoots: nil)
        return EvidenceVerifiers([SNPEvidenceVerifier(trust: trust), NvidiaGPUEvidenceVerifier(trust: trust.gpu)])
    }

    func nonce() throws -> [UInt8] { try Hex.decode(XCTUnwrap(GPUSamples.manifest().samples.first { $0.dir == "h100-ppcie-8gpu-nvtrust" }?.nonce)) }

    func gpus() throws -> [RawEvidence] {
        try NvidiaGPUEvidence.bundle(json: GPUSamples.bytes(GPUSamples.ppcie)).enumerated().map {
            RawEvidence(device: "gpu\($0.offset)", payload: .nvidiaGPU($0.element))
        }
    }

    /// The guest's report bound to `binding`, signed by the host key over it.
    func snp(binding: [UInt8]) throws -> RawEvidence {
        let sim = SNPSim.milan
        let report = sim.report(signer: .vcek, reportData: EnrollmentBinding.teeReportData(binding: binding))
        return RawEvidence(device: "sev-snp", payload: .sevSNP(SNPRawEvidence(report: try sim.sign(report), endorsement: .certificate(try sim.vcek.der),
                                                                              hostKeySignature: try hostKey.sign(TEEHostIdentity.signedMessage(binding: binding), hash: .sha256))))
    }

    /// The verification context of an enrollment for `nonce`, the platform bound to the composite of `devices`.
    func context(_ nonce: [UInt8], devices: [RawEvidence], policy edit: (inout Policy) -> Void = { _ in }) -> (VerificationContext, [UInt8]) {
        var policy = Policy(name: "gpu", version: 1, pcrBank: .sha256, pcrValues: [:])
        policy.snp = SNPPolicy()
        policy.snp?.allowAnyMeasurement = true
        edit(&policy)
        let base = EnrollmentBinding.qualifyingData(nonce: nonce, agentSPKI: agentSPKI)
        let composite = EnrollmentBinding.composite(binding: base, devices: devices.compactMap { d in d.payload.deviceDigest.map { (d.device, d.kind.rawValue, $0) } })
        return (VerificationContext(hostID: host.hostID, binding: composite, nonce: nonce, enrolled: EnrolledKeys(tee: host), policy: policy,
                                    digester: OpenSSLDigester(), platform: .sevSNP, now: GPUSamples.now), composite)
    }

    func authenticate(_ verifiers: EvidenceVerifiers, platform: RawEvidence, devices: [RawEvidence], context: VerificationContext) -> SetAuthentication {
        verifiers.authenticate([platform] + devices, context: context)
    }

    func testEightGPUsBoundThroughTheReportVerifyAsNineDevices() throws {
        let n = try nonce(), devices = try gpus()
        let (ctx, composite) = context(n, devices: devices)
        let verifiers = try verifiers()
        guard case let .authenticated(set) = authenticate(verifiers, platform: try snp(binding: composite), devices: devices, context: ctx) else {
            return XCTFail("the composite did not authenticate")
        }
        XCTAssertEqual(set.devices.map(\.device), ["sev-snp"] + (0..<8).map { "gpu\($0)" })
        guard case let .trusted(trusted) = verifiers.appraise(set, accepted: .none, context: ctx) else { return XCTFail("not trusted") }
        XCTAssertEqual(trusted.results.map(\.device), ["sev-snp"] + (0..<8).map { "gpu\($0)" })
        let claims = try XCTUnwrap(trusted.claims.devices)
        XCTAssertEqual(claims.map(\.device), (0..<8).map { "gpu\($0)" })
        XCTAssertTrue(claims.allSatisfy { $0.kind == "nvidia-gpu" && $0.driverVersion == "590.12" && $0.referenceValues == "missing" && !$0.simulated })
        XCTAssertEqual(claims.map(\.sha256), devices.map { Hex.encode($0.payload.deviceDigest!) })
        XCTAssertEqual(Set(claims.map(\.sha256)).count, 8, "eight distinct pieces of evidence")
        XCTAssertEqual(Set(claims.compactMap(\.deviceKey)).count, 8, "eight GPUs, by their leaf keys")
        XCTAssertEqual(Set(claims.map(\.fwid)).count, 1, "one firmware: the FWID names the firmware, not the GPU")
        XCTAssertNotNil(trusted.claims.tee, "the platform's claims stay the record's")
        XCTAssertEqual(trusted.attestationExtension(attestedAt: GPUSamples.now).devices, claims)
        // The EAR: one submodule per GPU, judged by what it showed — no RIM compared, so no
        // executables claim and a warning, whatever the host's status.
        var ext = trusted.attestationExtension(attestedAt: GPUSamples.now)
        ext.subject = AttestationExtension.Subject(spiffeId: "spiffe://t/agent", spkiSHA256: Crypto.sha256(agentSPKI))
        let payload = try JSONSerialization.jsonObject(with: Data(try ext.earPayload(device: "sev-snp", devices: trusted.results.map(\.device),
                                                                                      verifierBuild: "test", expiresAt: GPUSamples.now + 60, simulated: false))) as? [String: Any]
        let submods = try XCTUnwrap(payload?["submods"] as? [String: [String: Any]])
        XCTAssertEqual(submods.keys.sorted(), (0..<8).map { "gpu\($0)" } + ["sev-snp"])
        XCTAssertEqual(submods["gpu5"]?["ear.status"] as? String, "warning")
        XCTAssertEqual((submods["gpu5"]?["ear.trustworthiness-vector"] as? [String: Int])?["executables"], 0)
        XCTAssertEqual((payload?["vouch.devices"] as? [[String: Any]])?.count, 8)
        XCTAssertEqual(try AttestationExtension(earPayload: try ext.earPayload(device: "sev-snp", devices: ["sev-snp"], verifierBuild: "t",
                                                                             expiresAt: GPUSamples.now + 60, simulated: false)).devices, claims)
    }

    func testDroppingAddingReorderingRenamingOrChangingAGPUBreaksTheBinding() throws {
        let n = try nonce(), devices = try gpus()
        let (ctx, composite) = context(n, devices: devices)
        let verifiers = try verifiers()
        let report = try snp(binding: composite)
        var variants: [(String, [RawEvidence])] = [
            ("dropped", Array(devices.dropLast())),
            ("reordered", [devices[1], devices[0]] + devices.dropFirst(2)),
            ("added", devices + [RawEvidence(device: "gpu8", payload: devices[0].payload)]),
        ]
        variants.append(("renamed", devices.enumerated().map { RawEvidence(device: $0.offset == 0 ? "gpu9" : $0.element.device, payload: $0.element.payload) }))
        if case let .nvidiaGPU(e) = devices[3].payload {
            let chain = e.certificateChainPEM + "\n"   // the same chain, one byte more: another digest
            variants.append(("changed", devices.enumerated().map {
                $0.offset == 3 ? RawEvidence(device: "gpu3", payload: .nvidiaGPU(NvidiaGPUEvidence(transcript: e.transcript, certificateChainPEM: chain))) : $0.element
            }))
        }
        for (what, set) in variants {
            // The broker recomputes the composite from what arrived; the report bound what was sent.
            let (arrived, _) = context(n, devices: set)
            guard case let .rejected(errors) = authenticate(verifiers, platform: report, devices: set, context: arrived) else {
                XCTFail("\(what): authenticated"); continue
            }
            XCTAssertEqual(errors.first?.code, .snpReportDataMismatch, what)
        }
        _ = ctx
    }

    func testAGPUForAnotherNonceOrWithoutOneIsRefused() throws {
        let devices = try gpus()
        let other = Crypto.sha256(Array("another challenge".utf8))
        let verifiers = try verifiers()
        let (ctx, composite) = context(other, devices: devices)
        guard case let .rejected(errors) = authenticate(verifiers, platform: try snp(binding: composite), devices: devices, context: ctx) else {
            return XCTFail("authenticated")
        }
        XCTAssertEqual(errors.first?.code, .nvidiaGPUNonceMismatch)
        XCTAssertEqual(errors.first?.context["device"], "gpu0")
        var noNonce = ctx
        noNonce.nonce = nil
        guard case let .rejected(e2) = authenticate(verifiers, platform: try snp(binding: composite), devices: devices, context: noNonce) else {
            return XCTFail("authenticated")
        }
        XCTAssertEqual(e2.first?.code, .nvidiaGPUNonceMismatch)
    }

    /// The software GPU board's eight GPUs beside the software SEV-SNP guest, compared with the
    /// board's own RIMs (verified under its RIM root into an `NvidiaRIMStore`), judged by a
    /// `devices.gpus` policy: all matched; GPU 3 reporting a wrong VBIOS block is refused
    /// (`nvidia_gpu_measurement_mismatch`) with only its submodule contraindicated; seven GPUs
    /// where eight are required are missing one.
    func testSoftwareGPUsAreComparedWithTheirRIMsAndJudgedByTheDevicesRules() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("composite-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let board = try SimulatedGPUPlatform(directory: dir.path, count: 8)
        let now = Date()
        var trust = TEETrust().trustingSimulation(snp: try SNPSim.store([SNPSim.milan]), tdxRoots: nil)
        trust.gpu.simulatedDeviceRoots = [board.deviceCA.certificate]
        trust.gpu.simulatedReferences = try NvidiaRIMStore(directory: URL(fileURLWithPath: board.rimsDirectory),
                                                            verifier: try NvidiaRIMVerifier(roots: [board.rimRoot.certificate]), at: now)
        XCTAssertEqual(trust.gpu.simulatedReferences?.verified.count, 2)
        let verifiers = EvidenceVerifiers([SNPEvidenceVerifier(trust: trust), NvidiaGPUEvidenceVerifier(trust: trust.gpu)])
        let nonce = try Crypto.randomBytes(32)
        func gpus(_ options: [String: String] = [:]) throws -> [RawEvidence] {
            try board.evidence(nonce: nonce, options: options).enumerated().map {
                RawEvidence(device: "gpu\($0.offset)", payload: .nvidiaGPU(NvidiaGPUEvidence(transcript: $0.element.transcript, certificateChainPEM: $0.element.certificateChainPEM)))
            }
        }
        func appraise(_ devices: [RawEvidence]) throws -> Appraisal? {
            var (ctx, composite) = context(nonce, devices: devices) { p in
                var rules = GPUPolicy()
                rules.count = 8
                p.devices = DevicesPolicy(gpus: rules)
            }
            ctx.now = now
            switch authenticate(verifiers, platform: try snp(binding: composite), devices: devices, context: ctx) {
            case let .authenticated(set): return verifiers.appraise(set, accepted: .none, context: ctx)
            case let .rejected(errors): XCTAssertEqual(errors.first?.code, .evidenceMissing); return nil
            }
        }
        guard case let .trusted(trusted)? = try appraise(try gpus()) else { return XCTFail("eight good GPUs refused") }
        let claims = try XCTUnwrap(trusted.claims.devices)
        XCTAssertEqual(claims.map(\.referenceValues), Array(repeating: "matched", count: 8))
        XCTAssertTrue(claims.allSatisfy { $0.simulated && $0.rims.count == 2 })

        guard case let .rejected(violations, refusedClaims)? = try appraise(try gpus(["gpu3.block2": String(repeating: "33", count: 48)])) else {
            return XCTFail("a wrong VBIOS measurement was trusted")
        }
        XCTAssertEqual(violations.map(\.code), [.nvidiaGPUMeasurementMismatch])
        XCTAssertEqual(violations.first?.path, "gpu3.measurements[2]")
        XCTAssertEqual(refusedClaims?.devices?.map(\.referenceValues), Array(repeating: "matched", count: 3) + ["mismatched"] + Array(repeating: "matched", count: 4))

        // GPU 0 presented again as gpu1 (so eight names, seven GPUs): one GPU does not count twice.
        var twice = try gpus()
        twice[1] = RawEvidence(device: "gpu1", payload: twice[0].payload)
        guard case let .rejected(duplicate, _)? = try appraise(twice) else { return XCTFail("a GPU counted twice") }
        XCTAssertEqual(duplicate.map(\.code), [.nvidiaGPUDuplicateDevice])
        XCTAssertEqual(duplicate.first?.path, "gpu1.deviceKey")

        let seven = try appraise(Array(try gpus().prefix(7)))
        XCTAssertNil(seven, "seven GPUs: gpu7 is missing")
    }

    func testCompositeBindingIsTheBindingAloneWithoutDevicesAndCoversEveryField() {
        let b = Crypto.sha256([1]), d = Crypto.sha256([2])
        XCTAssertEqual(EnrollmentBinding.composite(binding: b, devices: []), b)
        let base = EnrollmentBinding.composite(binding: b, devices: [("gpu0", "nvidia-gpu", d)])
        XCTAssertEqual(base.count, 32)
        XCTAssertNotEqual(base, EnrollmentBinding.composite(binding: Crypto.sha256([3]), devices: [("gpu0", "nvidia-gpu", d)]))
        XCTAssertNotEqual(base, EnrollmentBinding.composite(binding: b, devices: [("gpu1", "nvidia-gpu", d)]))
        XCTAssertNotEqual(base, EnrollmentBinding.composite(binding: b, devices: [("gpu0", "nvidia-gpx", d)]))
        XCTAssertNotEqual(base, EnrollmentBinding.composite(binding: b, devices: [("gpu0", "nvidia-gpu", Crypto.sha256([4]))]))
        XCTAssertNotEqual(base, EnrollmentBinding.composite(binding: b, devices: [("gpu0", "nvidia-gpu", d), ("gpu0", "nvidia-gpu", d)]))
        // Lengths are framed: moving a byte between the name and the kind changes the digest.
        XCTAssertNotEqual(EnrollmentBinding.composite(binding: b, devices: [("gpu0n", "vidia-gpu", d)]), base)
        XCTAssertNotEqual(EnrollmentBinding.deviceDigest(kind: "k", parts: [[1, 2], [3]]), EnrollmentBinding.deviceDigest(kind: "k", parts: [[1], [2, 3]]))
    }
}
