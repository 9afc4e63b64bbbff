import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchTPMWire

final class KeyTests: XCTestCase {
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
