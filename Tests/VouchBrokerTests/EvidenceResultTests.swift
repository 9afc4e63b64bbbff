import Foundation
import XCTest
import VouchAttestation
import VouchBroker
import VouchCore
import VouchModel
import VouchCrypto
import VouchTPMWire

/// What re-attestation records and what the EAR says, through the broker's evidence verifiers:
/// the same record columns and the same one `tpm` submodule as before verifiers were plug-ins.
final class EvidenceResultTests: XCTestCase {
    let h1 = String(repeating: "1", count: 32)

    /// Returns the payload unsigned, for reading.
    struct PayloadSigner: ResultSigner {
        func sign(payload: [UInt8], typ: String) throws -> String { String(decoding: payload, as: UTF8.self) }
        static let key = try! JWK(publicKey: PrivateKey.generate().publicKey)
        var jwk: JWK { Self.key }
    }

    func ear(_ b: Broker) throws -> [String: Any] {
        let json = try b.service.queries.ear(hostID: h1, nonce: nil, signer: PayloadSigner())
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    func testATrustedVerdictRecordsTheQuoteAndTheEARHasOneSubmodulePerDevice() throws {
        let b = try Broker()
        try b.addHost(h1)
        b.source.script(b.url(h1), .quote)
        b.advance(by: 0)   // first sight only schedules
        XCTAssertEqual(b.advance(by: Reattestor.firstPullDelay)[h1], .verdict(trusted: true))
        let record = try XCTUnwrap(b.store.attestations(HistoryQuery(hostID: h1, kind: .reattestation)).first)
        XCTAssertTrue(record.trusted)
        XCTAssertEqual(record.pcrs, ["sha256": ["0": String(repeating: "0", count: 64), "23": String(repeating: "0", count: 64)]])
        XCTAssertEqual(record.pcrDigest?.count, 64)
        XCTAssertNotNil(record.claims?.clock)

        let payload = try ear(b)
        let submods = try XCTUnwrap(payload["submods"] as? [String: Any])
        XCTAssertEqual(Array(submods.keys), ["tpm"])
        let tpm = try XCTUnwrap(submods["tpm"] as? [String: Any])
        XCTAssertEqual(tpm["ear.status"] as? String, "affirming")
        XCTAssertEqual(tpm["ear.appraisal-policy-id"] as? String, "vouch:policy:test:v1:sha256:" + String(repeating: "a", count: 64))
    }

    /// A refused quote is recorded with its PCR digest and values, and the EAR contraindicates.
    func testARefusedVerdictRecordsThePCRsAndContraindicates() throws {
        let b = try Broker()
        try b.addHost(h1)
        b.source.script(b.url(h1), .drifted)
        b.advance(by: 0)   // first sight only schedules
        XCTAssertEqual(b.advance(by: Reattestor.firstPullDelay)[h1], .verdict(trusted: false))
        let record = try XCTUnwrap(b.store.attestations(HistoryQuery(hostID: h1, kind: .reattestation)).first)
        XCTAssertFalse(record.trusted)
        XCTAssertEqual(record.codes, [ErrorCode.pcrNotAllowed.rawValue])
        XCTAssertEqual(record.pcrs?["sha256"]?["0"], String(repeating: "ab", count: 32))
        XCTAssertNotNil(record.pcrDigest)
        XCTAssertNotNil(record.claims?.clock, "claims established before the policy refused")
        let submods = try XCTUnwrap(try ear(b)["submods"] as? [String: Any])
        XCTAssertEqual((submods["tpm"] as? [String: Any])?["ear.status"] as? String, "contraindicated")
    }
}
