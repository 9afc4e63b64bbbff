import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTPM
import VouchTPMWire

/// Quotes made by our TPM code path, checked by tpm2-tools' own verifier and by ours.
final class InteropTests: XCTestCase {
    func testOurQuotesVerifyWithTPM2Checkquote() throws {
        let tpm = try SwTPM(banks: SwTPM.allBanks)
        let dir = tpm.dir
        for kind in KeyTemplates.AKKind.allCases {
          for bank in HashAlg.allCases {
            let device = try TPMDevice(tcti: tpm.tcti)
            let (ak, akBytes) = try device.createAttestationKey(kind)
            let akPublic = try TPMTPublic(tpm2bPublic: akBytes)
            let nonce = try Crypto.randomBytes(32)
            let selection = PCRSelection(banks: [PCRBankSelection(hash: bank, pcrs: Array(0...23))])
            let q = try device.quote(ak: ak, qualifyingData: nonce, selection: selection)
            let pcrs = try device.readPCRs(selection)
            device.close()

            let files = (ak: dir.appendingPathComponent("ak.pem"), msg: dir.appendingPathComponent("q.msg"),
                         sig: dir.appendingPathComponent("q.sig"), pcrs: dir.appendingPathComponent("q.pcrs"))
            try PublicKey(tpmPublic: akPublic).pem.write(to: files.ak, atomically: true, encoding: .utf8)
            try Data(q.attest).write(to: files.msg)
            try Data(q.signature).write(to: files.sig)
            try Data(ToolsPCRFile.write(selection: selection, values: pcrs)).write(to: files.pcrs)
            func checkquote(nonce: [UInt8]) throws -> Int32 {
                try TestEnv.run("tpm2_checkquote", ["-u", files.ak.path, "-m", files.msg.path, "-s", files.sig.path,
                                                    "-f", files.pcrs.path, "-g", "sha256", "-q", Hex.encode(nonce)]).status   // the AK signs with SHA-256
            }
            XCTAssertEqual(try checkquote(nonce: nonce), 0, "\(kind) \(bank): tpm2_checkquote rejects our genuine quote")
            guard case .verified = QuoteVerifier.verify(attest: q.attest, signature: q.signature, akPublic: akPublic,
                                                        expectedQualifyingData: nonce, pcrs: pcrs) else {
                return XCTFail("\(kind) \(bank): our verifier rejects a genuine quote")
            }

            // Both refuse the same forgeries.
            XCTAssertNotEqual(try checkquote(nonce: [UInt8](repeating: 7, count: 32)), 0, "\(kind) \(bank): wrong nonce accepted by tpm2_checkquote")
            var badSig = q.signature
            badSig[badSig.count - 5] ^= 0x10
            try Data(badSig).write(to: files.sig)
            XCTAssertNotEqual(try checkquote(nonce: nonce), 0, "\(kind) \(bank): forged signature accepted by tpm2_checkquote")
            if case .verified = QuoteVerifier.verify(attest: q.attest, signature: badSig, akPublic: akPublic, expectedQualifyingData: nonce, pcrs: pcrs) {
                XCTFail("\(kind) \(bank): forged signature accepted by our verifier")
            }
            try Data(q.signature).write(to: files.sig)
            var forged = pcrs
            forged.values[bank]![5] = [UInt8](repeating: 0x55, count: bank.digestSize)
            try Data(ToolsPCRFile.write(selection: selection, values: forged)).write(to: files.pcrs)
            XCTAssertNotEqual(try checkquote(nonce: nonce), 0, "\(kind) \(bank): forged PCR accepted by tpm2_checkquote")
            if case .verified = QuoteVerifier.verify(attest: q.attest, signature: q.signature, akPublic: akPublic, expectedQualifyingData: nonce, pcrs: forged) {
                XCTFail("\(kind) \(bank): forged PCR accepted by our verifier")
            }
          }
        }
    }
}
