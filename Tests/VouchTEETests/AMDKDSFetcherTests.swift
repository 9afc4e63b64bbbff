import Foundation
import XCTest
import VouchAttestation
import VouchCollateral
import VouchCore
import VouchCrypto
import VouchTEESim
import VouchTEEWire
import VouchTestSupport

/// `AMDKDSFetcher` against a local stand-in for AMD's KDS: the corpus's VCEKs at the KDS paths
/// their reports name verify as the manifest says; the software TEE's (Turin's path and CRLs, and
/// the broker's fallback for a report sent without its VCEK).
final class AMDKDSFetcherTests: XCTestCase {
    var scratch: URL!
    var server: VendorServer!
    /// Inside the software TEE's key validity.
    static let now = Date.parseRFC3339("2026-01-15T00:00:00Z")!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-kds-\(UUID().uuidString.prefix(8))")
        server = try VendorServer()
    }

    override func tearDown() {
        server?.stop()
        try? FileManager.default.removeItem(at: scratch)
    }

    func fetcher(limits: CollateralFetchLimits = CollateralFetchLimits()) -> AMDKDSFetcher {
        AMDKDSFetcher(directory: scratch, kds: server.client, limits: limits)
    }

    /// The KDS path of a VCEK as AMD's KDS interface specification spells it (written out here,
    /// not computed by the fetcher): Milan/Genoa 64-byte hwid and four SPLs.
    static func kdsPath(_ product: String, chipID: [UInt8], bl: Int, tee: Int, snp: Int, ucode: Int) -> String {
        "/vcek/v1/\(product)/\(Hex.encode(chipID))?blSPL=\(bl)&teeSPL=\(tee)&snpSPL=\(snp)&ucodeSPL=\(ucode)"
    }

    func testEveryCorpusVCEKFetchedVerifiesItsReportAtThePinnedTime() throws {
        let verifier = SNPVerifier(trust: try SNPFixtures.amdStore())
        let fetcher = fetcher()
        for sample in try SNPFixtures.samples() where sample.signerType == "VCEK" {
            let report = try SNPReport(bytes: sample.report)
            let tcb = sample.manifest["reported_tcb"] as! [String: Int]
            let product = (sample.manifest["product"] as! String).split(separator: "-")[0]
            let path = Self.kdsPath(String(product), chipID: report.chipID, bl: tcb["bl"]!, tee: tcb["tee"]!, snp: tcb["snp"]!, ucode: tcb["ucode"]!)
            server.serve(path, VendorServer.ok(sample.signer))
            server.resetRequests()
            let request = try XCTUnwrap(SNPVCEKRequest(report: report), sample.dir)
            let vcek = try XCTUnwrap(fetcher.vcek(request, at: SNPFixtures.now), sample.dir)
            XCTAssertEqual(server.requests, [VendorServer.canonical(path)], sample.dir)
            let pem = sample.signer.starts(with: Array("-----BEGIN".utf8))   // genoa-azure-cvm's: served as PEM, kept as DER
            XCTAssertEqual(vcek, pem ? try Certificate(pem: String(decoding: sample.signer, as: UTF8.self)).der : sample.signer, sample.dir)
            guard case let .authenticated(v) = verifier.authenticate(SNPEvidence(report: sample.report, endorsementKey: vcek), at: SNPFixtures.now) else {
                XCTFail("\(sample.dir): the fetched VCEK does not verify its report"); continue
            }
            XCTAssertEqual(v.signer, .vcek)
            // Cached by product, chip and TCB: asked again, KDS is not.
            server.resetRequests()
            XCTAssertEqual(fetcher.vcek(request, at: SNPFixtures.now), vcek)
            XCTAssertEqual(self.fetcher().vcek(request, at: SNPFixtures.now), vcek, "a restart reads the cache")
            XCTAssertEqual(server.requests, [], sample.dir)
            let raw = String(report.reportedTCB.raw, radix: 16)
            let file = scratch.appendingPathComponent("\(product)/\(Hex.encode(report.chipID))/\(String(repeating: "0", count: 16 - raw.count) + raw).der")
            XCTAssertEqual(try Data(contentsOf: file), Data(vcek))
            XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: file.path)[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        }
    }

    /// A version 2 report names no product line: Milan is asked first, then Genoa.
    func testAVersion2ReportAsksMilanThenGenoa() throws {
        let sample = try SNPFixtures.sample("milan-virtee")
        let report = try SNPReport(bytes: sample.report)
        XCTAssertNil(report.cpuid)
        XCTAssertNil(fetcher().vcek(try XCTUnwrap(SNPVCEKRequest(report: report)), at: SNPFixtures.now), "KDS knows no such chip")
        XCTAssertEqual(server.requests.map { $0.split(separator: "/")[2] }, ["Milan", "Genoa"])
    }

    func testTurinAsksWithItsFMCSPLAndEightByteHWID() throws {
        let turin = SNPSim.turin
        let report = turin.report(signer: .vcek)
        let path = "/vcek/v1/Turin/\(Hex.encode(Array(turin.chipID.prefix(8))))?fmcSPL=4&blSPL=1&teeSPL=2&snpSPL=3&ucodeSPL=9"
        server.serve(path, VendorServer.ok(try turin.vcek.der))
        let vcek = try XCTUnwrap(fetcher().vcek(try XCTUnwrap(SNPVCEKRequest(report: report)), at: Self.now))
        XCTAssertEqual(server.requests, [VendorServer.canonical(path)])
        guard case .authenticated = try SNPSim.verifier().authenticate(SNPEvidence(report: try turin.sign(report), endorsementKey: vcek), at: Self.now) else {
            return XCTFail("the fetched Turin VCEK does not verify")
        }
    }

    func testTheProductCRLIsFetchedRefreshedAndNeverServedStale() throws {
        let milan = SNPSim.milan
        let (thisUpdate, nextUpdate) = (Self.now.addingTimeInterval(-86_400), Self.now.addingTimeInterval(7 * 86_400))
        server.serve("/vcek/v1/Milan/crl", VendorServer.ok(try milan.crl(revoking: [], thisUpdate: thisUpdate, nextUpdate: nextUpdate)))
        let fetcher = fetcher()
        let crl = try XCTUnwrap(fetcher.crl(product: .milan, signer: .vcek, at: Self.now))
        let evidence = SNPEvidence(report: try milan.sign(milan.report()), endorsementKey: try milan.vcek.der, crl: crl)
        guard case let .authenticated(v) = try SNPSim.verifier().authenticate(evidence, at: Self.now) else { return XCTFail("the fetched CRL is refused") }
        XCTAssertTrue(v.revocationChecked)
        XCTAssertEqual(server.requests.count, 1)
        // Within a day: the cache; two days on: asked again, and with KDS down the cached CRL
        // (current until nextUpdate) is served; at nextUpdate, nothing is.
        XCTAssertEqual(fetcher.crl(product: .milan, signer: .vcek, at: Self.now.addingTimeInterval(3600)), crl)
        XCTAssertEqual(server.requests.count, 1)
        server.stop()
        XCTAssertEqual(fetcher.crl(product: .milan, signer: .vcek, at: Self.now.addingTimeInterval(2 * 86_400)), crl)
        XCTAssertNil(fetcher.crl(product: .milan, signer: .vcek, at: nextUpdate))
        XCTAssertNil(self.fetcher().crl(product: .milan, signer: .vcek, at: nextUpdate), "nor after a restart")
    }

    func testOversizedMalformedAndRefusedAnswersAreTypedErrorsAndWriteNothing() throws {
        let milan = SNPSim.milan
        let path = "/vcek/v1/Milan/\(Hex.encode(milan.chipID))?blSPL=\(milan.tcb.bootloader)&teeSPL=\(milan.tcb.tee)&snpSPL=\(milan.tcb.snp)&ucodeSPL=\(milan.tcb.microcode)"
        let tcb = SNPTCBVersion(milan.tcb, product: .milan)
        let cases: [(HTTPResponse, ErrorCode)] = [
            (VendorServer.ok([UInt8](repeating: 0x30, count: (1 << 20) + 1)), .collateralResponseInvalid),
            (VendorServer.ok([0x30, 0x03, 0x02, 0x01, 0x00]), .collateralResponseInvalid),
            (VendorServer.ok(Array("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".utf8)), .collateralResponseInvalid),
            (HTTPResponse(status: 404), .collateralFetchFailed),
            (HTTPResponse(status: 429), .collateralFetchFailed),
        ]
        for (response, code) in cases {
            server.serve(path, response)
            XCTAssertThrowsCode(try fetcher().fetchVCEK(product: .milan, chipID: milan.chipID, reportedTCB: tcb, at: Self.now), code)
            XCTAssertNil(fetcher().vcek(SNPVCEKRequest(products: [.milan], chipID: milan.chipID, reportedTCB: tcb), at: Self.now))
            XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path), "nothing written for \(code)")
        }
        server.serve("/vcek/v1/Milan/crl", VendorServer.ok(Array("not a CRL".utf8)))
        XCTAssertThrowsCode(try fetcher().fetchCRL(product: .milan, signer: .vcek, at: Self.now), .collateralResponseInvalid)
        server.serve("/vcek/v1/Milan/crl", VendorServer.ok(try milan.crl(revoking: [], thisUpdate: Self.now.addingTimeInterval(-2 * 86_400),
                                                                         nextUpdate: Self.now.addingTimeInterval(-86_400))))
        XCTAssertThrowsCode(try fetcher().fetchCRL(product: .milan, signer: .vcek, at: Self.now), .collateralResponseInvalid)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path))
    }

    /// One fetch per chip and TCB per interval (none for an hour after KDS said 404), and a
    /// bounded number for chips never cached: a host sending reports for chips KDS does not know
    /// cannot make the broker hammer it.
    func testTheFetchGateBoundsWhatAHostCanMakeTheBrokerAsk() throws {
        let fetcher = fetcher(limits: CollateralFetchLimits(minInterval: 300, maxFetchesPerWindow: 30, maxNewChipFetchesPerWindow: 3, window: 60))
        let tcb = SNPTCBVersion(SNPSim.milan.tcb, product: .milan)
        func ask(_ chip: UInt8, at seconds: TimeInterval) -> [UInt8]? {
            fetcher.vcek(SNPVCEKRequest(products: [.milan], chipID: [UInt8](repeating: chip, count: 64), reportedTCB: tcb), at: Self.now.addingTimeInterval(seconds))
        }
        for second in 0..<5 { XCTAssertNil(ask(1, at: TimeInterval(second))) }
        XCTAssertEqual(server.requests.count, 1, "the same chip and TCB: once per interval")
        for chip in 2...9 { XCTAssertNil(ask(UInt8(chip), at: 10)) }
        XCTAssertEqual(server.requests.count, 3, "three fetches per minute for chips never cached, whatever the shared budget")
        XCTAssertNil(ask(1, at: 301))
        XCTAssertEqual(server.requests.count, 3, "KDS said 404: not asked again within the hour")
        XCTAssertNil(ask(1, at: 3601))
        XCTAssertEqual(server.requests.count, 4, "after it, the chip is asked again")
    }

    /// Made-up chips spend the new-chip budget only: the CRLs (the revocation check) and the
    /// chips the cache knows are still fetched.
    func testMadeUpChipsStarveNeitherTheCRLsNorKnownChips() throws {
        let milan = SNPSim.milan
        let fetcher = fetcher(limits: CollateralFetchLimits(maxFetchesPerWindow: 2, maxNewChipFetchesPerWindow: 2))
        let tcb = SNPTCBVersion(milan.tcb, product: .milan)
        let known = Self.kdsPath("Milan", chipID: milan.chipID, bl: Int(milan.tcb.bootloader), tee: Int(milan.tcb.tee), snp: Int(milan.tcb.snp),
                                 ucode: Int(milan.tcb.microcode))
        server.serve(known, VendorServer.ok(try milan.vcek.der))
        XCTAssertNotNil(fetcher.vcek(SNPVCEKRequest(products: [.milan], chipID: milan.chipID, reportedTCB: tcb), at: Self.now))
        // A flood of version 2 reports naming made-up chips (Milan, then Genoa: two fetches each).
        for chip in 1...20 {
            let request = SNPVCEKRequest(products: [.milan, .genoa], chipID: [UInt8](repeating: UInt8(chip), count: 64), reportedTCB: tcb)
            XCTAssertNil(fetcher.vcek(request, at: Self.now.addingTimeInterval(1)))
        }
        XCTAssertEqual(server.requests.count, 2, "the known chip's first fetch and one made-up chip: the new-chip budget is two")
        let (thisUpdate, nextUpdate) = (Self.now.addingTimeInterval(-86_400), Self.now.addingTimeInterval(7 * 86_400))
        server.serve("/vcek/v1/Milan/crl", VendorServer.ok(try milan.crl(revoking: [], thisUpdate: thisUpdate, nextUpdate: nextUpdate)))
        server.serve("/vlek/v1/Milan/crl", VendorServer.ok(try milan.crl(revoking: [], thisUpdate: thisUpdate, nextUpdate: nextUpdate)))
        XCTAssertNotNil(fetcher.crl(product: .milan, signer: .vcek, at: Self.now.addingTimeInterval(2)))
        XCTAssertNotNil(fetcher.crl(product: .milan, signer: .vlek, at: Self.now.addingTimeInterval(2)))
        // The known chip at a new TCB (after a firmware update) is asked for, from the shared budget.
        var newer = milan.tcb
        newer.snp += 1
        XCTAssertNil(fetcher.vcek(SNPVCEKRequest(products: [.milan], chipID: milan.chipID, reportedTCB: SNPTCBVersion(newer, product: .milan)),
                                  at: Self.now.addingTimeInterval(3)))
        XCTAssertEqual(Array(server.requests.dropFirst(2)), ["/vcek/v1/Milan/crl", "/vlek/v1/Milan/crl",
                                                            VendorServer.canonical(Self.kdsPath("Milan", chipID: milan.chipID, bl: Int(newer.bootloader),
                                                                                                tee: Int(newer.tee), snp: Int(newer.snp), ucode: Int(newer.microcode)))])
        // A restarted broker knows the chip from its cache directory.
        let restarted = self.fetcher(limits: CollateralFetchLimits(maxNewChipFetchesPerWindow: 0))
        newer.snp += 1
        XCTAssertNil(restarted.vcek(SNPVCEKRequest(products: [.milan], chipID: milan.chipID, reportedTCB: SNPTCBVersion(newer, product: .milan)), at: Self.now))
        XCTAssertEqual(server.requests.count, 6, "a known chip: asked with no new-chip budget at all")
    }

    /// VLEK-signed reports are checked against the ASVK list, which AMD publishes at its own path;
    /// each list has its own cache file.
    func testTheASVKListIsFetchedFromTheVLEKPathAndCachedApart() throws {
        let milan = SNPSim.milan
        let (thisUpdate, nextUpdate) = (Self.now.addingTimeInterval(-86_400), Self.now.addingTimeInterval(7 * 86_400))
        let askList = try milan.crl(revoking: [], thisUpdate: thisUpdate, nextUpdate: nextUpdate)
        let asvkList = try milan.crl(revoking: [milan.asvk], thisUpdate: thisUpdate, nextUpdate: nextUpdate)
        server.serve("/vcek/v1/Milan/crl", VendorServer.ok(askList))
        server.serve("/vlek/v1/Milan/crl", VendorServer.ok(asvkList))
        XCTAssertEqual(fetcher().crl(product: .milan, signer: .vlek, at: Self.now), asvkList)
        XCTAssertEqual(fetcher().crl(product: .milan, signer: .vcek, at: Self.now), askList)
        XCTAssertEqual(server.requests, ["/vlek/v1/Milan/crl", "/vcek/v1/Milan/crl"])
        XCTAssertEqual(try Data(contentsOf: scratch.appendingPathComponent("Milan/vlek-crl.der")), Data(asvkList))
        XCTAssertEqual(try Data(contentsOf: scratch.appendingPathComponent("Milan/crl.der")), Data(askList))
        server.stop()
        XCTAssertEqual(fetcher().crl(product: .milan, signer: .vlek, at: Self.now), asvkList, "a restart reads each list from its own file")
        XCTAssertNil(fetcher().crl(product: .milan, signer: .none, at: Self.now))
    }

    // MARK: The broker's fallback (SNPEvidenceVerifier)

    let binding = Crypto.sha256(Array("a request's binding".utf8))
    let hostKey = try! PrivateKey.generate(.p256)

    func identify(_ endorsement: SNPRawEvidence.Endorsement, signer: SNPSigningKey = .vcek, source: (any SNPEndorsementSource)?) throws -> Result<TEEIdentification, VouchError> {
        var trust = TEETrust().trustingSimulation(snp: try SNPSim.store([SNPSim.milan]), tdxRoots: nil)
        trust.snpEndorsements = source
        let report = try SNPSim.milan.sign(SNPSim.milan.report(signer: signer, reportData: EnrollmentBinding.teeReportData(binding: binding)))
        let raw = RawEvidence(device: "sev-snp", payload: .sevSNP(SNPRawEvidence(report: report, endorsement: endorsement)))
        return SNPEvidenceVerifier(trust: trust).identify(raw, binding: binding, hostKey: try hostKey.publicKey.canonicalSPKIDER, at: Self.now)
    }

    func testAReportWithoutItsVCEKGetsItFromKDSWhenTheBrokerFetches() throws {
        let milan = SNPSim.milan
        let path = "/vcek/v1/Milan/\(Hex.encode(milan.chipID))?blSPL=\(milan.tcb.bootloader)&teeSPL=\(milan.tcb.tee)&snpSPL=\(milan.tcb.snp)&ucodeSPL=\(milan.tcb.microcode)"
        server.serve(path, VendorServer.ok(try milan.vcek.der))
        let fetcher = fetcher()
        let tableWithoutVCEK = SNPCertificateTable(entries: [.init(guid: SNPCertificateTable.Kind.ask.rawValue, der: try milan.ask.der)]).bytes
        for endorsement in [SNPRawEvidence.Endorsement.absent, .certificateTable(tableWithoutVCEK)] {
            let identified = try identify(endorsement, source: fetcher).get()
            XCTAssertEqual(identified.identity.chipID, milan.chipID)
            XCTAssertEqual(identified.endorsementIssuer, milan.ask.subject)
        }
        XCTAssertEqual(server.requests, [VendorServer.canonical(path)], "fetched once, then cached")
        // KDS down: the cached VCEK still serves.
        server.stop()
        XCTAssertNoThrow(try identify(.absent, source: fetcher).get())
    }

    func testAReportWithoutItsVCEKIsRefusedWhenNoneIsToBeHad() throws {
        func code(_ r: Result<TEEIdentification, VouchError>) -> ErrorCode? { if case let .failure(e) = r { return e.code }; return nil }
        server.stop()
        // Nothing cached and KDS down; no fetcher at all; a VLEK-signed report (VLEKs are not fetchable).
        XCTAssertEqual(code(try identify(.absent, source: fetcher())), .snpVCEKUnavailable)
        XCTAssertEqual(code(try identify(.absent, source: nil)), .snpVCEKUnavailable)
        XCTAssertEqual(code(try identify(.absent, signer: .vlek, source: fetcher())), .snpVCEKUnavailable)
        // A certificate table without the VCEK, and no fetcher: malformed evidence, as before.
        let table = SNPCertificateTable(entries: [.init(guid: SNPCertificateTable.Kind.ask.rawValue, der: try SNPSim.milan.ask.der)]).bytes
        XCTAssertEqual(code(try identify(.certificateTable(table), source: nil)), .teeEvidenceMalformed)
    }
}
