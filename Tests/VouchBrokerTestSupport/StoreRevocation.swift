import Foundation
import VouchModel

/// Builds an issuer's CRL in store tests: from the issuer's revoked certificates and the number
/// the plan gives (the broker signs with its CA in `Revocations.sign`).
public typealias CRLBuilder = (_ issuer: String, _ revoked: [CertificateRecord], _ number: UInt64) throws -> CRLRecord

extension BrokerStore {
    /// The broker's revocation without its CA: plan, build each issuer's CRL with `buildCRL`,
    /// commit in one transaction (no retry: a store test that races gets the `conflict`).
    public func revoke(_ target: RevocationTarget, at: Date, reason: RevocationReason, buildCRL: CRLBuilder) throws -> (serials: [String], crls: [CRLRecord]) {
        let plan = try revocationPlan(target, at: at, reason: reason)
        guard !plan.certificates.isEmpty else { return ([], []) }
        let crls = try plan.issuers.map { i in
            var crl = try buildCRL(i.issuer, i.revoked, i.number)
            crl.issuer = i.issuer
            return crl
        }
        try transaction { try $0.revoke(plan, crls: crls) }
        return (plan.serials, crls)
    }

    /// Builds and publishes the issuer's next CRL (as the broker does when its CRL is due).
    public func refreshCRL(issuer: String, buildCRL: CRLBuilder) throws -> CRLRecord {
        let next = try revocations(issuer: issuer)
        var crl = try buildCRL(issuer, next.revoked, next.number)
        crl.issuer = issuer
        return try publishCRL(crl)
    }
}
