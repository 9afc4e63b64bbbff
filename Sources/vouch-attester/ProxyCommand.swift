import Foundation
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchHTTPServer
import VouchReceiptKit
import VouchReceipts
import VouchRuntime

/// `vouch-attester proxy --upstream URL --listen ADDR --cert FILE --key FILE|--tpm-key DIR/NAME --socket PATH [--issuance-proof FILE]
/// [--max-body BYTES] [--max-response BYTES] [--timeout DUR]`: the receipt proxy in front of an
/// OpenAI-compatible inference server (`ReceiptProxy`). Usage errors exit 2, a proxy that cannot
/// start 1; it serves until SIGTERM or SIGINT.
func proxyCommand(_ words: [String]) -> Never {
    let pargs: Arguments
    do {
        pargs = try Arguments(words, options: ["upstream", "listen", "cert", "key", "tpm-key", "socket", "issuance-proof", "max-body", "max-response", "timeout",
                                                "sign-routes"])
    } catch { fail(error, prefix: "proxy: ") }
    func required(_ name: String) -> String {
        guard let v = pargs[name] else { fail("proxy: --\(name) is required") }
        return v
    }
    func byteCount(_ name: String, default value: Int) -> Int {
        guard let text = pargs[name] else { return value }
        guard let n = Int(text), n > 0, n <= 1 << 30 else { fail("proxy: --\(name) takes a byte count of 1 to 1073741824") }
        return n
    }
    let upstreamText = required("upstream"), listenText = required("listen")
    let upstreamTransport: HTTPClient.Transport
    if upstreamText.hasPrefix("unix:") {
        upstreamTransport = .unix(path: String(upstreamText.dropFirst(5)))
    } else if let problem = HTTPClient.serviceBaseURLProblem(upstreamText) {
        fail("proxy: --upstream takes https://HOST[:PORT][/PATH], http:// to a loopback address, or unix:PATH (\(problem))")
    } else {
        upstreamTransport = .service(baseURL: upstreamText)
    }
    let listen: HTTPServer.Listen
    if listenText.hasPrefix("unix:") {
        listen = .unix(path: String(listenText.dropFirst(5)), mode: 0o660)
    } else {
        let parts = listenText.split(separator: ":").map(String.init)
        guard parts.count == 2, let port = UInt16(parts[1]), port > 0 else { fail("proxy: --listen takes ADDR:PORT (IPv4) or unix:PATH") }
        listen = .http(host: parts[0], port: port)
    }
    let maxBody = byteCount("max-body", default: 4 << 20), maxResponse = byteCount("max-response", default: 64 << 20)
    let timeout: TimeInterval
    do { timeout = try duration(pargs["timeout"] ?? "10m", "--timeout") } catch { fail(error, prefix: "proxy: ") }
    guard timeout >= 1 else { fail("proxy: --timeout is at least 1s") }
    var signedRoutes = ReceiptProxy.defaultSignedRoutes
    if let list = pargs["sign-routes"] {
        signedRoutes = Set(list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        guard !signedRoutes.isEmpty, signedRoutes.allSatisfy(ReceiptPredicate.Request.isRoute) else {
            fail("proxy: --sign-routes takes \"METHOD /path\" items separated by commas (e.g. \"POST /v1/chat/completions,POST /v1/completions\")")
        }
    }
    do {
        guard (pargs["key"] == nil) != (pargs["tpm-key"] == nil), (pargs["tpm-key"] == nil) == (pargs["socket"] == nil) else {
            fail("proxy: give --key FILE, or --tpm-key DIR/NAME (vouch enroll --tpm-key) with --socket PATH (the attester's)")
        }
        let key: ReceiptSigningKey
        if let prefix = pargs["tpm-key"], let socket = pargs["socket"] {
            let client = APIClient(transport: HTTPClient(.unix(path: socket), timeoutSeconds: 30))
            key = try .attesterSocket(client, tpmPublic: try Files.read(prefix + ".tpm.pub"), tpmPrivate: try Files.read(prefix + ".tpm.priv"))
        } else {
            key = try .software(try PrivateKey(pem: try Files.readString(required("key"))))
        }
        let receipts = try receiptSigner(certificate: required("cert"), key: key, issuanceProof: pargs["issuance-proof"])
        // One receipt before serving: a key that cannot sign (an attester socket that refuses, a
        // key another TPM holds) stops the proxy here rather than failing every answer.
        do { _ = try receipts.sign(output: [], request: nil, route: nil, startedAt: Date(), finishedAt: Date()) } catch {
            fail("proxy: the agent key does not sign: \(error)", code: 1)
        }
        let upstream = HTTPClient(upstreamTransport, timeoutSeconds: Int(timeout), maxResponseBytes: maxResponse)
        // Room for every connection's request and answer is not promised; past this, 503 proxy_busy.
        let proxy = ReceiptProxy(upstream: upstream, receipts: receipts, maxInFlightBytes: max(512 << 20, 2 * (maxBody + maxResponse)),
                                 signedRoutes: signedRoutes, log: { Runtime.log($0, level: "debug") })
        // A thread per connection: each waits on the upstream for as long as it answers. Idle
        // connections wait as long as the upstream may pause inside a stream (slow senders are
        // bounded by the request deadline); the pool holds a receipt header of up to 48 KiB.
        let server = try HTTPServer(listen: listen, threading: .perConnection, maxBodyBytes: maxBody,
                                    limits: .init(idleTimeout: ReceiptProxy.connectionIdleTimeout(upstreamTimeout: Int(timeout)), requestDeadline: 30,
                                                  total: 256, connectionMemory: ReceiptProxy.connectionMemoryLimit),
                                    handler: proxy.handle)
        Runtime.log("receipt proxy on \(listen) for \(upstreamText): answers carry receipts signed with \(required("cert"))'s key")
        Runtime.waitForTermination()
        server.stop()
        exit(0)
    } catch { fail(error, prefix: "proxy: ") }
}

/// The agent's receipt signer (VouchReceiptKit) from its certificate chain (as `vouch enroll`
/// writes it), its key and the issuance proof (the JSON of `GET /v1/log/proof?certificate=`).
func receiptSigner(certificate: String, key: ReceiptSigningKey, issuanceProof: String?) throws -> any ReceiptMaking {
    let issuance = try issuanceProof.map { try UnverifiedReceiptBundle.LoggedEntry(proofResponse: try Files.read($0)) }
    return AgentReceiptSigner(signer: try ReceiptSigner(chainPEM: try Files.readString(certificate), key: key, issuance: issuance))
}

/// `ReceiptSigner` as the proxy's `ReceiptMaking`.
struct AgentReceiptSigner: ReceiptMaking {
    let signer: ReceiptSigner
    func sign(output: [UInt8], request: [UInt8]?, route: String?, startedAt: Date, finishedAt: Date) throws -> (bundle: [UInt8], salt: [UInt8]) {
        try signer.sign(output: output, request: request, route: route, startedAt: startedAt, finishedAt: finishedAt)
    }
}
