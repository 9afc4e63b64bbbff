import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTestSupport

/// GPUs beside a TPM quote: the quote's qualifying data is `EnrollmentBinding.composite` of the
/// request's binding and every GPU's digest (the corpus's eight real H100s, their SPDM nonce
/// standing for the challenge nonce). The set verifies; a GPU dropped breaks the quote's binding.
final class TPMCompositeTests: XCTestCase {
    func testEightGPUsBesideATPMQuote() throws {
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: fixture("nvidia-gpu/manifest.json"))) as! [String: Any]
        let nonce = try Hex.decode((manifest["samples"] as! [[String: Any]]).first { $0["dir"] as? String == "h100-ppcie-8gpu-nvtrust" }!["nonce"] as! String)
        let at = Date.parseRFC3339(manifest["verify_now"] as! String)!
        let gpus = try NvidiaGPUEvidence.bundle(json: [UInt8](Data(contentsOf: fixture("nvidia-gpu/h100-ppcie-8gpu-nvtrust/gpu_evidence.json")))).enumerated().map {
            RawEvidence(device: "gpu\($0.offset)", payload: .nvidiaGPU($0.element))
        }
        let binding = EnrollmentBinding.reattestationData(nonce: nonce)
        func composite(_ devices: [RawEvidence]) -> [UInt8] {
            EnrollmentBinding.composite(binding: binding, devices: devices.map { ($0.device, $0.kind.rawValue, $0.payload.deviceDigest!) })
        }
        let ak = try SoftwareAK()
        let q = try ak.quote(nonce: composite(gpus))
        let quote = RawEvidence(device: "tpm", payload: .tpm(TPMQuoteEvidence(attest: q.attest, signature: q.signature, pcrs: q.pcrs, eventLog: nil, modelLog: nil)))
        var policy = Policy(name: "gpu", version: 1, pcrBank: .sha256, pcrValues: [0: [[UInt8](repeating: 0, count: 32)]])
        var rules = GPUPolicy()
        rules.count = 8
        rules.referenceValues = .reported
        policy.devices = DevicesPolicy(gpus: rules)
        let verifiers = EvidenceVerifiers([TPMEvidenceVerifier(), NvidiaGPUEvidenceVerifier(trust: GPUTrust())])
        func context(_ devices: [RawEvidence]) -> VerificationContext {
            VerificationContext(hostID: "h", binding: composite(devices), nonce: nonce, enrolled: EnrolledKeys(akPublic: ak.tpm2b), policy: policy,
                                digester: OpenSSLDigester(), now: at)
        }
        guard case let .authenticated(set) = verifiers.authenticate([quote] + gpus, context: context(gpus)),
              case let .trusted(trusted) = verifiers.appraise(set, accepted: .none, context: context(gpus)) else {
            return XCTFail("the quote and eight GPUs were refused")
        }
        XCTAssertEqual(trusted.results.map(\.device), ["tpm"] + (0..<8).map { "gpu\($0)" })
        XCTAssertEqual(trusted.claims.devices?.count, 8)
        XCTAssertNotNil(trusted.claims.clock, "the platform's claims stay the quote's")

        // Seven GPUs sent (the broker's composite then differs from the quote's): the quote's
        // qualifying data no longer matches; and the policy wants gpu7 anyway.
        let seven = Array(gpus.prefix(7))
        guard case let .rejected(errors) = verifiers.authenticate([quote] + seven, context: context(seven)) else { return XCTFail("seven GPUs accepted") }
        XCTAssertEqual(errors.first?.code, .evidenceMissing)
        policy.devices = nil
        guard case let .rejected(bindingErrors) = verifiers.authenticate([quote] + seven, context: context(seven)) else { return XCTFail("a GPU dropped unnoticed") }
        XCTAssertEqual(bindingErrors.first?.code, .qualifyingDataMismatch)
    }
}
