import Foundation
import VouchCore
import VouchReceipts

/// A Sigstore bundle (protobuf-specs `dev.sigstore.bundle.v1.Bundle`, JSON form) as the OpenSSF
/// model-signing format writes it: a DSSE envelope over an in-toto Statement, and the material
/// that names its signer — a public key hint (key signing), an X.509 chain (certificate
/// signing) or one Fulcio certificate (Sigstore keyless, with transparency-log entries).
///
/// Parsing checks shape and bounds only: nothing here is verified. `raw` is kept so that the
/// keyless verifier can read the transparency-log entries and the digest of exactly these bytes
/// can be recorded.
public struct SigstoreBundle: Sendable {
    /// Longest bundle read (JSON text). A manifest lists every file of a model; 4 MiB holds about
    /// 20,000 entries (`ModelManifest.maxResources`) with names of a few dozen bytes.
    public static let maxBytes = 4 << 20
    /// Longest certificate chain read.
    public static let maxCertificates = 10
    public static let mediaTypes = [
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle.v0.3+json",
    ]

    public enum Material: Sendable, Equatable {
        /// Key signing: only an unauthenticated hint (model-signing writes the SHA-256 of the
        /// public key's DER SubjectPublicKeyInfo, hex).
        case publicKey(hint: String)
        /// Certificate signing: the signing certificate first, then the chain it sent (DER).
        case certificateChain([[UInt8]])
        /// Sigstore keyless (bundle v0.3): the Fulcio-issued signing certificate (DER).
        case certificate([UInt8])
    }

    public let mediaType: String
    public let material: Material
    public let envelope: DSSEEnvelope
    /// How many transparency-log entries the bundle carries (read by the keyless verifier).
    public let tlogEntryCount: Int
    /// The bundle as read.
    public let raw: [UInt8]

    struct Wire: Decodable {
        struct Material: Decodable {
            struct PublicKey: Decodable { var hint: String? }
            struct RawBytes: Decodable { var rawBytes: String }
            struct Chain: Decodable { var certificates: [RawBytes] }
            struct Entry: Decodable {}
            var publicKey: PublicKey?
            var x509CertificateChain: Chain?
            var certificate: RawBytes?
            var tlogEntries: [Entry]?
        }
        struct Envelope: Decodable {
            struct Signature: Decodable { var sig: String; var keyid: String? }
            var payload: String
            var payloadType: String
            var signatures: [Signature]
        }
        var mediaType: String
        var verificationMaterial: Material
        var dsseEnvelope: Envelope?
    }

    public init(json bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxBytes else { throw Self.bad("the bundle is over \(Self.maxBytes) bytes", "bundle") }
        let wire: Wire
        do { wire = try JSONDecoder().decode(Wire.self, from: Data(bytes)) } catch {
            throw Self.bad("not a Sigstore bundle (JSON with mediaType, verificationMaterial and dsseEnvelope)", "bundle")
        }
        guard Self.mediaTypes.contains(wire.mediaType) else { throw Self.bad("unknown bundle media type", "bundle.mediaType") }
        let m = wire.verificationMaterial
        let kinds = [m.publicKey != nil, m.x509CertificateChain != nil, m.certificate != nil].filter { $0 }.count
        guard kinds == 1 else { throw Self.bad("verificationMaterial must name exactly one of publicKey, x509CertificateChain, certificate", "bundle.verificationMaterial") }
        if let key = m.publicKey {
            let hint = key.hint ?? ""
            guard hint.utf8.count <= 256 else { throw Self.bad("the key hint is over 256 bytes", "bundle.verificationMaterial.publicKey.hint") }
            material = .publicKey(hint: hint)
        } else if let chain = m.x509CertificateChain {
            guard (1...Self.maxCertificates).contains(chain.certificates.count) else {
                throw Self.bad("a chain has 1 to \(Self.maxCertificates) certificates", "bundle.verificationMaterial.x509CertificateChain")
            }
            material = .certificateChain(try chain.certificates.map { try Self.der($0.rawBytes, "bundle.verificationMaterial.x509CertificateChain.certificates") })
        } else {
            material = .certificate(try Self.der(m.certificate!.rawBytes, "bundle.verificationMaterial.certificate"))
        }
        tlogEntryCount = m.tlogEntries?.count ?? 0
        guard let e = wire.dsseEnvelope else { throw Self.bad("the bundle holds no DSSE envelope (a message signature is not a model signature)", "bundle.dsseEnvelope") }
        guard e.payloadType == DSSEEnvelope.inTotoPayloadType else { throw Self.bad("the envelope's payloadType is not in-toto JSON", "bundle.dsseEnvelope.payloadType") }
        guard e.signatures.count == 1 else { throw Self.bad("the envelope must carry exactly one signature", "bundle.dsseEnvelope.signatures") }
        let payload = try Self.base64(e.payload, "bundle.dsseEnvelope.payload")
        let sig = try Self.base64(e.signatures[0].sig, "bundle.dsseEnvelope.signatures.sig")
        guard (1...1024).contains(sig.count) else { throw Self.bad("a signature is 1 to 1024 bytes", "bundle.dsseEnvelope.signatures.sig") }
        envelope = DSSEEnvelope(payloadType: e.payloadType, payload: payload,
                                signatures: [.init(keyid: String((e.signatures[0].keyid ?? "").prefix(256)), sig: sig)])
        mediaType = wire.mediaType
        raw = bytes
    }

    /// The one signature's bytes.
    public var signature: [UInt8] { envelope.signatures[0].sig }

    static func der(_ s: String, _ field: String) throws -> [UInt8] {
        let b = try base64(s, field)
        guard !b.isEmpty, b.count <= 16 << 10 else { throw bad("a certificate is 1 byte to 16 KiB", field) }
        return b
    }

    /// Standard base64, padded (protobuf JSON's bytes encoding; URL-safe is also accepted by
    /// protobuf, so it is read too).
    static func base64(_ s: String, _ field: String) throws -> [UInt8] {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.utf8.count % 4 != 0 { t += "=" }
        guard let d = Data(base64Encoded: t) else { throw bad("\(field) is not base64", field) }
        return [UInt8](d)
    }

    static func bad(_ message: String, _ field: String) -> VouchError {
        VouchError(.modelSignatureMalformed, message, context: ["field": field])
    }
}
