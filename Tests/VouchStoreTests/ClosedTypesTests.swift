import Foundation
import XCTest
import VouchCore
import VouchModel
@testable import VouchStore

/// The closed types the store keeps as raw values: each round-trips its raw value (the column's
/// bytes are what they were before the types existed), and an unknown stored value reads as the
/// documented fallback instead of trapping or dropping the row.
final class ClosedTypesTests: XCTestCase {
    func testRawValuesRoundTripAndStayTheStoredOnes() {
        for kind in AttestationKind.allCases { XCTAssertEqual(AttestationKind(rawValue: kind.rawValue), kind) }
        for kind in AttestationKind.allCases { XCTAssertEqual(AttestationKind(stored: kind.rawValue), kind) }
        XCTAssertEqual(AttestationKind.allCases.map(\.rawValue),
                       ["registration", "activation", "enrollment", "reattestation", "fault", "deregistration", "unrecognized"])
        XCTAssertEqual(AttestationKind.allCases.filter(\.isFilterable).count, 6)

        for type in OutboxEventType.allCases {
            XCTAssertEqual(OutboxEventType(rawValue: type.rawValue), type)
            XCTAssertEqual(OutboxEventType(stored: type.rawValue), type)
        }
        XCTAssertEqual(OutboxEventType.allCases.map(\.rawValue),
                       ["certificate.issued", "certificate.revoked", "attestation.rejected", "host.blocked", "host.unblocked", "host.deleted",
                        "host.trusted", "host.untrusted", "host.unreachable", "unrecognized"])

        for reason in RevocationReason.allCases {
            XCTAssertEqual(RevocationReason(rawValue: reason.rawValue), reason)
            XCTAssertEqual(RevocationReason(name: reason.name), reason)
            XCTAssertEqual(RevocationReason(stored: Int64(reason.rawValue)), reason)
        }
        // RFC 5280 section 5.3.1 (7 is unused).
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: RevocationReason.allCases.map { ($0.name, $0.rawValue) }),
                       ["unspecified": 0, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3, "superseded": 4,
                        "cessationOfOperation": 5, "certificateHold": 6, "removeFromCRL": 8, "privilegeWithdrawn": 9, "aACompromise": 10])
        // What the API accepted before (the old `reasonCodes` table), and nothing more.
        XCTAssertEqual(RevocationReason.allCases.filter(\.isRequestable).map(\.name).sorted(),
                       ["affiliationChanged", "cessationOfOperation", "keyCompromise", "privilegeWithdrawn", "superseded", "unspecified"])
        XCTAssertNil(RevocationReason(name: "KeyCompromise"), "names are case-sensitive, as before")
    }

    func testUnknownStoredValuesReadAsTheDocumentedFallback() {
        XCTAssertEqual(AttestationKind(stored: "attestation.v2"), .unrecognized)
        XCTAssertEqual(AttestationKind(stored: ""), .unrecognized)
        XCTAssertFalse(AttestationKind.unrecognized.isFilterable)
        XCTAssertEqual(OutboxEventType(stored: "host.renamed"), .unrecognized)
        XCTAssertEqual(RevocationReason(stored: 7), .unspecified, "7 is not an RFC 5280 reason")
        XCTAssertEqual(RevocationReason(stored: -1), .unspecified)
        XCTAssertEqual(RevocationReason(stored: Int64.max), .unspecified)
    }

    /// A database written before the types existed (raw rows, a legacy `registration` kind and
    /// values no broker writes) reads without trapping and without losing a row; known values
    /// read as their cases and are written back byte-identical.
    func testRowsFromBeforeAndUnknownRowsReadFromTheStore() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-closed-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("vouch.db").path
        let store = try SQLiteBrokerStore(path: path)
        let db = try SQLiteDatabase(path: path)
        let host = String(repeating: "a", count: 32)
        let at = 1_800_000_000.0
        let t0 = Date(timeIntervalSince1970: at)
        try store.saveHost(HostRecord(id: host, hostname: "h", ekPublic: [1], ekCertificate: [2], ekIssuer: "CN=x", akPublic: [3], akName: [4],
                                      akAlgorithm: "ecc-p256", akState: .active, activationDigest: nil, activationExpiresAt: nil,
                                      activationFailures: 0, registeredAt: t0, updatedAt: t0))
        for kind in ["registration", "enrollment", "kind.from.elsewhere"] {
            try db.prepare("INSERT INTO attestations (host_id, at, kind, trusted, codes, message) VALUES (?, ?, ?, 0, '', ?)")
                .run([.text(host), .real(at), .text(kind), .text(kind)])
        }
        for (serial, reason) in [("01", Int64(4)), ("02", Int64(7)), ("03", Int64(9))] {
            try db.prepare("""
            INSERT INTO certificates (serial, host_id, agent_name, spiffe_id, not_before, not_after, pem, attestation_id, revoked_at, revocation_reason)
            VALUES (?, ?, 'a', 's', 0, 1, 'PEM', 1, ?, ?)
            """).run([.text(serial), .text(host), .real(at), .int(reason)])
        }
        for type in ["host.blocked", "host.renamed"] {
            try db.prepare("INSERT INTO events (at, type, data) VALUES (?, ?, '{}')").run([.real(at), .text(type)])
        }

        let history = try store.attestations(HistoryQuery(hostID: host))
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: history.map { ($0.message, $0.kind) }),
                       ["registration": .registration, "enrollment": .enrollment, "kind.from.elsewhere": .unrecognized])
        XCTAssertEqual(try store.attestations(HistoryQuery(kind: .registration)).map(\.message), ["registration"])

        let certificates = Dictionary(uniqueKeysWithValues: try store.certificates().map { ($0.serial, $0) })
        XCTAssertEqual(certificates["01"]?.revocationReason, .superseded)
        XCTAssertEqual(certificates["02"]?.revocationReason, .unspecified)
        XCTAssertNotNil(certificates["02"]?.revokedAt, "an unknown reason leaves the certificate revoked")
        XCTAssertEqual(certificates["03"]?.revocationReason, .privilegeWithdrawn)

        XCTAssertEqual(try store.events(after: 0, limit: 10).map(\.type), [.hostBlocked, .unrecognized])

        // Written through the types, the columns hold the same bytes as before.
        try store.recordAttestation(AttestationRecord(hostID: host, at: t0, kind: .reattestation, trusted: true,
                                                      codes: [], message: "new"))
        try store.appendEvent(type: .hostUntrusted, data: [:], at: t0)
        XCTAssertEqual(try db.prepare("SELECT kind FROM attestations WHERE message = 'new'").query([]) { $0.text(0) }, ["reattestation"])
        XCTAssertEqual(try db.prepare("SELECT type FROM events ORDER BY id DESC LIMIT 1").query([]) { $0.text(0) }, ["host.untrusted"])
    }
}
