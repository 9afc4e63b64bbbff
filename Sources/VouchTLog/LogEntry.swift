import Foundation
import VouchCore

/// One entry of Vouch's transparency log: a short text record of a broker decision or of an
/// agent's receipt, holding digests and names only, never evidence.
///
///     vouch.dev/log-entry/v1
///     kind issuance
///     time 2026-11-30T15:04:05Z
///     host h-1
///     ...
///
/// The first line is `header`; then `kind`, `time`, then exactly the fields of `LogEntryKind.fields`
/// for the kind, in that order, one `key value` per line, each ending in a newline. Values are
/// non-empty and printable ASCII without spaces; digests are `sha256:` and 64 lowercase hex
/// digits; integers are decimal. The exact bytes are the Merkle leaf (RFC 9162 leaf hash over
/// them), so a verifier that knows the values rebuilds the entry and checks its inclusion.
public struct LogEntry: Equatable, Sendable {
    public static let header = "vouch.dev/log-entry/v1"
    /// Longest entry (C2SP tlog-tiles allows 64 KiB; Vouch's are a few hundred bytes).
    public static let maxBytes = 4096

    public let kind: LogEntryKind
    /// RFC 3339 UTC with seconds, as `Date.iso8601` writes it.
    public let time: String
    /// The kind's fields, in `kind.fields` order.
    public let values: [String]

    /// Builds an entry; `fields` must name exactly the kind's fields (any order).
    public init(kind: LogEntryKind, time: Date, fields: [String: String]) throws {
        guard Set(fields.keys) == Set(kind.fields) else {
            throw Self.bad("a \(kind.rawValue) entry has the fields \(kind.fields.joined(separator: ", "))")
        }
        try self.init(kind: kind, time: time.iso8601, values: kind.fields.map { fields[$0]! })
    }

    init(kind: LogEntryKind, time: String, values: [String]) throws {
        guard Self.isTime(time) else { throw Self.bad("the time is not RFC 3339 UTC with seconds") }
        guard values.count == kind.fields.count else { throw Self.bad("wrong number of fields for a \(kind.rawValue) entry") }
        for (key, value) in zip(kind.fields, values) {
            guard Self.isValue(value) else { throw Self.bad("the value of \(key) is empty or not printable ASCII without spaces") }
            if key.hasSuffix("digest") || key == "certificate" || key == "statement" || key == "output" {
                guard Self.isDigest(value) else { throw Self.bad("\(key) is not sha256: and 64 lowercase hex digits") }
            }
        }
        self.kind = kind
        self.time = time
        self.values = values
        guard bytes.count <= Self.maxBytes else { throw Self.bad("the entry is over \(Self.maxBytes) bytes") }
    }

    /// Parses an entry strictly (the exact form `bytes` writes; anything else is refused).
    public init(bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxBytes else { throw Self.bad("the entry is over \(Self.maxBytes) bytes") }
        guard bytes.last == 0x0a, bytes.allSatisfy({ $0 == 0x0a || (0x20...0x7e).contains($0) }) else {
            throw Self.bad("the entry is not printable ASCII lines ending in a newline")
        }
        let lines = String(decoding: bytes.dropLast(), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.count >= 3, lines[0] == Self.header else { throw Self.bad("the first line is not \(Self.header)") }
        func field(_ line: String, _ key: String) throws -> String {
            guard line.hasPrefix(key + " ") else { throw Self.bad("expected the field \(key)") }
            return String(line.dropFirst(key.count + 1))
        }
        guard let kind = LogEntryKind(rawValue: try field(lines[1], "kind")) else { throw Self.bad("unknown entry kind") }
        let time = try field(lines[2], "time")
        guard lines.count == 3 + kind.fields.count else { throw Self.bad("wrong number of fields for a \(kind.rawValue) entry") }
        let values = try zip(kind.fields, lines.dropFirst(3)).map { try field($1, $0) }
        try self.init(kind: kind, time: time, values: values)
        guard self.bytes == bytes else { throw Self.bad("the entry is not in canonical form") }
    }

    /// The value of a field of this kind (nil for a name the kind does not have).
    public subscript(_ key: String) -> String? {
        kind.fields.firstIndex(of: key).map { values[$0] }
    }

    /// The entry's bytes: what the log's leaf hash covers.
    public var bytes: [UInt8] {
        var text = Self.header + "\nkind " + kind.rawValue + "\ntime " + time + "\n"
        for (key, value) in zip(kind.fields, values) { text += key + " " + value + "\n" }
        return Array(text.utf8)
    }

    static func isValue(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 1024 && s.utf8.allSatisfy { (0x21...0x7e).contains($0) }
    }

    static func isDigest(_ s: String) -> Bool {
        s.utf8.count == 71 && s.hasPrefix("sha256:") && s.utf8.dropFirst(7).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    static func isTime(_ s: String) -> Bool {
        // YYYY-MM-DDTHH:MM:SSZ
        let u = Array(s.utf8)
        guard u.count == 20 else { return false }
        for (i, c) in u.enumerated() {
            switch i {
            case 4, 7: guard c == 0x2d else { return false }
            case 10: guard c == 0x54 else { return false }
            case 13, 16: guard c == 0x3a else { return false }
            case 19: guard c == 0x5a else { return false }
            default: guard (0x30...0x39).contains(c) else { return false }
            }
        }
        return true
    }

    static func bad(_ message: String) -> VouchError {
        VouchError(.invalidValue, message, context: ["field": "log_entry"])
    }

    /// `sha256:` and the lowercase hex of a 32-byte digest, the form entries write digests in.
    public static func digest(_ bytes: [UInt8]) -> String { "sha256:" + Hex.encode(bytes) }
}

/// What an entry records. Each kind's fields, in order, are what its entry carries after `kind` and `time`.
public enum LogEntryKind: String, Sendable, CaseIterable {
    /// A certificate the broker issued to an agent, with the decision it rests on.
    case issuance
    /// An appraisal verdict (enrollment refusals and every re-attestation).
    case verdict
    /// A certificate revoked.
    case revocation
    /// An agent's signed receipt for one output, submitted with `POST /v1/receipts`.
    case receipt

    public var fields: [String] {
        switch self {
        case .issuance:
            // certificate: SHA-256 of the certificate's DER; attestation: the decision's record
            // id; attestation-digest: AttestationRecord's digest (docs/receipts.md); ear-digest:
            // SHA-256 of the EAR (compact JWS bytes) in the certificate; policy-digest: the
            // policy file's SHA-256 ("sha256:" form; "none" cannot occur: issuance needs a policy).
            return ["host", "agent", "spiffe", "serial", "certificate", "attestation", "attestation-digest", "ear-digest", "policy-digest"]
        case .verdict:
            // trusted: true or false; policy: the policy's name or "-" when none applied;
            // codes: comma-separated violation codes, "-" when none.
            return ["host", "attestation", "attestation-digest", "trusted", "policy", "codes"]
        case .revocation:
            return ["host", "serial", "certificate", "reason"]
        case .receipt:
            // statement: SHA-256 of the DSSE payload (the in-toto Statement bytes); output: the
            // Statement's subject digest; certificate: the signing agent certificate's DER SHA-256.
            return ["spiffe", "serial", "certificate", "statement", "output"]
        }
    }
}
