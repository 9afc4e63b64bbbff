import Foundation
import XCTest
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchYAML

/// Registration entries as the attester reads them, and workload attestation of a real process
/// (this one) through /proc.
final class WorkloadAttestationTests: XCTestCase {
    func parse(_ text: String) throws -> WorkloadEntries {
        try WorkloadEntries(document: try YAMLParser.parse(Array(text.utf8), file: "entries.yaml"))
    }

    func testEntriesAreReadStrictlyAndMatchBySubset() throws {
        let entries = try parse("""
        entries:
          - agent: payments
            selectors: [unix:uid:1001, unix:path:/opt/payments/agent]
          - agent: reports
            selectors: [unix:user:reports]
            keyType: p384
        """)
        XCTAssertEqual(entries.entries.map(\.agent), ["payments", "reports"])
        XCTAssertEqual(entries.entries[1].keyType, "p384")
        let workload: Set<WorkloadSelector> = [.init(kind: .uid, value: "1001"), .init(kind: .path, value: "/opt/payments/agent"), .init(kind: .gid, value: "5")]
        XCTAssertEqual(entries.matching(workload).map(\.agent), ["payments"])
        XCTAssertEqual(entries.matching([.init(kind: .uid, value: "1001")]).map(\.agent), [], "every selector of an entry must hold")
        for bad in [
            "entries:\n  - agent: a\n    selectors: [unix:pid:1]\n",                 // a kind SPIRE's unix attestor has not
            "entries:\n  - agent: a\n    selectors: [unix:uid:x]\n",                 // not a number
            "entries:\n  - agent: a\n    selectors: [unix:path:relative]\n",         // not absolute
            "entries:\n  - agent: a\n    selectors: [unix:sha256:ABC]\n",            // not 64 lowercase hex
            "entries:\n  - agent: a\n    selectors: []\n",                           // no selector: would match everyone
            "entries:\n  - agent: a/b\n    selectors: [unix:uid:1]\n",               // not a name
            "entries:\n  - agent: a\n    selectors: [unix:uid:1]\n  - agent: a\n    selectors: [unix:uid:2]\n",   // twice
            "entries:\n  - agent: a\n    selectors: [unix:uid:1]\n    ttl: 1h\n",    // unknown key
            "entries:\n  - agent: a\n    selectors: [unix:uid:1]\n    keyType: rsa\n",
            "other: 1\n",
        ] {
            XCTAssertThrowsError(try parse(bad), bad) { XCTAssertEqual(($0 as? VouchError)?.code, .workloadEntriesInvalid, bad) }
        }
    }

    func testThisProcessIsAttestedByItsCredentialsAndExecutable() throws {
        let attestor = WorkloadAttestor()
        let pid = getpid()
        let selectors = try attestor.selectors(pid: pid, uid: getuid(), gid: getgid())
        XCTAssertTrue(selectors.contains(.init(kind: .uid, value: "\(getuid())")))
        XCTAssertTrue(selectors.contains(.init(kind: .gid, value: "\(getgid())")))
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        XCTAssertTrue(selectors.contains(.init(kind: .path, value: exe)))
        let digest = Hex.encode(try Crypto.digestFile(exe).digest)
        XCTAssertTrue(selectors.contains(.init(kind: .sha256, value: digest)))
        // Without sha256 entries the executable is not hashed.
        XCTAssertFalse(try WorkloadAttestor(digestExecutables: false).selectors(pid: pid, uid: getuid(), gid: getgid()).contains { $0.kind == .sha256 })
        // A start time other than the one seen at connection: the pid belongs to another process now.
        XCTAssertThrowsError(try attestor.selectors(pid: pid, uid: getuid(), gid: getgid(), connectedStartTime: "1")) {
            XCTAssertEqual(($0 as? VouchError)?.code, .workloadGone)
        }
        // A process that is gone.
        XCTAssertThrowsError(try attestor.selectors(pid: Int32.max, uid: 0, gid: 0)) { XCTAssertEqual(($0 as? VouchError)?.code, .workloadGone) }
    }
}
