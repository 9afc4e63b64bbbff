import Foundation
import VouchBenchKit
import VouchCore
import VouchReceiptKit
import VouchReceiptTestSupport

/// `vouch-bench receipts [--seconds N] [--out FILE]`: receipts signed and verified per second,
/// one thread, in the tests' in-memory world (P-256 agent key, issuance proof in a six-entry log).
/// Signing is what the inference proxy pays per response (one `ReceiptSigner`, `sign` per
/// output of 1 KiB with a request); verification is every offline check but the CRL's.
enum ReceiptBench {
    struct Row: Encodable { var name: String; var unit: String; var rate: Double; var detail: String }

    static func run(_ argv: [String]) throws -> Int32 {
        let args = try Arguments(argv, options: ["seconds", "out"])
        let seconds = Double(args["seconds"] ?? "3") ?? 3
        let world = try ReceiptFixture(now: Date().addingTimeInterval(-60))
        let signer = try world.signer()
        let verifier = try world.verifier()
        let output = [UInt8](repeating: 0x61, count: 1024), request = [UInt8](repeating: 0x62, count: 1024)
        let now = Date()
        func rate(_ body: () throws -> Void) rethrows -> Double { try Bench.rate(seconds: seconds, body) }
        let signed = try rate { _ = try signer.sign(output: output, request: request, startedAt: now, finishedAt: now) }
        let bundle = try signer.sign(output: output, request: request, startedAt: now, finishedAt: now)
        guard case .verified = verifier.verify(bundle: bundle.bundle, .init(output: output, request: request, salt: bundle.salt)) else {
            throw VouchError(.internalError, "the bench's receipt does not verify")
        }
        let verified = rate { _ = verifier.verify(bundle: bundle.bundle, .init(output: output, request: request, salt: bundle.salt)) }
        let rows = [
            Row(name: "receipt sign (ECDSA P-256, 1 KiB output + request)", unit: "receipts/s", rate: signed,
                detail: "ReceiptSigner.sign: Statement, DSSE signature, bundle JSON (\(bundle.bundle.count) bytes); one thread"),
            Row(name: "receipt verify offline (chain, EAR, issuance proof, output, request)", unit: "receipts/s", rate: verified,
                detail: "ReceiptVerifier.verify: ECDSA verifications (DSSE, certificate chain, EAR and its x5c), the checkpoint's Ed25519 signature and a Merkle proof per receipt; one thread"),
        ]
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        let json = try e.encode(rows)
        if let out = args["out"] { try json.write(to: URL(fileURLWithPath: out)) } else { print(String(decoding: json, as: UTF8.self)) }
        for r in rows { FileHandle.standardError.write(Data("\(r.name): \(Int(r.rate)) \(r.unit)\n".utf8)) }
        return 0
    }
}
