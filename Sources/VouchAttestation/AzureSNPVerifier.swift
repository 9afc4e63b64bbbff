import Foundation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEEWire

extension ErrorCode {
    /// The HCL report's SNP report was not made at VMPL 0, where the paravisor runs: its
    /// REPORT_DATA does not vouch for the runtime claims.
    public static let azureVMPLNotZero = ErrorCode("azure_vmpl_not_zero", status: 403)
    /// REPORT_DATA does not hold the hash of the HCL report's runtime claims.
    public static let azureRuntimeClaimsMismatch = ErrorCode("azure_runtime_claims_mismatch", status: 403)
    /// The runtime claims REPORT_DATA binds are not usable: not the JSON of Azure's runtime
    /// claims, or without an acceptable RSA `HCLAkPub` (or, through the broker, `HCLEkPub`). The
    /// report is authentic and binds them, so this is a refusal of signed evidence, not a bad request.
    public static let azureRuntimeClaimsInvalid = ErrorCode("azure_runtime_claims_invalid", status: 403)
}

/// What an Azure SEV-SNP confidential VM's HCL report establishes: the SNP claims, and the
/// runtime claims the report binds — the vTPM's attestation key (to verify the VM's TPM quotes
/// with), the VM configuration and the user data.
public struct AzureSNPClaims: Sendable, Equatable, Codable {
    public var snp: SNPClaims
    /// sha256, sha384 or sha512: how REPORT_DATA binds the runtime claims.
    public var runtimeClaimsHash: String
    /// The runtime claims' digest (hex), equal to REPORT_DATA's first bytes.
    public var runtimeClaimsDigest: String
    /// The vTPM attestation key (HCLAkPub) as a PEM SubjectPublicKeyInfo.
    public var attestationKey: String
    /// SHA-256 of the attestation key's DER SubjectPublicKeyInfo (hex).
    public var attestationKeySHA256: String
    public var vmConfiguration: [String: String]
    public var userData: String?
}

/// An HCL report whose SNP report is authentic and binds its runtime claims. Only
/// `AzureSNPVerifier.authenticate` makes one.
public struct VerifiedAzureSNPReport: Sendable {
    public let snp: VerifiedSNPReport
    public let runtimeClaims: AzureRuntimeClaims
    /// The vTPM's attestation key: an RSA key whose quotes are RSASSA with SHA-256.
    public let attestationKey: PublicKey
    let hashType: AzureHCLReport.HashType
    let digest: [UInt8]
    /// SHA-256 of the SEV-SNP report followed by the runtime claims: the parts of the HCL report
    /// that its signature and REPORT_DATA cover. The header, the request-data header and the NV
    /// index's padding after `report_size` are left out, so a host cannot vary the digest of one
    /// verified report.
    public let evidenceDigest: [UInt8]
}

public enum AzureSNPAuthentication: Sendable {
    case authenticated(VerifiedAzureSNPReport)
    case refused(PolicyViolation)
}

/// Verifies the HCL report of an Azure SEV-SNP confidential VM. Checks, in order; an
/// authenticity failure refuses with no claims:
/// 1. the HCL report parses (`AzureHCLReport`, `tee_evidence_malformed`);
/// 2. its SNP report passes `SNPVerifier`'s checks 1–9 (with the VCEK and optional CRL given);
/// 3. the SNP report was made at VMPL 0 (`azure_vmpl_not_zero`): the paravisor's, not the guest's;
/// 4. REPORT_DATA is the runtime claims' digest in the header's hash, then zeros to its 64 bytes
///    (SHA-256: bytes 0–31 the digest, 32–63 zero) (`azure_runtime_claims_mismatch`);
/// 5. the runtime claims are Azure's JSON and hold an acceptable RSA `HCLAkPub` key (a modulus
///    of at least 2048 bits, an odd exponent of at least 3) (`azure_runtime_claims_invalid`);
/// 6. `SNPPolicy` (`SNPVerifier.appraise` with the paravisor's allowlist,
///    `paravisorMeasurements`; its `reportData` is normally left unset here: the verifier's nonce
///    goes into the vTPM quote, which the returned attestation key verifies).
public struct AzureSNPVerifier: Sendable {
    public let snp: SNPVerifier

    public init(snp: SNPVerifier) {
        self.snp = snp
    }

    /// `userData`: the 64 bytes the guest put into the runtime claims' `user-data` (a relying
    /// party's nonce, zero-padded): compared exactly, case-insensitively as hex
    /// (`snp_report_data_mismatch`). On Azure REPORT_DATA holds the runtime claims' hash, so
    /// `policy.reportData` must be nil.
    public func verify(hclReport: [UInt8], endorsementKey: [UInt8], crl: [UInt8]? = nil, at now: Date,
                       policy: SNPPolicy = SNPPolicy(), userData: [UInt8]? = nil) -> TEEVerification<AzureSNPClaims> {
        switch authenticate(hclReport: hclReport, endorsementKey: endorsementKey, crl: crl, at: now) {
        case let .refused(v):
            return .rejected([v], claims: nil)
        case let .authenticated(verified):
            var (snpClaims, violations) = SNPVerifier.appraise(verified.snp, policy: policy, launch: .paravisor)
            if let userData, verified.runtimeClaims.userData?.lowercased() != Hex.encode(userData) {
                violations.append(PolicyViolation(code: .snpReportDataMismatch, path: "azure.runtimeClaims.user-data", expected: Hex.encode(userData),
                                                  actual: verified.runtimeClaims.userData ?? "none"))
            }
            let claims = AzureSNPClaims(snp: snpClaims, runtimeClaimsHash: "\(verified.hashType)", runtimeClaimsDigest: Hex.encode(verified.digest),
                                        attestationKey: (try? verified.attestationKey.pem) ?? "",
                                        attestationKeySHA256: (try? Hex.encode(Crypto.sha256(verified.attestationKey.spkiDER))) ?? "",
                                        vmConfiguration: verified.runtimeClaims.vmConfiguration, userData: verified.runtimeClaims.userData)
            guard violations.isEmpty else { return .rejected(violations, claims: claims) }
            let warnings = verified.snp.revocationChecked ? [] :
                [TEEWarning(code: "snp_revocation_not_checked", message: "no CRL was given: the ASK/ASVK's revocation was not checked")]
            return .verified(claims, warnings: warnings)
        }
    }

    /// Checks 1–5.
    public func authenticate(hclReport: [UInt8], endorsementKey: [UInt8], crl: [UInt8]? = nil, at now: Date) -> AzureSNPAuthentication {
        let hcl: AzureHCLReport
        do { hcl = try AzureHCLReport(bytes: hclReport) } catch {
            return .refused(SNPVerifier.malformed(error, path: "azure.hclReport"))
        }
        let verified: VerifiedSNPReport
        switch snp.authenticate(SNPEvidence(report: hcl.hardwareReport, endorsementKey: endorsementKey, crl: crl), at: now) {
        case let .refused(v): return .refused(v)
        case let .authenticated(v): verified = v
        }
        guard verified.report.vmpl == 0 else {
            return .refused(PolicyViolation(code: .azureVMPLNotZero, path: "azure.snp.vmpl", expected: "0 (the paravisor's report)", actual: "\(verified.report.vmpl)"))
        }
        let digest: [UInt8]
        switch hcl.hashType {
        case .sha256: digest = Crypto.digest(.sha256, hcl.runtimeClaims)
        case .sha384: digest = Crypto.digest(.sha384, hcl.runtimeClaims)
        case .sha512: digest = Crypto.digest(.sha512, hcl.runtimeClaims)
        }
        let bound = Array(verified.report.reportData.prefix(digest.count))
        guard constantTimeEqual(bound, digest), verified.report.reportData.dropFirst(digest.count).allSatisfy({ $0 == 0 }) else {
            return .refused(PolicyViolation(code: .azureRuntimeClaimsMismatch, path: "azure.snp.reportData",
                                            expected: "\(hcl.hashType) of the runtime claims: \(Hex.encode(digest)), then zeros",
                                            actual: Hex.encode(verified.report.reportData)))
        }
        let claims: AzureRuntimeClaims
        do { claims = try AzureRuntimeClaims(json: hcl.runtimeClaims) } catch {
            let e = error as? VouchError
            return .refused(PolicyViolation(code: .azureRuntimeClaimsInvalid, path: "azure.\(e?.context["field"] ?? "runtimeClaims")",
                                            expected: "Azure HCL runtime claims", actual: e?.message ?? "not parsed"))
        }
        let key: PublicKey
        switch Self.vTPMKey(claims.attestationKey, kid: "HCLAkPub") {
        case let .refused(v): return .refused(v)
        case let .accepted(k): key = k
        }
        return .authenticated(VerifiedAzureSNPReport(snp: verified, runtimeClaims: claims, attestationKey: key, hashType: hcl.hashType, digest: digest,
                                                     evidenceDigest: Crypto.sha256(hcl.hardwareReport + hcl.runtimeClaims)))
    }

    /// The smallest RSA modulus accepted for a vTPM key, in bits.
    public static let minimumRSABits = 2048

    /// One of the runtime claims' vTPM keys (`HCLAkPub`, `HCLEkPub`) as an RSA public key: present,
    /// a modulus of at least `minimumRSABits` bits and an odd public exponent of at least 3
    /// (`azure_runtime_claims_invalid`): a paravisor's keys are RSA 2048 with exponent 65537.
    static func vTPMKey(_ jwk: AzureRuntimeClaims.RSAKey?, kid: String) -> VTPMKeyCheck {
        func invalid(_ actual: String) -> VTPMKeyCheck {
            .refused(PolicyViolation(code: .azureRuntimeClaimsInvalid, path: "azure.runtimeClaims.keys.\(kid)",
                                     expected: "an RSA key of at least \(minimumRSABits) bits with an odd exponent >= 3", actual: actual))
        }
        guard let jwk else { return invalid("none") }
        let modulus = jwk.modulus.drop { $0 == 0 }, exponent = jwk.exponent.drop { $0 == 0 }
        let bits = modulus.first.map { (modulus.count - 1) * 8 + (8 - $0.leadingZeroBitCount) } ?? 0
        guard bits >= minimumRSABits else { return invalid("a \(bits)-bit modulus") }
        guard let last = exponent.last, last & 1 == 1, exponent.count > 1 || last >= 3 else { return invalid("exponent \(Hex.encode(Array(exponent)))") }
        guard let key = try? PublicKey(rsaModulus: jwk.modulus, exponent: jwk.exponent) else { return invalid("an unusable key") }
        return .accepted(key)
    }

    /// A vTPM key of the runtime claims, or why it is refused.
    enum VTPMKeyCheck {
        case accepted(PublicKey)
        case refused(PolicyViolation)
    }
}
