import VouchCore

/// A publisher a policy trusts to sign models (`model.publishers[]`): who it is, which signed
/// model names it may sign, and how its signatures are recognised. The trust material is held as
/// the policy file wrote it, decoded to bytes (the policy's digest covers it); VouchPolicyFiles
/// checks that it parses when the policy loads.
public struct ModelPublisher: Sendable, Equatable {
    public enum Trust: Sendable, Equatable {
        /// model-signing's `sign key`: the publisher's public key (DER SubjectPublicKeyInfo).
        case key(spki: [UInt8])
        /// model-signing's `sign certificate`: the CA roots the signing certificate must chain to
        /// (DER), and, when set, a subjectAltName (email, URI or DNS name) it must carry.
        case certificate(roots: [[UInt8]], identity: String?)
        /// Sigstore keyless: the trusted root (`trusted_root.json` bytes: Fulcio CAs, Rekor and
        /// CT log keys), the OIDC identity the Fulcio certificate must name and its issuer.
        case sigstore(trustedRoot: [UInt8], identity: String, issuer: String)

        public var kind: String {
            switch self {
            case .key: "key"
            case .certificate: "certificate"
            case .sigstore: "sigstore"
            }
        }
    }

    /// How verdicts, EARs and certificates name the publisher.
    public var name: String
    /// Signed model names (the Statement's subject name) the publisher is trusted for; `*` for any.
    public var models: [String]
    public var trust: Trust

    public init(name: String, models: [String], trust: Trust) { self.name = name; self.models = models; self.trust = trust }

    public func signs(model: String) -> Bool { models.contains("*") || models.contains(model) }
}
