import Foundation
import XCTest
import VouchAttestation
import VouchTEEWire
import VouchCrypto
import VouchTestSupport

/// The compiled-in AMD roots are the repository's certs/amd, byte for byte, and load pinned.
final class PinnedRootsTests: XCTestCase {
    func testCompiledInAMDRootsAreCertsAMD() throws {
        let dir = fixturesRoot.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("certs/amd")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".pem") }.sorted()
        XCTAssertEqual(AMDRoots.chains.map(\.file).sorted(), files)
        for (file, pem) in AMDRoots.chains {
            let onDisk = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
            // Same certificates (the files on disk may end lines with CR LF, as AMD serves them).
            XCTAssertEqual(try Certificate.chain(pem: pem).map { try $0.der }, try Certificate.chain(pem: onDisk).map { try $0.der }, file)
        }
        let store = try AMDRoots.trustStore()
        XCTAssertEqual(Set(store.products.keys), Set(SNPProduct.allCases))
    }
}
