import XCTest
import VouchCore
import VouchCrypto
import VouchTPMWire

/// Software credential protection pieces that have no TPM in the loop (the swtpm tests in
/// VouchIntegrationTests.EndorsementTests activate what `makeCredential` makes).
final class CredentialTests: XCTestCase {
    func testKDFeLaysOutCounterZLabelAndPartyInfo() {
        // SHA-256(counter ‖ Z ‖ "IDENTITY\0" ‖ U ‖ V) for counter 1, 2 (computed independently).
        let z = (0..<32).map { UInt8($0) }
        let out = Crypto.kdfe(.sha256, z: z, label: "IDENTITY", partyUInfo: [UInt8](repeating: 0xaa, count: 32),
                              partyVInfo: [UInt8](repeating: 0xbb, count: 32), bits: 320)
        XCTAssertEqual(Hex.encode(out), "5974ee0074696c2d4b472b8b0d6b4eff73c0dfcc2cee83690930724edd1de081f53980a1de89897c")
    }

    func testECCCredentialSecretIsAFreshPointOnTheEKsCurve() throws {
        for (template, keyType) in [(EKTemplate.eccP256, PrivateKey.KeyType.p256), (.eccP384High, .p384)] {
            let curve = try XCTUnwrap(template.curve)
            let ekKey = try XCTUnwrap(try PrivateKey.generate(keyType).publicKey.ecJWKParameters)
            // The template without its unique point (zero-filled in the low range, empty in the high).
            var area = Array(template.template.dropLast(4 + (template.isHighRange ? 0 : 2 * curve.coordinateSize)))
            var w = ByteWriter(); w.sized(ekKey.x); w.sized(ekKey.y); area += w.bytes
            var outer = ByteWriter(); outer.sized(area)
            let ek = try TPMTPublic(tpm2bPublic: outer.bytes)
            XCTAssertNil(template.mismatch(ek))
            let a = try CredentialProtection.makeCredential(ek: ek, objectName: [0, 0x0b] + [UInt8](repeating: 1, count: 32), credential: [1, 2, 3])
            let b = try CredentialProtection.makeCredential(ek: ek, objectName: [0, 0x0b] + [UInt8](repeating: 1, count: 32), credential: [1, 2, 3])
            // TPM2B_ENCRYPTED_SECRET { TPMS_ECC_POINT { TPM2B x, TPM2B y } }
            var r = ByteReader(a.encryptedSecret)
            var point = ByteReader(try r.sized("secret"))
            XCTAssertEqual(try point.sized("x").count, curve.coordinateSize)
            XCTAssertEqual(try point.sized("y").count, curve.coordinateSize)
            XCTAssertTrue(point.isAtEnd && r.isAtEnd)
            XCTAssertNotEqual(a.encryptedSecret, b.encryptedSecret, "a new ephemeral key every time")
        }
    }

    /// A TEE report's data is SHA-512 over the domain tag and the binding: 64 bytes, one value per
    /// binding, never the binding itself or a TPM quote's qualifying data.
    func testTEEReportDataBindsTheBindingUnderItsTag() {
        let enrollment = EnrollmentBinding.qualifyingData(nonce: [1, 2, 3], agentSPKI: [4, 5, 6])
        let reattestation = EnrollmentBinding.reattestationData(nonce: [1, 2, 3])
        let a = EnrollmentBinding.teeReportData(binding: enrollment), b = EnrollmentBinding.teeReportData(binding: reattestation)
        XCTAssertEqual(a.count, 64)
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(a, Crypto.digest(.sha512, Array("vouch tee report-data v1".utf8) + [0] + enrollment))
        XCTAssertNotEqual(Array(a.prefix(32)), enrollment)
    }
}
