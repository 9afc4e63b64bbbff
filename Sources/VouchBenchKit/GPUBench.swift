import Foundation
import VouchAttestation
import VouchCore
import VouchPolicy
import VouchTEEWire

/// `vouch-bench gpu`: NVIDIA GPU evidence, NVIDIA RIMs and AWS Nitro documents on the corpus's
/// real samples (Tests/Fixtures), one thread, at the instants their manifests pin; rates per
/// CPU-second of the measuring thread (`TEEBench.rates`), wall clock in the details. Every call
/// must give the manifest's result; anything else stops the bench.
/// - GPU evidence: the 8-GPU PPCIe bundle with its nonce, per GPU. Chain cached: one verifier
///   kept across calls (`verifyAll`), so a call checks the leaf's signature by its issuer and the
///   SPDM signature, the chain above the leaf having verified once in its window. Cold: a fresh
///   verifier per GPU, so every certificate signature of the chain is checked each time.
/// - RIM comparison: the CoCo CI H100's evidence with the VBIOS RIM 96.00.74.00.1A verified once
///   (XML-DSig by libxmlsec1, chain to the CoRIM root) and its reference values kept; per call
///   the evidence verifies (chain cached) and its 64 measurements are compared (11 of the RIM's 12
///   active indices match, block 10 differs, as the corpus manifest says). Beside it, what
///   verifying that RIM costs when nothing is kept.
/// - Nitro: the beta-2022-production document at its pinned time, the AWS root compiled in.
public enum GPUBench {
    static let ppcie = "h100-ppcie-8gpu-nvtrust"
    static let coco = "h100-coco-ci-trustee"
    static let vbiosRIM = "rims/1010_0200_882_960074001A_PROD.swidtag"
    static let nitroSample = "beta-2022-production"

    public static func run(_ argv: [String]) throws -> Int32 {
        let (fixtures, seconds, out) = try Bench.fixtureOptions(argv)
        var results: [Bench.Result] = []

        // NVIDIA GPU evidence, per GPU.
        let gpuDir = fixtures.appendingPathComponent("nvidia-gpu")
        let now = try TEEBench.pinnedTime(gpuDir, sample: ppcie, field: "verify_now")
        let devices = try NvidiaGPUEvidence.bundle(json: TEEBench.read(gpuDir, "\(ppcie)/gpu_evidence.json"))
        let nonce = try Hex.decode(try manifestString(gpuDir, sample: ppcie, field: "nonce"))
        let warm = NvidiaGPUVerifier()
        func checkAll(_ v: NvidiaGPUVerifier) throws {
            guard v.verifyAll(devices, at: now, expectedNonce: nonce).isVerified else {
                throw VouchError(.internalError, "the PPCIe sample \(ppcie) was refused")
            }
        }
        try checkAll(warm)
        let what = "\(ppcie): \(devices.count) H100s (PPCIe bundle, 5-certificate chains, nonce checked) at \(now.formatted(.iso8601)), NVIDIA Device Identity CA compiled in"
        results.append(try perGPU("NVIDIA GPU evidence verify, chain cached",
                                  "\(what); one verifier kept (verifyAll): per GPU the PEM chain parse, the SPDM parse, the leaf's shape, its signature by the GSP BROM certificate and validity (partial chain), the SPDM P-384 signature, FWID, nonce, versions, the duplicate check",
                                  devices.count, seconds: seconds) { try checkAll(warm) })
        results.append(try perGPU("NVIDIA GPU evidence verify, cold",
                                  "\(what); a fresh NvidiaGPUVerifier per GPU: also the whole chain to the root (four certificate signatures) each time",
                                  devices.count, seconds: seconds) {
            for d in devices {
                guard NvidiaGPUVerifier().verify(d, at: now, expectedNonce: nonce).isVerified else {
                    throw VouchError(.internalError, "a GPU of \(ppcie) was refused")
                }
            }
        })

        // RIM reference comparison, the RIM verified once.
        let rimNow = try TEEBench.pinnedTime(gpuDir, sample: coco, field: "verify_now")
        let rimBytes = try TEEBench.read(gpuDir, vbiosRIM)
        let rims = try NvidiaRIMVerifier()
        let rim = try rims.verify(rimBytes, component: .vbios, expectedVersion: "96.00.74.00.1A", at: rimNow)
        let references = referenceValues(rim)
        let cocoEvidence = NvidiaGPUEvidence(transcript: try spdmTranscript(gpuDir, coco),
                                             certificateChainPEM: String(decoding: try TEEBench.read(gpuDir, "\(coco)/device_cert_chain.pem"), as: UTF8.self))
        let cocoNonce = try Hex.decode(try manifestString(gpuDir, sample: coco, field: "nonce"))
        func compare() throws {
            guard case let .verified(claims, _) = warm.verify(cocoEvidence, at: rimNow, expectedNonce: cocoNonce, references: references) else {
                throw VouchError(.internalError, "the \(coco) sample was refused")
            }
            let counts = Dictionary(grouping: claims.measurements, by: \.reference).mapValues(\.count)
            guard counts[.matched] == 11, counts[.mismatched] == 1 else {
                throw VouchError(.internalError, "the \(coco) sample against its VBIOS RIM: \(counts), not 11 matched and 1 mismatched")
            }
        }
        try compare()
        results.append(try TEEBench.row("NVIDIA GPU evidence verify + RIM reference comparison, RIM cached", "GPUs",
                               "\(coco) H100 (driver 580.95.05, VBIOS 96.00.74.00.1A) at \(rimNow.formatted(.iso8601)), its VBIOS RIM verified once and its reference values kept; per call the evidence verifies (chain cached) and its 64 measurements are compared: 11 of the RIM's 12 active indices match, block 10 differs (the manifest's result; no driver RIM for 580.95.05 in the corpus)",
                               seconds: seconds) { try compare() })
        results.append(try TEEBench.row("NVIDIA RIM verify, nothing kept", "RIMs",
                               "\(vbiosRIM) (\(rimBytes.count) bytes): libxml2 parse, KeyInfo chain (4 certificates) to the CoRIM signing root, XML-DSig (C14N 1.1, SHA-384, ECDSA P-384) by libxmlsec1, SWID reading: what a kept RIM saves per comparison",
                               seconds: seconds) { _ = try rims.verify(rimBytes, component: .vbios, expectedVersion: "96.00.74.00.1A", at: rimNow) })

        // AWS Nitro.
        let nitroDir = fixtures.appendingPathComponent("nitro")
        let nitroNow = try nitroTime(nitroDir, sample: nitroSample)
        let document = try TEEBench.read(nitroDir, "\(nitroSample)/attestation_doc.cbor")
        let nitro = try NitroVerifier()
        let bundle = try NitroDocument(bytes: document).cabundle.count
        func checkNitro() throws {
            guard nitro.verify(document: document, at: nitroNow).isVerified else {
                throw VouchError(.internalError, "the Nitro sample \(nitroSample) was refused")
            }
        }
        try checkNitro()
        var nitroRow = try TEEBench.row("AWS Nitro document verify", "documents",
                                        "\(nitroSample) (\(document.count) bytes, a cabundle of \(bundle) certificates) at \(nitroNow.formatted(.iso8601)), the AWS Nitro root compiled in, default policy: CBOR/COSE parse, root pin, the chain link by link (\(bundle) P-384 certificate signatures) and again by OpenSSL's path validation (\(bundle) more), the ES384 COSE signature, freshness, PCRs; nothing kept between calls",
                                        seconds: seconds) { try checkNitro() }
        nitroRow.signatures = 2 * bundle + 1
        results.append(nitroRow)

        try Bench.emit(results, to: out)
        return 0
    }

    /// A row whose `body` verifies `n` GPUs: GPUs per CPU-second, wall-clock GPUs per second in the detail.
    static func perGPU(_ name: String, _ detail: String, _ n: Int, seconds: Double, _ body: () throws -> Void) throws -> Bench.Result {
        let r = try TEEBench.rates(seconds: seconds, body)
        return Bench.Result(name: name, unit: "GPUs per CPU-second", rate: r.cpu * Double(n),
                            detail: "\(detail); \(n) GPUs per call; wall clock \(Int((r.wall * Double(n)).rounded())) GPUs/s")
    }

    /// A verified RIM's reference values as the GPU verifier compares them: RIM index i is SPDM block i + 1.
    static func referenceValues(_ rim: VerifiedNvidiaRIM) -> NvidiaGPUReferenceValues {
        var alternatives: [Int: [[UInt8]]] = [:]
        for m in rim.referenceValues.active { alternatives[m.index + 1] = m.alternatives }
        return NvidiaGPUReferenceValues(alternatives: alternatives)
    }

    static func spdmTranscript(_ dir: URL, _ sample: String) throws -> [UInt8] {
        let text = String(decoding: try TEEBench.read(dir, "\(sample)/attestation_report.hex"), as: UTF8.self)
        return try Hex.decode(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func manifestString(_ dir: URL, sample: String, field: String) throws -> String {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("manifest.json"))) as? [String: Any]
        let entry = (manifest?["samples"] as? [[String: Any]])?.first { $0["dir"] as? String == sample }
        guard let value = entry?[field] as? String else { throw VouchError(.config, "\(dir.path)/manifest.json has no \(field) for \(sample)") }
        return value
    }

    /// The Nitro manifest's `now` for a sample: its first word (an RFC 3339 time with milliseconds).
    static func nitroTime(_ dir: URL, sample: String) throws -> Date {
        let text = try manifestString(dir, sample: sample, field: "now").split(separator: " ").first.map(String.init) ?? ""
        guard let date = Date.parseRFC3339(text) else { throw VouchError(.config, "\(dir.path)/manifest.json: \(sample)'s now is not a time") }
        return date
    }
}
