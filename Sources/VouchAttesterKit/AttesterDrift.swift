import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchHTTPClient
import VouchRuntime
import VouchTPMWire

/// What a host measured: the PCR values the drift watcher reads, and the SHA-256 of the model
/// measurement log (nil when the host keeps none, or the file does not exist).
public struct MeasuredState: Sendable, Equatable {
    public var pcrs: PCRValues
    public var modelLog: [UInt8]?
    public init(pcrs: PCRValues, modelLog: [UInt8]?) { self.pcrs = pcrs; self.modelLog = modelLog }
}

/// The state of the last quote made for the broker, which the drift watcher compares with: the
/// PCRs the broker asked for (`watched`, plus PCR 23 in the SHA-256 bank when the host keeps a
/// model log: a re-measured model changes it, whether or not the policy quotes it) and their
/// values then.
public struct DriftBaseline: Sendable, Equatable {
    public var watched: PCRSelection
    public var state: MeasuredState

    /// The quote's values, with `extras` (read just before it: PCR 23 outside the quoted
    /// selection, the model log's digest) added.
    init(quoted: PCRSelection, pcrs: PCRValues, extras: (selection: PCRSelection, state: MeasuredState)?) {
        var values = pcrs
        var watched = quoted
        if let extras {
            watched = Self.union(quoted, extras.selection)
            for (bank, more) in extras.state.pcrs.values { values.values[bank, default: [:]].merge(more) { quotedValue, _ in quotedValue } }
        }
        self.watched = watched
        state = MeasuredState(pcrs: values, modelLog: extras?.state.modelLog)
    }

    static func union(_ a: PCRSelection, _ b: PCRSelection) -> PCRSelection {
        var banks = a.banks
        for extra in b.banks {
            if let i = banks.firstIndex(where: { $0.hash == extra.hash }) {
                banks[i] = PCRBankSelection(hash: extra.hash, pcrs: banks[i].pcrs + extra.pcrs)
            } else {
                banks.append(extra)
            }
        }
        return PCRSelection(banks: banks)
    }
}

extension Attester {
    /// The drift watcher's baseline: the state of the last quote the broker got (nil before the first).
    public var driftBaseline: DriftBaseline? { quotedState.withLock { $0.delivered } }

    /// The quote just made reached the broker (a push got its verdict, a pull its answer): its
    /// state becomes the baseline.
    func deliveredQuote() {
        quotedState.withLock { s in
            if let p = s.pending { s.delivered = p }
            s.pending = nil
        }
    }

    /// PCR 23 (SHA-256) when the host keeps a model log and `quoted` leaves it out, and the log's
    /// digest; nil for a host without a model log.
    func preQuoteState(_ quoted: PCRSelection) throws -> (selection: PCRSelection, state: MeasuredState)? {
        guard config.modelLogPath != nil else { return nil }
        let covered = quoted.banks.contains { $0.hash == .sha256 && $0.pcrs.contains(ModelLog.pcr) }
        let extra = PCRSelection(banks: covered ? [] : [PCRBankSelection(hash: .sha256, pcrs: [ModelLog.pcr])])
        return (extra, try measuredState(extra))
    }

    /// Reads the PCRs of `selection` (TPM2_PCR_Read through the TPM wrapper; none for an empty
    /// selection) and the model log's digest.
    public func measuredState(_ selection: PCRSelection) throws -> MeasuredState {
        guard config.tee == nil else { throw VouchError(.unsupported, "a confidential VM has no PCRs to watch") }
        let pcrs = selection.banks.allSatisfy(\.pcrs.isEmpty) ? PCRValues() : try withTPM { try $0.readPCRs(selection) }
        let log = try config.modelLogPath.flatMap { Files.exists($0) ? Crypto.sha256(try Files.read($0)) : nil }
        return MeasuredState(pcrs: pcrs, modelLog: log)
    }

    /// A client of the broker presenting the host certificate (push reports, hints).
    func hostClient(certificateFile: String, keyFile: String) throws -> APIClient {
        try BrokerReports.hostClient(broker: broker, certificateFile: certificateFile, keyFile: keyFile)
    }

    /// Pull mode: tells the broker the host's measurements changed (`POST /v1/hosts/{id}/hint`
    /// with the host certificate), so it pulls a fresh quote now instead of at its next round.
    @discardableResult
    public func sendHint(reason: String = "measurements_changed") throws -> HintResponse {
        guard let hostID, let identity, let certFile = identity.certificateFile, let keyFile = identity.keyFile else {
            throw VouchError(.attesterNotRegistered, "this host has not completed registration (or has no state directory for its host certificate)")
        }
        return try BrokerReports.hint(try hostClient(certificateFile: certFile, keyFile: keyFile), hostID: hostID, reason: reason)
    }
}

/// The host's own calls to the broker with its host certificate, one code path for the attester
/// and the simulated fleet: a push report (a nonce, the evidence, the report) and a hint.
enum BrokerReports {
    /// `broker` (HTTPS, its CA) with the host certificate and key files as TLS client identity.
    /// `ownConnection`: the client keeps a connection of its own (`HTTPClient.ownConnection`).
    static func hostClient(broker: APIClient, certificateFile: String, keyFile: String, ownConnection: Bool = false) throws -> APIClient {
        guard case let .https(base, caFile) = (broker.transport as? HTTPClient)?.transport else {
            throw VouchError(.config, "reporting to the broker needs an HTTPS broker transport")
        }
        // Kept alive between reports (curl's idle limit raised above any push period): the
        // broker's connection timeout decides whether the next report finds it open.
        return APIClient(transport: HTTPClient(.https(baseURL: base, caFile: caFile), identity: .init(certificateFile: certificateFile, keyFile: keyFile),
                                               keepAliveSeconds: Attester.pushKeepAliveSeconds, ownConnection: ownConnection))
    }

    /// One push report: a nonce for attestation from `broker`, the evidence `report` makes for
    /// it, the report over `mtls`. Returns the verdict and the policy's interval (seconds).
    static func push(broker: APIClient, mtls: APIClient, hostID: String,
                     report: (ChallengeResponse) throws -> AttestationReport) throws -> (verdict: AttestationVerdict, interval: Int) {
        let challenge = try broker.call("POST", "/v1/challenges", body: ChallengeRequest(hostId: hostID, purpose: "attestation"), as: ChallengeResponse.self)
        let verdict = try mtls.call("POST", "/v1/hosts/\(hostID)/attestations", body: try report(challenge), as: AttestationVerdict.self)
        return (verdict, challenge.reattestationInterval ?? 300)
    }

    /// A hint: `POST /v1/hosts/{id}/hint` over `mtls`.
    static func hint(_ mtls: APIClient, hostID: String, reason: String) throws -> HintResponse {
        try mtls.call("POST", "/v1/hosts/\(hostID)/hint", body: HintRequest(reason: reason), as: HintResponse.self)
    }
}
