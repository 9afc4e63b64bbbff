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
    func testATDXGuestEnrollsWithCollateralVouchdFetchedFromPCS() throws {
        let dir = try TestEnv.tempDir("vouch-fetch")
        defer { try? FileManager.default.removeItem(at: dir) }
        let platform = dir.appendingPathComponent("platform").path
        let made = try TestEnv.run(TestEnv.bin("vouch-attester"), ["simulated-tee-platform", platform])
        XCTAssertEqual(made.status, 0, made.stderr)

        // PCS's answers, from the platform's dcap-qvl collateral document.
        let file = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: platform + "/tdx-collateral").first { $0.hasSuffix(".json") })
        let fmspc = String(file.dropLast(".json".count))
        let doc = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: platform + "/tdx-collateral/" + file))) as? [String: String])
        func chain(_ key: String) -> String { doc[key]!.addingPercentEncoding(withAllowedCharacters: .alphanumerics)! }
        func body(_ key: String, _ object: String) -> [UInt8] { Array("{\"\(key)\":\(doc[object]!),\"signature\":\"\(doc[object + "_signature"]!)\"}".utf8) }
        let routes: [String: HTTPResponse] = [
            "/tdx/certification/v4/tcb?fmspc=\(fmspc)": HTTPResponse(status: 200, headers: [("TCB-Info-Issuer-Chain", chain("tcb_info_issuer_chain"))],
                                                                     body: body("tcbInfo", "tcb_info")),
            "/tdx/certification/v4/qe/identity": HTTPResponse(status: 200, headers: [("SGX-Enclave-Identity-Issuer-Chain", chain("qe_identity_issuer_chain"))],
                                                              body: body("enclaveIdentity", "qe_identity")),
            "/sgx/certification/v4/pckcrl?ca=platform&encoding=der": HTTPResponse(status: 200, headers: [("SGX-PCK-CRL-Issuer-Chain", chain("pck_crl_issuer_chain"))],
                                                                                  body: try Hex.decode(doc["pck_crl"]!)),
            "/IntelSGXRootCA.der": HTTPResponse(status: 200, body: try Hex.decode(doc["root_ca_crl"]!)),
        ]
        let asked = SeenPaths()
        let port = try freePort()
        let pcs = try HTTPServer(listen: .http(host: "127.0.0.1", port: port), threads: 1) { request in
            let target = request.path + request.query.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.reduce("") { $0 + ($0.isEmpty ? "?" : "&") + $1 }
            asked.add(target)
            return routes[target] ?? HTTPResponse(status: 404)
        }
        defer { pcs.stop() }

        let policy = dir.appendingPathComponent("td.yaml")
        // A TPM's PCRs are required of every policy, though no TPM host comes here.
        try Data("""
        {apiVersion: vouch/v1, name: td, version: 1, tdx: {allowAnyMeasurement: true},
         pcrs: {bank: sha256, values: {7: ["\(String(repeating: "0", count: 64))"]}}}
        """.utf8).write(to: policy)
        let ekRoot = dir.appendingPathComponent("ek-root.pem")
        try Data(contentsOf: URL(fileURLWithPath: platform + "/roots/tdx.pem")).write(to: ekRoot)   // any CA: no TPM host comes
        let cache = dir.appendingPathComponent("cache")
        let broker = try BrokerHarness(ekRootFiles: [ekRoot], policy: policy.path, extraArgs: [
            "--allow-simulated-hosts", "--simulated-tee-roots", platform + "/roots", "--fetch-collateral", "intel",
            "--intel-pcs-url", "http://127.0.0.1:\(port)", "--intel-root-ca-crl-url", "http://127.0.0.1:\(port)/IntelSGXRootCA.der",
            "--collateral-cache", cache.path,
        ])
        let tdx = try broker.startTEEAttester("tdx", platform: platform, options: nil, hostname: "cvm-tdx")
        defer { tdx.process.stop() }
        let r = try broker.vouch(["enroll", "--name", "inference", "--out", dir.appendingPathComponent("agents").path], socket: tdx.socket)
        XCTAssertEqual(r.status, 0, r.stderr + tdx.process.log + broker.log)
        XCTAssertEqual(Set(asked.paths), Set(routes.keys), "the four PCS requests")
        XCTAssertEqual(asked.paths.count, 4, "fetched once: registration and enrollment share the cache")
        XCTAssertTrue(FileManager.default.fileExists(atPath: cache.appendingPathComponent("tdx/\(fmspc)/tcbinfo_response.json").path))
        XCTAssertTrue(broker.log.contains("collateral fetched on demand from Intel PCS http://127.0.0.1:\(port)"), broker.log)
    }
}

/// The request targets a handler saw, from its threads.
final class SeenPaths: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [String] = []
    func add(_ path: String) { lock.lock(); seen.append(path); lock.unlock() }
    var paths: [String] { lock.lock(); defer { lock.unlock() }; return seen }
}
