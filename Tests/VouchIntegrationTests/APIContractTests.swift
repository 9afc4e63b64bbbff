import Foundation
import XCTest
import VouchAPI
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient
import VouchRuntime
import VouchYAML
import VouchTestSupport

/// docs/openapi.yaml against the real daemon: the document validates (openapi-spec-validator from
/// PyPI in a throwaway virtualenv), every documented operation is called here, each answer's
/// status is one the document lists for it, and JSON bodies carry the schema's required fields.
final class APIContractTests: XCTestCase {
    struct Operation: Hashable { let method: String; let path: String }
    struct Documented { var statuses: [String: ConfigNode] }

    static var specPath: String { TestEnv.packageRoot.appendingPathComponent("docs/openapi.yaml").path }

    func mapping(_ n: ConfigNode?) -> [(String, ConfigNode)] {
        guard case let .mapping(pairs)? = n?.value else { return [] }
        return pairs.compactMap { p in p.key.scalar.map { ($0, p.value) } }
    }
    func child(_ n: ConfigNode?, _ key: String) -> ConfigNode? { mapping(n).first { $0.0 == key }?.1 }

    func testDocumentValidates() throws {
        let venv = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-openapi-venv").path
        if !FileManager.default.fileExists(atPath: venv + "/bin/openapi-spec-validator") {
            let made = try TestEnv.run("/usr/bin/python3", ["-m", "venv", venv])
            guard made.status == 0 else { throw TestFailure("python3 -m venv failed (make deps installs python3-venv): \(made.stderr)") }
            let pip = try TestEnv.run(venv + "/bin/pip", ["install", "-q", "openapi-spec-validator"])
            guard pip.status == 0 else { throw TestFailure("openapi-spec-validator could not be installed from PyPI: \(pip.stderr.suffix(300))") }
        }
        let r = try TestEnv.run(venv + "/bin/openapi-spec-validator", [Self.specPath])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
    }

    func testEveryDocumentedOperationAnswersAsDocumented() throws {
        let spec = try YAMLParser.parse(try Files.read(Self.specPath), file: Self.specPath)
        let schemas = child(child(spec, "components"), "schemas")
        var documented: [Operation: Documented] = [:]
        for (path, item) in mapping(child(spec, "paths")) {
            for (method, op) in mapping(item) {
                documented[Operation(method: method.uppercased(), path: path)] = Documented(statuses: Dictionary(uniqueKeysWithValues: mapping(child(op, "responses"))))
            }
        }
        XCTAssertGreaterThan(documented.count, 30)

        // A broker with a registered (push-mode) host, an agent certificate, and a read token.
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm, policy: try ReattestationTests.policy(in: tpm.dir))
        let attester = broker.pushAttester(for: tpm, hostname: "contract")
        let id = try attester.register()
        let agent = try attester.enroll(AgentEnrollRequest(agentName: "contract", csr: try CSR.create(key: try PrivateKey.generate(), commonName: "contract").pem))
        let second = try attester.enroll(AgentEnrollRequest(agentName: "second", csr: try CSR.create(key: try PrivateKey.generate(), commonName: "second").pem))
        let admin = try broker.admin().transport
        let adminToken = try String(contentsOfFile: broker.tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let open = broker.client().transport
        let identity = try XCTUnwrap(attester.identity)
        let mtls = HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile), identity: .init(certificateFile: identity.certificateFile!, keyFile: identity.keyFile!))
        func json<T: Encodable>(_ v: T) -> [UInt8] { JSONCodec.encode(v) }
        let jsonHeaders = ["Content-Type": "application/json"], auth = ["Authorization": "Bearer \(adminToken)"]
        let ca = try Certificate(pem: String(contentsOfFile: broker.agentCAFile, encoding: .utf8))
        let ocspRequest: [UInt8] = try {
            let certFile = broker.dir.appendingPathComponent("contract.pem").path, req = broker.dir.appendingPathComponent("ocsp.der").path
            try agent.certificate.write(toFile: certFile, atomically: true, encoding: .utf8)
            _ = try TestEnv.run("openssl", ["ocsp", "-issuer", broker.agentCAFile, "-cert", certFile, "-reqout", req, "-no_nonce"])
            return [UInt8](try Data(contentsOf: URL(fileURLWithPath: req)))
        }()
        var tokenID = ""

        // Each documented operation, called once with a request that should succeed (in order:
        // reads first, destructive calls last).
        let calls: [(Operation, () throws -> HTTPResponse)] = [
            (.init(method: "GET", path: "/healthz"), { try open.send("GET", "/healthz", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/readyz"), { try open.send("GET", "/readyz", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/metrics"), { try open.send("GET", "/metrics", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/health"), { try open.send("GET", "/v1/health", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/v1/ca"), { try open.send("GET", "/v1/ca", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/v1/bundle"), { try open.send("GET", "/v1/bundle?format=spiffe", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/v1/crl"), { try open.send("GET", "/v1/crl", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/v1/crl.pem"), { try open.send("GET", "/v1/crl.pem", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/v1/crl/{issuer}"), { try open.send("GET", "/v1/crl/\(ca.subjectKeyID)", headers: [:], body: nil) }),
            (.init(method: "POST", path: "/v1/ocsp"), { try open.send("POST", "/v1/ocsp", headers: ["Content-Type": "application/ocsp-request"], body: ocspRequest) }),
            (.init(method: "GET", path: "/v1/ocsp/{request}"), {
                try open.send("GET", "/v1/ocsp/" + (Base64.encode(ocspRequest).addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""), headers: [:], body: nil)
            }),
            (.init(method: "GET", path: "/v1/events"), { try HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile), timeoutSeconds: 1).send("GET", "/v1/events?after=-1", headers: [:], body: nil) }),
            (.init(method: "POST", path: "/v1/hosts"), { try open.send("POST", "/v1/hosts", headers: jsonHeaders, body: Array(#"{"ekCertificate":"","ekPublic":"","akPublic":""}"#.utf8)) }),
            (.init(method: "POST", path: "/v1/hosts/{hostId}/activate"), { try open.send("POST", "/v1/hosts/\(id)/activate", headers: jsonHeaders, body: json(ActivateHostRequest(secret: "AAAA", registration: nil))) }),
            (.init(method: "POST", path: "/v1/challenges"), { try open.send("POST", "/v1/challenges", headers: jsonHeaders, body: json(ChallengeRequest(hostId: id))) }),
            (.init(method: "POST", path: "/v1/enroll"), {
                let c = try APIClient(transport: open).call("POST", "/v1/challenges", body: ChallengeRequest(hostId: id), as: ChallengeResponse.self)
                let key = try PrivateKey.generate()
                let q = try attester.quote(qualifyingData: EnrollmentBinding.qualifyingData(nonce: try Hex.decode(c.nonce), agentSPKI: try key.publicKey.spkiDER),
                                           selection: .init(banks: [.init(hash: .sha256, pcrs: Array(0...7) + [23])]))
                return try open.send("POST", "/v1/enroll", headers: jsonHeaders, body: json(EnrollRequest(
                    hostId: id, nonce: c.nonce, agentName: "third", csr: try CSR.create(key: key, commonName: "third").pem,
                    quote: try Attester.quoteBody(q, eventLogPath: nil, modelLogPath: nil))))
            }),
            (.init(method: "POST", path: "/v1/hosts/{hostId}/attestations"), {
                let c = try APIClient(transport: open).call("POST", "/v1/challenges", body: ChallengeRequest(hostId: id, purpose: "attestation"), as: ChallengeResponse.self)
                let body = try attester.reattestationQuote(QuoteRequest(nonce: c.nonce, pcrSelection: c.pcrSelection))
                return try mtls.send("POST", "/v1/hosts/\(id)/attestations", headers: jsonHeaders, body: json(AttestationReport(nonce: c.nonce, quote: body)))
            }),
            // A push host: the hint is authenticated, then refused as host_not_pulled (409).
            (.init(method: "POST", path: "/v1/hosts/{hostId}/hint"), {
                try mtls.send("POST", "/v1/hosts/\(id)/hint", headers: jsonHeaders, body: json(HintRequest(reason: "contract")))
            }),
            (.init(method: "POST", path: "/v1/hosts/{hostId}/jwt-svids"), {
                let r = try mtls.send("POST", "/v1/hosts/\(id)/jwt-svids", headers: jsonHeaders,
                                      body: json(JWTSVIDIssueRequest(serial: agent.serial, audience: ["spiffe://contract/rp"])))
                XCTAssertEqual(r.status, 200, "a trusted host's agent gets a JWT-SVID: \(String(decoding: r.body.prefix(300), as: UTF8.self))")
                return r
            }),
            (.init(method: "GET", path: "/v1/jwt-svid/jwks"), { try open.send("GET", "/v1/jwt-svid/jwks", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/v1/status"), { try admin.send("GET", "/v1/status", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/summary"), { try admin.send("GET", "/v1/summary", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/hosts"), { try admin.send("GET", "/v1/hosts", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/hosts/{hostId}"), { try admin.send("GET", "/v1/hosts/\(id)", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/hosts/{hostId}/evidence"), { try admin.send("GET", "/v1/hosts/\(id)/evidence", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/hosts/{hostId}/ear"), { try admin.send("GET", "/v1/hosts/\(id)/ear?nonce=contract-nonce", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/ear/jwks"), { try open.send("GET", "/v1/ear/jwks", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/v1/trust"), { try open.send("GET", "/v1/trust", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/checkpoint"), { try open.send("GET", "/checkpoint", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/tile/{level}/{index}"), { try open.send("GET", "/tile/0/000", headers: [:], body: nil) }),   // 404: not full yet
            (.init(method: "GET", path: "/tile/entries/{index}"), { try open.send("GET", "/tile/entries/000", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/v1/log/proof"), { try open.send("GET", "/v1/log/proof?index=0", headers: [:], body: nil) }),
            (.init(method: "GET", path: "/v1/log/consistency"), { try open.send("GET", "/v1/log/consistency?old=1&new=1", headers: [:], body: nil) }),
            (.init(method: "POST", path: "/v1/log/cosignatures"), {   // no witness configured: 403 note_unverified
                let checkpoint = try open.send("GET", "/checkpoint", headers: [:], body: nil).body
                return try open.send("POST", "/v1/log/cosignatures", headers: ["Content-Type": "text/plain"], body: checkpoint)
            }),
            (.init(method: "POST", path: "/v1/receipts"), {   // not a bundle: 422 receipt_malformed
                try open.send("POST", "/v1/receipts", headers: jsonHeaders, body: Array(#"{"mediaType":"application/vnd.vouch.receipt.v1+json"}"#.utf8))
            }),
            (.init(method: "GET", path: "/v1/hosts/{hostId}/attestations"), { try admin.send("GET", "/v1/hosts/\(id)/attestations?limit=2", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/attestations"), { try admin.send("GET", "/v1/attestations?result=trusted&kind=enrollment", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/certificates"), { try admin.send("GET", "/v1/certificates?hostId=\(id)&state=valid", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/certificates/{serial}"), { try admin.send("GET", "/v1/certificates/\(agent.serial)", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/policies"), { try admin.send("GET", "/v1/policies", headers: auth, body: nil) }),
            (.init(method: "GET", path: "/v1/policies/{name}"), { try admin.send("GET", "/v1/policies/development", headers: auth, body: nil) }),
            (.init(method: "POST", path: "/v1/tokens"), {
                let r = try admin.send("POST", "/v1/tokens", headers: auth.merging(jsonHeaders) { a, _ in a }, body: json(TokenCreateRequest(name: "contract", scope: "read")))
                tokenID = (try? JSONCodec.decode(TokenInfo.self, from: r.body).id) ?? ""
                return r
            }),
            (.init(method: "GET", path: "/v1/tokens"), { try admin.send("GET", "/v1/tokens", headers: auth, body: nil) }),
            (.init(method: "DELETE", path: "/v1/tokens/{id}"), { try admin.send("DELETE", "/v1/tokens/\(tokenID)", headers: auth, body: nil) }),
            (.init(method: "POST", path: "/v1/certificates/{serial}/revoke"), {
                try admin.send("POST", "/v1/certificates/\(agent.serial)/revoke", headers: auth.merging(jsonHeaders) { a, _ in a }, body: json(["reason": "superseded"]))
            }),
            (.init(method: "POST", path: "/v1/revoke"), { try admin.send("POST", "/v1/revoke", headers: auth.merging(jsonHeaders) { a, _ in a }, body: json(RevokeRequest(serial: second.serial))) }),
            (.init(method: "POST", path: "/v1/policies/reload"), { try admin.send("POST", "/v1/policies/reload", headers: auth, body: nil) }),
            (.init(method: "POST", path: "/v1/ca/rotate"), { try admin.send("POST", "/v1/ca/rotate", headers: auth, body: nil) }),
            (.init(method: "POST", path: "/v1/hosts/{hostId}/unblock"), { try admin.send("POST", "/v1/hosts/\(id)/unblock", headers: auth, body: nil) }),
            (.init(method: "DELETE", path: "/v1/hosts/{hostId}"), { try admin.send("DELETE", "/v1/hosts/\(id)", headers: auth, body: nil) }),
        ]
        XCTAssertEqual(Set(calls.map(\.0)).subtracting(documented.keys), [], "called but not documented")
        XCTAssertEqual(Set(documented.keys).subtracting(calls.map(\.0)), [], "documented but never exercised")

        for (op, call) in calls {
            let response = try call()
            let status = "\(response.status)"
            guard let doc = documented[op]?.statuses[status] else {
                XCTFail("\(op.method) \(op.path) answered \(status), not documented: \(String(decoding: response.body.prefix(300), as: UTF8.self))")
                continue
            }
            // JSON bodies: the schema's required properties are present (arrays: in every element).
            guard response.header("Content-Type") == "application/json",
                  let schema = child(child(child(doc, "content"), "application/json"), "schema") else { continue }
            let body = try JSONSerialization.jsonObject(with: Data(response.body))
            var target = schema
            var objects: [[String: Any]] = [body as? [String: Any] ?? [:]]
            if let items = child(schema, "items") { target = items; objects = (body as? [[String: Any]]) ?? [] }
            guard let ref = child(target, "$ref")?.scalar, let name = ref.split(separator: "/").last,
                  case let .sequence(required)? = child(child(schemas, String(name)), "required")?.value else { continue }
            for object in objects {
                for key in required.compactMap(\.scalar) {
                    XCTAssertNotNil(object[key], "\(op.method) \(op.path) \(status): \(name).\(key) missing")
                }
            }
        }
    }
}
