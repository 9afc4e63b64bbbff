import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEESim
import VouchTEEWire
import VouchTPMWire
import VouchTestSupport

/// The software SEV-SNP platform: its reports verify with its own roots and with no one else's,
/// and the reports and endorsements it can make on purpose wrong are refused with the right code.
final class SoftwareSNPTests: XCTestCase {
    func testASoftwareReportVerifiesWithItsRootsAndNotWithAMDs() throws {
        let sim = SNPSim.milan
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("snp-sim-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data(sim.rootsPEM.utf8).write(to: dir.appendingPathComponent("sim_milan.pem"))
        XCTAssertThrowsError(try SNPTrustStore(directory: dir, pinning: .amd)) { XCTAssertEqual(($0 as? VouchError)?.code, .config) }
        let own = SNPVerifier(trust: try SNPTrustStore(directory: dir, pinning: .asLoaded))

        let nonce = try Crypto.randomBytes(32)
        let reportData = try XCTUnwrap(SNPPolicy.reportData(nonce: nonce))
        let report = try sim.sign(sim.report(reportData: reportData))
        var policy = SNPPolicy()
        policy.reportData = reportData
        let evidence = SNPEvidence(report: report, endorsementKey: Array(try sim.vcek.pem.utf8))
        guard case let .verified(claims, _) = own.verify(evidence, at: SNPFixtures.now, policy: policy) else {
            return XCTFail("\(own.verify(evidence, at: SNPFixtures.now, policy: policy).violations)")
        }
        XCTAssertEqual(claims.product, .milan)
        XCTAssertEqual(claims.chipId, Hex.encode(sim.chipID))
        XCTAssertEqual(claims.endorsement.productName, "Milan-B0")
        XCTAssertEqual(claims.reportData, Hex.encode(reportData))

        let amd = SNPVerifier(trust: try SNPFixtures.amdStore())
        XCTAssertEqual(amd.verify(evidence, at: SNPFixtures.now).codes, ["snp_endorsement_untrusted"])
        // Nor does another software platform's store trust it.
        let other = try SoftwareSNP(product: .milan)
        XCTAssertEqual(try SNPSim.verifier([other]).verify(evidence, at: SNPFixtures.now).codes, ["snp_endorsement_untrusted"])
    }

    func testEveryProductVersionAndSignerVerifies() throws {
        let verifier = try SNPSim.verifier()
        for sim in [SNPSim.milan, SNPSim.genoa, SNPSim.turin] {
            for version: UInt32 in (sim.product == .milan ? [2, 3, 4, 5] : [3, 5]) {
                for signer in [SNPSigningKey.vcek, .vlek] {
                    let report = try sim.sign(sim.report(version: version, signer: signer))
                    let cert = signer == .vlek ? sim.vlek : sim.vcek
                    let result = verifier.verify(SNPEvidence(report: report, endorsementKey: try cert.der), at: SNPFixtures.now)
                    guard case let .verified(claims, _) = result else { XCTFail("\(sim.product) v\(version) \(signer): \(result.violations)"); continue }
                    XCTAssertEqual(claims.product, sim.product)
                    XCTAssertEqual(claims.signer, signer == .vlek ? "vlek" : "vcek")
                    XCTAssertEqual(claims.tcb.reported.fmc, sim.product == .turin ? 4 : nil)
                    XCTAssertEqual(claims.tcb.reported.microcode, sim.tcb.microcode)
                }
            }
        }
    }

    /// A verifier reuses a verified endorsement (chain, validity, CRL) for the same bytes, but
    /// only inside the window it holds in: past the VLEK's notAfter, or past the CRL's nextUpdate,
    /// the same verifier refuses exactly as a fresh one does.
    func testCachedEndorsementsHoldOnlyInTheirWindow() throws {
        let vlek = try SNPFixtures.sample("milan-vlek-trustee")
        let verifier = SNPVerifier(trust: try SNPFixtures.amdStore())
        let evidence = SNPEvidence(report: vlek.report, endorsementKey: vlek.signer)
        XCTAssertTrue(verifier.verify(evidence, at: SNPFixtures.now).isVerified)
        XCTAssertTrue(verifier.verify(evidence, at: SNPFixtures.now).isVerified)
        XCTAssertEqual(verifier.verify(evidence, at: Date(timeIntervalSince1970: 1_767_225_600)).codes, ["snp_certificate_expired"])

        let sim = SNPSim.genoa
        let simVerifier = try SNPSim.verifier([sim])
        let report = try sim.sign(sim.report())
        let day: TimeInterval = 86400
        let crl = try sim.crl(revoking: [], thisUpdate: SNPFixtures.now - day, nextUpdate: SNPFixtures.now + day)
        let withCRL = SNPEvidence(report: report, endorsementKey: try sim.vcek.der, crl: crl)
        XCTAssertTrue(simVerifier.verify(withCRL, at: SNPFixtures.now).isVerified)
        XCTAssertEqual(simVerifier.verify(withCRL, at: SNPFixtures.now + day).codes, ["snp_crl_invalid"], "at nextUpdate the CRL is stale")
        XCTAssertEqual(simVerifier.verify(withCRL, at: SNPFixtures.now - 2 * day).codes, ["snp_crl_invalid"], "before thisUpdate")
    }

    func testRevocationListsOfTheARK() throws {
        let sim = SNPSim.genoa
        let verifier = try SNPSim.verifier([sim])
        let report = try sim.sign(sim.report())
        let day: TimeInterval = 86400
        func verify(_ crl: [UInt8]) -> TEEVerification<SNPClaims> {
            verifier.verify(SNPEvidence(report: report, endorsementKey: try! sim.vcek.der, crl: crl), at: SNPFixtures.now)
        }
        let current = try sim.crl(revoking: [], thisUpdate: SNPFixtures.now - day, nextUpdate: SNPFixtures.now + day)
        guard case let .verified(_, warnings) = verify(current) else { return XCTFail() }
        XCTAssertEqual(warnings, [], "a checked CRL leaves no revocation warning")
        // PEM too.
        let pem = "-----BEGIN X509 CRL-----\n\(Base64.encode(current))\n-----END X509 CRL-----\n"
        XCTAssertTrue(verify(Array(pem.utf8)).isVerified)
        // The ASK revoked; the ASVK revoked does not touch a VCEK report.
        XCTAssertEqual(verify(try sim.crl(revoking: [sim.ask], thisUpdate: SNPFixtures.now - day, nextUpdate: SNPFixtures.now + day)).codes,
                       ["snp_certificate_revoked"])
        XCTAssertTrue(verify(try sim.crl(revoking: [sim.asvk], thisUpdate: SNPFixtures.now - day, nextUpdate: SNPFixtures.now + day)).isVerified)
        let vlekReport = try sim.sign(sim.report(signer: .vlek))
        let asvkRevoked = try sim.crl(revoking: [sim.asvk], thisUpdate: SNPFixtures.now - day, nextUpdate: SNPFixtures.now + day)
        let revoked = verifier.verify(SNPEvidence(report: vlekReport, endorsementKey: try sim.vlek.der, crl: asvkRevoked), at: SNPFixtures.now)
        XCTAssertEqual(revoked.codes, ["snp_certificate_revoked"])
        XCTAssertEqual(revoked.violations.first?.path, "snp.chain.asvk")
        XCTAssertNil(revoked.claims)
        // Stale, not yet valid, another ARK's, garbage.
        XCTAssertEqual(verify(try sim.crl(revoking: [], thisUpdate: SNPFixtures.now - 2 * day, nextUpdate: SNPFixtures.now)).codes, ["snp_crl_invalid"])
        XCTAssertEqual(verify(try sim.crl(revoking: [], thisUpdate: SNPFixtures.now + 1, nextUpdate: SNPFixtures.now + day)).codes, ["snp_crl_invalid"])
        let stranger = try SoftwareSNP(product: .genoa)
        XCTAssertEqual(verify(try stranger.crl(revoking: [], thisUpdate: SNPFixtures.now - day, nextUpdate: SNPFixtures.now + day)).codes, ["snp_crl_invalid"])
        XCTAssertEqual(verify([0x30, 0x00]).codes, ["snp_crl_invalid"])
    }

    func testEndorsementsThatDisagreeWithTheReportAreRefused() throws {
        let milan = SNPSim.milan, turin = SNPSim.turin
        let verifier = try SNPSim.verifier([milan, turin])
        func verify(_ sim: SoftwareSNP, _ report: SNPReport, _ cert: Certificate) throws -> TEEVerification<SNPClaims> {
            verifier.verify(SNPEvidence(report: try sim.sign(report), endorsementKey: try cert.der), at: SNPFixtures.now)
        }
        let hw = Array(milan.chipID)
        func vcek(_ change: (inout SNPEndorsementExtensions) -> Void, octet: Bool = false, sim: SoftwareSNP = SNPSim.milan,
                  key: PrivateKey? = nil) throws -> Certificate {
            var e = SoftwareSNP.extensions(product: sim.product, tcb: sim.tcb, hwID: Array(sim.chipID.prefix(sim.product == .turin ? 8 : 64)))
            change(&e)
            return try sim.issueEndorsement(.vcek, key: key ?? sim.vcekKey, extensions: e, hwIDAsOctetString: octet)
        }
        let report = milan.report()
        XCTAssertTrue(try verify(milan, report, try vcek({ _ in }, octet: true)).isVerified, "hwID as an OCTET STRING")
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.bootloaderSPL = 2 })).codes, ["snp_tcb_mismatch"])
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.teeSPL = 1 })).codes, ["snp_tcb_mismatch"])
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.snpSPL = nil })).codes, ["snp_tcb_mismatch"])
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.microcodeSPL = 116 })).codes, ["snp_tcb_mismatch"])
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.fmcSPL = 0 })).codes, ["snp_tcb_mismatch"], "no fmcSPL on Milan")
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.hwID = hw.reversed() })).codes, ["snp_hwid_mismatch"])
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.hwID = nil })).codes, ["snp_hwid_mismatch"])
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.hwID = Array(hw.prefix(8)) })).codes, ["snp_hwid_mismatch"], "a Turin-length hwID on Milan")
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.productName = "Genoa" })).codes, ["snp_product_mismatch"])
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.productName = nil })).codes, ["snp_product_mismatch"])
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.microcodeSPL = nil; $0.productName = "Milan-B1" }))
                       .codes, ["snp_tcb_mismatch"], "another stepping's name is the same line")
        XCTAssertEqual(try verify(milan, report, try vcek({ $0.hwID = [1] + hw.dropFirst() }, octet: true)).codes, ["snp_hwid_mismatch"])
        XCTAssertEqual(try verify(milan, report, try vcek({ _ in }, key: try PrivateKey.generate(.p384))).codes, ["snp_report_signature_invalid"])
        XCTAssertEqual(try verify(milan, report, try vcek({ _ in }, key: try PrivateKey.generate(.p256))).codes, ["snp_endorsement_untrusted"])

        // Turin: fmcSPL required, the hwID is 8 bytes compared with CHIP_ID's first 8.
        let turinReport = turin.report(version: 5)
        XCTAssertTrue(try verify(turin, turinReport, turin.vcek).isVerified)
        XCTAssertEqual(try verify(turin, turinReport, try vcek({ $0.fmcSPL = nil }, sim: turin)).codes, ["snp_tcb_mismatch"])
        XCTAssertEqual(try verify(turin, turinReport, try vcek({ $0.fmcSPL = 5 }, sim: turin)).codes, ["snp_tcb_mismatch"])
        XCTAssertEqual(try verify(turin, turinReport, try vcek({ $0.hwID = turin.chipID }, sim: turin)).codes, ["snp_hwid_mismatch"])
        var chipTail = turinReport
        chipTail.chipID[20] ^= 1
        XCTAssertTrue(try verify(turin, chipTail, turin.vcek).isVerified, "only the first 8 bytes of a Turin CHIP_ID are certified")

        // The report's own fields the binding reads.
        var genoaCPU = report
        genoaCPU.cpuid = SNPSim.genoa.cpuid
        XCTAssertEqual(try verify(milan, genoaCPU, milan.vcek).codes, ["snp_product_mismatch"])
        var reservedTCB = report
        reservedTCB.reportedTCB = SNPTCBVersion(raw: reservedTCB.reportedTCB.raw | 1 << 24)
        XCTAssertEqual(try verify(milan, reservedTCB, milan.vcek).codes, ["snp_tcb_mismatch"])
        var vlekWithHWID = milan.report(signer: .vlek)
        vlekWithHWID.chipID = milan.chipID
        var e = SoftwareSNP.extensions(product: .milan, tcb: milan.tcb, hwID: milan.chipID)
        e.cspID = "CN=x"
        let badVLEK = try milan.issueEndorsement(.vlek, key: milan.vlekKey, extensions: e)
        XCTAssertEqual(try verify(milan, vlekWithHWID, badVLEK).codes, ["snp_hwid_mismatch"])
        XCTAssertEqual(try verify(milan, milan.report(signer: .vlek), milan.vcek).codes, ["snp_endorsement_untrusted"], "a VCEK for a VLEK report")
    }

    func testCertificateSignaturesMustBeAMDsPSS() throws {
        let sim = SNPSim.milan
        let verifier = try SNPSim.verifier([sim])
        let report = try sim.sign(sim.report())
        let ext = SoftwareSNP.extensions(product: .milan, tcb: sim.tcb, hwID: sim.chipID).encoded().map { RSAPSSIssuer.Extension(oid: $0.oid, der: $0.der) }
        let subject: [(attribute: String, value: String)] = [("O", TEESimulation.organization), ("CN", "SEV-VCEK")]
        for (hash, salt) in [(HashAlg.sha256, 32), (.sha384, 32), (.sha512, 48)] {
            let cert = try RSAPSSIssuer.issue(subject: subject, publicKey: sim.vcekKey.publicKey, issuer: sim.ask, signingKey: sim.askKey, serial: [0],
                                              notBefore: SoftwareSNP.keyValidity.notBefore, notAfter: SoftwareSNP.keyValidity.notAfter, isCA: false,
                                              extensions: ext, hash: hash, saltLength: salt)
            let result = verifier.verify(SNPEvidence(report: report, endorsementKey: try cert.der), at: SNPFixtures.now)
            XCTAssertEqual(result.codes, ["snp_endorsement_untrusted"], "\(hash) salt \(salt)")
            XCTAssertEqual(result.violations.first?.path, "snp.chain.vcek.signatureAlgorithm")
        }
        // Outside its validity window.
        let late = try sim.issueEndorsement(.vcek, key: sim.vcekKey, extensions: SoftwareSNP.extensions(product: .milan, tcb: sim.tcb, hwID: sim.chipID),
                                            notBefore: SNPFixtures.now + 1, notAfter: SNPFixtures.now + 86400)
        let result = verifier.verify(SNPEvidence(report: report, endorsementKey: try late.der), at: SNPFixtures.now)
        XCTAssertEqual(result.codes, ["snp_certificate_expired"])
        XCTAssertEqual(result.violations.first?.path, "snp.chain.vcek")
        // The ARK must be the pinned one: a store pinning another digest.
        var pin = Crypto.sha256(try sim.ark.der)
        pin[5] ^= 0x40
        let pinned = SNPVerifier(trust: SNPTrustStore(products: [.milan: .init(ark: sim.ark, arkPin: pin, ask: sim.ask, asvk: sim.asvk)]))
        XCTAssertEqual(pinned.verify(SNPEvidence(report: report, endorsementKey: try sim.vcek.der), at: SNPFixtures.now).codes, ["snp_root_untrusted"])
    }

    func testPolicyViolationsAreAllReportedWithTheClaims() throws {
        let sim = SNPSim.turin
        let verifier = try SNPSim.verifier([sim])
        var r = sim.report(version: 5)
        r.policy = SNPGuestPolicy.with([SNPGuestPolicy.smtBit, SNPGuestPolicy.debugBit, SNPGuestPolicy.migrateMABit])
        r.platformInfo = SNPPlatformInfo(raw: 1)
        r.vmpl = 2
        r.measurement = [UInt8](repeating: 7, count: 48)
        let evidence = SNPEvidence(report: try sim.sign(r), endorsementKey: try sim.vcek.der)

        var policy = SNPPolicy()
        policy.allowSMT = false
        policy.maxVMPL = 1
        policy.signers = [.vlek]
        policy.products = [.milan, .genoa]
        policy.minimumTCB = [.turin: .init(reported: .init(microcode: 9, fmc: 5))]
        policy.measurements = [.init(name: "golden", value: [UInt8](repeating: 8, count: 48))]
        policy.hostData = [[UInt8](repeating: 1, count: 32)]
        policy.idKeyDigests = [[UInt8](repeating: 1, count: 48)]
        policy.authorKeyDigests = [[UInt8](repeating: 1, count: 48)]
        policy.reportData = [UInt8](repeating: 1, count: 64)
        let result = verifier.verify(evidence, at: SNPFixtures.now, policy: policy)
        XCTAssertEqual(result.codes, ["snp_signer_not_allowed", "snp_product_not_allowed", "snp_debug_enabled", "snp_migration_agent_allowed",
                                      "snp_smt_enabled", "snp_vmpl_not_allowed", "snp_tcb_too_old", "snp_measurement_not_allowed",
                                      "snp_host_data_mismatch", "snp_id_key_not_allowed", "snp_author_key_not_allowed", "snp_report_data_mismatch"])
        XCTAssertEqual(result.violations.first { $0.code == .snpTCBTooOld }?.path, "snp.tcb.reported.fmc")
        XCTAssertEqual(result.claims?.vmpl, 2)

        // A listed measurement is named in the claims; a product without a minimum TCB is refused.
        var named = SNPPolicy()
        named.allowDebug = true
        named.allowMigrationAgent = true
        named.measurements = [.init(name: "other", value: [UInt8](repeating: 8, count: 48)), .init(name: "golden", value: r.measurement)]
        guard case let .verified(claims, _) = verifier.verify(evidence, at: SNPFixtures.now, policy: named) else { return XCTFail() }
        XCTAssertEqual(claims.measurementName, "golden")
        named.minimumTCB = [.milan: .init(reported: .init(snp: 1))]
        XCTAssertEqual(verifier.verify(evidence, at: SNPFixtures.now, policy: named).codes, ["snp_tcb_too_old"])
        named.minimumTCB = [.turin: .init(reported: .init(bootloader: 1, tee: 2, snp: 3, microcode: 9, fmc: 4), committed: .init(fmc: 4), launch: .init(snp: 3))]
        named.allowedVMPLs = [2, 3]
        XCTAssertTrue(verifier.verify(evidence, at: SNPFixtures.now, policy: named).isVerified)
    }
}
