import Foundation
import Synchronization
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEEWire

/// The evidence an SEV-SNP guest presents: its attestation report, the VCEK or VLEK certificate
/// that signed it (from AMD's KDS or the extended guest request), and optionally AMD's CRL for
/// the product line.
public struct SNPEvidence: Sendable {
    public var report: [UInt8]
    /// The VCEK or VLEK certificate, DER or PEM.
    public var endorsementKey: [UInt8]
    /// AMD's CRL for the product line (DER or PEM), signed by the ARK.
    public var crl: [UInt8]?

    public init(report: [UInt8], endorsementKey: [UInt8], crl: [UInt8]? = nil) {
        self.report = report
        self.endorsementKey = endorsementKey
        self.crl = crl
    }
}

/// A report whose signature, endorsement chain and endorsement binding have been verified.
/// Only `SNPVerifier.authenticate` makes one.
public struct VerifiedSNPReport: Sendable {
    public let report: SNPReport
    public let product: SNPProduct
    public let signer: SNPSigningKey
    public let endorsement: Certificate
    public let extensions: SNPEndorsementExtensions
    /// True when a CRL was given and checked.
    public let revocationChecked: Bool
}

/// A VCEK or VLEK that chains to a pinned ARK and is valid at the verification time. Only
/// `SNPVerifier.authenticateEndorsement` makes one.
public struct VerifiedSNPEndorsement: Sendable {
    public let certificate: Certificate
    public let publicKey: PublicKey
    /// The product line of the pinned chain that issued it.
    public let product: SNPProduct
    public let signer: SNPSigningKey
    public let extensions: SNPEndorsementExtensions
    public let revocationChecked: Bool
    /// The latest notBefore and the earliest notAfter of the ARK, the ASK/ASVK and this
    /// certificate: when check 4 holds.
    public let validFrom: Date
    public let validUntil: Date
}

/// The outcome of `SNPVerifier.authenticateEndorsement`.
public enum SNPEndorsementAuthentication: Sendable {
    case authenticated(VerifiedSNPEndorsement)
    case refused(PolicyViolation)
}

/// The outcome of `SNPVerifier.authenticate`.
public enum SNPAuthentication: Sendable {
    case authenticated(VerifiedSNPReport)
    /// The first check that failed; nothing from the report may be used.
    case refused(PolicyViolation)
}

extension ErrorCode {
    // SEV-SNP authenticity (SNPVerifier): the report and its endorsement.
    /// No pinned ARK for the product, an ARK that is not the pinned one or not a valid
    /// self-signed CA, or an ASK/ASVK the ARK did not sign.
    public static let snpRootUntrusted = ErrorCode("snp_root_untrusted", status: 403)
    /// The VCEK/VLEK was not issued by a pinned ASK/ASVK (name, RSASSA-PSS parameters or
    /// signature), or does not hold a P-384 key.
    public static let snpEndorsementUntrusted = ErrorCode("snp_endorsement_untrusted", status: 403)
    /// A certificate of the chain is outside its validity window at the verification time.
    public static let snpCertificateExpired = ErrorCode("snp_certificate_expired", status: 403)
    /// The ASK/ASVK is listed in the product's CRL.
    public static let snpCertificateRevoked = ErrorCode("snp_certificate_revoked", status: 403)
    /// The CRL given does not parse, is not the ARK's, is not signed by it, or is stale or not yet valid.
    public static let snpCRLInvalid = ErrorCode("snp_crl_invalid", status: 403)
    /// The endorsement's productName, the chain's product line and the report's CPUID disagree.
    public static let snpProductMismatch = ErrorCode("snp_product_mismatch", status: 403)
    /// The VCEK's hwID is not the report's CHIP_ID (or a VLEK carries one).
    public static let snpHWIDMismatch = ErrorCode("snp_hwid_mismatch", status: 403)
    /// The endorsement's SPL extensions are not the report's REPORTED_TCB.
    public static let snpTCBMismatch = ErrorCode("snp_tcb_mismatch", status: 403)
    /// The report is unsigned, names another signature algorithm, or its signature does not
    /// verify with the endorsement key.
    public static let snpReportSignatureInvalid = ErrorCode("snp_report_signature_invalid", status: 403)
}

/// Verifies AMD SEV-SNP attestation reports against pinned AMD roots. Thread-safe; keep one per
/// trust store: the ARK→ASK/ASVK checks (step 2) run once per product line and key kind and are
/// cached, so a repeated verification does only steps 3–10.
///
/// Checks, in order; the first failure refuses the report (`.rejected([violation], claims: nil)`,
/// nothing from the report is returned):
///  1. the report parses (`SNPReport`: size, version 2–5, reserved fields;
///     `tee_evidence_malformed`); SIGNING_KEY is VCEK or VLEK and SIGNATURE_ALGO is ECDSA P-384
///     with SHA-384 (`snp_report_signature_invalid`); the endorsement certificate parses
///     (`tee_evidence_malformed`) and a pinned ASK (VCEK) or ASVK (VLEK) has its issuer's name
///     (`snp_endorsement_untrusted`) — this picks the product line;
///  2. the product line's ARK has the pinned SHA-256 (of its DER), is a self-issued CA whose
///     self-signature verifies, and signs the ASK/ASVK, itself a CA (`snp_root_untrusted`); every
///     certificate signature in the chain must be RSASSA-PSS with SHA-384, MGF1-SHA-384 and a
///     48-byte salt, checked exactly;
///  3. the ASK/ASVK signs the VCEK/VLEK the same way (serial number 0, which AMD uses, is
///     accepted), and the VCEK/VLEK holds a P-384 key (`snp_endorsement_untrusted`);
///  4. the ARK, the ASK/ASVK and the VCEK/VLEK are each valid at `now` (`snp_certificate_expired`);
///  5. with a CRL: it parses, its issuer is the ARK and the ARK's signature verifies, thisUpdate
///     <= now < nextUpdate (`snp_crl_invalid`), and the ASK/ASVK's serial is not listed
///     (`snp_certificate_revoked`); without one, the result carries the warning
///     `snp_revocation_not_checked`;
///  6. the AMD extensions parse (`SNPEndorsementExtensions`, `tee_evidence_malformed`), the
///     productName's line is the chain's, and for a version 3+ report so is the CPUID's
///     (`snp_product_mismatch`);
///  7. a VCEK's hwID is CHIP_ID (64 bytes; Turin: 8 bytes, the first 8 of CHIP_ID); a VLEK has no
///     hwID (`snp_hwid_mismatch`);
///  8. each SPL extension (blSPL, teeSPL, snpSPL, ucodeSPL, and fmcSPL on Turin only) is the
///     REPORTED_TCB component of the product's layout, and REPORTED_TCB's reserved bytes are zero
///     (`snp_tcb_mismatch`);
///  9. the report signature (R and S little-endian, over bytes [0, 0x2A0)) verifies with the
///     VCEK/VLEK key (`snp_report_signature_invalid`);
/// 10. the expectations of `SNPPolicy` (`appraise`), all reported together, with the claims.
///
/// Check 2 is cached per product line and key kind. Checks 3–6 (parse) are cached per exact
/// endorsement bytes, key kind and exact CRL bytes, and used only inside the window in which
/// they hold (every certificate's validity and the CRL's thisUpdate..nextUpdate): repeated
/// reports from one platform cost the report's parse, binding and signature.
public final class SNPVerifier: Sendable {
    public let trust: SNPTrustStore

    private struct ChainKey: Hashable { let product: SNPProduct; let signer: SNPSigningKey }
    private enum ChainOutcome { case trusted(intermediateKey: PublicKey), refused(PolicyViolation) }
    private let chains = Mutex<[ChainKey: ChainOutcome]>([:])
    private struct EndorsementKey: Hashable { let endorsement: [UInt8]; let signer: SNPSigningKey; let crl: [UInt8]? }
    private struct CachedEndorsement { let verified: VerifiedSNPEndorsement; let from: Date; let until: Date; let untilInclusive: Bool }
    private let endorsements = Mutex<[EndorsementKey: CachedEndorsement]>([:])
    static let maxCachedEndorsements = 4096

    public init(trust: SNPTrustStore) {
        self.trust = trust
    }

    /// Checks 1–10. `policy.reportData`, when set, is the expected REPORT_DATA.
    public func verify(_ evidence: SNPEvidence, at now: Date, policy: SNPPolicy = SNPPolicy()) -> TEEVerification<SNPClaims> {
        switch authenticate(evidence, at: now) {
        case let .refused(violation):
            return .rejected([violation], claims: nil)
        case let .authenticated(verified):
            let (claims, violations) = Self.appraise(verified, policy: policy)
            guard violations.isEmpty else { return .rejected(violations, claims: claims) }
            var warnings: [TEEWarning] = []
            if !verified.revocationChecked {
                warnings.append(TEEWarning(code: "snp_revocation_not_checked", message: "no CRL was given: the ASK/ASVK's revocation was not checked"))
            }
            return .verified(claims, warnings: warnings)
        }
    }

    /// Checks 1–9.
    public func authenticate(_ evidence: SNPEvidence, at now: Date) -> SNPAuthentication {
        let report: SNPReport
        do { report = try SNPReport(bytes: evidence.report) } catch {
            return .refused(Self.malformed(error, path: "snp.report"))
        }
        guard report.signingKey != .none else {
            return .refused(PolicyViolation(code: .snpReportSignatureInvalid, path: "snp.report.signingKey", expected: "vcek or vlek", actual: "none (unsigned)"))
        }
        guard report.signatureAlgorithm == SNPReport.ecdsaP384SHA384 else {
            return .refused(PolicyViolation(code: .snpReportSignatureInvalid, path: "snp.report.signatureAlgorithm",
                                            expected: "1 (ECDSA P-384 with SHA-384)", actual: "\(report.signatureAlgorithm)"))
        }
        let verified: VerifiedSNPEndorsement
        switch authenticateEndorsement(evidence.endorsementKey, signer: report.signingKey, crl: evidence.crl, at: now) {
        case let .refused(v): return .refused(v)
        case let .authenticated(e): verified = e
        }
        let (product, signer, extensions) = (verified.product, verified.signer, verified.extensions)
        if let v = Self.checkBinding(report: report, extensions: extensions, product: product, signer: signer) { return .refused(v) }

        // 9. The report signature.
        let (r, s) = report.signatureBigEndian
        guard let der = try? ecdsaSignatureDER(r: r.isEmpty ? [0] : r, s: s.isEmpty ? [0] : s),
              verified.publicKey.verify(message: Array(evidence.report[0..<SNPReport.signedLength]), signature: der, scheme: .ecdsa, hash: .sha384) else {
            return .refused(PolicyViolation(code: .snpReportSignatureInvalid, path: "snp.report.signature",
                                            expected: "an ECDSA P-384 SHA-384 signature by the \(signer == .vlek ? "VLEK" : "VCEK")", actual: "a signature that does not verify"))
        }
        return .authenticated(VerifiedSNPReport(report: report, product: product, signer: signer, endorsement: verified.certificate, extensions: extensions,
                                                revocationChecked: evidence.crl != nil))
    }

    /// Checks 1 (the certificate part) to 5, and the parse of check 6, for a VCEK or VLEK on its
    /// own (`signer` says which): the chain from the pinned ARK, validity at `now`, and the CRL.
    public func authenticateEndorsement(_ bytes: [UInt8], signer: SNPSigningKey, crl: [UInt8]? = nil, at now: Date) -> SNPEndorsementAuthentication {
        let cacheKey = EndorsementKey(endorsement: Crypto.sha256(bytes), signer: signer, crl: crl.map { Crypto.sha256($0) })
        if let hit = endorsements.withLock({ $0[cacheKey] }), hit.from <= now, hit.untilInclusive ? now <= hit.until : now < hit.until {
            return .authenticated(hit.verified)
        }
        let result = authenticateEndorsementUncached(bytes, signer: signer, crl: crl, at: now)
        if case let .authenticated(verified) = result, let window = Self.window(verified, crl: crl) {
            endorsements.withLock { cache in
                if cache.count >= Self.maxCachedEndorsements { cache.removeAll() }
                cache[cacheKey] = CachedEndorsement(verified: verified, from: window.from, until: window.until, untilInclusive: window.inclusive)
            }
        }
        return result
    }

    /// When a verified endorsement's checks 3–5 hold: every certificate's validity (inclusive
    /// bounds) and, with a CRL, thisUpdate <= now < nextUpdate.
    private static func window(_ verified: VerifiedSNPEndorsement, crl: [UInt8]?) -> (from: Date, until: Date, inclusive: Bool)? {
        var from = verified.validFrom, until = verified.validUntil, inclusive = true
        if let crl {
            guard let parsed = try? CRL(der: pemBody(crl, label: "X509 CRL") ?? crl) else { return nil }
            from = max(from, parsed.thisUpdate)
            if parsed.nextUpdate <= until { (until, inclusive) = (parsed.nextUpdate, false) }
        }
        return (from, until, inclusive)
    }

    private func authenticateEndorsementUncached(_ bytes: [UInt8], signer: SNPSigningKey, crl: [UInt8]?, at now: Date) -> SNPEndorsementAuthentication {
        let kind = signer == .vlek ? "VLEK" : "VCEK"
        let endorsement: Certificate
        do { endorsement = try Self.certificate(bytes) } catch {
            return .refused(PolicyViolation(code: .teeEvidenceMalformed, path: "snp.endorsement", expected: "a DER or PEM X.509 \(kind) certificate",
                                            actual: "\(bytes.count) bytes that do not parse"))
        }
        let vekPath = "snp.chain.\(kind.lowercased())"
        let intermediateName = signer == .vlek ? "ASVK" : "ASK"
        guard signer != .none, let (product, roots, intermediate) = SNPProduct.allCases.lazy.compactMap({ p -> (SNPProduct, SNPTrustStore.ProductRoots, Certificate)? in
            guard let roots = self.trust.products[p], let i = roots.intermediate(for: signer), i.subject == endorsement.issuer else { return nil }
            return (p, roots, i)
        }).first else {
            return .refused(PolicyViolation(code: .snpEndorsementUntrusted, path: vekPath,
                                            expected: "a \(kind) issued by a pinned \(intermediateName)", actual: "issued by \(endorsement.issuer)"))
        }

        // 2. ARK → ASK/ASVK, once per product line and key kind.
        let intermediateKey: PublicKey
        switch chainOutcome(product: product, signer: signer, roots: roots, intermediate: intermediate) {
        case let .refused(v): return .refused(v)
        case let .trusted(key): intermediateKey = key
        }

        // 3. ASK/ASVK → VCEK/VLEK.
        if let v = Self.checkIssued(endorsement, by: intermediateKey, path: vekPath, code: .snpEndorsementUntrusted) { return .refused(v) }
        guard let endorsementKey = try? endorsement.publicKey, endorsementKey.ecJWKParameters?.crv == "P-384" else {
            return .refused(PolicyViolation(code: .snpEndorsementUntrusted, path: "\(vekPath).publicKey", expected: "an ECDSA P-384 key", actual: "another key"))
        }

        // 4. Validity at `now`.
        for (cert, name) in [(roots.ark, "ark"), (intermediate, intermediateName.lowercased()), (endorsement, kind.lowercased())] {
            guard cert.notBefore <= now, now <= cert.notAfter else {
                return .refused(PolicyViolation(code: .snpCertificateExpired, path: "snp.chain.\(name)",
                                                expected: "valid \(snpRFC3339(cert.notBefore)) to \(snpRFC3339(cert.notAfter))", actual: snpRFC3339(now)))
            }
        }

        // 5. Revocation of the ASK/ASVK.
        if let crl, let v = Self.checkCRL(crl, ark: roots.ark, intermediate: intermediate, name: intermediateName.lowercased(), now: now) { return .refused(v) }

        // 6 (parse). The AMD extensions.
        let extensions: SNPEndorsementExtensions
        do { extensions = try SNPEndorsementExtensions(extensionValue: endorsement.extensionValue(oid:)) } catch {
            return .refused(Self.malformed(error, path: "snp.endorsement.extensions"))
        }
        let chain = [roots.ark, intermediate, endorsement]
        return .authenticated(VerifiedSNPEndorsement(certificate: endorsement, publicKey: endorsementKey, product: product, signer: signer,
                                                     extensions: extensions, revocationChecked: crl != nil,
                                                     validFrom: chain.map(\.notBefore).max()!, validUntil: chain.map(\.notAfter).min()!))
    }

    /// Check 2, cached per product line and key kind (the outcome does not depend on time).
    private func chainOutcome(product: SNPProduct, signer: SNPSigningKey, roots: SNPTrustStore.ProductRoots, intermediate: Certificate) -> ChainOutcome {
        let key = ChainKey(product: product, signer: signer)
        if let cached = chains.withLock({ $0[key] }) { return cached }
        let outcome = Self.checkChain(roots: roots, intermediate: intermediate, intermediateName: signer == .vlek ? "asvk" : "ask")
        chains.withLock { $0[key] = outcome }
        return outcome
    }

    private static func checkChain(roots: SNPTrustStore.ProductRoots, intermediate: Certificate, intermediateName: String) -> ChainOutcome {
        let ark = roots.ark
        guard let arkDER = try? ark.der, Crypto.sha256(arkDER) == roots.arkPin else {
            return .refused(PolicyViolation(code: .snpRootUntrusted, path: "snp.chain.ark", expected: "ARK with SHA-256 \(Hex.encode(roots.arkPin))",
                                            actual: (try? Hex.encode(Crypto.sha256(ark.der))) ?? "an unreadable certificate"))
        }
        guard ark.isSelfSigned, ark.isCA, let arkKey = try? ark.publicKey else {
            return .refused(PolicyViolation(code: .snpRootUntrusted, path: "snp.chain.ark", expected: "a self-issued CA", actual: ark.subject))
        }
        if let v = checkIssued(ark, by: arkKey, path: "snp.chain.ark", code: .snpRootUntrusted) { return .refused(v) }
        guard intermediate.issuer == ark.subject, intermediate.isCA else {
            return .refused(PolicyViolation(code: .snpRootUntrusted, path: "snp.chain.\(intermediateName)", expected: "a CA issued by \(ark.subject)",
                                            actual: intermediate.issuer))
        }
        if let v = checkIssued(intermediate, by: arkKey, path: "snp.chain.\(intermediateName)", code: .snpRootUntrusted) { return .refused(v) }
        guard let key = try? intermediate.publicKey else {
            return .refused(PolicyViolation(code: .snpRootUntrusted, path: "snp.chain.\(intermediateName)", expected: "an RSA key", actual: "no usable key"))
        }
        return .trusted(intermediateKey: key)
    }

    /// AMD's certificate signature: RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48, trailer 1.
    static let amdPSS = RSAPSSParameters(hash: .sha384, mgf1Hash: .sha384, saltLength: 48)

    /// The certificate's outer and inner signature algorithms are AMD's PSS parameters and its
    /// signature verifies with `issuerKey`.
    static func checkIssued(_ cert: Certificate, by issuerKey: PublicKey, path: String, code: ErrorCode) -> PolicyViolation? {
        guard let parts = try? cert.signedParts() else {
            return PolicyViolation(code: code, path: path, expected: "an RFC 5280 certificate", actual: "a certificate whose signed parts do not parse")
        }
        guard parts.signatureAlgorithm == parts.innerSignatureAlgorithm, RSAPSSParameters(algorithmIdentifier: parts.signatureAlgorithm) == amdPSS else {
            return PolicyViolation(code: code, path: "\(path).signatureAlgorithm", expected: "RSASSA-PSS SHA-384, MGF1-SHA-384, salt 48",
                                   actual: RSAPSSParameters(algorithmIdentifier: parts.signatureAlgorithm).map { "PSS \($0.hash)/\($0.mgf1Hash)/\($0.saltLength)" } ?? "another algorithm")
        }
        guard issuerKey.verifyRSAPSS(message: parts.tbs, signature: parts.signature, hash: .sha384, saltLength: 48) else {
            return PolicyViolation(code: code, path: "\(path).signature", expected: "signed by \(cert.issuer)", actual: "a signature that does not verify")
        }
        return nil
    }

    /// Check 5.
    static func checkCRL(_ bytes: [UInt8], ark: Certificate, intermediate: Certificate, name: String, now: Date) -> PolicyViolation? {
        func invalid(_ expected: String, _ actual: String) -> PolicyViolation {
            PolicyViolation(code: .snpCRLInvalid, path: "snp.crl", expected: expected, actual: actual)
        }
        let der = pemBody(bytes, label: "X509 CRL") ?? bytes
        guard let crl = try? CRL(der: der), let parts = try? crlSignedParts(der: der) else { return invalid("a DER or PEM CRL", "\(bytes.count) bytes that do not parse") }
        guard crl.issuer == ark.subject else { return invalid("issued by \(ark.subject)", crl.issuer) }
        // AMD's PSS parameters exactly, as for the certificates (not whatever the CRL names).
        guard parts.signatureAlgorithm == parts.innerSignatureAlgorithm, RSAPSSParameters(algorithmIdentifier: parts.signatureAlgorithm) == amdPSS,
              let arkKey = try? ark.publicKey, arkKey.verifyRSAPSS(message: parts.tbs, signature: parts.signature, hash: .sha384, saltLength: 48) else {
            return invalid("signed by the ARK with RSASSA-PSS SHA-384, MGF1-SHA-384, salt 48", "another algorithm or a signature that does not verify")
        }
        guard crl.thisUpdate <= now else { return invalid("thisUpdate <= \(snpRFC3339(now))", snpRFC3339(crl.thisUpdate)) }
        guard now < crl.nextUpdate else { return invalid("nextUpdate > \(snpRFC3339(now))", snpRFC3339(crl.nextUpdate)) }
        let serial = Hex.encode(intermediate.serialBytes)
        if crl.revokedSerials.contains(serial) {
            return PolicyViolation(code: .snpCertificateRevoked, path: "snp.chain.\(name)",
                                   expected: "not revoked", actual: "serial \(serial) listed in the CRL")
        }
        return nil
    }

    static func malformed(_ error: any Error, path: String) -> PolicyViolation {
        let e = error as? VouchError
        let field = e?.context["field"].map { "\(path).\($0)" } ?? path
        return PolicyViolation(code: .teeEvidenceMalformed, path: field, expected: e?.context["expected"] ?? "well-formed evidence",
                               actual: e?.context["got"] ?? e?.message ?? "\(error)")
    }

    static func certificate(_ bytes: [UInt8]) throws -> Certificate {
        if bytes.starts(with: Array("-----BEGIN".utf8)) { return try Certificate(pem: String(decoding: bytes, as: UTF8.self)) }
        return try Certificate(der: bytes)
    }

    /// The DER inside a PEM block with `label`, or nil when `bytes` is not PEM.
    static func pemBody(_ bytes: [UInt8], label: String) -> [UInt8]? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let begin = text.range(of: "-----BEGIN \(label)-----"), let end = text.range(of: "-----END \(label)-----", range: begin.upperBound..<text.endIndex) else {
            return nil
        }
        let body = text[begin.upperBound..<end.lowerBound].filter { !$0.isWhitespace }
        return (try? Base64.decode(String(body), field: "pem")) ?? []
    }
}

func snpRFC3339(_ d: Date) -> String { d.formatted(.iso8601) }
