import Foundation
import XCTest

/// The error catalogue: every code is declared once with its HTTP status, and docs/api.md's table
/// says the same status for it. Read from the sources and the document as text, so a code added
/// anywhere without documentation (or documented with another status) fails here.
final class ErrorCatalogueTests: XCTestCase {
    /// Codes the broker's API never answers with (re-attestation faults, the attester's and the
    /// CLI's own); docs/api.md names them in prose below the table.
    static let neverAnswered: Set = ["attester_unreachable", "attester_timeout", "attester_fault", "report_overdue",
                                     "attester_not_registered", "signature_invalid", "signer_mismatch", "yaml", "usage"]

    func testEveryCodeIsDeclaredOnceAndDocumentedWithItsStatus() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let pattern = try NSRegularExpression(pattern: #"static let \w+ = ErrorCode\("([a-z0-9_]+)", status: (\d+)\)"#)
        var declared: [String: Int] = [:]
        var duplicates: [String] = []
        let files = FileManager.default.enumerator(at: root.appendingPathComponent("Sources"), includingPropertiesForKeys: nil)!
        for case let url as URL in files where url.pathExtension == "swift" {
            let text = try String(contentsOf: url, encoding: .utf8)
            for m in pattern.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                let code = String(text[Range(m.range(at: 1), in: text)!]), status = Int(text[Range(m.range(at: 2), in: text)!])!
                if declared.updateValue(status, forKey: code) != nil { duplicates.append(code) }
            }
        }
        XCTAssertGreaterThan(declared.count, 80)
        XCTAssertEqual(duplicates, [], "each code is declared once")

        var documented: [String: Int] = [:]
        let row = try NSRegularExpression(pattern: #"^\| (\d{3})[^|]*\| (.*)\|\s*$"#), tick = try NSRegularExpression(pattern: #"`([a-z0-9_]+)`"#)
        for line in try String(contentsOf: root.appendingPathComponent("docs/api.md"), encoding: .utf8).split(separator: "\n").map(String.init) {
            guard let m = row.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)) else { continue }
            let status = Int(line[Range(m.range(at: 1), in: line)!])!, cell = String(line[Range(m.range(at: 2), in: line)!])
            for t in tick.matches(in: cell, range: NSRange(cell.startIndex..., in: cell)) {
                documented[String(cell[Range(t.range(at: 1), in: cell)!])] = status
            }
        }
        for (code, status) in declared.sorted(by: { $0.key < $1.key }) where !Self.neverAnswered.contains(code) {
            XCTAssertEqual(documented[code], status, "\(code): declared \(status), docs/api.md says \(documented[code].map(String.init) ?? "nothing")")
        }
        let unknown = Set(documented.keys).subtracting(declared.keys).subtracting(["body_too_large"])   // the HTTP server's own
        XCTAssertEqual(unknown, [], "docs/api.md lists codes nothing declares")
    }
}
