import Foundation
import XCTest
import VouchCore
import VouchTPMWire

/// A test fixture from `Tests/Fixtures` in this repository (data files with their provenance and
/// licence in `Tests/Fixtures/README.md`). A missing fixture is a test failure, never a skip: a
/// clean checkout must test what CI tests.
public func fixture(_ path: String) throws -> URL {
    let url = fixturesRoot.appendingPathComponent(path)
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw TestFailure("fixture missing: \(url.path) (fixtures are committed under Tests/Fixtures; see its README.md)")
    }
    return url
}

/// `Tests/Fixtures`, found from this file's location (Tests/VouchTestSupport/Fixtures.swift).
public let fixturesRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// An error that fails the test that throws it (unlike `XCTSkip`), for a precondition the test
/// cannot do without: a missing fixture or tool, or a state it timed out waiting for.
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A real quote from a GCE Shielded VM (go-attestation test data; see Tests/Fixtures/README.md):
/// RSA-2048 AK, RSASSA-PKCS1-v1_5 with SHA-1, all 24 SHA-1 PCRs, empty extraData.
public struct GCPQuoteFixture {
    public let akPublic: [UInt8]    // TPMT_PUBLIC
    public let attest: [UInt8]      // TPMS_ATTEST
    public let signature: [UInt8]   // TPMT_SIGNATURE
    public let pcrs: PCRValues      // SHA-1 bank from the log's PCR list
    public let eventLog: [UInt8]    // the raw TCG event log the VM booted with

    public init() throws {
        let url = try fixture("tpm-eventlog/quote-gcp-windows-shielded-vm/windows_gcp_shielded_vm.json")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        let ak = json["AK"] as! [String: Any], quote = json["Quote"] as! [String: Any], log = json["Log"] as! [String: Any]
        akPublic = [UInt8](Data(base64Encoded: ak["Public"] as! String)!)
        attest = [UInt8](Data(base64Encoded: quote["Quote"] as! String)!)
        signature = [UInt8](Data(base64Encoded: quote["Signature"] as! String)!)
        var values: [Int: [UInt8]] = [:]
        for entry in log["PCRs"] as! [[String: Any]] where entry["DigestAlg"] as? Int == 3 {   // Go's crypto.SHA1
            values[entry["Index"] as! Int] = [UInt8](Data(base64Encoded: entry["Digest"] as! String)!)
        }
        pcrs = PCRValues([.sha1: values])
        eventLog = [UInt8](Data(base64Encoded: log["Raw"] as! String)!)
    }

    public func akTPMPublic() throws -> TPMTPublic {
        var r = ByteReader(akPublic)
        return try TPMTPublic(from: &r)
    }
}
