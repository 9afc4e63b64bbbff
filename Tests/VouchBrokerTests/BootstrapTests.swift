import Foundation
import XCTest
import VouchBroker
import VouchCore
import VouchCrypto
import VouchTestSupport

/// What the broker keeps on disk between starts.
final class BootstrapTests: XCTestCase {
    struct WallClock: Clock { func now() -> Date { Date() } }

    func temporaryDirectory() -> String {
        let dir = NSTemporaryDirectory() + "vouch-bootstrap-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    func testTheResultSigningKeySurvivesARestartAndIsNotTheTLSClientKey() throws {
        let dir = temporaryDirectory()
        let (brokerCA, _) = try BrokerBootstrap.loadOrCreateBrokerCA(directory: dir + "/broker-ca", trustDomain: "boot.test", clock: WallClock())
        func signer() throws -> JWSSigner {
            try BrokerBootstrap.resultSigner(brokerCA: brokerCA, spiffeID: "spiffe://boot.test/vouchd", directory: dir + "/results", clock: WallClock())
        }
        let first = try signer(), second = try signer()
        XCTAssertEqual(first.kid, second.kid, "the same key, so the same kid in /v1/ear/jwks")
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: dir + "/results/signing.key")[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        // The TLS client identity operators are handed is another key, new at each start.
        let tls1 = try BrokerBootstrap.brokerIdentity(brokerCA: brokerCA, spiffeID: "spiffe://boot.test/vouchd", directory: dir + "/tls", clock: WallClock())
        let tls2 = try BrokerBootstrap.brokerIdentity(brokerCA: brokerCA, spiffeID: "spiffe://boot.test/vouchd", directory: dir + "/tls", clock: WallClock())
        XCTAssertNotEqual(tls1.keyPEM, tls2.keyPEM)
        let tlsKey = try PrivateKey(pem: tls1.keyPEM)
        XCTAssertNotEqual(try JWK(publicKey: try tlsKey.publicKey).thumbprint, first.kid)

        // Rotation: without the key file, a new key.
        try FileManager.default.removeItem(atPath: dir + "/results/signing.key")
        XCTAssertNotEqual(try signer().kid, first.kid)
    }

    func testTheJWTSVIDKeyIsItsOwnAndSurvivesARestart() throws {
        let dir = temporaryDirectory()
        let (brokerCA, _) = try BrokerBootstrap.loadOrCreateBrokerCA(directory: dir + "/broker-ca", trustDomain: "boot.test", clock: WallClock())
        let results = try BrokerBootstrap.resultSigner(brokerCA: brokerCA, spiffeID: "spiffe://boot.test/vouchd", directory: dir + "/results", clock: WallClock())
        let others = [try brokerCA.certificate.publicKey, try results.jwk.publicKey()]
        let first = try BrokerBootstrap.jwtSVIDSigner(directory: dir + "/results", distinctFrom: others)
        XCTAssertEqual(try BrokerBootstrap.jwtSVIDSigner(directory: dir + "/results", distinctFrom: others).kid, first.kid, "kept across starts")
        XCTAssertNotEqual(first.kid, results.kid)
        XCTAssertEqual(first.jwk.use, "jwt-svid")
        XCTAssertNil(first.jwk.x5c)
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: dir + "/results/jwt-svid.key")[.posixPermissions] as? NSNumber)?.intValue, 0o600)

        // The result-signing key copied over it: refused, and left as it is.
        let copied = try Data(contentsOf: URL(fileURLWithPath: dir + "/results/signing.key"))
        try copied.write(to: URL(fileURLWithPath: dir + "/results/jwt-svid.key"))
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: dir + "/results/jwt-svid.key")[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        XCTAssertThrowsError(try BrokerBootstrap.jwtSVIDSigner(directory: dir + "/results", distinctFrom: others)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .config)
            XCTAssertEqual(($0 as? VouchError)?.context["path"], dir + "/results/jwt-svid.key")
        }
        XCTAssertNoThrow(try BrokerBootstrap.jwtSVIDSigner(directory: dir + "/results", distinctFrom: []), "a good key file in itself")
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/results/jwt-svid.key")), copied)
    }

    func testTwoFirstStartsAgreeOnOneKey() throws {
        let dir = temporaryDirectory()
        let (brokerCA, _) = try BrokerBootstrap.loadOrCreateBrokerCA(directory: dir + "/broker-ca", trustDomain: "boot.test", clock: WallClock())
        let kids = LockedKids()
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            if let s = try? BrokerBootstrap.resultSigner(brokerCA: brokerCA, spiffeID: "spiffe://boot.test/vouchd", directory: dir + "/results", clock: WallClock()) {
                kids.add(s.kid)
            }
        }
        XCTAssertEqual(kids.values.count, 8)
        XCTAssertEqual(Set(kids.values).count, 1, "every start signs with the key on disk")
    }

    func testUntrustworthyKeyFilesAreRefusedAndLeftAlone() throws {
        let dir = temporaryDirectory()
        let (brokerCA, _) = try BrokerBootstrap.loadOrCreateBrokerCA(directory: dir + "/broker-ca", trustDomain: "boot.test", clock: WallClock())
        let path = dir + "/results/signing.key"
        func code() -> ErrorCode? {
            do {
                _ = try BrokerBootstrap.resultSigner(brokerCA: brokerCA, spiffeID: "spiffe://boot.test/vouchd", directory: dir + "/results", clock: WallClock())
                return nil
            } catch { return (error as? VouchError)?.code }
        }
        try FileManager.default.createDirectory(atPath: dir + "/results", withIntermediateDirectories: true)
        let good = try PrivateKey.generate(.p256).pem
        let encrypted = try XCTUnwrap(try? runOpenSSL(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:secret"], input: good))
        for (name, content, mode) in [("P-384", try PrivateKey.generate(.p384).pem, 0o600), ("not a key", "garbage", 0o600),
                                      ("encrypted", encrypted, 0o600), ("readable by others", good, 0o644)] as [(String, String, Int)] {
            try? FileManager.default.removeItem(atPath: path)
            try content.write(toFile: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
            XCTAssertEqual(code(), .config, name)
            XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), content, "\(name): left as it was")
        }
        // A symbolic link to a good key: refused too (someone else chose what it points at).
        try? FileManager.default.removeItem(atPath: path)
        try good.write(toFile: dir + "/elsewhere.key", atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir + "/elsewhere.key")
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: dir + "/elsewhere.key")
        XCTAssertEqual(code(), .config, "symbolic link")
    }

    final class LockedKids: @unchecked Sendable {
        private let lock = NSLock()
        private var kids: [String] = []
        func add(_ kid: String) { lock.lock(); kids.append(kid); lock.unlock() }
        var values: [String] { lock.lock(); defer { lock.unlock() }; return kids }
    }

    func runOpenSSL(_ args: [String], input: String) throws -> String {
        String(decoding: try opensslOutput(args, stdin: Array(input.utf8)), as: UTF8.self)
    }
}
