import Foundation
import XCTest
import VouchAPI
import VouchAttestation
import VouchAttesterKit
import VouchCore
import VouchCrypto
import VouchHTTPClient

/// What relying parties consume, checked with their own tools: the attestation extension, OCSP
/// (openssl ocsp), the CRL as PEM with caching headers, and the trust bundle.
final class RelyingPartyTests: XCTestCase {
    func testExtensionOCSPCRLAndBundle() throws {
        let tpm = try SwTPM()
        let broker = try BrokerHarness(trusting: tpm)
        let weights = tpm.dir.appendingPathComponent("w.bin")
        try Data("weights".utf8).write(to: weights)
        let log = tpm.dir.appendingPathComponent("model.json").path
        let model = try ModelMeasurement.measure(paths: [weights.path], tcti: tpm.tcti, logPath: log)
        let attester = Attester(config: AttesterConfig(tcti: tpm.tcti, hostname: "gpu", modelLogPath: log),
                                broker: HTTPClient(.https(baseURL: broker.url, caFile: broker.brokerCAFile)))
        try attester.register()
        let key = try PrivateKey.generate()
        let issued = try attester.enroll(AgentEnrollRequest(agentName: "rp-agent", csr: try CSR.create(key: key, commonName: "rp-agent").pem))
        let d = broker.dir
        let certPath = d.appendingPathComponent("agent.pem").path
        try issued.certificate.write(toFile: certPath, atomically: true, encoding: .utf8)

        // The profile as OpenSSL sees it.
        let text = try TestEnv.run("openssl", ["x509", "-in", certPath, "-noout", "-text"]).stdout
        // By default certificates name the plain-HTTP publication listener (HTTPS port + 1).
        XCTAssertTrue(text.contains("OCSP - URI:http://127.0.0.1:\(broker.port + 1)/v1/ocsp"), text)
        XCTAssertTrue(text.contains("1.3.6.1.5.5.7.1.35"), text)   // id-pe-cmw (RFC 9999), holding the EAR

        // The attestation it carries, decoded by vouch cert inspect.
        let inspect = try broker.vouch(["cert", "inspect", certPath, "--json"])
        XCTAssertEqual(inspect.status, 0, inspect.stdout + inspect.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as! [String: Any]
        let a = try XCTUnwrap(json["attestation"] as? [String: Any])
        XCTAssertEqual(a["hostId"] as? String, attester.hostID)
        XCTAssertEqual(a["policyName"] as? String, "development")
        XCTAssertEqual(a["policyVersion"] as? Int, 1)
        XCTAssertEqual(a["modelManifests"] as? [String], [model.manifestDigest])
        XCTAssertEqual(a["evidenceType"] as? String, "tpm2-quote")
        XCTAssertEqual((a["pcrDigest"] as? String)?.count, 64)
        let policySHA = try broker.status().policies.policies.first?.sha256
        XCTAssertEqual(a["policyDigest"] as? String, policySHA)
        XCTAssertEqual(json["attestationVerified"] as? Bool, false)

        // With --ca, the EAR's signature must verify against the broker CA (not the issuing CA).
        let verified = try broker.vouch(["cert", "inspect", certPath, "--ca", broker.brokerCAFile, "--json"])
        XCTAssertEqual(verified.status, 0, verified.stdout + verified.stderr)
        let vj = try JSONSerialization.jsonObject(with: Data(verified.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(vj["attestationVerified"] as? Bool, true)
        XCTAssertEqual((vj["attestation"] as? [String: Any])?["hostId"] as? String, attester.hostID)
        let wrongCA = try broker.vouch(["cert", "inspect", certPath, "--ca", broker.agentCAFile, "--json"])
        XCTAssertEqual(wrongCA.status, 1, wrongCA.stdout + wrongCA.stderr)
        let wj = try JSONSerialization.jsonObject(with: Data(wrongCA.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(wj["attestationErrorCode"] as? String, "signature_invalid")
        XCTAssertEqual(wj["attestationVerified"] as? Bool, false)
        XCTAssertEqual((vj["attestation"] as? [String: Any])?["subjectSpiffeId"] as? String, issued.spiffeId)
        // With --issuer too, the certificate's own chain to the issuing CA.
        let both = try broker.vouch(["cert", "inspect", certPath, "--ca", broker.brokerCAFile, "--issuer", broker.agentCAFile, "--json"])
        XCTAssertEqual(both.status, 0, both.stdout + both.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(both.stdout.utf8)) as! [String: Any])["chainVerified"] as? Bool, true)

        // The extension copied into certificates someone else made: with another key it is refused
        // (the EAR names the agent's key); with the agent's public key it passes the EAR checks but
        // not the chain (only the issuing CA's signature says the certificate is the agent's).
        let issuedCert = try Certificate(pem: issued.certificate)
        let copied = try XCTUnwrap(issuedCert.extensionValue(oid: AttestationExtension.oid))
        let forger = try CertificateAuthority.create(commonName: "forger", key: try PrivateKey.generate(.p256), notBefore: Date().addingTimeInterval(-60),
                                                     notAfter: Date().addingTimeInterval(3600))
        for (name, publicKey, code, chain) in [("other-key", try PrivateKey.generate().publicKey, "attestation_subject_mismatch", false),
                                               ("same-key", try key.publicKey, nil, false)] as [(String, PublicKey, String?, Bool)] {
            let forged = try forger.issue(publicKey: publicKey, profile: LeafProfile(uriSANs: [issued.spiffeId], notBefore: Date().addingTimeInterval(-60),
                                                                                      notAfter: Date().addingTimeInterval(3600), usage: .agent,
                                                                                      extensions: [(AttestationExtension.oid, copied)]), serial: nil)
            let path = d.appendingPathComponent("\(name).pem").path
            try forged.pem.write(toFile: path, atomically: true, encoding: .utf8)
            let r = try broker.vouch(["cert", "inspect", path, "--ca", broker.brokerCAFile, "--issuer", broker.agentCAFile, "--json"])
            XCTAssertEqual(r.status, 1, name)
            let j = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
            XCTAssertEqual(j["attestationErrorCode"] as? String, code, name)
            XCTAssertEqual(j["chainVerified"] as? Bool, chain, name)
        }

        // A CSR whose key is a compressed EC point: the certificate carries the uncompressed form,
        // the form the EAR's vouch.subject digest is over, so hashing the certificate's
        // SubjectPublicKeyInfo matches it.
        let compressedKey = d.appendingPathComponent("compressed.key").path, compressedCSR = d.appendingPathComponent("compressed.csr").path
        XCTAssertEqual(try TestEnv.run("openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", compressedKey + ".plain"]).status, 0)
        XCTAssertEqual(try TestEnv.run("openssl", ["ec", "-in", compressedKey + ".plain", "-conv_form", "compressed", "-out", compressedKey]).status, 0)
        XCTAssertEqual(try TestEnv.run("openssl", ["req", "-new", "-key", compressedKey, "-subj", "/CN=rp-compressed", "-out", compressedCSR]).status, 0)
        let csrText = try TestEnv.run("openssl", ["req", "-in", compressedCSR, "-noout", "-text"]).stdout
        XCTAssertTrue(csrText.contains("pub:\n                    02") || csrText.contains("pub:\n                    03"), "the CSR holds a compressed point: \(csrText)")
        let compressed = try attester.enroll(AgentEnrollRequest(agentName: "rp-compressed", csr: try String(contentsOfFile: compressedCSR, encoding: .utf8)))
        let compressedPath = d.appendingPathComponent("compressed.pem").path
        try compressed.certificate.write(toFile: compressedPath, atomically: true, encoding: .utf8)
        let certText = try TestEnv.run("openssl", ["x509", "-in", compressedPath, "-noout", "-text"]).stdout
        XCTAssertTrue(certText.contains("pub:\n                    04"), "the certificate holds the uncompressed point: \(certText)")
        let spki = try TestEnv.run("sh", ["-c", "openssl x509 -in \(compressedPath) -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum"]).stdout.prefix(64)
        let ci = try broker.vouch(["cert", "inspect", compressedPath, "--ca", broker.brokerCAFile, "--issuer", broker.agentCAFile, "--json"])
        XCTAssertEqual(ci.status, 0, ci.stdout + ci.stderr)
        let cj = try JSONSerialization.jsonObject(with: Data(ci.stdout.utf8)) as! [String: Any]
        XCTAssertEqual((cj["attestation"] as? [String: Any])?["subjectSpkiSha256"] as? String, String(spki))

        // OCSP, as openssl ocsp builds and verifies it (nonce included), POST then GET.
        let req = d.appendingPathComponent("req.der").path, resp = d.appendingPathComponent("resp.der").path
        func ocsp(cert: String, get: Bool = false) throws -> String {
            XCTAssertEqual(try TestEnv.run("openssl", ["ocsp", "-issuer", broker.agentCAFile, "-cert", cert, "-reqout", req]).status, 0)
            let reqBytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: req)))
            let answer = get
                ? try broker.client().transport.send("GET", "/v1/ocsp/" + (Base64.encode(reqBytes).addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""), headers: [:], body: nil)
                : try broker.client().transport.send("POST", "/v1/ocsp", headers: ["Content-Type": "application/ocsp-request"], body: reqBytes)
            XCTAssertEqual(answer.status, 200)
            XCTAssertEqual(answer.header("Content-Type"), "application/ocsp-response")
            try Data(answer.body).write(to: URL(fileURLWithPath: resp))
            // With -reqin alone, openssl checks the signature and that our nonce echoes the request's;
            // (given -cert too it would build a fresh request with a new nonce). Then read the status.
            let verified = try TestEnv.run("openssl", ["ocsp", "-reqin", req, "-respin", resp, "-CAfile", broker.agentCAFile])
            XCTAssertTrue((verified.stdout + verified.stderr).contains("Response verify OK"), verified.stdout + verified.stderr)
            let r = try TestEnv.run("openssl", ["ocsp", "-issuer", broker.agentCAFile, "-cert", cert, "-respin", resp, "-CAfile", broker.agentCAFile, "-no_nonce"])
            return verified.stdout + verified.stderr + r.stdout + r.stderr
        }
        var out = try ocsp(cert: certPath)
        XCTAssertTrue(out.contains("Response verify OK") && out.contains("\(certPath): good"), out)
        XCTAssertTrue(try ocsp(cert: certPath, get: true).contains(": good"))

        XCTAssertEqual(try broker.vouch(["revoke", "--serial", issued.serial, "--reason", "keyCompromise"]).status, 0)
        out = try ocsp(cert: certPath)
        XCTAssertTrue(out.contains("Response verify OK") && out.contains(": revoked") && out.contains("Reason: keyCompromise"), out)

        // A certificate signed with this CA's key but never issued by the broker: unknown.
        let strayPath = d.appendingPathComponent("stray.pem").path, strayKey = d.appendingPathComponent("stray.key").path
        XCTAssertEqual(try TestEnv.run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", strayKey,
                                                   "-subj", "/CN=stray", "-days", "1", "-CA", broker.agentCAFile,
                                                   "-CAkey", broker.dataDir.appendingPathComponent("ca/ca.key").path, "-out", strayPath]).status, 0)
        XCTAssertTrue(try ocsp(cert: strayPath).contains(": unknown"))

        // Garbage gets an OCSP malformedRequest answer, not an HTTP error or a crash.
        let bad = try broker.client().transport.send("POST", "/v1/ocsp", headers: [:], body: Array("not der".utf8))
        try Data(bad.body).write(to: URL(fileURLWithPath: resp))
        let badText = try TestEnv.run("openssl", ["ocsp", "-respin", resp, "-resp_text", "-noverify"])
        XCTAssertTrue((badText.stdout + badText.stderr).lowercased().contains("malformedrequest"), badText.stdout + badText.stderr)

        // The CRL as PEM, with validators a cache can use.
        let crl = try broker.client().raw("GET", "/v1/crl.pem")
        XCTAssertEqual(crl.header("Content-Type"), "application/x-pem-file")
        let crlPath = d.appendingPathComponent("crl.pem").path
        try Data(crl.body).write(to: URL(fileURLWithPath: crlPath))
        XCTAssertTrue(try TestEnv.run("openssl", ["crl", "-in", crlPath, "-noout", "-text"]).stdout.contains(issued.serial.uppercased()))
        let etag = try XCTUnwrap(crl.header("ETag"))
        XCTAssertNotNil(crl.header("Last-Modified"))
        let again = try broker.client().transport.send("GET", "/v1/crl", headers: ["If-None-Match": etag.replacingOccurrences(of: "-pem", with: "")], body: nil)
        XCTAssertEqual(again.status, 304)

        // The trust bundle: PEM, and a SPIFFE bundle whose x5c is the CA.
        let bundle = try broker.client().raw("GET", "/v1/bundle")
        XCTAssertEqual(String(decoding: bundle.body, as: UTF8.self), try String(contentsOfFile: broker.agentCAFile, encoding: .utf8))
        let spiffe = try JSONSerialization.jsonObject(with: Data(try broker.client().raw("GET", "/v1/bundle?format=spiffe").body)) as! [String: Any]
        let jwk = try XCTUnwrap((spiffe["keys"] as? [[String: Any]])?.first)
        XCTAssertEqual(jwk["use"] as? String, "x509-svid")
        XCTAssertEqual(jwk["crv"] as? String, "P-256")
        XCTAssertEqual((jwk["x5c"] as? [String])?.first, Base64.encode(try Certificate(pem: String(contentsOfFile: broker.agentCAFile, encoding: .utf8)).der))
    }
}
