import Foundation
import XCTest
import VouchCore
import VouchCrypto
import VouchTEEWire
import VouchTestSupport

/// The SEV-SNP report parser and writer, and the VCEK extension reader, on the corpus's samples
/// and on bytes made to break each rule.
final class SNPReportTests: XCTestCase {
    func testEveryFixtureReportParsesAsTheManifestSays() throws {
        for sample in try SNPFixtures.samples() {
            let report = try SNPReport(bytes: sample.report)
            let m = sample.manifest
            XCTAssertEqual(Int(report.version), m["report_version"] as? Int, sample.dir)
            XCTAssertEqual("0x" + String(report.policy.raw, radix: 16), m["policy"] as? String, sample.dir)
            XCTAssertEqual(report.policy.debug, m["policy_debug_bit19"] as? Bool, sample.dir)
            XCTAssertEqual(report.signingKey, sample.signerType == "VLEK" ? .vlek : .vcek, sample.dir)
            let product: SNPProduct = (m["product"] as! String).hasPrefix("Genoa") ? .genoa : .milan
            let tcb = report.reportedTCB.components(for: product)
            let expected = m["reported_tcb"] as! [String: Int]
            XCTAssertEqual([Int(tcb.bootloader), Int(tcb.tee), Int(tcb.snp), Int(tcb.microcode)],
                           [expected["bl"]!, expected["tee"]!, expected["snp"]!, expected["ucode"]!], sample.dir)
            XCTAssertNil(tcb.fmc)
            if let prefix = m["report_data_hex_prefix"] as? String { XCTAssertTrue(Hex.encode(report.reportData).hasPrefix(prefix), sample.dir) }
            if let vmpl = m["vmpl"] as? Int { XCTAssertEqual(Int(report.vmpl), vmpl) }
            if report.version >= 3 {
                let cpuid = try XCTUnwrap(report.cpuid)
                XCTAssertEqual(SNPProduct(cpuidFamily: cpuid.family, model: cpuid.model), product, sample.dir)
            } else {
                XCTAssertNil(report.cpuid)
            }
            XCTAssertNil(report.launchMitigationVector)
            XCTAssertEqual(report.signatureAlgorithm, SNPReport.ecdsaP384SHA384)
            // Every byte is read or checked to be zero: writing the parsed report gives it back.
            XCTAssertEqual(try report.serialized(), sample.report, sample.dir)
            XCTAssertEqual(try report.signedBytes(), Array(sample.report.prefix(0x2A0)))
            XCTAssertEqual(report.signatureR, Array(sample.report[0x2A0..<0x2E8]))
            XCTAssertEqual(report.signatureS, Array(sample.report[0x2E8..<0x330]))
        }
    }

    func testFieldValuesOfTwoSamples() throws {
        let vlek = try SNPReport(bytes: SNPFixtures.bytes("milan-vlek-trustee/report.bin"))
        XCTAssertEqual(vlek.vmpl, 1)
        XCTAssertTrue(vlek.chipID.allSatisfy { $0 == 0 })
        XCTAssertEqual(vlek.cpuid, SNPCPUID(family: 0x19, model: 0x01, stepping: 1))
        XCTAssertEqual(vlek.committedVersion, SNPFirmwareVersion(major: 1, minor: 55, build: 29))
        let genoa = try SNPReport(bytes: SNPFixtures.bytes("genoa-azure-cvm/report.bin"))
        XCTAssertEqual(genoa.cpuid, SNPCPUID(family: 0x19, model: 0x11, stepping: 1))
        XCTAssertEqual(genoa.platformInfo.raw, 0x24)
        XCTAssertTrue(genoa.platformInfo.eccEnabled)
        XCTAssertTrue(genoa.platformInfo.aliasCheckComplete)
        XCTAssertFalse(genoa.platformInfo.smtEnabled)
        XCTAssertEqual(genoa.policy.abiMinor, 0x1f)
        XCTAssertTrue(genoa.policy.smtAllowed)
        XCTAssertFalse(genoa.policy.migrateMA)
    }

    func testTruncationAtEveryLengthAndExtensionAreRefused() throws {
        let bytes = try SNPFixtures.bytes("milan-virtee/report.bin")
        for n in 0..<bytes.count {
            XCTAssertThrowsError(try SNPReport(bytes: Array(bytes.prefix(n)))) { e in
                XCTAssertEqual((e as? VouchError)?.code, .teeEvidenceMalformed, "length \(n)")
            }
        }
        XCTAssertThrowsError(try SNPReport(bytes: bytes + [0])) { XCTAssertEqual(($0 as? VouchError)?.code, .teeEvidenceMalformed) }
    }

    func testVersionsAreReadByTheirLayout() throws {
        var bytes = try SNPFixtures.bytes("genoa-azure-cvm/report.bin")
        for version: UInt8 in [0, 1, 6, 0xff] {
            bytes[0] = version
            XCTAssertThrowsError(try SNPReport(bytes: bytes), "version \(version)") { XCTAssertEqual(($0 as? VouchError)?.context["field"], "VERSION") }
        }
        bytes[0] = 4
        let v4 = try SNPReport(bytes: bytes)
        XCTAssertEqual(v4.cpuid?.model, 0x11)
        XCTAssertNil(v4.launchMitigationVector)
        bytes[0] = 5
        bytes[0x1F8] = 0x12
        bytes[0x200] = 0x34
        let v5 = try SNPReport(bytes: bytes)
        XCTAssertEqual(v5.launchMitigationVector, 0x12)
        XCTAssertEqual(v5.currentMitigationVector, 0x34)
        XCTAssertEqual(try v5.serialized(), bytes)
        bytes[0] = 4
        XCTAssertThrowsError(try SNPReport(bytes: bytes), "a version 4 report has no mitigation vectors") {
            XCTAssertEqual(($0 as? VouchError)?.context["field"], "reserved at 0x1F8")
        }
        // Version 2 has no CPUID: the bytes are reserved.
        var v2 = try SNPFixtures.bytes("milan-virtee/report.bin")
        v2[0x189] = 1
        XCTAssertThrowsError(try SNPReport(bytes: v2)) { XCTAssertEqual(($0 as? VouchError)?.context["field"], "reserved at 0x188") }
    }

    func testReservedFieldsAndBitsAreRefused() throws {
        let original = try SNPFixtures.bytes("milan-trustee/report.bin")
        let cases: [(Int, UInt8, String)] = [
            (0x0A, 0x02, "POLICY"),         // bit 17 (must be one) cleared
            (0x0B, 0x04, "POLICY"),         // bit 26
            (0x0F, 0x80, "POLICY"),         // bit 63
            (0x48, 0x08, "SIGNING_KEY"),    // SIGNING_KEY 2 (reserved)
            (0x48, 0x20, "SIGNING_KEY"),    // bit 5
            (0x4B, 0x01, "SIGNING_KEY"),
            (0x4D, 0x01, "reserved at 0x4C"),
            (0x19F, 0x01, "reserved at 0x188"),
            (0x1EB, 0x01, "reserved at 0x1EB"),
            (0x1EF, 0x01, "reserved at 0x1EF"),
            (0x29F, 0x01, "reserved at 0x1F8"),
            (0x330, 0x01, "SIGNATURE"),
            (0x49F, 0x01, "SIGNATURE"),
        ]
        for (offset, mask, field) in cases {
            var bytes = original
            bytes[offset] ^= mask
            XCTAssertThrowsError(try SNPReport(bytes: bytes), "0x\(String(offset, radix: 16))") { e in
                XCTAssertEqual((e as? VouchError)?.code, .teeEvidenceMalformed)
                XCTAssertEqual((e as? VouchError)?.context["field"], field, "0x\(String(offset, radix: 16))")
            }
        }
        // Bits the table names parse: POLICY 25 (PAGE_SWAP_DISABLE), SIGNING_KEY 7 (none), PLATFORM_INFO 63.
        var bytes = original
        bytes[0x0B] |= 0x02
        XCTAssertTrue(try SNPReport(bytes: bytes).policy.pageSwapDisabled)
        bytes = original
        bytes[0x48] |= 0x1C
        XCTAssertEqual(try SNPReport(bytes: bytes).signingKey, SNPSigningKey.none)
        bytes = original
        bytes[0x47] = 0x80
        XCTAssertEqual(try SNPReport(bytes: bytes).platformInfo.raw >> 63, 1)
        // With another signature algorithm the rest of SIGNATURE is not checked.
        bytes = original
        bytes[0x34] = 2
        bytes[0x400] = 1
        XCTAssertEqual(try SNPReport(bytes: bytes).signatureAlgorithm, 2)
    }

    func testTCBLayoutsPerProduct() {
        let tcb = SNPTCBVersion(raw: 0x0807_0605_0403_0201)
        XCTAssertEqual(tcb.components(for: .milan), SNPTCBComponents(bootloader: 1, tee: 2, snp: 7, microcode: 8))
        XCTAssertEqual(tcb.components(for: .genoa), SNPTCBComponents(bootloader: 1, tee: 2, snp: 7, microcode: 8))
        XCTAssertEqual(tcb.components(for: .turin), SNPTCBComponents(bootloader: 2, tee: 3, snp: 4, microcode: 8, fmc: 1))
        let turin = SNPTCBComponents(bootloader: 2, tee: 3, snp: 4, microcode: 8, fmc: 1)
        XCTAssertEqual(SNPTCBVersion(turin, product: .turin).raw, 0x0800_0000_0403_0201)
        XCTAssertEqual(SNPTCBVersion(SNPTCBComponents(bootloader: 3, tee: 0, snp: 8, microcode: 115), product: .milan).raw, 0x7308_0000_0000_0003)
    }

    func testProductLines() {
        XCTAssertEqual(SNPProduct(cpuidFamily: 0x19, model: 0x01), .milan)
        XCTAssertEqual(SNPProduct(cpuidFamily: 0x19, model: 0x11), .genoa)
        XCTAssertEqual(SNPProduct(cpuidFamily: 0x19, model: 0xA0), .genoa)
        XCTAssertEqual(SNPProduct(cpuidFamily: 0x1A, model: 0x02), .turin)
        XCTAssertNil(SNPProduct(cpuidFamily: 0x17, model: 0x31))
        XCTAssertNil(SNPProduct(cpuidFamily: 0x19, model: 0x21))
        XCTAssertEqual(SNPProduct(productName: "Milan-B0"), .milan)
        XCTAssertEqual(SNPProduct(productName: "Genoa"), .genoa)
        XCTAssertNil(SNPProduct(productName: "milan"))
        XCTAssertNil(SNPProduct(productName: "Rome-B0"))
    }

    func testWriterRoundTripsEveryVersion() throws {
        for version: UInt32 in 2...5 {
            var r = SNPReport(version: version)
            r.guestSVN = 7
            r.policy = SNPGuestPolicy.with([SNPGuestPolicy.debugBit, 25], abiMajor: 1, abiMinor: 55)
            r.vmpl = 2
            r.signingKey = .vlek
            r.authorKeyEnabled = true
            r.reportData = (0..<64).map { UInt8($0) }
            r.measurement = [UInt8](repeating: 0xAB, count: 48)
            if version >= 3 { r.cpuid = SNPCPUID(family: 0x1A, model: 2, stepping: 0) }
            if version >= 5 { r.launchMitigationVector = 3; r.currentMitigationVector = 7 }
            try r.setSignature(r: [0, 0, 1, 2, 3], s: [0xff])
            let bytes = try r.serialized()
            XCTAssertEqual(bytes.count, 1184)
            let back = try SNPReport(bytes: bytes)
            XCTAssertEqual(back, r, "version \(version)")
            XCTAssertEqual(back.signatureR.prefix(3), [3, 2, 1])
            XCTAssertEqual(back.signatureBigEndian.r, [1, 2, 3])
            XCTAssertEqual(back.signatureBigEndian.s, [0xff])
            XCTAssertTrue(back.policy.debug && back.policy.pageSwapDisabled)
        }
        var wrong = SNPReport(version: 2)
        wrong.cpuid = SNPCPUID(family: 0x19, model: 1, stepping: 0)
        XCTAssertThrowsError(try wrong.serialized()) { XCTAssertEqual(($0 as? VouchError)?.code, .teeEvidenceMalformed) }
        var short = SNPReport(version: 3)
        short.measurement = [1]
        XCTAssertThrowsError(try short.serialized()) { XCTAssertEqual(($0 as? VouchError)?.context["field"], "MEASUREMENT") }
        XCTAssertThrowsError(try short.setSignature(r: [UInt8](repeating: 1, count: 73), s: [1]))
    }

    // MARK: VCEK extensions

    func testFixtureEndorsementExtensions() throws {
        func read(_ path: String) throws -> SNPEndorsementExtensions {
            let bytes = try SNPFixtures.bytes(path)
            let cert = bytes.starts(with: Array("-----".utf8)) ? try Certificate(pem: String(decoding: bytes, as: UTF8.self)) : try Certificate(der: bytes)
            return try SNPEndorsementExtensions(extensionValue: cert.extensionValue(oid:))
        }
        let gosev = try read("milan-gosevguest/vcek.der")
        XCTAssertEqual(gosev.productName, "Milan-B0")
        XCTAssertEqual(gosev.components, SNPTCBComponents(bootloader: 2, tee: 0, snp: 5, microcode: 68))
        XCTAssertEqual(gosev.hwID, try SNPReport(bytes: SNPFixtures.bytes("milan-gosevguest/report.bin")).chipID)
        XCTAssertEqual(gosev.structVersion, 0)

        let vlek = try read("milan-vlek-trustee/vlek.der")
        XCTAssertEqual(vlek.productName, "Milan")
        XCTAssertNil(vlek.hwID)
        XCTAssertEqual(vlek.cspID, "CN=cc-us-east-2.amazonaws.com")
        XCTAssertEqual(vlek.components, SNPTCBComponents(bootloader: 4, tee: 0, snp: 24, microcode: 217))

        let turin = try read("turin-chain-only/vcek.der")
        XCTAssertEqual(turin.productName, "Turin")
        XCTAssertEqual(turin.hwID?.count, 8)
        XCTAssertEqual(turin.fmcSPL, 0)
        XCTAssertEqual(turin.microcodeSPL, 9)

        let genoa = try read("genoa-azure-cvm/vcek.pem")
        XCTAssertEqual(genoa.components, SNPTCBComponents(bootloader: 10, tee: 0, snp: 23, microcode: 84))

        // The corpus's edited VCEKs: the hwID raw and as an OCTET STRING read the same.
        let raw = try read("negative/vcek-modified-hwid-raw.der")
        let wrapped = try read("negative/vcek-modified-hwid-octetstring.der")
        XCTAssertEqual(raw.hwID, (0..<64).map { UInt8($0) })
        XCTAssertEqual(wrapped.hwID, (0..<64).map { UInt8($0) })
    }

    func testMalformedExtensionValuesAreRefused() {
        let bad: [(String, [UInt8])] = [
            (SNPEndorsementExtensions.bootloaderSPLOID, [0x02, 0x02, 0x00, 0x05]),   // not minimal
            (SNPEndorsementExtensions.bootloaderSPLOID, [0x02, 0x01, 0x80]),         // negative
            (SNPEndorsementExtensions.snpSPLOID, [0x02, 0x02, 0x01, 0x00]),          // 256
            (SNPEndorsementExtensions.teeSPLOID, [0x02, 0x01, 0x01, 0x00]),          // trailing byte
            (SNPEndorsementExtensions.teeSPLOID, [0x04, 0x01, 0x01]),                // not an INTEGER
            (SNPEndorsementExtensions.microcodeSPLOID, [0x02, 0x00]),                // empty
            (SNPEndorsementExtensions.fmcSPLOID, []),
            (SNPEndorsementExtensions.productNameOID, [0x0c, 0x05] + Array("Milan".utf8)),   // UTF8String
            (SNPEndorsementExtensions.productNameOID, [0x16, 0x02, 0x4d, 0x0a]),             // control character
            (SNPEndorsementExtensions.productNameOID, [0x16, 0x01, 0x4d, 0x00]),             // trailing byte
            (SNPEndorsementExtensions.hwIDOID, [UInt8](repeating: 1, count: 65)),
            (SNPEndorsementExtensions.hwIDOID, [0x04, 0x3f] + [UInt8](repeating: 1, count: 64)),
            (SNPEndorsementExtensions.hwIDOID, [0x04, 0x08] + [UInt8](repeating: 1, count: 7)),
            (SNPEndorsementExtensions.hwIDOID, []),
        ]
        for (oid, value) in bad {
            XCTAssertThrowsError(try SNPEndorsementExtensions(extensionValue: { $0 == oid ? value : nil }), "\(oid) \(Hex.encode(value))") {
                XCTAssertEqual(($0 as? VouchError)?.code, .teeEvidenceMalformed)
            }
        }
        let ok = try? SNPEndorsementExtensions(extensionValue: {
            [SNPEndorsementExtensions.microcodeSPLOID: [0x02, 0x02, 0x00, 0xd9], SNPEndorsementExtensions.hwIDOID: [0x04, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]][$0]
        })
        XCTAssertEqual(ok?.microcodeSPL, 217)
        XCTAssertEqual(ok?.hwID, [1, 2, 3, 4, 5, 6, 7, 8])
    }

    func testExtensionsWriteWhatTheyRead() throws {
        var e = SNPEndorsementExtensions()
        e.structVersion = 1
        e.productName = "Turin"
        e.fmcSPL = 4
        e.bootloaderSPL = 200
        e.teeSPL = 0
        e.snpSPL = 3
        e.microcodeSPL = 255
        e.hwID = [1, 2, 3, 4, 5, 6, 7, 8]
        for wrapped in [false, true] {
            let table = Dictionary(uniqueKeysWithValues: e.encoded(hwIDAsOctetString: wrapped).map { ($0.oid, $0.der) })
            XCTAssertEqual(try SNPEndorsementExtensions(extensionValue: { table[$0] }), e)
        }
    }
}
