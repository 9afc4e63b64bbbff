import Foundation
import Synchronization
import XCTest
import VouchBrokerTestSupport
import VouchCore
import VouchEventLog
import VouchModel
import VouchStore

final class StoreTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-store-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    func open() throws -> SQLiteBrokerStore { try SQLiteBrokerStore(path: dir.appendingPathComponent("vouch.db").path) }

    let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    func host(_ id: String = String(repeating: "a", count: 32)) -> HostRecord {
        HostRecord(id: id, hostname: "h", ekPublic: [1], ekCertificate: [2], ekIssuer: "CN=x", akPublic: [3], akName: [4],
                   akAlgorithm: "ecc-p256", akState: .active, activationDigest: nil, activationExpiresAt: nil,
                   activationFailures: 0, registeredAt: t0, updatedAt: t0)
    }

    func activation(_ id: String) -> AttestationRecord {
        AttestationRecord(hostID: id, at: t0, kind: .activation, trusted: false, codes: [], message: "AK activated")
    }

    func cert(_ serial: String, agent: String = "a", issuer: String = "ca1") -> CertificateRecord {
        CertificateRecord(serial: serial, hostID: host().id, agentName: agent, spiffeID: "spiffe://t/host/x/agent/\(agent)",
                          notBefore: t0, notAfter: t0.addingTimeInterval(900), pem: "PEM", attestationID: 0, issuer: issuer)
    }

    func builder(_ seen: UnsafeMutablePointer<[String]>? = nil) -> CRLBuilder {
        { issuer, revoked, number in
            seen?.pointee = revoked.map(\.serial)
            XCTAssertTrue(revoked.allSatisfy { $0.issuer == issuer }, "a CRL lists only its issuer's certificates")
            return CRLRecord(issuer: issuer, number: number, der: [UInt8(number & 0xff)], thisUpdate: self.t0, nextUpdate: self.t0.addingTimeInterval(300))
        }
    }

    /// A nonce is stored only with the decision that uses it, and only once: a second decision
    /// using it fails as a whole (nothing of it is written).
    func testNoncesAreUsedOnceWithTheirDecision() throws {
        let s = try open()
        try s.saveHost(host())
        XCTAssertFalse(try s.nonceUsed("n1"))
        let first = AttestationRecord(hostID: host().id, at: t0, kind: .enrollment, trusted: false, codes: ["x"], message: "m",
                                      nonce: "n1", nonceExpiresAt: t0.addingTimeInterval(60))
        try s.recordAttestation(first)
        XCTAssertTrue(try s.nonceUsed("n1"))
        let count = try s.attestations(HistoryQuery(hostID: host().id)).count
        XCTAssertThrowsError(try s.recordAttestation(first)) { XCTAssertEqual(($0 as? VouchError)?.code, .nonceReused) }
        XCTAssertEqual(try s.attestations(HistoryQuery(hostID: host().id)).count, count, "the refused decision left nothing")
        // Records that use no nonce (pull rounds hold theirs in memory) store none.
        try s.recordAttestation(AttestationRecord(hostID: host().id, at: t0, kind: .reattestation, trusted: true, codes: [], message: "m", nonce: "n2"))
        XCTAssertFalse(try s.nonceUsed("n2"))
    }

    /// A host write whose version is stale fails; a block is never overwritten by an activation.
    func testHostWritesAreVersionChecked() throws {
        let s = try open()
        try s.saveHost(host())
        var read = try XCTUnwrap(try s.host(id: host().id))
        XCTAssertEqual(read.version, 1)
        try s.setBlock(hostID: read.id, reason: "keyCompromise")
        read.hostname = "renamed"
        XCTAssertThrowsError(try s.saveHost(read)) { XCTAssertEqual(($0 as? VouchError)?.code, .hostRevoked) }
        try s.setBlock(hostID: read.id, reason: nil)
        XCTAssertThrowsError(try s.saveHost(read)) { XCTAssertEqual(($0 as? VouchError)?.code, .conflict, "read before the unblock") }
        var fresh = try XCTUnwrap(try s.host(id: host().id))
        fresh.hostname = "renamed"
        try s.saveHost(fresh)
        XCTAssertEqual(try s.host(id: host().id)?.hostname, "renamed")
    }

    /// The scheduler's list: active, unblocked, undeleted hosts with a trust record, labels decoded.
    func testAttestableHostsAndVerdictsWithTheirTrustRecord() throws {
        let s = try open()
        let ids = (0..<5).map { String(repeating: "\($0)", count: 32) }
        for (i, id) in ids.enumerated() {
            var h = host(id).withLabels(["team": i % 2 == 0 ? "a" : "b"])
            if i == 1 { h.akState = .pending }
            if i == 2 { h = h.withBlock("compromised") }
            if i == 3 { try s.saveHost(h); continue }   // no trust record
            try s.activateHost(h, trust: HostTrust(hostID: id, since: t0, mode: i == 4 ? .push : .pull), record: activation(id))
        }
        try s.activateHost(host(String(repeating: "9", count: 32)), trust: HostTrust(hostID: String(repeating: "9", count: 32), since: t0, mode: .pull),
                           record: activation(String(repeating: "9", count: 32)))
        try s.deleteHost(id: String(repeating: "9", count: 32))
        XCTAssertEqual(try s.attestableHosts(), [
            AttestableHost(id: ids[0], labels: ["team": "a"], ekIssuer: "CN=x", mode: .pull, state: .unknown),
            AttestableHost(id: ids[4], labels: ["team": "a"], ekIssuer: "CN=x", mode: .push, state: .unknown),
        ])
        var t = try XCTUnwrap(try s.trust(hostID: ids[0]))
        t.state = .trusted
        try s.recordVerdict(AttestationRecord(hostID: ids[0], at: t0, kind: .reattestation, trusted: true, codes: [], message: "ok"), trust: t)
        XCTAssertEqual(try s.trust(hostID: ids[0])?.state, .trusted)
        XCTAssertEqual(try s.latestAttestation(hostID: ids[0])?.message, "ok")
        XCTAssertEqual(try s.attestableHosts().count, 2, "a cached statement runs again with fresh results")
    }

    /// The previous TPM clock comes with its firmwareVersion (all 64 bits of it); records stored
    /// before firmware versions were kept give none.
    func testLastTrustedClockCarriesTheFirmwareVersion() throws {
        let s = try open()
        let id = host().id
        try s.activateHost(host(), trust: HostTrust(hostID: id, since: t0, mode: .pull), record: activation(id))
        func record(_ at: Date, firmware: UInt64?) throws {
            let clock = ClockState(resetCount: 2, restartCount: 1, clock: 77, safe: true, firmwareVersion: firmware)
            var t = try XCTUnwrap(try s.trust(hostID: id))
            t.state = .trusted
            try s.recordVerdict(AttestationRecord(hostID: id, at: at, kind: .reattestation, trusted: true, codes: [], message: "ok",
                                                  claims: EvidenceClaims(boot: nil, model: nil, clock: clock, rebootedSinceLastAttestation: false)), trust: t)
        }
        try record(t0, firmware: nil)
        XCTAssertEqual(try s.lastTrustedClock(hostID: id)?.clock.firmwareVersion, nil)
        XCTAssertEqual(try s.lastTrustedClock(hostID: id)?.clock.resetCount, 2)
        XCTAssertEqual(try s.lastTrustedClock(hostID: id)?.at, t0)
        try record(t0.addingTimeInterval(10), firmware: 0xFFFF_0000_0000_0001)
        XCTAssertEqual(try s.lastTrustedClock(hostID: id)?.clock.firmwareVersion, 0xFFFF_0000_0000_0001)
    }

    func testSerialsAreUniqueAndIssuanceIsAtomic() throws {
        let s = try open()
        try s.saveHost(host())
        let a = AttestationRecord(hostID: host().id, at: t0, kind: .enrollment, trusted: true, codes: [], message: "ok")
        _ = try s.recordIssuance(attestation: a, certificate: cert("01"))
        var second = a
        second.message = "duplicate"
        XCTAssertThrowsError(try s.recordIssuance(attestation: second, certificate: cert("01"))) {
            XCTAssertEqual(($0 as? VouchError)?.code, .conflict)
        }
        XCTAssertEqual(try s.certificates().count, 1)
        XCTAssertEqual(try s.latestAttestation(hostID: host().id)?.message, "ok", "the failed issuance left no attestation record")
    }

    /// Concurrent writers share transactions (group commit), yet each stays atomic on its own:
    /// a writer that fails inside a group is rolled back alone, and every acknowledged write is
    /// there after reopening.
    func testGroupCommitKeepsEachWriterAtomic() throws {
        do {
            let s = try open()
            try s.saveHost(host())
            let outcomes = Mutex<[String: Bool]>([:])
            let hostID = host().id, t0 = t0
            let certs = (0..<64).map { cert($0 % 4 == 0 ? "00" : String(format: "%02x", $0)) }   // every fourth reuses serial 00
            DispatchQueue.concurrentPerform(iterations: 64) { i in
                let a = AttestationRecord(hostID: hostID, at: t0, kind: .enrollment, trusted: true, codes: [], message: "w\(i)")
                let ok = (try? s.recordIssuance(attestation: a, certificate: certs[i])) != nil
                outcomes.withLock { $0["w\(i)"] = ok }
            }
            let o = outcomes.withLock { $0 }
            XCTAssertEqual(o.values.filter { !$0 }.count, 15, "15 of the 16 writers of serial 00 fail with a conflict")
            XCTAssertEqual(try s.certificates().count, 49)
        }
        let reopened = try open()
        let messages = Set(try reopened.attestations(HistoryQuery(hostID: host().id, limit: 1000)).map(\.message))
        XCTAssertEqual(messages.count, 49, "one attestation per acknowledged issuance, none from the failed ones")
        XCTAssertEqual(try reopened.certificates().count, 49)
    }

    /// Writers that keep arriving while groups commit (the lead passes from writer to writer):
    /// every write is acknowledged once, in a commit, each writer's own writes land in order, and
    /// a read begun after a write returned sees it.
    func testGroupCommitUnderSustainedWritersAcknowledgesEveryWriteOnce() throws {
        let s = try open()
        try s.saveHost(host())
        let hostID = host().id, t0 = t0
        let failures = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 8) { w in
            for i in 0..<100 {
                let a = AttestationRecord(hostID: hostID, at: t0.addingTimeInterval(Double(i)), kind: .reattestation, trusted: true, codes: [], message: "w\(w)-\(i)")
                do {
                    let id = try s.recordAttestation(a)
                    // A read begun after the write returned (on a read connection) sees it.
                    if (try s.latestAttestation(hostID: hostID)?.id ?? 0) < id { failures.withLock { $0 += 1 } }
                } catch { failures.withLock { $0 += 1 } }
            }
        }
        XCTAssertEqual(failures.withLock { $0 }, 0)
        let records = try s.attestations(HistoryQuery(hostID: hostID, limit: 2000))
        XCTAssertEqual(records.count, 800)
        XCTAssertEqual(Set(records.map(\.message)).count, 800, "no write twice")
        for w in 0..<8 {
            let mine = records.sorted { $0.id < $1.id }.map(\.message).filter { $0.hasPrefix("w\(w)-") }
            XCTAssertEqual(mine, (0..<100).map { "w\(w)-\($0)" }, "writer \(w)'s writes land in its order")
        }
    }

    func testRevocationBumpsCRLNumberAndSurvivesReopen() throws {
        var seen: [String] = []
        do {
            let s = try open()
            try s.saveHost(host())
            let a = AttestationRecord(hostID: host().id, at: t0, kind: .enrollment, trusted: true, codes: [], message: "ok")
            for (serial, agent) in [("01", "a"), ("02", "a"), ("03", "b")] {
                _ = try s.recordIssuance(attestation: a, certificate: cert(serial, agent: agent))
            }
            _ = try s.recordIssuance(attestation: a, certificate: cert("04", agent: "b", issuer: "ca2"))
            XCTAssertEqual(try s.refreshCRL(issuer: "ca1", buildCRL: builder()).number, 1)
            let r1 = try withUnsafeMutablePointer(to: &seen) { try s.revoke(.agent(hostID: host().id, agentName: "a"), at: t0, reason: .keyCompromise, buildCRL: builder($0)) }
            XCTAssertEqual(r1.serials, ["01", "02"])
            XCTAssertEqual(r1.crls.map(\.number), [2])
            XCTAssertEqual(seen, ["01", "02"])
            let r2 = try s.revoke(.serial("01"), at: t0, reason: .keyCompromise, buildCRL: builder())
            XCTAssertEqual(r2.serials, [], "already revoked")
            XCTAssertEqual(r2.crls, [], "nothing changed, no new CRL")
        }
        let reopened = try open()
        XCTAssertEqual(try reopened.currentCRL(issuer: "ca1")?.number, 2)
        XCTAssertEqual(try reopened.certificates().filter { $0.revokedAt != nil }.map(\.serial), ["01", "02"])
        XCTAssertEqual(try reopened.certificates().first { $0.serial == "01" }?.revocationReason, .keyCompromise)
        let r3 = try reopened.revoke(.host(host().id), at: t0, reason: .cessationOfOperation, buildCRL: builder())
        XCTAssertEqual(r3.serials, ["03", "04"])
        XCTAssertEqual(r3.crls.map(\.issuer), ["ca1", "ca2"], "each issuer's CRL is re-signed")
        XCTAssertEqual(r3.crls.map(\.number), [3, 1], "CRL numbers are per issuer")
    }
}
