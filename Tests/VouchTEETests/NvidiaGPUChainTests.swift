import Foundation
import XCTest
@testable import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTEEWire
import VouchTestSupport

/// A GPU chain made here (test root → test ICA → leaf carrying the real sample's FWID) with the
/// nvtrust sample's transcript re-signed by the leaf: what the real chains (valid to 9999) cannot
/// show — a leaf that expires, a leaf that is a CA or may not sign, a chain cached and then
/// presented with another leaf or signature.
struct TestGPUChain {
    static let from = Date.parseRFC3339("2020-01-01T00:00:00Z")!
    static let until = Date.parseRFC3339("2030-01-01T00:00:00Z")!
    let root: CertificateAuthority
    let ica: CertificateAuthority
    let fwid: [UInt8]
    let base: [UInt8]

    init() throws {
        let sample = try SPDMMeasurementTranscript(GPUSamples.transcript("h100-nvtrust-sample"))
        fwid = try XCTUnwrap(sample.fwid)
        base = sample.signedBytes
        root = try .tdxSimulationRoot(subject: [("CN", "Test GPU Root")], key: .generate(.p384), notBefore: Self.from, notAfter: Self.until)
        ica = try root.tdxSimulationCA(subject: [("CN", "Test GPU ICA")], key: .generate(.p384), notBefore: Self.from, notAfter: Self.until)
    }

    /// TCG DICE TcbInfo as NVIDIA's leaf carries it: SEQUENCE { SEQUENCE { sha384 OID, OCTET STRING fwid } }.
    var tcbInfo: [UInt8] {
        let pair: [UInt8] = [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x04, UInt8(fwid.count)] + fwid
        return [0x30, UInt8(pair.count + 2), 0x30, UInt8(pair.count)] + pair
    }

    func leaf(key: PrivateKey, issuer: CertificateAuthority? = nil, notBefore: Date = from, notAfter: Date = until,
              digitalSignature: Bool = true) throws -> Certificate {
        try (issuer ?? ica).tdxSimulationLeaf(subject: [("CN", "Test GPU FMC LF")], publicKey: key.publicKey, notBefore: notBefore, notAfter: notAfter,
                                              extensions: [(NvidiaGPUVerifier.tcbInfoOID, tcbInfo)], digitalSignature: digitalSignature)
    }

    /// The sample's signed bytes with `key`'s signature (r ‖ s, 48 bytes each).
    func transcript(signedBy key: PrivateKey) throws -> [UInt8] {
        let (r, s) = try ecdsaSignatureComponents(der: key.sign(base, hash: .sha384))
        func pad(_ b: [UInt8]) -> [UInt8] { [UInt8](repeating: 0, count: 48 - b.count) + b }
        return base + pad(r) + pad(s)
    }

    func evidence(_ transcript: [UInt8], _ certificates: [Certificate]) throws -> NvidiaGPUEvidence {
        NvidiaGPUEvidence(transcript: transcript, certificateChainPEM: try certificates.map { try $0.pem }.joined())
    }

    var verifier: NvidiaGPUVerifier { NvidiaGPUVerifier(roots: [root.certificate]) }
}

final class NvidiaGPUChainTests: XCTestCase {
    let now = GPUSamples.now

    func testTestChainVerifiesAndIsCachedOnce() throws {
        let gpu = try TestGPUChain()
        let key = try PrivateKey.generate(.p384)
        let e = try gpu.evidence(gpu.transcript(signedBy: key), [gpu.leaf(key: key), gpu.ica.certificate, gpu.root.certificate])
        let verifier = gpu.verifier
        XCTAssertTrue(verifier.verify(e, at: now).isVerified, "\(verifier.verify(e, at: now).violations)")
        XCTAssertEqual(verifier.cache.count, 1)
        XCTAssertTrue(verifier.verify(e, at: now).isVerified)
        XCTAssertEqual(verifier.cache.count, 1)
    }

    func testLeafThatIsACAOrMayNotSignIsRefused() throws {
        let gpu = try TestGPUChain()
        let key = try PrivateKey.generate(.p384)
        let transcript = try gpu.transcript(signedBy: key)
        let ca = try gpu.ica.tdxSimulationCA(subject: [("CN", "Test GPU FMC LF")], key: key, notBefore: TestGPUChain.from, notAfter: TestGPUChain.until)
        let noSign = try gpu.leaf(key: key, digitalSignature: false)
        for (name, leaf) in [("CA leaf", ca.certificate), ("no digitalSignature", noSign)] {
            let result = gpu.verifier.verify(try gpu.evidence(transcript, [leaf, gpu.ica.certificate, gpu.root.certificate]), at: now)
            XCTAssertEqual(result.violations.map(\.code), [.nvidiaGPUChainInvalid], name)
        }
        // The real chain without its leaf starts at the GSP BROM CA: refused at the chain.
        let e = try GPUSamples.evidence("h100-nvtrust-sample", chain: "negative/hopper_cert_chain_case4.pem")
        XCTAssertEqual(NvidiaGPUVerifier().verify(e, at: now).violations.map(\.code), [.nvidiaGPUChainInvalid])
    }

    /// A cached chain never stands for the leaf, the signature, the nonce or the time.
    func testCachedChainStillChecksLeafSignatureNonceAndTime() throws {
        let gpu = try TestGPUChain()
        let key = try PrivateKey.generate(.p384)
        let notAfter = Date.parseRFC3339("2025-06-01T00:00:00Z")!
        let leaf = try gpu.leaf(key: key, notAfter: notAfter)
        let transcript = try gpu.transcript(signedBy: key)
        let verifier = gpu.verifier
        let good = try gpu.evidence(transcript, [leaf, gpu.ica.certificate, gpu.root.certificate])
        XCTAssertTrue(verifier.verify(good, at: now).isVerified)
        XCTAssertEqual(verifier.cache.count, 1)

        // The leaf has expired (the intermediates have not: the cache hits).
        let later = Date.parseRFC3339("2025-07-01T00:00:00Z")!
        XCTAssertEqual(verifier.verify(good, at: later).violations.map(\.code), [.nvidiaGPUChainInvalid])
        // Another leaf under the same ICA: its key did not sign the transcript.
        let otherKey = try PrivateKey.generate(.p384)
        let swapped = try gpu.evidence(transcript, [gpu.leaf(key: otherKey), gpu.ica.certificate, gpu.root.certificate])
        XCTAssertEqual(verifier.verify(swapped, at: now).violations.map(\.code), [.nvidiaGPUSignatureInvalid])
        // A leaf issued by another CA of the same name, presented over the cached intermediates.
        let impostor = try gpu.root.tdxSimulationCA(subject: [("CN", "Test GPU ICA")], key: .generate(.p384), notBefore: TestGPUChain.from, notAfter: TestGPUChain.until)
        let forged = try gpu.evidence(transcript, [gpu.leaf(key: key, issuer: impostor), gpu.ica.certificate, gpu.root.certificate])
        XCTAssertEqual(verifier.verify(forged, at: now).violations.map(\.code), [.nvidiaGPUChainInvalid])
        // A changed signature byte.
        var changed = transcript
        changed[changed.count - 1] ^= 1
        XCTAssertEqual(verifier.verify(try gpu.evidence(changed, [leaf, gpu.ica.certificate, gpu.root.certificate]), at: now).violations.map(\.code),
                       [.nvidiaGPUSignatureInvalid])
        // Another nonce.
        XCTAssertEqual(verifier.verify(good, at: now, expectedNonce: [UInt8](repeating: 7, count: 32)).violations.map(\.code), [.nvidiaGPUNonceMismatch])
        // Before the leaf and the intermediates are valid: outside the cached window.
        XCTAssertEqual(verifier.verify(good, at: Date.parseRFC3339("2019-06-01T00:00:00Z")!).violations.map(\.code), [.nvidiaGPUChainInvalid])
        XCTAssertEqual(verifier.cache.count, 1)
        XCTAssertTrue(verifier.verify(good, at: now).isVerified)
    }

    func testCachedRealChainsStillRefuseAnEarlierTimeAndAnotherGPUsLeaf() throws {
        let verifier = NvidiaGPUVerifier()
        let devices = try NvidiaGPUEvidence.bundle(json: GPUSamples.bytes(GPUSamples.ppcie))
        XCTAssertTrue(verifier.verifyAll(devices, at: now).isVerified)
        XCTAssertEqual(verifier.cache.count, 8)
        // The GH100 Provisioner ICA is valid from 2022-03-01.
        XCTAssertEqual(verifier.verify(devices[0], at: Date.parseRFC3339("2021-06-01T00:00:00Z")!).violations.map(\.code), [.nvidiaGPUChainInvalid])
        // GPU 1's leaf over GPU 0's (cached) intermediates: not issued by them.
        let c0 = try Certificate.chain(pem: devices[0].certificateChainPEM), c1 = try Certificate.chain(pem: devices[1].certificateChainPEM)
        let mixed = NvidiaGPUEvidence(transcript: devices[1].transcript, certificateChainPEM: try ([c1[0]] + c0.dropFirst()).map { try $0.pem }.joined())
        XCTAssertEqual(verifier.verify(mixed, at: now).violations.map(\.code), [.nvidiaGPUChainInvalid])
    }

    func testVerifyAllRefusesTheSameGPUTwice() throws {
        let verifier = NvidiaGPUVerifier()
        let devices = try NvidiaGPUEvidence.bundle(json: GPUSamples.bytes(GPUSamples.ppcie))
        let all = verifier.verifyAll(devices, at: now)
        XCTAssertTrue(all.isVerified)
        XCTAssertEqual(all.claims.count, 8)
        // One firmware on all eight: the FWID names the firmware, not the device.
        XCTAssertEqual(Set(all.claims.map(\.fwid)).count, 1)
        XCTAssertEqual(Set(all.claims.map(\.deviceSubject)).count, 8)

        let twice = verifier.verifyAll(devices + [devices[3]], at: now)
        XCTAssertFalse(twice.isVerified)
        XCTAssertEqual(twice.violations.map(\.code), [.nvidiaGPUDuplicateDevice])
        XCTAssertEqual(twice.violations.first?.path, "gpu[8].device")
        XCTAssertTrue(twice.devices[3].isVerified)

        // The same GPU key under a second leaf certificate (another serial), and two GPUs with one FWID.
        let gpu = try TestGPUChain()
        let k1 = try PrivateKey.generate(.p384), k2 = try PrivateKey.generate(.p384)
        let transcript = try gpu.transcript(signedBy: k1)
        let a = try gpu.evidence(transcript, [gpu.leaf(key: k1), gpu.ica.certificate, gpu.root.certificate])
        let a2 = try gpu.evidence(transcript, [gpu.leaf(key: k1), gpu.ica.certificate, gpu.root.certificate])
        let b = try gpu.evidence(gpu.transcript(signedBy: k2), [gpu.leaf(key: k2), gpu.ica.certificate, gpu.root.certificate])
        let sameKey = gpu.verifier.verifyAll([a, b, a2], at: now)
        XCTAssertEqual(sameKey.violations.map(\.code), [.nvidiaGPUDuplicateDevice])
        XCTAssertEqual(sameKey.violations.first?.actual, "the same leaf key as gpu[0]")
        XCTAssertTrue(sameKey.devices[1].isVerified, "another key with the same FWID is another GPU")

        // A failed device is reported at its own index with its own code.
        var bad = devices
        bad[2].transcript[bad[2].transcript.count - 1] ^= 1
        let one = verifier.verifyAll(bad, at: now, expectedNonce: nil)
        XCTAssertEqual(one.violations.map(\.code), [.nvidiaGPUSignatureInvalid])
        XCTAssertEqual(one.violations.first?.path, "gpu[2].spdm.signature")
        XCTAssertEqual(one.claims.count, 7)
        XCTAssertFalse(verifier.verifyAll([], at: now).isVerified)
    }
}
