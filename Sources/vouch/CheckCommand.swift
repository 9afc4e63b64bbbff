import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchRuntime

/// `vouch check`: the gate for automated workflows. Exit 0 only if every requirement holds.
/// Checks, in order (all are run; every failure is reported):
/// 1. the agent certificate (from --cert, or the newest valid one for --spiffe-id) chains to the
///    broker's CA bundle, is within its validity period (expired and not-yet-valid are their own
///    failures, not a chain failure), and names a SPIFFE ID;
/// 2. it is not revoked: the CRL of its issuing CA (fetched from the broker, or --crl FILE) is
///    signed by that CA, current (thisUpdate ≤ now < nextUpdate, so an old CRL cannot be
///    replayed) and does not list it, nor does the broker's record of the serial say revoked (a
///    CRL drops certificates once they expire: a revoked and expired one is reported as both);
/// 3. its host is trusted now: the host's EAR (fresh nonce) is an ES256 token signed by the
///    broker itself — chaining to the broker CA (--ca), never to the CA that certifies agents, and
///    naming `spiffe://TRUST-DOMAIN/vouchd`; or, with --jwks, signed by the key its `kid` names in
///    the broker's key set (GET /v1/ear/jwks, over TLS verified with --ca) — that echoes the
///    nonce, with ear.status affirming in every submodule (the host's TPM, or its CPU TEE:
///    `sev-snp`, `tdx`) and state trusted — a simulated host (software AK or software TEE) is
///    trusted with ear.status warning, which passes only with --allow-simulated;
/// 4. the host's last verdict is no older than --max-age (default 15m);
/// 5. --policy NAME: the EAR's appraisal policy is NAME;
/// 6. --model SHA256: the host's latest verified evidence names this model manifest.
/// Checks 3-6 read the EAR, so when it does not verify they are reported as unverifiable. The facts
/// reported include a CPU TEE host's claims (`tee`: kind, measurement and its policy name, TCB,
/// signer, debug) from the EAR.
func checkCommand(_ argv: [String]) throws -> Int32 {
    let args = try Arguments(argv, options: CLI.brokerOptions.union(["cert", "spiffe-id", "model", "policy", "max-age", "crl"]), flags: ["json", "jwks", "allow-simulated"])
    guard (args["cert"] == nil) != (args["spiffe-id"] == nil) else { throw VouchError(.usage, "give exactly one of --cert FILE and --spiffe-id ID") }
    if let m = args["model"], m.range(of: "^[0-9a-f]{64}$", options: .regularExpression) == nil {
        throw VouchError(.usage, "--model takes a SHA-256 manifest digest (64 lowercase hex digits)")
    }
    let maxAge = try CLI.duration(args, "max-age", default: "15m")
    let (client, brokerCAFile) = try CLI.broker(args, admin: true)
    let brokerAnchors = try Certificate.chain(pem: Files.readString(brokerCAFile)).filter(\.isSelfSigned)
    let givenCRL = try args["crl"].map { try Files.read($0) }
    var failures: [CheckFailure] = []
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
            return report([.init("no_valid_certificate", "no valid certificate is issued to \(id)")], facts, json: args.has("json"))
        }
        certPEM = String(decoding: try client.raw("GET", "/v1/certificates/\(newest.serial)?format=pem").body, as: UTF8.self)
    }
    let cert = try Certificate(pem: certPEM)
    facts["serial"] = cert.serialHex
    let spiffeID = cert.uriSANs.count == 1 && cert.uriSANs[0].hasPrefix("spiffe://") ? cert.uriSANs[0] : nil
    facts["spiffeId"] = spiffeID ?? ""
    let bundle = try Certificate.chain(pem: String(decoding: try client.raw("GET", "/v1/bundle").body, as: UTF8.self))
    let issuing = try Certificate.chain(pem: String(decoding: try client.raw("GET", "/v1/ca").body, as: UTF8.self))
    let anchors = bundle.filter(\.isSelfSigned)
    // The chain is checked at a moment the certificate is valid (OpenSSL counts notAfter itself
    // as expired); its validity period separately.
    let within = min(max(now, cert.notBefore.addingTimeInterval(1)), cert.notAfter.addingTimeInterval(-1))
    if let e = cert.verify(anchors: anchors, intermediates: issuing.filter { !$0.isSelfSigned } + bundle.filter { !$0.isSelfSigned }, at: within) {
        failures.append(.init("certificate_invalid", "certificate does not verify against the broker's CA bundle: \(e.message)"))
    }
    if now >= cert.notAfter { failures.append(.init("certificate_expired", "certificate expired at \(cert.notAfter.iso8601)")) }
    if cert.notBefore > now.addingTimeInterval(CLI.clockSkew) {
        failures.append(.init("certificate_not_yet_valid", "certificate is not valid until \(cert.notBefore.iso8601)"))
    }
    if spiffeID == nil { failures.append(.init("not_agent_certificate", "certificate names no single SPIFFE ID (not an agent certificate)")) }
    // 2
    let crlBytes: [UInt8]?
    if let givenCRL { crlBytes = givenCRL } else {
        let r = try client.raw("GET", "/v1/crl/\(cert.authorityKeyID)")
        crlBytes = r.status == 200 ? r.body : nil
        if r.status != 200 { failures.append(.init("crl_unavailable", "no CRL for the certificate's issuer (HTTP \(r.status))")) }
    }
    if let crlBytes {
        let issuer = (issuing + bundle).first(where: { $0.subjectKeyID == cert.authorityKeyID })
        if let crl = try? CRL(der: crlBytes), let issuer, crl.isSigned(by: issuer) {
            facts["crlNumber"] = "\(crl.number ?? 0)"
            if crl.thisUpdate > now.addingTimeInterval(CLI.clockSkew) { failures.append(.init("crl_not_yet_valid", "the CRL is not valid yet (thisUpdate \(crl.thisUpdate.iso8601))")) }
            if now >= crl.nextUpdate { failures.append(.init("crl_stale", "the CRL is stale (nextUpdate \(crl.nextUpdate.iso8601) has passed): fetch a current one")) }
            if crl.revokedSerials.contains(where: { $0.lowercased() == cert.serialHex }) { failures.append(.init("certificate_revoked", "certificate \(cert.serialHex) is revoked")) }
        } else {
            failures.append(.init("crl_invalid", "the CRL is not a CRL signed by the certificate's issuer"))
        }
    }
    if !failures.contains(where: { $0.code == "certificate_revoked" }), let record = try? client.call("GET", "/v1/certificates/\(cert.serialHex)", as: CertificateStatus.self),
       record.state == .revoked {
        failures.append(.init("certificate_revoked", "certificate \(cert.serialHex) is revoked (the broker's record\(record.revokedAt.map { ", since \($0)" } ?? ""))"))
    }
    // 3-6
    guard let ext = cert.extensionValue(oid: AttestationExtension.oid).flatMap({ try? AttestationExtension(extensionValue: $0) }), let spiffeID else {
        failures.append(.init("not_agent_certificate", "certificate carries no Vouch attestation (CMW extension with an EAR; not an agent certificate)"))
        return report(failures, facts, json: args.has("json"))
    }
    facts["hostId"] = ext.hostId
    let trustDomain = spiffeID.dropFirst("spiffe://".count).prefix { $0 != "/" }
    let brokerID = "spiffe://\(trustDomain)/vouchd"
    let nonce = JWSSigner.base64URL(try Crypto.randomBytes(16))
    let token = String(decoding: try client.raw("GET", "/v1/hosts/\(ext.hostId)/ear?nonce=\(nonce)").body, as: UTF8.self)
    let payload: [String: Any]
    do {
        let bytes = args.has("jwks")
            ? try JWSSigner.verify(token, keySet: try client.call("GET", "/v1/ear/jwks", as: JWKSet.self))
            : try JWSSigner.verify(token, anchors: brokerAnchors, signer: brokerID, at: now)
        payload = (try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any]) ?? [:]
    } catch let e as VouchError {
        failures.append(.init("ear_invalid", "the host's attestation result (EAR) is not signed by the broker \(brokerID): \(e.code.rawValue): \(e.message)"))
        failures.append(.init("host_unverified", "host trust, verdict age, policy and model cannot be checked without a verified EAR"))
        return report(failures, facts, json: args.has("json"))
    }
    // One submodule per device (the TPM, or the CPU TEE); each must affirm.
    let submods = ((payload["submods"] as? [String: Any]) ?? [:]).compactMapValues { $0 as? [String: Any] }
    let statuses = submods.keys.sorted().map { submods[$0]?["ear.status"] as? String ?? "none" }
    let status = statuses.isEmpty ? "none" : statuses.allSatisfy({ $0 == statuses[0] }) ? statuses[0] : statuses.first { $0 != "affirming" }!
    let host = (payload["vouch.host"] as? [String: Any]) ?? [:]
    facts["earStatus"] = status
    facts["devices"] = submods.keys.sorted().joined(separator: ",")
    facts["hostState"] = host["state"] as? String ?? "unknown"
    let simulated = host["simulated"] as? Bool == true
    if simulated { facts["simulated"] = "true" }
    if let tee = (host["evidence"] as? [String: Any])?["tee"] as? [String: Any] {
        facts["tee"] = teeSummary(tee)
    }
    if host["hostId"] as? String != ext.hostId {
        failures.append(.init("ear_host_mismatch", "the EAR is about another host than the certificate's (\(ext.hostId))"))
    }
    if payload["vouch.kind"] as? String != AttestationExtension.hostStatusKind {
        failures.append(.init("ear_kind_mismatch", "the EAR is not a host's current status (vouch.kind \(AttestationExtension.hostStatusKind))"))
    }
    if payload["eat_nonce"] as? String != nonce { failures.append(.init("ear_nonce_mismatch", "the EAR does not echo our nonce (replayed or stale)")) }
    if host["state"] as? String == "trusted" && simulated && status == "warning" {
        if !args.has("allow-simulated") {
            failures.append(.init("host_simulated", "host \(ext.hostId) is trusted but simulated (software AK or software TEE: no hardware behind it); --allow-simulated accepts it"))
        }
    } else if status != "affirming" || host["state"] as? String != "trusted" {
        failures.append(.init("host_not_trusted", "host \(ext.hostId) is not trusted now: ear.status \(status), state \(host["state"] as? String ?? "unknown")"))
    }
    if let verdict = host["lastVerdictAt"] as? Int {
        let age = now.timeIntervalSince1970 - Double(verdict)
        facts["verdictAge"] = "\(Int(age))s"
        if age > maxAge { failures.append(.init("verdict_stale", "the host's last verdict is \(Int(age))s old (max-age \(Int(maxAge))s)")) }
    } else {
        failures.append(.init("no_verdict", "the host has no verdict yet"))
    }
    let policyID = submods.keys.sorted().compactMap { submods[$0]?["ear.appraisal-policy-id"] as? String }.first ?? ""
    facts["policy"] = policyID
    if let p = args["policy"], !policyID.hasPrefix("vouch:policy:\(p):") { failures.append(.init("policy_mismatch", "appraised under \(policyID.isEmpty ? "no policy" : policyID), not policy \(p)")) }
    if let m = args["model"] {
        let model = ((host["evidence"] as? [String: Any])?["model"] as? [String: Any])?["manifestDigest"] as? String
        facts["model"] = model ?? "none"
        if model != m { failures.append(.init("model_mismatch", "the host's attested model is \(model ?? "not measured"), not \(m)")) }
    }
    return report(failures, facts, json: args.has("json"))
}

/// A CPU TEE host's claims in one line: `sev-snp measurement HEX (NAME) tcb HEX signer vcek debug
/// false` (TDX adds its TCB status).
func teeSummary(_ tee: [String: Any]) -> String {
    var parts = [tee["kind"] as? String ?? "tee", "measurement", tee["measurement"] as? String ?? "?"]
    if let name = tee["measurementName"] as? String { parts.append("(\(name))") }
    parts += ["tcb", tee["tcb"] as? String ?? "?"]
    if let status = tee["tcbStatus"] as? String { parts.append(status) }
    parts += ["signer", tee["signer"] as? String ?? "?", "debug", "\(tee["debug"] as? Bool ?? false)"]
    if tee["simulated"] as? Bool == true { parts.append("SIMULATED") }
    return parts.joined(separator: " ")
}

/// One failed requirement: a stable code (for scripts and tests) and a sentence (for people).
struct CheckFailure {
    let code: String
    let message: String
    init(_ code: String, _ message: String) { self.code = code; self.message = message }
}

private func report(_ failures: [CheckFailure], _ facts: [String: String], json: Bool) -> Int32 {
    if json {
        var out: [String: Any] = ["ok": failures.isEmpty, "failures": failures.map { ["code": $0.code, "message": $0.message] }]
        for (k, v) in facts { out[k] = v }
        if let data = try? JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]) {
            print(String(decoding: data, as: UTF8.self))
        }
    } else if failures.isEmpty {
        print("ok: \(facts["spiffeId"] ?? "") (serial \(facts["serial"] ?? "")) on host \(facts["hostId"] ?? "") — trusted\(facts["simulated"] != nil ? " (SIMULATED)" : ""), \(facts["policy"] ?? "")")
        if let tee = facts["tee"] { print("  \(tee)") }
    } else {
        for f in failures { CLI.error("check failed: \(f.code): \(f.message)") }
    }
    return failures.isEmpty ? 0 : 1
}
