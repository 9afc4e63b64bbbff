import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto

/// `vouch check`: the gate for automated workflows. Exit 0 only if every requirement holds.
/// Checks, in order (all are run; every failure is reported):
/// 1. the agent certificate (from --cert, or the newest valid one for --spiffe-id) chains to the
///    broker's CA bundle and is within its validity period;
/// 2. it is not revoked: the CRL of its issuing CA, signature checked, does not list it;
/// 3. its host is trusted now: the host's EAR (fresh nonce, ES256 signature chaining to the same
///    bundle, nonce echoed) has ear.status affirming and state trusted;
/// 4. the host's last verdict is no older than --max-age (default 15m);
/// 5. --policy NAME: the EAR's appraisal policy is NAME;
/// 6. --model SHA256: the host's latest verified evidence names this model manifest.
func checkCommand(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: CLI.brokerOptions.union(["cert", "spiffe-id", "model", "policy", "max-age"]), flags: ["json"])
    guard (args["cert"] == nil) != (args["spiffe-id"] == nil) else { throw VouchError(.badRequest, "give exactly one of --cert FILE and --spiffe-id ID") }
    if let m = args["model"], m.range(of: "^[0-9a-f]{64}$", options: .regularExpression) == nil {
        throw VouchError(.badRequest, "--model takes a SHA-256 manifest digest (64 lowercase hex digits)")
    }
    let maxAge = try parseDuration(args["max-age"] ?? "15m", field: "--max-age")
    let (client, _) = try CLI.broker(args, admin: true)
    var failures: [String] = []
    var facts: [String: String] = [:]
    let now = Date()

    // 1
    let certPEM: String
    if let file = args["cert"] {
        certPEM = try Files.readString(file)
    } else {
        let id = args["spiffe-id"]!
        let query = "spiffeId=\(id.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")&state=valid"
        let found = try client.call("GET", "/v1/certificates?\(query)", as: [CertificateStatus].self)
        guard let newest = found.max(by: { $0.notBefore < $1.notBefore }) else {
            return report(["no valid certificate is issued to \(id)"], facts, json: args.has("json"))
        }
        certPEM = String(decoding: try client.raw("GET", "/v1/certificates/\(newest.serial)?format=pem").body, as: UTF8.self)
    }
    let cert = try Certificate(pem: certPEM)
    facts["serial"] = cert.serialHex
    facts["spiffeId"] = cert.uriSANs.first ?? ""
    let bundle = try Certificate.chain(pem: String(decoding: try client.raw("GET", "/v1/bundle").body, as: UTF8.self))
    let issuing = try Certificate.chain(pem: String(decoding: try client.raw("GET", "/v1/ca").body, as: UTF8.self))
    let anchors = bundle.filter(\.isSelfSigned)
    if let e = cert.verify(anchors: anchors, intermediates: issuing.filter { !$0.isSelfSigned } + bundle.filter { !$0.isSelfSigned }, at: now) {
        failures.append("certificate does not verify against the broker's CA bundle: \(e.message)")
    }
    // 2
    let crlResponse = try client.raw("GET", "/v1/crl/\(cert.authorityKeyID)")
    if crlResponse.status == 200, let crl = try? CRL(der: crlResponse.body),
       let issuer = (issuing + bundle).first(where: { $0.subjectKeyID == cert.authorityKeyID }), crl.isSigned(by: issuer) {
        if crl.revokedSerials.contains(where: { $0.lowercased() == cert.serialHex }) { failures.append("certificate \(cert.serialHex) is revoked") }
    } else {
        failures.append("no CRL signed by the certificate's issuer could be checked (HTTP \(crlResponse.status))")
    }
    // 3-6
    guard let ext = cert.extensionValue(oid: AttestationExtension.oid).flatMap({ try? AttestationExtension(der: $0) }) else {
        failures.append("certificate carries no Vouch attestation extension (not an agent certificate)")
        return report(failures, facts, json: args.has("json"))
    }
    facts["hostId"] = ext.hostId
    let nonce = JWSSigner.base64URL(try Crypto.randomBytes(16))
    let token = String(decoding: try client.raw("GET", "/v1/hosts/\(ext.hostId)/ear?nonce=\(nonce)").body, as: UTF8.self)
    let payload: [String: Any]
    do {
        let bytes = try JWSSigner.verify(token, anchors: anchors, at: now)
        payload = (try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]) ?? [:]
    } catch {
        failures.append("the host's attestation result (EAR) does not verify: \(error)")
        return report(failures, facts, json: args.has("json"))
    }
    let tpm = ((payload["submods"] as? [String: Any])?["tpm"] as? [String: Any]) ?? [:]
    let host = (payload["vouch.host"] as? [String: Any]) ?? [:]
    let status = tpm["ear.status"] as? String ?? "none"
    facts["earStatus"] = status
    facts["hostState"] = host["state"] as? String ?? "unknown"
    if payload["eat_nonce"] as? String != nonce { failures.append("the EAR does not echo our nonce (replayed or stale)") }
    if status != "affirming" || host["state"] as? String != "trusted" {
        failures.append("host \(ext.hostId) is not trusted now: ear.status \(status), state \(host["state"] as? String ?? "unknown")")
    }
    if let verdict = host["lastVerdictAt"] as? Int {
        let age = now.timeIntervalSince1970 - Double(verdict)
        facts["verdictAge"] = "\(Int(age))s"
        if age > maxAge { failures.append("the host's last verdict is \(Int(age))s old (max-age \(Int(maxAge))s)") }
    } else {
        failures.append("the host has no verdict yet")
    }
    let policyID = tpm["ear.appraisal-policy-id"] as? String ?? ""
    facts["policy"] = policyID
    if let p = args["policy"], !policyID.hasPrefix("vouch:policy:\(p):") { failures.append("appraised under \(policyID.isEmpty ? "no policy" : policyID), not policy \(p)") }
    if let m = args["model"] {
        let model = ((host["evidence"] as? [String: Any])?["model"] as? [String: Any])?["manifestDigest"] as? String
        facts["model"] = model ?? "none"
        if model != m { failures.append("the host's attested model is \(model ?? "not measured"), not \(m)") }
    }
    return report(failures, facts, json: args.has("json"))
}

private func report(_ failures: [String], _ facts: [String: String], json: Bool) -> Int32 {
    if json {
        var out: [String: Any] = ["ok": failures.isEmpty, "failures": failures]
        for (k, v) in facts { out[k] = v }
        if let data = try? JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]) {
            print(String(decoding: data, as: UTF8.self))
        }
    } else if failures.isEmpty {
        print("ok: \(facts["spiffeId"] ?? "") (serial \(facts["serial"] ?? "")) on host \(facts["hostId"] ?? "") — trusted, \(facts["policy"] ?? "")")
    } else {
        for f in failures { CLI.error("check failed: \(f)") }
    }
    return failures.isEmpty ? 0 : 1
}
