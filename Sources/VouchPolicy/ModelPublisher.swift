import VouchCore

/// A publisher a policy trusts to sign models (`model.publishers[]`): who it is, which signed
/// model names it may sign, and how its signatures are recognised. The trust material is held as
/// the policy file wrote it, decoded to bytes (the policy's digest covers it); VouchPolicyFiles
/// checks that it parses when the policy loads.
public struct ModelPublisher: Sendable, Equatable {
    public enum Trust: Sendable, Equatable {
        /// model-signing's `sign key`: the publisher's public key (DER SubjectPublicKeyInfo).
        case key(spki: [UInt8])
        /// model-signing's `sign certificate`: the CA roots the signing certificate must chain to
        /// (DER), and, when set, a subjectAltName (email, URI or DNS name) it must carry.
        case certificate(roots: [[UInt8]], identity: String?)
        /// Sigstore keyless: the trusted root (`trusted_root.json` bytes: Fulcio CAs, Rekor and
        /// CT log keys), the OIDC identity the Fulcio certificate must name and its issuer.
        case sigstore(trustedRoot: [UInt8], identity: String, issuer: String)

        public var kind: String {
            switch self {
            case .key: "key"
            case .certificate: "certificate"
            case .sigstore: "sigstore"
            }
        }
    }

    /// How verdicts, EARs and certificates name the publisher.
    public var name: String
    /// Signed model names (the Statement's subject name) the publisher is trusted for; `*` for any.
    public var models: [String]
    public var trust: Trust

    public init(name: String, models: [String], trust: Trust) { self.name = name; self.models = models; self.trust = trust }

    /// True when `model` is one of `models` (as UTF-8 bytes: no Unicode equivalence), or they are `*`.
    public func signs(model: String) -> Bool { models.contains { $0 == "*" || $0.utf8.elementsEqual(model.utf8) } }
}

extension ModelPublisher {
    /// Trust material as the pure decoder hands it to the check VouchPolicyFiles injects (parsing
    /// keys and certificates takes OpenSSL, and the trusted root the Sigstore parser).
    public enum Material: Sendable, Equatable {
        /// `key:` — the PEM PUBLIC KEY block's DER (a SubjectPublicKeyInfo).
        case publicKey([UInt8])
        /// One PEM CERTIFICATE block of `certificate.roots`, as DER.
        case certificate([UInt8])
        /// `sigstore.trustedRoot` — the bytes of the value as written.
        case sigstoreTrustedRoot([UInt8])
    }

    /// Checks that material parses as it must; throws a `VouchError` whose message completes
    /// "model.publishers[i].key …" (such as "is not an EC public key on P-256, P-384 or P-521"),
    /// which the decoder reports as `policy_invalid` at the material's position.
    public typealias MaterialCheck = (Material) throws -> Void

    public static let maxPublishers = 32
    public static let maxModels = 64
    public static let maxRoots = 16
    /// How a trust entry names its kind in the policy.
    public static let trustKeys = ["key", "certificate", "sigstore"]

    /// Decodes `model.publishers` (docs/policy.md, "Signed models"). Checks, in order, each
    /// refusal `policy_invalid` at the offending node with its path:
    /// 1. a list of at most 32 entries, each a mapping of only `name`, `models`, `key`,
    ///    `certificate`, `sigstore`;
    /// 2. `name`: 1–128 characters, none a control, format, separator other than a space, or
    ///    unassigned one, no space at either end, unique in the list (exact comparison);
    /// 3. `models`: a list of 1–64 distinct names of 1–1024 UTF-8 bytes, or `["*"]` alone;
    /// 4. exactly one of `key`, `certificate`, `sigstore`;
    /// 5. `key`: one PEM PUBLIC KEY block (`PEMBlocks`), then `check(.publicKey)`;
    ///    `certificate`: a mapping of `roots` (1–16 PEM CERTIFICATE blocks, each then
    ///    `check(.certificate)`) and an optional `identity`; `sigstore`: a mapping of `trustedRoot`
    ///    (non-empty, then `check(.sigstoreTrustedRoot)`), `identity` and `issuer`, both required.
    ///    Identities and issuers are 1–1024 bytes without spaces or control characters.
    /// Without `check` (the pure decoder alone) material is decoded but not parsed.
    static func decodeList(_ node: ConfigNode, path: String, check: MaterialCheck?) throws -> [ModelPublisher] {
        let entries = try PolicyDecoder.sequence(node, path: path)
        guard entries.count <= maxPublishers else { throw PolicyDecoder.invalid(node, path, "lists \(entries.count) publishers: at most \(maxPublishers)") }
        var names = Set<String>()
        return try entries.enumerated().map { i, entry in
            let e = try PolicyDecoder.Mapping(entry, path: "\(path)[\(i)]")
            try e.allowOnly(Set(["name", "models"] + trustKeys))
            let name = try e.requiredString("name")
            guard isPublisherName(name.value) else {
                throw PolicyDecoder.invalid(name.node, e.child("name"), "must be 1-128 printable characters without a space at either end")
            }
            guard names.insert(name.value).inserted else { throw PolicyDecoder.invalid(name.node, e.child("name"), "is also another publisher's name") }
            let models = try decodeModels(try e.required("models"), path: e.child("models"))
            let given = e.entries.filter { trustKeys.contains($0.key.scalar ?? "") }
            guard given.count == 1, let trust = given.first, let kind = trust.key.scalar else {
                let names = given.compactMap(\.key.scalar).joined(separator: " and ")
                throw PolicyDecoder.invalid(given.dropFirst().first?.key ?? entry, e.path,
                                            "must have exactly one of key, certificate, sigstore (\(given.isEmpty ? "none given" : "has \(names)"))")
            }
            return ModelPublisher(name: name.value, models: models, trust: try decodeTrust(kind, trust.value, path: e.child(kind), check: check))
        }
    }

    static func decodeModels(_ node: ConfigNode, path: String) throws -> [String] {
        let items = try PolicyDecoder.sequence(node, path: path)
        guard (1...maxModels).contains(items.count) else { throw PolicyDecoder.invalid(node, path, "must list 1-\(maxModels) signed model names, or [\"*\"] for any") }
        var seen = Set<String>()
        return try items.map { n in
            guard let s = n.scalar, (1...1024).contains(s.utf8.count) else { throw PolicyDecoder.invalid(n, path, "each entry must be a model name of 1-1024 bytes") }
            guard s != "*" || items.count == 1 else { throw PolicyDecoder.invalid(n, path, "\"*\" (any model) must be the only entry") }
            guard seen.insert(s).inserted else { throw PolicyDecoder.invalid(n, path, "lists \(s.prefix(64)) twice") }
            return s
        }
    }

    static func decodeTrust(_ kind: String, _ node: ConfigNode, path: String, check: MaterialCheck?) throws -> Trust {
        switch kind {
        case "key":
            let der = try pem(node, path: path, label: "PUBLIC KEY", maxBlocks: 1)[0]
            try run(check, .publicKey(der), node, path)
            return .key(spki: der)
        case "certificate":
            let m = try PolicyDecoder.Mapping(node, path: path)
            try m.allowOnly(["roots", "identity"])
            let rootsNode = try m.required("roots")
            let roots = try pem(rootsNode, path: m.child("roots"), label: "CERTIFICATE", maxBlocks: maxRoots)
            for (k, der) in roots.enumerated() {
                try run(check, .certificate(der), rootsNode, m.child("roots"), prefix: roots.count > 1 ? "certificate \(k + 1) of \(roots.count) " : "")
            }
            return .certificate(roots: roots, identity: try m.optional("identity").map { try identity($0, m.child("identity")) })
        default:
            let m = try PolicyDecoder.Mapping(node, path: path)
            try m.allowOnly(["trustedRoot", "identity", "issuer"])
            let root = try m.requiredString("trustedRoot")
            let bytes = Array(root.value.utf8)
            try run(check, .sigstoreTrustedRoot(bytes), root.node, m.child("trustedRoot"))
            return .sigstore(trustedRoot: bytes, identity: try identity(try m.required("identity"), m.child("identity")),
                             issuer: try identity(try m.required("issuer"), m.child("issuer")))
        }
    }

    private static func pem(_ node: ConfigNode, path: String, label: String, maxBlocks: Int) throws -> [[UInt8]] {
        guard let text = node.scalar else { throw PolicyDecoder.invalid(node, path, "must be PEM text (\(label))") }
        do { return try PEMBlocks.decode(text, label: label, maxBlocks: maxBlocks) } catch {
            throw PolicyDecoder.invalid(node, path, "must be \(maxBlocks == 1 ? "one" : "1-\(maxBlocks)") PEM \(label) block\(maxBlocks == 1 ? "" : "s"): \(error.reason)")
        }
    }

    private static func run(_ check: MaterialCheck?, _ material: Material, _ node: ConfigNode, _ path: String, prefix: String = "") throws {
        do { try check?(material) } catch {
            throw PolicyDecoder.invalid(node, path, prefix + ((error as? VouchError)?.message ?? "does not parse: \(error)"))
        }
    }

    private static func identity(_ node: ConfigNode, _ path: String) throws -> String {
        guard let s = node.scalar, (1...1024).contains(s.utf8.count),
              !s.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) else {
            throw PolicyDecoder.invalid(node, path, "must be 1-1024 bytes without spaces or control characters")
        }
        return s
    }

    static func isPublisherName(_ s: String) -> Bool {
        let refused: Set<Unicode.GeneralCategory> = [.control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator]
        return (1...128).contains(s.count) && s.first != " " && s.last != " "
            && s.unicodeScalars.allSatisfy { !refused.contains($0.properties.generalCategory) && ($0 == " " || !$0.properties.isWhitespace) }
    }
}
