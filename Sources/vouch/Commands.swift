import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchRuntime
import VouchTPMWire

enum CLI {
    static let usage = """
    usage: vouch COMMAND [options]      vouch COMMAND --help: one command, with examples; vouch --version

    Agents:
      enroll --name NAME [--socket PATH] [--out DIR] [--key-type p256|p384] [--renew | --tpm-key]
          Create a key pair and CSR, have the local attester prove this host's state to the broker,
          and write DIR/NAME.key (0600), DIR/NAME.pem and DIR/ca.pem. Socket: $VOUCH_ATTESTER_SOCKET.
          --renew: replace DIR/NAME.pem before it expires: a new key, signed over by the current one,
          and fresh evidence; refused if the current certificate or the host was revoked.
          --tpm-key: the attester creates the key inside the TPM (under the SRK, 0x81000001) and
          certifies it with the AK; writes NAME.pem, NAME.tpm.pub and NAME.tpm.priv.

    Operators (broker: --broker URL or $VOUCH_BROKER; broker CA: --ca FILE or $VOUCH_CA, the broker's
               DATA-DIR/broker-ca/ca.pem, which certifies only the broker;
               token: --token-file FILE or $VOUCH_TOKEN_FILE; read scope for status/history/check):
      status [--json]                     policies, hosts, AK state, last attestation and why; certificates
      status --evidence HOST [--out FILE] export a host's last verified evidence bundle (JSON)
      revoke --serial HEX [--reason R]    revoke one certificate
      revoke --host ID [--agent NAME]     revoke every certificate of an agent, or of a host
      revoke --host ID --block            ...and block the host: no enrollment, renewal or registration
      host unblock ID                     lift that block (the host must still pass attestation)
      host delete ID                      deregister a host: revoke its certificates; it must register again
      history [--host ID] [--result trusted|rejected] [--kind K] [--from T] [--until T] [--limit N] [--before CURSOR]
                                          the attestation history (audit trail), newest first
      token create --name NAME --scope read|admin [--out FILE]
                                          a scoped API token (shown once); token list; token revoke ID
      ca rotate                           start issuing with the staged CA-DIR/next CA

    CA management (offline):
      ca create-root --out DIR [--name CN] [--years N]
      ca create-intermediate --root DIR --out DIR [--name CN] [--days N]
      crl [--out FILE] [--json]           fetch the CRL, check its signature, list revoked serials
      trust get [--output FILE]           the broker's trust document (CA roots, broker CA, log key) for offline checks
      cert inspect FILE [--ca FILE] [--issuer FILE] [--json]
                                          a certificate's identity and the attestation (EAR) it carries;
                                          --ca: verify the EAR (broker CA) and its binding to the certificate;
                                          --issuer: verify the certificate chain

    Policies (offline, except capture --host):
      policy lint FILE|DIR...             validate files and the set; exit 0 valid, 1 invalid
      policy test FILE --evidence FILE [--json]
                                          evaluate a policy on a saved evidence bundle; exit 0 satisfied,
                                          1 violated (every violation listed), 2 unreadable input
      policy capture (--evidence FILE | --host ID) [--name NAME]
                                          print a draft policy accepting that host's current evidence
      policy capture --kind sev-snp|tdx|azure-snp-vtpm --at RFC3339 [--roots DIR [--test-roots]] FILE...
                                          a confidential VM's draft (snp:/tdx:), only from evidence that
                                          verifies; exit 1 if it does not

    Verifiers (offline, on files tpm2-tools writes):
      quote verify --ak-public FILE [--scheme S --hash ALG] [--allow-sha1] --message FILE
                   --signature FILE [--pcrs FILE] (--nonce HEX | --nonce-file FILE) [--json]
          AK public: the TPM2B_PUBLIC of tpm2_createak -u (its scheme and hash decide), or PEM
          with --hash and, for RSA, --scheme rsassa|rsapss; an AK signing with SHA-1 needs
          --allow-sha1; message: tpm2_quote -m; signature: tpm2_quote -s; pcrs: tpm2_quote -o.
          Exit 0 valid, 1 invalid, 2 unreadable.
      eventlog replay FILE [--json]       replay a TCG firmware event log: PCR values per bank
      eventlog show FILE [--json]         list its events and the boot claims decoded from them
      evidence verify --kind sev-snp|tdx|azure-snp-vtpm|nitro|nvidia-gpu|composite|nvidia-rim --at RFC3339
                      [--nonce HEX] [--policy FILE] [--roots DIR [--test-roots]] [--json] FILE...
          verify a confidential VM's evidence: an SEV-SNP report with its VCEK/VLEK (and AMD's CRL),
          an Azure HCL report with its VCEK, or a TDX quote with its collateral (dcap-qvl JSON or
          Intel PCS files) and CCEL log; files are told apart by content. Roots: AMD's and Intel's,
          compiled in and pinned (--roots DIR: other copies, still pinned; --test-roots: trust DIR as
          it is, for a software TEE). Also an AWS Nitro document, NVIDIA GPU SPDM evidence (--rims,
          devices: rules), an enrollment body of a CPU TEE with its GPUs (composite), a RIM
          (vouch help evidence). Exit 0 verified, 1 refused, 2 unreadable.

    Receipts (docs/receipts.md; sign and verify offline):
      receipt sign --cert CHAIN --key KEY --output FILE [--request FILE [--salt-out FILE]] [--issuance-proof FILE]
                   [--started T --finished T] --out BUNDLE
                                          an agent's signed receipt for one output (DSSE, in-toto); prints the
                                          request commitment's salt for the requester
      receipt verify BUNDLE --trust TRUST [--output FILE] [--request FILE --salt HEX] [--crl FILE]
                     [--witness VKEY ... [--witnesses K]]
                                          which model, which environment and who verified it, which output;
                                          exit 0 verified, 1 refused (each failed check's code), 2 unreadable
      receipt log BUNDLE --output BUNDLE2 have the broker log the receipt; BUNDLE2 carries its log proof

    Models (docs/policy.md, Signed models; offline):
      model verify DIR --publisher KEY | --roots CA [--identity SAN] | --trusted-root FILE --identity ID --issuer URL
                                          an OpenSSF model signature (model-signing's model.sig) by that publisher,
                                          then every file of DIR against the signed manifest; exit 0/1 refused/2

    Storage (offline, vouchd stopped):
      store copy --from DATA-DIR/vouch.db --to postgres://… [--dry-run]
                                          move the broker's SQLite database into an empty PostgreSQL one,
                                          verified table by table (row counts, digests) before it commits

    Relying parties and workflows (a read token is enough):
      check (--cert FILE | --spiffe-id ID) [--policy NAME] [--model SHA256] [--max-age DUR] [--crl FILE] [--jwks] [--json]
          exit 0 only if the certificate chains to the issuing CA, is within its validity period, is
          not revoked (a current CRL signed by its issuer: the broker's, or --crl FILE; and the
          broker's record), and its host is trusted now (an EAR signed by the broker itself, under the
          broker CA, or with --jwks by the key its kid names in the broker's key set, with a fresh
          nonce), appraised recently enough, under that policy, running that model manifest;
          otherwise exit 1 and print every failed requirement.

    Transparency log (the broker's at https://BROKER, or a mirror's directory; VKEY: its verifier key):
      log checkpoint --log URL|DIR --log-key VKEY      print the log's checkpoint once it verifies
      log witness --log URL|DIR --log-key VKEY --key SKEY_FILE --state DIR [--submit] [--interval DUR]
                                          cosign checkpoints that extend the last one; refuse rollbacks,
                                          keep fork evidence; log keygen --name NAME --out PREFIX
      log mirror --log URL --log-key VKEY --out DIR    a verified copy for offline receipt checks
      log proof --certificate CERT --output FILE [--wait DUR]   an agent's issuance proof (broker options)

    Exit status: 0 success, 1 refused or failed (one line on stderr), 2 usage error (one line).
    """

    /// Clock difference tolerated between this machine and the broker for "not yet valid" checks.
    static let clockSkew: TimeInterval = 60

    static func error(_ s: String) { FileHandle.standardError.write(Data((s + "\n").utf8)) }

    /// A message on one line: its lines joined with "; ".
    static func oneLine(_ s: String) -> String {
        s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: "; ")
    }

    /// A duration option (90s, 15m, 2h, 1d); a malformed one is a usage error.
    static func duration(_ args: Arguments, _ name: String, default value: String) throws -> TimeInterval {
        do { return try parseDuration(args[name] ?? value, field: "--\(name)") } catch let e as VouchError {
            throw VouchError(.usage, e.message, context: e.context)
        }
    }

    static func env(_ key: String) -> String? { ProcessInfo.processInfo.environment[key].flatMap { $0.isEmpty ? nil : $0 } }

    static let brokerOptions: Set<String> = ["broker", "ca", "token-file"]

    static func broker(_ args: Arguments, admin: Bool) throws -> (APIClient, caFile: String) {
        guard let url = args["broker"] ?? env("VOUCH_BROKER") else { throw VouchError(.usage, "no broker: give --broker URL or set VOUCH_BROKER") }
        guard let ca = args["ca"] ?? env("VOUCH_CA") else { throw VouchError(.usage, "no CA: give --ca FILE or set VOUCH_CA") }
        var token: String?
        if admin {
            guard let file = args["token-file"] ?? env("VOUCH_TOKEN_FILE") else {
                throw VouchError(.usage, "no admin token: give --token-file FILE or set VOUCH_TOKEN_FILE")
            }
            token = try Files.readString(file).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return (APIClient(transport: HTTPClient(.https(baseURL: url, caFile: ca)), bearerToken: token), ca)
    }
}

func enrollCommand(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: ["name", "socket", "out", "key-type"], flags: ["renew", "tpm-key"])
    let name = try args.required("name")
    guard let socket = args["socket"] ?? CLI.env("VOUCH_ATTESTER_SOCKET") else {
        throw VouchError(.usage, "no attester socket: give --socket PATH or set VOUCH_ATTESTER_SOCKET")
    }
    let out = args["out"] ?? "."
    guard let keyType = PrivateKey.KeyType(rawValue: (args["key-type"] ?? "p256").uppercased().replacingOccurrences(of: "P", with: "P-")) else {
        throw VouchError(.usage, "--key-type must be p256 or p384")
    }
    let client = APIClient(transport: HTTPClient(.unix(path: socket), timeoutSeconds: 60))
    if args.has("tpm-key") {
        guard !args.has("renew") else { throw VouchError(.usage, "a TPM-bound key is renewed by enrolling a new one: drop --renew") }
        return try enrollTPMKey(name: name, out: out, client: client)
    }
    let key = try PrivateKey.generate(keyType)
    let csr = try CSR.create(key: key, commonName: name)
    var renewal: RenewalBody?
    if args.has("renew") {
        guard let current = try? Files.readString("\(out)/\(name).pem"), let currentKey = try? PrivateKey(pem: Files.readString("\(out)/\(name).key")) else {
            throw VouchError(.usage, "--renew needs the current \(out)/\(name).pem and \(out)/\(name).key")
        }
        renewal = RenewalBody(certificate: current, proof: Base64.encode(try currentKey.sign(try csr.der)))
    }
    let issued = try client.call("POST", "/v1/enroll", body: AgentEnrollRequest(agentName: name, csr: try csr.pem, renewal: renewal), as: EnrollResponse.self)
    let cert = try Certificate(pem: issued.certificate)
    guard try cert.publicKey.isEqual(to: key.publicKey) else {
        throw VouchError(.crypto, "the broker returned a certificate for a different key")
    }
    try Files.makeDirectory(out, mode: 0o755)
    try Files.writeAtomically(Array(try key.pem.utf8), to: "\(out)/\(name).key", mode: 0o600)
    try Files.writeAtomically(Array(issued.certificate.utf8), to: "\(out)/\(name).pem")
    try Files.writeAtomically(Array(issued.caCertificate.utf8), to: "\(out)/ca.pem")
    print("""
    \(args.has("renew") ? "renewed" : "enrolled") agent \(name)
      serial:    \(issued.serial)
      subject:   \(cert.subject)
      issuer:    \(cert.issuer)
      SAN:       \(cert.uriSANs.joined(separator: ", "))
      notBefore: \(cert.notBefore.iso8601)
      notAfter:  \(cert.notAfter.iso8601)
      policy:    \(issued.policy)
      files:     \(out)/\(name).key \(out)/\(name).pem \(out)/ca.pem
    """)
    return 0
}

/// Enrollment of a key created inside the host's TPM: writes NAME.pem, NAME.tpm.pub, NAME.tpm.priv.
func enrollTPMKey(name: String, out: String, client: APIClient) throws -> Int32 {
    let issued = try client.call("POST", "/v1/enroll", body: AgentEnrollRequest(agentName: name, csr: nil, tpmKey: true), as: EnrollResponse.self)
    guard let pub = issued.tpmKeyPublic, let priv = issued.tpmKeyPrivate, let parent = issued.tpmKeyParent else {
        throw VouchError(.http, "the attester did not return the TPM key blobs")
    }
    let pubBytes = try Base64.decode(pub, field: "tpmKeyPublic")
    let cert = try Certificate(pem: issued.certificate)
    guard try cert.publicKey.isEqual(to: PublicKey(tpmPublic: TPMTPublic(tpm2bPublic: pubBytes))) else {
        throw VouchError(.crypto, "the broker returned a certificate for a different key")
    }
    try Files.makeDirectory(out, mode: 0o755)
    try Files.writeAtomically(Array(issued.certificate.utf8), to: "\(out)/\(name).pem")
    try Files.writeAtomically(Array(issued.caCertificate.utf8), to: "\(out)/ca.pem")
    try Files.writeAtomically(pubBytes, to: "\(out)/\(name).tpm.pub")
    try Files.writeAtomically(try Base64.decode(priv, field: "tpmKeyPrivate"), to: "\(out)/\(name).tpm.priv", mode: 0o600)
    print("""
    enrolled agent \(name) with a key inside this host's TPM
      serial:    \(issued.serial)
      SAN:       \(cert.uriSANs.joined(separator: ", "))
      notAfter:  \(cert.notAfter.iso8601)
      files:     \(out)/\(name).pem \(out)/\(name).tpm.pub \(out)/\(name).tpm.priv (wrapped by the TPM's SRK \(parent))
      use:       tpm2_load -C \(parent) -u \(out)/\(name).tpm.pub -r \(out)/\(name).tpm.priv -c key.ctx
    """)
    return 0
}

func statusCommand(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: CLI.brokerOptions.union(["evidence", "out"]), flags: ["json"])
    let (client, _) = try CLI.broker(args, admin: true)
    if let host = args["evidence"] {
        let bundle = try client.call("GET", "/v1/hosts/\(host)/evidence", as: EvidenceBundle.self)
        let text = JSONCodec.pretty(bundle)
        if let out = args["out"] { try Files.writeAtomically(Array((text + "\n").utf8), to: out) } else { print(text) }
        return 0
    }
    let status = try client.call("GET", "/v1/status", as: StatusResponse.self)
    if args.has("json") { print(JSONCodec.pretty(status)); return 0 }
    print("trust domain \(status.trustDomain) · CRL #\(status.crlNumber)")
    print("\nPOLICIES (loaded \(status.policies.loadedAt))")
    for p in status.policies.policies {
        let match = p.match.isEmpty ? "all hosts" : p.match.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        print("  \(p.name) v\(p.version)  priority \(p.priority)  matches \(match)  sha256:\(p.sha256.prefix(16))  \(p.file)")
    }
    if let e = status.policies.reloadError {
        print("  ! last reload refused at \(status.policies.reloadErrorAt ?? "?"), the policies above stay in force: \(e.code): \(e.message)")
    }
    print("\nHOSTS (\(status.hosts.count))")
    for h in status.hosts {
        print("  \(h.hostId)  \(h.hostname)  AK \(h.akAlgorithm) \(h.akState)  policy \(h.policy ?? "none matches")  EK issuer: \(h.ekIssuer)")
        if let b = h.blocked { print("    BLOCKED: \(b)") }
        if let t = h.trust {
            let problem = t.lastProblem.map { ", last problem \($0)" } ?? ""
            print("    \(t.state.uppercased()) since \(t.since) (\(t.mode)\(t.simulated == true ? ", SIMULATED" : "")\(problem))")
        }
        if let labels = h.labels { print("    labels: \(labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))") }
        if let a = h.lastAttestation {
            let codes = a.codes.isEmpty ? "" : " [\(a.codes.joined(separator: ","))]"
            print("    last attestation \(a.at): \(a.result)\(codes) — \(a.message)")
        }
    }
    print("\nCERTIFICATES (\(status.certificates.count))")
    for c in status.certificates {
        let revoked = c.revokedAt.map { " at \($0) (\(c.revocationReason ?? "unspecified"))" } ?? ""
        print("  \(c.serial)  \(c.state)\(revoked)\n    \(c.spiffeId)\n    valid \(c.notBefore) → \(c.notAfter)")
    }
    return 0
}

func revokeCommand(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: CLI.brokerOptions.union(["serial", "host", "agent", "reason"]), flags: ["block"])
    guard args["serial"] != nil || args["host"] != nil else { throw VouchError(.usage, "give --serial HEX, or --host ID [--agent NAME]") }
    let (client, _) = try CLI.broker(args, admin: true)
    let r = try client.call("POST", "/v1/revoke", body: RevokeRequest(serial: args["serial"], hostId: args["host"], agentName: args["agent"], reason: args["reason"],
                                                                           blockHost: args.has("block") ? true : nil),
                            as: RevokeResponse.self)
    for s in r.revoked { print("revoked \(s)") }
    if args.has("block") { print("host \(args["host"] ?? "") blocked") }
    print("CRL #\(r.crlNumber) published")
    return 0
}

func crlCommand(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: CLI.brokerOptions.union(["out"]), flags: ["json"])
    let (client, _) = try CLI.broker(args, admin: false)
    let response = try client.raw("GET", "/v1/crl")
    let crl = try CRL(der: response.body)
    // The issuing CA comes from the broker, over TLS verified with the broker CA (--ca).
    let issuing = try Certificate.chain(pem: String(decoding: try client.raw("GET", "/v1/ca").body, as: UTF8.self))
    guard let ca = issuing.first, crl.isSigned(by: ca) else { throw VouchError(.crypto, "CRL signature does not verify with the broker's issuing CA") }
    if let out = args["out"] { try Files.writeAtomically(response.body, to: out) }
    if args.has("json") {
        print(JSONCodec.pretty(["number": "\(crl.number ?? 0)", "thisUpdate": crl.thisUpdate.iso8601, "nextUpdate": crl.nextUpdate.iso8601,
                                "revoked": crl.revokedSerials.joined(separator: ",")]))
        return 0
    }
    print("CRL #\(crl.number ?? 0) from \(crl.issuer), signature verified")
    print("  thisUpdate \(crl.thisUpdate.iso8601), nextUpdate \(crl.nextUpdate.iso8601)")
    print("  revoked serials (\(crl.revokedSerials.count)):")
    for s in crl.revokedSerials { print("    \(s)") }
    return 0
}

func hostCommand(_ argv: [String]) throws -> Int32 {
    guard let sub = argv.first, ["unblock", "delete"].contains(sub), argv.count >= 2 else {
        throw VouchError(.usage, "give a subcommand and a host ID: unblock ID or delete ID")
    }
    let args = try Arguments(Array(argv.dropFirst(2)), options: CLI.brokerOptions)
    let (client, _) = try CLI.broker(args, admin: true)
    if sub == "delete" {
        let r = try client.call("DELETE", "/v1/hosts/\(argv[1])", as: RevokeResponse.self)
        print("host \(argv[1]) deregistered; \(r.revoked.count) certificate(s) revoked; CRL #\(r.crlNumber)")
        return 0
    }
    let host = try client.call("POST", "/v1/hosts/\(argv[1])/unblock", body: nil as String?, as: HostStatus.self)
    print("host \(host.hostId) unblocked")
    return 0
}
