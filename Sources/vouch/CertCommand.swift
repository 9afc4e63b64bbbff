import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog

/// `vouch cert inspect FILE [--ca FILE] [--issuer FILE] [--json]`: the certificate's identity and
/// the attestation it carries (the EAR in its CMW extension). With `--ca` (the broker CA), the EAR
/// must verify: signed by `spiffe://TRUST-DOMAIN/vouchd` of the certificate's trust domain,
/// chaining to that CA now, and bound to this certificate (its key and SPIFFE ID). With
/// `--issuer` (the issuing CA bundle, `GET /v1/bundle`), the certificate itself must chain to it now.
/// Without them the claims are shown unchecked. Exit 1 when a check that was asked for fails.
func certCommand(_ argv: [String]) throws -> Int32 {
    guard argv.first == "inspect" else { throw VouchError(.usage, "give a subcommand: inspect FILE [--ca FILE] [--issuer FILE] [--json]") }
    let args = try Arguments(Array(argv.dropFirst()), options: ["ca", "issuer"], flags: ["json"], positional: 1)
    guard let path = args.positional.first else { throw VouchError(.usage, "cert inspect needs a FILE") }
    guard let data = FileManager.default.contents(atPath: path) else {
        CLI.error("cert inspect: cannot read \(path)")
        return 2
    }
    let bytes = [UInt8](data)
    guard let cert = bytes.starts(with: Array("-----BEGIN".utf8)) ? try? Certificate(pem: String(decoding: bytes, as: UTF8.self))
                                                                  : try? Certificate(der: bytes) else {
        CLI.error("cert inspect: \(path) is not a PEM or DER certificate")
        return 2
    }
    var anchors: [Certificate]?
    if let caFile = args["ca"] {
        guard let pem = FileManager.default.contents(atPath: caFile), let chain = try? Certificate.chain(pem: String(decoding: pem, as: UTF8.self)),
              !chain.filter(\.isSelfSigned).isEmpty else {
            CLI.error("cert inspect: \(caFile) holds no self-signed CA certificate (--ca is the broker CA, broker-ca/ca.pem)")
            return 2
        }
        anchors = chain.filter(\.isSelfSigned)
    }
    var chainVerified: Bool?, chainError: String?
    if let issuerFile = args["issuer"] {
        guard let pem = FileManager.default.contents(atPath: issuerFile), let chain = try? Certificate.chain(pem: String(decoding: pem, as: UTF8.self)),
              !chain.filter(\.isSelfSigned).isEmpty else {
            CLI.error("cert inspect: \(issuerFile) holds no self-signed CA certificate (--issuer is the issuing CA bundle, GET /v1/bundle)")
            return 2
        }
        let error = cert.verify(anchors: chain.filter(\.isSelfSigned), intermediates: chain.filter { !$0.isSelfSigned }, at: Date())
        (chainVerified, chainError) = (error == nil, error.map { "\($0.code.rawValue): \($0.message)" })
    }
    var claims: AttestationExtension?
    var problem: String?, problemCode: String?
    if let der = cert.extensionValue(oid: AttestationExtension.oid) {
        do {
            if let anchors {
                let trustDomain = cert.uriSANs.first { $0.hasPrefix("spiffe://") }.map { $0.dropFirst("spiffe://".count).prefix { $0 != "/" } } ?? ""
                claims = try AttestationExtension.verified(certificate: cert, anchors: anchors, signer: "spiffe://\(trustDomain)/vouchd", at: Date())
            } else {
                claims = try AttestationExtension(extensionValue: der)
            }
        } catch let e as VouchError {
            (problem, problemCode) = (e.message, e.code.rawValue)
        }
    } else if anchors != nil {
        (problem, problemCode) = ("the certificate carries no attestation to verify", "no_attestation")
    }
    if args.has("json") {
        struct Report: Encodable {
            let serial, subject, issuer, notBefore, notAfter: String
            let uriSANs: [String]
            let attestation: AttestationReport?
            let attestationVerified: Bool
            let attestationError: String?
            let attestationErrorCode: String?
            let chainVerified: Bool?
            let chainError: String?
        }
        struct AttestationReport: Encodable {
            let hostId, attestedAt, evidenceType, evidenceDigest, pcrBank, pcrDigest, policyName, policyDigest: String
            let policyVersion: Int
            let modelManifests: [String]
            /// The publishers' signatures the broker verified over the model.
            let models: [AttestationExtension.SignedModel]?
            let secureBoot: Bool?
            let subjectSpiffeId: String?
            let subjectSpkiSha256: String?
            /// A CPU TEE host's claims (SEV-SNP, TDX).
            let tee: TEEClaims?
            /// The devices verified beside the platform (GPUs).
            let devices: [DeviceClaims]?
        }
        print(JSONCodec.pretty(Report(serial: cert.serialHex, subject: cert.subject, issuer: cert.issuer, notBefore: cert.notBefore.iso8601,
                                      notAfter: cert.notAfter.iso8601, uriSANs: cert.uriSANs, attestation: claims.map {
            AttestationReport(hostId: $0.hostId, attestedAt: $0.attestedAt.iso8601, evidenceType: $0.evidenceType, evidenceDigest: Hex.encode($0.evidenceDigest),
                              pcrBank: $0.pcrBank, pcrDigest: Hex.encode($0.pcrDigest), policyName: $0.policyName, policyDigest: Hex.encode($0.policyDigest),
                              policyVersion: $0.policyVersion, modelManifests: $0.modelManifests.map { Hex.encode($0) }, models: $0.models, secureBoot: $0.secureBoot,
                              subjectSpiffeId: $0.subject?.spiffeId, subjectSpkiSha256: $0.subject.map { Hex.encode($0.spkiSHA256) }, tee: $0.tee,
                              devices: $0.devices)
        }, attestationVerified: anchors != nil && claims != nil, attestationError: problem,
                                      attestationErrorCode: problemCode, chainVerified: chainVerified, chainError: chainError)))
    } else {
        print("serial     \(cert.serialHex)\nsubject    \(cert.subject)\nissuer     \(cert.issuer)")
        print("validity   \(cert.notBefore.iso8601) → \(cert.notAfter.iso8601)")
        for u in cert.uriSANs { print("SAN        \(u)") }
        print("chain      \(chainVerified.map { $0 ? "verified to the issuing CA" : "rejected: \(chainError ?? "")" } ?? "not checked: --issuer")")
        if let c = claims {
            print("attestation (EAR in CMW extension \(AttestationExtension.oid)\(anchors != nil ? ", signature verified, bound to this certificate" : ", signature not checked: --ca"))")
            if anchors != nil && chainVerified == nil {
                print("  WARNING: the certificate's own chain was not checked (--issuer): anyone can put this EAR and the agent's public key in a certificate")
            }
            print("  host           \(c.hostId)\n  attested at    \(c.attestedAt.iso8601)\n  evidence       \(c.evidenceType) sha256:\(Hex.encode(c.evidenceDigest))")
            if let tee = c.tee {
                print("  TEE            \(tee.kind) \(tee.platform), signer \(tee.signer)\(tee.simulated ? " (SIMULATED: the software TEE)" : "")")
                print("  measurement    \(tee.measurement)\(tee.measurementName.map { " (\($0))" } ?? "")")
                print("  TCB            \(tee.tcb)\(tee.tcbStatus.map { " \($0)" } ?? ""), debug \(tee.debug ? "ENABLED" : "disabled")")
                if !tee.warnings.isEmpty { print("  warnings       \(tee.warnings.joined(separator: ", "))") }
            } else {
                print("  PCRs           \(c.pcrBank) digest \(Hex.encode(c.pcrDigest))")
            }
            for d in c.devices ?? [] {
                print("  \(d.device.padding(toLength: 14, withPad: " ", startingAt: 0)) \(d.kind) driver \(d.driverVersion) VBIOS \(d.vbiosVersion), references \(d.referenceValues)"
                      + (d.simulated ? " (SIMULATED: the software GPU)" : ""))
            }
            print("  policy         \(c.policyName) v\(c.policyVersion) sha256:\(Hex.encode(c.policyDigest))")
            print("  model          \(c.modelManifests.isEmpty ? "none measured" : c.modelManifests.map { Hex.encode($0) }.joined(separator: ", "))")
            for m in c.models ?? [] {
                print("  signed model   \(m.model) by \(m.publisher) (signer \(m.signer)), subject sha256:\(m.subjectDigest)")
            }
            print("  Secure Boot    \(c.secureBoot.map { $0 ? "enabled" : "disabled" } ?? "no firmware log")")
        } else {
            print("attestation    \(problem.map { "rejected: \($0)" } ?? "none (not a Vouch attested certificate)")")
        }
    }
    return problem == nil && chainVerified != false ? 0 : 1
}
