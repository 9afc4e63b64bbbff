import Foundation
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchLogClient
import VouchRuntime

/// `vouch log keygen|checkpoint|witness|mirror`: a client of a C2SP tlog-tiles log (the broker's,
/// or a mirror's directory): verify its checkpoint, witness it, copy it for offline use.
func logCommand(_ argv: [String]) throws -> Int32 {
    let rest = Array(argv.dropFirst())
    switch argv.first {
    case "keygen": return try logKeygen(rest)
    case "checkpoint": return try logCheckpoint(rest)
    case "witness": return try logWitness(rest)
    case "mirror": return try logMirror(rest)
    case "proof": return try logProof(rest)
    default: throw VouchError(.usage, "give a subcommand: checkpoint, witness, mirror, proof or keygen")
    }
}

enum LogCLI {
    static let sourceOptions: Set<String> = ["log", "log-key", "ca"]

    /// `--log URL|DIR`: an https URL (its TLS certificate checked against --ca or $VOUCH_CA, the
    /// broker CA) or a directory with the same paths.
    static func client(_ args: Arguments) throws -> LogClient {
        let log = try args.required("log")
        let keyText = try args.required("log-key")
        let key: NoteVerifierKey
        do {
            let text = (try? NoteVerifierKey(vkey: keyText)) != nil ? keyText : try Files.readString(keyText).trimmingCharacters(in: .whitespacesAndNewlines)
            key = try NoteVerifierKey(vkey: text)
        } catch {
            throw VouchError(.usage, "--log-key is neither a log vkey (NAME+HASH+KEY) nor a file holding one")
        }
        // A log signs its checkpoints with a plain Ed25519 note key; a cosignature key is a witness's.
        guard key.type == .ed25519 else { throw VouchError(.usage, "--log-key must be the log's Ed25519 note key (type 0x01), not a witness cosignature key") }
        return LogClient(source: try source(log, args), logKey: key)
    }

    static func source(_ log: String, _ args: Arguments) throws -> any LogSource {
        if log.hasPrefix("https://") {
            guard let ca = args["ca"] ?? CLI.env("VOUCH_CA") else { throw VouchError(.usage, "no CA for \(log): give --ca FILE or set VOUCH_CA") }
            let base = log.hasSuffix("/") ? String(log.dropLast()) : log
            return HTTPLogSource(transport: HTTPClient(.https(baseURL: base, caFile: ca), maxResponseBytes: LogLimits.maxBundleBytes), location: base)
        }
        guard !log.contains("://") else { throw VouchError(.usage, "--log is an https:// URL or a directory") }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: log, isDirectory: &isDir), isDir.boolValue else {
            throw VouchError(.usage, "--log \(log) is not a directory")
        }
        return DirectoryLogSource(directory: log)
    }

    static func describe(_ c: VerifiedCheckpoint) -> String {
        "origin \(c.body.origin), size \(c.size), root \(Base64.encode(c.rootHash))"
    }
}

func logKeygen(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: ["name", "out", "type"])
    let name = try args.required("name"), out = try args.required("out")
    let type: NoteSignatureType
    switch args["type"] ?? "cosignature" {
    case "cosignature": type = .cosignatureV1
    case "ed25519": type = .ed25519
    default: throw VouchError(.usage, "--type is cosignature (a witness key, the default) or ed25519 (a note signer)")
    }
    guard NoteKeyName.isValid(name) else { throw VouchError(.usage, "--name must be non-empty, without spaces, plus signs or control characters") }
    let signer = try NoteSigner(name: name, type: type, privateKey: try Ed25519PrivateKey.generate())
    guard try Files.createOnce(Array((try signer.skey + "\n").utf8), at: out + ".skey", mode: 0o600) else {
        throw VouchError(.conflict, "\(out).skey exists; refusing to overwrite a key")
    }
    try Files.writeAtomically(Array((signer.verifierKey.vkey + "\n").utf8), to: out + ".vkey")
    print("signer key \(out).skey (0600, secret); verifier key \(out).vkey:\n\(signer.verifierKey.vkey)")
    return 0
}

func logCheckpoint(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: LogCLI.sourceOptions, flags: ["check-tiles"])
    let client = try LogCLI.client(args)
    let checkpoint = try client.checkpoint()
    if args.has("check-tiles") { try client.checkTiles(of: checkpoint) }
    print(checkpoint.note, terminator: "")
    return 0
}

func logWitness(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: LogCLI.sourceOptions.union(["key", "state", "interval"]), flags: ["submit"])
    let client = try LogCLI.client(args)
    let keyFile = try args.required("key"), state = try args.required("state")
    let signer: NoteSigner
    do {
        signer = try NoteSigner(skey: String(decoding: try Files.readSecret(keyFile, maxBytes: 4096), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    } catch let e as VouchError where e.code == .config {
        // Unsafe mode, a symbolic link, not a regular file: unreadable as a key (exit 2), said why.
        throw VouchError(.usage, "--key: \(e.message)")
    } catch {
        throw VouchError(.usage, "--key \(keyFile) is not a readable witness signer key (PRIVATE+KEY+NAME+HASH+KEY; vouch log keygen writes one)")
    }
    let witness: Witness
    do { witness = try Witness(client: client, signer: signer, stateDirectory: state, clock: SystemClock()) } catch let e as VouchError where e.code == .noteKeyInvalid {
        throw VouchError(.usage, e.message)
    }
    let submit = args.has("submit")
    guard !submit || client.source is HTTPLogSource else { throw VouchError(.usage, "--submit needs an https:// --log") }
    let interval = try args["interval"].map { _ in try CLI.duration(args, "interval", default: "60s") }
    try Files.makeDirectory(state)
    while true {
        do {
            let r = try witness.round()
            if submit, let http = client.source as? HTTPLogSource {
                let response = try http.transport.send("POST", "/v1/log/cosignatures", headers: ["Content-Type": "text/plain; charset=utf-8"], body: Array(r.note.utf8))
                guard (200..<300).contains(response.status) else {
                    throw VouchError(.http, "the log refused the cosignature: HTTP \(response.status): \(String(decoding: response.body.prefix(300), as: UTF8.self))")
                }
            }
            let from = r.previousSize.map { "from size \($0) " } ?? "first checkpoint, "
            print("cosigned \(LogCLI.describe(r.checkpoint)) (\(from)at \(r.timestamp))\(submit ? ", submitted" : "")")
            if interval == nil { print(r.note, terminator: "") }
        } catch let e as VouchError where interval != nil && (e.code == .logFetchFailed || e.code == .http) {
            CLI.error("vouch log witness: \(CLI.oneLine(e.message)) (retrying)")
        } catch let e as VouchError where e.code == .witnessFork || e.code == .witnessRollback {
            // The code on the one line, so that scripts and tests tell a fork from a rollback.
            CLI.error("vouch log witness: refused (\(e.code.rawValue)): \(CLI.oneLine(e.message))")
            return 1
        }
        guard let interval else { return 0 }
        Thread.sleep(forTimeInterval: interval)
    }
}

func logMirror(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: LogCLI.sourceOptions.union(["out"]))
    let client = try LogCLI.client(args)
    let out = try args.required("out")
    try Files.makeDirectory(out, mode: 0o755)
    let checkpoint = try LogMirror(client: client, directory: out).update()
    print("mirrored \(LogCLI.describe(checkpoint)) into \(out)")
    return 0
}
