import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchReceipts
import VouchRuntime

/// The two broker calls of the receipt story (docs/receipts.md, "How to verify a receipt without
/// Vouch's server"): `vouch log proof` fetches an agent certificate's issuance proof (what
/// `vouch receipt sign --issuance-proof` and `vouch-attester proxy --issuance-proof` read), and
/// `vouch receipt log` has the broker log a receipt and adds the answer to the bundle. Neither
/// needs a token: the log is public, and a receipt is authenticated by the agent's signature.
enum ReceiptLogCLI {
    /// How often `--wait` asks again.
    static let retryInterval: TimeInterval = 0.5
}

/// `vouch log proof --certificate CERT --output FILE [--wait DUR]`:
/// `GET /v1/log/proof?certificate=<SHA-256 hex of the certificate's DER>`. With `--wait`, a
/// certificate not yet in a checkpoint (404) or a log not ready (503) is asked again until DUR.
func logProof(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: CLI.brokerOptions.union(["certificate", "output", "wait"]))
    let certPath = try args.required("certificate"), out = try args.required("output")
    let wait = try args["wait"].map { _ in try CLI.duration(args, "wait", default: "30s") } ?? 0
    guard let pem = FileManager.default.contents(atPath: certPath) else {
        CLI.error("vouch log: cannot read --certificate \(certPath)")
        return 2
    }
    guard let leaf = try? Certificate.chain(pem: String(decoding: pem, as: UTF8.self)).first else {
        CLI.error("vouch log: --certificate \(certPath) holds no PEM certificate")
        return 2
    }
    let digest = Hex.encode(Crypto.sha256(try leaf.der))
    let (client, _) = try CLI.broker(args, admin: false)
    let deadline = Date().addingTimeInterval(wait)
    while true {
        do {
            let body = try client.raw("GET", "/v1/log/proof?certificate=\(digest)").body
            let logged = try UnverifiedReceiptBundle.LoggedEntry(proofResponse: body)
            try Files.writeAtomically(body, to: out)
            print("issuance of certificate sha256:\(digest) at log index \(logged.proof.index); proof written to \(out)")
            return 0
        } catch let f as APIFailure where (f.status == 404 || f.status == 503) && Date() < deadline {
            Thread.sleep(forTimeInterval: ReceiptLogCLI.retryInterval)
        }
    }
}

/// `vouch receipt log BUNDLE --output BUNDLE2`: `POST /v1/receipts`; the broker verifies the
/// receipt against its own trust document and logs it; BUNDLE2 is BUNDLE with its `receipt` part
/// (the entry and its inclusion proof) set to the answer.
func receiptLog(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: CLI.brokerOptions.union(["output"]), positional: 1)
    guard let bundlePath = args.positional.first else { throw VouchError(.usage, "receipt log needs a BUNDLE") }
    let out = try args.required("output")
    guard let bytes = FileManager.default.contents(atPath: bundlePath) else {
        CLI.error("vouch receipt: cannot read the bundle \(bundlePath)")
        return 2
    }
    let bundle: UnverifiedReceiptBundle
    do { bundle = try UnverifiedReceiptBundle(json: [UInt8](bytes)) } catch {
        CLI.error("vouch receipt log: \(bundlePath) is not a receipt bundle: \((error as? VouchError)?.message ?? "\(error)")")
        return 2
    }
    let (client, _) = try CLI.broker(args, admin: false)
    let answer = try client.raw("POST", "/v1/receipts", body: [UInt8](bytes)).body
    let logged = try UnverifiedReceiptBundle.LoggedEntry(proofResponse: answer)
    try Files.writeAtomically(bundle.adding(receipt: logged).json, to: out)
    print("receipt logged at index \(logged.proof.index); bundle with its log proof written to \(out)")
    return 0
}
