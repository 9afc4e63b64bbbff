import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchHTTPClient

/// The pull client with TLS material parsed once (`TLSClientMaterial` through
/// CURLOPT_SSL_CTX_FUNCTION) against a real TLS server (`openssl s_server` demanding a client
/// certificate): the installed store is the only trust, the pin still binds the server key, and
/// the client certificate is presented.
final class PreloadedTLSTests: XCTestCase {
    func testInstalledTrustPinAndClientCertificateAreAllEnforced() throws {
        let dir = try TestEnv.tempDir("vouch-tls")
        defer { try? FileManager.default.removeItem(at: dir) }
        let now = Date()
        func authority(_ name: String) throws -> CertificateAuthority {
            try CertificateAuthority.create(commonName: name, key: try PrivateKey.generate(), notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(3600))
        }
        func leaf(_ ca: CertificateAuthority, _ name: String) throws -> (cert: Certificate, key: PrivateKey) {
            let key = try PrivateKey.generate()
            let cert = try ca.issue(publicKey: try key.publicKey, profile: LeafProfile(uriSANs: ["spiffe://test/\(name)"],
                                                                                      notBefore: now.addingTimeInterval(-60), notAfter: now.addingTimeInterval(600), usage: .agent))
            return (cert, key)
        }
        let ca = try authority("pull CA"), stranger = try authority("another CA")
        let server = try leaf(ca, "host"), client = try leaf(ca, "vouchd"), outsider = try leaf(stranger, "vouchd")
        func write(_ name: String, _ text: String) throws -> String {
            let path = dir.appendingPathComponent(name).path
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
        let port = TestEnv.freePorts()
        let sServer = try BackgroundProcess("/usr/bin/openssl", [
            "s_server", "-accept", "127.0.0.1:\(port)", "-www", "-naccept", "100",
            "-cert", try write("server.pem", try server.cert.pem), "-key", try write("server.key", try server.key.pem),
            "-CAfile", try write("ca.pem", try ca.certificate.pem), "-Verify", "1", "-verify_return_error",
        ], log: dir.appendingPathComponent("s_server.log"))
        defer { sServer.stop() }
        XCTAssertTrue(TestEnv.waitForPort(port), sServer.log)

        let pin = "sha256//" + Base64.encode(Crypto.sha256(try server.cert.publicKey.spkiDER))
        func get(trust: CertificateAuthority, identity: (cert: Certificate, key: PrivateKey), pin: String) throws -> HTTPResponse {
            let material = try TLSClientMaterial(trustPEM: try trust.certificate.pem, certificateChainPEM: try identity.cert.pem, keyPEM: try identity.key.pem)
            let tls = HTTPClient.PreloadedTLS { material.install(into: $0) }
            return try HTTPClient(.pinned(tls: tls, publicKeyPin: pin), timeoutSeconds: 5, freshConnections: true)
                .send("GET", "https://127.0.0.1:\(port)/")
        }

        // Trusted CA, right pin, a client certificate the server accepts.
        let ok = try get(trust: ca, identity: client, pin: pin)
        XCTAssertEqual(ok.status, 200)
        XCTAssertTrue(String(decoding: ok.body, as: UTF8.self).contains("vouchd"), "the server saw our client certificate")
        // Another CA in the installed store: the server certificate does not verify — also right
        // after a connection that trusted the right CA on the same pooled handle (libcurl's CA
        // and session caches must not carry that trust over).
        XCTAssertThrowsError(try get(trust: stranger, identity: client, pin: pin)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .http)
            XCTAssertEqual(($0 as? VouchError)?.cause as? HTTPClientError, .tls)
        }
        // Right CA, another key pinned.
        let otherPin = "sha256//" + Base64.encode(Crypto.sha256(try client.cert.publicKey.spkiDER))
        XCTAssertThrowsError(try get(trust: ca, identity: client, pin: otherPin)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .http)
            XCTAssertEqual(($0 as? VouchError)?.cause as? HTTPClientError, .tls)
        }
        // A client certificate from another CA: the server refuses the handshake.
        XCTAssertThrowsError(try get(trust: ca, identity: outsider, pin: pin)) { XCTAssertEqual(($0 as? VouchError)?.code, .http) }
        // A key that is not the certificate's is refused when the material is made.
        XCTAssertThrowsError(try TLSClientMaterial(trustPEM: try ca.certificate.pem, certificateChainPEM: try client.cert.pem, keyPEM: try server.key.pem)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue)
        }
        XCTAssertEqual(try get(trust: ca, identity: client, pin: pin).status, 200, "failures left nothing behind in pooled handles")
    }

    /// Transport failures carry a typed `HTTPClientError` as their cause (what the broker's pull
    /// turns into attester_unreachable / attester_timeout), with the code and message as before.
    func testTransportFailuresAreTyped() throws {
        let client = HTTPClient(.anyURL(caFile: nil), timeoutSeconds: 1)
        // Nothing listens: refused.
        let closed = TestEnv.freePorts()
        XCTAssertThrowsError(try client.send("GET", "http://127.0.0.1:\(closed)/")) {
            let e = $0 as? VouchError
            XCTAssertEqual(e?.code, .http)
            XCTAssertEqual(e?.cause as? HTTPClientError, .connectionRefused)
            XCTAssertEqual(e?.context["kind"], "refused")
            XCTAssertTrue(e?.message.hasPrefix("GET http://127.0.0.1:\(closed)/ failed: ") ?? false, "\(String(describing: e))")
        }
        // A listener that accepts (in the kernel's backlog) and never answers: timed out.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        XCTAssertTrue(bound)
        let port = UInt16(bigEndian: addr.sin_port)
        XCTAssertThrowsError(try client.send("GET", "http://127.0.0.1:\(port)/")) {
            let e = $0 as? VouchError
            XCTAssertEqual(e?.code, .http)
            XCTAssertEqual(e?.cause as? HTTPClientError, .timedOut)
            XCTAssertEqual(e?.context["kind"], "timeout")
            switch e?.cause as? HTTPClientError {
            case .timedOut?: break
            default: XCTFail("a closed set matched by its members")
            }
        }
    }
}
