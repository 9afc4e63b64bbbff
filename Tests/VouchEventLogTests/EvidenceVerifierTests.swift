import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchPolicy
import VouchTPMWire
import VouchTestSupport

/// Evidence verifiers as plug-ins: the registry refuses what it has no verifier for, the TPM
/// verifier gives the results the quote verifier and the appraiser gave before, and a set of
/// devices is trusted only when every device is.
final class EvidenceVerifierTests: XCTestCase {
    let digester = OpenSSLDigester()
    let tpm = EvidenceVerifiers([TPMEvidenceVerifier()])
    let nonce = [UInt8](repeating: 7, count: 32)

    // MARK: fixtures

    /// The GCE Shielded VM's genuine quote (SHA-1 AK, all 24 SHA-1 PCRs, empty qualifying data).
    func gcp(device: String = "tpm", eventLog: [UInt8]? = nil, attest: [UInt8]? = nil) throws -> (RawEvidence, VerificationContext) {
        let f = try GCPQuoteFixture()
        var policy = Policy(name: "t", version: 1, pcrBank: .sha1, pcrValues: [:])
        policy.allowSHA1AK = true
        let raw = RawEvidence(device: device, payload: .tpm(TPMQuoteEvidence(attest: attest ?? f.attest, signature: f.signature, pcrs: f.pcrs,
                                                                             eventLog: eventLog ?? f.eventLog, modelLog: nil)))
        let context = VerificationContext(hostID: "h", binding: [], enrolled: EnrolledKeys(akPublic: try f.akTPMPublic().tpm2b), policy: policy, digester: digester)
        return (raw, context)
    }

    /// A software AK's quote of SHA-256 PCR 0 (zeros) bound to `nonce`.
    func software(device: String = "tpm", ak: SoftwareAK, firmware: UInt64 = 0x2026_0001,
                  _ configure: (inout Policy) -> Void = { _ in }) throws -> (RawEvidence, VerificationContext) {
        let q = try ak.quote(nonce: nonce, firmwareVersion: firmware)
        var policy = Policy(name: "t", version: 1, pcrBank: .sha256, pcrValues: [0: [[UInt8](repeating: 0, count: 32)]])
        configure(&policy)
        let raw = RawEvidence(device: device, payload: .tpm(TPMQuoteEvidence(attest: q.attest, signature: q.signature, pcrs: q.pcrs, eventLog: nil, modelLog: nil)))
        return (raw, VerificationContext(hostID: "h", binding: nonce, enrolled: EnrolledKeys(akPublic: ak.tpm2b), policy: policy, digester: digester))
    }

    func authenticationCodes(_ a: SetAuthentication) -> [ErrorCode] {
        if case let .rejected(errors) = a { return errors.map(\.code) }
        return []
    }

    func appraisalCodes(_ a: Appraisal) -> [ErrorCode] {
        if case let .rejected(violations, _) = a { return violations.map(\.code) }
        return []
    }

    /// Both stages through the registry, as the broker runs them.
    func run(_ verifiers: EvidenceVerifiers, _ raw: [RawEvidence], _ context: VerificationContext, accepted: AcceptedState = .none) -> Result<Appraisal, VouchError> {
        switch verifiers.authenticate(raw, context: context) {
        case let .authenticated(set): return .success(verifiers.appraise(set, accepted: accepted, context: context))
        case let .rejected(errors): return .failure(errors[0])
        }
    }

    // MARK: the registry

    func testAKindWithNoVerifierIsRefusedNeverPassed() throws {
        let (raw, context) = try gcp()
        let none = EvidenceVerifiers([])
        XCTAssertNil(none.verifier(for: .tpm))
        XCTAssertEqual(authenticationCodes(none.authenticate([raw], context: context)), [.evidenceKindUnsupported])
        XCTAssertNotNil(tpm.verifier(for: .tpm))
        guard case .authenticated = tpm.authenticate([raw], context: context) else { return XCTFail("the genuine quote was refused") }
    }

    func testTheSetMustNameEachDeviceOnceAndHoldEveryRequiredDevice() throws {
        let (raw, context) = try gcp()
        let (other, _) = try gcp(device: "tpm1")
        XCTAssertEqual(authenticationCodes(tpm.authenticate([raw, raw], context: context)), [.evidenceDeviceDuplicate])
        XCTAssertEqual(authenticationCodes(tpm.authenticate([], context: context)), [.evidenceMissing])
        XCTAssertEqual(authenticationCodes(tpm.authenticate([other], context: context)), [.evidenceMissing], "the policy requires device tpm")
        XCTAssertEqual(Appraiser.requiredDevices(context.policy).map(\.device), ["tpm"])
        XCTAssertEqual(Appraiser.appraise(hostID: "h", [], policy: context.policy).codes, [.evidenceMissing])
    }

    // MARK: the TPM verifier gives the results of before

    /// The GCE quote and its log: trusted with the claims of the PCRs the log extends; a variable
    /// altered under its digest is refused with the same code, path and no claims as before.
    func testTPMVerifierOnTheGCPFixture() throws {
        let (raw, context) = try gcp()
        guard case let .success(.trusted(evidence)) = run(tpm, [raw], context) else { return XCTFail("the genuine quote and log were refused") }
        XCTAssertEqual(evidence.claims.boot?.pcrs, [0, 4, 5, 7, 11, 12, 13, 14])
        XCTAssertEqual(evidence.devices.map(\.device), ["tpm"])
        XCTAssertEqual(evidence.results.map(\.device), ["tpm"])
        XCTAssertEqual(evidence.results.map(\.status), [.affirming])
        XCTAssertEqual(evidence.platform.kind, .tpm)

        // The same as the quote verifier and the appraiser called directly.
        let f = try GCPQuoteFixture()
        guard case let .verified(q) = QuoteVerifier.verify(attest: f.attest, signature: f.signature, akPublic: try f.akTPMPublic(),
                                                           expectedQualifyingData: [], pcrs: f.pcrs, allowSHA1: true),
              case let .trusted(direct) = Appraiser.appraise(hostID: "h", quote: q, eventLog: f.eventLog, modelLog: nil, previousClock: nil,
                                                              policy: context.policy, digester: digester) else { return XCTFail("refused directly") }
        XCTAssertEqual(direct.claims, evidence.claims)
        XCTAssertEqual(direct.record, evidence.record)
        XCTAssertEqual(evidence.record.measurementDigest, Hex.encode(q.pcrDigest))
        XCTAssertEqual(evidence.record.measurements, q.pcrs.hexMap)
        XCTAssertEqual(evidence.attestationExtension(attestedAt: Date(timeIntervalSince1970: 0)),
                       direct.attestationExtension(attestedAt: Date(timeIntervalSince1970: 0)))
        XCTAssertEqual(evidence.attestationExtension(attestedAt: Date()).evidenceDigest, Crypto.sha256(f.attest))

        let log = try TCGEventLog(bytes: f.eventLog)
        let e = try XCTUnwrap(log.events.first { $0.type == EventType.efiVariableDriverConfig && $0.pcr == 7 })
        var tampered = f.eventLog
        tampered[log.events[e.sequence + 1].offset - 1] ^= 0x01
        let (bad, _) = try gcp(eventLog: tampered)
        guard case let .success(.rejected(violations, claims)) = run(tpm, [bad], context) else { return XCTFail("the tampered log was trusted") }
        XCTAssertEqual(violations.map(\.code), [.eventDataMismatch])
        XCTAssertEqual(violations.map(\.path), ["eventLog.events[\(e.sequence)].EV_EFI_VARIABLE_DRIVER_CONFIG"])
        XCTAssertNil(claims)

        let (garbage, _) = try gcp(eventLog: [1, 2, 3])
        XCTAssertEqual(try run(tpm, [garbage], context).get().codes, [.eventLogMalformed])
    }

    /// Stage 1 refuses with the quote verifier's codes, in its order.
    func testTPMVerifierAuthenticatesAsTheQuoteVerifierDid() throws {
        let f = try GCPQuoteFixture()
        var flipped = f.attest
        flipped[flipped.count - 1] ^= 0x01
        let (forged, context) = try gcp(attest: flipped)
        XCTAssertEqual(authenticationCodes(tpm.authenticate([forged], context: context)), [.quoteSignatureInvalid])

        let (raw, _) = try gcp()
        var rebound = context
        rebound.binding = [1]
        XCTAssertEqual(authenticationCodes(tpm.authenticate([raw], context: rebound)), [.qualifyingDataMismatch])
        var noSHA1 = context
        noSHA1.policy.allowSHA1AK = false
        XCTAssertEqual(authenticationCodes(tpm.authenticate([raw], context: noSHA1)), [.akSchemeNotAllowed])
        var noAK = context
        noAK.enrolled = EnrolledKeys()
        XCTAssertEqual(authenticationCodes(tpm.authenticate([raw], context: noAK)), [.quoteSignatureInvalid])
        var otherAK = context
        otherAK.enrolled = EnrolledKeys(akPublic: try SoftwareAK().tpm2b)
        XCTAssertEqual(authenticationCodes(tpm.authenticate([raw], context: otherAK)), [.quoteSignatureSchemeMismatch], "SHA-1 signature, SHA-256 AK")

        // The single-piece convenience reports a stage-1 refusal as a violation of the device.
        guard case let .rejected(violations, record) = TPMEvidenceVerifier().verify(forged, accepted: .none, context: context) else { return XCTFail() }
        XCTAssertEqual(violations.map(\.code), [.quoteSignatureInvalid])
        XCTAssertEqual(violations.map(\.path), ["evidence.tpm"])
        XCTAssertNil(record)
    }

    /// Stage 2's clock and firmware checks read the accepted state, with the codes of before.
    func testTPMVerifierChecksTheClockAndFirmwareAgainstTheAcceptedState() throws {
        let ak = try SoftwareAK()
        let (raw, context) = try software(ak: ak, firmware: 0x2026_0001)
        func accepted(reset: UInt32 = 1, clock: UInt64 = 500, firmware: UInt64? = nil, tolerance: UInt64 = 0) -> AcceptedState {
            AcceptedState(clock: ClockState(resetCount: reset, restartCount: 0, clock: clock, safe: true, firmwareVersion: firmware), clockTolerance: tolerance)
        }
        guard case let .success(.trusted(e)) = run(tpm, [raw], context, accepted: accepted()) else { return XCTFail("refused") }
        XCTAssertEqual(e.claims.clock?.firmwareVersion, 0x2026_0001)
        XCTAssertFalse(e.claims.rebootedSinceLastAttestation)
        XCTAssertEqual(try run(tpm, [raw], context, accepted: accepted(reset: 2)).get().codes, [.clockRegressed])
        XCTAssertEqual(try run(tpm, [raw], context, accepted: accepted(clock: 2000)).get().codes, [.clockRegressed])
        XCTAssertEqual(try run(tpm, [raw], context, accepted: accepted(clock: 2000, tolerance: 1000)).get().codes, [])
        XCTAssertEqual(try run(tpm, [raw], context, accepted: accepted(firmware: 0x2026_0002)).get().codes, [.firmwareDowngraded])
        var tooOld = context
        tooOld.policy.minimumFirmwareVersion = 0x2026_0002
        XCTAssertEqual(try run(tpm, [raw], tooOld).get().codes, [.firmwareTooOld])
        // The policy's rules: PCR 0 must be all ones now.
        var strict = context
        strict.policy.pcrValues = [0: [[UInt8](repeating: 1, count: 32)]]
        XCTAssertEqual(try run(tpm, [raw], strict).get().codes, [.pcrNotAllowed])
        // The same codes as the appraiser's TPM path called directly.
        let q = try ak.quote(nonce: nonce, firmwareVersion: 0x2026_0001)
        guard case let .verified(vq) = QuoteVerifier.verify(attest: q.attest, signature: q.signature, akPublic: ak.tpmPublic, expectedQualifyingData: nonce,
                                                            pcrs: q.pcrs) else { return XCTFail() }
        XCTAssertEqual(Appraiser.appraise(hostID: "h", quote: vq, eventLog: nil, modelLog: nil, previousClock: accepted(firmware: 0x2026_0002).clock,
                                          policy: context.policy, digester: digester).codes, [.firmwareDowngraded])
    }

    // MARK: sets of devices

    /// Two devices: trusted only when both are, with one result per device; one rejected device
    /// rejects the set.
    func testASetIsTrustedOnlyWhenEveryDeviceIs() throws {
        let ak = try SoftwareAK()
        let (first, context) = try software(device: "tpm", ak: ak)
        let (second, _) = try software(device: "tpm1", ak: ak)
        guard case let .success(.trusted(both)) = run(tpm, [first, second], context) else { return XCTFail("refused") }
        XCTAssertEqual(both.devices.map(\.device), ["tpm", "tpm1"])
        XCTAssertEqual(both.results.map(\.device), ["tpm", "tpm1"])
        XCTAssertEqual(both.results.map(\.status), [.affirming, .affirming])
        XCTAssertEqual(both.platform.device, "tpm")

        // The second device's evidence fails stage 1 or stage 2: the set is refused.
        let other = try SoftwareAK()
        let (foreign, _) = try software(device: "tpm1", ak: other)
        XCTAssertEqual(authenticationCodes(tpm.authenticate([first, foreign], context: context)), [.quoteSignatureInvalid])
        let (older, _) = try software(device: "tpm1", ak: ak, firmware: 0x2025_0001)
        var minimum = context
        minimum.policy.minimumFirmwareVersion = 0x2026_0001
        XCTAssertEqual(try run(tpm, [first, older], minimum).get().codes, [.firmwareTooOld])

        // The policy judges each device: the GCE device has no SHA-256 PCR 0, the software one has.
        let (gce, gceContext) = try gcp(device: "tpm1")
        let verifier = TPMEvidenceVerifier()
        guard case let .verified(a) = verifier.verify(first, accepted: .none, context: context),
              case let .verified(b) = verifier.verify(gce, accepted: .none, context: gceContext) else { return XCTFail("refused") }
        XCTAssertEqual(Appraiser.appraise(hostID: "h", [a, b], policy: context.policy).codes, [.pcrMissing])
        guard case let .trusted(ab) = Appraiser.appraise(hostID: "h", [a, b], policy: Policy(name: "t", version: 1, pcrBank: .sha256, pcrValues: [:])) else {
            return XCTFail("refused")
        }
        XCTAssertEqual(ab.results.map(\.device), ["tpm", "tpm1"])
        // Without the required device `tpm`, no verdict is trusted.
        XCTAssertEqual(Appraiser.appraise(hostID: "h", [b], policy: context.policy).codes, [.evidenceMissing])
    }
}

extension Appraisal {
    var codes: [ErrorCode] {
        if case let .rejected(violations, _) = self { return violations.map(\.code) }
        return []
    }
}
