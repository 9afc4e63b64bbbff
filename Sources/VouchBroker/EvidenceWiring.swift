import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchModel
import VouchPolicy
import VouchTPMWire

// The broker's evidence wiring: which verifiers it accepts evidence with, how a request's wire
// fields become `RawEvidence`, and which accepted state a verifier sees. Enrollment and
// re-attestation call only these and `EvidenceVerifiers`; adding a kind of evidence changes this
// file and VouchAttestation, never them.

extension AttestationKeyCache: AttestationKeyResolver {}

extension BrokerPart {
    /// The broker's verifiers, one per kind: today the TPM quote path, with AKs from the cache.
    static func evidenceVerifiers(keys: AttestationKeyCache) -> EvidenceVerifiers {
        EvidenceVerifiers([TPMEvidenceVerifier(keys: keys)])
    }

    /// An enrollment's evidence, decoded (`bad_request` naming the field) but unverified.
    static func rawEvidence(_ req: EnrollRequest) throws -> [RawEvidence] { [try rawEvidence(quote: req.quote)] }

    /// A re-attestation report's evidence, decoded (`bad_request` naming the field) but unverified.
    static func rawEvidence(_ report: AttestationReport) throws -> [RawEvidence] { [try rawEvidence(quote: report.quote)] }

    /// The TPM quote of a request, its fields decoded in the order they always were.
    static func rawEvidence(quote: QuoteBody) throws -> RawEvidence {
        let attest = try Base64.decode(quote.attest, field: "quote.attest")
        let signature = try Base64.decode(quote.signature, field: "quote.signature")
        let eventLog = try quote.eventLog.map { try Base64.decode($0, field: "quote.eventLog") }
        let modelLog = try quote.modelLog.map { try Base64.decode($0, field: "quote.modelLog") }
        let pcrs = try PCRValues(hexMap: quote.pcrs, field: "quote.pcrs")
        return .tpm(TPMQuoteEvidence(attest: attest, signature: signature, pcrs: pcrs, eventLog: eventLog, modelLog: modelLog))
    }

    /// What the broker expects of the host's evidence: bound to `binding`, signed by the keys the
    /// host enrolled, judged under `policy`.
    static func verificationContext(host: HostRecord, policy: Policy, binding: [UInt8]) -> VerificationContext {
        VerificationContext(hostID: host.id, binding: binding, enrolled: EnrolledKeys(akPublic: host.akPublic), policy: policy, digester: OpenSSLDigester())
    }

    /// What the host had accepted before, read once its evidence is authenticated: the TPM clock
    /// of its last trusted quote, with the lag allowed for a quote whose nonce was issued at
    /// `nonceIssuedAt` (`clockTolerance`).
    func acceptedState(hostID: String, nonceIssuedAt: Date) throws -> AcceptedState {
        let previous = try store.lastTrustedClock(hostID: hostID)
        return AcceptedState(clock: previous?.clock, clockTolerance: Self.clockTolerance(previousAt: previous?.at, nonceIssuedAt: nonceIssuedAt))
    }

    /// How far (ms) a quote's TPM clock may lag the host's latest accepted quote within one boot.
    /// Quotes the TPM made in clock order may reach the broker out of order (concurrent
    /// enrollments, a queued request): this quote was made after its nonce was issued, and the
    /// previous one before it was recorded, so it can lag by at most the time between the two,
    /// plus a second for clock granularity and rate. Previous evidence recorded before the nonce
    /// allows no lag at all; reset and restart counts are never allowed to go back. A TPM rolled
    /// back to an earlier state therefore passes only if that state is within this window —
    /// at most the nonce lifetime — of its latest accepted one.
    static func clockTolerance(previousAt: Date?, nonceIssuedAt: Date) -> UInt64 {
        guard let previousAt, previousAt > nonceIssuedAt else { return 0 }
        return UInt64((previousAt.timeIntervalSince(nonceIssuedAt) * 1000).rounded(.up)) + 1000
    }
}
