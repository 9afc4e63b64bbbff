import Foundation
import VouchAPI
import VouchCore
import VouchRuntime

/// `vouch token create|list|revoke`: scoped API tokens (admin token needed).
func tokenCommand(_ argv: [String]) throws -> Int32 {
    guard let sub = argv.first, ["create", "list", "revoke"].contains(sub) else {
        throw VouchError(.usage, "give a subcommand: create, list or revoke ID")
    }
    switch sub {
    case "create":
        let args = try Arguments(Array(argv.dropFirst()), options: CLI.brokerOptions.union(["name", "scope", "out"]))
        let (client, _) = try CLI.broker(args, admin: true)
        let t = try client.call("POST", "/v1/tokens", body: TokenCreateRequest(name: try args.required("name"), scope: args["scope"] ?? "read"), as: TokenInfo.self)
        if let out = args["out"] {
            try Files.writeAtomically(Array(((t.token ?? "") + "\n").utf8), to: out, mode: 0o600)
            print("token \(t.id) (\(t.name), \(t.scope)) written to \(out) (mode 0600); it is not shown again")
        } else {
            print(t.token ?? "")
            CLI.error("token \(t.id) (\(t.name), \(t.scope)); store it now: only its SHA-256 is kept")
        }
    case "list":
        let args = try Arguments(Array(argv.dropFirst()), options: CLI.brokerOptions, flags: ["json"])
        let (client, _) = try CLI.broker(args, admin: true)
        let tokens = try client.call("GET", "/v1/tokens", as: [TokenInfo].self)
        if args.has("json") { print(JSONCodec.pretty(tokens)); return 0 }
        for t in tokens { print("\(t.id)  \(t.scope)  \(t.name)  created \(t.createdAt)" + (t.revokedAt.map { "  REVOKED \($0)" } ?? "")) }
    default:
        guard argv.count >= 2 else { throw VouchError(.usage, "token revoke needs a token ID") }
        let args = try Arguments(Array(argv.dropFirst(2)), options: CLI.brokerOptions)
        let (client, _) = try CLI.broker(args, admin: true)
        let t = try client.call("DELETE", "/v1/tokens/\(argv[1])", as: TokenInfo.self)
        print("token \(t.id) (\(t.name)) revoked")
    }
    return 0
}

/// `vouch history`: the attestation history, newest first.
func historyCommand(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: CLI.brokerOptions.union(["host", "result", "kind", "from", "until", "limit", "before"]), flags: ["json"])
    let (client, _) = try CLI.broker(args, admin: true)
    var query: [String] = []
    for (opt, key) in [("host", "hostId"), ("result", "result"), ("kind", "kind"), ("from", "from"), ("until", "until"), ("limit", "limit"), ("before", "before")] {
        if let v = args[opt] { query.append("\(key)=\(v.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")") }
    }
    let page = try client.call("GET", "/v1/attestations" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")), as: AttestationPage.self)
    if args.has("json") { print(JSONCodec.pretty(page)); return 0 }
    for a in page.items {
        let codes = a.codes.isEmpty ? "" : " [\(a.codes.joined(separator: ","))]"
        print("\(a.at)  \(a.hostId)  \(a.kind)  \(a.result)\(codes)  \(a.message)" + (a.policy.map { "  (\($0))" } ?? ""))
    }
    if let next = page.next { print("more: --before \(next)") }
    return 0
}
