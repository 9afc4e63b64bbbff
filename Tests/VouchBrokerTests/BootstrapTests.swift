import Foundation
import XCTest
import VouchBroker
import VouchCore
import VouchCrypto

/// What the broker keeps on disk between starts.
final class BootstrapTests: XCTestCase {
    struct FixedClock: Clock { func now() -> Date { Date() } }

    func testTheResultSigningKeySurvivesARestartAndABadKeyIsRefused() throws {
        let dir = NSTemporaryDirectory() + "vouch-bootstrap-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (brokerCA, _) = try BrokerBootstrap.loadOrCreateBrokerCA(directory: dir + "/broker-ca", trustDomain: "boot.test", clock: FixedClock())
        let first = try BrokerBootstrap.brokerIdentity(brokerCA: brokerCA, spiffeID: "spiffe://boot.test/vouchd", directory: dir + "/tls", clock: FixedClock())
        let second = try BrokerBootstrap.brokerIdentity(brokerCA: brokerCA, spiffeID: "spiffe://boot.test/vouchd", directory: dir + "/tls", clock: FixedClock())
        // Same key (so the same kid in /v1/ear/jwks), a certificate issued afresh.
        XCTAssertEqual(first.resultSigner.kid, second.resultSigner.kid)
        XCTAssertEqual(first.keyPEM, second.keyPEM)
        XCTAssertNotEqual(first.certificatePEM, second.certificatePEM)
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: dir + "/tls/client.key")[.posixPermissions] as? NSNumber)?.intValue, 0o600)

        // Rotation: without the key file, a new key.
        try FileManager.default.removeItem(atPath: dir + "/tls/client.key")
        let rotated = try BrokerBootstrap.brokerIdentity(brokerCA: brokerCA, spiffeID: "spiffe://boot.test/vouchd", directory: dir + "/tls", clock: FixedClock())
        XCTAssertNotEqual(rotated.resultSigner.kid, first.resultSigner.kid)

        // A key that is not a P-256 key, or not a key: refused with a configuration error, not replaced.
        for bad in [try PrivateKey.generate(.p384).pem, "not a key"] {
            try bad.write(toFile: dir + "/tls/client.key", atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try BrokerBootstrap.brokerIdentity(brokerCA: brokerCA, spiffeID: "spiffe://boot.test/vouchd", directory: dir + "/tls", clock: FixedClock())) {
                XCTAssertEqual(($0 as? VouchError)?.code, .config)
            }
            XCTAssertEqual(try String(contentsOfFile: dir + "/tls/client.key", encoding: .utf8), bad)
        }
    }
}
