import Foundation
import VouchCore
import VouchEventLog
import VouchPolicy
import VouchTPMWire

extension ErrorCode {
    public static let eventLogMalformed = ErrorCode("event_log_malformed", status: 400)
    public static let modelLogMalformed = ErrorCode("model_log_malformed", status: 400)
    public static let modelLogMismatch = ErrorCode("model_log_mismatch", status: 403)
    public static let clockRegressed = ErrorCode("clock_regressed", status: 403)
    public static let clockNotSafe = ErrorCode("clock_not_safe", status: 403)
    /// The TPM's firmwareVersion is below the host's last accepted one.
    public static let firmwareDowngraded = ErrorCode("firmware_downgraded", status: 403)
    /// The TPM's firmwareVersion is below the policy's `tpm.minimumFirmwareVersion`.
    public static let firmwareTooOld = ErrorCode("firmware_too_old", status: 403)
}

/// Evidence that passed quote verification, log replay, clock checks and policy: the only input
/// certificate issuance accepts. Only `Appraiser` creates one.
public struct TrustedEvidence: Sendable {
    public let hostID: String
    public let quote: VerifiedQuote
    public let claims: EvidenceClaims
    public let policyName: String
    public let policyVersion: Int
    public let policySHA256: String
    public let pcrBank: HashAlg
    /// The policy's TTL, capped at its re-attestation interval plus grace.
    public let certificateTTL: Double
}

public enum Appraisal: Sendable {
    case trusted(TrustedEvidence)
    /// Every violation found, and the claims established before the refusal (for the audit trail
    /// and `vouch policy test`), if the logs got that far.
    case rejected([PolicyViolation], EvidenceClaims?)
}

public enum Appraiser {
    /// Appraises a verified quote with the logs that came with it. Checks, in order, refusing at
    /// the first stage that fails (a stage reports every violation it finds):
    /// 1. the firmware event log, if sent, parses (`event_log_malformed`); replays — in every
    ///    quoted bank it covers — to the quoted value of every quoted PCR it extends, and covers at
    ///    least one (`event_log_mismatch`); then only the events of those PCRs are kept, and each
    ///    whose digest is defined over its data must carry data hashing to it (`event_data_mismatch`,
    ///    `TCGEventLog.verify`). Boot claims are read from the kept events only;
    /// 2. the model log, if sent, parses and replays to the quoted SHA-256 PCR 23
    ///    (`model_log_malformed`, `model_log_mismatch`; PCR 23 must then be quoted);
    /// 3. the TPM clock: resetCount and restartCount never go backwards from the host's last
    ///    accepted quote, nor, within one boot with `safe` set, the clock by more than
    ///    `clockTolerance` milliseconds (`clock_regressed`) — the caller allows the time between
    ///    this quote's nonce and a later-recorded previous quote, since quotes made in clock order
    ///    may reach the broker out of order;
    ///    the TPM's firmwareVersion is not below the policy's `tpm.minimumFirmwareVersion`
    ///    (`firmware_too_old`) nor, unless `tpm.allowFirmwareDowngrade`, below the host's last
    ///    accepted one (`firmware_downgraded`);
    ///    a policy with `clock.requireSafe` refuses `safe = 0` (`clock_not_safe`, worth retrying);
    /// 4. the policy (`Policy.evaluate`): freshness, agent key type, PCRs, event-log claims and
    ///    model rules, every violation reported.
    public static func appraise(hostID: String, quote: VerifiedQuote, eventLog: [UInt8]?, modelLog: [UInt8]?,
                                previousClock: ClockState?, clockTolerance: UInt64 = 0, policy: Policy, evidenceAge: TimeInterval? = nil,
                                agentKeyType: String? = nil, digester: Digester) -> Appraisal {
        // 1
        var boot: BootClaims?
        if let eventLog {
            let log: TCGEventLog
            do { log = try TCGEventLog(bytes: eventLog) } catch let e as VouchError {
                return .rejected([PolicyViolation(code: .eventLogMalformed, path: "eventLog", expected: "a TCG PC Client event log", actual: e.message)], nil)
            } catch { return .rejected([PolicyViolation(code: .eventLogMalformed, path: "eventLog", expected: "a TCG PC Client event log", actual: "unparseable")], nil) }
            switch log.verify(quotedPCRs: quote.pcrs.values, excluding: [ModelLog.pcr], using: digester) {
            case let .verified(verified):
                boot = verified.claims
            case let .rejected(violations):
                return .rejected(violations.map { PolicyViolation(code: $0.code, path: $0.path, expected: $0.expected, actual: $0.actual) }, nil)
            }
        }
        // 2
        var model: ModelClaims?
        if let modelLog {
            let log: ModelLog
            do { log = try ModelLog(json: modelLog) } catch let e as VouchError {
                return .rejected([PolicyViolation(code: .modelLogMalformed, path: "modelLog", expected: "CEL JSON of vouch-model records", actual: e.message)], nil)
            } catch { return .rejected([PolicyViolation(code: .modelLogMalformed, path: "modelLog", expected: "CEL JSON", actual: "unparseable")], nil) }
            guard let quoted = quote.pcrs.values[.sha256]?[ModelLog.pcr] else {
                return .rejected([PolicyViolation(code: .modelLogMismatch, path: "modelLog", expected: "sha256 PCR 23 quoted", actual: "not quoted")], nil)
            }
            let replayed = log.replay(using: digester)
            guard replayed == quoted else {
                return .rejected([PolicyViolation(code: .modelLogMismatch, path: "modelLog.sha256.23", expected: Hex.encode(quoted), actual: Hex.encode(replayed))], nil)
            }
            model = log.claims(using: digester)
        }
        // 3
        let clock = ClockState(quote.clockInfo, firmwareVersion: quote.attest.firmwareVersion)
        var rebooted = false
        if let prev = previousClock {
            let now = (clock.resetCount, clock.restartCount), before = (prev.resetCount, prev.restartCount)
            if now < before {
                return .rejected([PolicyViolation(code: .clockRegressed, path: "clock.resetCount/restartCount",
                                                  expected: ">= \(before.0)/\(before.1)", actual: "\(now.0)/\(now.1)")], nil)
            }
            rebooted = now > before
            if !rebooted && clock.safe && clock.clock.addingReportingOverflow(clockTolerance).partialValue < prev.clock {
                return .rejected([PolicyViolation(code: .clockRegressed, path: "clock.clock",
                                                  expected: ">= \(prev.clock)" + (clockTolerance > 0 ? " - \(clockTolerance)" : ""), actual: "\(clock.clock)")], nil)
            }
        }
        let firmware = quote.attest.firmwareVersion
        if let minimum = policy.minimumFirmwareVersion, firmware < minimum {
            return .rejected([PolicyViolation(code: .firmwareTooOld, path: "tpm.minimumFirmwareVersion",
                                              expected: ">= \(String(minimum, radix: 16))", actual: String(firmware, radix: 16))], nil)
        }
        if let before = previousClock?.firmwareVersion, firmware < before, !policy.allowFirmwareDowngrade {
            return .rejected([PolicyViolation(code: .firmwareDowngraded, path: "tpm.firmwareVersion",
                                              expected: ">= \(String(before, radix: 16)) (the last accepted)", actual: String(firmware, radix: 16))], nil)
        }
        let claims = EvidenceClaims(boot: boot, model: model, clock: clock, rebootedSinceLastAttestation: rebooted)
        if policy.requireSafeClock && !clock.safe {
            return .rejected([PolicyViolation(code: .clockNotSafe, path: "clock.requireSafe", expected: "safe = 1", actual: "safe = 0 (retry after the TPM records its clock)")], claims)
        }
        // 4
        switch policy.evaluate(PolicyInput(pcrs: quote.pcrs, claims: claims, evidenceAge: evidenceAge, agentKeyType: agentKeyType)) {
        case .satisfied:
            return .trusted(TrustedEvidence(hostID: hostID, quote: quote, claims: claims,
                                            policyName: policy.name, policyVersion: policy.version, policySHA256: policy.sha256,
                                            pcrBank: policy.pcrBank,
                                            certificateTTL: min(policy.certificateTTL, policy.reattestation.interval + policy.reattestation.grace)))
        case let .violated(v):
            return .rejected(v, claims)
        }
    }
}
