import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModel
import VouchPolicy
import VouchTPMWire


/// The broker: its services over one `BrokerContext`, which `BrokerAPI` routes requests to.
/// Orchestration only: evidence is judged by VouchAttestation's verifiers, certificates are
/// made by the signer, state lives in the store.
///
/// | service | decides | file |
/// |---|---|---|
/// | `registration` | registration tickets, credential activation, host certificates | `RegistrationService.swift` |
/// | `enrollment` | challenges, enrollment, renewal, issuance | `EnrollmentService.swift` (evidence: `EvidenceWiring.swift`) |
/// | `reattestation` | re-attestation verdicts and faults, pull rounds; the trust state machine is `TrustStateMachine` | `ReattestationService.swift` |
/// | `revocation` | operator revocation, blocks, deletion, CRL, OCSP, trust bundle, CA rotation | `RevocationService.swift` (core: `Revocations.swift`) |
/// | `queries` | status, hosts, history, certificates, evidence, EAR, metrics, policies | `QueryService.swift`, `AttestationResults.swift` |
/// | `tokens` | API tokens and their scopes | `TokenService.swift` |
/// | `jwtSVIDs` | JWT-SVIDs for agents of trusted hosts, and their key set | `JWTSVIDService.swift` |
public final class BrokerService: BrokerPart, Sendable {
    public let context: BrokerContext
    public let registration: RegistrationService
    public let enrollment: EnrollmentService
    public let reattestation: ReattestationService
    public let revocation: RevocationService
    public let queries: QueryService
    public let tokens: TokenService
    public let jwtSVIDs: JWTSVIDService

    public var config: BrokerConfig { context.config }
    public var policies: PolicyProvider { context.policies }
    public var authorities: CASet { context.authorities }
    public var metrics: BrokerMetrics { context.metrics }
    public var events: EventNotifier { context.events }

    /// `resultSigner`: the broker's attestation-result signer, which signs the EAR each agent
    /// certificate carries. `jwtSVIDSigner`: the key that signs JWT-SVIDs (`BrokerBootstrap.jwtSVIDSigner`),
    /// never one of the CA, TLS or result-signing keys. `tee`: the roots and TDX collateral CPU TEE evidence is verified with
    /// (default: AMD's and Intel's pinned roots, no collateral).
    public init(config: BrokerConfig, policies: PolicyProvider, store: BrokerStore, authorities: CASet, ekTrust: EKTrustStore,
                resultSigner: ResultSigner, jwtSVIDSigner: JWSSigner, clock: Clock, tee: TEETrust = TEETrust(),
                log: @escaping @Sendable (String) -> Void = { _ in }) {
        let context = BrokerContext(config: config, policies: policies, store: store, authorities: authorities, ekTrust: ekTrust,
                                    resultSigner: resultSigner, jwtSVIDSigner: jwtSVIDSigner, clock: clock, tee: tee, log: log)
        self.context = context
        registration = RegistrationService(context: context)
        enrollment = EnrollmentService(context: context)
        reattestation = ReattestationService(context: context)
        revocation = RevocationService(context: context)
        queries = QueryService(context: context)
        tokens = TokenService(context: context)
        jwtSVIDs = JWTSVIDService(context: context)
    }
}
