import Foundation
import VouchCore
import VouchEventLog
import VouchPolicy
import VouchTPMWire

/// Resolves a host's AK from the TPM2B_PUBLIC it registered. The broker's resolver caches the
/// parsed key and its verify context by those exact bytes (re-attestation verifies every host's
/// quote every interval).
public protocol AttestationKeyResolver: Sendable {
    /// The AK with the scheme and hash its public area fixes; `ak_scheme_not_allowed` for one
    /// that fixes none Vouch verifies with, `quote_signature_invalid` for an unusable key.
    func key(_ akPublic: [UInt8]) -> Result<AttestationKey, VouchError>
}

/// Parses the AK each time: for tools and tests.
public struct UncachedAttestationKeys: AttestationKeyResolver {
    public init() {}

    public func key(_ akPublic: [UInt8]) -> Result<AttestationKey, VouchError> {
        do { return .success(try AttestationKey(tpmPublic: try TPMTPublic(tpm2bPublic: akPublic))) } catch let e as VouchError where e.code == .akSchemeNotAllowed {
            return .failure(e)
        } catch {
            return .failure(VouchError(.quoteSignatureInvalid, "attestation key cannot be used for verification"))
        }
    }
}

/// The TPM quote path: a quote by the host's activated AK, with the PCR values, firmware event
/// log and model log it covers, and the TPM clock it carries.
public struct TPMEvidenceVerifier: EvidenceVerifier {
    public let keys: any AttestationKeyResolver
    /// The hosts' verified event logs (the broker's, one per process), keyed by
    /// `VerificationContext.hostID`; nil: every log is parsed and replayed in full.
    public let eventLogs: VerifiedLogCache?
    public var kind: EvidenceKind { .tpm }

    public init(keys: any AttestationKeyResolver = UncachedAttestationKeys(), eventLogs: VerifiedLogCache? = nil) {
        self.keys = keys
        self.eventLogs = eventLogs
    }

    /// Stage 1: the quote verifies with the host's enrolled AK (`VerificationContext.enrolled`),
    /// bound to `VerificationContext.binding`. Checks, in order, stopping at the first failure:
    /// the AK resolves (`ak_scheme_not_allowed`, `quote_signature_invalid`), then
    /// `QuoteVerifier`'s checks 0–8 with SHA-1 only where the policy's `attestationKey.allowSHA1`
    /// allows it: scheme, signature over the raw TPMS_ATTEST before any field is read, TPM
    /// origin, type, qualifying data = the binding, PCR values hashing to the signed pcrDigest.
    public func authenticate(_ raw: RawEvidence, context: VerificationContext) -> EvidenceAuthentication {
        switch raw.payload {
        case let .tpm(evidence):
            guard let akPublic = context.enrolled.akPublic else {
                return .rejected([VouchError(.quoteSignatureInvalid, "the host has no activated attestation key to verify a quote with")])
            }
            let key: AttestationKey
            switch keys.key(akPublic) {
            case let .success(k): key = k
            case let .failure(e): return .rejected([e])
            }
            switch QuoteVerifier.verify(attest: evidence.attest, signature: evidence.signature, ak: key, expectedQualifyingData: context.binding,
                                        pcrs: evidence.pcrs, allowSHA1: context.policy.allowSHA1AK) {
            case let .verified(quote):
                return .authenticated(AuthenticatedEvidence(device: raw.device, payload: .tpm(quote, eventLog: evidence.eventLog, modelLog: evidence.modelLog)))
            case let .rejected(errors): return .rejected(errors)
            }
        case .sevSNP, .tdx, .azureSNPVTPM, .nvidiaGPU:
            return .rejected([VouchError(.internalError, "the TPM verifier was given evidence of another kind")])
        }
    }

    /// Stage 2: the logs and the clock of an authenticated quote (`verifyQuoted`).
    public func verify(_ evidence: AuthenticatedEvidence, accepted: AcceptedState, context: VerificationContext) -> EvidenceVerification {
        switch evidence.payload {
        case let .tpm(quote, eventLog, modelLog):
            return Self.verifyQuoted(device: evidence.device, quote: quote, eventLog: eventLog, modelLog: modelLog, accepted: accepted,
                                     policy: context.policy, digester: context.digester, eventLogs: eventLogs.map { ($0, context.hostID) })
        case .sevSNP, .tdx, .azureSNPVTPM, .nvidiaGPU:
            return .rejected([VouchError(.internalError, "the TPM verifier was given evidence of another kind").violation(device: evidence.device)], nil)
        }
    }

    /// What a verified quote's logs and clock establish. Checks, in order, refusing at the first
    /// stage that fails (a stage reports every violation it finds):
    /// 1. the firmware event log, if sent, parses (`event_log_malformed`); replays — in every
    ///    quoted bank it covers — to the quoted value of every quoted PCR it extends, and covers at
    ///    least one (`event_log_mismatch`); then only the events of those PCRs are kept, and each
    ///    whose digest is defined over its data must carry data hashing to it (`event_data_mismatch`,
    ///    `TCGEventLog.verify`). Boot claims are read from the kept events only. With `eventLogs`
    ///    (a cache and the host's id) the log goes through `VerifiedLogCache.verify`, which does
    ///    only the work the host's last verified log did not cover and answers as the full path;
    /// 2. the model log, if sent, parses and replays to the quoted SHA-256 PCR 23
    ///    (`model_log_malformed`, `model_log_mismatch`; PCR 23 must then be quoted); then its
    ///    signature records (`ModelSignatureBinding`): each bundle is the one whose digest was
    ///    measured (`model_log_mismatch`), and, when the policy names `model.publishers`, each
    ///    signature verifies under one of them over the artefacts measured under its directory
    ///    and every artefact lies under a signature's directory (`model_signer_untrusted`,
    ///    `model_signature_invalid`, `model_file_modified`, `model_file_extra`, … — not for a
    ///    manifest on `model.allowed`); the verified ones become `ModelClaims.signatures`;
    /// 3. the TPM clock: resetCount and restartCount never go backwards from the host's last
    ///    accepted quote (`AcceptedState.clock`), nor, within one boot with `safe` set, the clock
    ///    by more than `AcceptedState.clockTolerance` milliseconds (`clock_regressed`) — the
    ///    caller allows the time between this quote's nonce and a later-recorded previous quote,
    ///    since quotes made in clock order may reach the broker out of order;
    ///    the TPM's firmwareVersion is not below the policy's `tpm.minimumFirmwareVersion`
    ///    (`firmware_too_old`) nor, unless `tpm.allowFirmwareDowngrade`, below the host's last
    ///    accepted one (`firmware_downgraded`);
    ///    a policy with `clock.requireSafe` refuses `safe = 0` (`clock_not_safe`, worth retrying;
    ///    the only refusal that carries claims).
    static func verifyQuoted(device: String, quote: VerifiedQuote, eventLog: [UInt8]?, modelLog: [UInt8]?, accepted: AcceptedState,
                             policy: Policy, digester: Digester, eventLogs: (cache: VerifiedLogCache, hostID: String)? = nil) -> EvidenceVerification {
        // 1
        var boot: BootClaims?
        if let eventLog {
            let verdict: EventLogVerdict
            var claims: BootClaims?
            do {
                if let (cache, hostID) = eventLogs {
                    let outcome = try cache.verify(hostID: hostID, log: eventLog, quotedPCRs: quote.pcrs.values, excluding: [ModelLog.pcr], using: digester)
                    (verdict, claims) = (outcome.verdict, outcome.claims)
                } else {
                    verdict = try TCGEventLog(bytes: eventLog).verify(quotedPCRs: quote.pcrs.values, excluding: [ModelLog.pcr], using: digester)
                }
            } catch let e as VouchError {
                return .rejected([PolicyViolation(code: .eventLogMalformed, path: "eventLog", expected: "a TCG PC Client event log", actual: e.message)], nil)
            } catch { return .rejected([PolicyViolation(code: .eventLogMalformed, path: "eventLog", expected: "a TCG PC Client event log", actual: "unparseable")], nil) }
            switch verdict {
            case let .verified(verified):
                boot = claims ?? verified.claims
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
            var claims = log.claims(using: digester)
            switch ModelSignatureBinding.verify(log, manifestDigest: claims.manifestDigest, policy: policy, digester: digester) {
            case let .bound(signatures): claims.signatures = signatures
            case let .refused(violations): return .rejected(violations, nil)
            }
            model = claims
        }
        // 3
        let clock = ClockState(quote.clockInfo, firmwareVersion: quote.attest.firmwareVersion)
        let previousClock = accepted.clock, clockTolerance = accepted.clockTolerance
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
            return .rejected([PolicyViolation(code: .clockNotSafe, path: "clock.requireSafe", expected: "safe = 1", actual: "safe = 0 (retry after the TPM records its clock)")],
                             EvidenceRecord(measurementDigest: Hex.encode(quote.pcrDigest), measurements: quote.pcrs.hexMap, claims: claims))
        }
        return .verified(VerifiedEvidence(device: device, claims: .tpm(quote, claims)))
    }
}
