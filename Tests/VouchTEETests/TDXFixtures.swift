import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTEEWire
import VouchTestSupport

/// The corpus's TDX samples (Tests/Fixtures/tdx, manifest.json) and their pinned times.
enum TDXSamples {
    static func bytes(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: fixture("tdx/\(path)"))) }

    static func date(_ s: String) -> Date { Date.parseRFC3339(s)! }

    static let v4UpToDate = "dcapqvl-v4-uptodate"
    static let v5NoMatch = "dcapqvl-v5-no-tcb-match"
    static let v5GoTDX = "gotdxguest-v5"
    static let v4SPR = "gotdxguest-v4-spr"
    static let ccel = "ccel-cos113"

    static let v4Now = date("2025-07-01T00:00:00Z")
    static let v5Now = date("2026-03-01T00:00:00Z")
    static let sprNow = date("2023-07-01T01:00:00Z")
    static let ccelNow = date("2025-01-01T00:00:00Z")

    static func quote(_ dir: String) throws -> [UInt8] { try bytes("\(dir)/quote.bin") }

    /// dcap-qvl QuoteCollateralV3 JSON.
    static func dcapCollateral(_ dir: String) throws -> TDXCollateral { try TDXCollateral(dcapQVLJSON: bytes("\(dir)/collateral.json")) }

    /// The PCS files layout of gotdxguest-v4-spr.
    static func sprCollateral() throws -> TDXCollateral {
        try TDXCollateral.pcsFiles { name in
            let url = fixturesRoot.appendingPathComponent("tdx/\(v4SPR)/\(name)")
            return FileManager.default.fileExists(atPath: url.path) ? [UInt8](try Data(contentsOf: url)) : nil
        }
    }

    static let verifier: TDXVerifier = try! TDXVerifier()
}

func assertRefused<C>(_ result: TEEVerification<C>, _ code: ErrorCode, file: StaticString = #filePath, line: UInt = #line) {
    switch result {
    case .verified: XCTFail("verified; expected \(code)", file: file, line: line)
    case let .rejected(v, _): XCTAssertEqual(v.first?.code, code, "\(v)", file: file, line: line)
    }
}

func verifiedClaims<C>(_ result: TEEVerification<C>, file: StaticString = #filePath, line: UInt = #line) -> (C, [TEEWarning])? {
    switch result {
    case let .verified(c, w): return (c, w)
    case let .rejected(v, _): XCTFail("refused: \(v)", file: file, line: line); return nil
    }
}
