import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchTestSupport
import VouchTPMWire

/// OCSPClient against responses from the OpenSSL command line (`openssl ocsp`) and from Vouch's
/// own OCSPResponder, for a P-384 root → intermediate → leaf chain.
final class OCSPClientTests: XCTestCase {
    var pki: OCSPTestPKI!

    override func setUpWithError() throws { pki = try OCSPTestPKI() }
    override func tearDown() { pki = nil }

    func code(_ body: () throws -> Any) -> ErrorCode? {
        do { _ = try body(); return nil } catch let e as VouchError { return e.code } catch { return ErrorCode(rawValue: "not a VouchError: \(error)") }
    }

    func verify(_ der: [UInt8], _ cert: Certificate? = nil, issuer: Certificate? = nil, at: Date? = nil) throws -> OCSPCertificateStatus {
        try OCSPClient.verify(response: der, certificate: cert ?? pki.leaf, issuer: issuer ?? pki.intermediate.certificate, at: at ?? pki.now)
    }

    func testGoodRevokedAndUnknownSignedByTheIssuer() throws {
        let good = try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [(pki.leaf, .good)])
        guard case let .good(thisUpdate, nextUpdate) = try verify(good) else { return XCTFail("expected good") }
        XCTAssertEqual(nextUpdate.timeIntervalSince(thisUpdate), 86400, accuracy: 1)

        let revokedAt = pki.now.addingTimeInterval(-3600)
        let revoked = try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [(pki.leaf, .revoked(at: revokedAt, reason: "keyCompromise"))])
        guard case let .revoked(at, reason) = try verify(revoked) else { return XCTFail("expected revoked") }
        XCTAssertEqual(at.timeIntervalSince1970, revokedAt.timeIntervalSince1970.rounded(.down), accuracy: 1)
        XCTAssertEqual(reason, 1)   // keyCompromise
        let noReason = try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [(pki.leaf, .revoked(at: revokedAt, reason: nil))])
        guard case .revoked(_, nil) = try verify(noReason) else { return XCTFail("expected revoked without a reason") }

        let unknown = try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [(pki.sibling, .good)])
        XCTAssertEqual(try verify(unknown), .unknown)

        // The intermediate, answered by the root; a response without the signer's certificate.
        let intermediate = try pki.response(for: pki.intermediate.certificate, issuer: pki.root, index: [(pki.intermediate.certificate, .good)], includeCerts: false)
        guard case .good = try verify(intermediate, pki.intermediate.certificate, issuer: pki.root.certificate) else { return XCTFail("expected good") }
        let noCerts = try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [(pki.leaf, .good)], includeCerts: false)
        guard case .good = try verify(noCerts) else { return XCTFail("expected good") }
    }

    func testEveryCertIDHashTheResponseUses() throws {
        for hash in ["sha1", "sha256", "sha384", "sha512"] {
            let der = try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [(pki.leaf, .good)], hash: hash)
            guard case .good = try verify(der) else { return XCTFail("expected good with a \(hash) CertID") }
            XCTAssertEqual(code { try self.verify(der, self.pki.sibling) }, .ocspResponseNotForCertificate, hash)
        }
    }

    func testDelegatedResponders() throws {
        let delegated = try pki.response(for: pki.leaf, issuer: pki.intermediate, signer: .delegated, index: [(pki.leaf, .good)])
        guard case .good = try verify(delegated) else { return XCTFail("a responder the issuer signed with id-kp-OCSPSigning is accepted") }
        // The responder certificate is checked at T: after it expires the answer is refused.
        XCTAssertEqual(code { try self.verify(delegated, at: self.pki.responder.certificate.notAfter.addingTimeInterval(60)) }, .ocspResponseSignatureInvalid)
        // A revoked answer by the same responder stays revoked after it expired (checked as of its thisUpdate).
        let revokedByDelegate = try pki.response(for: pki.leaf, issuer: pki.intermediate, signer: .delegated,
                                                 index: [(pki.leaf, .revoked(at: pki.now.addingTimeInterval(-3600), reason: nil))])
        guard case .revoked = try verify(revokedByDelegate, at: pki.responder.certificate.notAfter.addingTimeInterval(60)) else {
            return XCTFail("a revoked answer was dropped when its responder expired")
        }

        let withoutEKU = try pki.response(for: pki.leaf, issuer: pki.intermediate, signer: .delegatedWithoutEKU, index: [(pki.leaf, .good)])
        XCTAssertEqual(code { try self.verify(withoutEKU) }, .ocspResponseSignatureInvalid)
        let other = try pki.response(for: pki.leaf, issuer: pki.intermediate, signer: .otherCA, index: [(pki.leaf, .good)])
        XCTAssertEqual(code { try self.verify(other) }, .ocspResponseSignatureInvalid)
        let otherResponder = try pki.response(for: pki.leaf, issuer: pki.intermediate, signer: .otherCAResponder, index: [(pki.leaf, .good)])
        XCTAssertEqual(code { try self.verify(otherResponder) }, .ocspResponseSignatureInvalid)
        // The issuer's own issuer (the root) may not answer for the issuer's certificates.
        let byRoot = try pki.response(for: pki.leaf, issuer: pki.intermediate, signer: .root, index: [(pki.leaf, .good)])
        XCTAssertEqual(code { try self.verify(byRoot) }, .ocspResponseSignatureInvalid)
    }

    func testAnotherSerialOrIssuerIsNotThisCertificate() throws {
        let forSibling = try pki.response(for: pki.sibling, issuer: pki.intermediate, index: [(pki.sibling, .good), (pki.leaf, .good)])
        XCTAssertEqual(code { try self.verify(forSibling) }, .ocspResponseNotForCertificate)
        // The same serial under another issuer name and key is not this certificate either.
        let good = try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [(pki.leaf, .good)])
        XCTAssertEqual(code { try self.verify(good, issuer: self.pki.otherCA.certificate) }, .ocspResponseNotForCertificate)
    }

    func testTimes() throws {
        let good = try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [(pki.leaf, .good)], days: 1)
        XCTAssertEqual(code { try self.verify(good, at: self.pki.now.addingTimeInterval(2 * 86400)) }, .ocspResponseExpired)
        XCTAssertEqual(code { try self.verify(good, at: self.pki.now.addingTimeInterval(-86400)) }, .ocspResponseNotYetValid)
        // Within the skew, thisUpdate a little after T is accepted.
        guard case .good = try verify(good, at: pki.now.addingTimeInterval(-60)) else { return XCTFail("within the clock skew") }

        // Without nextUpdate the answer holds for the max age after thisUpdate, then expires.
        let open = try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [(pki.leaf, .good)], days: nil)
        guard case let .good(thisUpdate, nextUpdate) = try verify(open) else { return XCTFail("expected good") }
        XCTAssertEqual(nextUpdate.timeIntervalSince(thisUpdate), OCSPClient.defaultMaxAgeWithoutNextUpdate)
        XCTAssertEqual(code { try self.verify(open, at: self.pki.now.addingTimeInterval(OCSPClient.defaultMaxAgeWithoutNextUpdate + 3600)) },
                       .ocspResponseExpired)
        XCTAssertEqual(code { try OCSPClient.verify(response: open, certificate: self.pki.leaf, issuer: self.pki.intermediate.certificate,
                                                    at: self.pki.now.addingTimeInterval(7200), maxAgeWithoutNextUpdate: 3600) }, .ocspResponseExpired)
    }

    func testVouchsOwnResponderVerifies() throws {
        let request = try OCSPClient.request(certificate: pki.leaf, issuer: pki.intermediate.certificate, hash: .sha256)
        let serial = pki.leaf.serialHex
        let responder = OCSPResponder(ca: pki.intermediate)
        let good = try responder.respond(to: request, now: pki.now, validity: 3600) { $0 == serial ? .good : .unknown }
        XCTAssertEqual(try verify(good), .good(thisUpdate: Date(timeIntervalSince1970: pki.now.timeIntervalSince1970.rounded(.down)),
                                              nextUpdate: Date(timeIntervalSince1970: pki.now.timeIntervalSince1970.rounded(.down) + 3600)))
        let revokedAt = pki.now.addingTimeInterval(-600)
        let revoked = try responder.respond(to: request, now: pki.now, validity: 3600) { _ in .revoked(at: revokedAt, reason: 4) }
        guard case .revoked(_, 4) = try verify(revoked) else { return XCTFail("expected revoked, superseded") }
        // Past its nextUpdate a revoked answer still says revoked (time does not unrevoke).
        guard case .revoked(_, 4) = try verify(revoked, at: pki.now.addingTimeInterval(30 * 86400)) else { return XCTFail("an old revoked answer expired") }
        XCTAssertEqual(code { try self.verify(good, at: self.pki.now.addingTimeInterval(7200)) }, .ocspResponseExpired)
        // The request OCSPClient builds is one `openssl ocsp` answers too.
        let requestFile = try pki.write("vouch-req.der", "")
        try Data(request).write(to: URL(fileURLWithPath: requestFile))
        try pki.run(["ocsp", "-reqin", requestFile, "-req_text"])
    }

    func testMalformedAndUnsuccessful() throws {
        XCTAssertEqual(code { try self.verify([]) }, .ocspResponseMalformed)
        XCTAssertEqual(code { try self.verify([0x30, 0x03, 0x0a, 0x01, 0x00]) }, .ocspResponseMalformed)   // successful, no responseBytes
        XCTAssertEqual(code { try self.verify(try OCSPResponder.errorResponse(1)) }, .ocspResponseUnsuccessful)
        XCTAssertEqual(code { try self.verify([UInt8](repeating: 0x30, count: OCSPClient.maxResponseBytes + 1)) }, .ocspResponseMalformed)
        let good = try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [(pki.leaf, .good)])
        XCTAssertEqual(code { try self.verify(good + [0]) }, .ocspResponseMalformed)
        XCTAssertEqual(code { try OCSPClient.checkWellFormed(good) }, nil)
    }

    /// Seeded single-byte changes of good responses (issuer-signed without certificates, and
    /// delegated with the responder's certificate) are refused, never `good`.
    func testMutationsAreRefused() throws {
        let seed = TestSeed()
        var rng = seed.generator
        let responses = [
            try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [(pki.leaf, .good)], includeCerts: false),
            try pki.response(for: pki.leaf, issuer: pki.intermediate, signer: .delegated, index: [(pki.leaf, .good)]),
        ]
        for original in responses {
            guard case .good = try verify(original) else { return XCTFail("the unmutated response verifies") }
            for _ in 0..<300 {
                var bytes = original
                let i = Int.random(in: 0..<bytes.count, using: &rng)
                bytes[i] ^= UInt8.random(in: 1...255, using: &rng)
                if let status = try? verify(bytes) {
                    XCTFail("a response changed at byte \(i) verified as \(status) (\(seed))")
                }
            }
        }
    }
}
