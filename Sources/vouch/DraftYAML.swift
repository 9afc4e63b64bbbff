import Foundation
import VouchAPI
import VouchCore
import VouchPolicy

// What every draft of `vouch policy capture` is written with: an evidence bundle's fields are
// checked as the broker checks them before any is used, and every free-text value goes into the
// YAML as an escaped scalar or a one-line comment — a bundle is a file, and a file can say
// anything (a hostname holding a newline and a `tdx:` section, a label value holding a quote).

/// Refuses a bundle whose identifying fields the broker would never have accepted or answered
/// with: the host id, hostname, labels and time. (PCR values and digests are checked where the
/// TPM draft reads them.)
func checkBundleFields(_ b: EvidenceBundle) throws {
    func refuse(_ what: String) -> UnreadableInput { UnreadableInput(description: "the evidence bundle's \(what); not drafting from it") }
    guard HostFields.isHostID(b.hostId) else { throw refuse("hostId is not 32 lowercase hex digits") }
    guard b.hostname.isEmpty || HostFields.isHostname(b.hostname) else { throw refuse("hostname is not a DNS name") }
    guard b.labels.count <= HostFields.maxLabels else { throw refuse("labels are more than \(HostFields.maxLabels)") }
    for (k, v) in b.labels.sorted(by: { $0.key < $1.key }) {
        guard k.range(of: Policy.labelPattern, options: .regularExpression) != nil, HostFields.isLabelValue(v) else {
            throw refuse("label \(DraftText.quoted(String(k.prefix(64)))) is not a label (names 1-63 of a-z, 0-9, '.', '_', '-', '/'; values up to 253 printable characters)")
        }
    }
    guard Date.parseRFC3339(b.at) != nil else { throw refuse("at is not an RFC 3339 time") }
}

enum DraftText {
    /// `s` as a YAML double-quoted scalar: `"` and `\` escaped, and every control, line-break or
    /// format character (C0, DEL, C1, U+2028, U+2029, U+FEFF) written as an escape.
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if isBreakOrControl(u) {
                    out += u.value <= 0xff ? "\\x" + hex(u.value, 2) : "\\u" + hex(u.value, 4)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// `s` fit for one comment line: each control, line-break or format character becomes a
    /// space, so nothing after it can start a line of YAML.
    static func comment(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { isBreakOrControl($0) ? " " : $0 }))
    }

    private static func isBreakOrControl(_ u: Unicode.Scalar) -> Bool {
        u.value < 0x20 || (0x7f...0x9f).contains(u.value) || u.value == 0x2028 || u.value == 0x2029 || u.value == 0xfeff
    }

    private static func hex(_ v: UInt32, _ digits: Int) -> String {
        let h = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, digits - h.count)) + h
    }
}

/// A policy name made of the characters a name may hold (others become '-'), at most 63.
func draftName(_ name: String) -> String {
    String(name.map { $0.isLetter || $0.isNumber || "._-".contains($0) ? $0 : "-" }.prefix(63))
}

/// A draft's comment lines (each kept to one line), its identity and its `match.labels` (each
/// value a quoted scalar; a name as it is when it is one, which needs no quoting).
func draftHeader(comments: [String], name: String, description: String, labels: [String: String]) -> String {
    var y = comments.map { "# \(DraftText.comment($0))\n" }.joined() + """
    apiVersion: vouch/v1
    name: \(DraftText.quoted(name))
    version: 1
    description: \(DraftText.quoted(description))

    """
    func key(_ k: String) -> String { k.range(of: Policy.labelPattern, options: .regularExpression) != nil ? k : DraftText.quoted(k) }
    if !labels.isEmpty {
        y += "match:\n  labels:\n" + labels.sorted { $0.key < $1.key }.map { "    \(key($0.key)): \(DraftText.quoted($0.value))\n" }.joined()
    }
    return y
}
