import Foundation
import XCTest
import VouchAttestation
import VouchCore
import VouchPolicy
import VouchTestSupport

/// The Nitro fixtures' authenticity judged by someone else's code: cbor2 (CBOR) and cryptography
/// (X.509, ECDSA), from PyPI in a throwaway virtualenv on Debian's Python, with a checker written
/// here from the COSE (RFC 9052) and AWS Nitro rules: the COSE_Sign1 array (tag 18 optional),
/// unprotected header a map, protected header alg ES384, the payload's cabundle[0] equal to the pinned AWS root, each next
/// certificate and then the leaf directly issued by the one before, all valid at the check time,
/// and the ES384 signature (r ‖ s) over Sig_structure ["Signature1", protected, h'', payload]
/// encoded by cbor2. `NitroVerifier` (debug enclaves allowed, so only authenticity and freshness
/// count) must agree on every corpus document and on seeded changes of their bytes.
final class NitroInteropTests: XCTestCase {
    /// The versions checked to work here; pinned so a new release cannot change the verdict.
    static let packages = ["cbor2==6.3.0", "cryptography==50.0.2"]
    static let probe = "import cbor2, cryptography"

    static let checker = """
    import datetime, json, sys
    import cbor2
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    DER = serialization.Encoding.DER
    root = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())

    def judge(path, at):
        item = cbor2.loads(open(path, "rb").read())
        if isinstance(item, cbor2.CBORTag):
            if item.tag != 18:
                return "not COSE_Sign1"
            item = item.value
        protected, unprotected, payload, signature = item
        if not isinstance(unprotected, dict) or not isinstance(payload, bytes):
            return "not a COSE_Sign1 array"
        if cbor2.loads(protected).get(1) != -35:
            return "alg is not ES384"
        body = cbor2.loads(payload)
        bundle = [x509.load_der_x509_certificate(c) for c in body["cabundle"]]
        leaf = x509.load_der_x509_certificate(body["certificate"])
        if bundle[0].public_bytes(DER) != root.public_bytes(DER):
            return "cabundle[0] is not the AWS root"
        chain = bundle + [leaf]
        for issuer, cert in zip(chain, chain[1:]):
            cert.verify_directly_issued_by(issuer)
        for cert in chain:
            if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
                return "a certificate is not valid at the check time"
        if len(signature) != 96:
            return "signature is not 96 bytes"
        r, s = int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big")
        to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
        leaf.public_key().verify(encode_dss_signature(r, s), to_be_signed, ec.ECDSA(hashes.SHA384()))
        return None

    out = []
    for job in json.load(open(sys.argv[2])):
        at = datetime.datetime.fromtimestamp(job["at"], datetime.timezone.utc)
        try:
            reason = judge(job["path"], at)
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
        out.append({"authentic": reason is None, "reason": reason or ""})
    print(json.dumps(out))
    """

    struct Job: Encodable { var path: String; var at: Double }
    struct Verdict: Decodable { var authentic: Bool; var reason: String }

    func testPythonAndNitroVerifierAgreeOnTheCorpusAndItsMutations() throws {
        let work = try TestEnv.tempDir("vouch-nitro-interop")
        defer { try? FileManager.default.removeItem(at: work) }
        let python = try PythonVenv.python("vouch-nitro-interop-venv", packages: Self.packages, probe: Self.probe)
        try Self.checker.write(to: work.appendingPathComponent("check.py"), atomically: true, encoding: .utf8)

        // The corpus documents at their pinned times, and seeded changes of one byte each.
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("nitro/manifest.json"))) as! [String: Any]
        let seed = TestSeed()
        var rng = seed.generator
        var jobs: [Job] = [], documents: [(name: String, bytes: [UInt8], at: Date)] = []
        for sample in manifest["samples"] as! [[String: Any]] {
            let dir = sample["dir"] as! String
            let at = try XCTUnwrap(Date.parseRFC3339(String((sample["now"] as! String).split(separator: " ")[0])), dir)
            let bytes = [UInt8](try Data(contentsOf: try fixture("nitro/\(dir)/attestation_doc.cbor")))
            documents.append((dir, bytes, at))
            for i in 0..<12 {
                var changed = bytes
                let offset = Int.random(in: 0..<bytes.count, using: &rng)
                changed[offset] ^= UInt8.random(in: 1...255, using: &rng)
                documents.append(("\(dir) #\(i) offset \(offset)", changed, at))
            }
            // Checked an hour after the leaf's validity: refused by both.
            documents.append(("\(dir) 4 h later", bytes, at.addingTimeInterval(4 * 3600)))
        }
        for (i, d) in documents.enumerated() {
            let path = work.appendingPathComponent("doc-\(i).cbor")
            try Data(d.bytes).write(to: path)
            jobs.append(Job(path: path.path, at: d.at.timeIntervalSince1970))
        }
        let jobsFile = work.appendingPathComponent("jobs.json")
        try JSONEncoder().encode(jobs).write(to: jobsFile)
        let r = try TestEnv.run(python, [work.appendingPathComponent("check.py").path, try fixture("nitro/aws_nitro_enclaves_root_g1.pem").path, jobsFile.path])
        guard r.status == 0 else { throw TestFailure("the Python checker failed: \(r.stderr.suffix(800))") }
        let verdicts = try JSONDecoder().decode([Verdict].self, from: Data(r.stdout.utf8))
        XCTAssertEqual(verdicts.count, documents.count)

        var policy = NitroPolicy()
        policy.allowDebug = true
        policy.maxAge = 4 * 3600 + 600  // freshness is not what the other side judges; validity is
        let verifier = try NitroVerifier()
        var authentic = 0
        for (d, v) in zip(documents, verdicts) {
            let ours = verifier.verify(document: d.bytes, at: d.at, policy: policy)
            XCTAssertEqual(ours.isVerified, v.authentic, "\(seed) \(d.name): Python says \(v.authentic ? "authentic" : v.reason), NitroVerifier \(ours.violations.map(\.code))")
            if v.authentic { authentic += 1 }
        }
        XCTAssertEqual(authentic, 3, "the three corpus documents, unchanged, at their pinned times")
    }
}
