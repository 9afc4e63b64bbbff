import Foundation
import VouchAPI
import VouchAttestation
import VouchBroker
import VouchCore
import VouchCrypto
import VouchModel
import VouchStore
import VouchTestSupport
import VouchTLog
import XCTest

/// The broker's transparency log over a real SQLite store: sequencing, checkpoints and their
/// rules, proofs, tiles, witness cosignatures, receipts, and the restored-database refusal.
final class TransparencyLogTests: XCTestCase {
    var dir: URL!
    let clock = ManualClock()
    let hasher = MerkleHasher(sha256: Crypto.sha256)
    var signer: NoteSigner!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-tlog-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        signer = try BrokerBootstrap.logSigner(path: dir.appendingPathComponent("log.key").path, trustDomain: "test.local")
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    var dbPath: String { dir.appendingPathComponent("vouch.db").path }
    var checkpointPath: String { dir.appendingPathComponent("log-checkpoint").path }

    func openStore() throws -> SQLiteBrokerStore { try SQLiteBrokerStore(path: dbPath, logEntries: BrokerLogEntries()) }

    func openLog(_ store: SQLiteBrokerStore, witnesses: [NoteVerifierKey] = []) throws -> TransparencyLog {
        try TransparencyLog(signer: signer, store: store, clock: clock, checkpointFile: checkpointPath, witnesses: witnesses)
    }

    /// A receipt entry, distinct per `n` (`tag` makes two histories differ).
    func entry(_ n: Int, tag: String = "a") throws -> LogOutboxEntry {
        let d = { (s: String) in LogEntry.digest(Crypto.sha256(Array(s.utf8))) }
        let e = try LogEntry(kind: .receipt, time: clock.now(), fields: ["spiffe": "spiffe://test.local/agent/\(tag)", "serial": "\(n)",
                                                                          "certificate": d("c\(n)"), "statement": d("s\(tag)\(n)"), "output": d("o\(n)")])
        return LogOutboxEntry(entry: e.bytes)
    }

    func append(_ store: SQLiteBrokerStore, _ range: Range<Int>, tag: String = "a") throws -> [[UInt8]] {
        try range.map { n in
            let e = try entry(n, tag: tag)
            _ = try store.enqueueLogEntry(e)
            return e.entry
        }
    }

    func body(_ c: PublishedCheckpoint) throws -> CheckpointBody {
        try CheckpointBody(text: try UnverifiedNote(c.servedNote).verify([signer.verifierKey]).text)
    }

    /// Entries are sequenced in order with consecutive indices; a checkpoint signed by the log key
    /// commits to exactly them (the RFC 9162 root an in-memory tree computes); a round with
    /// nothing new signs nothing.
    func testSequencesInOrderAndSignsCheckpoints() throws {
        let store = try openStore()
        let log = try openLog(store)
        let first = try XCTUnwrap(try log.step())
        XCTAssertEqual(first.size, 0, "an empty log publishes the empty tree")
        XCTAssertEqual(first.root, hasher.emptyRoot)
        let entries = try append(store, 0..<37)
        let c = try XCTUnwrap(try log.step(batch: 10), "a round moves one batch")
        XCTAssertEqual(c.size, 10)
        let all = try XCTUnwrap(try log.step())
        XCTAssertEqual(all.size, 37)
        XCTAssertNil(try log.step(), "nothing changed: no checkpoint")
        var tree = MemoryMerkleTree(hasher: hasher)
        for e in entries { tree.append(entry: e) }
        let b = try body(all)
        XCTAssertEqual(b.origin, "test.local/vouch-log")
        XCTAssertEqual(b.size, 37)
        XCTAssertEqual(b.rootHash, try tree.prover.root(size: 37))
        XCTAssertEqual(try store.logEntries(from: 0, count: 100), entries, "indices follow the outbox order, with no gap")
        XCTAssertEqual(try String(contentsOfFile: checkpointPath, encoding: .utf8), all.note, "the file holds the last published checkpoint")
        XCTAssertEqual(try store.latestCheckpoint()?.size, 37)
    }

    /// Inclusion proofs (tlog-proof files) and consistency proofs verify with MerkleVerifier.
    func testProofsVerify() throws {
        let store = try openStore()
        let log = try openLog(store)
        let entries = try append(store, 0..<21)
        let c = try XCTUnwrap(try log.step())
        let verifier = MerkleVerifier(hasher: hasher)
        for (i, e) in entries.enumerated() {
            let (bytes, proof) = try log.inclusion(index: UInt64(i))
            XCTAssertEqual(bytes, e)
            let parsed = try TLogProofFile(text: proof.text)
            let checkpoint = try CheckpointBody(text: try UnverifiedNote(parsed.signedCheckpoint).verify([signer.verifierKey]).text)
            _ = try verifier.verifyInclusion(leafHash: hasher.leafHash(e), index: parsed.index, size: checkpoint.size, proof: parsed.proof,
                                             root: checkpoint.rootHash)
        }
        XCTAssertThrowsError(try log.inclusion(index: 21)) { XCTAssertEqual(($0 as? VouchError)?.code, .notFound) }
        var tree = MemoryMerkleTree(hasher: hasher)
        for e in entries { tree.append(entry: e) }
        for old in 1...21 {
            _ = try verifier.verifyConsistency(oldSize: UInt64(old), oldRoot: try tree.prover.root(size: UInt64(old)), newSize: c.size, newRoot: c.root,
                                               proof: try log.consistency(old: UInt64(old), new: c.size))
        }
        XCTAssertThrowsError(try log.consistency(old: 5, new: 22)) { XCTAssertEqual(($0 as? VouchError)?.code, .notFound) }
        XCTAssertThrowsError(try log.consistency(old: 6, new: 5)) { XCTAssertEqual(($0 as? VouchError)?.code, .notFound) }
    }

    /// A database restored from an older copy must not fork the log: vouchd refuses to sign
    /// (`log_behind`) whether the restored tree is smaller, of the same size with another root, or
    /// larger but not an extension — and keeps serving the last checkpoint it published.
    func testRestoredOldDatabaseNeverForksTheLog() throws {
        var store: SQLiteBrokerStore? = try openStore()
        var log = try openLog(store!)
        _ = try append(store!, 0..<3)
        try log.step()
        let backup = dir.appendingPathComponent("backup")
        try FileManager.default.createDirectory(at: backup, withIntermediateDirectories: true)
        for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: dbPath + suffix) {
            try FileManager.default.copyItem(atPath: dbPath + suffix, toPath: backup.appendingPathComponent("vouch.db" + suffix).path)
        }
        _ = try append(store!, 3..<6)
        let published = try XCTUnwrap(try log.step())
        XCTAssertEqual(published.size, 6)

        // Restore the copy taken at size 3 (the checkpoint file stays, as it would in the state directory).
        store = nil
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: dbPath + suffix) }
        for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: backup.appendingPathComponent("vouch.db" + suffix).path) {
            try FileManager.default.copyItem(atPath: backup.appendingPathComponent("vouch.db" + suffix).path, toPath: dbPath + suffix)
        }
        store = try openStore()
        log = try openLog(store!)
        XCTAssertEqual(try store!.logSize(), 3)
        var signed: [PublishedCheckpoint] = []
        for (range, tag) in [(3..<4, "b"), (4..<6, "b"), (6..<9, "b")] {   // smaller, the same size, larger
            _ = try append(store!, range, tag: tag)
            XCTAssertThrowsError(try log.step().map { signed.append($0) }) { XCTAssertEqual(($0 as? VouchError)?.code, .logBehind) }
            XCTAssertEqual(log.currentProblem?.code, .logBehind)
        }
        XCTAssertEqual(signed, [], "nothing was signed")
        XCTAssertEqual(try String(contentsOfFile: checkpointPath, encoding: .utf8), published.note, "the file still holds the last published checkpoint")
        XCTAssertEqual(try log.served()?.note, published.note, "the last published checkpoint is still served")
        XCTAssertEqual(try store!.latestCheckpoint()?.size, 3, "the database got no checkpoint")
        XCTAssertThrowsError(try log.inclusion(index: 0)) { XCTAssertEqual(($0 as? VouchError)?.code, .logBehind) }
        let api = BrokerAPI(service: try Broker().service, adminTokenDigests: [],
                            transparency: LogAPI(log: log, trustDomain: "test.local", brokerCAPEM: "PEM"))
        let ready = api.handle(HTTPRequest(method: "GET", path: "/readyz"))
        XCTAssertEqual(ready.status, 503)
        XCTAssertEqual(try JSONDecoder().decode(APIError.self, from: Data(ready.body)).code, ErrorCode.logBehind.rawValue)
        XCTAssertEqual(api.handle(HTTPRequest(method: "GET", path: "/checkpoint")).body, Array(published.note.utf8), "the last checkpoint is still served")
    }

    /// Deleting the checkpoint file is no way around the restored-database rule: once the log
    /// published (the key existed at start, or the database holds a checkpoint), a start without
    /// the file is refused.
    func testAMissingCheckpointFileIsRefusedOnceTheLogPublished() throws {
        let store = try openStore()
        let log = try openLog(store)
        XCTAssertEqual(try log.step()?.size, 0, "a new log publishes its empty tree at once")
        XCTAssertTrue(FileManager.default.fileExists(atPath: checkpointPath))
        try FileManager.default.removeItem(atPath: checkpointPath)
        XCTAssertThrowsError(try openLog(store)) { XCTAssertEqual(($0 as? VouchError)?.code, .config) }
        let fresh = dir.appendingPathComponent("fresh.db").path
        XCTAssertThrowsError(try TransparencyLog(signer: signer, store: try SQLiteBrokerStore(path: fresh, logEntries: BrokerLogEntries()), clock: clock,
                                                 checkpointFile: checkpointPath, keyExisted: true)) { XCTAssertEqual(($0 as? VouchError)?.code, .config) }
        XCTAssertNoThrow(try TransparencyLog(signer: signer, store: try SQLiteBrokerStore(path: fresh, logEntries: BrokerLogEntries()), clock: clock,
                                             checkpointFile: checkpointPath, keyExisted: false), "a first start")
    }

    /// A witness's lines never pile up: one POST carrying several of its cosignatures, or the
    /// same witness cosigning again each round, leaves one line per configured witness.
    func testOneCosignatureLinePerWitness() throws {
        let store = try openStore()
        let witnessKey = try NoteSigner(name: "witness.example", type: .cosignatureV1, privateKey: try Ed25519PrivateKey.generate())
        let log = try openLog(store, witnesses: [witnessKey.verifierKey])
        _ = try append(store, 0..<2)
        let c = try XCTUnwrap(try log.step())
        let verified = try UnverifiedNote(c.note).verify([signer.verifierKey])
        var note = c.note
        for t in 0..<5 {
            let line = try SignedNote.signature(of: verified.text, by: witnessKey, timestamp: 1_800_000_000 + UInt64(t))
            note = SignedNote.encode(text: verified.text, signatures: (try UnverifiedNote(note).signatures) + [line])
            _ = try log.addCosignatures(note: note)
        }
        XCTAssertEqual(try store.checkpoint(size: 2)?.cosignatures.count, 1)
    }

    /// A restored database whose tree does extend the last checkpoint (here: its outbox held the
    /// same entries, unsequenced) is no fork: the log goes on, and the checkpoint only the file
    /// held is recorded in the database.
    func testARestoreThatExtendsTheLastCheckpointContinuesTheLog() throws {
        var store: SQLiteBrokerStore? = try openStore()
        _ = try append(store!, 0..<3)
        let backup = dir.appendingPathComponent("backup.db").path
        store = nil
        try FileManager.default.copyItem(atPath: dbPath, toPath: backup)
        store = try openStore()
        let published = try XCTUnwrap(try openLog(store!).step())
        store = nil
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: dbPath + suffix) }
        try FileManager.default.copyItem(atPath: backup, toPath: dbPath)
        store = try openStore()
        let log = try openLog(store!)
        XCTAssertNil(try store!.latestCheckpoint())
        XCTAssertNil(try log.step(), "the same tree: nothing new to sign")
        XCTAssertEqual(try store!.latestCheckpoint()?.note, published.note, "the file's checkpoint is now in the database")
        _ = try append(store!, 3..<5)
        XCTAssertEqual(try log.step()?.size, 5)
        XCTAssertNil(log.currentProblem)
    }

    /// The log's HTTP surface through BrokerAPI: tiles read back through VouchTLog's TileHashReader
    /// reproduce the checkpoint's root, entry bundles hold the entries, proofs verify against the
    /// vkey the trust document publishes, and a witness's cosignature is collected and served.
    func testHTTPTilesProofsTrustAndCosignatures() throws {
        let store = try openStore()
        let witnessKey = try NoteSigner(name: "witness.example", type: .cosignatureV1, privateKey: try Ed25519PrivateKey.generate())
        let log = try openLog(store, witnesses: [witnessKey.verifierKey])
        let broker = try Broker()
        let api = BrokerAPI(service: broker.service, adminTokenDigests: [],
                            transparency: LogAPI(log: log, trustDomain: "test.local", brokerCAPEM: "BROKER CA PEM"))
        func get(_ path: String, query: [String: String] = [:]) -> HTTPResponse { api.handle(HTTPRequest(method: "GET", path: path, query: query)) }
        XCTAssertEqual(get("/checkpoint").status, 404, "no checkpoint before the first round")
        let entries = try append(store, 0..<300)
        let c = try XCTUnwrap(try log.step())

        let trustResponse = get("/v1/trust")
        XCTAssertEqual(trustResponse.status, 200)
        let trust = try JSONDecoder().decode(TrustDocument.self, from: Data(trustResponse.body))
        XCTAssertEqual(trust.log.origin, "test.local/vouch-log")
        let vkey = try NoteVerifierKey(vkey: trust.log.vkey)

        let served = get("/checkpoint")
        XCTAssertEqual(served.status, 200)
        let checkpoint = try CheckpointBody(text: try UnverifiedNote(String(decoding: served.body, as: UTF8.self)).verify([vkey]).text)
        XCTAssertEqual(checkpoint.size, 300)

        struct HTTPTiles: TileReader {
            let get: (String) -> HTTPResponse
            func readTiles(_ tiles: [Tile]) throws -> [[UInt8]] {
                try tiles.map { t in
                    let r = get("/" + t.path)
                    guard r.status == 200 else { throw VouchError(.notFound, "tile \(t.path): \(r.status)") }
                    return r.body
                }
            }
        }
        let reader = TileHashReader(treeSize: checkpoint.size, tiles: HTTPTiles(get: { get($0) }), hasher: hasher)
        XCTAssertEqual(try MerkleProver(hasher: hasher, reader: reader).root(size: checkpoint.size), checkpoint.rootHash)
        let full = get("/tile/0/000")
        XCTAssertTrue(full.headers.contains { $0.0 == "Cache-Control" && $0.1.contains("immutable") }, "full tiles never change")
        let partial = get("/tile/0/001.p/44")
        XCTAssertEqual(partial.status, 200)
        XCTAssertTrue(partial.headers.contains { $0.0 == "Cache-Control" && $0.1 == "no-cache" })
        XCTAssertEqual(get("/tile/0/001.p/45").status, 404, "wider than the tree")
        XCTAssertEqual(get("/tile/0/002").status, 404, "beyond the tree")
        XCTAssertEqual(get("/tile/0/01").status, 404, "not a canonical tile path")
        let bundle = get("/tile/entries/001.p/44")
        XCTAssertEqual(try EntryBundle.decode(bundle.body, tile: try Tile(level: 0, index: 1, width: 44)), Array(entries[256..<300]))

        let proofResponse = get("/v1/log/proof", query: ["index": "257"])
        XCTAssertEqual(proofResponse.status, 200)
        let proof = try JSONDecoder().decode(LogProofResponse.self, from: Data(proofResponse.body))
        XCTAssertEqual(try Base64.decode(proof.entry, field: "entry"), entries[257])
        let file = try TLogProofFile(text: proof.proof)
        let signedBody = try CheckpointBody(text: try UnverifiedNote(file.signedCheckpoint).verify([vkey]).text)
        _ = try MerkleVerifier(hasher: hasher).verifyInclusion(leafHash: hasher.leafHash(entries[257]), index: 257, size: signedBody.size,
                                                               proof: file.proof, root: signedBody.rootHash)
        XCTAssertEqual(get("/v1/log/proof", query: ["index": "300"]).status, 404)
        XCTAssertEqual(get("/v1/log/proof", query: ["index": "-1"]).status, 422)
        XCTAssertEqual(get("/v1/log/proof", query: [:]).status, 404, "no entry named")
        XCTAssertEqual(get("/v1/log/proof", query: ["index": "1234567890123456"]).status, 422, "over 15 digits")
        XCTAssertEqual(get("/v1/log/proof", query: ["certificate": String(repeating: "ab", count: 32)]).status, 404)
        let consistency = get("/v1/log/consistency", query: ["old": "100", "new": "300"])
        XCTAssertEqual(consistency.status, 200)
        XCTAssertEqual(get("/v1/log/consistency", query: ["old": "300", "new": "100"]).status, 404)
        XCTAssertEqual(get("/v1/log/consistency", query: ["old": "", "new": "100"]).status, 422)

        // A witness cosigns the served checkpoint; the broker keeps it and serves it appended.
        let verified = try UnverifiedNote(c.note).verify([signer.verifierKey])
        let cosigned = verified.adding(try SignedNote.signature(of: verified.text, by: witnessKey, timestamp: 1_800_000_000))
        let post = api.handle(HTTPRequest(method: "POST", path: "/v1/log/cosignatures", body: Array(cosigned.utf8)))
        XCTAssertEqual(post.status, 200, String(decoding: post.body, as: UTF8.self))
        let withWitness = try UnverifiedNote(String(decoding: get("/checkpoint").body, as: UTF8.self)).verify([vkey, witnessKey.verifierKey])
        XCTAssertEqual(Set(withWitness.verifiedBy), ["test.local/vouch-log", "witness.example"])
        let stranger = try NoteSigner(name: "stranger.example", type: .cosignatureV1, privateKey: try Ed25519PrivateKey.generate())
        let unknown = verified.adding(try SignedNote.signature(of: verified.text, by: stranger, timestamp: 1_800_000_000))
        let refused = api.handle(HTTPRequest(method: "POST", path: "/v1/log/cosignatures", body: Array(unknown.utf8)))
        XCTAssertEqual(refused.status, 403)
        XCTAssertEqual(try JSONDecoder().decode(APIError.self, from: Data(refused.body)).code, ErrorCode.noteUnverified.rawValue)
        XCTAssertEqual(api.handle(HTTPRequest(method: "POST", path: "/v1/log/cosignatures", body: Array("not a note".utf8))).status, 403)
    }

    /// A receipt entry is logged and its proof returned once a checkpoint covers it.
    func testReceiptsAreLoggedWithAProof() throws {
        let store = try openStore()
        let log = try openLog(store)
        _ = try append(store, 0..<5)
        let receipt = try LogEntry(bytes: try entry(99).entry)
        // The background sequencer signs; the submission only waits for it.
        let loop = LogSequencerLoop(log: log, every: 0.05, report: { _ in })
        loop.start()
        defer { loop.stop() }
        let (index, bytes, proof) = try log.appendReceipt(receipt)
        XCTAssertEqual(index, 5)
        let again = try log.appendReceipt(receipt)
        XCTAssertEqual(again.index, 5, "a receipt submitted again is not logged again")
        XCTAssertEqual(try store.logSize(), 6)
        XCTAssertEqual(bytes, receipt.bytes)
        let checkpoint = try CheckpointBody(text: try UnverifiedNote(proof.signedCheckpoint).verify([signer.verifierKey]).text)
        _ = try MerkleVerifier(hasher: hasher).verifyInclusion(leafHash: hasher.leafHash(bytes), index: index, size: checkpoint.size,
                                                               proof: proof.proof, root: checkpoint.rootHash)
    }

    /// The log key is made once (0600) and refused when others can read it.
    func testLogKeyIsKeptAndGuarded() throws {
        let path = dir.appendingPathComponent("log.key").path
        XCTAssertEqual(try BrokerBootstrap.logSigner(path: path, trustDomain: "test.local").verifierKey, signer.verifierKey)
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int, 0o600)
        XCTAssertThrowsError(try BrokerBootstrap.logSigner(path: path, trustDomain: "other.local")) { XCTAssertEqual(($0 as? VouchError)?.code, .config) }
        chmod(path, 0o644)
        XCTAssertThrowsError(try BrokerBootstrap.logSigner(path: path, trustDomain: "test.local")) { XCTAssertEqual(($0 as? VouchError)?.code, .config) }
    }

    /// The attestation-digest input is the JSON a standard encoder writes (slashes not escaped),
    /// for any text a field may hold.
    func testAttestationDigestInputIsStandardJSON() throws {
        let odd = "a\"b\\c/d\n\t\u{1}é✓"
        let e = AttestationEntry(id: 7, hostId: odd, at: "2026-01-01T00:00:00Z", kind: "enrollment", result: "rejected", codes: ["x", "y"],
                                 message: "not covered", agentName: nil, policy: "p v1", policySha256: nil, pcrDigest: odd, serial: nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        let values: [String?] = ["7", odd, "2026-01-01T00:00:00Z", "enrollment", "rejected", "x,y", nil, "p v1", nil, odd, nil]
        let expected = try JSONSerialization.jsonObject(with: try encoder.encode(values)) as? [Any]
        let got = try JSONSerialization.jsonObject(with: Data(BrokerLogEntries.attestationDigestInput(e))) as? [Any]
        XCTAssertEqual(got.map { "\($0)" }, expected.map { "\($0)" })
        XCTAssertEqual(String(decoding: BrokerLogEntries.attestationDigestInput(e), as: UTF8.self),
                       #"["7","a\"b\\c/d\n\t\u0001é✓","2026-01-01T00:00:00Z","enrollment","rejected","x,y",null,"p v1",null,"a\"b\\c/d\n\t\u0001é✓",null]"#)
    }

    /// An issuance entry names the certificate's DER digest and the digest of the EAR inside it,
    /// and its attestation-digest is what an auditor recomputes from the history API's output.
    func testIssuanceEntryDigestsAreRecomputable() throws {
        let broker = try Broker()
        let host = String(repeating: "1", count: 32)
        try broker.addHost(host)
        let (response, _) = try broker.enroll(host, agent: "agent")
        let record = try XCTUnwrap(try broker.store.certificates().first)
        let attestation = try XCTUnwrap(try broker.store.attestations(HistoryQuery(hostID: host)).first { $0.id == record.attestationID })
        let entry = try LogEntry(bytes: try BrokerLogEntries().issuance(attestation, certificate: record).entry)
        let cert = try Certificate(pem: response.certificate)
        XCTAssertEqual(entry["certificate"], LogEntry.digest(Crypto.sha256(try cert.der)))
        let ear = try AttestationExtension.ear(extensionValue: try XCTUnwrap(cert.extensionValue(oid: AttestationExtension.oid)))
        XCTAssertEqual(entry["ear-digest"], LogEntry.digest(Crypto.sha256(Array(ear.utf8))))
        // The auditor's side: the history entry as the API serves it (JSON), its fields in a compact JSON array, SHA-256.
        let served = Data(JSONCodec.encode(try broker.service.queries.history(["hostId": host])))
        let page = try XCTUnwrap(try JSONSerialization.jsonObject(with: served) as? [String: Any])
        let items: [[String: Any]] = try XCTUnwrap(page["items"] as? [[String: Any]])
        let shown: [String: Any] = try XCTUnwrap(items.first { ($0["id"] as? NSNumber)?.int64Value == record.attestationID })
        func field(_ key: String) -> Any { shown[key] ?? NSNull() }
        let codes: String = ((shown["codes"] as? [String]) ?? []).joined(separator: ",")
        var values: [Any] = ["\(record.attestationID)"]
        values += ["hostId", "at", "kind", "result"].map(field)
        values.append(codes)
        values += ["agentName", "policy", "policySha256", "pcrDigest", "serial"].map(field)
        let json = try JSONSerialization.data(withJSONObject: values, options: [.withoutEscapingSlashes])
        XCTAssertEqual(entry["attestation-digest"], LogEntry.digest(Crypto.sha256(Array(json))))
        XCTAssertEqual(entry["serial"], record.serial)
    }
}
