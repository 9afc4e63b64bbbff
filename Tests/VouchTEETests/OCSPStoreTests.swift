import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTestSupport

/// The OCSP response store and the chain check, over responses from `openssl ocsp` for a P-384
/// root → intermediate → leaf chain (NVIDIA's GPU and RIM chains are checked the same way).
final class OCSPStoreTests: XCTestCase {
    var pki: OCSPTestPKI!
    var dir: URL!

    override func setUpWithError() throws {
        pki = try OCSPTestPKI()
        dir = pki.dir.appendingPathComponent("store")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { pki = nil }

    func put(_ name: String, _ bytes: [UInt8]) throws { try Data(bytes).write(to: dir.appendingPathComponent(name)) }

    var chain: [Certificate] { [pki.leaf, pki.intermediate.certificate, pki.root.certificate] }

    func leafAnswer(_ status: OCSPTestPKI.IndexStatus, signer: OCSPTestPKI.Signer = .issuer, days: Int? = 1) throws -> [UInt8] {
        try pki.response(for: pki.leaf, issuer: pki.intermediate, signer: signer, index: [(pki.leaf, status)], days: days)
    }

    func intermediateAnswer(_ status: OCSPTestPKI.IndexStatus) throws -> [UInt8] {
        try pki.response(for: pki.intermediate.certificate, issuer: pki.root, index: [(pki.intermediate.certificate, status)])
    }

    func testLookupsByPairAndMalformedFilesReported() throws {
        try put("leaf.der", try leafAnswer(.good))
        try put("intermediate.der", try intermediateAnswer(.good))
        try put("sibling.der", try pki.response(for: pki.sibling, issuer: pki.intermediate, index: [(pki.sibling, .revoked(at: pki.now, reason: nil))]))
        try put("garbage.der", [0x30, 0x82, 0x01])
        try put("error-status.der", try OCSPResponder.errorResponse(2))
        try put(".hidden", [0x00])
        let store = try OCSPStore(directory: dir)
        XCTAssertEqual(store.count, 3)
        XCTAssertEqual(store.problems.map(\.file), ["error-status.der", "garbage.der"])
        XCTAssertEqual(store.problems.map(\.code), [.ocspResponseUnsuccessful, .ocspResponseMalformed])

        guard case .answered(.good) = store.status(of: pki.leaf, issuer: pki.intermediate.certificate, at: pki.now) else { return XCTFail("leaf good") }
        guard case .answered(.good) = store.status(of: pki.intermediate.certificate, issuer: pki.root.certificate, at: pki.now) else { return XCTFail("intermediate good") }
        guard case .answered(.revoked) = store.status(of: pki.sibling, issuer: pki.intermediate.certificate, at: pki.now) else { return XCTFail("sibling revoked") }
        // A pair no stored response names.
        XCTAssertEqual(store.status(of: pki.responder.certificate, issuer: pki.intermediate.certificate, at: pki.now), .missing(refused: []))
        // The leaf's answer has expired two days on: refused, so missing with the reason.
        XCTAssertEqual(store.status(of: pki.leaf, issuer: pki.intermediate.certificate, at: pki.now.addingTimeInterval(2 * 86400)),
                       .missing(refused: [.ocspResponseExpired]))
    }

    func testRefusedAnswersNeverStandForGood() throws {
        let store = OCSPStore(responses: [("a-other-ca.der", try leafAnswer(.good, signer: .otherCA)),
                                          ("b-no-eku.der", try leafAnswer(.good, signer: .delegatedWithoutEKU))])
        XCTAssertEqual(store.status(of: pki.leaf, issuer: pki.intermediate.certificate, at: pki.now),
                       .missing(refused: [.ocspResponseSignatureInvalid, .ocspResponseSignatureInvalid]))
        // A verified revoked answer wins over a verified good one, whatever the file order.
        let both = OCSPStore(responses: [("a.der", try leafAnswer(.good)), ("b.der", try leafAnswer(.revoked(at: pki.now, reason: "superseded"), signer: .delegated))])
        guard case .answered(.revoked(_, 4)) = both.status(of: pki.leaf, issuer: pki.intermediate.certificate, at: pki.now) else { return XCTFail("revoked wins") }
        let unknown = OCSPStore(responses: [("u.der", try pki.response(for: pki.leaf, issuer: pki.intermediate, index: []))])
        XCTAssertEqual(unknown.status(of: pki.leaf, issuer: pki.intermediate.certificate, at: pki.now), .answered(.unknown))
    }

    func testChainSummary() throws {
        let leafGood = try leafAnswer(.good), interGood = try intermediateAnswer(.good)
        let all = try ChainRevocation.check(chain: chain, store: OCSPStore(responses: [("l", leafGood), ("i", interGood)]), at: pki.now)
        XCTAssertEqual(all.entries.map(\.index), [0, 1])   // the self-signed root is not checked
        XCTAssertEqual(all.summary, .allGood)
        XCTAssertNoThrow(try all.requireAllGood(chain: "nvidia-gpu"))

        let revoked = try ChainRevocation.check(chain: chain, at: pki.now, responses: [("l", leafGood), ("i", try intermediateAnswer(.revoked(at: pki.now, reason: nil)))])
        XCTAssertEqual(revoked.summary, .someRevoked)
        XCTAssertThrowsCode(try revoked.requireAllGood(chain: "nvidia-gpu"), .certificateRevokedOCSP)

        let missing = try ChainRevocation.check(chain: chain, at: pki.now, responses: [("l", leafGood)])
        XCTAssertEqual(missing.summary, .someMissing)
        XCTAssertEqual(missing.entries[1].outcome, .missing(refused: []))
        XCTAssertThrowsCode(try missing.requireAllGood(chain: "nvidia-rim"), .revocationStatusUnknown)

        let unknown = try ChainRevocation.check(chain: chain, at: pki.now,
                                                responses: [("l", try pki.response(for: pki.leaf, issuer: pki.intermediate, index: [])), ("i", interGood)])
        XCTAssertEqual(unknown.summary, .someMissing)
        XCTAssertThrowsCode(try unknown.requireAllGood(chain: "nvidia-gpu"), .revocationStatusUnknown)

        // A chain that stops below a self-signed root: its last certificate has no issuer here.
        let short = try ChainRevocation.check(chain: [pki.leaf, pki.intermediate.certificate], at: pki.now, responses: [("l", leafGood), ("i", interGood)])
        XCTAssertEqual(short.summary, .someMissing)
        XCTAssertThrowsCode(try ChainRevocation.check(chain: [], store: OCSPStore(responses: []), at: pki.now), .invalidValue)

        // A GPU device chain leaves out its leaf (the GPU's own attestation certificate).
        let skipped = try ChainRevocation.check(chain: chain, store: OCSPStore(responses: [("i", interGood)]), at: pki.now, skipLeaf: true)
        XCTAssertEqual(skipped.entries.map(\.index), [1])
        XCTAssertEqual(skipped.summary, .allGood)
        XCTAssertThrowsCode(try ChainRevocation.check(chain: [pki.leaf], store: OCSPStore(responses: []), at: pki.now, skipLeaf: true), .invalidValue)
    }

    func testDirectoryLimits() throws {
        XCTAssertThrowsCode(try OCSPStore(directory: dir.appendingPathComponent("absent")), .config)
        try put("big.der", [UInt8](repeating: 0x30, count: OCSPClient.maxResponseBytes + 1))
        let store = try OCSPStore(directory: dir)
        XCTAssertEqual(store.count, 0)
        XCTAssertEqual(store.problems.map(\.code), [.ocspResponseMalformed])
        for i in 0..<OCSPStore.maxFiles { try put("f\(i)", []) }
        XCTAssertThrowsCode(try OCSPStore(directory: dir), .config)
    }
}

extension ChainRevocation {
    static func check(chain: [Certificate], at: Date, responses: [(name: String, der: [UInt8])]) throws -> Result {
        try check(chain: chain, store: OCSPStore(responses: responses), at: at)
    }
}
