import Foundation
import Synchronization
import XCTest
import VouchCore
import VouchCrypto
import VouchTPMWire

final class KeyTests: XCTestCase {
    /// ecdsaSignatureDER writes what OpenSSL writes (i2d_ECDSA_SIG): OpenSSL's own signatures,
    /// taken apart and put together again, come back byte for byte; integers are minimal (leading
    /// zeros dropped, a zero added before a high bit, zero as one zero byte); long forms past 127.
    func testECDSASignatureDERIsOpenSSLsEncoding() throws {
        for type in [PrivateKey.KeyType.p256, .p384, .p521] {
            let key = try PrivateKey.generate(type)
            for i in 0..<32 {
                let der = try key.sign(Array("message \(i)".utf8))
                let (r, s) = try ecdsaSignatureComponents(der: der)
                XCTAssertEqual(try ecdsaSignatureDER(r: r, s: s), der, "\(type)")
                XCTAssertEqual(try ecdsaSignatureDER(r: [0, 0] + r, s: [0] + s), der, "\(type): leading zeros")
                XCTAssertTrue(try key.publicKey.verify(message: Array("message \(i)".utf8), signature: try ecdsaSignatureDER(r: r, s: s), scheme: .ecdsa, hash: .sha256))
            }
        }
        XCTAssertEqual(try ecdsaSignatureDER(r: [0x00, 0x01], s: [0x80]), [0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x02, 0x00, 0x80])
        XCTAssertEqual(try ecdsaSignatureDER(r: [], s: [0, 0]), [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00])
        let big = [UInt8](repeating: 0xff, count: 66)
        let long = try ecdsaSignatureDER(r: big, s: big)
        XCTAssertEqual(Array(long.prefix(6)), [0x30, 0x81, 138, 0x02, 67, 0x00])
        XCTAssertEqual(long.count, 141)
        XCTAssertTrue(try ecdsaSignatureComponents(der: long) == (big, big))
    }

    /// A TPM public area built from a software key must describe the same key.
    func testPublicKeyFromTPMPublicMatchesSoftwareKey() throws {
        for bits in [2048, 3072] {
            let r = try run("/usr/bin/openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:\(bits)"])
            let priv = try PrivateKey(pem: r)
            let pubPEM = try priv.publicKey.pem
            let modulusHex = try run("/usr/bin/openssl", ["rsa", "-pubin", "-noout", "-modulus"], stdin: pubPEM)
                .replacingOccurrences(of: "Modulus=", with: "").trimmingCharacters(in: .whitespacesAndNewlines)
            var w = ByteWriter()
            w.u16(TPMAlg.rsa.rawValue); w.u16(TPMAlg.sha256.rawValue); w.u32(KeyTemplates.akAttributes.rawValue); w.sized([])
            w.u16(TPMAlg.null.rawValue); w.u16(TPMAlg.rsassa.rawValue); w.u16(TPMAlg.sha256.rawValue); w.u16(UInt16(bits)); w.u32(0)
            w.sized(try Hex.decode(modulusHex))
            var reader = ByteReader(w.bytes)
            let tpmPublic = try TPMTPublic(from: &reader)
            XCTAssertTrue(try PublicKey(tpmPublic: tpmPublic).isEqual(to: priv.publicKey))
        }
    }

    /// Verification reuses initialised contexts per key: a rejected signature must not leave
    /// one in a state that changes the next answer, on one thread or many, for RSA and EC.
    func testPooledVerificationAnswersStayExactAcrossThreads() throws {
        let rsa = try PrivateKey(pem: try run("/usr/bin/openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]))
        for (key, scheme) in [(rsa, SignatureScheme.rsassa), (try PrivateKey.generate(.p256), .ecdsa)] {
            let message = Array("quote body".utf8)
            let good = try key.sign(message)
            var flipped = good
            flipped[flipped.count / 2] ^= 0x01
            let bad = flipped
            let pub = try key.publicKey
            for hash in [HashAlg.sha256, .sha384] {   // a second (scheme, hash) slot on the same key
                XCTAssertEqual(pub.verify(message: message, signature: good, scheme: scheme, hash: hash), hash == .sha256)
            }
            let wrongScheme: SignatureScheme = scheme == .ecdsa ? .rsassa : .ecdsa
            XCTAssertFalse(pub.verify(message: message, signature: good, scheme: wrongScheme, hash: .sha256))
            let mismatches = Mutex(0)
            DispatchQueue.concurrentPerform(iterations: 8) { i in
                for j in 0..<50 {
                    let useGood = (i + j) % 3 != 0
                    let msg = j % 7 == 0 ? Array("another body".utf8) : message
                    let expected = useGood && msg == message
                    if pub.verify(message: msg, signature: useGood ? good : bad, scheme: scheme, hash: .sha256) != expected {
                        mismatches.withLock { $0 += 1 }
                    }
                }
            }
            XCTAssertEqual(mismatches.withLock { $0 }, 0, "\(scheme)")
            XCTAssertTrue(pub.verify(message: message, signature: good, scheme: scheme, hash: .sha256))
        }
    }

    /// Certificates carry the subject key exactly as OpenSSL encodes it (the SPKI fields are set
    /// from the key's parameters, not through X509_set_pubkey), for every agent key type.
    func testIssuedCertificateCarriesTheKeysExactSubjectPublicKeyInfo() throws {
        let now = Date()
        let ca = try CertificateAuthority.create(commonName: "test CA", key: try PrivateKey.generate(), notBefore: now, notAfter: now.addingTimeInterval(3600))
        var keys = [try PrivateKey.generate(.p256), try PrivateKey.generate(.p384)]
        for bits in [2048, 3072] {
            keys.append(try PrivateKey(pem: try run("/usr/bin/openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:\(bits)"])))
        }
        for key in keys {
            let spki = try key.publicKey.spkiDER
            let cert = try ca.issue(publicKey: try key.publicKey, profile: LeafProfile(uriSANs: ["spiffe://t/a"],
                                                                                      notBefore: now, notAfter: now.addingTimeInterval(600), usage: .agent))
            XCTAssertEqual(try cert.publicKey.spkiDER, spki)
            let der = try cert.der
            XCTAssertTrue(der.indices.contains { i in der[i...].starts(with: spki) }, "the SPKI bytes appear as they are in the DER")
            let text = try run("/usr/bin/openssl", ["x509", "-noout", "-pubkey"], stdin: try cert.pem)
            XCTAssertEqual(text, try key.publicKey.pem)
        }
    }

    private func run(_ exe: String, _ args: [String], stdin: String? = nil) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        let inPipe = Pipe()
        p.standardInput = inPipe
        try p.run()
        if let stdin { inPipe.fileHandleForWriting.write(Data(stdin.utf8)) }
        try inPipe.fileHandleForWriting.close()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
