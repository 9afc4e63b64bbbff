import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchTPMWire

/// Input that cannot be read or decoded: exit status 2, as opposed to a quote that is invalid (1).
struct UnreadableInput: Error, CustomStringConvertible {
    let description: String
}

/// `vouch quote verify`: checks files written by tpm2-tools with the same verifier the broker uses.
func quoteCommand(_ argv: [String]) throws -> Int32 {
    guard argv.first == "verify" else { throw VouchError(.usage, "give a subcommand: verify") }
    let args = try Arguments(Array(argv.dropFirst()), options: ["ak-public", "scheme", "hash", "message", "signature", "pcrs", "nonce", "nonce-file"],
                             flags: ["json", "allow-sha1"])
    guard (args["nonce"] == nil) != (args["nonce-file"] == nil) else { throw VouchError(.usage, "give exactly one of --nonce HEX and --nonce-file FILE") }
    do {
        let ak: AttestationKey
        do { ak = try readAKPublic(try args.required("ak-public"), scheme: args["scheme"], hash: args["hash"]) } catch let e as VouchError where e.code == .akSchemeNotAllowed {
            return report(.rejected([e]), json: args.has("json"))   // an AK that fixes no usable scheme: invalid, not unreadable
        }
        let message = try readInput(try args.required("message"))
        let signature = try readInput(try args.required("signature"))
        let nonce: [UInt8]
        if let hex = args["nonce"] {
            do { nonce = try Hex.decode(hex.hasPrefix("0x") ? String(hex.dropFirst(2)) : hex, field: "--nonce") } catch { throw UnreadableInput(description: "--nonce is not hex") }
        } else {
            nonce = try readInput(try args.required("nonce-file"))
        }
        var pcrs: PCRValues?
        if let path = args["pcrs"] {
            do { pcrs = try ToolsPCRFile.parse(readInput(path)).1 } catch let e as VouchError {
                throw UnreadableInput(description: "\(path) is not a tpm2-tools PCR file: \(e)")
            }
        }
        let verdict = QuoteVerifier.verify(attest: message, signature: signature, ak: ak, expectedQualifyingData: nonce, pcrs: pcrs,
                                           allowSHA1: args.has("allow-sha1"))
        return report(verdict, json: args.has("json"))
    } catch let u as UnreadableInput {
        if args.has("json") { print(JSONCodec.pretty(APIError(code: "unreadable_input", message: u.description))) }
        CLI.error("quote verify: \(u)")
        return 2
    }
}

private func readInput(_ path: String) throws -> [UInt8] {
    guard let d = FileManager.default.contents(atPath: path) else { throw UnreadableInput(description: "cannot read \(path)") }
    guard d.count <= 1 << 20 else { throw UnreadableInput(description: "\(path) is larger than 1 MiB") }
    return [UInt8](d)
}

/// The AK: the TPM2B_PUBLIC that `tpm2_createak -u` writes (a bare TPMT_PUBLIC is accepted too),
/// whose scheme and hash decide how its signatures verify; or a PEM public key, which names
/// neither, with `--hash` and `--scheme` (ECDSA for an EC key unless given), as `tpm2_checkquote -g`.
/// With a public area, `--scheme`/`--hash` may only repeat what it fixes.
private func readAKPublic(_ path: String, scheme schemeArg: String?, hash hashArg: String?) throws -> AttestationKey {
    let bytes = try readInput(path)
    let scheme = try schemeArg.map { s in
        guard let v = SignatureScheme(rawValue: s) else { throw UnreadableInput(description: "--scheme must be rsassa, rsapss or ecdsa") }
        return v
    }
    let hash = try hashArg.map { h in
        guard let v = HashAlg(rawValue: h) else { throw UnreadableInput(description: "--hash must be sha1, sha256, sha384 or sha512") }
        return v
    }
    func resolved(_ key: AttestationKey) throws -> AttestationKey {
        if let scheme, scheme != key.scheme { throw UnreadableInput(description: "--scheme \(scheme.rawValue) contradicts the AK's public area (\(key.scheme.rawValue))") }
        if let hash, hash != key.hash { throw UnreadableInput(description: "--hash \(hash.rawValue) contradicts the AK's public area (\(key.hash.rawValue))") }
        return key
    }
    func fromArea(_ pub: TPMTPublic) throws -> AttestationKey {
        do { return try resolved(try AttestationKey(tpmPublic: pub)) } catch let e as VouchError where e.code == .akSchemeNotAllowed {
            throw e
        } catch let e as VouchError {
            throw UnreadableInput(description: "\(path): \(e.code): \(e.message)")
        }
    }
    if bytes.starts(with: Array("-----BEGIN".utf8)) {
        let key: PublicKey
        do { key = try PublicKey(pem: String(decoding: bytes, as: UTF8.self)) } catch {
            throw UnreadableInput(description: "\(path) is not a PEM public key")
        }
        guard let hash, let scheme = scheme ?? (key.isEC ? .ecdsa : nil) else {
            throw UnreadableInput(description: "a PEM key names no signing scheme: give --hash (and --scheme for RSA), or the AK's TPM2B_PUBLIC")
        }
        return try AttestationKey(publicKey: key, scheme: scheme, hash: hash)   // a scheme that does not fit the key: invalid (exit 1)
    }
    if let pub = try? TPMTPublic(tpm2bPublic: bytes) { return try fromArea(pub) }
    var r = ByteReader(bytes)
    if let pub = try? TPMTPublic(from: &r), r.remaining == 0 { return try fromArea(pub) }
    throw UnreadableInput(description: "\(path) is neither a PEM public key nor a TPM2B_PUBLIC")
}

private func report(_ verdict: QuoteVerdict, json: Bool) -> Int32 {
    switch verdict {
    case let .verified(q):
        var selection: [[String: String]] = []
        for b in q.selection.banks { selection.append(["bank": b.hash.rawValue, "pcrs": b.pcrs.map(String.init).joined(separator: ",")]) }
        let pcrs = q.pcrs.hexMap
        let c = q.clockInfo
        if json {
            print(JSONCodec.pretty(QuoteReport(valid: true, code: nil, message: "quote verified", signatureHash: q.signatureHash.rawValue,
                                               qualifiedSigner: Hex.encode(q.attest.qualifiedSigner), extraData: Hex.encode(q.attest.extraData),
                                               clock: c.clock, resetCount: c.resetCount, restartCount: c.restartCount, safe: c.safe,
                                               firmwareVersion: String(q.attest.firmwareVersion, radix: 16), pcrSelection: selection,
                                               pcrDigest: Hex.encode(q.pcrDigest), pcrs: pcrs.isEmpty ? nil : pcrs)))
        } else {
            print("quote verified (signature \(q.signatureHash.rawValue), PCR values \(pcrs.isEmpty ? "not checked: no --pcrs" : "match the quoted digest"))")
            print("  selection: \(q.selection.banks.map { "\($0.hash.rawValue):\($0.pcrs.map(String.init).joined(separator: ","))" }.joined(separator: " "))")
            print("  clock \(c.clock) ms, resetCount \(c.resetCount), restartCount \(c.restartCount), safe \(c.safe)")
            print("  pcrDigest \(Hex.encode(q.pcrDigest))")
        }
        return 0
    case let .rejected(errors):
        let e = errors[0]
        if json {
            print(JSONCodec.pretty(QuoteReport(valid: false, code: e.code.rawValue, message: e.message)))
        }
        CLI.error("quote invalid: \(e.code): \(e.message)")
        return 1
    }
}

struct QuoteReport: Encodable {
    var valid: Bool
    var code: String?
    var message: String
    var signatureHash: String?
    var qualifiedSigner: String?
    var extraData: String?
    var clock: UInt64?
    var resetCount: UInt32?
    var restartCount: UInt32?
    var safe: Bool?
    var firmwareVersion: String?
    var pcrSelection: [[String: String]]?
    var pcrDigest: String?
    var pcrs: [String: [String: String]]?
}
