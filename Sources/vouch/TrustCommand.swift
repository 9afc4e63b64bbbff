import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchRuntime

/// `vouch trust get [--output FILE]`: fetch the broker's trust document (`GET /v1/trust`) over
/// the pinned broker CA, check that it is whole (the roots and the broker CA parse, the log's key
/// is a C2SP verifier key named after the log), and save it for offline verification.
func trustCommand(_ argv: [String]) throws -> Int32 {
    guard argv.first == "get" else { throw VouchError(.usage, "expected: vouch trust get [--output FILE]") }
    let args = try Arguments(Array(argv.dropFirst()), options: CLI.brokerOptions.union(["output"]), flags: [])
    let (client, _) = try CLI.broker(args, admin: false)
    let trust = try client.call("GET", "/v1/trust", as: TrustDocument.self)
    try check(trust)
    let text = JSONCodec.pretty(trust) + "\n"
    if let out = args["output"] {
        try Files.writeAtomically(Array(text.utf8), to: out)
        print("saved the trust document of \(trust.trustDomain) to \(out) (log \(trust.log.origin), key \(trust.log.vkey))")
    } else {
        print(text, terminator: "")
    }
    return 0
}

/// Refuses a trust document that could not serve offline verification.
private func check(_ trust: TrustDocument) throws {
    guard trust.version == TrustDocument.currentVersion else {
        throw VouchError(.unsupported, "the broker sent a trust document of version \(trust.version.prefix(16))")
    }
    guard (try? Certificate.chain(pem: trust.agentRoots))?.isEmpty == false, (try? Certificate.chain(pem: trust.brokerCA))?.isEmpty == false else {
        throw VouchError(.invalidValue, "the trust document's certificates do not parse")
    }
    guard let key = try? NoteVerifierKey(vkey: trust.log.vkey), key.name == trust.log.origin, trust.log.origin == trust.trustDomain + "/vouch-log" else {
        throw VouchError(.invalidValue, "the trust document's log key is not the \(trust.trustDomain)/vouch-log verifier key")
    }
}
