import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchTPM
import VouchTPMWire

/// The TPM wrapper against a real swtpm, with tpm2-tools and OpenSSL as oracles.
final class TPMDeviceTests: XCTestCase {
    func testEKCertificateChainsToTheTPMsLocalCA() throws {
        let tpm = try SwTPM()
        let device = try TPMDevice(tcti: tpm.tcti)
        let ekCert = try Certificate(der: device.readEKCertificate())
        let (_, ekPublicBytes) = try device.endorsementKey()
        let ekPublic = try TPMTPublic(tpm2bPublic: ekPublicBytes)
        XCTAssertTrue(try ekCert.publicKey.isEqual(to: PublicKey(tpmPublic: ekPublic)), "EK certificate must certify the EK in the TPM")
        let root = try Certificate(pem: String(contentsOf: tpm.rootCA, encoding: .utf8))
        let issuer = try Certificate(pem: String(contentsOf: tpm.issuerCA, encoding: .utf8))
        XCTAssertNil(ekCert.verify(anchors: [root], intermediates: [issuer], at: Date()))
        XCTAssertNotNil(ekCert.verify(anchors: [issuer], at: Date()), "an intermediate alone is not a trust anchor")
    }

    func testSoftwareMakeCredentialActivatesInTheTPM() throws {
        let tpm = try SwTPM()
        let device = try TPMDevice(tcti: tpm.tcti)
        let (ek, ekBytes) = try device.endorsementKey()
        for kind in KeyTemplates.AKKind.allCases {
            let (ak, akBytes) = try device.createAttestationKey(kind)
            let akPublic = try TPMTPublic(tpm2bPublic: akBytes)
            let secret = try Crypto.randomBytes(32)
            let made = try CredentialProtection.makeCredential(ek: TPMTPublic(tpm2bPublic: ekBytes),
                                                               objectName: CredentialProtection.name(of: akPublic), credential: secret)
            let recovered = try device.activateCredential(ak: ak, ek: ek, credentialBlob: made.credentialBlob, encryptedSecret: made.encryptedSecret)
            XCTAssertEqual(recovered, secret, "\(kind)")

            // Bound to the AK's name: a credential made for another name must not activate.
            var otherName = CredentialProtection.name(of: akPublic)
            otherName[otherName.count - 1] ^= 1
            let wrong = try CredentialProtection.makeCredential(ek: TPMTPublic(tpm2bPublic: ekBytes), objectName: otherName, credential: secret)
            XCTAssertThrowsError(try device.activateCredential(ak: ak, ek: ek, credentialBlob: wrong.credentialBlob, encryptedSecret: wrong.encryptedSecret)) {
                XCTAssertEqual(($0 as? VouchError)?.code, .tpm)
            }
            device.flush(ak)
        }
    }

    func testAttestationKeyIsStableAcrossConnections() throws {
        let tpm = try SwTPM()
        let first = try TPMDevice(tcti: tpm.tcti)
        let (_, a) = try first.createAttestationKey(.eccP256)
        first.close()
        let second = try TPMDevice(tcti: tpm.tcti)
        let (_, b) = try second.createAttestationKey(.eccP256)
        XCTAssertEqual(a, b)
        let akPublic = try TPMTPublic(tpm2bPublic: b)
        XCTAssertEqual(akPublic.attributes, KeyTemplates.akAttributes)
    }
}
