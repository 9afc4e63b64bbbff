import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchTestSupport

/// The real vouchd's transparency log, read by an independent verifier: a Go program
/// (Tests/Interop/brokerlog) on Debian's golang.org/x/mod/sumdb/note and sumdb/tlog, built offline.
/// After an enrollment, Go verifies the served checkpoint with the vkey of the trust document
/// `vouch trust get` saved, and proves the issuance entry from the served tiles. Go or the package
/// missing is a failure, never a skip.
final class BrokerLogInteropTests: XCTestCase {
    static let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Interop/brokerlog/main.go")

    func testGoVerifiesTheCheckpointAndProvesTheIssuanceFromTiles() throws {
        let dir = try TestEnv.tempDir("vouch-log-interop")
        defer { try? FileManager.default.removeItem(at: dir) }
        let peer = dir.appendingPathComponent("brokerlog").path
        let build = try TestEnv.run("/usr/bin/go", ["build", "-o", peer, Self.source.path],
                                    env: ["GOPATH": "/usr/share/gocode", "GO111MODULE": "off", "GOPROXY": "off", "GOFLAGS": "",
                                          "GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOCACHE": SignedNoteInteropTests.goCache,
                                          "HOME": dir.path, "PATH": "/usr/bin:/bin"])
        XCTAssertEqual(build.status, 0, "go build: \(build.stderr)")

        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, policy: try ReattestationTests.policy(in: tpm.dir))
        let attester = broker.pushAttester(for: tpm, hostname: "logged")
        _ = try attester.register()
        let agent = try attester.enroll(AgentEnrollRequest(agentName: "logged", csr: try CSR.create(key: try PrivateKey.generate(), commonName: "logged").pem))

        // The trust document, as `vouch trust get` saves it.
        let trustFile = dir.appendingPathComponent("trust.json").path
        let saved = try broker.vouch(["trust", "get", "--output", trustFile])
        XCTAssertEqual(saved.status, 0, saved.stderr)
        let trust = try JSONCodec.decode(TrustDocument.self, from: Array(try Data(contentsOf: URL(fileURLWithPath: trustFile))))
        XCTAssertEqual(trust.log.origin, trust.trustDomain + "/vouch-log")

        // The issuance entry, once a checkpoint covers it (the sequencer runs twice a second).
        let digest = Hex.encode(Crypto.sha256(try Certificate(pem: agent.certificate).der))
        var logged: LogProofResponse?
        for _ in 0..<100 where logged == nil {
            logged = try? broker.client().call("GET", "/v1/log/proof?certificate=\(digest)", as: LogProofResponse.self)
            if logged == nil { Thread.sleep(forTimeInterval: 0.1) }
        }
        let proof = try XCTUnwrap(logged, "the issuance was never logged")
        let entry = try Base64.decode(proof.entry, field: "entry")
        XCTAssertTrue(String(decoding: entry, as: UTF8.self).contains("kind issuance\n"))
        XCTAssertTrue(String(decoding: entry, as: UTF8.self).contains("certificate sha256:\(digest)\n"))

        let go = try TestEnv.run(peer, [broker.url, broker.brokerCAFile, trust.log.vkey, proof.index, proof.entry])
        XCTAssertEqual(go.status, 0, go.stdout + go.stderr)
        XCTAssertTrue(go.stdout.contains("ok entry \(proof.index) proved from the tiles"), go.stdout)
        XCTAssertTrue(go.stdout.contains("ok entry bundle holds entry \(proof.index)"), go.stdout)

        // Another log's key does not verify the checkpoint.
        let other = try NoteSigner(name: trust.log.origin, privateKey: try Ed25519PrivateKey.generate()).verifierKey.vkey
        XCTAssertNotEqual(try TestEnv.run(peer, [broker.url, broker.brokerCAFile, other, proof.index, proof.entry]).status, 0)
    }
}
