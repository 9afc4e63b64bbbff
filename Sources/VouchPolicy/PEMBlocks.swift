import VouchCore

/// PEM text as a policy file carries it inline (RFC 7468), read strictly and without OpenSSL:
/// the pure decoder turns it into DER, and VouchPolicyFiles then checks the DER parses.
enum PEMBlocks {
    struct Refusal: Error { let reason: String }

    /// The DER of every `label` block in `text`, in order. Checks, in order:
    /// 1. each line, trimmed of surrounding spaces, tabs and a carriage return, is blank outside a
    ///    block, or `-----BEGIN label-----` (another label is refused, as is any other text: no
    ///    explanatory text, no headers such as `Proc-Type`);
    /// 2. inside a block, every line is non-empty base64 alphabet (`A-Z a-z 0-9 + / =`) until
    ///    `-----END label-----`, and a block left open is refused;
    /// 3. a block's lines joined are canonical padded base64 (`Base64.decode`: `=` only at the
    ///    end, zero pad bits) of at least one byte;
    /// 4. there are between 1 and `maxBlocks` blocks.
    static func decode(_ text: String, label: String, maxBlocks: Int) throws(Refusal) -> [[UInt8]] {
        let begin = "-----BEGIN \(label)-----", end = "-----END \(label)-----"
        var blocks: [[UInt8]] = []
        var body: String? = nil
        // Lines as bytes: a String would read "\r\n" as one character and never split it.
        for (n, raw) in Array(text.utf8).split(separator: 10, omittingEmptySubsequences: false).enumerated() {
            let line = String(decoding: trimmed(raw), as: UTF8.self)
            if body != nil {
                if line == end {
                    guard let der = try? Base64.decode(body!, field: label), !der.isEmpty else {
                        throw Refusal(reason: "PEM block \(blocks.count + 1) is not canonical base64")
                    }
                    blocks.append(der)
                    body = nil
                } else if !line.isEmpty, line.utf8.allSatisfy(isBase64) {
                    body!.append(line)
                } else {
                    throw Refusal(reason: "line \(n + 1) of the value is not base64 inside a \(label) block (headers and blank lines are refused)")
                }
            } else if line == begin {
                guard blocks.count < maxBlocks else { throw Refusal(reason: "holds more than \(maxBlocks == 1 ? "one" : "\(maxBlocks)") \(label) block\(maxBlocks == 1 ? "" : "s")") }
                body = ""
            } else if !line.isEmpty {
                let other = line.hasPrefix("-----BEGIN ") && line.hasSuffix("-----")
                    ? "a \(line.dropFirst(11).dropLast(5).prefix(40)) block, not \(label)" : "text outside a \(begin) block"
                throw Refusal(reason: "line \(n + 1) of the value is \(other)")
            }
        }
        guard body == nil else { throw Refusal(reason: "PEM block \(blocks.count + 1) has no \(end) line") }
        guard !blocks.isEmpty else { throw Refusal(reason: "holds no \(begin) block") }
        return blocks
    }

    private static func trimmed(_ line: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let blank: (UInt8) -> Bool = { $0 == 32 || $0 == 9 || $0 == 13 }
        guard let first = line.firstIndex(where: { !blank($0) }), let last = line.lastIndex(where: { !blank($0) }) else { return [] }
        return line[first...last]
    }

    private static func isBase64(_ c: UInt8) -> Bool {
        (65...90).contains(c) || (97...122).contains(c) || (48...57).contains(c) || c == 43 || c == 47 || c == 61
    }
}
