import Foundation
import VouchAttesterKit
import VouchCore
import VouchRuntime

/// `vouch-attester gpu-evidence --nonce HEX [--out FILE] [--simulate-gpus N
/// [--simulate-tee-platform DIR] [--simulate-tee-options FILE] [--state-dir DIR]]`: every GPU's
/// evidence for the nonce as NVIDIA's PPCIe JSON bundle, from NVML or from the software GPU board.
/// Usage errors exit 2, collection failures 1.
func gpuEvidenceCommand(_ words: [String]) -> Never {
    let gargs: Arguments
    do {
        gargs = try Arguments(words, options: ["nonce", "out", "simulate-gpus", "simulate-tee-platform", "simulate-tee-options", "state-dir"])
    } catch { fail(error, prefix: "gpu-evidence: ") }
    guard let nonceText = gargs["nonce"], nonceText.count == 64, let nonce = try? Hex.decode(nonceText.lowercased()) else {
        fail("gpu-evidence: --nonce takes 64 hex digits (the verifier's 32-byte SPDM nonce)")
    }
    let source: any GPUEvidenceSource
    if let countText = gargs["simulate-gpus"] {
        guard let count = Int(countText), (1...16).contains(count) else { fail("gpu-evidence: --simulate-gpus takes 1-16") }
        let directory = gargs["simulate-tee-platform"] ?? (gargs["state-dir"] ?? "/var/lib/vouch-attester") + "/simulated-tee"
        do { source = try SimulatedGPUEvidenceSource(platformDirectory: directory, count: count, optionsFile: gargs["simulate-tee-options"]) } catch {
            fail(error, prefix: "gpu-evidence: ")
        }
    } else {
        for o in ["simulate-tee-platform", "simulate-tee-options"] where gargs[o] != nil { fail("gpu-evidence: --\(o) goes with --simulate-gpus") }
        source = NVMLGPUEvidenceSource()
    }
    do {
        let bundle = try source.gpuEvidenceBundle(nonce: nonce)
        if let out = gargs["out"] {
            try Files.writeAtomically(bundle, to: out)
        } else {
            FileHandle.standardOutput.write(Data(bundle))
        }
        exit(0)
    } catch { fail(error, prefix: "gpu-evidence: ") }
}
