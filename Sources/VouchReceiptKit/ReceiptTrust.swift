import Foundation
import VouchAPI
import VouchCore
import VouchCrypto

/// A trust document (`GET /v1/trust`) read into what verification uses: the issuing-CA roots,
/// the broker CA, the log's origin and key. Refuses a document whose parts do not parse.
public struct ReceiptTrust: Sendable {
    public let trustDomain: String
    /// Self-signed issuing-CA roots (anchors) and any intermediates the bundle carries.
    public let agentAnchors: [Certificate]
    public let agentIntermediates: [Certificate]
    /// The broker CA (anchor of the EARs' x5c).
    public let brokerAnchors: [Certificate]
    public let logOrigin: String
    public let logKey: NoteVerifierKey
    /// The document's certificates by their DER, for `chain(pem:)`.
    let known: [[UInt8]: Certificate]

    public init(_ document: TrustDocument) throws {
        func bad(_ message: String, _ field: String) -> VouchError { VouchError(.invalidValue, message, context: ["field": field]) }
        guard document.version == TrustDocument.currentVersion else { throw bad("unknown trust document version", "version") }
        guard !document.trustDomain.isEmpty, !document.trustDomain.contains("/") else { throw bad("not a trust domain", "trustDomain") }
        let roots = try Certificate.chain(pem: document.agentRoots)
        let broker = try Certificate.chain(pem: document.brokerCA).filter(\.isSelfSigned)
        guard roots.contains(where: \.isSelfSigned) else { throw bad("agentRoots holds no self-signed CA certificate", "agentRoots") }
        guard !broker.isEmpty else { throw bad("brokerCA holds no self-signed CA certificate", "brokerCA") }
        let key = try NoteVerifierKey(vkey: document.log.vkey)
        guard key.type == .ed25519, key.name == document.log.origin, document.log.origin == TrustDocument.logOrigin(trustDomain: document.trustDomain) else {
            throw bad("the log key must be an Ed25519 note key named \(TrustDocument.logOrigin(trustDomain: document.trustDomain))", "log")
        }
        trustDomain = document.trustDomain
        agentAnchors = roots.filter(\.isSelfSigned)
        agentIntermediates = roots.filter { !$0.isSelfSigned }
        brokerAnchors = broker
        logOrigin = document.log.origin
        logKey = key
        var known: [[UInt8]: Certificate] = [:]
        for c in roots + broker { known[try c.der] = c }
        self.known = known
    }

    /// A bundle's PEM chain, in order, as `Certificate.chain(pem:)` reads it, except that a
    /// block holding, byte for byte, one of the document's certificates (the issuing CA usually
    /// rides along) is that certificate rather than a new decoding of it (OpenSSL 3's key
    /// decoding is most of a certificate's parse). Anything but plain `CERTIFICATE` blocks of
    /// canonical base64 is left to `Certificate.chain(pem:)`, so what is accepted does not change.
    func chain(pem: String) throws -> [Certificate] {
        var out: [Certificate] = []
        var body: [UInt8]?
        for raw in pem.utf8.split(separator: 0x0a) {
            let line = raw.last == 0x0d ? raw.dropLast() : raw[...]
            if line.elementsEqual("-----BEGIN CERTIFICATE-----".utf8), body == nil {
                body = []
            } else if line.elementsEqual("-----END CERTIFICATE-----".utf8), let b64 = body {
                guard let der = try? Base64.decode(String(decoding: b64, as: UTF8.self), field: "chain"),
                      let cert = known[der] ?? (try? Certificate(der: der)) else { return try Certificate.chain(pem: pem) }
                out.append(cert)
                body = nil
            } else if body != nil {
                body! += line
            } else if line.starts(with: "-----".utf8) {
                return try Certificate.chain(pem: pem)
            }
        }
        guard body == nil, !out.isEmpty else { return try Certificate.chain(pem: pem) }
        return out
    }
}
