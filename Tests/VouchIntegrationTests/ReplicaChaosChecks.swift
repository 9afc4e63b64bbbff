import Foundation
import XCTest
import VouchAPI
import VouchCore
import VouchCrypto
import VouchTestSupport

/// The checks ReplicaChaosTests makes after the chaos, each on what the run recorded and on the
/// shared database.
extension ReplicaChaosTests {
    /// Every acknowledged revocation showed in the CRL and the OCSP answer of every replica that
    /// ran throughout the second after its acknowledgement, within that second; every replica
    /// shows every one now. Returns the delays (acknowledgement to the answer that first showed it).
    func checkRevocations(_ replicas: ReplicaSet, _ watch: RevocationWatch, seed: TestSeed) -> (crl: Distribution, ocsp: Distribution) {
        var crl: [Double] = [], ocsp: [Double] = [], late: [String] = []
        for a in watch.acks {
            for i in 0..<replicas.count {
                let seen = watch.seen(i, a.serial)
                let window = (from: a.at, to: a.at.addingTimeInterval(1))
                // A replica down then must show it once back, in its CRL only if the certificate
                // had not expired by then (a CRL drops expired certificates; OCSP never forgets).
                let crlDue = a.certificate.notAfter > replicas.upAgain(i, from: window.from, to: window.to).addingTimeInterval(2)
                guard seen?.ocsp != nil, seen?.crl != nil || !crlDue else {
                    late.append("\(a.serial) (acknowledged by replica \(a.via)) never showed at replica \(i): CRL \(seen?.crl != nil), OCSP \(seen?.ocsp != nil)")
                    continue
                }
                guard replicas.upThroughout(i, from: window.from, to: window.to), let c = seen?.crl, let o = seen?.ocsp else { continue }
                let (dc, dOCSP) = (max(0, c.timeIntervalSince(a.at)), max(0, o.timeIntervalSince(a.at)))
                crl.append(dc)
                ocsp.append(dOCSP)
                if dc >= 1 || dOCSP >= 1 {
                    late.append("\(a.serial) (acknowledged by replica \(a.via)) showed at replica \(i) after \(Distribution.ms(dc)) (CRL), \(Distribution.ms(dOCSP)) (OCSP)")
                }
            }
        }
        XCTAssertEqual(late, [], "\(seed)")
        XCTAssertGreaterThan(crl.count, watch.acks.count, "revocations measured at several replicas")

        // Now, with every replica up: each one lists every acknowledged revocation of a certificate
        // not yet expired (a CRL drops expired ones), in its CRL and by OCSP.
        let current = watch.acks.filter { $0.certificate.notAfter > Date().addingTimeInterval(10) }
        for i in 0..<replicas.count {
            guard let now = watch.crl(i) else {
                XCTFail("replica \(i) serves no CRL")
                continue
            }
            let listed = Set(now.crl.revokedSerials)
            XCTAssertEqual(current.map(\.serial).filter { !listed.contains($0) }, [], "acknowledged revocations missing from replica \(i)'s CRL, \(seed)")
            let good = current.filter { a in
                if case .revoked = watch.ocsp(i, a) { return false }
                return true
            }
            XCTAssertEqual(good.map(\.serial), [], "acknowledged revocations replica \(i)'s OCSP does not answer revoked, \(seed)")
        }
        return (Distribution(crl), Distribution(ocsp))
    }

    /// CRL numbers: no replica served a lower number after a higher one (through its restarts);
    /// one number is one CRL (the same bytes) at every replica; a CRL fetched more than a second
    /// after a revocation's acknowledgement is at least the number that revocation answered.
    func checkCRLNumbers(_ watch: RevocationWatch, seed: TestSeed) {
        let fetches = watch.fetches
        var problems: [String] = []
        var highest: [Int: UInt64] = [:]
        var byNumber: [UInt64: [UInt8]] = [:]
        for f in fetches {   // each replica's in the order its watcher fetched them
            if let h = highest[f.replica], f.number < h { problems.append("replica \(f.replica) served CRL number \(f.number) after \(h)") }
            highest[f.replica] = max(highest[f.replica] ?? 0, f.number)
            if let d = byNumber[f.number], d != f.digest { problems.append("two different CRLs numbered \(f.number)") }
            byNumber[f.number] = byNumber[f.number] ?? f.digest
        }
        for a in watch.acks {
            if let f = fetches.first(where: { $0.started > a.at.addingTimeInterval(1) && $0.number < a.crlNumber }) {
                problems.append("replica \(f.replica) served CRL \(f.number) \(Distribution.ms(f.started.timeIntervalSince(a.at))) after revocation \(a.serial) answered CRL \(a.crlNumber)")
            }
        }
        XCTAssertEqual(problems, [], "\(seed)")
        XCTAssertEqual(watch.problems, [], "\(seed)")
        XCTAssertGreaterThan(fetches.count, 100, "CRLs fetched")
        XCTAssertGreaterThanOrEqual(byNumber.keys.max() ?? 0, UInt64(watch.acks.count), "a CRL number per revocation at least")
    }

    /// Each host's re-attestation verdicts between `from` and `to`: consecutive ones never closer
    /// than `minimumGap`, never further apart than `maximumGap` (nor the window's ends from its
    /// first and last); every verdict trusted, every host trusted at the end. Returns the gaps.
    func checkReattestation(_ replicas: ReplicaSet, from: Date, to: Date, kills: [ChaosLoad.Kill], seed: TestSeed) throws -> Distribution {
        let (start, end) = (from.timeIntervalSince1970, to.timeIntervalSince1970)
        let rows = try replicas.psql("SELECT host_id, at FROM attestations WHERE kind = 'reattestation' AND at >= \(start) AND at <= \(end) ORDER BY host_id, at")
        var byHost: [String: [Double]] = [:]
        for line in rows.split(separator: "\n") {
            let cells = line.split(separator: "|")
            guard cells.count == 2, let at = Double(cells[1]) else { continue }
            byHost[String(cells[0]), default: []].append(at)
        }
        XCTAssertEqual(byHost.count, Self.hosts, "hosts re-attested during the chaos, \(seed)")
        var gaps: [Double] = [], problems: [String] = []
        for (host, ats) in byHost.sorted(by: { $0.key < $1.key }) {
            let points = [start] + ats + [end]
            for k in 1..<points.count {
                let gap = points[k] - points[k - 1]
                let inner = k > 1 && k < points.count - 1
                let when = "+\(Int(points[k - 1] - start))s"
                if gap > Self.maximumGap { problems.append("host \(host): \(Distribution.seconds(gap)) without a round from \(when)") }
                guard inner else { continue }
                gaps.append(gap)
                if gap < Self.minimumGap {
                    let killed = kills.filter { $0.at.timeIntervalSince1970 > points[k - 1] - Self.interval && $0.at.timeIntervalSince1970 < points[k] }
                    problems.append("host \(host): two rounds \(Distribution.seconds(gap)) apart at \(when)\(killed.isEmpty ? "" : " (replica \(killed[0].replica) killed at +\(Int(killed[0].at.timeIntervalSince1970 - start))s)")")
                }
            }
        }
        XCTAssertEqual(problems, [], "\(seed)")
        XCTAssertEqual(try replicas.psql("SELECT count(*) FROM attestations WHERE kind = 'reattestation' AND trusted = 0"), "0", "re-attestations refused")
        XCTAssertEqual(try replicas.psql("SELECT count(*) FROM host_trust WHERE state = 'trusted'"), "\(Self.hosts)", "hosts trusted at the end")
        let faults = try replicas.psql("SELECT count(*) FROM attestations WHERE kind = 'fault' AND at >= \(start)")
        print("replica chaos: \(faults) pull faults during the chaos")
        return Distribution(gaps)
    }

    /// The transparency log: once the sequencer caught up with every entry written before the
    /// check (re-attestation verdicts keep adding more), entries are indexed 0..n-1 and every
    /// replica serves at least the newest stored checkpoint; no size has two roots, neither stored
    /// nor served by any replica during the run; no replica's served checkpoint went back;
    /// `vouch log mirror` verifies the whole tree from every replica in turn into one copy (each
    /// extending the last). Returns the size of the newest checkpoint.
    func checkLog(_ replicas: ReplicaSet, _ checkpoints: CheckpointWatch, seed: TestSeed) throws -> UInt64 {
        let written = try replicas.psql("SELECT GREATEST((SELECT max(id) FROM log_outbox), (SELECT max(outbox_id) FROM log_entries), 0)")
        try TestEnv.waitFor("the log to sequence every entry written before the check", timeout: 30) {
            try replicas.psql("""
                SELECT NOT EXISTS (SELECT 1 FROM log_outbox WHERE id <= \(written))
                   AND (SELECT COALESCE(max(size), 0) FROM log_checkpoints) > (SELECT COALESCE(max(idx), -1) FROM log_entries WHERE outbox_id <= \(written))
                """) == "t"
        }
        let cells = try replicas.psql("SELECT count(*), COALESCE(min(idx), 0), COALESCE(max(idx), -1) FROM log_entries").split(separator: "|").map(String.init)
        let entries = Int64(cells[0]) ?? 0
        XCTAssertEqual(cells, ["\(entries)", "0", "\(entries - 1)"], "log entries indexed 0..n-1")
        XCTAssertEqual(try replicas.psql("SELECT size FROM log_checkpoints GROUP BY size HAVING count(DISTINCT root) > 1"), "", "stored checkpoints forked")
        var size: UInt64 = 0
        for i in 0..<replicas.count {
            var served: CheckpointWatch.Served?
            let deadline = Date().addingTimeInterval(10)
            repeat {
                size = UInt64(try replicas.psql("SELECT COALESCE(max(size), 0) FROM log_checkpoints")) ?? 0
                served = checkpoints.served(i)
                if let served, served.size >= size { break }
                usleep(100_000)
            } while Date() < deadline
            XCTAssertGreaterThanOrEqual(served?.size ?? 0, size, "replica \(i) serves an older checkpoint than the newest stored: "
                                        + replicas.logs(i).split(separator: "\n").filter { $0.contains("log") }.suffix(20).joined(separator: "\n"))
        }

        var roots: [UInt64: Set<String>] = [:], highest: [Int: UInt64] = [:], problems: [String] = []
        for s in checkpoints.served + (0..<replicas.count).compactMap({ checkpoints.served($0) }) {
            roots[s.size, default: []].insert(s.root)
            if let h = highest[s.replica], s.size < h { problems.append("replica \(s.replica) served size \(s.size) after \(h)") }
            highest[s.replica] = max(highest[s.replica] ?? 0, s.size)
        }
        for row in try replicas.psql("SELECT size, encode(root, 'base64') FROM log_checkpoints").split(separator: "\n") {
            let c = row.split(separator: "|")
            if c.count == 2, let n = UInt64(c[0]), roots[n] != nil { roots[n]!.insert(String(c[1])) }
        }
        problems += roots.filter { $0.value.count > 1 }.map { "checkpoints of size \($0.key) with \($0.value.count) roots" }
        XCTAssertEqual(problems, [], "\(seed)")
        XCTAssertGreaterThan(Set(checkpoints.served.map(\.size)).count, 10, "checkpoints served during the run")

        let trust = try APIClient(transport: replicas.clients[0].api).call("GET", "/v1/trust", as: TrustDocument.self)
        let mirror = try TestEnv.tempDir("vouch-chaos-mirror")
        defer { try? FileManager.default.removeItem(at: mirror) }
        for i in 0..<replicas.count {
            let r = try TestEnv.run(TestEnv.bin("vouch"), ["log", "mirror", "--log", replicas.url(i), "--log-key", trust.log.vkey, "--ca", replicas.brokerCAFile,
                                                           "--out", mirror.path])
            XCTAssertEqual(r.status, 0, "vouch log mirror from replica \(i): \(r.stdout) \(r.stderr)")
        }
        return size
    }

    /// The database, with the replicas stopped: no serial twice, every acknowledged issuance and
    /// revocation stored (with its event), references intact, and pg_amcheck finds no corruption
    /// in any table or index.
    func checkDatabase(_ replicas: ReplicaSet, issued: [String: String], revoked: [String], seed: TestSeed) throws {
        func rows(_ sql: String) throws -> Set<String> { Set(try replicas.psql(sql).split(separator: "\n").map(String.init)) }
        XCTAssertEqual(try replicas.psql("SELECT serial, count(*) FROM certificates GROUP BY 1 HAVING count(*) > 1"), "", "serials stored twice")
        XCTAssertEqual(Set(issued.keys).subtracting(try rows("SELECT serial FROM certificates")), [], "acknowledged certificates missing, \(seed)")
        XCTAssertEqual(Set(revoked).subtracting(try rows("SELECT serial FROM certificates WHERE revoked_at IS NOT NULL")), [], "acknowledged revocations not stored")
        XCTAssertEqual(Set(revoked).subtracting(try rows("SELECT data::json->>'serial' FROM events WHERE type = 'certificate.revoked'")), [],
                       "acknowledged revocations without their event")
        let references = [
            ("certificates without their trusted attestation",
             "SELECT count(*) FROM certificates c LEFT JOIN attestations a ON a.id = c.attestation_id WHERE a.id IS NULL OR a.trusted = 0"),
            ("certificates of unknown hosts", "SELECT count(*) FROM certificates c LEFT JOIN hosts h ON h.id = c.host_id WHERE h.id IS NULL"),
            ("attestations of unknown hosts", "SELECT count(*) FROM attestations a LEFT JOIN hosts h ON h.id = a.host_id WHERE h.id IS NULL"),
            ("trust records of unknown hosts", "SELECT count(*) FROM host_trust t LEFT JOIN hosts h ON h.id = t.host_id WHERE h.id IS NULL"),
            ("rounds of unknown hosts", "SELECT count(*) FROM host_rounds r LEFT JOIN hosts h ON h.id = r.host_id WHERE h.id IS NULL"),
            ("deliveries of unknown events", "SELECT count(*) FROM deliveries d LEFT JOIN events e ON e.id = d.event_id WHERE e.id IS NULL"),
            ("log entries whose outbox row remains", "SELECT count(*) FROM log_entries e JOIN log_outbox o ON o.id = e.outbox_id"),
        ]
        for (what, sql) in references { XCTAssertEqual(try replicas.psql(sql), "0", what) }
        let amcheck = try TestEnv.run(replicas.pg.binaries + "/pg_amcheck", [
            "-h", "127.0.0.1", "-p", "\(replicas.pg.port)", "-U", PostgresServer.user, "-d", replicas.databaseName,
            "--install-missing", "--heapallindexed", "--parent-check", "--rootdescend",
        ])
        XCTAssertEqual(amcheck.status, 0, "pg_amcheck: \(amcheck.stdout) \(amcheck.stderr)")
    }
}
