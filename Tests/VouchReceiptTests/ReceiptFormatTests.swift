import Foundation
import XCTest
import VouchCore
import VouchReceipts
import VouchTLog

/// The receipt formats on their own: DSSE's PAE and envelope, the in-toto Statement with the
/// receipt predicate, the request commitment's domain, and the bundle; bounded, strict parsing.
final class ReceiptFormatTests: XCTestCase {
    func code(_ f: () throws -> Void) -> ErrorCode? {
        do { try f(); return nil } catch { return (error as? VouchError)?.code }
    }

    func testPAEMatchesTheDSSESpecExample() {
        // DSSE protocol.md's example.
        XCTAssertEqual(String(decoding: DSSEEnvelope.pae(type: "http://example.com/HelloWorld", payload: Array("hello world".utf8)), as: UTF8.self),
                       "DSSEv1 29 http://example.com/HelloWorld 11 hello world")
        XCTAssertEqual(DSSEEnvelope.pae(type: "", payload: []), Array("DSSEv1 0  0 ".utf8))
        // Lengths are bytes, not characters.
        XCTAssertEqual(String(decoding: DSSEEnvelope.pae(type: "t", payload: Array("é".utf8)), as: UTF8.self), "DSSEv1 1 t 2 é")
    }

    func testEnvelopeRoundTripsAndRefusesMalformedInput() throws {
        let env = DSSEEnvelope(payloadType: DSSEEnvelope.inTotoPayloadType, payload: Array("{}".utf8), signatures: [.init(keyid: "k", sig: [1, 2, 3])])
        XCTAssertEqual(String(decoding: env.json, as: UTF8.self),
                       #"{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"keyid":"k","sig":"AQID"}]}"#)
        XCTAssertEqual(try DSSEEnvelope(json: env.json), env)
        let bad: [String] = [
            #"{"payload":"e30=","payloadType":"t","signatures":[]}"#,                      // no signature
            #"{"payload":"e30","payloadType":"t","signatures":[{"sig":"AQID"}]}"#,         // unpadded base64
            #"{"payload":"e30=","payloadType":"","signatures":[{"sig":"AQID"}]}"#,         // empty type
            #"{"payload":"e30=","signatures":[{"sig":"AQID"}]}"#,                          // no type
            #"{"payload":"e30=","payloadType":"t","signatures":[{"sig":""}]}"#,             // empty signature
            #"[1]"#, "",
        ]
        for b in bad { XCTAssertEqual(code { _ = try DSSEEnvelope(json: Array(b.utf8)) }, .receiptMalformed, b) }
        let many = #"{"payload":"e30=","payloadType":"t","signatures":["# + Array(repeating: #"{"sig":"AQID"}"#, count: 9).joined(separator: ",") + "]}"
        XCTAssertEqual(code { _ = try DSSEEnvelope(json: Array(many.utf8)) }, .receiptMalformed, "too many signatures")
        XCTAssertEqual(code { _ = try DSSEEnvelope(json: [UInt8](repeating: 0x20, count: DSSEEnvelope.maxBytes + 1)) }, .receiptMalformed, "too long")
    }

    let predicate = ReceiptPredicate(
        model: .init(manifests: ["sha256:" + String(repeating: "04", count: 32)]),
        agent: .init(spiffeId: "spiffe://test.local/host/ab/agent/payments", certificate: "sha256:" + String(repeating: "05", count: 32), serial: "0a1b"),
        attestation: .init(record: "42", ear: "sha256:" + String(repeating: "06", count: 32), issuanceIndex: "5",
                           evidence: [.init(device: "platform", type: "tpm2-quote", digest: "sha256:" + String(repeating: "01", count: 32))],
                           policy: "sha256:" + String(repeating: "03", count: 32), appraisedAt: "2027-01-15T07:50:00Z"),
        request: .init(commitment: "sha256:" + String(repeating: "07", count: 32)),
        startedAt: Date(timeIntervalSince1970: 1_800_000_000), finishedAt: Date(timeIntervalSince1970: 1_800_000_002))

    func testStatementIsCanonicalAndParsesStrictly() throws {
        let statement = ReceiptStatement(outputSHA256: [UInt8](repeating: 0xaa, count: 32), predicate: predicate)
        let text = String(decoding: statement.json, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix(#"{"_type":"https://in-toto.io/Statement/v1","predicate":{"agent":{"certificate":"sha256:0505"#), text)
        XCTAssertTrue(text.contains(#""predicateType":"https://vouch.dev/receipt/v1","subject":[{"digest":{"sha256":"aaaa"#), text)
        XCTAssertTrue(text.contains(#""startedAt":"2027-01-15T08:00:00Z""#), text)
        XCTAssertEqual(try ReceiptStatement(json: statement.json), statement)

        func mutated(_ f: (inout [String: Any]) -> Void) throws -> [UInt8] {
            var json = try JSONSerialization.jsonObject(with: Data(statement.json)) as! [String: Any]
            f(&json)
            return [UInt8](try JSONSerialization.data(withJSONObject: json))
        }
        func pred(_ f: @escaping (inout [String: Any]) -> Void) throws -> [UInt8] {
            try mutated { j in var p = j["predicate"] as! [String: Any]; f(&p); j["predicate"] = p }
        }
        let cases: [(String, [UInt8])] = [
            ("type", try mutated { $0["_type"] = "https://in-toto.io/Statement/v0.1" }),
            ("predicate type", try mutated { $0["predicateType"] = "https://slsa.dev/provenance/v1" }),
            ("two subjects", try mutated { $0["subject"] = [["name": "a", "digest": ["sha256": String(repeating: "aa", count: 32)]],
                                                            ["name": "b", "digest": ["sha256": String(repeating: "bb", count: 32)]]] }),
            ("no subject", try mutated { $0["subject"] = [] as [Any] }),
            ("sha512", try mutated { $0["subject"] = [["name": "a", "digest": ["sha512": String(repeating: "aa", count: 64)]]] }),
            ("extra digest", try mutated { $0["subject"] = [["name": "a", "digest": ["sha256": String(repeating: "aa", count: 32), "md5": "00"]]] }),
            ("upper-case hex", try mutated { $0["subject"] = [["name": "a", "digest": ["sha256": String(repeating: "AA", count: 32)]]] }),
            ("integer index", try pred { p in var a = p["attestation"] as! [String: Any]; a["issuanceIndex"] = 5; p["attestation"] = a }),
            ("leading zero", try pred { p in var a = p["attestation"] as! [String: Any]; a["issuanceIndex"] = "05"; p["attestation"] = a }),
            ("no evidence", try pred { p in var a = p["attestation"] as! [String: Any]; a["evidence"] = [] as [Any]; p["attestation"] = a }),
            ("fractional time", try pred { $0["startedAt"] = "2027-01-15T08:00:00.5Z" }),
            ("offset time", try pred { $0["finishedAt"] = "2027-01-15T09:00:02+01:00" }),
            ("bad commitment", try pred { $0["request"] = ["commitment": "sha256:00"] }),
            ("not a SPIFFE ID", try pred { p in var a = p["agent"] as! [String: Any]; a["spiffeId"] = "https://x"; p["agent"] = a }),
            ("no model", try pred { $0["model"] = nil }),
        ]
        for (name, bytes) in cases { XCTAssertEqual(code { _ = try ReceiptStatement(json: bytes) }, .receiptMalformed, name) }
        // Only the canonical bytes: a duplicate key (Foundation keeps the first, Python and jq the
        // last), an unknown field, whitespace — each read the same by Codable — are refused.
        let canonical = String(decoding: statement.json, as: UTF8.self)
        let other = #""subject":[{"digest":{"sha256":"\#(String(repeating: "bb", count: 32))"},"name":"output"}]"#
        let forms = [
            ("duplicate subject", canonical.replacingOccurrences(of: "}]}", with: "}]," + other + "}")),
            ("unknown model field", canonical.replacingOccurrences(of: #""model":{"#, with: #""model":{"name":"gpt-5","#)),
            ("whitespace", canonical.replacingOccurrences(of: #""predicateType":"#, with: #""predicateType": "#)),
        ]
        for (name, text) in forms {
            XCTAssertNotEqual(text, canonical, name)
            XCTAssertEqual(code { _ = try ReceiptStatement(json: Array(text.utf8)) }, .receiptMalformed, name)
        }
        XCTAssertEqual(code { _ = try ReceiptStatement(json: [UInt8](repeating: 0x20, count: ReceiptStatement.maxBytes + 1)) }, .receiptMalformed)
        // Optional parts may be absent.
        var bare = predicate
        bare.request = nil
        bare.attestation.issuanceIndex = nil
        bare.attestation.record = nil
        XCTAssertEqual(try ReceiptStatement(json: ReceiptStatement(outputSHA256: [UInt8](repeating: 1, count: 32), predicate: bare).json).predicate, bare)
    }

    func testRequestCommitmentDomain() {
        XCTAssertEqual(RequestCommitment.domain.count, 29)
        XCTAssertEqual(RequestCommitment.domain.last, 0)
        XCTAssertEqual(RequestCommitment.message(salt: [1, 2], request: [3]), Array("vouch.dev/receipt/v1 request".utf8) + [0, 1, 2, 3])
    }

    func testBundleRoundTripsAndIsBounded() throws {
        let env = DSSEEnvelope(payloadType: DSSEEnvelope.inTotoPayloadType, payload: [1], signatures: [.init(keyid: "", sig: [1])])
        let checkpoint = "example.org/vouch-log\n1\n" + Base64.encode([UInt8](repeating: 0, count: 32)) + "\n\n— example.org/vouch-log AAAAAQ==\n"
        let proof = try TLogProofFile(extra: nil, index: 0, proof: [], signedCheckpoint: checkpoint)
        let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
        let bundle = UnverifiedReceiptBundle(envelope: env, chainPEM: pem, ear: "a.b.c", issuance: .init(entry: [0x0a], proof: proof), receipt: nil)
        let again = try UnverifiedReceiptBundle(json: bundle.json)
        XCTAssertEqual(again.json, bundle.json)
        XCTAssertEqual(again.issuance, bundle.issuance)
        XCTAssertTrue(String(decoding: bundle.json, as: UTF8.self).contains(#""mediaType":"application/vnd.vouch.receipt.v1+json""#))
        var json = try JSONSerialization.jsonObject(with: Data(bundle.json)) as! [String: Any]
        for (key, value) in [("mediaType", "application/json"), ("ear", "a.b"), ("chain", "x")] as [(String, Any)] {
            var j = json
            j[key] = value
            XCTAssertEqual(code { _ = try UnverifiedReceiptBundle(json: [UInt8](try JSONSerialization.data(withJSONObject: j))) }, .receiptMalformed, key)
        }
        json["issuance"] = ["entry": "Cg==", "proof": "not a proof"]
        XCTAssertEqual(code { _ = try UnverifiedReceiptBundle(json: [UInt8](try JSONSerialization.data(withJSONObject: json))) }, .receiptMalformed)
        // The broker's proof response: its index must be the proof's.
        let response = #"{"index":"0","entry":"Cg==","proof":\#(String(decoding: try JSONEncoder().encode(proof.text), as: UTF8.self))}"#
        XCTAssertEqual(try UnverifiedReceiptBundle.LoggedEntry(proofResponse: Array(response.utf8)).proof.index, 0)
        XCTAssertEqual(code { _ = try UnverifiedReceiptBundle.LoggedEntry(proofResponse: Array(response.replacingOccurrences(of: #""0""#, with: #""1""#).utf8)) },
                       .receiptMalformed)
    }
}
