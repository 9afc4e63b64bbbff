import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto

/// The attestation an agent certificate carries: an EAR in a JSON CMW record in the id-pe-cmw
/// extension (RFC 9999).
final class AttestationExtensionTests: XCTestCase {
    let sample = AttestationExtension(hostId: String(repeating: "ab", count: 16), attestedAt: Date(timeIntervalSince1970: 1_800_000_000),
                                      evidenceType: "tpm2-quote", evidenceDigest: [UInt8](repeating: 1, count: 32), pcrBank: "sha256",
                                      pcrDigest: [UInt8](repeating: 2, count: 32), policyName: "fleet", policyVersion: 300,
                                      policyDigest: [UInt8](repeating: 3, count: 32), modelManifests: [[UInt8](repeating: 4, count: 32)], secureBoot: true,
                                      subject: .init(spiffeId: "spiffe://test.local/agent/h/payments", spkiSHA256: [UInt8](repeating: 5, count: 32)))

    func payload(_ claims: AttestationExtension, simulated: Bool = false) throws -> [UInt8] {
        try claims.earPayload(device: "tpm", devices: ["tpm"], verifierBuild: "vouchd (test.local)",
                              expiresAt: claims.attestedAt.addingTimeInterval(900), simulated: simulated)
    }

    /// Claims as read back from an EAR: with the appraisal status of its one submodule.
    func affirmed(_ claims: AttestationExtension) -> AttestationExtension {
        var c = claims
        c.statuses = ["tpm": "affirming"]
        return c
    }

    func testOIDHasShortArcs() {
        XCTAssertEqual(AttestationExtension.oid, "1.3.6.1.5.5.7.1.35")
        XCTAssertTrue(AttestationExtension.oid.split(separator: ".").allSatisfy { UInt64($0)! < 1 << 31 })
    }

    func testEARClaimsRoundTripAndOptionalFields() throws {
        XCTAssertEqual(try AttestationExtension(earPayload: try payload(sample)), affirmed(sample))
        var bare = sample
        bare.modelManifests = []
        bare.secureBoot = nil
        XCTAssertEqual(try AttestationExtension(earPayload: try payload(bare)), affirmed(bare))

        let json = try JSONSerialization.jsonObject(with: Data(try payload(sample, simulated: true))) as! [String: Any]
        XCTAssertEqual(json["eat_profile"] as? String, "tag:github.com,2023:veraison/ear")
        XCTAssertEqual(json["iat"] as? Int, 1_800_000_000)
        XCTAssertEqual(json["exp"] as? Int, 1_800_000_900)
        let tpm = try XCTUnwrap((json["submods"] as? [String: Any])?["tpm"] as? [String: Any])
        XCTAssertEqual(tpm["ear.status"] as? String, "warning")
        XCTAssertEqual(tpm["ear.appraisal-policy-id"] as? String, "vouch:policy:fleet:v300:sha256:" + String(repeating: "03", count: 32))
    }

    /// The publishers' signatures over the measured model: `vouch.evidence.models` when the broker
    /// verified one, absent otherwise (so an EAR without them reads as before, and one from an
    /// older broker reads with none); a subject digest that is not SHA-256 hex is refused.
    func testSignedModelsInTheEvidence() throws {
        var signed = sample
        signed.models = [.init(model: "acme-llm-7b", publisher: "Acme AI", signer: "sha256:" + String(repeating: "6", count: 64),
                               subjectDigest: String(repeating: "7", count: 64))]
        XCTAssertEqual(try AttestationExtension(earPayload: try payload(signed)), affirmed(signed))
        let json = try JSONSerialization.jsonObject(with: Data(try payload(signed))) as! [String: Any]
        let evidence = try XCTUnwrap(json["vouch.evidence"] as? [String: Any])
        XCTAssertEqual(evidence["models"] as? [[String: String]], [["model": "acme-llm-7b", "publisher": "Acme AI",
                                                                   "signer": "sha256:" + String(repeating: "6", count: 64),
                                                                   "subjectDigest": String(repeating: "7", count: 64)]])
        let plain = try JSONSerialization.jsonObject(with: Data(try payload(sample))) as! [String: Any]
        XCTAssertNil((plain["vouch.evidence"] as? [String: Any])?["models"])
        XCTAssertNil(try AttestationExtension(earPayload: try payload(sample)).models)

        var bad = try XCTUnwrap(json as [String: Any]?)
        var e = evidence
        e["models"] = [["model": "m", "publisher": "p", "signer": "s", "subjectDigest": "not hex"]]
        bad["vouch.evidence"] = e
        XCTAssertThrowsError(try AttestationExtension(earPayload: [UInt8](try JSONSerialization.data(withJSONObject: bad)))) {
            XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue)
        }
        e["models"] = [["model": "m"]]
        bad["vouch.evidence"] = e
        XCTAssertThrowsError(try AttestationExtension(earPayload: [UInt8](try JSONSerialization.data(withJSONObject: bad)))) {
            XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue)
            XCTAssertTrue(($0 as? VouchError)?.context["field"]?.hasPrefix("vouch.evidence.models") ?? false)
        }
    }

    /// A record's JSON escapes what JSON requires in its type (quotes, backslashes, control
    /// characters) and keeps the rest as it is, on both the copy and the escaping path: the text
    /// reads back, through its own parser and Foundation's, to the same type.
    func testCMWRecordJSONEscapesItsType() throws {
        for type in ["application/eat+jwt", "a\"b", "a\\b", "tab\there", "nl\n", "\u{1}", "é and \u{2028}", "del\u{7f}"] {
            let record = CMWRecord(type: type, value: [1, 2, 3], indicator: nil)
            let parsed = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(record.json.utf8)) as? [Any], type)
            XCTAssertEqual(parsed.first as? String, type)
            XCTAssertEqual(try CMWRecord(json: record.json).type, type)
        }
    }

    func testCMWRecordAndExtensionDER() throws {
        let value = AttestationExtension.extensionValue(ear: "aGVhZGVy.cGF5bG9hZA.c2ln")
        XCTAssertEqual(value.first, 0x0c, "the json choice: a UTF8String")
        var r = DER.Reader(value)
        let text = String(decoding: try r.read(DER.utf8StringTag, "cmw"), as: UTF8.self)
        XCTAssertEqual(text, #"["application/eat+jwt; eat_profile=\"tag:github.com,2023:veraison/ear\"","YUdWaFpHVnkuY0dGNWJHOWhaQS5jMmxu",8]"#)
        XCTAssertEqual(try AttestationExtension.ear(extensionValue: value), "aGVhZGVy.cGF5bG9hZA.c2ln")
        let record = try CMWRecord(json: text)
        XCTAssertEqual(record.indicator, CMWRecord.attestationResults)
        XCTAssertEqual(try CMWRecord(extensionValue: record.extensionValue), record)
        XCTAssertNil(try CMWRecord(json: #"["application/eat+jwt","YQ"]"#).indicator)
    }

    func testMalformedCMWIsRefusedWithItsCode() {
        func code(_ value: [UInt8]) -> ErrorCode? {
            do { _ = try AttestationExtension.ear(extensionValue: value); return nil } catch { return (error as? VouchError)?.code }
        }
        let type = #""application/eat+jwt; eat_profile=\"tag:github.com,2023:veraison/ear\"""#
        XCTAssertEqual(code(DER.octetString([0x83, 0x60, 0x40, 0x08])), .unsupported, "cbor choice")
        XCTAssertEqual(code(DER.utf8(#"{"a":["application/eat+jwt","YQ"]}"#)), .unsupported, "a collection")
        XCTAssertEqual(code(DER.utf8(#"["text/plain","YS5iLmM",8]"#)), .unsupported, "not an EAR")
        XCTAssertEqual(code(DER.utf8("[\(type),\"YS5iLmM\",0]")), .invalidValue, "indicator 0")
        XCTAssertEqual(code(DER.utf8("[\(type),\"YS5iLmM\",4294967296]")), .invalidValue, "indicator over 32 bits")
        XCTAssertEqual(code(DER.utf8("[\(type),\"YS5iLmM\",4]")), .invalidValue, "evidence, not a result")
        XCTAssertEqual(code(DER.utf8("[\(type),\"YS5iLmM=\",8]")), .invalidValue, "padded")
        XCTAssertEqual(code(DER.utf8("[\(type),\"YS+iLmM\",8]")), .invalidValue, "base64, not base64url")
        XCTAssertEqual(code(DER.utf8("[\(type),\"YWJj\",8]")), .invalidValue, "not a JWS")
        XCTAssertEqual(code(DER.utf8("[\(type),\"YS5iLmM\",8,1]")), .invalidValue, "four members")
        XCTAssertEqual(code(DER.utf8("[\(type),\"YS5iLmM\",8]") + [0]), .trailingBytes)
        XCTAssertEqual(code(DER.tlv(DER.utf8StringTag, [0x5b, 0xff, 0x5d])), .invalidValue, "not UTF-8")
        let good = AttestationExtension.extensionValue(ear: "a.b.c")
        for n in 0..<good.count { XCTAssertNotNil(code(Array(good.prefix(n))), "prefix \(n)") }
    }

    func testEARSignatureVerifiesAgainstTheBrokerCAOnly() throws {
        let now = Date()
        let brokerCA = try CertificateAuthority.create(commonName: "broker CA", key: try PrivateKey.generate(.p256), notBefore: now.addingTimeInterval(-60),
                                                       notAfter: now.addingTimeInterval(86400))
        let otherCA = try CertificateAuthority.create(commonName: "agent CA", key: try PrivateKey.generate(.p256), notBefore: now.addingTimeInterval(-60),
                                                      notAfter: now.addingTimeInterval(86400))
        let key = try PrivateKey.generate(.p256)
        let leaf = try brokerCA.issue(publicKey: try key.publicKey, profile: LeafProfile(
            subjectCommonName: "vouchd", uriSANs: ["spiffe://test.local/vouchd"], notBefore: now.addingTimeInterval(-60),
            notAfter: now.addingTimeInterval(3600), usage: .brokerClient), serial: nil)
        let token = try JWSSigner(key: key, chain: [leaf, brokerCA.certificate]).sign(payload: try payload(sample))
        let value = AttestationExtension.extensionValue(ear: token)
        XCTAssertEqual(try AttestationExtension.verified(extensionValue: value, anchors: [brokerCA.certificate], signer: "spiffe://test.local/vouchd", at: now), affirmed(sample))
        XCTAssertEqual(try AttestationExtension(extensionValue: value), affirmed(sample))
        XCTAssertThrowsError(try AttestationExtension.verified(extensionValue: value, anchors: [otherCA.certificate], signer: "spiffe://test.local/vouchd", at: now)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .signatureInvalid)
        }
        XCTAssertThrowsError(try AttestationExtension.verified(extensionValue: value, anchors: [brokerCA.certificate], signer: "spiffe://other/vouchd", at: now)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .signerMismatch)
        }
        // A claim changed after signing: the signature no longer verifies.
        let parts = token.split(separator: ".").map(String.init)
        var changed = sample
        changed.policyName = "lenient"
        let forged = parts[0] + "." + JWSSigner.base64URL(try payload(changed)) + "." + parts[2]
        XCTAssertThrowsError(try AttestationExtension.verified(extensionValue: AttestationExtension.extensionValue(ear: forged), anchors: [brokerCA.certificate],
                                                               signer: "spiffe://test.local/vouchd", at: now)) {
            XCTAssertEqual(($0 as? VouchError)?.code, .signatureInvalid)
        }
    }

    func testTheEARIsBoundToItsCertificateAndMarkedAsAnIssuanceResult() throws {
        let now = Date()
        let brokerCA = try CertificateAuthority.create(commonName: "broker CA", key: try PrivateKey.generate(.p256), notBefore: now.addingTimeInterval(-60),
                                                       notAfter: now.addingTimeInterval(86400))
        let signerKey = try PrivateKey.generate(.p256)
        let signerCert = try brokerCA.issue(publicKey: try signerKey.publicKey, profile: LeafProfile(
            subjectCommonName: "vouchd", uriSANs: ["spiffe://test.local/vouchd"], notBefore: now.addingTimeInterval(-60),
            notAfter: now.addingTimeInterval(3600), usage: .brokerClient), serial: nil)
        let signer = try JWSSigner(key: signerKey, chain: [signerCert, brokerCA.certificate])
        let agentCA = try CertificateAuthority.create(commonName: "agent CA", key: try PrivateKey.generate(.p256), notBefore: now.addingTimeInterval(-60),
                                                      notAfter: now.addingTimeInterval(86400))
        let agentKey = try PrivateKey.generate(.p256)
        let spiffeID = "spiffe://test.local/agent/h/payments"
        var claims = sample
        claims.subject = try .init(spiffeId: spiffeID, publicKey: try agentKey.publicKey)
        let value = AttestationExtension.extensionValue(ear: try signer.sign(payload: try payload(claims), typ: "JWT"))
        func certificate(key: PrivateKey, spiffeID: String) throws -> Certificate {
            try agentCA.issue(publicKey: try key.publicKey, profile: LeafProfile(uriSANs: [spiffeID], notBefore: now.addingTimeInterval(-60),
                                                                                 notAfter: now.addingTimeInterval(3600), usage: .agent,
                                                                                 extensions: [(AttestationExtension.oid, value)]), serial: nil)
        }
        func code(_ cert: Certificate) -> ErrorCode? {
            do {
                _ = try AttestationExtension.verified(certificate: cert, anchors: [brokerCA.certificate], signer: "spiffe://test.local/vouchd", at: now)
                return nil
            } catch { return (error as? VouchError)?.code }
        }
        XCTAssertEqual(try AttestationExtension.verified(certificate: try certificate(key: agentKey, spiffeID: spiffeID), anchors: [brokerCA.certificate],
                                                         signer: "spiffe://test.local/vouchd", at: now), affirmed(claims))
        XCTAssertEqual(code(try certificate(key: try PrivateKey.generate(.p256), spiffeID: spiffeID)), .attestationSubjectMismatch, "another key")
        XCTAssertEqual(code(try certificate(key: agentKey, spiffeID: "spiffe://test.local/agent/h/other")), .attestationSubjectMismatch, "another SPIFFE ID")
        XCTAssertEqual(code(try agentCA.issue(publicKey: try agentKey.publicKey, profile: LeafProfile(uriSANs: [spiffeID], notBefore: now.addingTimeInterval(-60),
                                                                                                      notAfter: now.addingTimeInterval(3600), usage: .agent),
                                              serial: nil)), .attestationMissing)

        // The claims say what kind of result this is: another kind is not a certificate's EAR.
        var json = try JSONSerialization.jsonObject(with: Data(try payload(claims))) as! [String: Any]
        XCTAssertEqual(json["vouch.kind"] as? String, "certificate-issuance")
        XCTAssertEqual((json["vouch.subject"] as? [String: Any])?["spiffeId"] as? String, spiffeID)
        json["vouch.kind"] = "host-status"
        XCTAssertThrowsError(try AttestationExtension(earPayload: [UInt8](try JSONSerialization.data(withJSONObject: json)))) {
            XCTAssertEqual(($0 as? VouchError)?.code, .unsupported)
            XCTAssertEqual(($0 as? VouchError)?.context["field"], "vouch.kind")
        }
        // An EAR from before 0.9.1 (no kind, no subject): its claims still read, but it binds to
        // no certificate.
        json.removeValue(forKey: "vouch.kind")
        json.removeValue(forKey: "vouch.subject")
        let legacyPayload = [UInt8](try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys, .withoutEscapingSlashes]))
        XCTAssertNil(try AttestationExtension(earPayload: legacyPayload).subject)
        let legacy = AttestationExtension.extensionValue(ear: try signer.sign(payload: legacyPayload, typ: "JWT"))
        let legacyCert = try agentCA.issue(publicKey: try agentKey.publicKey, profile: LeafProfile(uriSANs: [spiffeID], notBefore: now.addingTimeInterval(-60),
                                                                                                   notAfter: now.addingTimeInterval(3600), usage: .agent,
                                                                                                   extensions: [(AttestationExtension.oid, legacy)]), serial: nil)
        XCTAssertEqual(code(legacyCert), .attestationSubjectMismatch, "an EAR naming no certificate")
        // Without a subject nothing is signed.
        var bare = claims
        bare.subject = nil
        XCTAssertThrowsError(try payload(bare))
    }

    func testEARWithoutVouchClaimsIsRefusedNamingTheClaim() throws {
        var json = try JSONSerialization.jsonObject(with: Data(try payload(sample))) as! [String: Any]
        json.removeValue(forKey: "vouch.policy")
        XCTAssertThrowsError(try AttestationExtension(earPayload: [UInt8](try JSONSerialization.data(withJSONObject: json)))) {
            XCTAssertEqual(($0 as? VouchError)?.code, .invalidValue)
            XCTAssertEqual(($0 as? VouchError)?.context["field"], "vouch.policy")
        }
        var policy = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(try payload(sample))) as! [String: Any])["vouch.policy"] as? [String: Any])
        policy["version"] = true
        json["vouch.policy"] = policy
        XCTAssertThrowsError(try AttestationExtension(earPayload: [UInt8](try JSONSerialization.data(withJSONObject: json)))) {
            XCTAssertEqual(($0 as? VouchError)?.context["field"], "vouch.policy.version")
        }
        policy["version"] = 1
        json["vouch.policy"] = policy
        XCTAssertEqual(try AttestationExtension(earPayload: [UInt8](try JSONSerialization.data(withJSONObject: json))).policyVersion, 1)
        json["eat_profile"] = "tag:example.com,2024:other"
        XCTAssertThrowsError(try AttestationExtension(earPayload: [UInt8](try JSONSerialization.data(withJSONObject: json)))) {
            XCTAssertEqual(($0 as? VouchError)?.code, .unsupported)
        }
    }
}
