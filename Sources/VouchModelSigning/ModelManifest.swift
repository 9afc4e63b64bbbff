import Foundation
import VouchCore

/// What an OpenSSF model signature signs: an in-toto Statement v1 whose one subject names the
/// model and carries the SHA-256 over its files' digests, with the predicate
/// `https://model_signing/signature/v1.0` listing every file (`resources`) and how the files were
/// hashed (`serialization`).
///
/// Read only from a payload whose signature has been verified (`ModelSignatureVerifier`). The
/// checks, in order, each `model_manifest_invalid` with the field at fault:
/// 1. `_type` is `https://in-toto.io/Statement/v1`, `predicateType` the v1.0 predicate (the v0.2
///    "Digests" form names no model and lists no serialization: not accepted);
/// 2. exactly one subject, its name 1–1024 bytes without control characters, its `sha256` 64 hex
///    digits;
/// 3. the serialization is `method: files` with `hash_type: sha256` — the only one whose digests are
///    whole-file SHA-256, what an attester measures into PCR 23 (shards and BLAKE2 are refused);
/// 4. every resource has algorithm `sha256`, a 64-hex digest and a safe relative path (no `..`,
///    `.`, empty or absolute components), each path once;
/// 5. the subject's digest is the SHA-256 over the resources' digest bytes in the order listed
///    (what model-signing computes), so the subject and the file list cannot disagree.
public struct ModelManifest: Sendable, Equatable {
    public static let statementType = "https://in-toto.io/Statement/v1"
    public static let predicateType = "https://model_signing/signature/v1.0"
    /// Most files read from one manifest: about what a `SigstoreBundle.maxBytes` bundle holds
    /// with names of a few dozen bytes.
    public static let maxResources = 20_000

    public struct File: Sendable, Equatable {
        /// Path relative to the model's directory, `/`-separated.
        public let name: String
        /// SHA-256, lowercase hex.
        public let sha256: String
    }

    /// The signed model name (the Statement's subject; model-signing's CLI writes the model
    /// directory's name).
    public let modelName: String
    /// The subject's digest: SHA-256 over the files' digests (lowercase hex).
    public let rootDigest: String
    public let files: [File]
    /// Paths the signer left out of the manifest (relative to the model directory).
    public let ignorePaths: [String]
    public let allowSymlinks: Bool

    struct Wire: Decodable {
        struct Subject: Decodable { var name: String; var digest: [String: String] }
        struct Resource: Decodable { var name: String; var algorithm: String; var digest: String }
        struct Serialization: Decodable {
            var method: String
            var hash_type: String
            var allow_symlinks: Bool?
            var ignore_paths: [String]?
        }
        struct Predicate: Decodable { var resources: [Resource]; var serialization: Serialization }
        var _type: String
        var subject: [Subject]
        var predicateType: String
        var predicate: Predicate?
    }

    /// Parses a verified statement; `sha256` digests the resource digests' concatenation.
    public init(statement bytes: [UInt8], sha256: ([UInt8]) -> [UInt8]) throws {
        let w: Wire
        do { w = try JSONDecoder().decode(Wire.self, from: Data(bytes)) } catch {
            throw Self.bad("not an in-toto Statement with a model-signing predicate", "statement")
        }
        // 1
        guard w._type == Self.statementType else { throw Self.bad("not an in-toto Statement v1", "statement._type") }
        guard w.predicateType == Self.predicateType, let predicate = w.predicate else {
            throw Self.bad("predicateType is not \(Self.predicateType)", "statement.predicateType")
        }
        // 2
        guard w.subject.count == 1 else { throw Self.bad("a model signature has exactly one subject", "statement.subject") }
        let subject = w.subject[0]
        guard !subject.name.isEmpty, subject.name.utf8.count <= 1024 else { throw Self.bad("the model name is 1 to 1024 bytes", "statement.subject.name") }
        // Verdicts, EARs and `vouch` print the name: no control characters (C0, DEL, C1).
        guard !subject.name.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) else {
            throw Self.bad("the model name holds a control character", "statement.subject.name")
        }
        guard let root = subject.digest["sha256"], Self.isHexDigest(root) else {
            throw Self.bad("the subject has no SHA-256 digest of 64 lowercase hex digits", "statement.subject.digest.sha256")
        }
        // 3
        let s = predicate.serialization
        guard s.method == "files" else {
            throw Self.bad("serialization method \(s.method.prefix(32)) is not compared (only files: each file's whole SHA-256)", "statement.predicate.serialization.method")
        }
        guard s.hash_type == "sha256" else {
            throw Self.bad("hash_type \(s.hash_type.prefix(32)) is not compared (only sha256)", "statement.predicate.serialization.hash_type")
        }
        // 4
        guard predicate.resources.count <= Self.maxResources else { throw Self.bad("more than \(Self.maxResources) files", "statement.predicate.resources") }
        var seen = Set<[UInt8]>()   // bytes: Unicode-equivalent names are distinct files
        var files: [File] = []
        var concatenated: [UInt8] = []
        concatenated.reserveCapacity(predicate.resources.count * 32)
        for (i, r) in predicate.resources.enumerated() {
            let field = "statement.predicate.resources[\(i)]"
            guard r.algorithm == "sha256" else { throw Self.bad("a file's algorithm is not sha256", "\(field).algorithm") }
            guard Self.isHexDigest(r.digest), let d = try? Hex.decode(r.digest) else { throw Self.bad("a digest is not 64 lowercase hex digits", "\(field).digest") }
            guard Self.isSafeRelativePath(r.name) else { throw Self.bad("a file name is not a safe relative path", "\(field).name") }
            guard seen.insert(Array(r.name.utf8)).inserted else { throw Self.bad("a file is listed twice", "\(field).name") }
            files.append(File(name: r.name, sha256: r.digest))
            concatenated += d
        }
        // 5
        guard Hex.encode(sha256(concatenated)) == root else {
            throw Self.bad("the subject's digest is not the digest of the listed files' digests", "statement.subject.digest.sha256")
        }
        modelName = subject.name
        rootDigest = root
        self.files = files
        ignorePaths = (s.ignore_paths ?? []).filter { $0.utf8.count <= 4096 }
        allowSymlinks = s.allow_symlinks ?? false
    }

    /// True when `name` (relative to the model directory) is one of the signer's ignored paths
    /// or lies under one, compared as UTF-8 bytes (no Unicode equivalence).
    public func isIgnored(_ name: String) -> Bool {
        let n = Array(name.utf8)
        return ignorePaths.contains { p in
            var q = Array(p.utf8)
            if q.starts(with: Array("./".utf8)) { q.removeFirst(2) }
            while q.last == UInt8(ascii: "/") { q.removeLast() }
            return !q.isEmpty && (n == q || n.starts(with: q + [UInt8(ascii: "/")]))
        }
    }

    /// 1–4096 bytes, `/`-separated, no empty, `.` or `..` component, no NUL, not absolute.
    public static func isSafeRelativePath(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 4096, !name.utf8.contains(0) else { return false }
        return name.split(separator: "/", omittingEmptySubsequences: false).allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
    }

    static func isHexDigest(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    static func bad(_ message: String, _ field: String) -> VouchError {
        VouchError(.modelManifestInvalid, message, context: ["field": field])
    }
}
