import Foundation
import XCTest
import VouchCore
import VouchSPIFFE
import VouchTestSupport

/// The Workload API's messages against the classes unmodified SPIFFE clients use: py-spiffe's
/// generated workload_pb2 (PyPI, in a throwaway virtualenv, versions pinned). Every message is
/// built on both sides from one description (proto3 JSON, which Swift writes and Python reads
/// with json_format); Python parses Swift's bytes to a message equal to its own and
/// re-serializes them deterministically to the same bytes, and prints what it parsed as JSON;
/// Swift parses Python's bytes to its own values. The map keys (bundles, claims) are chosen so
/// none is a prefix of another: upb's deterministic order differs from plain byte order there.
final class SPIFFEWorkloadInteropTests: XCTestCase {
    static let packages = ["spiffe==0.3.2", "protobuf==7.36.2", "grpcio==1.85.3"]

    static func python() throws -> String {
        let venv = FileManager.default.temporaryDirectory.appendingPathComponent("vouch-spiffe-venv").path
        let python = venv + "/bin/python"
        if (try? TestEnv.run(python, ["-c", "import spiffe._proto.workload_pb2"]))?.status != 0 {
            let made = try TestEnv.run("/usr/bin/python3", ["-m", "venv", "--clear", venv])
            guard made.status == 0 else { throw TestFailure("python3 -m venv failed (make deps installs python3-venv): \(made.stderr)") }
            let pip = try TestEnv.run(venv + "/bin/pip", ["install", "-q", "--disable-pip-version-check"] + packages)
            guard pip.status == 0 else { throw TestFailure("py-spiffe could not be installed from PyPI: \(pip.stderr.suffix(300))") }
        }
        return python
    }

    static let script = #"""
    import json, sys
    from google.protobuf import json_format
    from spiffe._proto import workload_pb2

    d = sys.argv[1]
    parsed = {}
    for name, body in json.load(open(d + "/spec.json")).items():
        cls = getattr(workload_pb2, name)
        expected = json_format.ParseDict(body, cls())
        open(d + "/py-" + name + ".bin", "wb").write(expected.SerializeToString(deterministic=True))
        swift = open(d + "/swift-" + name + ".bin", "rb").read()
        got = cls()
        got.ParseFromString(swift)
        if got != expected:
            sys.exit(name + ": Swift's bytes parse to " + str(got) + ", expected " + str(expected))
        if got.SerializeToString(deterministic=True) != swift:
            sys.exit(name + ": protobuf writes these values differently: " + got.SerializeToString(deterministic=True).hex() + " vs " + swift.hex())
        parsed[name] = json_format.MessageToDict(got, preserving_proto_field_name=True)
    print(json.dumps(parsed))
    """#

    /// One message: its Swift value's bytes, its proto3 JSON description, and a check that bytes
    /// parse to the Swift value.
    struct Case {
        let name: String
        let bytes: [UInt8]
        let spec: JSONValue
        let parsesToValue: ([UInt8]) throws -> Bool

        init<M: ProtobufMessage>(_ message: M, _ spec: [String: JSONValue]) {
            name = "\(M.self)"
            bytes = message.protobuf
            self.spec = .object(spec)
            parsesToValue = { try M(protobuf: $0) == message }
        }
    }

    static func b64(_ bytes: [UInt8]) -> JSONValue { .string(Base64.encode(bytes)) }

    static let claims: JSONValue = .object([
        "sub": .string("spiffe://example.org/host/h1/agent/a"), "aud": .array([.string("relying-party"), .string("other")]),
        "exp": .number(1_700_000_600), "iat": .number(1_700_000_000), "ratio": .number(-0.125), "admin": .bool(false), "mfa": .bool(true),
        "none": .null, "unicode": .string("é 😀 \"q\" \\ /"),
        "nested": .object(["deep": .array([.object(["k": .array([.number(1), .string("x"), .null, .bool(true)])]), .array([]), .object([:])]),
                           "level": .object(["z": .object(["y": .string("bottom")])])]),
    ])

    static func cases() -> [Case] {
        // Certificate and key stand-ins: opaque to the wire format, long enough for 2- and 3-byte lengths.
        let leaf = (0..<1_500).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }, ca = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let key = (0..<138).map { UInt8(truncatingIfNeeded: $0 &* 3) }
        let svid = WorkloadAPI.X509SVID(spiffeID: "spiffe://example.org/host/h1/agent/a", x509SVID: leaf + ca, x509SVIDKey: key, bundle: ca, hint: "primary")
        let svidSpec: [String: JSONValue] = ["spiffe_id": .string(svid.spiffeID), "x509_svid": b64(svid.x509SVID), "x509_svid_key": b64(key),
                                             "bundle": b64(ca), "hint": .string("primary")]
        let bundles: [String: [UInt8]] = ["spiffe://example.org": ca, "spiffe://federated.example": [0x30, 0x00], "spiffe://zero.example": []]
        let bundlesSpec = JSONValue.object(bundles.mapValues(b64))
        let jwks = Array(#"{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"k1","use":"jwt-svid"}]}"#.utf8)
        return [
            Case(WorkloadAPI.X509SVIDRequest(), [:]),
            Case(WorkloadAPI.X509SVIDResponse(svids: [svid, WorkloadAPI.X509SVID(spiffeID: "spiffe://example.org/second")], crl: [[0x30, 0x01, 0x00], []],
                                              federatedBundles: bundles),
                 ["svids": .array([.object(svidSpec), .object(["spiffe_id": .string("spiffe://example.org/second")])]),
                  "crl": .array([b64([0x30, 0x01, 0x00]), .string("")]), "federated_bundles": bundlesSpec]),
            Case(WorkloadAPI.X509BundlesRequest(), [:]),
            Case(WorkloadAPI.X509BundlesResponse(crl: [[0x30, 0x00]], bundles: bundles), ["crl": .array([b64([0x30, 0x00])]), "bundles": bundlesSpec]),
            Case(WorkloadAPI.JWTSVIDRequest(audience: ["relying-party", "other"], spiffeID: "spiffe://example.org/w"),
                 ["audience": .array([.string("relying-party"), .string("other")]), "spiffe_id": .string("spiffe://example.org/w")]),
            Case(WorkloadAPI.JWTSVIDResponse(svids: [WorkloadAPI.JWTSVID(spiffeID: "spiffe://example.org/w", svid: "eyJh.eyJz.c2ln", hint: "h"),
                                                     WorkloadAPI.JWTSVID(spiffeID: "spiffe://example.org/v", svid: "a.b.c")]),
                 ["svids": .array([.object(["spiffe_id": .string("spiffe://example.org/w"), "svid": .string("eyJh.eyJz.c2ln"), "hint": .string("h")]),
                                   .object(["spiffe_id": .string("spiffe://example.org/v"), "svid": .string("a.b.c")])])]),
            Case(WorkloadAPI.JWTBundlesRequest(), [:]),
            Case(WorkloadAPI.JWTBundlesResponse(bundles: ["spiffe://example.org": jwks, "spiffe://federated.example": Array("{}".utf8)]),
                 ["bundles": .object(["spiffe://example.org": b64(jwks), "spiffe://federated.example": b64(Array("{}".utf8))])]),
            Case(WorkloadAPI.ValidateJWTSVIDRequest(audience: "relying-party", svid: "eyJh.eyJz.c2ln"),
                 ["audience": .string("relying-party"), "svid": .string("eyJh.eyJz.c2ln")]),
            Case(WorkloadAPI.ValidateJWTSVIDResponse(spiffeID: "spiffe://example.org/w", claims: claims),
                 ["spiffe_id": .string("spiffe://example.org/w"), "claims": claims]),
        ]
    }

    func testPySpiffesProtobufClassesAndVouchAgreeOnEveryMessage() throws {
        let python = try Self.python()
        let dir = try TestEnv.tempDir("vouch-spiffe-interop")
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases = Self.cases()
        XCTAssertEqual(cases.count, 10)
        for c in cases { try Data(c.bytes).write(to: dir.appendingPathComponent("swift-\(c.name).bin")) }
        try Data(JSONValue.object(Dictionary(uniqueKeysWithValues: cases.map { ($0.name, $0.spec) })).json).write(to: dir.appendingPathComponent("spec.json"))
        try Data(Self.script.utf8).write(to: dir.appendingPathComponent("check.py"))
        let r = try TestEnv.run(python, [dir.appendingPathComponent("check.py").path, dir.path])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        guard r.status == 0 else { return }

        // Python's encodings parse in Swift to the same values.
        for c in cases {
            let pythonBytes = [UInt8](try Data(contentsOf: dir.appendingPathComponent("py-\(c.name).bin")))
            XCTAssertTrue(try c.parsesToValue(pythonBytes), c.name)
        }
        // What Python parsed from Swift's bytes, printed as JSON: the claims are the same values
        // (Struct numbers are doubles; json.dumps writes 1700000000.0, which reads back equal).
        guard case .object(let parsed)? = try? JSONValue(json: Array(r.stdout.utf8)),
              case .object(let response)? = parsed["ValidateJWTSVIDResponse"] else { return XCTFail("Python printed \(r.stdout)") }
        XCTAssertEqual(response["claims"], Self.claims)
        XCTAssertEqual(response["spiffe_id"], .string("spiffe://example.org/w"))
        guard case .object(let x509)? = parsed["X509SVIDResponse"], case .array(let svids)? = x509["svids"], case .object(let first)? = svids.first else {
            return XCTFail("Python printed \(r.stdout)")
        }
        XCTAssertEqual(first["x509_svid_key"], Self.b64((0..<138).map { UInt8(truncatingIfNeeded: $0 &* 3) }))
    }
}
