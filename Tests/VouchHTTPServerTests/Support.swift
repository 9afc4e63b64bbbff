import Foundation
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchHTTPServer
import VouchTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// What the echo handler saw of a request, sent back as JSON.
struct Echo: Codable, Equatable {
    var method: String
    var path: String
    var query: [String: String]
    var headers: [String: String]
    var body: String
    var peer: String
    /// Hex of the verified client certificate (DER), when the server passed one.
    var clientCertificate: String?
}

/// Answers every request with what it saw (`Echo`), so a test can check what reached the handler.
let echoHandler: HTTPServer.Handler = { req in
    let echo = Echo(method: req.method, path: req.path, query: req.query, headers: req.headers, body: String(decoding: req.body, as: UTF8.self),
                    peer: req.peer, clientCertificate: req.clientCertificate.map(Hex.encode))
    return HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: Array(try! JSONEncoder().encode(echo)))
}

/// A scratch directory, removed by `remove()`; Unix socket paths stay short (sun_path is 108 bytes).
struct Scratch {
    let path: String
    init() throws {
        var template = Array("/tmp/vouch-http-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw POSIXError(.EIO) }
        path = String(cString: p)
    }
    func file(_ name: String) -> String { path + "/" + name }
    func write(_ name: String, _ text: String) throws -> String {
        try Data(text.utf8).write(to: URL(fileURLWithPath: file(name)))
        return file(name)
    }
    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A CA and TLS material made in memory: a server certificate for 127.0.0.1 and client
/// certificates, as PEM text and files for libcurl.
final class TestPKI {
    let ca: CertificateAuthority
    let scratch: Scratch
    let now = Date()

    init(scratch: Scratch, name: String = "Vouch HTTP test CA") throws {
        self.scratch = scratch
        ca = try CertificateAuthority.create(commonName: name, key: try PrivateKey.generate(.p256),
                                             notBefore: now.addingTimeInterval(-3600), notAfter: now.addingTimeInterval(86400))
    }

    var caPEM: String { get throws { try ca.certificate.pem } }

    func caFile() throws -> String { try scratch.write("ca-\(UUID().uuidString.prefix(8)).pem", try caPEM) }

    /// A server certificate naming 127.0.0.1 (and localhost): chain PEM and key PEM.
    func server() throws -> (certificatePEM: String, keyPEM: String) {
        let key = try PrivateKey.generate(.p256)
        let cert = try ca.issue(publicKey: try key.publicKey, profile: LeafProfile(
            subjectCommonName: "localhost", dnsSANs: ["localhost"], ipSANs: ["127.0.0.1"], notBefore: now.addingTimeInterval(-60),
            notAfter: now.addingTimeInterval(3600), usage: .tlsServer))
        return (try cert.pem + (try ca.certificate.pem), try key.pem)
    }

    /// A client certificate (clientAuth) written to files, with its DER.
    func client(notBefore: TimeInterval = -60, notAfter: TimeInterval = 3600) throws -> (identity: HTTPClient.ClientIdentity, der: [UInt8]) {
        let key = try PrivateKey.generate(.p256)
        let cert = try ca.issue(publicKey: try key.publicKey, profile: LeafProfile(
            subjectCommonName: "client", notBefore: now.addingTimeInterval(notBefore), notAfter: now.addingTimeInterval(notAfter), usage: .brokerClient))
        let tag = UUID().uuidString.prefix(8)
        let certFile = try scratch.write("client-\(tag).pem", try cert.pem)
        let keyFile = try scratch.write("client-\(tag).key", try key.pem)
        return (HTTPClient.ClientIdentity(certificateFile: certFile, keyFile: keyFile), try cert.der)
    }
}

/// The threading a test asks for, or `poolWithStreamThreads` in its place (as many pool threads
/// as the test asked for; 4 for a thread per connection) when the environment has `VOUCH_TEST_HTTP_THREADING=streams`:
/// `make test` runs this whole target a second time so, to show that mode serves everything the
/// other two do.
func underTest(_ asked: HTTPServer.Threading) -> HTTPServer.Threading {
    guard ProcessInfo.processInfo.environment["VOUCH_TEST_HTTP_THREADING"] == "streams" else { return asked }
    switch asked {
    case let .pool(n), let .poolWithStreamThreads(n): return .poolWithStreamThreads(n)
    case .perConnection: return .poolWithStreamThreads(4)
    }
}

/// True when `underTest` puts `poolWithStreamThreads` in place of what tests ask for.
var streamThreadsUnderTest: Bool {
    if case .poolWithStreamThreads = underTest(.perConnection) { true } else { false }
}

/// Starts a TLS server on 127.0.0.1 at a port that was free a moment ago (the server has no
/// port-0 lookup); retries on another port if one was taken in between.
func startTLSServer(certificatePEM: String, keyPEM: String, threading: HTTPServer.Threading = .perConnection, maxBodyBytes: Int = 1 << 20,
                    limits: HTTPServer.Limits = .init(), clientTrustPEM: String? = nil,
                    handler: @escaping HTTPServer.Handler = echoHandler) throws -> (server: HTTPServer, port: UInt16) {
    var lastError: Error?
    for _ in 0..<5 {
        let port = try freePort()
        do {
            let server = try HTTPServer(listen: .tls(host: "127.0.0.1", port: port, certificatePEM: certificatePEM, keyPEM: keyPEM),
                                        threading: underTest(threading), maxBodyBytes: maxBodyBytes, limits: limits, clientTrustPEM: clientTrustPEM, handler: handler)
            return (server, port)
        } catch {
            lastError = error
        }
    }
    throw lastError!
}

/// Decodes a JSON error body `{code, message, ...}`; nil if it is not one.
func errorBody(_ r: HTTPResponse) -> (code: String, message: String, keys: Set<String>)? {
    guard let obj = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any],
          let code = obj["code"] as? String, let message = obj["message"] as? String else { return nil }
    return (code, message, Set(obj.keys))
}

/// A test case with a scratch directory and a CA made for it, removed after each test.
class PKITestCase: XCTestCase {
    var scratch: Scratch!
    var pki: TestPKI!
    override func setUpWithError() throws {
        scratch = try Scratch()
        pki = try TestPKI(scratch: scratch)
    }
    override func tearDown() { scratch.remove() }
}
