import Foundation
import VouchCore
import VouchTPMWire

/// The measurement log of an inference host's model artefacts, in TCG Canonical Event Log (CEL)
/// JSON form, each record extended into PCR 23 (SHA-256 bank) with its SHA-256:
/// - content type `vouch-model`, content `{name, sha256, size}`: one artefact (a file), extended
///   with the file's SHA-256, in name order;
/// - content type `vouch-model-signature`, content `{name, sha256, size, directory, bundle}`: an
///   OpenSSF model signature (a Sigstore bundle, base64 in `bundle`) measured with the directory
///   it covers (`directory`: as its files' names start, without the trailing `/`), extended with
///   the bundle's SHA-256, after every artefact, in directory order.
///
/// Logs written before signature records existed hold only `vouch-model` records and parse as
/// they did. `artefacts`, the manifest digest and `files` leave signature records out, so a
/// manifest digest a policy lists is the same with or without a signature beside the model.
public struct ModelLog: Sendable, Equatable {
    public static let pcr = 23
    public static let contentType = "vouch-model"
    public static let signatureContentType = "vouch-model-signature"
    /// Largest log read: the files' records and a signature bundle of up to
    /// `maxSignatureBytes` (base64) each.
    public static let maxBytes = 16 << 20
    public static let maxRecords = 100_000
    /// Largest signature bundle recorded (`SigstoreBundle.maxBytes`).
    public static let maxSignatureBytes = 4 << 20
    /// Most signature records in one log.
    public static let maxSignatures = 8

    public struct Artefact: Sendable, Codable, Equatable {
        public var name: String
        public var sha256: String
        public var size: UInt64
        public init(name: String, sha256: String, size: UInt64) { self.name = name; self.sha256 = sha256; self.size = size }
    }

    /// A model signature measured with the directory it covers. Encoded with `bundle` in base64.
    public struct Signature: Sendable, Codable, Equatable {
        /// The signature file's path as measured (e.g. `DIR/model.sig`).
        public var name: String
        /// SHA-256 of `bundle` (lowercase hex): what PCR 23 is extended with.
        public var sha256: String
        public var size: UInt64
        /// The measured directory the signature covers, as its artefacts' names start (`DIR` for
        /// `DIR/config.json`).
        public var directory: String
        /// The bundle's bytes (a Sigstore bundle, JSON), as read from the file.
        public var bundle: [UInt8]

        public init(name: String, sha256: String, directory: String, bundle: [UInt8]) {
            self.name = name; self.sha256 = sha256; self.size = UInt64(bundle.count); self.directory = directory; self.bundle = bundle
        }

        enum CodingKeys: String, CodingKey { case name, sha256, size, directory, bundle }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            sha256 = try c.decode(String.self, forKey: .sha256)
            size = try c.decode(UInt64.self, forKey: .size)
            directory = try c.decode(String.self, forKey: .directory)
            let text = try c.decode(String.self, forKey: .bundle)
            // Base64 of at most maxSignatureBytes, checked before decoding.
            guard text.utf8.count <= (ModelLog.maxSignatureBytes + 2) / 3 * 4 else {
                throw DecodingError.dataCorruptedError(forKey: .bundle, in: c, debugDescription: "bundle over \(ModelLog.maxSignatureBytes) bytes")
            }
            bundle = try Base64.decode(text, field: "bundle")
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(sha256, forKey: .sha256)
            try c.encode(size, forKey: .size)
            try c.encode(directory, forKey: .directory)
            try c.encode(Base64.encode(bundle), forKey: .bundle)
        }

        /// True when `artefact` (a name as measured) lies under this signature's directory.
        /// Bytewise: `DIR/` begins the name's UTF-8.
        public func covers(_ artefact: String) -> Bool { artefact.utf8.starts(with: (directory + "/").utf8) }

        /// `artefact`'s name relative to the directory (the name a manifest lists it by).
        public func relativeName(_ artefact: String) -> String { String(artefact.utf8.dropFirst(directory.utf8.count + 1)) ?? artefact }
    }

    /// What one record measured.
    public enum Content: Sendable, Equatable {
        case artefact(Artefact)
        case signature(Signature)

        /// The SHA-256 the record extends PCR 23 with (lowercase hex).
        public var sha256: String {
            switch self {
            case let .artefact(a): a.sha256
            case let .signature(s): s.sha256
            }
        }
        public var contentType: String {
            switch self {
            case .artefact: ModelLog.contentType
            case .signature: ModelLog.signatureContentType
            }
        }
    }

    public struct Record: Sendable, Codable, Equatable {
        public struct Digest: Sendable, Codable, Equatable { public var hashAlg: String; public var digest: String }
        public var recnum: Int
        public var pcr: Int
        public var digests: [Digest]
        public var content_type: String
        public var content: Content

        init(recnum: Int, content: Content) {
            self.recnum = recnum; pcr = ModelLog.pcr; digests = [.init(hashAlg: "sha256", digest: content.sha256)]
            content_type = content.contentType; self.content = content
        }

        enum CodingKeys: String, CodingKey { case recnum, pcr, digests, content_type, content }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            recnum = try c.decode(Int.self, forKey: .recnum)
            pcr = try c.decode(Int.self, forKey: .pcr)
            digests = try c.decode([Digest].self, forKey: .digests)
            content_type = try c.decode(String.self, forKey: .content_type)
            switch content_type {
            case ModelLog.contentType: content = .artefact(try c.decode(Artefact.self, forKey: .content))
            case ModelLog.signatureContentType: content = .signature(try c.decode(Signature.self, forKey: .content))
            default: throw DecodingError.dataCorruptedError(forKey: .content_type, in: c, debugDescription: "unknown content type")
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(recnum, forKey: .recnum)
            try c.encode(pcr, forKey: .pcr)
            try c.encode(digests, forKey: .digests)
            try c.encode(content_type, forKey: .content_type)
            switch content {
            case let .artefact(a): try c.encode(a, forKey: .content)
            case let .signature(s): try c.encode(s, forKey: .content)
            }
        }
    }

    public var records: [Record]

    /// The artefacts (in name order as given), then the signatures, numbered from 0.
    public init(artefacts: [Artefact], signatures: [Signature] = []) {
        records = (artefacts.map(Content.artefact) + signatures.map(Content.signature)).enumerated().map { Record(recnum: $0, content: $1) }
    }

    /// Parses and checks a CEL JSON model log, in order: bounded size (`maxBytes`) and count
    /// (`maxRecords`, at most `maxSignatures` signatures); record numbers counting from 0; PCR 23
    /// only; a known content type; names 1–4096 bytes; each record's SHA-256 digest equal to its
    /// content's `sha256` (32 bytes); for a signature, a bundle of 1 byte to `maxSignatureBytes`
    /// whose `size` is its length, a directory 1–4096 bytes, not ending in `/`, named by no
    /// other signature. That a signature's `sha256` is its bundle's digest needs a digester:
    /// `mismatchedSignatures(using:)`.
    public init(json: [UInt8]) throws {
        guard json.count <= Self.maxBytes else {
            throw VouchError(.invalidValue, "model log is larger than \(Self.maxBytes >> 20) MiB", context: ["field": "modelLog", "got": "\(json.count)"])
        }
        let records: [Record]
        do { records = try JSONDecoder().decode([Record].self, from: Data(json)) } catch {
            throw VouchError(.invalidValue, "model log is not CEL JSON of vouch-model and vouch-model-signature records", context: ["field": "modelLog"])
        }
        guard records.count <= Self.maxRecords else { throw VouchError(.invalidValue, "model log has too many records", context: ["field": "modelLog"]) }
        var directories = Set<[UInt8]>()   // bytes: Unicode-equivalent spellings are other directories
        for (i, r) in records.enumerated() {
            let field = "modelLog[\(i)]"
            func bad(_ message: String, _ sub: String) -> VouchError { VouchError(.invalidValue, message, context: ["field": "\(field).\(sub)"]) }
            guard r.recnum == i else { throw VouchError(.invalidValue, "record numbers must count from 0", context: ["field": "\(field).recnum", "got": "\(r.recnum)"]) }
            guard r.pcr == Self.pcr else { throw VouchError(.invalidValue, "model measurements go to PCR 23", context: ["field": "\(field).pcr", "got": "\(r.pcr)"]) }
            let name: String
            switch r.content {
            case let .artefact(a): name = a.name
            case let .signature(s):
                name = s.name
                guard directories.count < Self.maxSignatures else { throw bad("more than \(Self.maxSignatures) signatures", "content") }
                guard !s.bundle.isEmpty, s.bundle.count <= Self.maxSignatureBytes, s.size == UInt64(s.bundle.count) else {
                    throw bad("a signature bundle is 1 byte to \(Self.maxSignatureBytes >> 20) MiB and its size is its length", "content.bundle")
                }
                guard !s.directory.isEmpty, s.directory.utf8.count <= 4096, !s.directory.hasSuffix("/") else {
                    throw bad("a signature's directory is 1 to 4096 bytes, without a trailing /", "content.directory")
                }
                guard directories.insert(Array(s.directory.utf8)).inserted else { throw bad("two signatures for one directory", "content.directory") }
            }
            guard name.utf8.count <= 4096, !name.isEmpty else { throw bad("a name is empty or too long", "content.name") }
            guard let d = r.digests.first(where: { $0.hashAlg == "sha256" }), d.digest == r.content.sha256,
                  (try? Hex.decode(d.digest))?.count == 32 else {
                throw bad("record's SHA-256 digest must equal its content's sha256", "digests")
            }
        }
        self.records = records
    }

    public var json: [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return (try? [UInt8](e.encode(records))) ?? []
    }

    /// The files measured, in log order (signature records left out).
    public var artefacts: [Artefact] {
        records.compactMap { if case let .artefact(a) = $0.content { return a } else { return nil } }
    }

    /// The signatures measured, in log order.
    public var signatures: [Signature] {
        records.compactMap { if case let .signature(s) = $0.content { return s } else { return nil } }
    }

    /// The indices (in `signatures`) of signatures whose `sha256` is not their bundle's SHA-256.
    public func mismatchedSignatures(using digester: Digester) -> [Int] {
        signatures.enumerated().compactMap { i, s in Hex.encode(digester.digest(.sha256, s.bundle)) == s.sha256 ? nil : i }
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

    /// The artefacts' claims (signatures are verified, and added, by the broker).
    public func claims(using digester: Digester) -> ModelClaims {
        let files = artefacts
        return ModelClaims(manifestDigest: Self.manifestDigest(files, using: digester), files: files)
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
