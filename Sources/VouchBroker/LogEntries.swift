import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchModel
import VouchTLog

/// The transparency-log entry of each thing the broker records (VouchTLog's `LogEntry` format);
/// the store writes them to the log outbox in the transaction that records the decision.
public struct BrokerLogEntries: LogEntryMaker {
    public init() {}

    public func issuance(_ a: AttestationRecord, certificate c: CertificateRecord) throws -> LogOutboxEntry {
        let certDER = try CertificateDER.fromPEM(c.pem)
        guard let ext = try CertificateDER.extensionValue(certDER, oid: AttestationExtension.oid) else {
            throw VouchError(.internalError, "an issued certificate has no attestation extension", context: ["serial": c.serial])
        }
        let ear = try AttestationExtension.ear(extensionValue: ext)
        guard let policy = a.policySHA256.flatMap(Self.digestValue) else {
            throw VouchError(.internalError, "an issuance has no policy digest", context: ["serial": c.serial])
        }
        let der = Crypto.sha256(certDER)
        let entry = try LogEntry(kind: .issuance, time: a.at, fields: [
            "host": c.hostID, "agent": c.agentName, "spiffe": c.spiffeID, "serial": c.serial,
            "certificate": LogEntry.digest(der), "attestation": "\(a.id)", "attestation-digest": Self.attestationDigest(a),
            "ear-digest": LogEntry.digest(Crypto.sha256(Array(ear.utf8))), "policy-digest": policy,
        ])
        return LogOutboxEntry(entry: entry.bytes, certificate: Hex.encode(der))
    }

    /// A verdict's entry. Its codes are those the public event stream shows (every pull fault reads
    /// `no_evidence`: the log is public, and how a pull failed would tell anyone what answers at a
    /// host-chosen address); the `attestation-digest` covers the exact codes of the audit trail.
    public func verdict(_ a: AttestationRecord) throws -> LogOutboxEntry {
        let entry = try LogEntry(kind: .verdict, time: a.at, fields: [
            "host": a.hostID, "attestation": "\(a.id)", "attestation-digest": Self.attestationDigest(a), "trusted": a.trusted ? "true" : "false",
            "policy": a.policyName ?? "-", "codes": a.codes.isEmpty ? "-" : ReattestationService.publicCodes(a.codes).joined(separator: ","),
        ])
        return LogOutboxEntry(entry: entry.bytes)
    }

    public func revocation(_ c: CertificateRecord) throws -> LogOutboxEntry {
        let der = try Certificate(pem: c.pem).der
        let entry = try LogEntry(kind: .revocation, time: c.revokedAt ?? c.notBefore, fields: [
            "host": c.hostID, "serial": c.serial, "certificate": LogEntry.digest(Crypto.sha256(der)),
            "reason": (c.revocationReason ?? .unspecified).name,
        ])
        return LogOutboxEntry(entry: entry.bytes)
    }

    /// `sha256:` and the digest, from a stored policy digest (64 hex digits, with or without the prefix).
    static func digestValue(_ stored: String) -> String? {
        let hex = stored.hasPrefix("sha256:") ? String(stored.dropFirst(7)) : stored
        let value = "sha256:" + hex.lowercased()
        return value.utf8.count == 71 && hex.allSatisfy(\.isHexDigit) ? value : nil
    }

    /// The `attestation-digest` of a decision (docs/receipts.md): SHA-256 of the compact JSON
    /// array of its history entry's fields as `GET /v1/hosts/{id}/attestations` shows them —
    /// id (decimal, as a string), hostId, at, kind, result, codes joined with commas, agentName,
    /// policy, policySha256, pcrDigest, serial; absent ones null — so an auditor recomputes it.
    public static func attestationDigest(_ a: AttestationRecord) -> String {
        LogEntry.digest(Crypto.sha256(attestationDigestInput(AttestationEntry(a))))
    }

    /// The bytes `attestationDigest` hashes (written here, not by JSONEncoder: this runs inside
    /// every decision's transaction).
    public static func attestationDigestInput(_ e: AttestationEntry) -> [UInt8] {
        let values: [String?] = ["\(e.id)", e.hostId, e.at, e.kind, e.result, e.codes.joined(separator: ","), e.agentName, e.policy,
                                 e.policySha256, e.pcrDigest, e.serial]
        var out: [UInt8] = [0x5b]
        for (i, v) in values.enumerated() {
            if i > 0 { out.append(0x2c) }
            if let v { jsonString(v, into: &out) } else { out += Array("null".utf8) }
        }
        out.append(0x5d)
        return out
    }

    /// A JSON string as Python's `json.dumps(ensure_ascii=False)` and JSONEncoder write it:
    /// `"` and `\` escaped, \b \f \n \r \t, other control characters as \u00XX, the rest as is.
    static func jsonString(_ s: String, into out: inout [UInt8]) {
        out.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: out += [0x5c, 0x22]
            case 0x5c: out += [0x5c, 0x5c]
            case 0x08: out += [0x5c, 0x62]
            case 0x0c: out += [0x5c, 0x66]
            case 0x0a: out += [0x5c, 0x6e]
            case 0x0d: out += [0x5c, 0x72]
            case 0x09: out += [0x5c, 0x74]
            case 0..<0x20: out += Array(String(format: "\\u%04x", b).utf8)
            default: out.append(b)
            }
        }
        out.append(0x22)
    }
}

extension AttestationEntry {
    /// A decision as the history API shows it.
    init(_ a: AttestationRecord) {
        self.init(id: a.id, hostId: a.hostID, at: a.at.iso8601, kind: a.kind.rawValue,
                  result: a.trusted ? "trusted" : (a.codes.isEmpty ? "info" : "rejected"), codes: a.codes, message: a.message,
                  agentName: a.agentName, policy: a.policyName.map { "\($0) v\(a.policyVersion ?? 0)" }, policySha256: a.policySHA256,
                  pcrDigest: a.pcrDigest, serial: a.serial)
    }
}
