import Foundation
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModelSigning
import VouchPolicy

/// `vouch model verify`: an OpenSSF model signature (model-signing's `model.sig`) checked offline
/// against one publisher, then the directory's files against the signed manifest.
func modelCommand(_ argv: [String]) throws -> Int32 {
    guard let sub = argv.first else { throw VouchError(.usage, "model needs a subcommand: verify") }
    switch sub {
    case "verify": return try modelVerify(Array(argv.dropFirst()))
    default: throw VouchError(.usage, "unknown model subcommand \(sub)")
    }
}

private func modelVerify(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: ["publisher", "roots", "identity", "issuer", "trusted-root", "signature", "model"], flags: ["json"], positional: 1)
    guard let dir = args.positional.first else { throw VouchError(.usage, "model verify needs the model's DIRECTORY") }
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
        throw VouchError(.usage, "\(dir) is not a directory")
    }
    let chosen = [args["publisher"] != nil, args["roots"] != nil, args["trusted-root"] != nil].filter { $0 }.count
    guard chosen == 1 else { throw VouchError(.usage, "give exactly one of --publisher KEY, --roots CERTS, --trusted-root FILE") }
    let trust: ModelPublisher.Trust
    if let path = args["publisher"] {
        guard args["issuer"] == nil, args["identity"] == nil else { throw VouchError(.usage, "--identity and --issuer go with --roots or --trusted-root") }
        guard let key = try? PublicKey(pem: String(decoding: try readModelInput(path, "--publisher", max: 64 << 10), as: UTF8.self)), let spki = try? key.spkiDER else {
            throw VouchError(.usage, "--publisher \(path) is not a PEM public key")
        }
        trust = .key(spki: spki)
    } else if let path = args["roots"] {
        guard args["issuer"] == nil else { throw VouchError(.usage, "--issuer goes with --trusted-root") }
        guard let roots = try? Certificate.chain(pem: String(decoding: try readModelInput(path, "--roots", max: 1 << 20), as: UTF8.self)), !roots.isEmpty else {
            throw VouchError(.usage, "--roots \(path) holds no PEM certificate")
        }
        trust = .certificate(roots: try roots.map { try $0.der }, identity: args["identity"])
    } else {
        let path = args["trusted-root"]!
        guard let identity = args["identity"], let issuer = args["issuer"] else { throw VouchError(.usage, "--trusted-root needs --identity and --issuer") }
        let json = try readModelInput(path, "--trusted-root", max: 1 << 20)
        do { _ = try SigstoreTrustedRoot(json: json) } catch { throw VouchError(.usage, "--trusted-root \(path) is not a Sigstore trusted root") }
        trust = .sigstore(trustedRoot: json, identity: identity, issuer: issuer)
    }
    let publisher = ModelPublisher(name: "the given publisher", models: ["*"], trust: trust)
    let signaturePath = args["signature"] ?? (dir as NSString).appendingPathComponent("model.sig")
    // An oversized bundle is read no further than one byte past the limit: SigstoreBundle refuses it.
    let bundle = try readModelInput(signaturePath, "the signature", max: SigstoreBundle.maxBytes, truncate: true)

    // The signature and its manifest first: nothing is hashed for an untrusted signer.
    let verified: VerifiedModelSignature
    switch ModelSignatureVerifier.verify(bundle: bundle, publishers: [publisher], expectedName: args["model"], files: nil, path: "signature") {
    case let .rejected(violations): return refused(violations, json: args.has("json"))
    case let .verified(v): verified = v
    }
    let started = Date()
    let (files, bytes) = try ModelDirectory.hash(dir, excluding: signaturePath, followSymlinks: verified.manifest.allowSymlinks)
    let seconds = Date().timeIntervalSince(started)
    // The files against the manifest already verified: the signature is not checked again.
    let violations = ModelSignatureVerifier.fileViolations(verified.manifest, files, path: "signature")
    guard violations.isEmpty else { return refused(violations, json: args.has("json")) }
    let c = verified.claims(directory: dir)
    if args.has("json") {
        printJSON(ModelVerifyOutput(verified: true, signature: c, files: verified.manifest.files.count, bytesHashed: bytes, violations: []))
        return 0
    }
    print("model        \(c.model) (subject sha256:\(c.subjectDigest))")
    print("signer       \(c.signerKind): \(c.signer)" + (c.signedAt.map { ", logged \($0)" } ?? ""))
    print("files        \(verified.manifest.files.count) signed, all present and unmodified" +
          (files.count > verified.manifest.files.count ? "; \(files.count - verified.manifest.files.count) under the signer's ignored paths" : ""))
    let mb = Double(bytes) / 1_048_576
    print("hashed       \(String(format: "%.1f", mb)) MiB in \(String(format: "%.2f", seconds)) s")
    return 0
}

/// `--json`: the verified signature's claims, or every violation.
private struct ModelVerifyOutput: Encodable {
    var verified: Bool
    var signature: ModelSignatureClaims?
    var files: Int?
    var bytesHashed: UInt64?
    var violations: [PolicyViolation]
}

private func printJSON(_ value: ModelVerifyOutput) {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .prettyPrinted]
    print(String(decoding: (try? e.encode(value)) ?? Data(), as: UTF8.self))
}

private func refused(_ violations: [PolicyViolation], json: Bool) -> Int32 {
    if json { printJSON(ModelVerifyOutput(verified: false, violations: violations)) }
    else { for v in violations { print("FAILED \(v.code.rawValue) \(v.path): expected \(CLI.oneLine(v.expected)), got \(CLI.oneLine(v.actual))") } }
    CLI.error("vouch model verify: refused (\(Array(Set(violations.map(\.code.rawValue))).sorted().joined(separator: ", ")))")
    return 1
}

/// Reads a regular file (through a symbolic link too) no further than `max` bytes — one past it
/// with `truncate`, for the parser to refuse — so a link to a large or endless file costs
/// nothing; anything else is a usage error.
private func readModelInput(_ path: String, _ what: String, max: Int, truncate: Bool = false) throws -> [UInt8] {
    var st = stat()
    guard stat(path, &st) == 0 else { throw VouchError(.usage, "cannot read \(what) \(path)") }
    guard st.st_mode & S_IFMT == S_IFREG else { throw VouchError(.usage, "\(what) \(path) is not a regular file") }
    guard let h = FileHandle(forReadingAtPath: path) else { throw VouchError(.usage, "cannot read \(what) \(path)") }
    defer { try? h.close() }
    guard let d = try? h.read(upToCount: max + 1) else { throw VouchError(.usage, "cannot read \(what) \(path)") }
    guard d.count <= max || truncate else { throw VouchError(.usage, "\(what) \(path) is over \(max) bytes") }
    return [UInt8](d)
}

/// A model directory's regular files, hashed.
enum ModelDirectory {
    /// Every regular file under `dir` (recursively; names relative to it, `/`-separated) but the
    /// signature, with its SHA-256, hashed on every core; and the bytes hashed. A symbolic link is
    /// refused unless the signer allowed them and it points to a regular file (whose bytes are
    /// hashed).
    static func hash(_ dir: String, excluding signature: String, followSymlinks: Bool) throws -> ([ModelFileCheck.Measured], UInt64) {
        let fm = FileManager.default
        let root = URL(fileURLWithPath: dir).standardizedFileURL.path
        let skip = URL(fileURLWithPath: signature).standardizedFileURL.path
        guard let walker = fm.enumerator(atPath: root) else { throw VouchError(.io, "cannot read directory \(dir)") }
        var found: [(String, String)] = []
        for case let rel as String in walker {
            let full = (root as NSString).appendingPathComponent(rel)
            guard full != skip else { continue }
            var st = stat()
            guard lstat(full, &st) == 0 else { throw VouchError(.io, "cannot stat \(full)") }
            switch st.st_mode & S_IFMT {
            case S_IFREG: found.append((rel, full))
            case S_IFDIR: continue
            case S_IFLNK:
                // Only a link to a regular file, and only when the signer allowed links: a link to a
                // directory (whose files the walk would not see) or a dangling one is refused.
                guard followSymlinks else { throw VouchError(.invalidValue, "\(full) is a symbolic link, which the signer did not allow") }
                var target = stat()
                guard stat(full, &target) == 0, target.st_mode & S_IFMT == S_IFREG else {
                    throw VouchError(.invalidValue, "\(full) is a symbolic link to something other than a file")
                }
                found.append((rel, full))
            default: throw VouchError(.invalidValue, "\(full) is neither a file nor a directory")
            }
        }
        let paths = found
        let results = ResultBox(count: paths.count)
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            results.set(i, Result { try Crypto.digestFile(paths[i].1) })
        }
        var out: [ModelFileCheck.Measured] = []
        var total: UInt64 = 0
        for (i, p) in paths.enumerated() {
            let (digest, size) = try results.get(i).get()
            out.append(ModelFileCheck.Measured(name: p.0, sha256: Hex.encode(digest)))
            total += size
        }
        return (out, total)
    }

    private final class ResultBox: @unchecked Sendable {
        private var items: [Result<([UInt8], UInt64), Error>?]
        private let lock = NSLock()
        init(count: Int) { items = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ r: Result<([UInt8], UInt64), Error>) { lock.lock(); items[i] = r; lock.unlock() }
        func get(_ i: Int) -> Result<([UInt8], UInt64), Error> { lock.lock(); defer { lock.unlock() }; return items[i]! }
    }
}
