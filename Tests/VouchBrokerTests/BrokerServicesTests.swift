import Foundation
import Synchronization
import XCTest
import VouchAPI
import VouchBroker
import VouchCore
import VouchCrypto
import VouchModel
import VouchPolicy

/// The broker's services in process (enrollment, revocation, tokens, queries) over the in-memory
/// store and a manual clock, with software-TPM quotes in the real wire formats. Each check names
/// what was written — and, for refusals, that nothing was.
final class BrokerServicesTests: XCTestCase {
    let h1 = String(repeating: "1", count: 32), h2 = String(repeating: "3", count: 32)

    func assertCode(_ code: ErrorCode, _ body: () throws -> Void, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { e in
            XCTAssertEqual((e as? VouchError)?.code ?? (e as? PolicyRefusal)?.error.code, code, "\(e)", line: line)
        }
    }

    // MARK: Enrollment

    func testEnrollmentIssuesTheCertificateWithItsDecisionAndEvent() throws {
        let b = try Broker()
        try b.addHost(h1)
        let commits = b.store.commits
        let (issued, challenge) = try b.enroll(h1, agent: "payments")
        XCTAssertEqual(issued.spiffeId, "spiffe://test.local/host/\(h1)/agent/payments")
        let cert = try Certificate(pem: issued.certificate)
        XCTAssertEqual(cert.uriSANs, [issued.spiffeId])
        XCTAssertLessThanOrEqual(cert.notAfter, b.clock.now().addingTimeInterval(b.policy.reattestation.interval + b.policy.reattestation.grace),
                                 "capped at re-attestation + grace")
        XCTAssertNil(cert.verify(anchors: [b.service.authorities.current.signer.caCertificate], at: b.clock.now()))
        let record = try XCTUnwrap(b.store.certificate(serial: issued.serial))
        let decision = try XCTUnwrap(b.store.latestAttestation(hostID: h1))
        XCTAssertEqual(record.attestationID, decision.id)
        XCTAssertEqual([decision.kind.rawValue, decision.serial, decision.policySHA256], ["enrollment", issued.serial, b.policy.sha256])
        XCTAssertTrue(decision.trusted)
        XCTAssertTrue(try b.store.nonceUsed(challenge.nonce))
        XCTAssertEqual(try b.store.events(after: 0, limit: 10).map(\.type), [.certificateIssued, .hostTrusted])
        XCTAssertEqual(try b.state(h1), .trusted, "a trusted enrollment is a good verdict")
        XCTAssertEqual(b.store.commits, commits + 1, "the issuance and the trust step: one transaction")
    }

    func testEnrollmentRefusedByPolicyIsRecordedAndUsesTheNonce() throws {
        let b = try Broker()
        try b.addHost(h1)
        let challenge = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: h1))
        assertCode(.pcrNotAllowed) { _ = try b.enroll(self.h1, agent: "a", drifted: true, nonce: challenge) }
        let decision = try XCTUnwrap(b.store.latestAttestation(hostID: h1))
        XCTAssertFalse(decision.trusted)
        XCTAssertEqual(decision.codes, ["pcr_not_allowed"])
        XCTAssertEqual(try b.store.events(after: 0, limit: 10).map(\.type), [.attestationRejected])
        XCTAssertEqual(try b.store.certificates(), [])
        // The quote verified, so the refusal used the nonce: a good quote with it is refused now.
        assertCode(.nonceReused) { _ = try b.enroll(self.h1, agent: "a", nonce: challenge) }
    }

    func testUnauthenticatedRefusalsWriteNothing() throws {
        let b = try Broker()
        try b.addHost(h1)
        try b.addHost(h2)
        let commits = b.store.commits
        let expired = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: h1))
        assertCode(.nonceExpired) { _ = try b.enroll(self.h1, agent: "a", nonce: expired, after: 61) }
        let other = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: h2))
        assertCode(.nonceUnknown) { _ = try b.enroll(self.h1, agent: "a", nonce: other) }
        assertCode(.agentNameInvalid) { _ = try b.enroll(self.h1, agent: "Not Valid") }
        assertCode(.unknownHost) { _ = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: String(repeating: "9", count: 32))) }
        assertCode(.badRequest) { _ = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: "../etc")) }
        XCTAssertEqual(b.store.commits, commits)
        XCTAssertEqual(try b.store.events(after: 0, limit: 10), [])
    }

    // MARK: Revocation

    func testRevocationBlockUnblockAndDeletionEachCommitOnce() throws {
        let b = try Broker()
        try b.addHost(h1)
        for serial in ["1a", "1b", "1c"] { try b.addCertificate(host: h1, serial: serial) }
        var commits = b.store.commits
        let one = try b.service.revocation.revoke(RevokeRequest(serial: "1A", reason: "keyCompromise"))
        XCTAssertEqual(one.revoked, ["1a"])
        XCTAssertEqual(one.crlNumber, 1)
        XCTAssertEqual(b.store.commits, commits + 1)
        XCTAssertEqual(try b.store.certificate(serial: "1a")?.revocationReason, .keyCompromise)
        assertCode(.notFound) { _ = try b.service.revocation.revoke(RevokeRequest(serial: "1a")) }
        assertCode(.badRequest) { _ = try b.service.revocation.revoke(RevokeRequest(serial: "1b", reason: "certificateHold")) }
        assertCode(.badRequest) { _ = try b.service.revocation.revoke(RevokeRequest(serial: "1b", hostId: self.h1)) }

        commits = b.store.commits
        let blocked = try b.service.revocation.revoke(RevokeRequest(hostId: h1, reason: "keyCompromise", blockHost: true))
        XCTAssertEqual(blocked.revoked, ["1b", "1c"])
        XCTAssertEqual(blocked.crlNumber, 2)
        XCTAssertEqual(b.store.commits, commits + 1, "block, revocations, CRL and events in one transaction")
        XCTAssertNotNil(try b.store.host(id: h1)?.blockedReason)
        XCTAssertEqual(try b.store.events(after: 0, limit: 20).map(\.type).suffix(3), [.certificateRevoked, .certificateRevoked, .hostBlocked])
        assertCode(.hostRevoked) { _ = try b.service.enrollment.createChallenge(ChallengeRequest(hostId: self.h1)) }
        assertCode(.conflict) { _ = try b.service.revocation.deleteHost(id: self.h1) }

        _ = try b.service.revocation.unblock(hostID: h1)
        XCTAssertNil(try b.store.host(id: h1)?.blockedReason)
        let (issued, _) = try b.enroll(h1, agent: "after")
        commits = b.store.commits
        let deleted = try b.service.revocation.deleteHost(id: h1)
        XCTAssertEqual(deleted.revoked, [issued.serial])
        XCTAssertEqual(b.store.commits, commits + 1, "revocation, deletion, its record and event in one transaction")
        XCTAssertNil(try b.store.host(id: h1))
        XCTAssertEqual(try b.store.attestations(HistoryQuery(hostID: h1, kind: .deregistration)).count, 1)
        XCTAssertEqual(try b.service.revocation.currentCRL().number, 3)
    }

    func testTheCRLIsReSignedWhenHalfItsValidityHasPassed() throws {
        let b = try Broker()
        let first = try b.service.revocation.currentCRL()
        XCTAssertEqual(first.number, 1)
        b.clock.advance(by: 149)
        XCTAssertEqual(try b.service.revocation.currentCRL().number, 1, "served from memory")
        b.clock.advance(by: 1)
        let second = try b.service.revocation.currentCRL()
        XCTAssertEqual(second.number, 2)
        XCTAssertEqual(second.thisUpdate, b.clock.now())
        XCTAssertEqual(try b.store.currentCRL(issuer: b.service.authorities.current.keyID)?.number, 2)
    }

    /// Revocations of twelve hosts at once under one CA: planned, signed (outside the store lock)
    /// and committed in batches under the planning lock, so none finds its plan stale and none is
    /// refused; each CRL number is taken by one batch, and the last CRL lists every revoked
    /// certificate.
    func testConcurrentRevocationsUnderOneCAAreAllInTheCRL() throws {
        let b = try Broker()
        let hosts = ["4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"].map { String(repeating: $0, count: 32) }
        var serials: [String] = []
        for (i, h) in hosts.enumerated() {
            try b.addHost(h)
            for j in 0..<2 {
                let serial = String(format: "4%02x%da0", i, j)
                try b.addCertificate(host: h, serial: serial)
                serials.append(serial)
            }
        }
        let revocation = b.service.revocation
        let results = Mutex<[RevokeResponse]>([])
        DispatchQueue.concurrentPerform(iterations: hosts.count) { i in
            if let r = try? revocation.revoke(RevokeRequest(hostId: hosts[i], reason: "keyCompromise")) { results.withLock { $0.append(r) } }
        }
        XCTAssertEqual(results.withLock { $0.count }, hosts.count)
        // Revocations that meet are batched under one CRL: the numbers answered run from 1 to the
        // current CRL's without a gap (one per batch), and the current CRL lists every serial.
        let crl = try b.service.revocation.currentCRL()
        XCTAssertEqual(Set(results.withLock { $0.map(\.crlNumber) }).sorted(), Array(1...crl.number))
        XCTAssertEqual(try CRL(der: crl.der).revokedSerials.map { $0.lowercased() }.sorted(), serials.sorted())
        XCTAssertEqual(try b.store.events(after: 0, limit: 100).filter { $0.type == .certificateRevoked }.count, serials.count)
    }

    // MARK: Tokens and queries

    func testTokensGrantTheirScopeUntilRevoked() throws {
        let b = try Broker()
        let read = try b.service.tokens.createToken(TokenCreateRequest(name: "dashboard", scope: "read"))
        let secret = try XCTUnwrap(read.token)
        XCTAssertEqual(try b.service.tokens.scope(ofTokenDigest: Crypto.sha256(Array(secret.utf8))), .read)
        XCTAssertNil(try b.service.tokens.scope(ofTokenDigest: Crypto.sha256(Array("vouch_read_guess".utf8))))
        XCTAssertEqual(try b.service.tokens.listTokens().map(\.token), [nil], "the secret is shown once")
        _ = try b.service.tokens.revokeToken(id: read.id)
        XCTAssertNil(try b.service.tokens.scope(ofTokenDigest: Crypto.sha256(Array(secret.utf8))))
        assertCode(.notFound) { _ = try b.service.tokens.revokeToken(id: read.id) }
        assertCode(.badRequest) { _ = try b.service.tokens.createToken(TokenCreateRequest(name: "x", scope: "root")) }
        assertCode(.badRequest) { _ = try b.service.tokens.createToken(TokenCreateRequest(name: "../x", scope: "read")) }
    }

    func testHistoryFiltersAndStatus() throws {
        let b = try Broker()
        try b.addHost(h1)
        try b.addHost(h2)
        _ = try b.enroll(h1, agent: "a")
        b.clock.advance(by: 1)
        assertCode(.pcrNotAllowed) { _ = try b.enroll(self.h2, agent: "b", drifted: true) }
        let all = try b.service.queries.history([:])
        XCTAssertEqual(all.items.map(\.kind), ["enrollment", "enrollment", "activation", "activation"], "newest first")
        XCTAssertEqual(try b.service.queries.history(["result": "rejected"]).items.map(\.hostId), [h2])
        XCTAssertEqual(try b.service.queries.history(["hostId": h1, "kind": "enrollment"]).items.map(\.result), ["trusted"])
        XCTAssertEqual(try b.service.queries.history(["limit": "1"]).items.count, 1)
        assertCode(.badRequest) { _ = try b.service.queries.history(["colour": "red"]) }
        assertCode(.badRequest) { _ = try b.service.queries.history(["kind": "unrecognized"]) }
        let status = try b.service.queries.status()
        XCTAssertEqual(Set(status.hosts.map(\.hostId)), [h1, h2])
        XCTAssertEqual(status.certificates.count, 1)
        XCTAssertEqual(try b.service.queries.hostStatus(id: h1).trust?.state, "trusted")
    }
}
