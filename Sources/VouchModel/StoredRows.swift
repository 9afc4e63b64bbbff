import Foundation
import VouchEventLog

/// One row of a query result, as both stores read it: columns by position, times as seconds since
/// 1970 in a floating-point column, booleans as 0/1 integers.
public protocol StoredRow {
    func isNull(_ i: Int32) -> Bool
    func text(_ i: Int32) -> String
    func int(_ i: Int32) -> Int64
    func real(_ i: Int32) -> Double
    func bytes(_ i: Int32) -> [UInt8]
}

extension StoredRow {
    public func date(_ i: Int32) -> Date { Date(timeIntervalSince1970: real(i)) }
    public func optionalDate(_ i: Int32) -> Date? { isNull(i) ? nil : date(i) }
    public func optionalText(_ i: Int32) -> String? { isNull(i) ? nil : text(i) }
    public func optionalInt(_ i: Int32) -> Int64? { isNull(i) ? nil : int(i) }
    public func optionalBytes(_ i: Int32) -> [UInt8]? { isNull(i) ? nil : bytes(i) }
}

/// The records both stores read, from the same columns in the same order: one mapping, so the
/// SQLite and PostgreSQL stores cannot drift apart in how a stored value reads back (unknown
/// stored kinds and states read as each closed type's documented fallback).
public enum StoredRecords {
    public static let hostColumns = """
    id, hostname, ek_public, ek_certificate, ek_issuer, ak_public, ak_name, ak_algorithm, ak_state, activation_digest,
    activation_expires_at, activation_failures, registered_at, updated_at, labels, blocked_reason, version, platform
    """

    public static func host(_ r: some StoredRow) -> HostRecord {
        HostRecord(id: r.text(0), hostname: r.text(1), ekPublic: r.bytes(2), ekCertificate: r.bytes(3), ekIssuer: r.text(4),
                   akPublic: r.bytes(5), akName: r.bytes(6), akAlgorithm: r.text(7), akState: AKState(rawValue: r.text(8)) ?? .pending,
                   activationDigest: r.optionalBytes(9), activationExpiresAt: r.optionalDate(10),
                   activationFailures: Int(r.int(11)), registeredAt: r.date(12), updatedAt: r.date(13))
            .withLabels(StoredJSON.labels(r.text(14))).withBlock(r.optionalText(15)).withVersion(r.int(16)).withPlatform(HostPlatform(stored: r.text(17)))
    }

    public static let trustColumns = """
    host_id, state, since, mode, attester_url, host_cert_serial, host_key_pin, simulated, last_verdict_at, last_contact_at,
    failures, faults, unreachable_since, last_problem
    """

    public static func trust(_ r: some StoredRow) -> HostTrust {
        HostTrust(hostID: r.text(0), state: TrustState(rawValue: r.text(1)) ?? .unknown, since: r.date(2), mode: AttestationMode(rawValue: r.text(3)) ?? .push,
                  attesterURL: r.optionalText(4), hostCertificateSerial: r.optionalText(5), hostKeyPin: r.optionalText(6), simulated: r.int(7) != 0,
                  lastVerdictAt: r.optionalDate(8), lastContactAt: r.optionalDate(9), consecutiveFailures: Int(r.int(10)),
                  consecutiveFaults: Int(r.int(11)), unreachableSince: r.optionalDate(12), lastProblem: r.optionalText(13))
    }

    /// The hosts the scheduler may re-attest (`TrustStore.attestableHosts`): no parameters.
    public static let attestableQuery = """
    SELECT h.id, h.labels, h.ek_issuer, t.mode, t.state, h.platform FROM hosts h JOIN host_trust t ON t.host_id = h.id
    WHERE h.deleted_at IS NULL AND h.ak_state = 'active' AND h.blocked_reason IS NULL ORDER BY h.id
    """

    public static func attestable(_ r: some StoredRow) -> AttestableHost {
        AttestableHost(id: r.text(0), labels: StoredJSON.labels(r.text(1)) ?? [:], ekIssuer: r.text(2),
                       mode: AttestationMode(rawValue: r.text(3)) ?? .push, state: TrustState(rawValue: r.text(4)) ?? .unknown,
                       platform: HostPlatform(stored: r.text(5)))
    }

    public static let attestationColumns = """
    id, host_id, at, kind, trusted, codes, message, agent_name, nonce, policy_name, policy_version, policy_sha256, pcr_digest, serial, claims, pcrs
    """

    public static func attestation(_ r: some StoredRow) -> AttestationRecord {
        AttestationRecord(id: r.int(0), hostID: r.text(1), at: r.date(2), kind: AttestationKind(stored: r.text(3)), trusted: r.int(4) != 0,
                          codes: r.text(5).split(separator: ",").map(String.init), message: r.text(6),
                          agentName: r.optionalText(7), nonce: r.optionalText(8), policyName: r.optionalText(9),
                          policyVersion: r.optionalInt(10).map(Int.init), policySHA256: r.optionalText(11),
                          pcrDigest: r.optionalText(12), serial: r.optionalText(13), claims: r.optionalText(14).flatMap(StoredJSON.decode),
                          pcrs: r.optionalText(15).flatMap(StoredJSON.decode))
    }

    public static let certificateColumns = "serial, host_id, agent_name, spiffe_id, not_before, not_after, pem, attestation_id, revoked_at, revocation_reason, issuer"

    public static func certificate(_ r: some StoredRow) -> CertificateRecord {
        CertificateRecord(serial: r.text(0), hostID: r.text(1), agentName: r.text(2), spiffeID: r.text(3), notBefore: r.date(4),
                          notAfter: r.date(5), pem: r.text(6), attestationID: r.int(7), revokedAt: r.optionalDate(8),
                          revocationReason: r.optionalInt(9).map(RevocationReason.init(stored:)), issuer: r.text(10))
    }

    public static let eventColumns = "id, at, type, data"

    public static func event(_ r: some StoredRow) -> EventRecord {
        EventRecord(id: r.int(0), at: r.date(1), type: OutboxEventType(stored: r.text(2)), data: r.text(3))
    }

    public static let tokenColumns = "id, name, scope, digest, created_at, revoked_at"

    public static func token(_ r: some StoredRow) -> TokenRecord {
        TokenRecord(id: r.text(0), name: r.text(1), scope: TokenScope(rawValue: r.text(2)) ?? .read, digest: r.bytes(3), createdAt: r.date(4),
                    revokedAt: r.optionalDate(5))
    }

    public static let checkpointColumns = "size, root, note, cosignatures, published_at"

    public static func checkpoint(_ r: some StoredRow) -> PublishedCheckpoint {
        PublishedCheckpoint(size: UInt64(r.int(0)), root: r.bytes(1), note: r.text(2),
                            cosignatures: r.text(3).split(separator: "\n").map { $0 + "\n" }, publishedAt: r.date(4))
    }

    public static let crlColumns = "issuer, number, der, this_update, next_update"

    public static func crl(_ r: some StoredRow) -> CRLRecord {
        CRLRecord(issuer: r.text(0), number: UInt64(r.int(1)), der: r.bytes(2), thisUpdate: r.date(3), nextUpdate: r.date(4))
    }
}
