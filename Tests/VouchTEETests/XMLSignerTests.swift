import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTEESim
import VouchXMLSig

/// `XMLSigner` (libxmlsec1): what it signs, NvidiaRIMVerifier accepts under the signing root, with
/// the certificates it put in KeyInfo; one flipped byte anywhere in the signed document, or
/// another root, is refused with its code.
final class XMLSignerTests: XCTestCase {
    func signingChain() throws -> (root: CertificateAuthority, leaf: Certificate, key: PrivateKey) {
        let (from, to) = SoftwareSNP.rootValidity
        let root = try CertificateAuthority.tdxSimulationRoot(subject: [("CN", "signer test root"), ("O", TEESimulation.organization)],
                                                              key: try PrivateKey.generate(.p384), notBefore: from, notAfter: to)
        let key = try PrivateKey.generate(.p384)
        let leaf = try root.tdxSimulationLeaf(subject: [("CN", "signer test leaf")], publicKey: try key.publicKey, notBefore: from, notAfter: to)
        return (root, leaf, key)
    }

    func testSignedRIMVerifiesAndAFlippedByteIsRefused() throws {
        let (root, leaf, key) = try signingChain()
        let signed = try SoftwareRIM.signed(.vbios, signer: key, chain: [leaf, root.certificate])
        let verifier = try NvidiaRIMVerifier(roots: [root.certificate])
        let rim = try verifier.verify(signed, component: .vbios, expectedVersion: SoftwareGPUFirmware.vbiosVersion, at: Date())
        XCTAssertEqual(rim.referenceValues.active.map(\.index), [0, 1, 2, 3, 4])
        XCTAssertEqual(rim.referenceValues.active[0].alternatives, [SoftwareGPUFirmware.measurement(block: 1)])
        XCTAssertEqual(rim.identity.signer, leaf.subject)
        XCTAssertEqual(try UnverifiedXMLDocument(bytes: signed).keyInfoCertificates(), [try leaf.der, try root.certificate.der])

        // One hex digit of the first active digest, and one of the version, flipped.
        let text = String(decoding: signed, as: UTF8.self)
        let digest = Hex.encode(SoftwareGPUFirmware.measurement(block: 1))
        for (original, altered) in [(digest, String(digest.dropLast()) + (digest.last == "0" ? "1" : "0")),
                                    ("colloquialVersion=\"96.00.9F.00.01\"", "colloquialVersion=\"96.00.9F.00.02\"")] {
            XCTAssertTrue(text.contains(original))
            let bad = Array(text.replacingOccurrences(of: original, with: altered).utf8)
            XCTAssertThrowsCode(try verifier.verify(bad, component: .vbios, at: Date()), .xmlSignatureInvalid)
        }
        XCTAssertThrowsCode(try NvidiaRIMVerifier(roots: [try signingChain().root.certificate]).verify(signed, component: .vbios, at: Date()), .rimChainInvalid)
        XCTAssertThrowsCode(try NvidiaRIMVerifier().verify(signed, component: .vbios, at: Date()), .rimChainInvalid)
    }

    func testRSASignatureVerifiesWithTheSignersKeyOnly() throws {
        let (root, _, _) = try signingChain()
        let (from, to) = SoftwareSNP.rootValidity
        let key = try PrivateKey.generateRSA(bits: 2048)
        let leaf = try root.tdxSimulationLeaf(subject: [("CN", "rsa signer")], publicKey: try key.publicKey, notBefore: from, notAfter: to)
        let signed = try XMLSigner.signEnveloped(Array("<doc xmlns=\"urn:x\"><v>1</v></doc>".utf8), privateKeyPEM: try key.pem, certificatesDER: [try leaf.der], rsa: true)
        let verified = try XMLSignature.verifyEnveloped(try UnverifiedXMLDocument(bytes: signed), signerCertificateDER: try leaf.der)
        XCTAssertEqual(verified.root.children.map(\.name), ["v"])
        let other = try root.tdxSimulationLeaf(subject: [("CN", "other")], publicKey: try PrivateKey.generateRSA(bits: 2048).publicKey, notBefore: from, notAfter: to)
        XCTAssertThrowsCode(try XMLSignature.verifyEnveloped(try UnverifiedXMLDocument(bytes: signed), signerCertificateDER: try other.der), .xmlSignatureInvalid)
    }

    func testUnsignableInputIsRefused() throws {
        let (_, leaf, key) = try signingChain()
        XCTAssertThrowsCode(try XMLSigner.signEnveloped(Array("<a>".utf8), privateKeyPEM: try key.pem, certificatesDER: [try leaf.der]), .xmlDocumentMalformed)
        XCTAssertThrowsCode(try XMLSigner.signEnveloped(Array("<!DOCTYPE a><a/>".utf8), privateKeyPEM: try key.pem, certificatesDER: []), .xmlDocumentRefused)
        XCTAssertThrowsCode(try XMLSigner.signEnveloped(Array("<a/>".utf8), privateKeyPEM: "not a key", certificatesDER: []), .crypto)
    }
}
