import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchModelSigning
import VouchPolicy
import VouchReceiptKit
import VouchReceipts
import VouchSPIFFE
import VouchTEEWire
import VouchTPMWire
import VouchXMLSig
import VouchYAML

/// One fuzz target per parser of outside bytes. Each must return normally for every input:
/// a typed error is the expected outcome for garbage, a trap or sanitizer report is a bug.
enum FuzzTargets {
    static let all: [String: @Sendable ([UInt8]) -> Void] = [
        "tpm2b-public": { _ = try? TPMTPublic(tpm2bPublic: $0) },
        "tpms-attest": { _ = try? TPMSAttest(bytes: $0) },
        "tpmt-signature": { _ = try? TPMTSignature(bytes: $0) },
        "tools-pcr-file": { _ = try? ToolsPCRFile.parse($0) },
        "event-log": { bytes in
            guard let log = try? TCGEventLog(bytes: bytes) else { return }
            // Verified against its own replay, so every PCR is kept and every event's data is checked and read.
            let replayed = log.replay(using: OpenSSLDigester())
            if case let .verified(v) = log.verify(quotedPCRs: replayed, using: OpenSSLDigester()) { _ = v.claims }
            _ = log.events.map(\.summary)
        },
        "model-log": { bytes in
            guard let log = try? ModelLog(json: bytes) else { return }
            _ = log.claims(using: OpenSSLDigester())
        },
        "policy": { _ = try? PolicyDecoder.decode(YAMLParser.parse($0, file: "fuzz.yaml"), sha256: "") },
        "csr": { bytes in
            // The broker's parser (the package's DER reader; OpenSSL for other key types), then
            // OpenSSL's own parse of the same bytes.
            if let verified = try? UnverifiedCertificateRequest(pemOrDER: bytes).verify() {
                _ = try? verified.publicKey.spkiDER
                _ = try? verified.publicKey.canonicalSPKIDER
            }
            guard let csr = try? CSR(pemOrDER: bytes) else { return }
            _ = csr.signatureIsValid
            _ = try? csr.publicKey.spkiDER
        },
        "certificate": { bytes in
            _ = try? CertificateDER.extensionValue(bytes, oid: AttestationExtension.oid)   // the issuance log entry's reader
            guard let cert = try? Certificate(der: bytes) else { return }
            _ = cert.uriSANs
            _ = cert.subject
            _ = cert.extensionValue(oid: AttestationExtension.oid).map { try? AttestationExtension(extensionValue: $0) }
        },
        "attestation-extension": { _ = try? AttestationExtension(extensionValue: $0) },
        "crl": { bytes in _ = (try? CRL(der: bytes)).map { ($0.revokedSerials, $0.number) } },
        "ocsp-request": { bytes in _ = try? OCSPResponder(ca: fuzzCA).respond(to: bytes, now: Date(), validity: 60) { _ in .good } },
        "api-bodies": { bytes in
            // Every request body the broker and the attester decode.
            if let req = try? JSONCodec.decode(EnrollRequest.self, from: bytes) {
                _ = try? Base64.decode(req.quote?.attest ?? "", field: "attest")
                _ = try? Hex.decode(req.nonce)
            }
            _ = try? JSONCodec.decode(RegisterHostRequest.self, from: bytes)
            _ = try? JSONCodec.decode(ActivateHostRequest.self, from: bytes)
            _ = try? JSONCodec.decode(ChallengeRequest.self, from: bytes)
            _ = try? JSONCodec.decode(RevokeRequest.self, from: bytes)
            _ = try? JSONCodec.decode(AgentEnrollRequest.self, from: bytes)
            _ = try? JSONCodec.decode(EvidenceBundle.self, from: bytes)
            // Re-attestation: what an attester decodes from the broker, and the broker from a host.
            if let q = try? JSONCodec.decode(QuoteRequest.self, from: bytes) { _ = try? Hex.decode(q.nonce) }
            _ = try? JSONCodec.decode(AttestationReport.self, from: bytes)
            _ = try? JSONCodec.decode(TokenCreateRequest.self, from: bytes)
        },
        "snp-report": { bytes in
            // An SEV-SNP ATTESTATION_REPORT: whatever parses must write back to the same bytes.
            guard let report = try? SNPReport(bytes: bytes) else { return }
            precondition((try? report.serialized()) == bytes, "SNP report does not round-trip")
            for product in SNPProduct.allCases { _ = report.reportedTCB.components(for: product) }
        },
        "snp-vcek-extensions": { bytes in
            // A VCEK/VLEK certificate's AMD extensions, and the input as the value of every one of them.
            if let cert = try? Certificate(der: bytes) { _ = try? SNPEndorsementExtensions(extensionValue: cert.extensionValue(oid:)) }
            _ = try? SNPEndorsementExtensions(extensionValue: { _ in bytes })
        },
        "azure-hcl-report": { bytes in
            // An Azure CVM's HCL report and its runtime claims.
            guard let hcl = try? AzureHCLReport(bytes: bytes) else { _ = try? AzureRuntimeClaims(json: bytes); return }
            _ = try? SNPReport(bytes: hcl.hardwareReport)
            _ = try? AzureRuntimeClaims(json: hcl.runtimeClaims)
        },
        "tdx-quote": { bytes in
            // A DCAP quote v4/v5, its QE report fields and the writer's round trip.
            guard let q = try? TDXQuote(bytes: bytes) else { return }
            _ = (q.body.attributes, q.signatureData.certification.qeReport.isvSvn, q.signatureData.certification.qeReport.miscSelect)
            _ = try? TDXQuote(bytes: q.encoded)
        },
        "tdx-collateral": { bytes in
            // A dcap-qvl collateral document, or a PCS body, and the signed objects it carries.
            if let c = try? TDXCollateral(dcapQVLJSON: bytes) {
                _ = try? TDXTCBInfo(json: c.tcbInfo.bytes)
                _ = try? TDXQEIdentity(json: c.qeIdentity.bytes)
            }
            if let s = try? TDXSignedJSON(pcsBody: bytes, key: "tcbInfo") { _ = try? TDXTCBInfo(json: s.bytes) }
            if let s = try? TDXSignedJSON(pcsBody: bytes, key: "enclaveIdentity") { _ = try? TDXQEIdentity(json: s.bytes) }
            _ = try? TDXTCBInfo(json: bytes)
            _ = try? TDXQEIdentity(json: bytes)
        },
        "spdm-measurements": { bytes in
            // An NVIDIA GPU's SPDM GET_MEASUREMENTS transcript, its opaque fields and versions.
            guard let t = try? SPDMMeasurementTranscript(bytes) else { return }
            _ = (t.driverVersion, t.vbiosVersion, t.fwid, t.opaqueString(.project), t.blocks.map(\.isDigest), t.signedBytes.count)
        },
        "sgx-pck-extension": { bytes in
            guard let e = try? SGXPCKExtension(der: bytes) else { return }
            _ = try? SGXPCKExtension(der: e.encoded)
        },
        "tdx-event-log": { _ = try? TDXEventLog.replay($0) },
        "rim-xml": { bytes in
            // A NVIDIA RIM: libxml2 parse, signature shape, KeyInfo chain, XML-DSig with a fixed key
            // (the pinned root's), and the whole RIM verifier at a time its real chains are valid.
            guard let document = try? UnverifiedXMLDocument(bytes: bytes) else { return }
            _ = try? document.keyInfoCertificates()
            _ = try? XMLSignature.verifyEnveloped(document, signerCertificateDER: fuzzRIMRootDER)
            _ = try? fuzzRIMVerifier.verify(bytes, component: .driver, at: Date(timeIntervalSince1970: 1_735_689_600))
        },
        "nitro-document": { bytes in
            // An AWS Nitro attestation document (COSE_Sign1 and its CBOR payload), and the input
            // as a bare CBOR item.
            if let d = try? NitroDocument(bytes: bytes) { _ = d.cose.toBeSigned }
            _ = try? CBORReader.decode(bytes, field: "fuzz")
        },
        "jws": { bytes in
            // An EAR token as `vouch check` receives it (compact JWS, ES256, x5c).
            _ = try? JWSSigner.verify(String(decoding: bytes, as: UTF8.self), anchors: [fuzzCA.certificate], signer: "spiffe://fuzz/vouchd", at: Date())
        },
        "signed-note": { bytes in
            // A log checkpoint or cosigned note, checked against a log key and a witness key; the
            // same bytes as key texts.
            if let note = try? UnverifiedNote(bytes) { _ = try? note.verify(fuzzNoteKeys) }
            let text = String(decoding: bytes, as: UTF8.self)
            _ = try? NoteVerifierKey(vkey: text)
            _ = try? NoteSigner(skey: text)
        },
        "receipt-bundle": { bytes in
            // A receipt bundle as `vouch receipt verify` reads it, through every check; the same
            // bytes as an envelope and as a Statement.
            _ = fuzzReceiptVerifier.verify(bundle: bytes, .init(output: bytes))
            _ = try? DSSEEnvelope(json: bytes)
            _ = try? ReceiptStatement(json: bytes)
        },
        "model-signature": { bytes in
            // OpenSSF model signatures: the Sigstore bundle, the model-signing manifest read from
            // its payload (as if verified), and the whole verifier against a fixed publisher key.
            if let bundle = try? SigstoreBundle(json: bytes) {
                _ = try? ModelManifest(statement: bundle.envelope.payload, sha256: { Crypto.sha256($0) })
            }
            _ = try? ModelManifest(statement: bytes, sha256: { Crypto.sha256($0) })
            _ = ModelSignatureVerifier.verify(bundle: bytes, publishers: FuzzFixtures.modelPublishers,
                                              files: [ModelFileCheck.Measured(name: "weights.bin", sha256: String(repeating: "0", count: 64))])
        },
        "workload-api": { bytes in
            // Every SPIFFE Workload API message, google.protobuf.Struct and Value, JSON claims and
            // SPIFFE IDs: whatever parses must write back to bytes that parse to the same value.
            func roundTrip<M: ProtobufMessage>(_: M.Type) {
                guard let m = try? M(protobuf: bytes) else { return }
                precondition((try? M(protobuf: m.protobuf)) == m, "\(M.self) does not round-trip")
            }
            for type in WorkloadAPI.messageTypes { roundTrip(type) }
            if let v = try? JSONValue(protobufStruct: bytes) { precondition((try? JSONValue(protobufStruct: v.protobufStruct)) == v, "Struct does not round-trip") }
            if let v = try? JSONValue(protobufValue: bytes) { precondition((try? JSONValue(protobufValue: v.protobufValue)) == v, "Value does not round-trip") }
            if let v = try? JSONValue(json: bytes) { precondition((try? JSONValue(json: v.json)) == v, "JSON does not round-trip") }
            if let id = try? SPIFFEID.parse(String(decoding: bytes, as: UTF8.self)) { precondition(SPIFFEID.isValid("spiffe://\(id.trustDomain)\(id.path)")) }
        },
    ]

    static var names: [String] { all.keys.sorted() }
}

/// The RIM target's fixed key and verifier (the compiled-in NVIDIA CoRIM signing root).
private let fuzzRIMVerifier = try! NvidiaRIMVerifier()
private let fuzzRIMRootDER = try! fuzzRIMVerifier.roots[0].der

/// The signed-note target's keys: Go sumdb/note's test key and a fixed witness key.
private let fuzzNoteKeys: [NoteVerifierKey] = [
    try! NoteVerifierKey(vkey: "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
    try! NoteVerifierKey(name: "witness.example/w1", type: .cosignatureV1, publicKey: try! Ed25519PrivateKey(seed: [UInt8](repeating: 7, count: 32)).publicKey),
]

/// The receipt target's trust: the fuzz CA as agent roots and broker CA, a fixed log key.
private let fuzzReceiptVerifier = ReceiptVerifier(trust: try! ReceiptTrust(TrustDocument(
    trustDomain: "fuzz", agentRoots: try! fuzzCA.certificate.pem, brokerCA: try! fuzzCA.certificate.pem,
    log: .init(origin: "fuzz/vouch-log", vkey: try! NoteVerifierKey(name: "fuzz/vouch-log", publicKey: try! Ed25519PrivateKey(seed: [UInt8](repeating: 8, count: 32)).publicKey).vkey))))

/// A CA for the OCSP target, made once.
let fuzzCA: CertificateAuthority = {
    let key = try! PrivateKey.generate()
    return try! CertificateAuthority.create(commonName: "fuzz", key: key, notBefore: Date(), notAfter: Date().addingTimeInterval(3600))
}()

/// Trust material the fuzz targets verify against: made once.
enum FuzzFixtures {
    static let modelPublishers: [ModelPublisher] = {
        guard let key = try? PrivateKey.generate(.p256), let spki = try? key.publicKey.spkiDER else { return [] }
        return [ModelPublisher(name: "fuzz", models: ["*"], trust: .key(spki: spki))]
    }()
}
