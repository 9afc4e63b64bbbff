import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchLogClient
import VouchReceiptKit
import VouchReceiptTestSupport
import VouchReceipts
import VouchTLog
import VouchTestSupport

/// Check 14 (revocation read from the whole log) and the bound a logged receipt's entry time puts
/// on the receipt's time: logs written as static files (`StaticTileLog`) from the receipt world's
/// own entries, signed with its log key.
final class ReceiptLogRevocationTests: XCTestCase {
    var world: ReceiptFixture!
    var directory: URL!
    let output = Array("The answer is 42.\n".utf8)

    override func setUpWithError() throws {
        world = try ReceiptFixture()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("receipt-log-\(UUID().uuidString)")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    var finish: Date { world.now.addingTimeInterval(2) }

    func sign() throws -> [UInt8] {
        try world.signer().sign(output: output, request: nil, startedAt: world.now, finishedAt: finish).bundle
    }

    /// Writes `entries` (default: the world's log) as a tile log signed by `signer` (default: the log key).
    @discardableResult
    func publish(_ entries: [[UInt8]]? = nil, signer: NoteSigner? = nil) throws -> StaticTileLog {
        var log = StaticTileLog(directory: directory, signer: signer ?? world.logSigner)
        for e in entries ?? world.entries { log.append(entry: e) }
        try log.publish()
        return log
    }

    func revocation(at time: Date, serial: String? = nil, certificate: String? = nil, reason: String = "superseded") throws -> LogEntry {
        try LogEntry(kind: .revocation, time: time, fields: [
            "host": world.hostID, "serial": serial ?? world.agentCert.serialHex,
            "certificate": certificate ?? LogEntry.digest(Crypto.sha256(try world.agentCert.der)), "reason": reason])
    }

    func verify(_ bundle: [UInt8], witnesses: [NoteVerifierKey] = []) throws -> ReceiptVerdict {
        try world.verifier().verify(bundle: bundle, .init(output: output, witnesses: witnesses, log: DirectoryLogSource(directory: directory.path)))
    }

    func testALogWithoutRevocationAnswersForItsSize() throws {
        let bundle = try sign()
        // Another certificate's revocation is not this one's.
        _ = try world.log(try revocation(at: world.now, serial: "0abc", certificate: LogEntry.digest([UInt8](repeating: 7, count: 32))))
        try publish()
        guard case .verified(let facts) = try verify(bundle) else { return XCTFail("\(try verify(bundle).codes)") }
        let answer = try XCTUnwrap(facts.logRevocation)
        XCTAssertEqual(answer.size, world.tree.size)
        XCTAssertEqual(answer.origin, world.origin)
        XCTAssertEqual(answer.lastEntryTime, world.now)
        XCTAssertNil(answer.revokedLater)
        XCTAssertEqual(facts.receiptTime, finish)
    }

    func testARevocationAtOrBeforeTheReceiptIsRefused() throws {
        let bundle = try sign()
        _ = try world.log(try revocation(at: finish))
        try publish()
        XCTAssertEqual(try verify(bundle).codes, [.receiptRevoked])
        // Named by its serial alone, or by its digest alone, it is still this certificate's.
        _ = try world.log(try revocation(at: world.now, certificate: LogEntry.digest([UInt8](repeating: 7, count: 32))))
        try publish()
        XCTAssertEqual(try verify(bundle).codes, [.receiptRevoked, .receiptRevoked])
    }

    /// A compromised key refuses its receipts whatever time they name: its thief could date one
    /// before the revocation (the exception, a receipt the log holds from before, is the logged
    /// receipts' case in ReceiptVerifierTests' CRL test).
    func testAKeyCompromiseAfterTheReceiptStillRefusesIt() throws {
        let bundle = try sign()
        _ = try world.log(try revocation(at: finish.addingTimeInterval(3600), reason: "keyCompromise"))
        try publish()
        XCTAssertEqual(try verify(bundle).codes, [.receiptRevoked])
    }

    func testARevocationAfterTheReceiptIsReported() throws {
        let bundle = try sign()
        _ = try world.log(try revocation(at: finish.addingTimeInterval(1)))
        try publish()
        guard case .verified(let facts) = try verify(bundle) else { return XCTFail("\(try verify(bundle).codes)") }
        let later = try XCTUnwrap(facts.logRevocation?.revokedLater)
        XCTAssertEqual([later.index], [world.tree.size - 1])
        XCTAssertEqual(later.time, finish.addingTimeInterval(1))
        XCTAssertEqual(later.reason, "superseded")
    }

    func testALogThatDoesNotExtendTheReceiptsCheckpointIsRefused() throws {
        let bundle = try sign()
        // The same log key over another history: the first entry differs.
        var forked = world.entries
        forked[0] = Array("a rewritten entry\n".utf8)
        try publish(forked)
        XCTAssertEqual(try verify(bundle).codes, [.receiptLogInconsistent])
        // A log smaller than the issuance proof's checkpoint.
        try FileManager.default.removeItem(at: directory)
        try publish(Array(world.entries.prefix(3)))
        XCTAssertEqual(try verify(bundle).codes, [.receiptLogInconsistent])
    }

    func testATamperedOrForeignLogIsRefused() throws {
        let bundle = try sign()
        _ = try world.log(try revocation(at: world.now))
        let log = try publish()
        // The revocation entry's bytes changed in the entry bundle (same length): the entries no
        // longer make the signed root, so the log's answer is not taken (fail closed).
        var entries = log.entries
        entries[entries.count - 1] = Array(try revocation(at: world.now, serial: String(repeating: "f", count: world.agentCert.serialHex.count)).bytes)
        let tile = Tile.at(level: 0, index: 0, treeSize: UInt64(entries.count))!
        try log.write(try EntryBundle.encode(entries), tile.entriesPath)
        XCTAssertEqual(try verify(bundle).codes, [.receiptLogUnverified])
        // A bundle with an entry missing.
        try log.write(try EntryBundle.encode(Array(entries.dropLast())), tile.entriesPath)
        XCTAssertEqual(try verify(bundle).codes, [.receiptLogUnverified])
        // The same entries under a checkpoint signed by another key.
        try FileManager.default.removeItem(at: directory)
        try publish(signer: try NoteSigner(name: world.origin, privateKey: try Ed25519PrivateKey.generate()))
        XCTAssertEqual(try verify(bundle).codes, [.receiptLogUnverified])
        // No log there at all.
        try FileManager.default.removeItem(at: directory)
        XCTAssertEqual(try verify(bundle).codes, [.receiptLogUnverified])
    }

    func testTheWitnessesOfTheLogsCheckpointAreReported() throws {
        let bundle = try sign()
        let witness = try NoteSigner(name: "witness.example", type: .cosignatureV1, privateKey: try Ed25519PrivateKey.generate())
        let b = try UnverifiedReceiptBundle(json: bundle)
        let cosigned = try world.proof(index: b.issuance!.proof.index, signers: [world.logSigner, witness])
        let withWitness = UnverifiedReceiptBundle(envelope: b.envelope, chainPEM: b.chainPEM, ear: b.ear,
                                                  issuance: .init(entry: b.issuance!.entry, proof: cosigned), receipt: nil).json
        let log = try publish()
        // Required witnesses vouch for the log's checkpoint too: a copy signed by the log key
        // alone (which could omit a revocation past the receipt's checkpoint) is not enough.
        let required = ReceiptVerifier.Inputs(output: output, witnesses: [witness.verifierKey], witnessThreshold: 1,
                                              log: DirectoryLogSource(directory: directory.path))
        XCTAssertEqual(try world.verifier().verify(bundle: withWitness, required).codes, [.receiptWitnessesInsufficient])
        let body = try CheckpointBody(origin: world.origin, size: log.tree.size, rootHash: try log.tree.prover.root(size: log.tree.size))
        try log.writeCheckpoint(SignedNote.encode(text: body.text, signatures: [
            try SignedNote.signature(of: body.text, by: world.logSigner),
            try SignedNote.signature(of: body.text, by: witness, timestamp: UInt64(world.now.timeIntervalSince1970) + 5)]))
        guard case .verified(let facts) = try verify(withWitness, witnesses: [witness.verifierKey]) else { return XCTFail() }
        XCTAssertEqual(facts.logRevocation?.cosignatures.map(\.witness), ["witness.example"])
        XCTAssertEqual(facts.logRevocation?.cosignatures.map(\.time), [world.now.addingTimeInterval(5)])
        XCTAssertEqual(try world.verifier().verify(bundle: withWitness, required).codes, [])
    }

    /// A logged receipt: its entry's time (the broker's clock) bounds the receipt's time.
    func loggedBundle(_ bundle: [UInt8], at time: Date) throws -> [UInt8] {
        let b = try UnverifiedReceiptBundle(json: bundle)
        let entry = try LogEntry(kind: .receipt, time: time, fields: [
            "spiffe": world.spiffeID, "serial": world.agentCert.serialHex, "certificate": LogEntry.digest(Crypto.sha256(try world.agentCert.der)),
            "statement": LogEntry.digest(Crypto.sha256(b.envelope.payload)), "output": LogEntry.digest(Crypto.sha256(output))])
        return UnverifiedReceiptBundle(envelope: b.envelope, chainPEM: b.chainPEM, ear: b.ear, issuance: b.issuance, receipt: try world.log(entry)).json
    }

    func testALoggedReceiptsEntryTimeBoundsItsTime() throws {
        let bundle = try sign()
        // Finished more than the skew after the broker logged it: the agent's clock lies.
        let late = try loggedBundle(bundle, at: finish.addingTimeInterval(-ReceiptVerifier.loggedTimeSkew - 1))
        XCTAssertEqual(try world.verifier().verify(bundle: late, .init(output: output)).codes, [.receiptOutsideValidity])
        // Logged 100 s before the agent's finish time (within the skew): the receipt existed by
        // then, so a revocation between the two does not touch it.
        let loggedAt = finish.addingTimeInterval(-100)
        let early = try loggedBundle(bundle, at: loggedAt)
        _ = try world.log(try revocation(at: loggedAt.addingTimeInterval(1)))
        try publish()
        guard case .verified(let facts) = try verify(early) else { return XCTFail("\(try verify(early).codes)") }
        XCTAssertEqual(facts.loggedAt, loggedAt)
        XCTAssertEqual(facts.receiptTime, loggedAt)
        XCTAssertEqual(facts.logRevocation?.revokedLater?.time, loggedAt.addingTimeInterval(1))
        // The same revocation judged at the agent's finish time, when the receipt is not logged.
        XCTAssertEqual(try verify(bundle).codes, [.receiptRevoked])
    }
}

extension ReceiptVerdict {
    var codes: [ErrorCode] {
        if case .rejected(let v) = self { return v.map(\.code) }
        return []
    }
}
