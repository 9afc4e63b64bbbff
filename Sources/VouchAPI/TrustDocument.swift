/// `GET /v1/trust` and `vouch trust get --output FILE`: everything a relying party needs to check
/// Vouch's artefacts offline (docs/receipts.md): the issuing-CA roots, the broker CA that
/// certifies the EAR signer, and the transparency log's origin and verifier key.
public struct TrustDocument: Codable, Sendable, Equatable {
    public struct Log: Codable, Sendable, Equatable {
        /// The log's origin, `<trust domain>/vouch-log` (also its key's name).
        public var origin: String
        /// The log's C2SP signed-note verifier key.
        public var vkey: String
        public init(origin: String, vkey: String) { self.origin = origin; self.vkey = vkey }
    }

    public static let currentVersion = "1"
    public var version: String
    public var trustDomain: String
    /// PEM of the issuing-CA roots (as `GET /v1/bundle`).
    public var agentRoots: String
    /// PEM of the broker CA (it certifies the EAR signer, the x5c of EARs).
    public var brokerCA: String
    public var log: Log

    public init(version: String = TrustDocument.currentVersion, trustDomain: String, agentRoots: String, brokerCA: String, log: Log) {
        self.version = version; self.trustDomain = trustDomain; self.agentRoots = agentRoots; self.brokerCA = brokerCA; self.log = log
    }

    /// The log origin (and log key name) of a trust domain.
    public static func logOrigin(trustDomain: String) -> String { "\(trustDomain)/vouch-log" }
}

/// `GET /v1/log/proof` and `POST /v1/receipts`: one log entry and its C2SP tlog-proof.
public struct LogProofResponse: Codable, Sendable, Equatable {
    /// The entry's index (decimal string).
    public var index: String
    /// The entry's bytes, base64.
    public var entry: String
    /// The C2SP tlog-proof text against the latest checkpoint.
    public var proof: String
    public init(index: String, entry: String, proof: String) { self.index = index; self.entry = entry; self.proof = proof }
}

/// `GET /v1/log/consistency`: an RFC 9162 consistency proof, base64 hashes in order.
public struct LogConsistencyResponse: Codable, Sendable, Equatable {
    public var proof: [String]
    public init(proof: [String]) { self.proof = proof }
}
