import Foundation
import VouchCore
import VouchTPMWire

/// The measurement log of an inference host's model artefacts, in TCG Canonical Event Log (CEL)
/// JSON form: one record per artefact, each extended into PCR 23 (SHA-256 bank) with the file's
/// SHA-256. Content type `vouch-model`; content `{name, sha256, size}`.
public struct ModelLog: Sendable, Equatable {
    public static let pcr = 23
    public static let contentType = "vouch-model"
    public static let maxBytes = 8 << 20
    public static let maxRecords = 100_000

    public struct Artefact: Sendable, Codable, Equatable {
        public var name: String
        public var sha256: String
        public var size: UInt64
        public init(name: String, sha256: String, size: UInt64) { self.name = name; self.sha256 = sha256; self.size = size }
    }

    public struct Record: Sendable, Codable, Equatable {
        public struct Digest: Sendable, Codable, Equatable { public var hashAlg: String; public var digest: String }
        public var recnum: Int
        public var pcr: Int
        public var digests: [Digest]
        public var content_type: String
        public var content: Artefact
    }

    public var records: [Record]

    public init(artefacts: [Artefact]) {
        records = artefacts.enumerated().map { i, a in
            Record(recnum: i, pcr: Self.pcr, digests: [.init(hashAlg: "sha256", digest: a.sha256)], content_type: Self.contentType, content: a)
        }
    }

    /// Parses and checks a CEL JSON model log: bounded size and count, consecutive record numbers,
    /// PCR 23 only, and each record's SHA-256 digest equal to its artefact's digest.
    public init(json: [UInt8]) throws {
        guard json.count <= Self.maxBytes else {
            throw VouchError(.invalidValue, "model log is larger than 8 MiB", context: ["field": "modelLog", "got": "\(json.count)"])
        }
        let records: [Record]
        do { records = try JSONDecoder().decode([Record].self, from: Data(json)) } catch {
            throw VouchError(.invalidValue, "model log is not CEL JSON of vouch-model records", context: ["field": "modelLog"])
        }
        guard records.count <= Self.maxRecords else { throw VouchError(.invalidValue, "model log has too many records", context: ["field": "modelLog"]) }
        for (i, r) in records.enumerated() {
            let field = "modelLog[\(i)]"
            guard r.recnum == i else { throw VouchError(.invalidValue, "record numbers must count from 0", context: ["field": "\(field).recnum", "got": "\(r.recnum)"]) }
            guard r.pcr == Self.pcr else { throw VouchError(.invalidValue, "model measurements go to PCR 23", context: ["field": "\(field).pcr", "got": "\(r.pcr)"]) }
            guard r.content_type == Self.contentType else { throw VouchError(.invalidValue, "unknown content type", context: ["field": "\(field).content_type"]) }
            guard r.content.name.utf8.count <= 4096, !r.content.name.isEmpty else { throw VouchError(.invalidValue, "artefact name is empty or too long", context: ["field": "\(field).content.name"]) }
            guard let d = r.digests.first(where: { $0.hashAlg == "sha256" }), d.digest == r.content.sha256,
                  (try? Hex.decode(d.digest))?.count == 32 else {
                throw VouchError(.invalidValue, "record's SHA-256 digest must equal its artefact's sha256", context: ["field": "\(field).digests"])
            }
        }
        self.records = records
    }

    public var json: [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? [UInt8](e.encode(records))) ?? []
    }

    /// The SHA-256 bank value of PCR 23 after these records, starting from its reset value (zeros).
    public func replay(using digester: Digester) -> [UInt8] {
        var pcr = [UInt8](repeating: 0, count: 32)
        for r in records { pcr = digester.digest(.sha256, pcr + ((try? Hex.decode(r.content.sha256)) ?? [])) }
        return pcr
    }

    /// The manifest digest: SHA-256 over `sha256sum`-style lines "<hex>  <name>\n" sorted by name
    /// (bytewise), so `sha256sum FILES | LC_ALL=C sort -k2 | sha256sum` reproduces it.
    public static func manifestDigest(_ artefacts: [Artefact], using digester: Digester) -> String {
        let lines = artefacts.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
            .map { "\($0.sha256)  \($0.name)\n" }.joined()
        return Hex.encode(digester.digest(.sha256, Array(lines.utf8)))
    }

    public func claims(using digester: Digester) -> ModelClaims {
        ModelClaims(manifestDigest: Self.manifestDigest(records.map(\.content), using: digester), files: records.map(\.content))
    }
}

/// What the model measurement says: the manifest digest and each artefact, and the publisher
/// signatures verified over them.
public struct ModelClaims: Sendable, Codable, Equatable {
    public var manifestDigest: String
    public var files: [ModelLog.Artefact]
    /// Each verified publisher signature, one per signed model directory; nil when none was
    /// verified (no signature measured, or a policy that trusts no publisher).
    public var signatures: [ModelSignatureClaims]?
    public init(manifestDigest: String, files: [ModelLog.Artefact], signatures: [ModelSignatureClaims]? = nil) {
        self.manifestDigest = manifestDigest; self.files = files; self.signatures = signatures
    }
}

/// A publisher's OpenSSF model signature, verified by the broker over the files a host measured:
/// who signed which model, and over which measured directory.
public struct ModelSignatureClaims: Sendable, Codable, Equatable {
    /// The measured directory the signature covers (its files' names in the model log start with it).
    public var directory: String
    /// The signed model name (the signature's in-toto subject).
    public var model: String
    /// The publisher, as the policy names it.
    public var publisher: String
    /// `key`, `certificate` or `sigstore`.
    public var signerKind: String
    /// The signer: `sha256:<SPKI digest>` of a key; the certificate's subject and names; the
    /// Sigstore identity and its OIDC issuer.
    public var signer: String
    /// The signed subject digest (SHA-256 over the files' digests).
    public var subjectDigest: String
    /// SHA-256 of the signature bundle as measured (lowercase hex).
    public var bundleSHA256: String
    /// When the transparency log recorded a keyless signature (RFC 3339), if it was one.
    public var signedAt: String?
    public init(directory: String, model: String, publisher: String, signerKind: String, signer: String, subjectDigest: String,
                bundleSHA256: String, signedAt: String? = nil) {
        self.directory = directory; self.model = model; self.publisher = publisher; self.signerKind = signerKind; self.signer = signer
        self.subjectDigest = subjectDigest; self.bundleSHA256 = bundleSHA256; self.signedAt = signedAt
    }
}
