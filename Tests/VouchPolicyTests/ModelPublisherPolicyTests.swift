import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchPolicyFiles
import VouchYAML

/// `model.publishers`: decoded by the pure decoder, its trust material checked at load by
/// VouchPolicyFiles, every refusal `policy_invalid` with the value's path and position.
final class ModelPublisherPolicyTests: XCTestCase {
    static let head = """
    apiVersion: vouch/v1
    name: signed
    version: 1
    pcrs:
      bank: sha256
      values:
        0: ["\(String(repeating: "0", count: 64))"]
    model:
      publishers:

    """

    /// A value as a YAML literal block under a key at `indent` spaces.
    func literal(_ text: String, indent: Int) -> String {
        "|\n" + text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.isEmpty ? "" : String(repeating: " ", count: indent) + $0 }.joined(separator: "\n")
    }

    func keyPEM(_ type: PrivateKey.KeyType = .p256) throws -> String { try PrivateKey.generate(type).publicKey.pem }

    func rootPEM(_ name: String) throws -> String {
        try CertificateAuthority.create(commonName: name, key: try PrivateKey.generate(), notBefore: Date(), notAfter: Date().addingTimeInterval(3600)).certificate.pem
    }

    /// An RSA-2048 public key (any odd modulus with the top bit set encodes as one).
    func rsaPEM() throws -> String {
        try PublicKey(rsaModulus: [0xC5] + [UInt8](repeating: 0x5A, count: 254) + [0x01], exponent: [1, 0, 1]).pem
    }

    func trustedRoot() throws -> String {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/model-signing/sigstore-trusted-root.json")
        return try String(contentsOf: url, encoding: .utf8)
    }

    func keyEntry(_ name: String, models: String = "[acme-llm-7b]", pem: String) -> String {
        "    - name: \(name)\n      models: \(models)\n      key: \(literal(pem, indent: 8))"
    }

    /// Decoded as `PolicyFiles.load` decodes (material checked), or by the pure decoder alone.
    func decode(_ text: String, checked: Bool = true) throws -> Policy {
        var check: ModelPublisher.MaterialCheck? = nil
        if checked { check = { try PolicyFiles.checkModelMaterial($0) } }
        return try PolicyDecoder.decode(YAMLParser.parse(Array(text.utf8), file: "p.yaml"), sha256: "s", modelMaterial: check)
    }

    func assertRefused(_ entries: String, path: String, line: Int? = nil, file: StaticString = #filePath, sourceLine: UInt = #line) {
        XCTAssertThrowsError(try decode(Self.head + entries), file: file, line: sourceLine) { error in
            let e = error as? VouchError
            XCTAssertEqual(e?.code, .policyInvalid, "\(error)", file: file, line: sourceLine)
            XCTAssertEqual(e?.context["path"], path, "\(error)", file: file, line: sourceLine)
            XCTAssertEqual(e?.context["file"], "p.yaml", file: file, line: sourceLine)
            if let line { XCTAssertEqual(e?.context["line"], "\(line)", "\(error)", file: file, line: sourceLine) }
        }
    }

    func testEachKindOfPublisherDecodes() throws {
        let key = try PrivateKey.generate().publicKey
        let roots = [try rootPEM("Acme models CA"), try rootPEM("Acme models CA 2")]
        let text = Self.head + keyEntry("Acme AI", pem: try key.pem) + """

            - name: Acme CA
              models: ["*"]
              certificate:
                roots: \(literal(roots.joined(), indent: 10))
                identity: models@acme.example
            - name: Jane via Sigstore
              models: [v1.1.0-sigstore, other]
              sigstore:
                trustedRoot: \(literal(try trustedRoot(), indent: 10))
                identity: jane@example.com
                issuer: https://accounts.google.com
        """
        let p = try decode(text)
        XCTAssertEqual(p.model.publishers.map(\.name), ["Acme AI", "Acme CA", "Jane via Sigstore"], "kept in the order listed")
        XCTAssertEqual(p.model.publishers[0].models, ["acme-llm-7b"])
        XCTAssertEqual(p.model.publishers[0].trust, .key(spki: try key.spkiDER))
        XCTAssertEqual(p.model.publishers[1].trust, .certificate(roots: try roots.map { try Certificate(pem: $0).der }, identity: "models@acme.example"))
        XCTAssertTrue(p.model.publishers[1].signs(model: "anything"))
        guard case let .sigstore(root, identity, issuer) = p.model.publishers[2].trust else { return XCTFail("\(p.model.publishers[2].trust)") }
        XCTAssertEqual(root, Array(try trustedRoot().utf8))
        XCTAssertEqual(identity, "jane@example.com")
        XCTAssertEqual(issuer, "https://accounts.google.com")
        XCTAssertFalse(p.model.publishers[2].signs(model: "acme-llm-7b"))
        XCTAssertEqual(try decode(Self.head.replacingOccurrences(of: "publishers:\n", with: "publishers: []\n")).model.publishers, [], "none: as before")

        // The curves model-signing signs with; a certificate's identity is optional.
        for type in [PrivateKey.KeyType.p384, .p521] {
            XCTAssertNoThrow(try decode(Self.head + keyEntry("k", pem: try keyPEM(type))), type.rawValue)
        }
        let noIdentity = try decode(Self.head + "    - name: CA\n      models: [m]\n      certificate:\n        roots: \(literal(roots[0], indent: 10))")
        XCTAssertEqual(noIdentity.model.publishers[0].trust, .certificate(roots: [try Certificate(pem: roots[0]).der], identity: nil))
    }

    func testRefusals() throws {
        let key = try keyPEM(), root = try rootPEM("CA")
        // Two kinds, none: the entry's path.
        assertRefused(keyEntry("A", pem: key) + "\n      certificate:\n        roots: \(literal(root, indent: 10))", path: "model.publishers[0]", line: 18)
        assertRefused("    - name: A\n      models: [m]", path: "model.publishers[0]")
        // models: empty, "*" among names, a name twice, an empty name.
        assertRefused(keyEntry("A", models: "[]", pem: key), path: "model.publishers[0].models")
        assertRefused(keyEntry("A", models: "[\"*\", m]", pem: key), path: "model.publishers[0].models")
        assertRefused(keyEntry("A", models: "[m, m]", pem: key), path: "model.publishers[0].models")
        assertRefused(keyEntry("A", models: "[\"\"]", pem: key), path: "model.publishers[0].models")
        assertRefused(keyEntry("A", models: "[\"\(String(repeating: "m", count: 1025))\"]", pem: key), path: "model.publishers[0].models")
        // name: twice, a control character, too long, missing.
        assertRefused(keyEntry("A", pem: key) + "\n" + keyEntry("A", pem: key), path: "model.publishers[1].name", line: 18)
        assertRefused(keyEntry("\"A\\tB\"", pem: key), path: "model.publishers[0].name")
        assertRefused(keyEntry(String(repeating: "n", count: 129), pem: key), path: "model.publishers[0].name")
        assertRefused("    - models: [m]\n      key: \(literal(key, indent: 8))", path: "model.publishers[0].name")
        // An unknown key in an entry.
        assertRefused(keyEntry("A", pem: key) + "\n      note: x", path: "model.publishers[0].note")
        // key: not PEM, another label, bad base64, text outside the block, RSA, not a key at all.
        assertRefused("    - name: A\n      models: [m]\n      key: not a key", path: "model.publishers[0].key", line: 12)
        assertRefused(keyEntry("A", pem: root), path: "model.publishers[0].key")
        assertRefused(keyEntry("A", pem: key.replacingOccurrences(of: "\n-----END", with: "A\n-----END")), path: "model.publishers[0].key")
        assertRefused(keyEntry("A", pem: "subject=CN=x\n" + key), path: "model.publishers[0].key")
        assertRefused(keyEntry("A", pem: key + key), path: "model.publishers[0].key")
        assertRefused(keyEntry("A", pem: try rsaPEM()), path: "model.publishers[0].key", line: 12)
        assertRefused(keyEntry("A", pem: root.replacingOccurrences(of: "CERTIFICATE", with: "PUBLIC KEY")), path: "model.publishers[0].key")
        // certificate: a root that is not a certificate (a key's DER under the label), none, 17.
        let notACertificate = key.replacingOccurrences(of: "PUBLIC KEY", with: "CERTIFICATE")
        assertRefused("    - name: A\n      models: [m]\n      certificate:\n        roots: \(literal(root + notACertificate, indent: 10))",
                      path: "model.publishers[0].certificate.roots", line: 13)
        assertRefused("    - name: A\n      models: [m]\n      certificate:\n        identity: x@example.com", path: "model.publishers[0].certificate.roots")
        assertRefused("    - name: A\n      models: [m]\n      certificate:\n        roots: \(literal(String(repeating: root, count: 17), indent: 10))",
                      path: "model.publishers[0].certificate.roots")
        assertRefused("    - name: A\n      models: [m]\n      certificate:\n        roots: \(literal(root, indent: 10))\n        identity: \"a b\"",
                      path: "model.publishers[0].certificate.identity")
        // sigstore: no issuer, no identity, a trusted root that is not JSON.
        let sigstore = "    - name: A\n      models: [m]\n      sigstore:\n        trustedRoot: \(literal(try trustedRoot(), indent: 10))\n"
        assertRefused(sigstore + "        identity: jane@example.com", path: "model.publishers[0].sigstore.issuer")
        assertRefused(sigstore + "        issuer: https://accounts.google.com", path: "model.publishers[0].sigstore.identity")
        assertRefused("    - name: A\n      models: [m]\n      sigstore:\n        trustedRoot: \"[1]\"\n        identity: j@example.com\n        issuer: https://i.example",
                      path: "model.publishers[0].sigstore.trustedRoot", line: 13)
        // 33 publishers.
        let many = (0...32).map { keyEntry("p\($0)", pem: key) }.joined(separator: "\n")
        assertRefused(many, path: "model.publishers", line: 10)
        XCTAssertEqual(try decode(Self.head + (0...31).map { keyEntry("p\($0)", pem: key) }.joined(separator: "\n")).model.publishers.count, 32)
    }

    func testThePureDecoderDecodesMaterialWithoutParsingIt() throws {
        // PEM is checked without OpenSSL; what the DER holds only with the injected check.
        let rsa = try rsaPEM()
        let p = try decode(Self.head + keyEntry("A", pem: rsa), checked: false)
        XCTAssertEqual(p.model.publishers[0].trust, .key(spki: try PublicKey(pem: rsa).spkiDER))
        XCTAssertThrowsError(try decode(Self.head + keyEntry("A", pem: "junk"), checked: false)) {
            XCTAssertEqual(($0 as? VouchError)?.context["path"], "model.publishers[0].key")
        }
    }

    func testPEMIsReadStrictly() throws {
        let key = try keyPEM()
        let der = try PublicKey(pem: key).spkiDER
        // CRLF line ends and indentation are accepted; the DER is the same.
        for text in [key.replacingOccurrences(of: "\n", with: "\r\n"), key.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n")] {
            let json = #"{"apiVersion": "vouch/v1", "name": "j", "version": 1, "pcrs": {"bank": "sha256", "values": {"0": ["\#(String(repeating: "0", count: 64))"]}}, "model": {"publishers": [{"name": "A", "models": ["m"], "key": \#(try jsonString(text))}]}}"#
            XCTAssertEqual(try decode(json).model.publishers[0].trust, .key(spki: der))
        }
        let body = key.split(separator: "\n").dropFirst().dropLast().joined(separator: "\n")
        for bad in ["-----BEGIN PUBLIC KEY-----\n" + body,                                        // no END line
                    "-----BEGIN PUBLIC KEY-----\n\n" + body + "\n-----END PUBLIC KEY-----",    // a blank line inside
                    "-----BEGIN PUBLIC KEY-----\nProc-Type: 4,ENCRYPTED\n" + body + "\n-----END PUBLIC KEY-----",
                    "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----",                     // empty
                    "-----BEGIN PUBLIC KEY-----\n" + body + "==\n-----END PUBLIC KEY-----",     // padding twice
                    "-----BEGIN PUBLIC KEY-----\n" + body + "\n-----END CERTIFICATE-----"] {
            XCTAssertThrowsError(try decode(Self.head + keyEntry("A", pem: bad), checked: false), bad) {
                XCTAssertEqual(($0 as? VouchError)?.context["path"], "model.publishers[0].key")
            }
        }
    }

    func jsonString(_ s: String) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes]), as: UTF8.self).dropFirst().dropLast().description
    }

    func testJSONPoliciesCarryTheSameValuesAsStrings() throws {
        let key = try keyPEM()
        let root = try trustedRoot()
        let json = #"""
        {"apiVersion": "vouch/v1", "name": "j", "version": 1, "pcrs": {"bank": "sha256", "values": {"0": ["\#(String(repeating: "0", count: 64))"]}},
         "model": {"publishers": [{"name": "Acme AI", "models": ["acme-llm-7b"], "key": \#(try jsonString(key))},
                                  {"name": "Jane", "models": ["*"], "sigstore": {"trustedRoot": \#(try jsonString(root)), "identity": "jane@example.com", "issuer": "https://accounts.google.com"}}]}}
        """#
        let p = try decode(json)
        XCTAssertEqual(p.model.publishers[0].trust, .key(spki: try PublicKey(pem: key).spkiDER))
        XCTAssertEqual(p.model.publishers[1].trust, .sigstore(trustedRoot: Array(root.utf8), identity: "jane@example.com", issuer: "https://accounts.google.com"))
    }

    func testTheDocumentedExampleAndTheShippedPolicyLoad() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: root.appendingPathComponent("docs/policy.md"), encoding: .utf8)
        guard let section = doc.range(of: "## Signed models"), let start = doc.range(of: "```yaml\n", range: section.upperBound..<doc.endIndex),
              let end = doc.range(of: "```", range: start.upperBound..<doc.endIndex) else { return XCTFail("docs/policy.md has no Signed models example") }
        let example = try decode(String(doc[start.upperBound..<end.lowerBound]))
        XCTAssertEqual(example.model.publishers.map(\.trust.kind), ["key", "certificate"])

        let shipped = try PolicyFiles.load(file: root.appendingPathComponent("policies/production.yaml").path)
        XCTAssertEqual(shipped.model.publishers.map(\.name), ["Acme AI"])
        XCTAssertFalse(shipped.model.allowed.isEmpty, "an allowed manifest still passes unsigned")
    }

    func testLoadingAFileChecksTheMaterialAndItsDigestCoversIt() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-publishers-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("p.yaml").path
        let good = Self.head + keyEntry("Acme AI", pem: try keyPEM())
        try Data(good.utf8).write(to: URL(fileURLWithPath: path))
        let p = try PolicyFiles.load(file: path)
        XCTAssertEqual(p.model.publishers.map(\.name), ["Acme AI"])
        XCTAssertEqual(p.sha256, Hex.encode(Crypto.sha256(Array(good.utf8))))

        try Data((Self.head + keyEntry("Acme AI", pem: try rsaPEM())).utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try PolicyFiles.load(file: path)) {
            let e = $0 as? VouchError
            XCTAssertEqual(e?.code, .policyInvalid)
            XCTAssertEqual(e?.context["path"], "model.publishers[0].key")
            XCTAssertEqual(e?.context["file"], path)
            XCTAssertEqual(e?.context["line"], "12")
        }
    }
}
