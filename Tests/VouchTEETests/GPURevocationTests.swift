import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEESim

/// OCSP for GPU device chains through the broker's GPU verifier (stage 1, check 4): a chain root →
/// intermediate → GPU leaf made here, answers from Vouch's OCSP responder for the intermediate
/// (signed by the root) in an `OCSPStore`. Without an answer the chain is `missing` (refused under
/// `revocation: required`); a good answer makes it `good`; a revoked one refuses under any policy.
final class GPURevocationTests: XCTestCase {
    let now = Date()
    lazy var root = try! CertificateAuthority.tdxSimulationRoot(subject: [("O", "Test GPU vendor"), ("CN", "Test Device Identity CA")],
                                                                key: try! PrivateKey.generate(.p384), notBefore: now - 3600, notAfter: now + 86400)
    lazy var intermediate = try! root.tdxSimulationCA(subject: [("O", "Test GPU vendor"), ("CN", "Test GPU provisioner")], key: try! PrivateKey.generate(.p384),
                                                      notBefore: now - 3600, notAfter: now + 86400)
    lazy var gpu: SoftwareGPU = {
        let key = try! PrivateKey.generate(.p384), fwid = [UInt8](repeating: 7, count: 48)
        let leaf = try! intermediate.tdxSimulationLeaf(subject: [("O", "Test GPU vendor"), ("CN", "Test GPU")], publicKey: try! key.publicKey,
                                                        notBefore: now - 3600, notAfter: now + 86400,
                                                        extensions: [(oid: "2.23.133.5.4.1", der: SoftwareGPU.tcbInfo(fwid: fwid))])
        return SoftwareGPU(key: key, certificate: leaf, fwid: fwid)
    }()

    func raw(nonce: [UInt8]) throws -> RawEvidence {
        let blocks = (1...SoftwareGPUFirmware.blockCount).map { (index: UInt8($0), digest: SoftwareGPUFirmware.measurement(block: $0)) }
        let pem = try gpu.certificate.pem + intermediate.certificate.pem + root.certificate.pem
        return RawEvidence(device: "gpu0", payload: .nvidiaGPU(NvidiaGPUEvidence(transcript: try gpu.transcript(nonce: nonce, blocks: blocks), certificateChainPEM: pem)))
    }

    func answer(_ status: CertificateStatusValue) throws -> [UInt8] {
        let request = try OCSPClient.request(certificate: intermediate.certificate, issuer: root.certificate)
        return try OCSPResponder(ca: root).respond(to: request, now: now - 60, validity: 3600) { _ in status }
    }

    /// Stage 1 with `answers` in the store (nil: no store) under `revocation`.
    func authenticate(answers: [[UInt8]]?, revocation: GPUPolicy.Revocation) throws -> EvidenceAuthentication {
        var trust = GPUTrust(deviceRoots: [root.certificate])
        trust.ocsp = answers.map { OCSPStore(responses: $0.enumerated().map { ("answer\($0.offset).der", $0.element) }) }
        var policy = Policy(name: "gpu", version: 1, pcrBank: .sha256, pcrValues: [:])
        var rules = GPUPolicy()
        rules.revocation = revocation
        policy.devices = DevicesPolicy(gpus: rules)
        let nonce = try Crypto.randomBytes(32)
        let context = VerificationContext(hostID: "h", binding: [], nonce: nonce, enrolled: EnrolledKeys(), policy: policy, digester: OpenSSLDigester(),
                                          platform: .sevSNP, now: now)
        return NvidiaGPUEvidenceVerifier(trust: trust).authenticate(try raw(nonce: nonce), context: context)
    }

    func authenticated(_ a: EvidenceAuthentication) -> Bool {
        if case .authenticated = a { return true }
        return false
    }

    func code(_ a: EvidenceAuthentication) -> ErrorCode? {
        if case let .rejected(errors) = a { return errors.first?.code }
        return nil
    }

    func testMissingAnswersAreReportedOrRefusedByPolicyAndARevokedIntermediateAlwaysRefuses() throws {
        XCTAssertTrue(authenticated(try authenticate(answers: nil, revocation: .ifAvailable)), "no store: missing, allowed by default")
        XCTAssertEqual(code(try authenticate(answers: nil, revocation: .required)), .revocationStatusUnknown)
        XCTAssertEqual(code(try authenticate(answers: [try answer(.unknown)], revocation: .required)), .revocationStatusUnknown)
        XCTAssertTrue(authenticated(try authenticate(answers: [try answer(.good)], revocation: .required)))
        for policy in [GPUPolicy.Revocation.ifAvailable, .required] {
            XCTAssertEqual(code(try authenticate(answers: [try answer(.revoked(at: now - 120, reason: 1))], revocation: policy)), .certificateRevokedOCSP)
        }
    }

    /// The intermediate is looked up on the path OpenSSL verified: a PEM sent in another order,
    /// or without its root, still finds the revoked intermediate.
    func testAReorderedOrRootlessChainDoesNotHideARevokedIntermediate() throws {
        var trust = GPUTrust(deviceRoots: [root.certificate])
        trust.ocsp = OCSPStore(responses: [("revoked.der", try answer(.revoked(at: now - 120, reason: 1)))])
        let nonce = try Crypto.randomBytes(32)
        let context = VerificationContext(hostID: "h", binding: [], nonce: nonce, enrolled: EnrolledKeys(),
                                          policy: Policy(name: "gpu", version: 1, pcrBank: .sha256, pcrValues: [:]), digester: OpenSSLDigester(),
                                          platform: .sevSNP, now: now)
        let blocks = (1...SoftwareGPUFirmware.blockCount).map { (index: UInt8($0), digest: SoftwareGPUFirmware.measurement(block: $0)) }
        let transcript = try gpu.transcript(nonce: nonce, blocks: blocks)
        func authenticate(_ pem: String) -> ErrorCode? {
            code(NvidiaGPUEvidenceVerifier(trust: trust).authenticate(RawEvidence(device: "gpu0", payload: .nvidiaGPU(
                NvidiaGPUEvidence(transcript: transcript, certificateChainPEM: pem))), context: context))
        }
        // Without its root: the path OpenSSL verified still names the intermediate.
        XCTAssertEqual(authenticate(try gpu.certificate.pem + intermediate.certificate.pem), .certificateRevokedOCSP)
        // Intermediates after the root: the path is the same (leaf, intermediate, root).
        XCTAssertEqual(authenticate(try gpu.certificate.pem + intermediate.certificate.pem + root.certificate.pem + intermediate.certificate.pem),
                       .certificateRevokedOCSP)
        // Out of order after the leaf: refused at the chain (the leaf must be issued by the next certificate).
        XCTAssertEqual(authenticate(try gpu.certificate.pem + root.certificate.pem + intermediate.certificate.pem), .nvidiaGPUChainInvalid)
    }

    func testTheRevocationStatusIsInTheDeviceClaims() throws {
        for (answers, expected) in [(nil, "missing"), ([try answer(.good)], "good")] as [([[UInt8]]?, String)] {
            var trust = GPUTrust(deviceRoots: [root.certificate])
            trust.ocsp = answers.map { OCSPStore(responses: $0.map { ("a.der", $0) }) }
            let nonce = try Crypto.randomBytes(32)
            let context = VerificationContext(hostID: "h", binding: [], nonce: nonce, enrolled: EnrolledKeys(),
                                              policy: Policy(name: "gpu", version: 1, pcrBank: .sha256, pcrValues: [:]), digester: OpenSSLDigester(),
                                              platform: .sevSNP, now: now)
            let verifier = NvidiaGPUEvidenceVerifier(trust: trust)
            guard case let .verified(v) = verifier.verify(try raw(nonce: nonce), accepted: .none, context: context) else { return XCTFail("refused") }
            XCTAssertEqual(v.deviceClaims?.revocation, expected)
        }
    }
}
