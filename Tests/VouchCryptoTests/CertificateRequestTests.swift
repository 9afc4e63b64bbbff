import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchTPMWire
import VouchTestSupport

/// The package's own PKCS#10 parser (`UnverifiedCertificateRequest`) against OpenSSL's: requests
/// made by `openssl req` read the same (DER, key, SubjectPublicKeyInfo bytes, signature verdict),
/// and broken ones are refused.
final class CertificateRequestTests: XCTestCase {
    /// P-256, P-384 and RSA-2048 requests from `openssl req`, PEM and DER: the same DER and key as
    /// OpenSSL's parse, the SPKI bytes OpenSSL's encoder writes for that key (what the quote's
    /// binding hashes), and a verifying self-signature; SHA-384/512 signatures too.
    func testAgreesWithOpenSSLOnOpenSSLRequests() throws {
        let dir = try temporaryDirectory()
        for (name, genpkey, digest) in [("p256", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "-sha256"),
                                        ("p384", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"], "-sha384"),
                                        ("rsa2048", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "-sha256"),
                                        ("rsa2048-512", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "-sha512")] {
            let key = dir.appendingPathComponent("\(name).key").path
            _ = try openssl(["genpkey"] + genpkey + ["-out", key])
            let pem = try openssl(["req", "-new", "-key", key, digest, "-subj", "/CN=agent \(name)/O=Vouch test"])
            let der = try opensslBytes(["req", "-in", "/dev/stdin", "-outform", "DER"], stdin: Array(pem.utf8))
            let pubkey = try PublicKey(pem: try openssl(["req", "-in", "/dev/stdin", "-noout", "-pubkey"], stdin: Array(pem.utf8)))
            let reference = try CSR(pemOrDER: Array(pem.utf8))
            XCTAssertTrue(reference.signatureIsValid, name)
            XCTAssertEqual(der, try reference.der, name)
            for input in [Array(pem.utf8), der] {
                let verified = try XCTUnwrap(try UnverifiedCertificateRequest(pemOrDER: input).verify(), name)
                XCTAssertEqual(verified.der, try reference.der, name)
                XCTAssertTrue(verified.publicKey.isEqual(to: try reference.publicKey), name)
                XCTAssertEqual(try verified.publicKey.spkiDER, try pubkey.spkiDER, "\(name): the SPKI OpenSSL's encoder writes")
                XCTAssertEqual(try verified.publicKey.canonicalSPKIDER, try pubkey.canonicalSPKIDER, name)
                XCTAssertEqual(verified.publicKey.bits, pubkey.bits, name)
                XCTAssertEqual(verified.publicKey.isEC, name.hasPrefix("p"), name)
            }
        }
    }

    /// Keys built from parameters (an EC point, RSA n and e) give, without OpenSSL's encoder,
    /// the SubjectPublicKeyInfo OpenSSL writes for them.
    func testKeysBuiltFromParametersHaveOpenSSLsSPKI() throws {
        for type in [PrivateKey.KeyType.p256, .p384, .p521] {
            let generated = try PrivateKey.generate(type).publicKey
            let params = try XCTUnwrap(generated.ecJWKParameters)
            let curve: ECCCurve = type == .p256 ? .nistP256 : type == .p384 ? .nistP384 : .nistP521
            let built = try PublicKey(ecPoint: .ecc(curve: curve, x: params.x, y: params.y))
            XCTAssertEqual(try built.spkiDER, try generated.spkiDER, "\(type)")
            XCTAssertEqual(try built.canonicalSPKIDER, try generated.canonicalSPKIDER, "\(type)")
            XCTAssertTrue(try built.canonicalKey === built)
        }
        let rsa = try PublicKey(pem: try openssl(["pkey", "-pubout"], stdin: Array(try openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]).utf8)))
        let fields = try XCTUnwrap(rsaFields(try rsa.spkiDER))
        let built = try PublicKey(rsaModulus: [0, 0] + fields.n, exponent: [0] + fields.e)
        XCTAssertEqual(try built.spkiDER, try rsa.spkiDER)
    }

    /// Broken requests are refused at parsing (`csr_malformed` at the broker): not DER, every
    /// truncation, bytes after the request (DER and inside the structure), a bad version, broken
    /// PEM armour or base64, and the 64 KiB bound.
    func testRefusesMalformedTruncatedAndTrailingGarbage() throws {
        let der = try CSR.create(key: try PrivateKey.generate(), commonName: "agent").der
        XCTAssertNotNil(try UnverifiedCertificateRequest(pemOrDER: der).verify())
        for bad in [[], [0x30], [0x30, 0x00], Array("not a CSR".utf8), [UInt8](repeating: 0xff, count: 100)] {
            XCTAssertThrowsError(try UnverifiedCertificateRequest(pemOrDER: bad), "\(bad.prefix(8))") { assertParseError($0) }
        }
        for cut in 1..<der.count {
            XCTAssertThrowsError(try UnverifiedCertificateRequest(pemOrDER: Array(der.prefix(cut))), "cut at \(cut)") { assertParseError($0) }
        }
        XCTAssertThrowsError(try UnverifiedCertificateRequest(pemOrDER: der + [0x00])) { assertParseError($0) }
        XCTAssertThrowsError(try UnverifiedCertificateRequest(pemOrDER: der + der)) { assertParseError($0) }
        // An extra element inside the outer SEQUENCE, after the signature.
        var inner = DER.Reader(der)
        let content = try inner.read(DER.sequenceTag, "csr")
        XCTAssertThrowsError(try UnverifiedCertificateRequest(pemOrDER: DER.tlv(DER.sequenceTag, content + [0x05, 0x00]))) { assertParseError($0) }
        // Version 2 (1) instead of 1 (0): the version INTEGER is the first byte after two headers.
        var v2 = der
        let versionAt = try XCTUnwrap((0..<(der.count - 2)).first { der[$0] == 0x02 && der[$0 + 1] == 0x01 && der[$0 + 2] == 0x00 })
        v2[versionAt + 2] = 0x01
        XCTAssertThrowsError(try UnverifiedCertificateRequest(pemOrDER: v2)) { assertParseError($0) }

        let body = Base64.encode(der)
        for pem in ["-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                    "-----BEGIN CERTIFICATE REQUEST-----\n\(body)\n",                                      // no END line
                    "-----BEGIN CERTIFICATE REQUEST-----\n\(body)!\n-----END CERTIFICATE REQUEST-----\n",   // not base64
                    "-----BEGIN CERTIFICATE REQUEST-----\nProc-Type: 4,ENCRYPTED\n\n\(body)\n-----END CERTIFICATE REQUEST-----\n",
                    "-----BEGIN CERTIFICATE-----\n\(body)\n-----END CERTIFICATE-----\n",                   // another label
                    "-----BEGIN CERTIFICATE REQUEST-----\n\(Base64.encode(der + [0]))\n-----END CERTIFICATE REQUEST-----\n"] {
            XCTAssertThrowsError(try UnverifiedCertificateRequest(pemOrDER: Array(pem.utf8)), pem) { assertParseError($0) }
        }
        // Text after the END line is ignored, as OpenSSL's PEM reader ignores it; CRLF line ends read.
        let pem = "-----BEGIN NEW CERTIFICATE REQUEST-----\r\n\(body)\r\n-----END NEW CERTIFICATE REQUEST-----\r\ntrailing text\n"
        XCTAssertEqual(try UnverifiedCertificateRequest(pemOrDER: Array(pem.utf8)).verify()?.der, der)
        XCTAssertThrowsError(try UnverifiedCertificateRequest(pemOrDER: [UInt8](repeating: 0x30, count: 65537))) { assertParseError($0) }
    }

    /// A signature that does not verify with the request's own key is nil (`csr_signature_invalid`
    /// at the broker): a flipped bit in the signature or in the signed info, another key's
    /// signature, a signature algorithm that does not match the key.
    func testWrongSignatureIsRefused() throws {
        let key = try PrivateKey.generate()
        let der = try CSR.create(key: key, commonName: "agent").der
        let (info, algorithm, signature) = try parts(der)
        func request(_ info: [UInt8], _ algorithm: [UInt8], _ signature: [UInt8]) -> [UInt8] {
            DER.sequence([info, algorithm, DER.bitString(bytes: signature)])
        }
        XCTAssertEqual(request(info, algorithm, signature), der)
        var flipped = signature
        flipped[flipped.count - 2] ^= 0x01
        XCTAssertNil(try UnverifiedCertificateRequest(pemOrDER: request(info, algorithm, flipped)).verify())
        var subject = info
        let cn = try XCTUnwrap((0..<info.count).first { info[$0...].starts(with: Array("agent".utf8)) })
        subject[cn] = UInt8(ascii: "b")
        XCTAssertNil(try UnverifiedCertificateRequest(pemOrDER: request(subject, algorithm, signature)).verify())
        let other = try PrivateKey.generate().sign(info)
        XCTAssertNil(try UnverifiedCertificateRequest(pemOrDER: request(info, algorithm, other)).verify())
        let rsaSHA256 = DER.sequence([DER.objectIdentifier([1, 2, 840, 113549, 1, 1, 11]), [0x05, 0x00]])
        XCTAssertNil(try UnverifiedCertificateRequest(pemOrDER: request(info, rsaSHA256, signature)).verify())
        // An algorithm OpenSSL does not know goes to OpenSSL, which cannot verify it either.
        let unknown = DER.sequence([DER.objectIdentifier([1, 2, 3, 4])])
        XCTAssertNil(try? UnverifiedCertificateRequest(pemOrDER: request(info, unknown, signature)).verify())
    }

    /// Keys outside P-256/P-384/RSA (P-521, Ed25519) and a compressed P-256 point are not built
    /// here: OpenSSL parses and verifies them as before, so the broker reaches its key-type check
    /// (`csr_key_not_allowed`) exactly as it did.
    func testOtherKeysGoToOpenSSLAsBefore() throws {
        let dir = try temporaryDirectory()
        for (name, genpkey) in [("p521", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"]), ("ed25519", ["-algorithm", "ED25519"]),
                                ("p256c", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])] {
            var key = dir.appendingPathComponent("\(name).key").path
            _ = try openssl(["genpkey"] + genpkey + ["-out", key])
            if name == "p256c" {   // the point in compressed form
                _ = try openssl(["ec", "-in", key, "-conv_form", "compressed", "-out", key + ".c"])
                key += ".c"
            }
            let pem = try openssl(["req", "-new", "-key", key, "-subj", "/CN=\(name)"])
            let reference = try CSR(pemOrDER: Array(pem.utf8))
            let verified = try XCTUnwrap(try UnverifiedCertificateRequest(pemOrDER: Array(pem.utf8)).verify(), name)
            XCTAssertEqual(reference.signatureIsValid, true, name)
            XCTAssertTrue(verified.publicKey.isEqual(to: try reference.publicKey), name)
            XCTAssertEqual(try verified.publicKey.spkiDER, try reference.publicKey.spkiDER, name)
        }
    }

    /// `CertificateDER` reads what OpenSSL reads: the DER of a PEM certificate and an extension's value.
    func testCertificateDERFieldsMatchOpenSSL() throws {
        let now = Date()
        let ca = try CertificateAuthority.create(commonName: "test CA", key: try PrivateKey.generate(), notBefore: now.addingTimeInterval(-60),
                                                 notAfter: now.addingTimeInterval(3600))
        let value = DER.utf8("attestation")
        let cert = try ca.issue(publicKey: try PrivateKey.generate().publicKey,
                                profile: LeafProfile(uriSANs: ["spiffe://test/a"], notBefore: now, notAfter: now.addingTimeInterval(60), usage: .agent,
                                                     extensions: [("1.3.6.1.4.1.99999.1", value)]))
        let der = try CertificateDER.fromPEM(try cert.pem)
        XCTAssertEqual(der, try cert.der)
        XCTAssertEqual(try CertificateDER.extensionValue(der, oid: "1.3.6.1.4.1.99999.1"), cert.extensionValue(oid: "1.3.6.1.4.1.99999.1"))
        XCTAssertEqual(try CertificateDER.extensionValue(der, oid: "2.5.29.17"), cert.extensionValue(oid: "2.5.29.17"))
        XCTAssertNil(try CertificateDER.extensionValue(der, oid: "1.3.6.1.4.1.99999.2"))
        XCTAssertThrowsError(try CertificateDER.fromPEM("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
    }

    // MARK: helpers

    /// A P-256 request whose point is moved off the curve (one bit of y flipped, in the signed
    /// info) is never accepted, and reading it does not trap.
    func testAnOffCurvePointIsNeverAccepted() throws {
        let key = try PrivateKey.generate()
        let der = try CSR.create(key: key, commonName: "agent").der
        let point = try key.publicKey.spkiDER.suffix(65)   // 0x04 || x || y
        let at = try XCTUnwrap((0..<der.count).first { der[$0...].starts(with: point) })
        var moved = der
        moved[at + 64] ^= 0x01
        XCTAssertNil(try? UnverifiedCertificateRequest(pemOrDER: moved).verify())
    }

    /// RSA keys whose public exponent is 1 or even prove nothing with a signature: the broker
    /// refuses them (`csr_key_not_allowed`), whatever path read them.
    func testWeakRSAExponentsAreNotSound() throws {
        let n = [UInt8(0xC3)] + [UInt8](repeating: 0x5A, count: 254) + [0x01]
        XCTAssertTrue(try PublicKey(rsaModulus: n, exponent: [0x01, 0x00, 0x01]).hasSoundRSAExponent)
        XCTAssertTrue(try PublicKey(rsaModulus: n, exponent: [0x03]).hasSoundRSAExponent)
        XCTAssertFalse(try PublicKey(rsaModulus: n, exponent: [0x01]).hasSoundRSAExponent)
        XCTAssertFalse(try PublicKey(rsaModulus: n, exponent: [0x01, 0x00, 0x00]).hasSoundRSAExponent)
        XCTAssertTrue(try PrivateKey.generate().publicKey.hasSoundRSAExponent, "not an RSA key")
    }

    /// Armour lines start at a line's first byte, as OpenSSL reads them: an indented BEGIN line
    /// starts no block, so with an indented request before a plain one both parsers read the
    /// plain one; a request whose armour is only indented is refused.
    func testIndentedArmourIsNoBlock() throws {
        let a = try CSR.create(key: try PrivateKey.generate(), commonName: "a")
        let b = try CSR.create(key: try PrivateKey.generate(), commonName: "b")
        let indented = try a.pem.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n") + "\n"
        let both = Array(("-----BEGIN OTHER-----\nAAAA\n-----END OTHER-----\n" + indented + (try b.pem)).utf8)
        XCTAssertEqual(try UnverifiedCertificateRequest(pemOrDER: both).verify()?.der, try b.der)
        XCTAssertEqual(try CSR(pemOrDER: both).der, try b.der, "OpenSSL reads the same one")
        let onlyIndented = Array(("-----BEGIN OTHER-----\nAAAA\n-----END OTHER-----\n" + indented).utf8)
        XCTAssertThrowsError(try UnverifiedCertificateRequest(pemOrDER: onlyIndented)) { assertParseError($0) }
    }

    private func assertParseError(_ error: Error, line: UInt = #line) {
        let code = (error as? VouchError)?.code
        XCTAssertTrue(code == .invalidValue || code == .truncated, "\(error)", line: line)
    }

    /// CertificationRequestInfo (whole), signatureAlgorithm (whole) and the signature's bytes.
    private func parts(_ der: [UInt8]) throws -> ([UInt8], [UInt8], [UInt8]) {
        var outer = DER.Reader(der)
        var r = DER.Reader(try outer.read(DER.sequenceTag, "csr"))
        return (try r.element("info"), try r.element("algorithm"), try r.wholeByteBitString("signature"))
    }

    private func rsaFields(_ spki: [UInt8]) throws -> (n: [UInt8], e: [UInt8])? {
        var outer = DER.Reader(spki)
        var body = try outer.sequence("spki")
        _ = try body.sequence("algorithm")
        var key = DER.Reader(try body.wholeByteBitString("key"))
        var fields = try key.sequence("RSAPublicKey")
        return (try fields.read(DER.integerTag, "n"), try fields.read(DER.integerTag, "e"))
    }

    private func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-csr-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    private func openssl(_ args: [String], stdin: [UInt8]? = nil) throws -> String {
        String(decoding: try opensslOutput(args, stdin: stdin), as: UTF8.self)
    }

    private func opensslBytes(_ args: [String], stdin: [UInt8]? = nil) throws -> [UInt8] { try opensslOutput(args, stdin: stdin) }
}
