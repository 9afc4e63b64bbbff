import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchReceiptKit
import VouchReceipts
import VouchRuntime

/// `vouch receipt sign ...`, `vouch receipt verify BUNDLE --trust TRUST ...` and `vouch receipt
/// log` (docs/receipts.md). Signing and verifying are offline, except a TPM-bound key signing
/// through the host's attester socket and `verify --log URL`. Exit 0 signed / verified, 1 refused
/// (every failed check named with its code), 2 usage or unreadable input.
func receiptCommand(_ argv: [String]) throws -> Int32 {
    switch argv.first {
    case "sign": return try receiptSign(Array(argv.dropFirst()))
    case "verify": return try receiptVerify(Array(argv.dropFirst()))
    case "log": return try receiptLog(Array(argv.dropFirst()))
    default: throw VouchError(.usage, "give a subcommand: sign, verify or log")
    }
}

/// Reads a file named by an option; nil (after a one-line error) when it cannot be read.
private func readInput(_ path: String, _ what: String) -> [UInt8]? {
    guard let data = FileManager.default.contents(atPath: path) else {
        CLI.error("vouch receipt: cannot read \(what) \(path)")
        return nil
    }
    return [UInt8](data)
}

private func receiptSign(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: ["cert", "key", "socket", "tpm-key", "output", "request", "issuance-proof", "started", "finished", "out", "salt-out"])
    let certPath = try args.required("cert"), outputPath = try args.required("output")
    // The key: a software key (--key), or a TPM-bound one signing through the attester's socket
    // (--tpm-key DIR/NAME, the prefix of what `vouch enroll --tpm-key` wrote, and --socket).
    guard (args["key"] == nil) != (args["tpm-key"] == nil) else { throw VouchError(.usage, "give --key KEY, or --tpm-key DIR/NAME with --socket PATH") }
    guard args["socket"] == nil || args["tpm-key"] != nil else { throw VouchError(.usage, "--socket signs with a TPM-bound key: give --tpm-key DIR/NAME") }
    let socket = args["socket"] ?? CLI.env("VOUCH_ATTESTER_SOCKET")
    guard args["tpm-key"] == nil || socket != nil else { throw VouchError(.usage, "--tpm-key signs through the attester: give --socket PATH or set VOUCH_ATTESTER_SOCKET") }
    let out = try args.required("out")
    func time(_ name: String) throws -> Date? {
        guard let s = args[name] else { return nil }
        guard let d = Date.parseRFC3339(s) else { throw VouchError(.usage, "--\(name) is not an RFC 3339 time") }
        return d
    }
    let now = Date()
    let started = try time("started") ?? now, finished = try time("finished") ?? now
    guard args["salt-out"] == nil || args["request"] != nil else { throw VouchError(.usage, "--salt-out needs --request") }
    guard let chain = readInput(certPath, "--cert"), let output = readInput(outputPath, "--output") else { return 2 }
    let key: ReceiptSigningKey
    if let prefix = args["tpm-key"], let socket {
        guard let pub = readInput(prefix + ".tpm.pub", "--tpm-key's public blob"), let priv = readInput(prefix + ".tpm.priv", "--tpm-key's private blob") else { return 2 }
        let client = APIClient(transport: HTTPClient(.unix(path: socket), timeoutSeconds: 60))
        do { key = try .attesterSocket(client, tpmPublic: pub, tpmPrivate: priv) } catch let e as VouchError {
            CLI.error("vouch receipt sign: \(prefix).tpm.pub is not a TPM key's public area: \(e.message)")
            return 2
        }
    } else {
        guard let pem = readInput(try args.required("key"), "--key") else { return 2 }
        key = try .software(try PrivateKey(pem: String(decoding: pem, as: UTF8.self)))
    }
    var request: [UInt8]?
    if let path = args["request"] {
        guard let bytes = readInput(path, "--request") else { return 2 }
        request = bytes
    }
    var issuance: UnverifiedReceiptBundle.LoggedEntry?
    if let path = args["issuance-proof"] {
        guard let bytes = readInput(path, "--issuance-proof") else { return 2 }
        do { issuance = try UnverifiedReceiptBundle.LoggedEntry(proofResponse: bytes) } catch let e as VouchError {
            CLI.error("vouch receipt sign: \(path) is not a log proof (GET /v1/log/proof?certificate=): \(e.message)")
            return 2
        }
    }
    let signer = try ReceiptSigner(chainPEM: String(decoding: chain, as: UTF8.self), key: key, issuance: issuance)
    let bundle: [UInt8], salt: [UInt8]
    do { (bundle, salt) = try signer.sign(output: output, request: request, startedAt: started, finishedAt: finished) } catch let f as APIFailure {
        CLI.error("vouch receipt sign: refused by the attester (HTTP \(f.status), \(f.error.code)): \(CLI.oneLine(f.error.message))")
        return 1
    }
    try Files.writeAtomically(bundle, to: out)
    if request != nil {
        if let saltPath = args["salt-out"] {
            try Files.writeAtomically(Array((Hex.encode(salt) + "\n").utf8), to: saltPath, mode: 0o600)
            print("salt written to \(saltPath) (give it to the requester: vouch receipt verify --request FILE --salt HEX)")
        } else {
            print("salt \(Hex.encode(salt))")
        }
    }
    if issuance == nil { print("warning: no --issuance-proof: verifiers refuse this receipt until its issuance proof is added") }
    print("receipt written to \(out)")
    return 0
}

private func receiptVerify(_ argv: [String]) throws -> Int32 {
    // --witness is repeatable: taken out before the other options are read.
    var rest: [String] = [], witnessKeys: [String] = []
    var i = 0
    while i < argv.count {
        if argv[i] == "--witness" {
            guard i + 1 < argv.count else { throw VouchError(.usage, "option --witness needs a value") }
            witnessKeys.append(argv[i + 1])
            i += 2
        } else {
            rest.append(argv[i])
            i += 1
        }
    }
    let args = try Arguments(rest, options: ["trust", "output", "request", "salt", "crl", "witnesses", "log", "ca"], flags: ["allow-warning"], positional: 1)
    guard let bundlePath = args.positional.first else { throw VouchError(.usage, "receipt verify needs a BUNDLE") }
    let trustPath = try args.required("trust")
    guard (args["request"] == nil) == (args["salt"] == nil) else { throw VouchError(.usage, "--request and --salt go together") }
    guard args["ca"] == nil || args["log"] != nil else { throw VouchError(.usage, "--ca goes with an https:// --log") }
    let threshold = try args["witnesses"].map { s -> Int in
        guard let k = Int(s), k >= 1, k <= witnessKeys.count else { throw VouchError(.usage, "--witnesses K needs 1 ≤ K ≤ the number of --witness keys") }
        return k
    } ?? (witnessKeys.isEmpty ? 0 : witnessKeys.count)
    let witnesses = try witnessKeys.map { v -> NoteVerifierKey in
        guard let key = try? NoteVerifierKey(vkey: v), key.type == .cosignatureV1 else { throw VouchError(.usage, "--witness \(v) is not a cosignature/v1 verifier key") }
        return key
    }
    var salt: [UInt8]?
    if let hex = args["salt"] {
        guard let s = try? Hex.decode(hex), s.count == RequestCommitment.saltBytes else { throw VouchError(.usage, "--salt is 64 hex digits") }
        salt = s
    }
    guard let bundle = readInput(bundlePath, "the bundle"), let trustBytes = readInput(trustPath, "--trust") else { return 2 }
    let trust: ReceiptTrust
    do { trust = try ReceiptTrust(try JSONDecoder().decode(TrustDocument.self, from: Data(trustBytes))) } catch {
        CLI.error("vouch receipt verify: \(trustPath) is not a trust document (GET /v1/trust): \((error as? VouchError)?.message ?? "not its JSON")")
        return 2
    }
    var inputs = ReceiptVerifier.Inputs(salt: salt, witnesses: witnesses, witnessThreshold: threshold)
    inputs.allowWarning = args.has("allow-warning")
    if let path = args["output"] { guard let b = readInput(path, "--output") else { return 2 }; inputs.output = b }
    if let path = args["request"] { guard let b = readInput(path, "--request") else { return 2 }; inputs.request = b }
    if let path = args["crl"] {
        guard let b = readInput(path, "--crl") else { return 2 }
        guard let crl = try? CRL(der: PEMFile.der(b, label: "X509 CRL")) else {
            CLI.error("vouch receipt verify: \(path) is not a PEM or DER CRL")
            return 2
        }
        inputs.crl = crl
    }
    // --log DIR|URL: a directory written by `vouch log mirror`, or the broker (https, --ca).
    if let log = args["log"] { inputs.log = try LogCLI.source(log, args) }
    switch ReceiptVerifier(trust: trust).verify(bundle: bundle, inputs) {
    case .rejected(let violations):
        for v in violations { print("FAILED \(v.code.rawValue): \(CLI.oneLine(v.message))") }
        CLI.error("vouch receipt verify: refused (\(violations.map(\.code.rawValue).joined(separator: ", ")))")
        return 1
    case .verified(let f):
        let c = f.claims
        let model = f.statement.predicate.model.manifests
        print("model        \(model.isEmpty ? "none measured" : model.joined(separator: ", ")) (manifest digests the certificate's EAR attests)")
        for m in c.models ?? [] { print("             signed: \(m.model) by \(m.publisher) (signer \(m.signer)), as the EAR attests") }
        let evidence = f.statement.predicate.attestation.evidence.map { "\($0.device) \($0.type) \($0.digest)" }.joined(separator: "; ")
        print("environment  \(f.spiffeId) on host \(c.hostId): \(evidence)")
        print("             policy \(c.policyName) v\(c.policyVersion) sha256:\(Hex.encode(c.policyDigest)), appraised \(c.attestedAt.iso8601)")
        print("verified by  \(f.earSigner) (EAR under the broker CA); certificate \(f.serial) issued by \(f.issuer)")
        print("appraisal    " + c.statuses.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        let checkpoints = f.checkpoints.map { "\($0.origin) size \($0.size)" }.joined(separator: ", ")
        print("log          issuance at index \(f.issuanceIndex)\(f.logged ? ", receipt logged" : ", receipt not logged") (\(checkpoints))"
              + (f.witnesses.isEmpty ? "" : "; cosigned by \(f.witnesses.joined(separator: ", "))"))
        print("output       sha256:\(Hex.encode(f.statement.outputSHA256)) (\(f.outputChecked ? "matches --output" : "not compared: give --output"))"
              + (f.statement.predicate.request?.route.map { ", the answer of \($0)" } ?? ""))
        print("time         \(f.statement.predicate.startedAt) to \(f.statement.predicate.finishedAt)"
              + (f.loggedAt.map { "; logged by the broker at \($0.iso8601), which bounds the receipt's time (revocation judged at \(f.receiptTime.iso8601))" } ?? "")
              + (f.requestOpened ? "; request commitment opened" : ""))
        for line in revocationLines(f) { print(line) }
        print("OK")
        return 0
    }
}

/// What the revocation checks covered: the CRL's date, the log's size and times, a later revocation.
private func revocationLines(_ f: ReceiptFacts) -> [String] {
    var lines: [String] = []
    if let at = f.revocationCheckedAt { lines.append("revocation   not revoked by the receipt's time as of the CRL of \(at.iso8601)") }
    if let a = f.logRevocation {
        var covers = ["last entry \(a.lastEntryTime?.iso8601 ?? "none")"]
        covers += a.cosignatures.map { "cosigned by \($0.witness) at \($0.time.iso8601)" }
        lines.append("revocation   not revoked by the receipt's time as of log size \(a.size) (\(covers.joined(separator: "; "))); later entries not seen")
        if let r = a.revokedLater {
            lines.append("             note: revoked later, at \(r.time.iso8601) (log entry \(r.index), \(r.reason)), after the receipt's time")
        }
    }
    if lines.isEmpty { lines.append("revocation   not checked: give --crl or --log") }
    return lines
}

/// PEM or DER input: the DER inside the first `label` block, or the bytes as they are.
enum PEMFile {
    static func der(_ bytes: [UInt8], label: String) -> [UInt8] {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let begin = text.range(of: "-----BEGIN \(label)-----"), let end = text.range(of: "-----END \(label)-----", range: begin.upperBound..<text.endIndex) else {
            return bytes
        }
        let body = text[begin.upperBound..<end.lowerBound].filter { !$0.isWhitespace }
        return Data(base64Encoded: String(body)).map { [UInt8]($0) } ?? []
    }
}
