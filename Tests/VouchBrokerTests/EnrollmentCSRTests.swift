import Foundation
import XCTest
import VouchAPI
import VouchBroker
import VouchCore
import VouchCrypto
import VouchTestSupport

/// Enrollment with requests made by `openssl req` and broken ones, through the broker's own
/// PKCS#10 parser: what enrolls, and the codes of refusals (those the OpenSSL parse gave).
final class EnrollmentCSRTests: XCTestCase {
    let host = String(repeating: "5", count: 32)

    /// P-256, P-384 and RSA-2048 requests from `openssl req` enroll, the quote bound to the SPKI
    /// `openssl req -pubkey` prints; the certificate carries the request's key.
    func testOpenSSLRequestsEnroll() throws {
        let b = try Broker()
        try b.addHost(host)
        for (name, genpkey) in [("p256", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                                ("p384", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
                                ("rsa2048", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])] {
            let (pem, key) = try opensslRequest(genpkey, name: name)
            let response = try enroll(b, agent: name, csr: pem, boundTo: try key.spkiDER)
            let cert = try Certificate(pem: response.certificate)
            XCTAssertTrue(try cert.publicKey.isEqual(to: key), name)
            XCTAssertEqual(try cert.publicKey.spkiDER, try key.spkiDER, name)
        }
    }

    /// Refusals keep their codes: not a request, truncated, bytes after it → `csr_malformed`; a
    /// self-signature that does not verify → `csr_signature_invalid`; a P-521 or Ed25519 key
    /// (OpenSSL parses and verifies those, as before) → `csr_key_not_allowed` after the quote.
    func testRefusalsKeepTheirCodes() throws {
        let b = try Broker()
        try b.addHost(host)
        let key = try PrivateKey.generate()
        let der = try CSR.create(key: key, commonName: "agent").der
        let spki = try key.publicKey.spkiDER
        func pem(_ der: [UInt8]) -> String { "-----BEGIN CERTIFICATE REQUEST-----\n\(Base64.encode(der))\n-----END CERTIFICATE REQUEST-----\n" }
        for bad in [Array(der.prefix(der.count / 2)), Array(der.dropLast()), der + [0], der + der, [0x30, 0x00]] {
            assertCode(.csrMalformed) { _ = try enroll(b, agent: "bad", csr: pem(bad), boundTo: spki) }
        }
        assertCode(.csrMalformed) { _ = try enroll(b, agent: "bad", csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", boundTo: spki) }
        var flipped = der
        flipped[flipped.count - 2] ^= 0x01   // inside the signature
        assertCode(.csrSignatureInvalid) { _ = try enroll(b, agent: "bad", csr: pem(flipped), boundTo: spki) }
        for (name, genpkey) in [("p521", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"]), ("ed25519", ["-algorithm", "ED25519"])] {
            let (request, other) = try opensslRequest(genpkey, name: name)
            assertCode(.csrKeyNotAllowed) { _ = try enroll(b, agent: name, csr: request, boundTo: try other.spkiDER) }
        }
        XCTAssertNotNil(try enroll(b, agent: "good", csr: pem(der), boundTo: spki).serial)
    }

    // MARK: helpers

    private func assertCode(_ code: ErrorCode, _ body: () throws -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { e in
            XCTAssertEqual((e as? VouchError)?.code ?? (e as? PolicyRefusal)?.error.code, code, "\(e)", line: line)
        }
    }

    /// A challenge, a quote binding `spki`, and the enrollment with `csr`.
    private func enroll(_ b: Broker, agent: String, csr: String, boundTo spki: [UInt8]) throws -> EnrollResponse {
        let challenge = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: host))
        let quote = try XCTUnwrap(b.tpms[host]).enrollmentQuote(challenge, agentSPKI: spki, at: b.clock.now())
        return try b.service.enrollment.enroll(EnrollRequest(hostId: host, nonce: challenge.nonce, agentName: agent, csr: csr, quote: quote))
    }

    /// A request from `openssl req` for a fresh key, and that key as `openssl req -pubkey` prints it.
    private func opensslRequest(_ genpkey: [String], name: String) throws -> (String, PublicKey) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-enroll-csr-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let key = dir.appendingPathComponent("key.pem").path
        _ = try openssl(["genpkey"] + genpkey + ["-out", key])
        let pem = try openssl(["req", "-new", "-key", key, "-subj", "/CN=\(name)"])
        return (pem, try PublicKey(pem: try openssl(["req", "-in", "/dev/stdin", "-noout", "-pubkey"], stdin: pem)))
    }

    private func openssl(_ args: [String], stdin: String? = nil) throws -> String {
        String(decoding: try opensslOutput(args, stdin: stdin.map { Array($0.utf8) }), as: UTF8.self)
    }
}
