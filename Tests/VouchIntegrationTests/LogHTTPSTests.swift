import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchHTTPServer
import VouchTestSupport

/// `vouch log` against a log served over HTTPS (an in-process server over a directory, standing
/// in for vouchd's tlog-tiles paths): the broker CA is pinned, `--submit` posts the cosigned
/// checkpoint to `/v1/log/cosignatures`, and a server under another CA is refused.
final class LogHTTPSTests: XCTestCase {
    /// What the stand-in was sent.
    final class Received: @unchecked Sendable {
        private let lock = NSLock()
        private var posts: [(path: String, contentType: String?, body: [UInt8])] = []
        func add(_ r: HTTPRequest) { lock.withLock { posts.append((r.path, r.headers["content-type"], r.body)) } }
        var all: [(path: String, contentType: String?, body: [UInt8])] { lock.withLock { posts } }
    }

    func testWitnessOverHTTPSSubmitsItsCosignature() throws {
        let dir = try TestEnv.tempDir("vouch-log-https")
        defer { try? FileManager.default.removeItem(at: dir) }
        var log = StaticTileLog(directory: dir.appendingPathComponent("log"), signer: try StaticTileLog.logSigner())
        log.append(300)
        try log.publish()

        // A CA and a certificate for 127.0.0.1 under it.
        let now = Date()
        let ca = try CertificateAuthority.create(commonName: "log test CA", key: try PrivateKey.generate(.p256),
                                                 notBefore: now.addingTimeInterval(-600), notAfter: now.addingTimeInterval(3600))
        let tlsKey = try PrivateKey.generate(.p256)
        let leaf = try ca.issue(publicKey: try tlsKey.publicKey, profile: LeafProfile(subjectCommonName: "log", ipSANs: ["127.0.0.1"], notBefore: now.addingTimeInterval(-600),
                                                                                        notAfter: now.addingTimeInterval(3600), usage: .tlsServer))
        let caFile = dir.appendingPathComponent("ca.pem")
        try ca.certificate.pem.write(to: caFile, atomically: true, encoding: .utf8)

        let received = Received()
        let root = log.directory.path
        let port = try freePort()
        let server = try HTTPServer(listen: .tls(host: "127.0.0.1", port: port, certificatePEM: try leaf.pem + (try ca.certificate.pem), keyPEM: try tlsKey.pem),
                                    threads: 2) { request in
            if request.method == "POST" {
                received.add(request)
                return HTTPResponse(status: request.path == "/v1/log/cosignatures" ? 204 : 404)
            }
            guard let data = FileManager.default.contents(atPath: root + request.path) else { return HTTPResponse(status: 404) }
            return HTTPResponse(status: 200, body: [UInt8](data))
        }
        defer { server.stop() }
        let url = "https://127.0.0.1:\(port)"

        let keygen = try TestEnv.run(TestEnv.bin("vouch"), ["log", "keygen", "--name", "witness.example.net", "--out", dir.appendingPathComponent("w").path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let witnessKey = try NoteVerifierKey(vkey: try String(contentsOf: dir.appendingPathComponent("w.vkey"), encoding: .utf8).trimmingCharacters(in: .newlines))
        func witness(ca: String) throws -> TestEnv.RunResult {
            try TestEnv.run(TestEnv.bin("vouch"), ["log", "witness", "--log", url, "--ca", ca, "--log-key", log.signer.verifierKey.vkey,
                                                   "--key", dir.appendingPathComponent("w.skey").path, "--state", dir.appendingPathComponent("state").path, "--submit"])
        }
        let r = try witness(ca: caFile.path)
        XCTAssertEqual(r.status, 0, r.stderr)
        let posts = received.all
        XCTAssertEqual(posts.count, 1)
        XCTAssertEqual(posts.first?.path, "/v1/log/cosignatures")
        XCTAssertEqual(posts.first?.contentType?.hasPrefix("text/plain"), true)
        let note = try UnverifiedNote(posts.first?.body ?? []).verify([log.signer.verifierKey, witnessKey])
        XCTAssertEqual(note.verifiedBy, [log.signer.name, "witness.example.net"])

        // The mirror over HTTPS, and a server this CA did not certify.
        let mirror = try TestEnv.run(TestEnv.bin("vouch"), ["log", "mirror", "--log", url, "--ca", caFile.path, "--log-key", log.signer.verifierKey.vkey,
                                                            "--out", dir.appendingPathComponent("mirror").path])
        XCTAssertEqual(mirror.status, 0, mirror.stderr)
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("mirror/checkpoint")), try Data(contentsOf: log.directory.appendingPathComponent("checkpoint")))
        let otherCA = try CertificateAuthority.create(commonName: "another CA", key: try PrivateKey.generate(.p256),
                                                      notBefore: now.addingTimeInterval(-600), notAfter: now.addingTimeInterval(3600))
        let otherFile = dir.appendingPathComponent("other.pem")
        try otherCA.certificate.pem.write(to: otherFile, atomically: true, encoding: .utf8)
        let refused = try witness(ca: otherFile.path)
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertEqual(received.all.count, 1)
    }
}
