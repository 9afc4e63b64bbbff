import Foundation
import Synchronization
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel
import VouchPolicy
import VouchTPMWire

/// Signs certificates and CRLs: the CA, seen by the service only through this protocol.
public protocol CertificateSigner: Sendable {
    var caCertificate: Certificate { get }
    func issue(publicKey: PublicKey, profile: LeafProfile, serial: [UInt8]?) throws -> Certificate
    func makeCRL(entries: [RevokedEntry], number: UInt64, thisUpdate: Date, nextUpdate: Date) throws -> [UInt8]
    func ocspResponse(request: [UInt8], now: Date, validity: TimeInterval, lookup: (String) throws -> CertificateStatusValue) throws -> [UInt8]
}

extension CertificateAuthority: CertificateSigner {
    public var caCertificate: Certificate { certificate }

    public func ocspResponse(request: [UInt8], now: Date, validity: TimeInterval, lookup: (String) throws -> CertificateStatusValue) throws -> [UInt8] {
        try OCSPResponder(ca: self).respond(to: request, now: now, validity: validity, lookup: lookup)
    }
}

public struct BrokerConfig: Sendable {
    public var trustDomain: String
    /// How long a challenge nonce may be used.
    public var challengeTTL: TimeInterval = 60
    /// How long a registered host has to prove credential activation.
    public var activationTTL: TimeInterval = 300
    /// CRL validity (nextUpdate - thisUpdate); a CRL is re-signed after half of it.
    public var crlValidity: TimeInterval = 300
    /// Public URL of the CRLs: certificates point at `<crlURL>/<issuing CA key id>`.
    public var crlURL: String?
    /// Public URL of the OCSP responder, written into certificates (Authority Information Access).
    public var ocspURL: String?
    /// How long an OCSP response may be cached (nextUpdate - thisUpdate).
    public var ocspValidity: TimeInterval = 300
    /// Webhook subscribers (for the outbox-depth metric; delivery is the dispatcher's).
    public var webhookURLs: [String] = []
    /// Hosts whose last verified firmware event log the broker keeps (`VerifiedLogCache`), so a
    /// re-attestation parses and replays only what the log gained since: the fleet this broker
    /// serves. Past it the least recently appraised hosts are forgotten (their next log is
    /// verified in full).
    public var verifiedLogCapacity = 20_000
    /// About how many bytes of verified events those hosts' entries may keep in all.
    public var verifiedLogMaxBytes = 256 << 20
    /// Accept hosts from `vouch-attester --simulate` (software AKs, no TPM), and CPU TEE evidence
    /// under the software TEE's test roots (`TEETrust.trustingSimulation`): for tests only. Off,
    /// the broker drops any test roots it was given and refuses such evidence
    /// (`tee_simulation_refused`).
    public var allowSimulatedHosts = false
    /// Lifetime of host certificates (mTLS between broker and attester); hosts re-register to renew.
    public var hostCertificateTTL: TimeInterval = 30 * 86400
    /// Event streams (`GET /v1/events`) open at once from one client address, and in all.
    public var maxEventStreamsPerAddress = 4
    public var maxEventStreams = 256
    /// Where the highest CRL number published per issuer is kept (`CRLWatermark`); nil: in memory only.
    public var crlWatermarkFile: String?
    /// A secret every replica on a shared store has (DATA-DIR/replica.key): the keys of challenge
    /// nonces and registration tickets are derived from it, so a challenge one replica issued is
    /// answered at another. nil (one broker): new random keys at each start, which expires every
    /// outstanding challenge and ticket.
    public var replicaSecret: [UInt8]?

    public init(trustDomain: String) { self.trustDomain = trustDomain }

    /// The SPIFFE ID the broker presents as a TLS client when it pulls quotes from attesters.
    public var brokerSpiffeID: String { "spiffe://\(trustDomain)/vouchd" }
    /// The SPIFFE ID of a host certificate.
    public func hostSpiffeID(_ hostID: String) -> String { "spiffe://\(trustDomain)/host/\(hostID)" }
    /// True for the broker's own SPIFFE ID and any host's: never an agent's.
    public func isReservedSpiffeID(_ id: String) -> Bool {
        let hostPrefix = "spiffe://\(trustDomain)/host/"
        return id == brokerSpiffeID || (id.hasPrefix(hostPrefix) && !id.dropFirst(hostPrefix.count).contains("/"))
    }
}

/// What every broker service works with: configuration, policies, the store, the CAs, the EK
/// roots, the clock, the log, metrics, event notification, and the broker's in-memory keys and
/// caches. One per broker; the services (`RegistrationService`, `RevocationService`,
/// `QueryService`, `TokenService`, `EnrollmentService`, `ReattestationService`) hold it.
public final class BrokerContext: Sendable {
    public let config: BrokerConfig
    public let policies: PolicyProvider
    let store: BrokerStore
    public let authorities: CASet
    let ekTrust: EKTrustStore
    /// Signs attestation results, among them the EAR in each agent certificate.
    let resultSigner: ResultSigner
    /// Signs JWT-SVIDs (`JWTSVIDService`); a key of its own, no CA, TLS or result-signing key.
    let jwtSVIDSigner: JWSSigner
    let clock: Clock
    let log: @Sendable (String) -> Void
    public let metrics = BrokerMetrics()
    public let events = EventNotifier()
    let openStreams = Mutex(StreamCounts())
    let closing = Mutex(false)
    /// What relying parties poll (CRLs, OCSP answers), kept in memory.
    let responseCache: ReadMostly<ResponseCache>
    /// Revocation, CRLs and the unit of work of every change that may revoke.
    let revocations: Revocations
    let attestationKeys: AttestationKeyCache
    /// What the broker verified of each host's firmware event log (TPM and Azure vTPM): one per
    /// broker process; an entry is dropped when its host is deleted or registers again.
    let verifiedLogs: VerifiedLogCache
    /// The verifiers evidence is accepted with, one per kind (`EvidenceWiring.swift`).
    let evidenceVerifiers: EvidenceVerifiers
    /// MACs registration tickets (`RegistrationTicket`); never leaves memory, new at each start.
    let ticketKey: [UInt8]
    /// Mints and checks challenge nonces (`NonceMinter`), with its own in-memory key.
    let nonces: NonceMinter

    init(config: BrokerConfig, policies: PolicyProvider, store: BrokerStore, authorities: CASet, ekTrust: EKTrustStore,
         resultSigner: ResultSigner, jwtSVIDSigner: JWSSigner, clock: Clock, tee: TEETrust, log: @escaping @Sendable (String) -> Void) {
        self.config = config
        self.policies = policies
        self.store = store
        self.authorities = authorities
        self.ekTrust = ekTrust
        self.resultSigner = resultSigner
        self.jwtSVIDSigner = jwtSVIDSigner
        self.clock = clock
        self.log = log
        let keys = AttestationKeyCache()
        self.attestationKeys = keys
        if tee.trustsSimulation && !config.allowSimulatedHosts {
            log("the software TEE's test roots are ignored: this broker does not allow simulated hosts")
        }
        let logs = VerifiedLogCache(capacity: config.verifiedLogCapacity, maxBytes: config.verifiedLogMaxBytes)
        self.verifiedLogs = logs
        self.evidenceVerifiers = BrokerService.evidenceVerifiers(keys: keys, eventLogs: logs, tee: config.allowSimulatedHosts ? tee : tee.pinnedOnly)
        let cache = ReadMostly(ResponseCache())
        self.responseCache = cache
        self.revocations = Revocations(store: store, authorities: authorities, clock: clock, crlValidity: config.crlValidity, cache: cache,
                                       watermark: CRLWatermark(path: config.crlWatermarkFile))
        if let secret = config.replicaSecret {
            self.ticketKey = Crypto.hmac(.sha256, key: secret, Array("vouch registration ticket key v1".utf8))
            self.nonces = NonceMinter(key: Crypto.hmac(.sha256, key: secret, Array("vouch challenge nonce key v1".utf8)))
        } else {
            self.ticketKey = (try? Crypto.randomBytes(32)) ?? []
            self.nonces = NonceMinter(key: (try? Crypto.randomBytes(32)) ?? [])
        }
        precondition(ticketKey.count == 32 && nonces.key.count == 32, "no randomness for the broker's MAC keys")
        policies.onReload { [metrics] ok in metrics.policyReload(ok: ok) }
    }
}

/// A broker service: the context's parts by name, and the checks every service shares.
protocol BrokerPart {
    var context: BrokerContext { get }
}

extension BrokerPart {
    var config: BrokerConfig { context.config }
    var policies: PolicyProvider { context.policies }
    var store: BrokerStore { context.store }
    var authorities: CASet { context.authorities }
    var ekTrust: EKTrustStore { context.ekTrust }
    var clock: Clock { context.clock }
    var log: @Sendable (String) -> Void { context.log }
    var metrics: BrokerMetrics { context.metrics }
    var events: EventNotifier { context.events }
    var responseCache: ReadMostly<ResponseCache> { context.responseCache }
    var revocations: Revocations { context.revocations }
    var attestationKeys: AttestationKeyCache { context.attestationKeys }
    var verifiedLogs: VerifiedLogCache { context.verifiedLogs }
    var evidenceVerifiers: EvidenceVerifiers { context.evidenceVerifiers }
    var ticketKey: [UInt8] { context.ticketKey }
    var nonces: NonceMinter { context.nonces }

    /// The registered host with this id (`bad_request` for a malformed id, `unknown_host`).
    func knownHost(_ id: String) throws -> HostRecord {
        guard Hex.isLowercase(id, length: 32...32) else {
            throw VouchError(.badRequest, "host id must be 32 lowercase hex digits", context: ["field": "hostId"])
        }
        guard let host = try store.host(id: id) else {
            throw VouchError(.unknownHost, "no host is registered with this id", context: ["hostId": id])
        }
        return host
    }

    func requireNotBlocked(_ host: HostRecord) throws {
        if let reason = host.blockedReason {
            throw VouchError(.hostRevoked, "this host was revoked by an operator", context: ["hostId": host.id, "reason": reason])
        }
    }

    /// `quoteSelection` as a challenge names it.
    static func challengeSelection(_ policy: Policy) -> [PCRSelectionBody] {
        quoteSelection(policy).banks.map { PCRSelectionBody(bank: $0.hash.rawValue, pcrs: $0.pcrs) }
    }

    /// For a host that may be attested now — not blocked, AK activated — the policy that applies.
    func attestablePolicy(for host: HostRecord) throws -> Policy {
        try requireNotBlocked(host)
        guard host.akState == .active else {
            throw VouchError(.akNotActivated, "host's attestation key has not completed credential activation", context: ["hostId": host.id])
        }
        return try applicablePolicy(for: host)
    }

    /// The policy that applies to a registered host now.
    func applicablePolicy(for host: HostRecord) throws -> Policy {
        guard let p = policies.current.select(labels: host.labels, ekIssuer: host.ekIssuer, platform: host.platform.policyPlatform) else {
            throw VouchError(.noPolicy, "no policy applies to this host any more", context: ["hostId": host.id])
        }
        return p
    }

    /// What enrollment quotes cover: `Policy.quoteSelection` (the policy's PCRs, those its
    /// event-log rules read, and SHA-256 PCR 23 for model measurements).
    static func quoteSelection(_ policy: Policy) -> PCRSelection {
        policy.quoteSelection
    }

}
