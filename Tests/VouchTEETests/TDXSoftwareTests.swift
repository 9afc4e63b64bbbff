import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEESim
import VouchTEEWire
import VouchTestSupport

/// The software TDX platform's quotes and collateral, in the real formats, drive the statuses and
/// refusals the corpus has no sample of: debug, wrong MRTD, OutOfDate, SWHardeningNeeded with
/// advisories, Revoked, levels given out of order, revoked PCKs, collateral windows.
final class TDXSoftwareTests: XCTestCase {
    static let start = Date.parseRFC3339("2026-01-01T00:00:00Z")!
    static let now = Date.parseRFC3339("2026-01-15T00:00:00Z")!
    static let issue = Date.parseRFC3339("2026-01-10T00:00:00Z")!
    static let next = Date.parseRFC3339("2026-02-09T00:00:00Z")!
    static let tcbDate = Date.parseRFC3339("2025-11-12T00:00:00Z")!
    static let tdx = try! SoftwareTDX(notBefore: start, notAfter: Date.parseRFC3339("2030-01-01T00:00:00Z")!)

    var tdx: SoftwareTDX { Self.tdx }
    lazy var verifier = TDXVerifier(roots: tdx.roots)

    func collateral(_ edit: (inout SoftwareTDX.TCBInfo) -> Void = { _ in }, qe: (inout SoftwareTDX.QEIdentity) -> Void = { _ in },
                    revokePCK: Bool = false, revokePCKCA: Bool = false) throws -> TDXCollateral {
        var info = tdx.defaultTCBInfo(issueDate: Self.issue, nextUpdate: Self.next, tcbDate: Self.tcbDate)
        edit(&info)
        var identity = tdx.defaultQEIdentity(issueDate: Self.issue, nextUpdate: Self.next, tcbDate: Self.tcbDate)
        qe(&identity)
        return try tdx.collateral(tcbInfo: SoftwareTDX.json(info), qeIdentity: tdx.json(identity), crlThisUpdate: Self.issue, crlNextUpdate: Self.next,
                                  revokePCK: revokePCK, revokePCKCA: revokePCKCA)
    }

    func verify(_ body: TDXQuoteBody = SoftwareTDX.body(), version: UInt16 = 4, collateral c: TDXCollateral? = nil, at: Date = now,
                policy: TDXPolicy = TDXPolicy(), expectations: TDXExpectations = TDXExpectations()) throws -> TEEVerification<TDXClaims> {
        verifier.verify(quote: try tdx.quote(body, version: version), collateral: try c ?? collateral(), at: at, policy: policy, expectations: expectations)
    }

    func level(_ status: TDXTCBStatus, sgx: [UInt8]? = nil, pce: UInt16? = nil, tdx t: [UInt8] = [3, 1, 2] + [UInt8](repeating: 0, count: 13),
               date: Date = tcbDate, advisories: [String] = []) -> TDXTCBInfo.Level {
        TDXTCBInfo.Level(sgxComponents: sgx ?? tdx.platform.sgxComponents, pceSvn: pce ?? tdx.platform.pceSvn, tdxComponents: t, tcbDate: date,
                         status: status, advisoryIDs: advisories)
    }

    // MARK: quotes in both versions

    func testQuotesV4AndV5AreUpToDate() throws {
        for (version, kind) in [(UInt16(4), TDXQuoteBody.Kind.td10), (5, .td10), (5, .td15)] {
            guard let (claims, warnings) = verifiedClaims(try verify(SoftwareTDX.body(kind: kind), version: version)) else { continue }
            XCTAssertEqual(claims.tcbStatus, "UpToDate")
            XCTAssertEqual(claims.quoteVersion, Int(version))
            XCTAssertEqual(claims.tdxVersion, kind == .td15 ? "1.5" : "1.0")
            XCTAssertEqual(claims.moduleId, "TDX_01")
            XCTAssertEqual(claims.fmspc, Hex.encode(tdx.platform.fmspc))
            XCTAssertEqual(warnings, [])
        }
    }

    func testTheIntelRootDoesNotTrustTheSoftwarePlatform() throws {
        let r = try TDXVerifier().verify(quote: try tdx.quote(SoftwareTDX.body()), collateral: nil, at: Self.now)
        assertRefused(r, .tdxPCKChainInvalid)
    }

    /// Without collateral nothing signed names the QE: it must be Intel's TD QE as pinned (else
    /// any enclave the PCE certifies could sign for any TD), with an Intel-signed module.
    func testWithoutCollateralOnlyIntelsTDQEAndModuleAreAccepted() throws {
        var policy = TDXPolicy()
        policy.allowUnknownTCB = true
        let unknown = verifier.verify(quote: try tdx.quote(SoftwareTDX.body()), collateral: nil, at: Self.now, policy: policy)
        XCTAssertTrue(unknown.isVerified, "\(unknown.violations)")
        var rogue = SoftwareTDX.QE()
        rogue.mrSigner = [UInt8](repeating: 0x42, count: 32)
        let other = try SoftwareTDX(qe: rogue, notBefore: Self.start, notAfter: Date.parseRFC3339("2030-01-01T00:00:00Z")!)
        assertRefused(TDXVerifier(roots: other.roots).verify(quote: try other.quote(SoftwareTDX.body()), collateral: nil, at: Self.now, policy: policy),
                      .tdxQEIdentityMismatch)
        var debugQE = SoftwareTDX.QE()
        debugQE.attributes = [0x13] + [UInt8](repeating: 0, count: 15)
        let debugging = try SoftwareTDX(qe: debugQE, notBefore: Self.start, notAfter: Date.parseRFC3339("2030-01-01T00:00:00Z")!)
        assertRefused(TDXVerifier(roots: debugging.roots).verify(quote: try debugging.quote(SoftwareTDX.body()), collateral: nil, at: Self.now, policy: policy),
                      .tdxQEIdentityMismatch)
        var body = SoftwareTDX.body()
        body.mrSignerSeam = [UInt8](repeating: 0x4d, count: 48)
        assertRefused(verifier.verify(quote: try tdx.quote(body), collateral: nil, at: Self.now, policy: policy), .tdxModuleMismatch)
    }

    /// The TCB info and the QE identity must be one evaluation of Intel's, and a policy can refuse
    /// collateral older than a given evaluation (rollback after a TCB recovery).
    func testEvaluationNumbersMatchAndHaveAFloor() throws {
        assertRefused(try verify(collateral: try collateral({ $0.tcbEvaluationDataNumber += 1 })), .tdxTCBInfoMismatch)
        let number = try XCTUnwrap(verifiedClaims(try verify())?.0.tcbEvaluationDataNumber)
        var policy = TDXPolicy()
        policy.minimumEvaluationDataNumber = number + 1
        assertRefused(try verify(policy: policy), .tdxTCBOutOfDate)
        policy.minimumEvaluationDataNumber = number
        XCTAssertTrue(try verify(policy: policy).isVerified)
    }

    // MARK: TD attributes and measurements

    func testDebugTDIsRefusedUnlessAllowed() throws {
        let debug = SoftwareTDX.body(tdAttributes: [1, 0, 0, 0x10, 0, 0, 0, 0])
        assertRefused(try verify(debug), .tdxDebugRefused)
        var policy = TDXPolicy()
        policy.allowDebug = true
        guard let (claims, _) = verifiedClaims(try verify(debug, policy: policy)) else { return }
        XCTAssertTrue(claims.tdAttributes.debug)
    }

    func testSeptVEDisableIsRequiredUnlessNot() throws {
        let body = SoftwareTDX.body(tdAttributes: [0, 0, 0, 0, 0, 0, 0, 0])
        assertRefused(try verify(body), .tdxSeptVEDisableRequired)
        var policy = TDXPolicy()
        policy.requireSeptVEDisable = false
        XCTAssertTrue(try verify(body, policy: policy).isVerified)
    }

    func testMRTDAllowlist() throws {
        var policy = TDXPolicy()
        policy.mrtd = [.init(name: "good-firmware", value: [UInt8](repeating: 0x7d, count: 48))]
        guard let (claims, _) = verifiedClaims(try verify(policy: policy)) else { return }
        XCTAssertEqual(claims.mrtdName, "good-firmware")
        assertRefused(try verify(SoftwareTDX.body(mrTD: [UInt8](repeating: 0x11, count: 48)), policy: policy), .tdxMRTDNotAllowed)
    }

    func testEveryMeasurementPolicyViolationIsReported() throws {
        var policy = TDXPolicy()
        policy.xfam = [[1, 0, 0, 0, 0, 0, 0, 0]]
        policy.mrConfigID = [[UInt8](repeating: 1, count: 48)]
        policy.mrOwner = [[UInt8](repeating: 2, count: 48)]
        policy.mrOwnerConfig = [[UInt8](repeating: 3, count: 48)]
        policy.rtmrs = [2: [[UInt8](repeating: 4, count: 48)]]
        policy.reportData = [UInt8](repeating: 5, count: 64)
        guard case let .rejected(v, claims) = try verify(policy: policy) else { return XCTFail("verified") }
        XCTAssertEqual(v.map(\.code), [.tdxXFAMNotAllowed, .tdxMRConfigIDNotAllowed, .tdxMROwnerNotAllowed, .tdxMROwnerConfigNotAllowed, .tdxRTMRNotAllowed,
                                       .tdxReportDataMismatch])
        XCTAssertEqual(claims?.tcbStatus, "UpToDate")
    }

    func testReportDataMustBeTheExpectedNonce() throws {
        let nonce = (0..<64).map { UInt8($0) }
        XCTAssertTrue(try verify(SoftwareTDX.body(reportData: nonce), expectations: TDXExpectations(reportData: nonce)).isVerified)
        assertRefused(try verify(SoftwareTDX.body(reportData: nonce), expectations: TDXExpectations(reportData: [UInt8](repeating: 0, count: 64))),
                      .tdxReportDataMismatch)
    }

    // MARK: TCB statuses

    func testOutOfDateIsRefusedUnlessTheBaselineCoversIt() throws {
        let old = Date.parseRFC3339("2024-08-14T00:00:00Z")!
        let c = try collateral { $0.tcbLevels = [self.level(.outOfDate, date: old, advisories: ["INTEL-SA-01079"])] }
        assertRefused(try verify(collateral: c), .tdxTCBOutOfDate)
        var policy = TDXPolicy()
        policy.tcbDateBaseline = Date.parseRFC3339("2024-08-14T00:00:00Z")!
        guard let (claims, warnings) = verifiedClaims(try verify(collateral: c, policy: policy)) else { return }
        XCTAssertEqual(claims.tcbStatus, "OutOfDate")
        XCTAssertEqual(claims.tcbDate, "2024-08-14T00:00:00Z")
        XCTAssertEqual(warnings.map(\.code), ["tdx_tcb_out_of_date"])
        XCTAssertEqual(warnings.first?.advisories, ["INTEL-SA-01079"])
        policy.tcbDateBaseline = Date.parseRFC3339("2024-08-15T00:00:00Z")!
        assertRefused(try verify(collateral: c, policy: policy), .tdxTCBOutOfDate)
    }

    func testSWHardeningNeededWarnsWithItsAdvisories() throws {
        let c = try collateral { $0.tcbLevels = [self.level(.swHardeningNeeded, advisories: ["INTEL-SA-00615", "INTEL-SA-00837"])] }
        guard let (claims, warnings) = verifiedClaims(try verify(collateral: c)) else { return }
        XCTAssertEqual(claims.tcbStatus, "SWHardeningNeeded")
        XCTAssertEqual(claims.advisories, ["INTEL-SA-00615", "INTEL-SA-00837"])
        XCTAssertEqual(warnings, [TEEWarning(code: "tdx_tcb_sw_hardening_needed", message: warnings.first?.message ?? "",
                                             advisories: ["INTEL-SA-00615", "INTEL-SA-00837"])])
        var deny = TDXPolicy()
        deny.deniedAdvisories = ["INTEL-SA-00837"]
        assertRefused(try verify(collateral: c, policy: deny), .tdxAdvisoryDenied)
        var strict = TDXPolicy()
        strict.acceptedTCBStatuses = ["UpToDate"]
        assertRefused(try verify(collateral: c, policy: strict), .tdxTCBStatusRefused)
    }

    func testConfigurationNeededWarnsByDefaultAndThePolicyCanRefuse() throws {
        for status in [TDXTCBStatus.configurationNeeded, .configurationAndSWHardeningNeeded] {
            let c = try collateral { $0.tcbLevels = [self.level(status)] }
            guard let (_, warnings) = verifiedClaims(try verify(collateral: c)) else { continue }
            XCTAssertEqual(warnings.map(\.code), ["tdx_tcb_configuration_needed"])
            var policy = TDXPolicy()
            policy.acceptedTCBStatuses = ["UpToDate", "SWHardeningNeeded"]
            assertRefused(try verify(collateral: c, policy: policy), .tdxTCBStatusRefused)
        }
    }

    func testRevokedIsAlwaysRefused() throws {
        let c = try collateral { $0.tcbLevels = [self.level(.revoked)] }
        var policy = TDXPolicy()
        policy.tcbDateBaseline = Date(timeIntervalSince1970: 0)
        assertRefused(try verify(collateral: c, policy: policy), .tdxTCBRevoked)
    }

    /// Levels listed out of order: the algorithm sorts them (highest first) before taking the
    /// first match, so a lower OutOfDate level listed first does not shadow the UpToDate one.
    func testLevelsOutOfOrderAreSortedByTheAlgorithm() throws {
        let lowerSGX = tdx.platform.sgxComponents.map { $0 > 0 ? $0 - 1 : 0 }
        let c = try collateral {
            $0.tcbLevels = [self.level(.outOfDate, sgx: lowerSGX), self.level(.outOfDate, pce: self.tdx.platform.pceSvn - 1),
                            self.level(.upToDate), self.level(.revoked, sgx: [UInt8](repeating: 0, count: 16), pce: 0)]
        }
        guard let (claims, _) = verifiedClaims(try verify(collateral: c)) else { return }
        XCTAssertEqual(claims.tcbStatus, "UpToDate")
        // A level above the platform in any one SGX component, PCESVN or TDX component does not match.
        var higher = tdx.platform.sgxComponents
        higher[15] += 1
        let none = try collateral { $0.tcbLevels = [self.level(.upToDate, sgx: higher), self.level(.upToDate, pce: self.tdx.platform.pceSvn + 1),
                                                    self.level(.upToDate, tdx: [3, 1, 3] + [UInt8](repeating: 0, count: 13))] }
        assertRefused(try verify(collateral: none), .tdxTCBLevelNotFound)
    }

    /// With TEE_TCB_SVN[1] > 0 the TDX components are compared from index 2: the module's own
    /// SVN (index 0) is judged by its identity; with TEE_TCB_SVN[1] = 0 all 16 are compared.
    func testTDXComponentsFromIndexTwoWhenTheModuleHasAnIdentity() throws {
        let c = try collateral { $0.tcbLevels = [self.level(.upToDate, tdx: [9, 1, 2] + [UInt8](repeating: 0, count: 13))] }
        XCTAssertTrue(try verify(collateral: c).isVerified)
        let module0 = SoftwareTDX.body(teeTcbSvn: [3, 0, 2] + [UInt8](repeating: 0, count: 13))
        let c0 = try collateral { $0.tcbLevels = [self.level(.upToDate, tdx: [9, 0, 2] + [UInt8](repeating: 0, count: 13))] }
        assertRefused(try verify(module0, collateral: c0), .tdxTCBLevelNotFound)
        let c1 = try collateral { $0.tcbLevels = [self.level(.upToDate, tdx: [3, 0, 2] + [UInt8](repeating: 0, count: 13))] }
        guard let (claims, _) = verifiedClaims(try verify(module0, collateral: c1)) else { return }
        XCTAssertNil(claims.moduleId)
    }

    func testModuleStatusConvergesWithThePlatform() throws {
        func moduleLevels(_ levels: [TDXTCBInfo.ModuleLevel]) throws -> TDXCollateral {
            try collateral { $0.tdxModuleIdentities[0].tcbLevels = levels }
        }
        let old = try moduleLevels([.init(isvSvn: 5, tcbDate: Self.tcbDate, status: .upToDate), .init(isvSvn: 2, tcbDate: Self.tcbDate, status: .outOfDate)])
        guard case let .rejected(v, claims) = try verify(collateral: old) else { return XCTFail("verified") }
        XCTAssertEqual(v.map(\.code), [.tdxTCBOutOfDate])
        XCTAssertEqual(claims?.platformTcbStatus, "UpToDate")
        XCTAssertEqual(claims?.moduleTcbStatus, "OutOfDate")
        XCTAssertEqual(claims?.tcbStatus, "OutOfDate")
        assertRefused(try verify(collateral: try moduleLevels([.init(isvSvn: 3, tcbDate: Self.tcbDate, status: .revoked)])), .tdxTCBRevoked)
        assertRefused(try verify(collateral: try moduleLevels([.init(isvSvn: 4, tcbDate: Self.tcbDate, status: .upToDate)])), .tdxModuleTCBLevelNotFound)
        // Configuration needed on the platform, module out of date: OutOfDateConfigurationNeeded.
        let both = try collateral {
            $0.tcbLevels = [self.level(.configurationNeeded)]
            $0.tdxModuleIdentities[0].tcbLevels = [.init(isvSvn: 0, tcbDate: Self.tcbDate, status: .outOfDate)]
        }
        guard case let .rejected(_, c2) = try verify(collateral: both) else { return XCTFail("verified") }
        XCTAssertEqual(c2?.tcbStatus, "OutOfDateConfigurationNeeded")
    }

    func testModuleIdentityMustMatch() throws {
        assertRefused(try verify(collateral: try collateral { $0.tdxModuleIdentities[0].module.mrSigner = [UInt8](repeating: 1, count: 48) }), .tdxModuleMismatch)
        assertRefused(try verify(collateral: try collateral { $0.tdxModuleIdentities[0].id = "TDX_02" }), .tdxModuleMismatch)
        // SEAMATTRIBUTES are compared under the mask.
        let masked = try collateral {
            $0.tdxModuleIdentities[0].module.attributes = [0xff] + [UInt8](repeating: 0, count: 7)
            $0.tdxModuleIdentities[0].module.attributesMask = [0] + [UInt8](repeating: 0xff, count: 7)
        }
        XCTAssertTrue(try verify(collateral: masked).isVerified)
        let unmasked = try collateral { $0.tdxModuleIdentities[0].module.attributes = [0xff] + [UInt8](repeating: 0, count: 7) }
        assertRefused(try verify(collateral: unmasked), .tdxModuleMismatch)
    }

    func testQEStatusConvergesAndItsLevelMustExist() throws {
        let old = try collateral(qe: { $0.tcbLevels = [.init(isvSvn: 8, tcbDate: Self.tcbDate, status: .upToDate),
                                                       .init(isvSvn: 6, tcbDate: Self.tcbDate, status: .outOfDate, advisoryIDs: ["INTEL-SA-00999"])] })
        guard case let .rejected(v, claims) = try verify(collateral: old) else { return XCTFail("verified") }
        XCTAssertEqual(v.map(\.code), [.tdxTCBOutOfDate])
        XCTAssertEqual(claims?.qeTcbStatus, "OutOfDate")
        XCTAssertEqual(claims?.advisories, ["INTEL-SA-00999"])
        assertRefused(try verify(collateral: try collateral(qe: { $0.tcbLevels = [.init(isvSvn: 7, tcbDate: Self.tcbDate, status: .upToDate)] })),
                      .tdxQETCBLevelNotFound)
        assertRefused(try verify(collateral: try collateral(qe: { $0.tcbLevels[0].status = .revoked })), .tdxTCBRevoked)
    }

    func testFMSPCMustBeThePCKCertificates() throws {
        assertRefused(try verify(collateral: try collateral { $0.fmspc = [1, 2, 3, 4, 5, 6] }), .tdxTCBInfoMismatch)
        assertRefused(try verify(collateral: try collateral { $0.pceID = [0, 1] }), .tdxTCBInfoMismatch)
    }

    // MARK: revocation and windows

    func testRevokedPCKAndPCKCAAreRefused() throws {
        assertRefused(try verify(collateral: try collateral(revokePCK: true)), .tdxPCKRevoked)
        assertRefused(try verify(collateral: try collateral(revokePCKCA: true)), .tdxPCKRevoked)
    }

    func testCollateralWindows() throws {
        let quote = try tdx.quote(SoftwareTDX.body())
        let early = Date.parseRFC3339("2026-01-12T00:00:00Z")!, late = Date.parseRFC3339("2026-01-20T00:00:00Z")!
        // TCB info: valid issueDate <= now < nextUpdate, everything else valid throughout.
        let info = try tdx.collateral(tcbInfo: SoftwareTDX.json(tdx.defaultTCBInfo(issueDate: early, nextUpdate: late, tcbDate: Self.tcbDate)),
                                      qeIdentity: tdx.json(tdx.defaultQEIdentity(issueDate: Self.issue, nextUpdate: Self.next, tcbDate: Self.tcbDate)),
                                      crlThisUpdate: Self.issue, crlNextUpdate: Self.next)
        let qe = try tdx.collateral(tcbInfo: SoftwareTDX.json(tdx.defaultTCBInfo(issueDate: Self.issue, nextUpdate: Self.next, tcbDate: Self.tcbDate)),
                                    qeIdentity: tdx.json(tdx.defaultQEIdentity(issueDate: early, nextUpdate: late, tcbDate: Self.tcbDate)),
                                    crlThisUpdate: Self.issue, crlNextUpdate: Self.next)
        let crl = try tdx.collateral(tcbInfo: SoftwareTDX.json(tdx.defaultTCBInfo(issueDate: Self.issue, nextUpdate: Self.next, tcbDate: Self.tcbDate)),
                                     qeIdentity: tdx.json(tdx.defaultQEIdentity(issueDate: Self.issue, nextUpdate: Self.next, tcbDate: Self.tcbDate)),
                                     crlThisUpdate: early, crlNextUpdate: late)
        for c in [info, qe, crl] {
            let expected: ErrorCode = c == crl ? .tdxCRLInvalid : .tdxCollateralExpired
            // Verified first (and cached), then refused outside the window: the cache never outlives it.
            XCTAssertTrue(verifier.verify(quote: quote, collateral: c, at: early, policy: TDXPolicy()).isVerified)
            XCTAssertTrue(verifier.verify(quote: quote, collateral: c, at: late.addingTimeInterval(-1)).isVerified)
            assertRefused(verifier.verify(quote: quote, collateral: c, at: late), expected)
            assertRefused(verifier.verify(quote: quote, collateral: c, at: early.addingTimeInterval(-1)), expected)
            XCTAssertTrue(verifier.verify(quote: quote, collateral: c, at: early).isVerified)
        }
    }

    // MARK: signed bytes

    func testCollateralSignaturesCoverTheExactBytes() throws {
        let c = try collateral()
        // The same JSON object re-serialised (a space added) with the original signature.
        let spaced = Array(String(decoding: c.tcbInfo.bytes, as: UTF8.self).replacingOccurrences(of: "\"version\":3", with: "\"version\": 3").utf8)
        var tampered = c
        tampered.tcbInfo = try TDXSignedJSON(bytes: spaced, signature: c.tcbInfo.signature)
        assertRefused(try verify(collateral: tampered), .tdxCollateralSignatureInvalid)
        var qe = c
        qe.qeIdentity = try TDXSignedJSON(bytes: c.qeIdentity.bytes + [0x20], signature: c.qeIdentity.signature)
        assertRefused(try verify(collateral: qe), .tdxCollateralSignatureInvalid)
        // A TCB info signed by the PCK CA key instead of the TCB signing key: the chain is the TCB signer's.
        var swapped = c
        swapped.tcbInfo = try TDXSignedJSON(bytes: c.tcbInfo.bytes, signature: c.qeIdentity.signature)
        assertRefused(try verify(collateral: swapped), .tdxCollateralSignatureInvalid)
    }

    func testPCSBodiesRoundTrip() throws {
        let c = try collateral()
        let body = c.tcbInfo.pcsBody(key: "tcbInfo")
        XCTAssertEqual(try TDXSignedJSON(pcsBody: body, key: "tcbInfo"), c.tcbInfo)
        XCTAssertEqual(try TDXCollateral(dcapQVLJSON: c.dcapQVLJSON), c)
    }

    func testEventLogMismatchIsRefused() throws {
        let log = try TDXSamples.bytes("\(TDXSamples.ccel)/ccel_data.bin")
        assertRefused(try verify(expectations: TDXExpectations(eventLog: log)), .tdxEventLogMismatch)
        assertRefused(try verify(expectations: TDXExpectations(eventLog: [1, 2, 3])), .tdxEventLogMalformed)
        let replayed = try TDXEventLog.replay(log)
        guard let (claims, _) = verifiedClaims(try verify(SoftwareTDX.body(rtmrs: replayed), expectations: TDXExpectations(eventLog: log))) else { return }
        XCTAssertTrue(claims.rtmrsFromEventLog)
    }
}
