import Foundation
import VouchCore
import VouchCrypto
import VouchLogClient
import VouchTLog

extension ErrorCode {
    /// The log given to check revocation against does not extend a checkpoint the receipt's
    /// proofs were verified against: it is smaller, or its first entries make another root (the
    /// log showed the verifier another tree than the receipt's).
    public static let receiptLogInconsistent = ErrorCode("receipt_log_inconsistent", status: 403)
}

/// What reading the whole log (`ReceiptVerifier.Inputs.log`, check 14) established: the
/// certificate has no revocation entry at or before the receipt's time in the log's first `size`
/// entries. Nothing is known of entries appended after that checkpoint.
public struct LogRevocationAnswer: Sendable {
    /// The log's checkpoint the answer covers.
    public let origin: String
    public let size: UInt64
    /// The time of the log's last entry (the broker's clock when it recorded that decision); nil
    /// for an empty log.
    public let lastEntryTime: Date?
    /// Cosignatures on that checkpoint by the witness keys given, with their times.
    public let cosignatures: [Cosignature]
    /// The first revocation entry for the certificate, when it is after the receipt's time
    /// (information: the receipt came before it).
    public let revokedLater: Revocation?

    public struct Cosignature: Sendable, Equatable {
        public let witness: String
        public let time: Date
    }

    public struct Revocation: Sendable, Equatable {
        public let index: UInt64
        public let time: Date
        public let reason: String
    }
}

extension ReceiptVerifier {
    /// Check 14: the log from `source` is this log (checkpoint signed by the trust document's log
    /// key, `receipt_log_unverified`), extends the verified checkpoints of the bundle's proofs
    /// (`receipt_log_inconsistent`), its entries make its root (`receipt_log_unverified`), and none
    /// of them revokes the certificate (by its digest or its serial: the broker writes both, and
    /// either names it) at or before `receiptTime` (`receipt_revoked`).
    func checkLog(_ source: any LogSource, certDigest: String, serial: String, receiptTime: Date, loggedAt: Date?, bundleCheckpoints: [CheckpointBody],
                  witnesses: [NoteVerifierKey], witnessThreshold: Int = 0) -> (LogRevocationAnswer?, [ReceiptViolation]) {
        func violation(_ code: ErrorCode, _ message: String) -> ReceiptViolation { ReceiptViolation(code: code, message: message) }
        let client = LogClient(source: source, logKey: trust.logKey)
        let checkpoint: VerifiedCheckpoint
        do { checkpoint = try client.checkpoint() } catch {
            return (nil, [violation(.receiptLogUnverified, "the log's checkpoint from \(source.location) is not this log's: \(Self.message(error))")])
        }
        var violations: [ReceiptViolation] = []
        for older in bundleCheckpoints where older.size > checkpoint.size {
            violations.append(violation(.receiptLogInconsistent, "the log from \(source.location) has \(checkpoint.size) entries, fewer than the "
                                        + "receipt's checkpoint of \(older.size): it does not extend it"))
        }
        let scan: VerifiedLogScan
        do {
            scan = try client.scan(checkpoint, prefixSizes: Set(bundleCheckpoints.map(\.size))) { _, bytes in
                guard let entry = try? LogEntry(bytes: bytes), entry.kind == .revocation else { return false }
                return entry["certificate"] == certDigest || entry["serial"] == serial
            }
        } catch {
            return (nil, violations + [violation(.receiptLogUnverified, "the log's entries from \(source.location) do not verify: \(Self.message(error))")])
        }
        for older in bundleCheckpoints {
            if let root = scan.prefixRoots[older.size], root != older.rootHash {
                violations.append(violation(.receiptLogInconsistent, "the log's first \(older.size) entries make another root than the receipt's "
                                            + "checkpoint of that size: the log forked"))
            }
        }
        var revokedLater: LogRevocationAnswer.Revocation?
        for (index, bytes) in scan.selected {
            // Verified bytes, parsed by `select` already.
            guard let entry = try? LogEntry(bytes: bytes), let time = Date.parseRFC3339(entry.time) else {
                violations.append(violation(.receiptLogUnverified, "the log's revocation entry \(index) for this certificate has no readable time"))
                continue
            }
            if time <= receiptTime {
                violations.append(violation(.receiptRevoked, "the log records the certificate's revocation at \(entry.time) (entry \(index), "
                                            + "\(entry["reason"] ?? "")), at or before the receipt's time (\(receiptTime.iso8601))"))
            } else if let reason = entry["reason"], Self.compromiseReasonNames.contains(reason), !(loggedAt.map { $0 < time } ?? false) {
                violations.append(violation(.receiptRevoked, "the log records the certificate's revocation at \(entry.time) (entry \(index), \(reason): "
                                            + "a compromised key or a failed attestation): whoever held the key could date a receipt before that, "
                                            + "and the log holds none of this receipt from before"))
            } else if revokedLater == nil {
                revokedLater = .init(index: index, time: time, reason: entry["reason"] ?? "")
            }
        }
        var cosignatures: [LogRevocationAnswer.Cosignature] = []
        if !witnesses.isEmpty {
            do {
                let note = try UnverifiedNote(Array(checkpoint.note.utf8), maxBytes: LogLimits.maxCheckpointBytes).verify([trust.logKey] + witnesses)
                cosignatures = note.verifications.compactMap { v in
                    guard witnesses.contains(v.key), let t = v.timestamp else { return nil }
                    return .init(witness: v.key.name, time: Date(timeIntervalSince1970: TimeInterval(t)))
                }
            } catch {
                violations.append(violation(.receiptLogUnverified, "a witness cosignature on the log's checkpoint does not verify: \(Self.message(error))"))
            }
        }
        // The witnesses a receipt requires vouch for this checkpoint too: else whoever holds the
        // log key could show a copy that extends the receipt's checkpoints but omits a revocation.
        if witnessThreshold > 0, Set(cosignatures.map(\.witness)).count < witnessThreshold {
            violations.append(violation(.receiptWitnessesInsufficient, "the log's checkpoint (size \(checkpoint.size)) carries "
                                        + "\(Set(cosignatures.map(\.witness)).count) of the \(witnessThreshold) witness cosignatures required"))
        }
        let lastTime = scan.lastEntry.flatMap { try? LogEntry(bytes: $0) }.flatMap { Date.parseRFC3339($0.time) }
        return (LogRevocationAnswer(origin: checkpoint.body.origin, size: checkpoint.size, lastEntryTime: lastTime,
                                    cosignatures: cosignatures, revokedLater: revokedLater), violations)
    }
}
