import Foundation
import XCTest
import VouchCrypto
@testable import VouchReceiptKit
import VouchReceiptTestSupport

/// `ReceiptTrust.chain(pem:)` reads a bundle's chain as `Certificate.chain(pem:)` does, reusing the
/// trust document's own certificates for their byte-identical copies.
final class ReceiptTrustTests: XCTestCase {
    func testAChainReadsAsCertificateChainDoesAndReusesTheDocumentsCertificates() throws {
        let world = try ReceiptFixture()
        let trust = try ReceiptTrust(try world.trust)
        func ders(_ certs: [Certificate]) throws -> [[UInt8]] { try certs.map { try $0.der } }
        let pem = try world.chainPEM
        let chain = try trust.chain(pem: pem)
        XCTAssertEqual(try ders(chain), try ders(try Certificate.chain(pem: pem)))
        XCTAssertTrue(chain[1] === trust.agentAnchors[0], "the issuing CA's copy is the trust document's certificate")
        // Other spellings are read by OpenSSL's PEM reader: the same certificates either way.
        let leafPEM = try world.agentCert.pem
        for variant in [pem.replacingOccurrences(of: "\n", with: "\r\n"), "text before\n" + pem + "text after\n",
                        leafPEM.replacingOccurrences(of: "CERTIFICATE", with: "X509 CERTIFICATE") + (try world.agentCA.certificate.pem)] {
            XCTAssertEqual(try ders(try trust.chain(pem: variant)), try ders(try Certificate.chain(pem: variant)))
        }
        XCTAssertThrowsError(try trust.chain(pem: "no certificate\n"))
        XCTAssertThrowsError(try trust.chain(pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
    }
}
