import Foundation
import XCTest
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchReceiptKit
import VouchReceiptTestSupport
import VouchReceipts
import VouchTLog

/// Signing and offline verification: a receipt verifies with the trust document alone, and each
/// kind of tampering is refused with its own code.
final class ReceiptVerifierTests: XCTestCase {
    var world: ReceiptFixture!
    let output = Array("The answer is 42.\n".utf8)
    let request = Array(#"{"prompt":"what is the answer?"}"#.utf8)

    override func setUpWithError() throws { world = try ReceiptFixture() }

    var start: Date { world.now }
    var finish: Date { world.now.addingTimeInterval(2) }

    func sign(_ signer: ReceiptSigner? = nil) throws -> (bundle: [UInt8], salt: [UInt8]) {
        try (signer ?? world.signer()).sign(output: output, request: request, startedAt: start, finishedAt: finish)
    }

    func codes(_ bundle: [UInt8], _ inputs: ReceiptVerifier.Inputs? = nil, verifier: ReceiptVerifier? = nil) throws -> [ErrorCode] {
        switch try (verifier ?? world.verifier()).verify(bundle: bundle, inputs ?? .init(output: output)) {
        case .verified: return []
        case .rejected(let v): return v.map(\.code)
        }
    }

    func bundle(_ bytes: [UInt8]) throws -> UnverifiedReceiptBundle { try UnverifiedReceiptBundle(json: bytes) }

    /// The bundle with its Statement changed and signed again with the agent's own key (what an
    /// agent that lies in its predicate could make).
    func resigned(_ bytes: [UInt8], _ change: (inout ReceiptStatement) -> Void) throws -> [UInt8] {
        let b = try bundle(bytes)
        var statement = try ReceiptStatement(json: b.envelope.payload)
        change(&statement)
        let payload = statement.json
        let sig = try world.agentKey.sign(DSSEEnvelope.pae(type: DSSEEnvelope.inTotoPayloadType, payload: payload))
        let env = DSSEEnvelope(payloadType: DSSEEnvelope.inTotoPayloadType, payload: payload, signatures: [.init(keyid: "", sig: sig)])
        return UnverifiedReceiptBundle(envelope: env, chainPEM: b.chainPEM, ear: b.ear, issuance: b.issuance, receipt: b.receipt).json
    }

    func replaced(_ bytes: [UInt8], envelope: DSSEEnvelope? = nil, chainPEM: String? = nil, ear: String? = nil,
                  issuance: UnverifiedReceiptBundle.LoggedEntry?? = .none, receipt: UnverifiedReceiptBundle.LoggedEntry? = nil) throws -> [UInt8] {
        let b = try bundle(bytes)
        return UnverifiedReceiptBundle(envelope: envelope ?? b.envelope, chainPEM: chainPEM ?? b.chainPEM, ear: ear ?? b.ear,
                                       issuance: issuance ?? b.issuance, receipt: receipt ?? b.receipt).json
    }

    func testASignedReceiptVerifiesOfflineAndSaysWhatItBinds() throws {
        let (bytes, salt) = try sign()
        XCTAssertEqual(salt.count, 32)
        guard case .verified(let facts) = try world.verifier().verify(bundle: bytes, .init(output: output, request: request, salt: salt)) else {
            return XCTFail("\(try codes(bytes))")
        }
        XCTAssertEqual(facts.spiffeId, world.spiffeID)
        XCTAssertEqual(facts.statement.outputSHA256, Crypto.sha256(output))
        XCTAssertEqual(facts.statement.predicate.model.manifests, ["sha256:" + String(repeating: "04", count: 32)])
        XCTAssertEqual(facts.statement.predicate.attestation.issuanceIndex, "5")
        XCTAssertEqual(facts.statement.predicate.attestation.record, "42")
        XCTAssertEqual(facts.statement.predicate.attestation.evidence, [.init(device: "platform", type: "tpm2-quote", digest: "sha256:" + String(repeating: "01", count: 32))])
        XCTAssertEqual(facts.issuanceIndex, 5)
        XCTAssertEqual(facts.claims.policyName, "fleet")
        XCTAssertEqual(facts.earSigner, "spiffe://test.local/vouchd")
        XCTAssertTrue(facts.requestOpened && facts.outputChecked)
        XCTAssertFalse(facts.logged)
        // The salt is not in the bundle.
        XCTAssertNil(String(decoding: bytes, as: UTF8.self).range(of: Hex.encode(salt)))
        // Without output or request the receipt still verifies, reporting the digest.
        XCTAssertEqual(try codes(bytes, .init()), [])
        // Each receipt has its own salt.
        XCTAssertNotEqual(try sign().salt, salt)
    }

    func testOneSignerSignsConcurrently() throws {
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var bundles: [Int: [UInt8]] = [:]
        }
        let signer = try world.signer(), results = Results(), start = self.start, finish = self.finish
        DispatchQueue.concurrentPerform(iterations: 32) { i in
            let bundle = (try? signer.sign(output: [UInt8(i)], request: nil, startedAt: start, finishedAt: finish).bundle) ?? []
            results.lock.withLock { results.bundles[i] = bundle }
        }
        let verifier = try world.verifier()
        for i in 0..<32 {
            guard case .verified = verifier.verify(bundle: results.bundles[i] ?? [], .init(output: [UInt8(i)])) else { return XCTFail("receipt \(i)") }
        }
    }

    func testP384AndRSAAgentKeysSignToo() throws {
        world = try ReceiptFixture(keyType: .p384)
        XCTAssertEqual(try codes(try sign().bundle), [])
        world = try ReceiptFixture(agentKey: try PrivateKey.generateRSA(bits: 2048))
        XCTAssertEqual(try codes(try sign().bundle), [])
    }

    func testTamperingIsRefusedByCode() throws {
        let (good, salt) = try sign()
        let b = try bundle(good)
        var cases: [(String, [UInt8], ReceiptVerifier.Inputs, [ErrorCode])] = []
        func add(_ name: String, _ bytes: [UInt8], _ inputs: ReceiptVerifier.Inputs = .init(), _ expected: ErrorCode...) {
            cases.append((name, bytes, inputs, expected))
        }

        // Output and request.
        var flipped = output
        flipped[3] ^= 1
        add("flipped output byte", good, .init(output: flipped), .receiptOutputMismatch)
        add("request not the one committed", good, .init(request: request + [0x20], salt: salt), .receiptRequestMismatch)
        add("wrong salt", good, .init(request: request, salt: [UInt8](repeating: 0, count: 32)), .receiptRequestMismatch)
        // Envelope bytes.
        var payload = b.envelope.payload
        payload[payload.count / 2] ^= 1
        add("payload byte", try replaced(good, envelope: DSSEEnvelope(payloadType: b.envelope.payloadType, payload: payload, signatures: b.envelope.signatures)),
            .init(), .receiptSignatureInvalid)
        var sig = b.envelope.signatures[0].sig
        sig[sig.count - 1] ^= 1
        add("signature byte", try replaced(good, envelope: DSSEEnvelope(payloadType: b.envelope.payloadType, payload: b.envelope.payload,
                                                                        signatures: [.init(keyid: "", sig: sig)])), .init(), .receiptSignatureInvalid)
        add("payload type", try replaced(good, envelope: DSSEEnvelope(payloadType: "application/json", payload: b.envelope.payload,
                                                                      signatures: b.envelope.signatures)), .init(), .receiptMalformed)
        // Another agent's certificate in the chain: the signature is not its key's.
        let other = try ReceiptFixture(now: world.now)
        add("chain of another agent", try replaced(good, chainPEM: try other.chainPEM), .init(), .receiptSignatureInvalid)
        // The same key and SPIFFE ID certified by a CA outside the trust document.
        let rogueCA = try CertificateAuthority.create(commonName: "agent CA", key: try PrivateKey.generate(.p256), notBefore: world.now.addingTimeInterval(-3600),
                                                      notAfter: world.now.addingTimeInterval(86400))
        let rogue = try ReceiptFixture.issue(brokerSigner: world.earSigner, ca: rogueCA, key: try world.agentKey.publicKey, spiffeID: world.spiffeID,
                                             hostID: world.hostID, now: world.now, usage: .agent)
        let rogueSigner = try ReceiptSigner(chainPEM: try rogue.pem + rogueCA.certificate.pem, keyPEM: world.agentKey.pem,
                                            issuance: try world.log(try world.issuanceEntry(for: rogue)))
        add("chain to another CA", try sign(rogueSigner).bundle, .init(), .receiptChainInvalid)
        // A simulated host's certificate: its EAR says warning, refused unless allowed.
        let simulated = try ReceiptFixture.issue(brokerSigner: world.earSigner, ca: world.agentCA, key: try world.agentKey.publicKey, spiffeID: world.spiffeID,
                                                 hostID: world.hostID, now: world.now, usage: .agent, simulated: true)
        let simulatedSigner = try ReceiptSigner(chainPEM: try simulated.pem + world.agentCA.certificate.pem, keyPEM: world.agentKey.pem,
                                                issuance: try world.log(try world.issuanceEntry(for: simulated)))
        let simulatedBundle = try sign(simulatedSigner).bundle
        add("simulated host", simulatedBundle, .init(), .receiptNotAffirming)
        var allowWarning = ReceiptVerifier.Inputs()
        allowWarning.allowWarning = true
        if case .rejected(let v) = try world.verifier().verify(bundle: simulatedBundle, allowWarning) {
            XCTFail("--allow-warning accepts a simulated host's receipt: \(v.map(\.code))")
        }
        // Another agent's EAR in the bundle.
        add("other agent's EAR", try replaced(good, ear: try AttestationExtension.ear(extensionValue: other.agentCert.extensionValue(oid: AttestationExtension.oid)!)),
            .init(), .receiptEARInvalid)
        // The predicate lies about what the certificate attests.
        add("model", try resigned(good) { $0.predicate.model.manifests = ["sha256:" + String(repeating: "ee", count: 32)] }, .init(), .receiptClaimsMismatch)
        add("evidence", try resigned(good) { $0.predicate.attestation.evidence[0].digest = "sha256:" + String(repeating: "ee", count: 32) }, .init(),
            .receiptClaimsMismatch)
        add("issuance index", try resigned(good) { $0.predicate.attestation.issuanceIndex = "4" }, .init(), .receiptIssuanceMismatch)
        // Log proofs.
        let proof = b.issuance!.proof
        var hashes = proof.proof
        hashes[0][0] ^= 1
        let badProof = try TLogProofFile(extra: nil, index: proof.index, proof: hashes, signedCheckpoint: proof.signedCheckpoint)
        add("proof byte", try replaced(good, issuance: .init(entry: b.issuance!.entry, proof: badProof)), .init(), .receiptInclusionInvalid)
        let stranger = try NoteSigner(name: world.origin, privateKey: try Ed25519PrivateKey.generate())
        add("checkpoint by another key", try replaced(good, issuance: .init(entry: b.issuance!.entry, proof: try world.proof(index: proof.index, signers: [stranger]))),
            .init(), .receiptLogUnverified)
        add("no issuance", try replaced(good, issuance: .some(nil)), .init(), .receiptIssuanceMismatch)
        let otherEntry = try world.log(try world.issuanceEntry(for: other.agentCert))
        add("another certificate's issuance", try replaced(good, issuance: otherEntry), .init(), .receiptIssuanceMismatch)
        // Receipt entry that does not name this receipt.
        let wrongReceipt = try world.log(try LogEntry(kind: .receipt, time: world.now, fields: [
            "spiffe": world.spiffeID, "serial": world.agentCert.serialHex, "certificate": LogEntry.digest(Crypto.sha256(world.agentCert.der)),
            "statement": LogEntry.digest([UInt8](repeating: 1, count: 32)), "output": LogEntry.digest(Crypto.sha256(output))]))
        add("receipt entry of another statement", try replaced(good, receipt: wrongReceipt), .init(), .receiptEntryMismatch)

        for (name, bytes, inputs, expected) in cases {
            XCTAssertEqual(try codes(bytes, inputs), expected, name)
        }
    }

    func testTheSignerMustBeAnAgent() throws {
        // A host certificate (its key, its EAR) signing a receipt.
        let hostKey = try PrivateKey.generate(.p256)
        let hostCert = try ReceiptFixture.issue(brokerSigner: world.earSigner, ca: world.agentCA, key: try hostKey.publicKey,
                                                spiffeID: "spiffe://test.local/host/\(world.hostID)", hostID: world.hostID, now: world.now, usage: .host)
        let signer = try ReceiptSigner(chainPEM: try hostCert.pem + world.agentCA.certificate.pem, keyPEM: hostKey.pem,
                                       issuance: try world.log(try world.issuanceEntry(for: hostCert)))
        XCTAssertEqual(try codes(try sign(signer).bundle, .init()), [.receiptSignerNotAgent])
        // An agent of another trust domain.
        let foreignKey = try PrivateKey.generate(.p256)
        let foreign = try ReceiptFixture.issue(brokerSigner: world.earSigner, ca: world.agentCA, key: try foreignKey.publicKey,
                                               spiffeID: "spiffe://other.example/host/ab/agent/x", hostID: world.hostID, now: world.now, usage: .agent)
        let foreignSigner = try ReceiptSigner(chainPEM: try foreign.pem + world.agentCA.certificate.pem, keyPEM: foreignKey.pem,
                                              issuance: try world.log(try world.issuanceEntry(for: foreign)))
        XCTAssertTrue(try codes(try sign(foreignSigner).bundle, .init()).contains(.receiptSignerNotAgent))
    }

    func testTimesMustFallInsideTheCertificateAndAfterTheAppraisal() throws {
        let signer = try world.signer()
        func codes(_ s: TimeInterval, _ f: TimeInterval) throws -> [ErrorCode] {
            try self.codes(try signer.sign(output: output, request: nil, startedAt: world.now.addingTimeInterval(s),
                                           finishedAt: world.now.addingTimeInterval(f)).bundle, .init())
        }
        XCTAssertEqual(try codes(0, 86399), [])
        XCTAssertEqual(try codes(0, 86400), [.receiptOutsideValidity], "finished at notAfter")
        XCTAssertEqual(try codes(-601, 0), [.receiptOutsideValidity], "started before notBefore and the appraisal")
        XCTAssertThrowsError(try signer.sign(output: output, request: nil, startedAt: finish, finishedAt: start))
    }

    func testRevocationBeforeTheReceiptByCRL() throws {
        let (bytes, _) = try sign()
        func crl(revokedAt: Date, by ca: CertificateAuthority? = nil, reason: Int = 4) throws -> CRL {
            try CRL(der: try (ca ?? world.agentCA).makeCRL(entries: [RevokedEntry(serialHex: world.agentCert.serialHex, revokedAt: revokedAt, reason: reason)],
                                                           number: 1, thisUpdate: world.now.addingTimeInterval(60), nextUpdate: world.now.addingTimeInterval(3600)))
        }
        XCTAssertEqual(try codes(bytes, .init(crl: try crl(revokedAt: world.now.addingTimeInterval(-1)))), [.receiptRevoked])
        XCTAssertEqual(try codes(bytes, .init(crl: try crl(revokedAt: finish))), [.receiptRevoked], "revoked the second it finished")
        XCTAssertEqual(try codes(bytes, .init(crl: try crl(revokedAt: finish.addingTimeInterval(1)))), [], "revoked after the receipt")
        XCTAssertEqual(try codes(bytes, .init(crl: try crl(revokedAt: finish.addingTimeInterval(1), reason: 1))), [.receiptRevoked],
                       "a compromised key: its thief could date a receipt before the revocation")
        XCTAssertEqual(try codes(bytes, .init(crl: try crl(revokedAt: finish.addingTimeInterval(1), reason: 9))), [.receiptRevoked],
                       "a failed re-attestation (privilegeWithdrawn): the key may be in other hands since")
        let stale = try CRL(der: try world.agentCA.makeCRL(entries: [], number: 1, thisUpdate: finish.addingTimeInterval(-1), nextUpdate: world.now.addingTimeInterval(3600)))
        XCTAssertEqual(try codes(bytes, .init(crl: stale)), [.receiptCRLInvalid], "a CRL older than the receipt cannot clear it")
        let empty = try CRL(der: try world.agentCA.makeCRL(entries: [], number: 1, thisUpdate: finish, nextUpdate: world.now.addingTimeInterval(3600)))
        guard case .verified(let facts) = try world.verifier().verify(bundle: bytes, .init(crl: empty)) else { return XCTFail() }
        XCTAssertEqual(facts.revocationCheckedAt, finish)
        let otherCA = try CertificateAuthority.create(commonName: "agent CA", key: try PrivateKey.generate(.p256), notBefore: world.now.addingTimeInterval(-60),
                                                      notAfter: world.now.addingTimeInterval(3600))
        XCTAssertEqual(try codes(bytes, .init(crl: try crl(revokedAt: world.now, by: otherCA))), [.receiptCRLInvalid])
    }

    func testWitnessCosignaturesAndALoggedReceipt() throws {
        let witness = try NoteSigner(name: "witness.example/w1", type: .cosignatureV1, privateKey: try Ed25519PrivateKey.generate())
        let (bytes, _) = try sign()
        let inputs = ReceiptVerifier.Inputs(witnesses: [witness.verifierKey], witnessThreshold: 1)
        XCTAssertEqual(try codes(bytes, inputs), [.receiptWitnessesInsufficient])
        let b = try bundle(bytes)
        let cosigned = try world.proof(index: b.issuance!.proof.index, signers: [world.logSigner, witness])
        let withWitness = try replaced(bytes, issuance: .init(entry: b.issuance!.entry, proof: cosigned))
        XCTAssertEqual(try codes(withWitness, inputs), [])

        // The receipt's own entry, as POST /v1/receipts logs it.
        let entry = try LogEntry(kind: .receipt, time: world.now, fields: [
            "spiffe": world.spiffeID, "serial": world.agentCert.serialHex, "certificate": LogEntry.digest(Crypto.sha256(world.agentCert.der)),
            "statement": LogEntry.digest(Crypto.sha256(b.envelope.payload)), "output": LogEntry.digest(Crypto.sha256(output))])
        let logged = try replaced(bytes, receipt: try world.log(entry))
        guard case .verified(let facts) = try world.verifier().verify(bundle: logged, .init(output: output)) else { return XCTFail("\(try codes(logged))") }
        XCTAssertTrue(facts.logged)
        XCTAssertEqual(facts.checkpoints.count, 2)
    }

    func testTheSignerRefusesAnotherCertificatesIssuanceOrKey() throws {
        let other = try ReceiptFixture(now: world.now)
        XCTAssertThrowsError(try ReceiptSigner(chainPEM: try world.chainPEM, keyPEM: world.agentKey.pem, issuance: other.issuance))
        XCTAssertThrowsError(try ReceiptSigner(chainPEM: try world.chainPEM, keyPEM: other.agentKey.pem, issuance: world.issuance))
    }

    /// A key held elsewhere (a TPM through the attester) signs digests; its answers are checked
    /// under the certificate's key before a receipt carries them.
    func testAKeyHeldElsewhereIsCheckedOnEverySignature() throws {
        let agentKey = world.agentKey, otherKey = try PrivateKey.generate()
        // A holder that signs the digest it is sent (as TPM2_Sign does): its receipts verify.
        let honest = ReceiptSigningKey(publicKey: try agentKey.publicKey) { digest, hash in
            XCTAssertEqual(hash, .sha256)
            return try agentKey.signDigest(digest, hash: hash)
        }
        let signer = try ReceiptSigner(chainPEM: try world.chainPEM, key: honest, issuance: world.issuance)
        let bundle = try signer.sign(output: output, request: nil, startedAt: start, finishedAt: finish).bundle
        XCTAssertEqual(try codes(bundle, .init(output: output)), [])
        // A holder that answers with another key's signature: refused before any receipt exists.
        let liar = ReceiptSigningKey(publicKey: try agentKey.publicKey) { digest, hash in try otherKey.signDigest(digest, hash: hash) }
        let lying = try ReceiptSigner(chainPEM: try world.chainPEM, key: liar, issuance: world.issuance)
        XCTAssertThrowsError(try lying.sign(output: output, request: nil, startedAt: start, finishedAt: finish)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .signatureInvalid)
        }
        // A holder whose public key is not the certificate's is refused at once.
        XCTAssertThrowsError(try ReceiptSigner(chainPEM: try world.chainPEM, key: ReceiptSigningKey(publicKey: try otherKey.publicKey) { _, _ in [] },
                                               issuance: world.issuance)) {
            XCTAssertEqual(($0 as? VouchError)?.context["field"], "key")
        }
    }
}
