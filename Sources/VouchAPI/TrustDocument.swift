import Foundation

/// What a relying party needs to verify Vouch's receipts and log offline, served by vouchd at
/// `GET /v1/trust` and saved by `vouch trust get --output FILE`:
///
///     {"version": "1", "trustDomain": "example.org",
///      "agentRoots": PEM of the issuing-CA roots (= GET /v1/bundle),
///      "brokerCA": PEM of the broker CA that certifies the EAR signer (the EARs' x5c),
///      "log": {"origin": "example.org/vouch-log", "vkey": the log's note verifier key}}
public struct TrustDocument: Codable, Sendable, Equatable {
    public static let currentVersion = "1"

    public struct Log: Codable, Sendable, Equatable {
        /// The checkpoints' origin line, `<trust domain>/vouch-log`, also the log key's name.
        public var origin: String
        /// The log's Ed25519 note verifier key (c2sp.org/signed-note vkey text).
        public var vkey: String
        public init(origin: String, vkey: String) { self.origin = origin; self.vkey = vkey }
    }

    public var version: String
    public var trustDomain: String
    public var agentRoots: String
    public var brokerCA: String
    public var log: Log

    public init(version: String = TrustDocument.currentVersion, trustDomain: String, agentRoots: String, brokerCA: String, log: Log) {
        self.version = version; self.trustDomain = trustDomain; self.agentRoots = agentRoots; self.brokerCA = brokerCA; self.log = log
    }

    /// The log origin (and log key name) of a trust domain.
    public static func logOrigin(trustDomain: String) -> String { "\(trustDomain)/vouch-log" }
}
