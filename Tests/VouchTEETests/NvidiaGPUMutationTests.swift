import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchTEEWire
import VouchTestSupport

/// Seeded mutations of the real GPU samples: any changed byte of the transcript is refused — by
/// the parser when a length, code or bound breaks, else by the signature (it covers every byte
/// up to the signature, which is checked before the FWID, nonce or versions are read) — and never
/// yields claims. Every truncation is malformed.
final class NvidiaGPUMutationTests: XCTestCase {
    static let allowed: Set<ErrorCode> = [.teeEvidenceMalformed, .nvidiaGPUSignatureInvalid]

    func testSeededByteMutationsAreRefused() throws {
        let seed = TestSeed()
        var rng = seed.generator
        let verifier = NvidiaGPUVerifier()
        for dir in GPUSamples.single {
            let evidence = try GPUSamples.evidence(dir)
            let nonce = try SPDMMeasurementTranscript(evidence.transcript).requestNonce
            for i in 0..<300 {
                var t = evidence.transcript
                let offset = Int.random(in: 0..<t.count, using: &rng)
                t[offset] ^= UInt8.random(in: 1...255, using: &rng)
                let result = verifier.verify(NvidiaGPUEvidence(transcript: t, certificateChainPEM: evidence.certificateChainPEM), at: GPUSamples.now, expectedNonce: nonce)
                XCTAssertFalse(result.isVerified, "\(seed) #\(i) \(dir) offset \(offset)")
                XCTAssertEqual(result.violations.count, 1, "\(seed) #\(i) \(dir) offset \(offset)")
                XCTAssertTrue(result.violations.allSatisfy { Self.allowed.contains($0.code) }, "\(seed) #\(i) \(dir) offset \(offset): \(result.violations)")
                if case let .rejected(_, claims) = result { XCTAssertNil(claims, "\(seed) #\(i)") }
            }
        }
    }

    func testEveryTruncationIsMalformed() throws {
        let t = try GPUSamples.transcript("h100-nvtrust-sample")
        for n in 0..<t.count {
            XCTAssertThrowsError(try SPDMMeasurementTranscript(Array(t.prefix(n))), "\(n)") { e in
                XCTAssertEqual((e as? VouchError)?.code, .teeEvidenceMalformed, "\(n)")
            }
        }
        // Bytes after the signature: a few zeros are tolerated (outside the signed bytes); anything else is not.
        XCTAssertEqual(try SPDMMeasurementTranscript(t + [0, 0]).trailingZeros, 2)
        XCTAssertThrowsError(try SPDMMeasurementTranscript(t + [1]))
        XCTAssertThrowsError(try SPDMMeasurementTranscript(t + [UInt8](repeating: 0, count: 17)))
    }

    func testSeededMutationsOfThePPCIeDevices() throws {
        let seed = TestSeed()
        var rng = seed.generator
        let verifier = NvidiaGPUVerifier()
        let devices = try NvidiaGPUEvidence.bundle(json: GPUSamples.bytes(GPUSamples.ppcie))
        for i in 0..<200 {
            let d = Int.random(in: 0..<devices.count, using: &rng)
            var t = devices[d].transcript
            let offset = Int.random(in: 0..<t.count, using: &rng)
            t[offset] ^= UInt8.random(in: 1...255, using: &rng)
            let result = verifier.verify(NvidiaGPUEvidence(transcript: t, certificateChainPEM: devices[d].certificateChainPEM), at: GPUSamples.now)
            XCTAssertTrue(result.violations.count == 1 && Self.allowed.contains(result.violations[0].code), "\(seed) #\(i) gpu \(d) offset \(offset): \(result.violations)")
        }
        // One device's chain with another device's transcript: the signature fails.
        let swapped = NvidiaGPUEvidence(transcript: devices[0].transcript, certificateChainPEM: devices[1].certificateChainPEM)
        XCTAssertEqual(verifier.verify(swapped, at: GPUSamples.now).violations.map(\.code), [.nvidiaGPUSignatureInvalid])
    }
}
