import Foundation
import XCTest
import VouchAPI
import VouchAttestation
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchTPM
import VouchTPMWire

/// The Azure attester's vTPM path (`AzureVTPMEvidenceSource`) against swtpm dressed as an Azure
/// vTPM with tpm2-tools: an RSA AK persisted at 0x81000003 and an NV index 0x01400001 holding a
/// stand-in for the paravisor's report (swtpm has no paravisor to refresh it; libtpms caps an NV
/// index at 2048 bytes, under a real HCL report's 2600). The attester writes the request's user
/// data into 0x01400002 (defining it, and again over an existing one), reads 0x01400001 whole in
/// chunks, and quotes with the persisted AK: the quote verifies with that AK as an RSASSA SHA-256
/// key, with the binding as qualifying data.
final class AzureVTPMDeviceTests: XCTestCase {
    func testTheAttesterWritesTheUserDataReadsTheReportAndQuotesWithThePersistedAK() throws {
        let tpm = try SwTPM()
        let dir = try TestEnv.tempDir("vouch-azure-vtpm")
        defer { try? FileManager.default.removeItem(at: dir) }
        let ctx = dir.appendingPathComponent("ak.ctx").path, pub = dir.appendingPathComponent("ak.pub").path
        for (tool, args) in [("tpm2_createprimary", ["-C", "e", "-G", "rsa2048:rsassa-sha256:null", "-a",
                                                     "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign", "-c", ctx]),
                             ("tpm2_evictcontrol", ["-C", "o", "-c", ctx, "0x81000003"]),
                             ("tpm2_readpublic", ["-c", "0x81000003", "-o", pub])] {
            let r = try tpm.tools(tool, args)
            XCTAssertEqual(r.status, 0, "\(tool): \(r.stderr)")
        }
        let stand = (0..<1500).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let standFile = dir.appendingPathComponent("hcl.bin")
        try Data(stand).write(to: standFile)
        for (tool, args) in [("tpm2_nvdefine", ["-C", "o", "-s", "1500", "-a", "ownerread|ownerwrite|authread|authwrite", "0x01400001"]),
                             ("tpm2_nvwrite", ["-C", "o", "-i", standFile.path, "0x01400001"])] {
            let r = try tpm.tools(tool, args)
            XCTAssertEqual(r.status, 0, "\(tool): \(r.stderr)")
        }

        let vcek = Array("a VCEK".utf8)
        let source = AzureVTPMEvidenceSource(tcti: tpm.tcti, endorsement: vcek, eventLogPath: nil, modelLogPath: nil)
        for binding in [Crypto.sha256([1]), Crypto.sha256([2])] {
            let fields = try source.evidence(binding: binding, pcrSelection: nil).fields
            XCTAssertEqual(try Base64.decode(XCTUnwrap(fields.report), field: "report"), stand, "0x01400001 read whole")
            XCTAssertEqual(try Base64.decode(XCTUnwrap(fields.endorsement), field: "endorsement"), vcek)
            let out = dir.appendingPathComponent("user-data.bin")
            let read = try tpm.tools("tpm2_nvread", ["-C", "o", "-s", "64", "-o", out.path, "0x01400002"])
            XCTAssertEqual(read.status, 0, read.stderr)
            XCTAssertEqual(Array(try Data(contentsOf: out)), EnrollmentBinding.teeReportData(binding: binding), "the user data the next HCL report binds")
            let quote = try XCTUnwrap(fields.vtpmQuote)
            let ak = try TPMTPublic(tpm2bPublic: Array(try Data(contentsOf: URL(fileURLWithPath: pub))))
            let key = try AttestationKey(publicKey: try PublicKey(tpmPublic: ak), scheme: .rsassa, hash: .sha256)
            guard case let .verified(verified) = QuoteVerifier.verify(attest: try Base64.decode(quote.attest, field: "attest"),
                                                                      signature: try Base64.decode(quote.signature, field: "signature"), ak: key,
                                                                      expectedQualifyingData: binding, pcrs: try PCRValues(hexMap: quote.pcrs, field: "pcrs")) else {
                return XCTFail("the vTPM quote does not verify with the persisted AK")
            }
            XCTAssertEqual(verified.selection, .azureRegistration)
        }
    }
}
