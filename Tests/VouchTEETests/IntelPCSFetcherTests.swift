import Foundation
import XCTest
import VouchAttestation
import VouchCollateral
import VouchCore
import VouchCrypto
import VouchTEESim
import VouchTEEWire
import VouchTestSupport

/// `IntelPCSFetcher` against a local stand-in for Intel PCS serving the corpus's bytes
/// (gotdxguest-v4-spr: the PCS files go-tdx-guest saved) at PCS's v4 paths: what it asks, what
/// it caches, when it asks again, and that what it fetched is judged by `TDXVerifier` exactly as
/// the manifest says — the fetcher trusts nothing.
final class IntelPCSFetcherTests: XCTestCase {
    static let sample = "tdx/gotdxguest-v4-spr"
    static let fmspc = "50806f000000"
    /// The QE identity's nextUpdate: the first part of the sample's collateral to expire.
    static let firstExpiry = TDXSamples.date("2023-07-08T07:24:59Z")
    /// What a fetch asks, in order: both PCK CAs' CRLs (the sample's platform has no processor CA
    /// CRL; the stand-in serves the platform CA's there).
    static let paths = ["/tdx/certification/v4/tcb?fmspc=50806f000000", "/tdx/certification/v4/qe/identity",
                        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der", "/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
                        "/IntelSGXRootCA.der"]

    var scratch: URL!
    var server: VendorServer!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-pcs-\(UUID().uuidString.prefix(8))")
        server = try VendorServer(try Self.pcsRoutes())
    }

    override func tearDown() {
        server?.stop()
        try? FileManager.default.removeItem(at: scratch)
    }

    static func file(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: fixture("\(sample)/\(name)"))) }
    static func text(_ name: String) throws -> String { String(decoding: try file(name), as: UTF8.self) }

    /// PCS's answers for the sample's platform: bodies as saved, issuer chains URL-encoded in headers.
    static func pcsRoutes(tcbChain: String? = nil) throws -> [String: HTTPResponse] {
        [
            paths[0]: VendorServer.ok(try file("tcbinfo_response.json"), [("TCB-Info-Issuer-Chain", VendorServer.urlEncoded(try tcbChain ?? text("tcb_info_issuer_chain.pem")))]),
            paths[1]: VendorServer.ok(try file("qeidentity_response.json"),
                                      [("SGX-Enclave-Identity-Issuer-Chain", VendorServer.urlEncoded(try text("qe_identity_issuer_chain.pem")))]),
            paths[2]: VendorServer.ok(try file("pck_crl_platform.der"), [("SGX-PCK-CRL-Issuer-Chain", VendorServer.urlEncoded(try text("pck_crl_issuer_chain.pem")))]),
            paths[3]: VendorServer.ok(try file("pck_crl_platform.der"), [("SGX-PCK-CRL-Issuer-Chain", VendorServer.urlEncoded(try text("pck_crl_issuer_chain.pem")))]),
            paths[4]: VendorServer.ok(try file("root_ca_crl.der")),
        ]
    }

    func fetcher(limits: CollateralFetchLimits = CollateralFetchLimits()) -> IntelPCSFetcher {
        IntelPCSFetcher(directory: scratch, pcs: server.client, rootCACRL: server.client, rootCACRLPath: "/IntelSGXRootCA.der", limits: limits)
    }

    /// What the broker asks for the sample's quote (its PCK chain checked against Intel's root).
    func request(_ quote: [UInt8], roots: [Certificate] = TDXSamples.verifier.roots, at now: Date = TDXSamples.sprNow) throws -> TDXCollateralRequest {
        let pem = String(decoding: try TDXQuote(bytes: quote).signatureData.certification.pckCertChain.prefix { $0 != 0 }, as: UTF8.self)
        return try XCTUnwrap(TDXCollateralRequest(pckChain: try Certificate.chain(pem: pem), roots: roots, at: now))
    }

    var quote: [UInt8] { get throws { try TDXSamples.quote(TDXSamples.v4SPR) } }

    func testAFetchFillsTheCacheAndTheQuoteVerifiesAsTheManifestSays() throws {
        let request = try request(try quote)
        XCTAssertEqual(Hex.encode(request.fmspc), Self.fmspc)
        XCTAssertEqual(request.pckCA, .platform)
        let collateral = try XCTUnwrap(fetcher().collateral(for: request, at: TDXSamples.sprNow))
        XCTAssertEqual(server.requests, Self.paths.map(VendorServer.canonical), "the five requests (four PCS v4, the root CA CRL), nothing else")
        XCTAssertEqual(collateral, try TDXSamples.sprCollateral(), "byte for byte what PCS served")
        // The manifest: signatures, PCK chain, CRLs and collateral signatures pass; no TCB level matches.
        assertRefused(TDXSamples.verifier.verify(quote: try quote, collateral: collateral, at: TDXSamples.sprNow), .tdxTCBLevelNotFound)

        // The cache: <fmspc> (a link to its generation) with the PCS files — both CAs' PCK CRLs
        // and issuer chains — 0700 and 0600, read as it is by a read-only TDXCollateralDirectory.
        let folder = scratch.appendingPathComponent(Self.fmspc)
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        XCTAssertEqual(names, ["pck_crl_issuer_chain_platform.pem", "pck_crl_issuer_chain_processor.pem", "pck_crl_platform.der", "pck_crl_processor.der",
                               "qe_identity_issuer_chain.pem", "qeidentity_response.json", "root_ca_crl.der", "tcb_info_issuer_chain.pem",
                               "tcbinfo_response.json"])
        XCTAssertEqual(try Data(contentsOf: folder.appendingPathComponent("tcbinfo_response.json")), Data(try Self.file("tcbinfo_response.json")))
        let target = scratch.appendingPathComponent(try FileManager.default.destinationOfSymbolicLink(atPath: folder.path))
        XCTAssertEqual(try mode(target), 0o700)
        XCTAssertEqual(try mode(scratch), 0o700)
        for name in names { XCTAssertEqual(try mode(folder.appendingPathComponent(name)), 0o600, name) }
        XCTAssertEqual(try TDXCollateralDirectory(directory: scratch).collateral(for: request, at: TDXSamples.sprNow), collateral)

        // Asked again — by this fetcher, or by a new one on the same cache (a restart) within a
        // day of the fetch — nothing is requested.
        server.resetRequests()
        XCTAssertEqual(fetcher().collateral(for: request, at: TDXSamples.sprNow.addingTimeInterval(3600)), collateral)
        let again = fetcher()
        XCTAssertEqual(again.collateral(for: request, at: TDXSamples.sprNow.addingTimeInterval(60)), collateral)
        XCTAssertEqual(again.collateral(for: request, at: TDXSamples.sprNow.addingTimeInterval(120)), collateral)
        XCTAssertEqual(server.requests, [])
    }

    func testExpiredCollateralIsFetchedAgainAndNeverServed() throws {
        let fetcher = fetcher(limits: CollateralFetchLimits(refreshAfter: 30 * 86_400))   // no refresh before expiry here
        let request = try request(try quote)
        XCTAssertNotNil(fetcher.collateral(for: request, at: TDXSamples.sprNow))
        server.resetRequests()
        // A second before the QE identity's nextUpdate the cache is served; at it, PCS is asked
        // again — and serves the same (by then expired) set, which is neither cached nor served.
        XCTAssertNotNil(fetcher.collateral(for: request, at: Self.firstExpiry.addingTimeInterval(-1)))
        XCTAssertEqual(server.requests, [], "not expired, not due for a refresh: no request")
        let later = try self.request(try quote, at: Self.firstExpiry)
        XCTAssertNil(fetcher.collateral(for: later, at: Self.firstExpiry))
        XCTAssertEqual(server.requests, Self.paths.map(VendorServer.canonical))
        XCTAssertThrowsCode(try fetcher.fetch(fmspc: request.fmspc, ca: .platform, at: Self.firstExpiry), .collateralResponseInvalid)
        // Without collateral the quote's TCB is unknown, which the default policy refuses.
        assertRefused(TDXSamples.verifier.verify(quote: try quote, collateral: nil, at: Self.firstExpiry), .tdxTCBUnknown)
        // One fetch per platform per interval: asked again at once, PCS is not.
        server.resetRequests()
        XCTAssertNil(fetcher.collateral(for: later, at: Self.firstExpiry.addingTimeInterval(1)))
        XCTAssertEqual(server.requests, [])
    }

    func testWithTheServiceDownAValidCacheStillVerifies() throws {
        let request = try request(try quote)
        XCTAssertNotNil(fetcher().collateral(for: request, at: TDXSamples.sprNow))
        server.stop()
        // Two days on the cache is due for a refresh; the refresh fails; the cached set (current
        // until the 8th) is served, by this process and after a restart alike.
        let twoDays = TDXSamples.sprNow.addingTimeInterval(2 * 86_400)
        for f in [fetcher(), fetcher()] {
            let collateral = try XCTUnwrap(f.collateral(for: try self.request(try quote, at: twoDays), at: twoDays))
            assertRefused(TDXSamples.verifier.verify(quote: try quote, collateral: collateral, at: twoDays), .tdxTCBLevelNotFound)
        }
    }

    func testWithTheServiceDownAndNothingCachedTheTCBIsUnknown() throws {
        server.stop()
        let fetcher = fetcher()
        XCTAssertNil(fetcher.collateral(for: try request(try quote), at: TDXSamples.sprNow))
        XCTAssertThrowsCode(try fetcher.fetch(fmspc: try Hex.decode(Self.fmspc), ca: .platform, at: TDXSamples.sprNow), .collateralFetchFailed)
        assertRefused(TDXSamples.verifier.verify(quote: try quote, collateral: nil, at: TDXSamples.sprNow), .tdxTCBUnknown)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path), "nothing written")
    }

    func testOversizedMalformedAndRefusedAnswersAreTypedErrorsAndWriteNothing() throws {
        let fmspc = try Hex.decode(Self.fmspc)
        let chain = [("TCB-Info-Issuer-Chain", VendorServer.urlEncoded(try Self.text("tcb_info_issuer_chain.pem")))]
        let cases: [(HTTPResponse, ErrorCode)] = [
            (VendorServer.ok([UInt8](repeating: 0x20, count: TDXCollateral.maxFieldBytes + 1), chain), .collateralResponseInvalid),
            (VendorServer.ok(Array(#"{"tcbInfo":{"id":"TDX"},"signature":"00"}"#.utf8), chain), .collateralResponseInvalid),
            (VendorServer.ok(Array("not json".utf8), chain), .collateralResponseInvalid),
            (VendorServer.ok(try Self.file("tcbinfo_response.json")), .collateralResponseInvalid),   // no issuer chain header
            (HTTPResponse(status: 404), .collateralFetchFailed),
            (HTTPResponse(status: 503), .collateralFetchFailed),
        ]
        for (response, code) in cases {
            server.serve(Self.paths[0], response)
            let fetcher = fetcher()
            XCTAssertThrowsCode(try fetcher.fetch(fmspc: fmspc, ca: .platform, at: TDXSamples.sprNow), code)
            XCTAssertNil(fetcher.collateral(for: try request(try quote), at: TDXSamples.sprNow))
            XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path), "nothing written for \(code)")
        }
        // A malformed CRL is refused the same way.
        server.serve(Self.paths[0], try Self.pcsRoutes()[Self.paths[0]]!)
        server.serve(Self.paths[4], VendorServer.ok(Array("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n".utf8)))
        XCTAssertThrowsCode(try fetcher().fetch(fmspc: fmspc, ca: .platform, at: TDXSamples.sprNow), .collateralResponseInvalid)
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.path))
    }

    /// The fetcher trusts no header: a mangled TCB info issuer chain is cached as served and the
    /// verifier refuses it.
    func testAMangledIssuerChainIsTheVerifiersToRefuse() throws {
        var pem = try Self.text("tcb_info_issuer_chain.pem")
        let middle = pem.index(pem.startIndex, offsetBy: 200)
        pem.replaceSubrange(middle..<pem.index(middle, offsetBy: 8), with: "AAAAAAAA")
        server.stop()
        server = try VendorServer(try Self.pcsRoutes(tcbChain: pem))
        let collateral = try XCTUnwrap(fetcher().collateral(for: try request(try quote), at: TDXSamples.sprNow))
        XCTAssertEqual(collateral.tcbInfoIssuerChain, pem)
        assertRefused(TDXSamples.verifier.verify(quote: try quote, collateral: collateral, at: TDXSamples.sprNow), .tdxCollateralChainInvalid)
    }

    /// PCS serving the TCB info of another platform for this FMSPC: fetched and cached as served,
    /// refused by the verifier (the software TEE signs a TCB info naming another FMSPC).
    func testAWrongFMSPCInTheServedTCBInfoIsRefusedByTheVerifier() throws {
        let (issue, next, now, tdx) = (Self.simIssue, Self.simNext, Self.simNow, Self.simTDX)
        var info = tdx.defaultTCBInfo(issueDate: issue, nextUpdate: next, tcbDate: issue)
        info.fmspc = [0x00, 0x90, 0x6e, 0xd5, 0x00, 0x01]
        let c = try tdx.collateral(tcbInfo: SoftwareTDX.json(info), qeIdentity: tdx.json(tdx.defaultQEIdentity(issueDate: issue, nextUpdate: next, tcbDate: issue)),
                                   crlThisUpdate: issue, crlNextUpdate: next)
        let fmspc = Hex.encode(tdx.platform.fmspc)
        serve(c, fmspc: fmspc)
        let quote = try tdx.quote(SoftwareTDX.body())
        let fetched = try XCTUnwrap(fetcher().collateral(for: try request(quote, roots: tdx.roots, at: now), at: now))
        XCTAssertEqual(fetched, c)
        assertRefused(try TDXVerifier(roots: tdx.roots).verify(quote: quote, collateral: fetched, at: now), .tdxTCBInfoMismatch)
    }

    /// The broker's path: `TDXEvidenceVerifier` asks its source with the quote's FMSPC and PCK CA,
    /// the PCK chain checked against the roots the quote is verified under (here the software
    /// TEE's).
    func testTheEvidenceVerifierAsksTheFetcherForTheQuotesPlatform() throws {
        let (issue, next, now, tdx) = (Self.simIssue, Self.simNext, Self.simNow, Self.simTDX)
        let c = try tdx.collateral(tcbInfo: SoftwareTDX.json(tdx.defaultTCBInfo(issueDate: issue, nextUpdate: next, tcbDate: issue)),
                                   qeIdentity: tdx.json(tdx.defaultQEIdentity(issueDate: issue, nextUpdate: next, tcbDate: issue)),
                                   crlThisUpdate: issue, crlNextUpdate: next)
        let fmspc = Hex.encode(tdx.platform.fmspc)
        serve(c, fmspc: fmspc)
        let binding = Crypto.sha256([1, 2, 3]), hostKey = try PrivateKey.generate(.p256)
        let quote = try tdx.quote(SoftwareTDX.body(reportData: EnrollmentBinding.teeReportData(binding: binding)))
        let trust = TEETrust(tdxCollateral: fetcher()).trustingSimulation(snp: nil, tdxRoots: tdx.roots)
        let verifier = TDXEvidenceVerifier(trust: trust)
        let raw = RawEvidence(device: "tdx", payload: .tdx(TDXRawEvidence(quote: quote)))
        XCTAssertNoThrow(try verifier.identify(raw, binding: binding, hostKey: try hostKey.publicKey.canonicalSPKIDER, at: now).get())
        XCTAssertEqual(server.requests, ["/tdx/certification/v4/tcb?fmspc=\(fmspc)"] + Self.paths.dropFirst().map(VendorServer.canonical))
    }

    /// A quote whose PCK chain does not verify to the verifier's roots makes no request.
    func testAQuoteWithAnUnverifiedPCKChainFetchesNothing() throws {
        let now = Self.simNow
        let request = try request(try Self.simTDX.quote(SoftwareTDX.body()), roots: TDXSamples.verifier.roots, at: now)
        XCTAssertNil(fetcher().collateral(for: request, at: now))
        XCTAssertEqual(server.requests, [])
    }

    // The software TEE's platform and a collateral window around `simNow`.
    static let simTDX = try! SoftwareTDX(notBefore: TDXSamples.date("2025-01-01T00:00:00Z"), notAfter: TDXSamples.date("2030-01-01T00:00:00Z"))
    static let (simIssue, simNext, simNow) = (TDXSamples.date("2026-01-10T00:00:00Z"), TDXSamples.date("2026-02-09T00:00:00Z"), TDXSamples.date("2026-01-15T00:00:00Z"))

    /// Serves `c` as PCS would for `fmspc` (the processor CA's CRL and issuer chain: `c`'s, unless given).
    func serve(_ c: TDXCollateral, fmspc: String, processorCRL: (crl: [UInt8], chain: String)? = nil) {
        server.serve("/tdx/certification/v4/tcb?fmspc=\(fmspc)", VendorServer.ok(c.tcbInfo.pcsBody(key: "tcbInfo"),
                                                                                 [("TCB-Info-Issuer-Chain", VendorServer.urlEncoded(c.tcbInfoIssuerChain))]))
        server.serve(Self.paths[1], VendorServer.ok(c.qeIdentity.pcsBody(key: "enclaveIdentity"),
                                                    [("SGX-Enclave-Identity-Issuer-Chain", VendorServer.urlEncoded(c.qeIdentityIssuerChain))]))
        server.serve(Self.paths[2], VendorServer.ok(c.pckCRL, [("SGX-PCK-CRL-Issuer-Chain", VendorServer.urlEncoded(c.pckCRLIssuerChain))]))
        server.serve(Self.paths[3], VendorServer.ok(processorCRL?.crl ?? c.pckCRL,
                                                    [("SGX-PCK-CRL-Issuer-Chain", VendorServer.urlEncoded(processorCRL?.chain ?? c.pckCRLIssuerChain))]))
        server.serve(Self.paths[4], VendorServer.ok(c.rootCACRL))
    }

    func mode(_ url: URL) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }
}

func XCTAssertThrowsCode(_ body: @autoclosure () throws -> some Any, _ code: ErrorCode, file: StaticString = #filePath, line: UInt = #line) {
    do { _ = try body(); XCTFail("no error; expected \(code)", file: file, line: line) } catch let e as VouchError {
        XCTAssertEqual(e.code, code, e.message, file: file, line: line)
    } catch { XCTFail("\(error); expected \(code)", file: file, line: line) }
}
