import Foundation
import VouchCore

/// A Sigstore trusted root (`trusted_root.json`, protobuf-specs `dev.sigstore.trustedroot.v1.TrustedRoot`
/// in its JSON form, media type `application/vnd.dev.sigstore.trustedroot+json;version=0.1` or
/// `0.2`): the keys of the Rekor transparency logs, of the certificate-transparency logs, and the
/// Fulcio certificate authorities' chains, each with the period it may be used for. Timestamp
/// authorities are counted but not read: Vouch takes a keyless signature's time from the Rekor
/// entry's signed timestamp only.
///
/// Parsing checks shape and bounds, in order, each failure `invalid_value` with the field at
/// fault in `context["field"]`:
/// 1. at most `maxBytes` of JSON, with a known `mediaType`;
/// 2. at most `maxEntries` logs of each kind and certificate authorities;
/// 3. every log: a base URL, `hashAlgorithm`, a key (`publicKey.rawBytes`, 1 byte to 16 KiB of
///    base64 DER SubjectPublicKeyInfo, and `keyDetails`), `validFor.start` (and `end`, when
///    present) an RFC 3339 time, and `logId.keyId`;
/// 4. every certificate authority: 1 to `maxChain` certificates (base64 DER, 1 byte to 16 KiB
///    each, the issuing CA first and the root last) and `validFor` as for logs.
/// Nothing is verified here: the keys and certificates are parsed by whoever uses them.
public struct SigstoreTrustedRoot: Sendable, Equatable {
    /// Longest trusted root read (JSON text); Sigstore's public-good root is about 7 KB.
    public static let maxBytes = 1 << 20
    /// Most entries read in each list (logs, certificate authorities, timestamp authorities).
    public static let maxEntries = 64
    /// Longest certificate chain of one authority.
    public static let maxChain = 10
    public static let mediaTypes = [
        "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "application/vnd.dev.sigstore.trustedroot+json;version=0.2",
    ]

    /// When a key or authority may be used: from `start`, up to `end` when set (both inclusive).
    public struct ValidFor: Sendable, Equatable {
        public let start: Date
        public let end: Date?
        public init(start: Date, end: Date?) { self.start = start; self.end = end }
        public func contains(_ time: Date) -> Bool { time >= start && (end.map { time <= $0 } ?? true) }
    }

    /// A transparency log: a Rekor instance (`tlogs`) or a certificate-transparency log (`ctlogs`).
    public struct TransparencyLog: Sendable, Equatable {
        public let baseURL: String
        /// The log's Merkle tree hash (`SHA2_256` for every log Sigstore runs).
        public let hashAlgorithm: String
        /// The log's public key, DER SubjectPublicKeyInfo.
        public let publicKey: [UInt8]
        /// The key's algorithm as the root names it (`PKIX_ECDSA_P256_SHA_256`, `PKIX_ED25519`, ...).
        public let keyDetails: String
        public let validFor: ValidFor
        /// The log ID the root declares (for Rekor v1 and CT logs, the SHA-256 of `publicKey`).
        public let logID: [UInt8]
    }

    /// A Fulcio certificate authority.
    public struct CertificateAuthority: Sendable, Equatable {
        /// `subject.organization` and `subject.commonName`, for messages (empty when absent).
        public let organization: String
        public let commonName: String
        public let uri: String
        /// DER certificates, the issuing CA first and the self-signed root last.
        public let certificates: [[UInt8]]
        public let validFor: ValidFor
    }

    public let mediaType: String
    /// Rekor logs.
    public let tlogs: [TransparencyLog]
    /// Certificate-transparency logs (the keys that sign Fulcio certificates' SCTs).
    public let ctlogs: [TransparencyLog]
    public let certificateAuthorities: [CertificateAuthority]
    /// How many RFC 3161 timestamp authorities the root lists (not used by Vouch).
    public let timestampAuthorityCount: Int

    struct Wire: Decodable {
        struct Bytes: Decodable { var rawBytes: String? }
        struct Range: Decodable { var start: String?; var end: String? }
        struct Key: Decodable { var rawBytes: String?; var keyDetails: String?; var validFor: Range? }
        struct LogID: Decodable { var keyId: String? }
        struct Log: Decodable {
            var baseUrl: String?
            var hashAlgorithm: String?
            var publicKey: Key?
            var logId: LogID?
        }
        struct Subject: Decodable { var organization: String?; var commonName: String? }
        struct Chain: Decodable { var certificates: [Bytes]? }
        struct Authority: Decodable {
            var subject: Subject?
            var uri: String?
            var certChain: Chain?
            var validFor: Range?
        }
        var mediaType: String
        var tlogs: [Log]?
        var ctlogs: [Log]?
        var certificateAuthorities: [Authority]?
        var timestampAuthorities: [Authority]?
    }

    public init(json bytes: [UInt8]) throws {
        // 1
        guard bytes.count <= Self.maxBytes else { throw Self.bad("the trusted root is over \(Self.maxBytes) bytes", "trustedRoot") }
        let wire: Wire
        do { wire = try JSONDecoder().decode(Wire.self, from: Data(bytes)) } catch {
            throw Self.bad("not a Sigstore trusted root (JSON with mediaType, tlogs, ctlogs, certificateAuthorities)", "trustedRoot")
        }
        guard Self.mediaTypes.contains(wire.mediaType) else { throw Self.bad("unknown trusted root media type", "trustedRoot.mediaType") }
        // 2
        for (list, count) in [("tlogs", wire.tlogs?.count), ("ctlogs", wire.ctlogs?.count),
                              ("certificateAuthorities", wire.certificateAuthorities?.count),
                              ("timestampAuthorities", wire.timestampAuthorities?.count)] where (count ?? 0) > Self.maxEntries {
            throw Self.bad("more than \(Self.maxEntries) entries", "trustedRoot.\(list)")
        }
        // 3
        tlogs = try (wire.tlogs ?? []).enumerated().map { try Self.log($1, "trustedRoot.tlogs[\($0)]") }
        ctlogs = try (wire.ctlogs ?? []).enumerated().map { try Self.log($1, "trustedRoot.ctlogs[\($0)]") }
        // 4
        certificateAuthorities = try (wire.certificateAuthorities ?? []).enumerated().map { i, a in
            let field = "trustedRoot.certificateAuthorities[\(i)]"
            let certs = a.certChain?.certificates ?? []
            guard (1...Self.maxChain).contains(certs.count) else { throw Self.bad("a chain has 1 to \(Self.maxChain) certificates", "\(field).certChain") }
            return CertificateAuthority(organization: String((a.subject?.organization ?? "").prefix(256)),
                                        commonName: String((a.subject?.commonName ?? "").prefix(256)),
                                        uri: String((a.uri ?? "").prefix(1024)),
                                        certificates: try certs.enumerated().map { try Self.bytes($1.rawBytes, "\(field).certChain.certificates[\($0)].rawBytes") },
                                        validFor: try Self.range(a.validFor, "\(field).validFor"))
        }
        timestampAuthorityCount = wire.timestampAuthorities?.count ?? 0
        mediaType = wire.mediaType
    }

    /// The Rekor log whose ID is `logID`, computed as the SHA-256 of its key (`sha256`): the ID
    /// declared in the root is not trusted to name the key.
    public func rekorLog(id logID: [UInt8], sha256: ([UInt8]) -> [UInt8]) -> TransparencyLog? {
        tlogs.first { sha256($0.publicKey) == logID }
    }

    /// The CT log whose ID (SHA-256 of its key) is `logID`.
    public func ctLog(id logID: [UInt8], sha256: ([UInt8]) -> [UInt8]) -> TransparencyLog? {
        ctlogs.first { sha256($0.publicKey) == logID }
    }

    static func log(_ l: Wire.Log, _ field: String) throws -> TransparencyLog {
        guard let url = l.baseUrl, !url.isEmpty, url.utf8.count <= 1024 else { throw bad("a log has no base URL", "\(field).baseUrl") }
        guard let hash = l.hashAlgorithm, !hash.isEmpty, hash.utf8.count <= 64 else { throw bad("a log has no hash algorithm", "\(field).hashAlgorithm") }
        guard let key = l.publicKey else { throw bad("a log has no public key", "\(field).publicKey") }
        guard let details = key.keyDetails, !details.isEmpty, details.utf8.count <= 64 else { throw bad("a log key has no keyDetails", "\(field).publicKey.keyDetails") }
        let der = try bytes(key.rawBytes, "\(field).publicKey.rawBytes")
        let validFor = try range(key.validFor, "\(field).publicKey.validFor")
        let id = try bytes(l.logId?.keyId, "\(field).logId.keyId")
        guard id.count <= 64 else { throw bad("a log ID is over 64 bytes", "\(field).logId.keyId") }
        return TransparencyLog(baseURL: url, hashAlgorithm: hash, publicKey: der, keyDetails: details, validFor: validFor, logID: id)
    }

    static func range(_ r: Wire.Range?, _ field: String) throws -> ValidFor {
        guard let s = r?.start, let start = Date.parseRFC3339(s) else { throw bad("validFor.start is not an RFC 3339 time", "\(field).start") }
        guard let e = r?.end else { return ValidFor(start: start, end: nil) }
        guard let end = Date.parseRFC3339(e), end >= start else { throw bad("validFor.end is not an RFC 3339 time after start", "\(field).end") }
        return ValidFor(start: start, end: end)
    }

    /// Protobuf JSON bytes: base64, 1 byte to 16 KiB.
    static func bytes(_ s: String?, _ field: String) throws -> [UInt8] {
        guard let s, let b = try? SigstoreBundle.base64(s, field), (1...(16 << 10)).contains(b.count) else {
            throw bad("not base64 of 1 byte to 16 KiB", field)
        }
        return b
    }

    static func bad(_ message: String, _ field: String) -> VouchError {
        VouchError(.invalidValue, message, context: ["field": field])
    }
}
