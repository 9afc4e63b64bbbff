import Foundation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModelSigning
import VouchRuntime
import VouchTPM
import VouchTPMWire

/// Measures model artefacts (weight shards, tokenizer, config) into PCR 23 and keeps the log.
public enum ModelMeasurement {
    /// Expands `paths` (files, or directories walked recursively) into (name, path) pairs; the name
    /// is the path as given, with directory members as `DIR/relative/path`. Sorted by name. A
    /// symbolic link to a directory inside a directory is refused: the walk does not enter it, so
    /// files a server could load through it would go unmeasured (give the target itself).
    public static func artefactPaths(_ paths: [String]) throws -> [(name: String, path: String)] {
        var out: [(String, String)] = []
        let fm = FileManager.default
        for p in paths {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: p, isDirectory: &isDir) else {
                throw VouchError(.io, "no such file or directory: \(p)", context: ["path": p])
            }
            if isDir.boolValue {
                guard let walker = fm.enumerator(atPath: p) else { throw VouchError(.io, "cannot read directory \(p)", context: ["path": p]) }
                for case let rel as String in walker {
                    let full = (p as NSString).appendingPathComponent(rel)
                    var link = stat()
                    if lstat(full, &link) == 0, link.st_mode & S_IFMT == S_IFLNK {
                        var target = stat()
                        if stat(full, &target) == 0, target.st_mode & S_IFMT == S_IFDIR {
                            throw VouchError(.invalidValue, "\(full) is a symbolic link to a directory, whose files would not be measured: give its target",
                                             context: ["path": full])
                        }
                    }
                    var sub: ObjCBool = false
                    if fm.fileExists(atPath: full, isDirectory: &sub), !sub.boolValue { out.append((full, full)) }
                }
            } else {
                out.append((p, p))
            }
        }
        guard !out.isEmpty else { throw VouchError(.badRequest, "no model artefacts to measure") }
        return out.sorted { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
    }

    /// The file model-signing writes at the top of a signed model directory.
    public static let signatureFileName = "model.sig"

    /// A model signature found beside the artefacts, parsed but not verified: the attester
    /// trusts no publisher (the broker judges signatures against its policy).
    public struct FoundSignature: Sendable {
        /// The signature file's path as measured.
        public let name: String
        /// The directory it covers, as its artefacts' names start.
        public let directory: String
        public let sha256: String
        /// `key`, `certificate` or `sigstore`, from the bundle's verification material.
        public let signerKind: String
        /// The model name the unverified payload claims, if it reads as a model-signing manifest.
        public let unverifiedModelName: String?
    }

    public struct Result: Sendable {
        public let claims: ModelClaims
        public let signatures: [FoundSignature]
    }

    /// Hashes every artefact (streaming), resets PCR 23, extends it with one SHA-256 digest per
    /// artefact in name order, then one per signature (its bundle's SHA-256, in directory order),
    /// and writes the CEL JSON log to `logPath` (atomically, mode 0644). Returns the claims the
    /// broker will derive from it (without signatures: the broker verifies those).
    public static func measure(paths: [String], tcti: String, logPath: String) throws -> ModelClaims {
        try measure(paths: paths, signature: nil, tcti: tcti, logPath: logPath).claims
    }

    /// As `measure(paths:tcti:logPath:)`, with signatures: a directory among `paths` that holds
    /// `model.sig` at its top is measured with that file as its signature (the file is then no
    /// artefact); `signature` names the signature file of the one directory in `paths` (a usage
    /// error otherwise). A signature file that is not a Sigstore bundle with a DSSE envelope is
    /// refused (`model_signature_malformed`) before the TPM is touched.
    /// With `recordSignatures` false, `model.sig` is measured as any other artefact and no
    /// signature record is written (`--no-signature`: for brokers older than signature records).
    public static func measure(paths: [String], signature: String?, recordSignatures: Bool = true, tcti: String, logPath: String) throws -> Result {
        let found = recordSignatures ? try signatureFiles(paths, explicit: signature) : []
        let excluded = Set(found.map { canonical($0.path) })
        let artefacts = try artefactPaths(paths).filter { !excluded.contains(canonical($0.path)) }.map { a -> ModelLog.Artefact in
            let (digest, size) = try Crypto.digestFile(a.path)
            return ModelLog.Artefact(name: a.name, sha256: Hex.encode(digest), size: size)
        }
        var signatures: [ModelLog.Signature] = []
        var summaries: [FoundSignature] = []
        for f in found {
            let (signature, summary) = try readSignature(path: f.path, directory: f.directory)
            signatures.append(signature)
            summaries.append(summary)
        }
        let log = ModelLog(artefacts: artefacts, signatures: signatures)
        let device = try TPMDevice(tcti: tcti)
        defer { device.close() }
        // A stale log must not outlive the PCR it described.
        if Files.exists(logPath) { try? FileManager.default.removeItem(atPath: logPath) }
        try device.pcrReset(ModelLog.pcr)
        for r in log.records { try device.pcrExtend(ModelLog.pcr, digests: [.sha256: try Hex.decode(r.content.sha256)]) }
        try Files.writeAtomically(log.json, to: logPath, mode: 0o644)
        return Result(claims: log.claims(using: OpenSSLDigester()), signatures: summaries)
    }

    /// The signature files of the directories among `paths`, sorted by directory: `explicit` for
    /// the one directory given, else each directory's `model.sig` where there is one.
    static func signatureFiles(_ paths: [String], explicit: String?) throws -> [(path: String, directory: String)] {
        let fm = FileManager.default
        let directories = paths.filter { p in
            var isDir: ObjCBool = false
            return fm.fileExists(atPath: p, isDirectory: &isDir) && isDir.boolValue
        }
        if let explicit {
            guard paths.count == 1, directories.count == 1 else {
                throw VouchError(.usage, "--signature names the signature of one model directory: give exactly one directory")
            }
            return [(explicit, try directoryName(directories[0]))]
        }
        var out: [(path: String, directory: String)] = []
        for d in directories {
            let file = (d as NSString).appendingPathComponent(signatureFileName)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: file, isDirectory: &isDir), !isDir.boolValue else { continue }
            let name = try directoryName(d)
            guard !out.contains(where: { $0.directory.utf8.elementsEqual(name.utf8) }) else { throw VouchError(.usage, "the directory \(d) is given twice") }
            out.append((file, name))
        }
        // The broker reads at most ModelLog.maxSignatures: refused here, before PCR 23 is reset.
        guard out.count <= ModelLog.maxSignatures else {
            throw VouchError(.invalidValue, "\(out.count) signed model directories: a model log holds at most \(ModelLog.maxSignatures) signatures")
        }
        return out.sorted { Array($0.directory.utf8).lexicographicallyPrecedes(Array($1.directory.utf8)) }
    }

    /// The prefix the artefacts of directory `d` are named with (`artefactPaths`), less its `/`.
    static func directoryName(_ d: String) throws -> String {
        let name = String((d as NSString).appendingPathComponent("x").dropLast(2))
        guard !name.isEmpty else { throw VouchError(.usage, "\(d): the root directory cannot be a signed model") }
        return name
    }

    /// Reads and parses a signature file (bounded), without verifying it.
    static func readSignature(path: String, directory: String) throws -> (ModelLog.Signature, FoundSignature) {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue
        guard let size else { throw VouchError(.io, "cannot read the signature \(path)", context: ["path": path]) }
        guard size <= ModelLog.maxSignatureBytes else {
            throw VouchError(.modelSignatureMalformed, "the signature \(path) is over \(ModelLog.maxSignatureBytes >> 20) MiB", context: ["path": path])
        }
        let bytes = try Files.read(path)
        let bundle: SigstoreBundle
        do { bundle = try SigstoreBundle(json: bytes) } catch let e as VouchError {
            throw VouchError(e.code, "\(path) is not a model signature: \(e.message)", context: e.context.merging(["path": path]) { a, _ in a })
        }
        let digest = Hex.encode(Crypto.sha256(bytes))
        let kind: String
        switch bundle.material {
        case .publicKey: kind = "key"
        case .certificateChain: kind = "certificate"
        case .certificate: kind = "sigstore"
        }
        let name = try? ModelManifest(statement: bundle.envelope.payload, sha256: { Crypto.sha256($0) }).modelName
        return (ModelLog.Signature(name: path, sha256: digest, directory: directory, bundle: bytes),
                FoundSignature(name: path, directory: directory, sha256: digest, signerKind: kind, unverifiedModelName: name))
    }

    /// `path` with symbolic links and `.`/`..` resolved, to tell whether two names are one file.
    static func canonical(_ path: String) -> String {
        URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
    }
}
