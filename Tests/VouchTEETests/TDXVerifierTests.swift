import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEEWire
import VouchTestSupport

/// Every TDX sample of the corpus at its pinned time, with the result manifest.json records.
final class TDXVerifierTests: XCTestCase {
    func testDcapQVLv4IsUpToDate() throws {
        let r = TDXSamples.verifier.verify(quote: try TDXSamples.quote(TDXSamples.v4UpToDate), collateral: try TDXSamples.dcapCollateral(TDXSamples.v4UpToDate),
                                           at: TDXSamples.v4Now)
        guard let (claims, warnings) = verifiedClaims(r) else { return }
        XCTAssertEqual(claims.tcbStatus, "UpToDate")
        XCTAssertEqual(claims.platformTcbStatus, "UpToDate")
        XCTAssertEqual(claims.moduleId, "TDX_01")
        XCTAssertEqual(claims.moduleTcbStatus, "UpToDate")
        XCTAssertEqual(claims.qeTcbStatus, "UpToDate")
        XCTAssertEqual(claims.qeIsvSvn, 6)
        XCTAssertEqual(claims.fmspc, "b0c06f000000")
        XCTAssertEqual(claims.teeTcbSvn, "06010300000000000000000000000000")
        XCTAssertEqual(claims.quoteVersion, 4)
        XCTAssertEqual(claims.tdxVersion, "1.0")
        XCTAssertEqual(claims.advisories, [])
        XCTAssertEqual(claims.tcbDate, "2024-03-13T00:00:00Z")
        XCTAssertEqual(warnings, [])
    }

    func testDcapQVLv5HasNoMatchingTCBLevel() throws {
        let r = TDXSamples.verifier.verify(quote: try TDXSamples.quote(TDXSamples.v5NoMatch), collateral: try TDXSamples.dcapCollateral(TDXSamples.v5NoMatch),
                                           at: TDXSamples.v5Now)
        assertRefused(r, .tdxTCBLevelNotFound)
        guard case let .rejected(_, claims) = r else { return }
        XCTAssertEqual(claims?.quoteVersion, 5)
        XCTAssertEqual(claims?.tdxVersion, "1.5")
        XCTAssertEqual(claims?.fmspc, "90c06f000000")
        XCTAssertEqual(claims?.teeTcbSvn, "07010300000000000000000000000000")
    }

    func testGoTDXGuestV5WithDcapQVLCollateralIsUpToDate() throws {
        let r = TDXSamples.verifier.verify(quote: try TDXSamples.quote(TDXSamples.v5GoTDX), collateral: try TDXSamples.dcapCollateral(TDXSamples.v5NoMatch),
                                           at: TDXSamples.v5Now)
        guard let (claims, _) = verifiedClaims(r) else { return }
        XCTAssertEqual(claims.tcbStatus, "UpToDate")
        XCTAssertEqual(claims.moduleId, "TDX_01")
        XCTAssertEqual(claims.qeTcbStatus, "UpToDate")
        XCTAssertEqual(claims.tcbDate, "2024-11-13T00:00:00Z")
        XCTAssertEqual(claims.teeTcbSvn, "0b010400000000000000000000000000")
    }

    func testGoTDXGuestSPRHasNoMatchingTCBLevel() throws {
        let r = TDXSamples.verifier.verify(quote: try TDXSamples.quote(TDXSamples.v4SPR), collateral: try TDXSamples.sprCollateral(), at: TDXSamples.sprNow)
        assertRefused(r, .tdxTCBLevelNotFound)
        guard case let .rejected(_, claims) = r else { return }
        XCTAssertEqual(claims?.fmspc, "50806f000000")
    }

    /// The collateral's own checks (CRL and collateral signatures, chains, windows) pass at the
    /// pinned time: the refusal is the TCB level, after every collateral step.
    func testSPRCollateralVerifiesAtItsTimeAndExpiresLater() throws {
        let collateral = try TDXSamples.sprCollateral()
        let quote = try TDXSamples.quote(TDXSamples.v4SPR)
        assertRefused(TDXSamples.verifier.verify(quote: quote, collateral: collateral, at: TDXSamples.sprNow), .tdxTCBLevelNotFound)
        // In 2053 every part has expired; the CRLs are checked first.
        assertRefused(TDXSamples.verifier.verify(quote: quote, collateral: collateral, at: TDXSamples.date("2053-01-01T00:00:00Z")), .tdxCRLInvalid)
        // The QE identity is the first part to end (nextUpdate 2023-07-08T07:24:59Z), then the PCK
        // CRL (2023-07-08T07:27:52Z): a second before, every collateral check passes and the TCB
        // level decides.
        assertRefused(TDXSamples.verifier.verify(quote: quote, collateral: collateral, at: TDXSamples.date("2023-07-08T07:24:58Z")), .tdxTCBLevelNotFound)
        assertRefused(TDXSamples.verifier.verify(quote: quote, collateral: collateral, at: TDXSamples.date("2023-07-08T07:24:59Z")), .tdxCollateralExpired)
        assertRefused(TDXSamples.verifier.verify(quote: quote, collateral: collateral, at: TDXSamples.date("2023-07-08T07:27:52Z")), .tdxCRLInvalid)
    }

    func testCCELQuoteAuthenticWithoutCollateral() throws {
        let quote = try TDXSamples.quote(TDXSamples.ccel)
        let nonce = try TDXSamples.bytes("\(TDXSamples.ccel)/nonce.bin")
        let log = try TDXSamples.bytes("\(TDXSamples.ccel)/ccel_data.bin")
        // By default an unknown TCB is refused, with the authentic quote's claims.
        let refused = TDXSamples.verifier.verify(quote: quote, collateral: nil, at: TDXSamples.ccelNow,
                                                 expectations: TDXExpectations(reportData: nonce, eventLog: log))
        assertRefused(refused, .tdxTCBUnknown)
        guard case let .rejected(v, claims) = refused else { return }
        XCTAssertEqual(v.count, 1, "\(v)")
        XCTAssertEqual(claims?.tcbStatus, "Unknown")
        XCTAssertEqual(claims?.reportData, Hex.encode(nonce))
        XCTAssertEqual(claims?.rtmrsFromEventLog, true)
        XCTAssertEqual(claims?.rtmrs[3], String(repeating: "0", count: 96))
        // A policy that accepts an unknown TCB affirms it, with a warning.
        var policy = TDXPolicy()
        policy.allowUnknownTCB = true
        let r = TDXSamples.verifier.verify(quote: quote, collateral: nil, at: TDXSamples.ccelNow, policy: policy,
                                           expectations: TDXExpectations(reportData: nonce, eventLog: log))
        guard let (c, warnings) = verifiedClaims(r) else { return }
        XCTAssertEqual(warnings.map(\.code), ["tdx_tcb_unknown"])
        XCTAssertEqual(c.fmspc, "00806f050000")
        XCTAssertTrue(c.rtmrsFromEventLog)
    }

    func testCCELReplaysRTMRsExactly() throws {
        let quote = try TDXQuote(bytes: try TDXSamples.quote(TDXSamples.ccel))
        let replayed = try TDXEventLog.replay(try TDXSamples.bytes("\(TDXSamples.ccel)/ccel_data.bin"))
        XCTAssertEqual(replayed[0], quote.body.rtmrs[0])
        XCTAssertEqual(replayed[1], quote.body.rtmrs[1])
        XCTAssertEqual(replayed[2], quote.body.rtmrs[2])
        XCTAssertEqual(replayed[3], [UInt8](repeating: 0, count: 48))
        XCTAssertEqual(quote.body.rtmrs[3], [UInt8](repeating: 0, count: 48))
    }

    /// The claims' JSON names are stable: `vouch evidence verify --json` prints them.
    func testClaimsJSONNames() throws {
        let r = TDXSamples.verifier.verify(quote: try TDXSamples.quote(TDXSamples.v4UpToDate), collateral: try TDXSamples.dcapCollateral(TDXSamples.v4UpToDate),
                                           at: TDXSamples.v4Now)
        guard let (claims, _) = verifiedClaims(r) else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let object = try JSONSerialization.jsonObject(with: encoder.encode(claims)) as! [String: Any]
        XCTAssertEqual(Set(object.keys), ["quoteVersion", "tdxVersion", "teeTcbSvn", "mrSeam", "mrSignerSeam", "seamAttributes", "tdAttributes", "xfam", "mrtd",
                                          "mrConfigId", "mrOwner", "mrOwnerConfig", "rtmrs", "rtmrsFromEventLog", "reportData", "fmspc", "pceId", "pceSvn",
                                          "cpuSvn", "tcbStatus", "platformTcbStatus", "tcbDate", "advisories", "moduleId", "moduleTcbStatus", "qeTcbStatus",
                                          "qeIsvSvn", "tcbEvaluationDataNumber", "collateralNextUpdate"])
        XCTAssertEqual(Set((object["tdAttributes"] as! [String: Any]).keys), ["raw", "debug", "septVeDisable", "pks", "keyLocker", "perfmon"])
        XCTAssertEqual(try JSONDecoder().decode(TDXClaims.self, from: encoder.encode(claims)), claims)
    }

    /// Repeated quotes from one platform may reuse verified collateral and chains, but a cached
    /// answer is never a different answer: a verifier that has seen the collateral gives the same
    /// claims as a fresh one, and still refuses once the collateral's window has passed. (What the
    /// caches save is measured by `make bench`, not here.)
    func testCachedVerificationGivesTheSameAnswers() throws {
        let quote = try TDXSamples.quote(TDXSamples.v4UpToDate)
        let collateral = try TDXSamples.dcapCollateral(TDXSamples.v4UpToDate)
        let roots = TDXSamples.verifier.roots
        let warm = TDXVerifier(roots: roots)
        guard case let .verified(first, _) = warm.verify(quote: quote, collateral: collateral, at: TDXSamples.v4Now) else { return XCTFail("fresh") }
        for _ in 0..<3 {
            guard case let .verified(again, _) = warm.verify(quote: quote, collateral: collateral, at: TDXSamples.v4Now) else { return XCTFail("cached") }
            XCTAssertEqual(again, first)
        }
        let later = TDXSamples.v4Now.addingTimeInterval(60 * 86400)
        let fresh = TDXVerifier(roots: roots).verify(quote: quote, collateral: collateral, at: later)
        let cached = warm.verify(quote: quote, collateral: collateral, at: later)
        XCTAssertFalse(cached.isVerified)
        XCTAssertEqual(cached.violations.map(\.code), fresh.violations.map(\.code))
    }
}
