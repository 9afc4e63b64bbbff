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
    }
}
