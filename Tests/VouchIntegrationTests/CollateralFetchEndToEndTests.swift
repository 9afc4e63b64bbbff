import Foundation
import XCTest
import VouchCore
import VouchHTTPServer
import VouchTestSupport

/// vouchd fetching TDX collateral itself: the software TEE's collateral served at Intel PCS's v4
/// paths by a stand-in on 127.0.0.1, vouchd run with `--fetch-collateral intel` pointing at it (no
/// `--tdx-collateral`), and a `vouch-attester --simulate-tee tdx` guest that registers and enrolls
/// — which it can only if vouchd fetched the collateral (without it the TCB is Unknown and the
/// policy refuses) — leaving the PCS files in the cache.
final class CollateralFetchEndToEndTests: XCTestCase {
    var dir: URL!
    var platform: String { dir.appendingPathComponent("platform").path }

    override func setUpWithError() throws {
        dir = try TestEnv.tempDir("vouch-fetch")
        let made = try TestEnv.run(TestEnv.bin("vouch-attester"), ["simulated-tee-platform", platform])
        XCTAssertEqual(made.status, 0, made.stderr)
    }

    override func tearDown() { try? FileManager.default.removeItem(at: dir) }

    /// PCS's answers for the simulated platform, from its dcap-qvl collateral document (both PCK
    /// CAs' CRL paths answer with its PCK CRL), and its FMSPC.
    func pcsRoutes() throws -> (routes: [String: HTTPResponse], fmspc: String) {
        let file = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: platform + "/tdx-collateral").first { $0.hasSuffix(".json") })
        let fmspc = String(file.dropLast(".json".count))
        let doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: platform + "/tdx-collateral/" + file))) as? [String: String])
        func chain(_ key: String) -> String { doc[key]!.addingPercentEncoding(withAllowedCharacters: .alphanumerics)! }
        func body(_ key: String, _ object: String) -> [UInt8] { Array("{\"\(key)\":\(doc[object]!),\"signature\":\"\(doc[object + "_signature"]!)\"}".utf8) }
        let pckCRL = HTTPResponse(status: 200, headers: [("SGX-PCK-CRL-Issuer-Chain", chain("pck_crl_issuer_chain"))], body: try Hex.decode(doc["pck_crl"]!))
        return ([
            "/tdx/certification/v4/tcb?fmspc=\(fmspc)": HTTPResponse(status: 200, headers: [("TCB-Info-Issuer-Chain", chain("tcb_info_issuer_chain"))],
                                                                     body: body("tcbInfo", "tcb_info")),
            "/tdx/certification/v4/qe/identity": HTTPResponse(status: 200, headers: [("SGX-Enclave-Identity-Issuer-Chain", chain("qe_identity_issuer_chain"))],
                                                              body: body("enclaveIdentity", "qe_identity")),
            "/sgx/certification/v4/pckcrl?ca=platform&encoding=der": pckCRL,
            "/sgx/certification/v4/pckcrl?ca=processor&encoding=der": pckCRL,
            "/IntelSGXRootCA.der": HTTPResponse(status: 200, body: try Hex.decode(doc["root_ca_crl"]!)),
        ], fmspc)
    }

    /// A stand-in for PCS on 127.0.0.1 answering `routes` (404 otherwise), recording what it was asked.
    func standIn(_ routes: [String: HTTPResponse], asked: SeenPaths) throws -> (server: HTTPServer, port: UInt16) {
        let port = try freePort()
        let server = try HTTPServer(listen: .http(host: "127.0.0.1", port: port), threads: 1) { request in
            let target = request.path + request.query.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.reduce("") { $0 + ($0.isEmpty ? "?" : "&") + $1 }
            asked.add(target)
            return routes[target] ?? HTTPResponse(status: 404)
        }
        return (server, port)
    }

    /// vouchd fetching from the stand-in at `port`, trusting the simulated platform's roots.
    func broker(pcsPort port: UInt16) throws -> BrokerHarness {
        let policy = dir.appendingPathComponent("td.yaml")
        // A TPM's PCRs are required of every policy, though no TPM host comes here.
        try Data("""
        {apiVersion: vouch/v1, name: td, version: 1, tdx: {allowAnyMeasurement: true},
         pcrs: {bank: sha256, values: {7: ["\(String(repeating: "0", count: 64))"]}}}
        """.utf8).write(to: policy)
        let ekRoot = dir.appendingPathComponent("ek-root.pem")
        try Data(contentsOf: URL(fileURLWithPath: platform + "/roots/tdx.pem")).write(to: ekRoot)   // any CA: no TPM host comes
        return try BrokerHarness(ekRootFiles: [ekRoot], policy: policy.path, extraArgs: [
            "--allow-simulated-hosts", "--simulated-tee-roots", platform + "/roots", "--fetch-collateral", "intel",
            "--intel-pcs-url", "http://127.0.0.1:\(port)", "--intel-root-ca-crl-url", "http://127.0.0.1:\(port)/IntelSGXRootCA.der",
            "--collateral-cache", dir.appendingPathComponent("cache").path,
        ])
    }

    func testATDXGuestEnrollsWithCollateralVouchdFetchedFromPCS() throws {
        let (routes, fmspc) = try pcsRoutes()
        let asked = SeenPaths()
        let (pcs, port) = try standIn(routes, asked: asked)
        defer { pcs.stop() }
        let broker = try broker(pcsPort: port)
        let tdx = try broker.startTEEAttester("tdx", platform: platform, options: nil, hostname: "cvm-tdx")
        defer { tdx.process.stop() }
        let r = try broker.vouch(["enroll", "--name", "inference", "--out", dir.appendingPathComponent("agents").path], socket: tdx.socket)
        XCTAssertEqual(r.status, 0, r.stderr + tdx.process.log + broker.log)
        XCTAssertEqual(Set(asked.paths), Set(routes.keys), "the four PCS requests (both PCK CAs' CRLs) and the root CA CRL")
        XCTAssertEqual(asked.paths.count, 5, "fetched once: registration and enrollment share the cache")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("cache/tdx/\(fmspc)/tcbinfo_response.json").path))
        XCTAssertTrue(broker.log.contains("collateral fetched on demand from Intel PCS http://127.0.0.1:\(port)"), broker.log)
    }

    /// vouchd's vendor clients stop reading at the fetchers' limit (1 MiB): a larger answer is cut
    /// off in transfer (`collateral_fetch_failed`), not downloaded whole and then refused
    /// (`collateral_response_invalid`). The guest's TCB is then unknown.
    func testAnAnswerLargerThanTheFetchersTakeIsCutOffInTransfer() throws {
        var (routes, fmspc) = try pcsRoutes()
        let tcb = "/tdx/certification/v4/tcb?fmspc=\(fmspc)"
        routes[tcb] = HTTPResponse(status: 200, headers: routes[tcb]!.headers, body: [UInt8](repeating: 0x20, count: 2 << 20))
        let asked = SeenPaths()
        let (pcs, port) = try standIn(routes, asked: asked)
        defer { pcs.stop() }
        let broker = try broker(pcsPort: port)
        // Registration fetches (and waits for the fetch), whatever the guest makes of its answer.
        (try? broker.startTEEAttester("tdx", platform: platform, options: nil, hostname: "cvm-tdx"))?.process.stop()
        XCTAssertEqual(asked.paths, [tcb])
        XCTAssertTrue(broker.log.contains("collateral_fetch_failed"), broker.log)
        XCTAssertFalse(broker.log.contains("collateral_response_invalid"), broker.log)
    }
}

/// The request targets a handler saw, from its threads.
final class SeenPaths: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [String] = []
    func add(_ path: String) { lock.lock(); seen.append(path); lock.unlock() }
    var paths: [String] { lock.lock(); defer { lock.unlock() }; return seen }
}
