import Foundation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchTEEWire

extension ErrorCode {
    /// The document's cabundle does not open with the pinned AWS Nitro Enclaves root.
    public static let nitroRootUntrusted = ErrorCode("nitro_root_untrusted", status: 403)
    /// The cabundle and leaf do not form a valid chain from the root at the check time.
    public static let nitroChainInvalid = ErrorCode("nitro_chain_invalid", status: 403)
    /// The COSE_Sign1 ES384 signature does not verify with the leaf's key.
    public static let nitroSignatureInvalid = ErrorCode("nitro_signature_invalid", status: 403)
    /// The document's timestamp is older than the policy's maxAge, or in the future.
    public static let nitroDocumentStale = ErrorCode("nitro_document_stale", status: 403)
    public static let nitroNonceMismatch = ErrorCode("nitro_nonce_mismatch", status: 403)
    public static let nitroPublicKeyMismatch = ErrorCode("nitro_public_key_mismatch", status: 403)
    public static let nitroUserDataMismatch = ErrorCode("nitro_user_data_mismatch", status: 403)
    /// any of PCR0, 1 and 2 is zero or absent (an enclave launched in debug mode) and the policy does not
    /// allow debug enclaves.
    public static let nitroDebugRefused = ErrorCode("nitro_debug_refused", status: 403)
    /// A PCR the policy pins is absent from the document.
    public static let nitroPCRMissing = ErrorCode("nitro_pcr_missing", status: 403)
    /// A PCR's value is not among the policy's allowed values for it.
    public static let nitroPCRNotAllowed = ErrorCode("nitro_pcr_not_allowed", status: 403)
}

/// What a caller expects of one document beyond its policy: the challenge it sent and the key
/// or data the enclave was to bind.
public struct NitroExpectations: Sendable {
    /// `nonce` must be exactly these bytes.
    public var nonce: [UInt8]?
    /// `public_key` must be exactly these bytes.
    public var publicKey: [UInt8]?
    /// `user_data` must be exactly these bytes.
    public var userData: [UInt8]?

    public init(nonce: [UInt8]? = nil, publicKey: [UInt8]? = nil, userData: [UInt8]? = nil) {
        self.nonce = nonce
        self.publicKey = publicKey
        self.userData = userData
    }
}

/// Verifies AWS Nitro Enclaves attestation documents offline against a pinned root (by default
/// the AWS Nitro Enclaves Root-G1, `NitroRoot`). Checks, in order; steps 1–4 stop at the first
/// refusal, steps 5–8 report every violation they find (with the document's claims):
///
/// 1. the document parses (`tee_evidence_malformed`): a COSE_Sign1, tagged 18 or untagged, read
///    by the bounded CBOR reader (definite lengths, depth 16, no repeated map key); protected
///    header exactly {1: -35} (ES384); a 96-byte signature; the payload a map of exactly the
///    fields AWS defines with their types and sizes (`NitroDocument`);
/// 2. `cabundle[0]` is the pinned root, byte for byte (`nitro_root_untrusted`);
/// 3. every cabundle certificate and the leaf parse; each next certificate (and the leaf after
///    the last) names the previous as its issuer and carries its ECDSA P-384/SHA-384 signature;
///    the leaf's key is EC P-384; and OpenSSL verifies the leaf through the bundle to the pinned
///    root at the check time (every certificate's validity, CA basic constraints, path length)
///    (`nitro_chain_invalid`);
/// 4. the ES384 signature over the Sig_structure ["Signature1", protected, h'', payload]
///    verifies with the leaf's key (`nitro_signature_invalid`). From here on the document is
///    authentic and a refusal carries its claims;
/// 5. the timestamp is at most `maxAge` before the check time and at most `clockSkew` after it
///    (`nitro_document_stale`);
/// 6. `nonce`, `public_key` and `user_data` equal the expected bytes when given
///    (`nitro_nonce_mismatch`, `nitro_public_key_mismatch`, `nitro_user_data_mismatch`; absent
///    counts as unequal);
/// 7. any of PCR0, 1 and 2 zero (or absent) marks a debug enclave: refused unless the policy allows
///    debug (`nitro_debug_refused`), else a warning;
/// 8. every PCR the policy pins is present (`nitro_pcr_missing`) and equal to one of its allowed
///    values (`nitro_pcr_not_allowed`); the matching names are reported in the claims.
public struct NitroVerifier: Sendable {
    public let root: Certificate
    let rootDER: [UInt8]

    /// Trusts exactly `root` (tests: a software root).
    public init(root: Certificate) throws {
        self.root = root
        rootDER = try root.der
    }

    /// Trusts the pinned AWS Nitro Enclaves Root-G1.
    public init() throws {
        try self.init(root: try NitroRoot.certificate())
    }

    /// Parses `bytes` and verifies the document (see the type's doc comment).
    public func verify(document bytes: [UInt8], at now: Date, policy: NitroPolicy = NitroPolicy(),
                       expectations: NitroExpectations = NitroExpectations()) -> TEEVerification<NitroClaims> {
        let document: NitroDocument
        do { document = try NitroDocument(bytes: bytes) } catch {
            let e = error as? VouchError
            return .rejected([PolicyViolation(code: .teeEvidenceMalformed, path: e?.context["field"] ?? "document",
                                              expected: e?.context["expected"] ?? "an AWS Nitro attestation document", actual: e?.message ?? "\(error)")], claims: nil)
        }
        return verify(document: document, at: now, policy: policy, expectations: expectations)
    }

    public func verify(document d: NitroDocument, at now: Date, policy: NitroPolicy = NitroPolicy(),
                       expectations: NitroExpectations = NitroExpectations()) -> TEEVerification<NitroClaims> {
        func refuse(_ code: ErrorCode, _ path: String, _ expected: String, _ actual: String) -> TEEVerification<NitroClaims> {
            .rejected([PolicyViolation(code: code, path: path, expected: expected, actual: actual)], claims: nil)
        }
        // 2. Root pin.
        guard d.cabundle[0] == rootDER else {
            return refuse(.nitroRootUntrusted, "document.cabundle[0]", "the AWS Nitro Enclaves root (sha256 \(Hex.encode(Crypto.sha256(rootDER))))",
                          "sha256 \(Hex.encode(Crypto.sha256(d.cabundle[0])))")
        }
        // 3. Chain, in the bundle's order.
        let leaf: Certificate
        do { leaf = try checkChain(d, at: now) } catch {
            let e = error as? VouchError
            return refuse(.nitroChainInvalid, e?.context["field"] ?? "document.cabundle", "a chain from the root to the leaf, valid at \(now.iso8601)",
                          e?.message ?? "\(error)")
        }
        // 4. COSE signature.
        guard let key = try? leaf.publicKey, d.cose.signature.count == 96,
              let der = try? ecdsaSignatureDER(r: Array(d.cose.signature[0..<48]), s: Array(d.cose.signature[48..<96])),
              key.verify(message: d.cose.toBeSigned, signature: der, scheme: .ecdsa, hash: .sha384) else {
            return refuse(.nitroSignatureInvalid, "cose.signature", "an ES384 signature by the leaf over the Sig_structure", "signature does not verify")
        }
        var claims = NitroClaims(d, leaf: leaf)

        var violations: [PolicyViolation] = []
        var warnings: [TEEWarning] = []
        // 5. Freshness.
        let issued = Date(timeIntervalSince1970: TimeInterval(d.timestamp) / 1000)
        let age = now.timeIntervalSince(issued)
        if age > policy.maxAge || -age > policy.clockSkew {
            violations.append(PolicyViolation(code: .nitroDocumentStale, path: "document.timestamp",
                                              expected: "within \(Int(policy.maxAge)) s before \(now.iso8601) (\(Int(policy.clockSkew)) s after)", actual: claims.timestamp))
        }
        // 6. Bindings.
        func bound(_ code: ErrorCode, _ name: String, _ expected: [UInt8]?, _ actual: [UInt8]?) {
            guard let expected, expected != actual else { return }
            violations.append(PolicyViolation(code: code, path: "document.\(name)", expected: Hex.encode(expected), actual: actual.map(Hex.encode) ?? "absent"))
        }
        bound(.nitroNonceMismatch, "nonce", expectations.nonce, d.nonce)
        bound(.nitroPublicKeyMismatch, "public_key", expectations.publicKey, d.publicKey)
        bound(.nitroUserDataMismatch, "user_data", expectations.userData, d.userData)
        // 7. Debug enclave.
        if claims.debug {
            if policy.allowDebug {
                warnings.append(TEEWarning(code: "nitro_debug_enclave", message: "PCR0, 1 or 2 is zero: a debug-mode enclave, whose memory the parent instance can read"))
            } else {
                violations.append(PolicyViolation(code: .nitroDebugRefused, path: "document.pcrs", expected: "a production enclave (PCR0, 1 and 2 set)",
                                                  actual: "zero (debug mode)"))
            }
        }
        // 8. PCR allowlists.
        let pcrs = Self.appraise(pcrs: d.pcrs, policy: policy)
        violations += pcrs.violations
        claims.pcrNames = pcrs.names
        return violations.isEmpty ? .verified(claims, warnings: warnings) : .rejected(violations, claims: claims)
    }

    /// Step 8: each pinned PCR present and among its allowed values; the matching names by index.
    static func appraise(pcrs: [Int: [UInt8]], policy: NitroPolicy) -> (violations: [PolicyViolation], names: [String: String]) {
        var violations: [PolicyViolation] = []
        var names: [String: String] = [:]
        for (index, allowed) in policy.pcrs.sorted(by: { $0.key < $1.key }) {
            guard let value = pcrs[index] else {
                violations.append(PolicyViolation(code: .nitroPCRMissing, path: "document.pcrs.\(index)", expected: "present", actual: "absent"))
                continue
            }
            if let match = allowed.first(where: { $0.value == value }) {
                names[String(index)] = match.name
            } else {
                violations.append(PolicyViolation(code: .nitroPCRNotAllowed, path: "document.pcrs.\(index)",
                                                  expected: allowed.map(\.name).joined(separator: " | "), actual: Hex.encode(value)))
            }
        }
        return (violations, names)
    }

    /// Step 3: the bundle's certificates in order, then the leaf, each signed by the one before;
    /// then OpenSSL's path validation at `now`. Returns the leaf.
    func checkChain(_ d: NitroDocument, at now: Date) throws -> Certificate {
        func parse(_ der: [UInt8], _ field: String) throws -> Certificate {
            do { return try Certificate(der: der) } catch {
                throw VouchError(.nitroChainInvalid, "\(field) is not a DER certificate", context: ["field": field])
            }
        }
        let bundle = try d.cabundle.enumerated().map { try parse($1, "document.cabundle[\($0)]") }
        let leaf = try parse(d.certificate, "document.certificate")
        var previous = bundle[0]
        for (i, cert) in (bundle.dropFirst() + [leaf]).enumerated() {
            let field = i + 1 < bundle.count ? "document.cabundle[\(i + 1)]" : "document.certificate"
            guard cert.issuer == previous.subject, let parts = try? cert.signedParts(), let key = try? previous.publicKey,
                  key.verify(message: parts.tbs, signature: parts.signature, scheme: .ecdsa, hash: .sha384) else {
                throw VouchError(.nitroChainInvalid, "\(field) is not signed (ECDSA P-384/SHA-384) by the certificate before it", context: ["field": field])
            }
            previous = cert
        }
        guard let key = try? leaf.publicKey, key.isEC, key.bits == 384 else {
            throw VouchError(.nitroChainInvalid, "the leaf's key is not EC P-384", context: ["field": "document.certificate"])
        }
        if let e = leaf.verify(anchors: [root], intermediates: Array(bundle.dropFirst()), at: now) {
            throw VouchError(.nitroChainInvalid, e.message, context: ["field": "document.certificate"])
        }
        return leaf
    }
}

/// What an authentic Nitro attestation document says, with stable JSON names.
public struct NitroClaims: Codable, Sendable, Equatable {
    public var moduleId: String
    /// RFC 3339, from the document's millisecond timestamp (to the second).
    public var timestamp: String
    public var timestampMillis: UInt64
    public var digest: String
    /// PCR index (decimal) → value, lowercase hex.
    public var pcrs: [String: String]
    /// Names the policy gives the matching PCR values, by index.
    public var pcrNames: [String: String]
    /// Any of PCR0, 1 and 2 zero or absent: launched in debug mode.
    public var debug: Bool
    public var publicKey: String?
    public var userData: String?
    public var nonce: String?
    public var leafSubject: String
    public var leafNotAfter: String
    /// Certificates in the cabundle (root first).
    public var cabundleLength: Int
    /// The COSE_Sign1 carried tag 18.
    public var coseTagged: Bool

    init(_ d: NitroDocument, leaf: Certificate) {
        moduleId = d.moduleID
        timestampMillis = d.timestamp
        timestamp = Date(timeIntervalSince1970: TimeInterval(d.timestamp / 1000)).iso8601
        digest = d.digest
        pcrs = Dictionary(uniqueKeysWithValues: d.pcrs.map { (String($0.key), Hex.encode($0.value)) })
        pcrNames = [:]
        debug = NitroPolicy.isDebug(pcrs: d.pcrs)
        publicKey = d.publicKey.map(Hex.encode)
        userData = d.userData.map(Hex.encode)
        nonce = d.nonce.map(Hex.encode)
        leafSubject = leaf.subject
        leafNotAfter = leaf.notAfter.iso8601
        cabundleLength = d.cabundle.count
        coseTagged = d.cose.tagged
    }
}
