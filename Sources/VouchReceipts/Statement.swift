import Foundation
import VouchCore

/// An in-toto Statement v1 (github.com/in-toto/attestation, spec/v1/statement.md) naming one
/// output by its SHA-256 and carrying a Vouch receipt predicate:
///
///     {"_type": "https://in-toto.io/Statement/v1",
///      "subject": [{"name": "output", "digest": {"sha256": "<64 hex>"}}],
///      "predicateType": "https://vouch.dev/receipt/v1",
///      "predicate": { ReceiptPredicate }}
///
/// Read only from a DSSE payload whose signature verified (`ReceiptVerifier`); `init(json:)`
/// checks the form, not who made it.
public struct ReceiptStatement: Sendable, Equatable {
    public static let type = "https://in-toto.io/Statement/v1"
    public static let predicateType = "https://vouch.dev/receipt/v1"
    public static let maxBytes = 64 * 1024

    /// The subject's name (informative; the digest is what is bound).
    public var subjectName: String
    /// SHA-256 of the exact output bytes.
    public var outputSHA256: [UInt8]
    public var predicate: ReceiptPredicate

    public init(subjectName: String = "output", outputSHA256: [UInt8], predicate: ReceiptPredicate) {
        self.subjectName = subjectName
        self.outputSHA256 = outputSHA256
        self.predicate = predicate
    }

    struct Wire: Codable {
        var _type: String
        var subject: [Subject]
        var predicateType: String
        var predicate: ReceiptPredicate
    }
    struct Subject: Codable {
        var name: String
        var digest: [String: String]
    }

    /// Parses a Statement strictly: its type and predicate type, exactly one subject whose digest
    /// is exactly one `sha256` of 64 lowercase hex digits, a valid predicate — and the bytes must
    /// be the canonical form `json` writes (keys sorted, no whitespace). JSON parsers disagree on
    /// duplicate keys (Foundation keeps the first, Python and jq the last) and Codable ignores
    /// unknown ones, so anything but the canonical form could mean one thing to Vouch and another
    /// to a relying party's own tools; it is refused.
    public init(json bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxBytes else { throw ReceiptFormat.bad("the statement is over \(Self.maxBytes) bytes", "statement") }
        let wire = try ReceiptFormat.decode(Wire.self, bytes, field: "statement")
        guard wire._type == Self.type else { throw ReceiptFormat.bad("_type is not \(Self.type)", "statement._type") }
        guard wire.predicateType == Self.predicateType else { throw ReceiptFormat.bad("predicateType is not \(Self.predicateType)", "statement.predicateType") }
        guard wire.subject.count == 1, let subject = wire.subject.first else { throw ReceiptFormat.bad("a receipt names exactly one subject", "statement.subject") }
        guard subject.name.utf8.count <= 256, subject.digest.count == 1, let hex = subject.digest["sha256"],
              ReceiptFormat.isDigest("sha256:" + hex) else {
            throw ReceiptFormat.bad("the subject's digest is one sha256 of 64 lowercase hex digits", "statement.subject.digest")
        }
        try wire.predicate.validate()
        self.init(subjectName: subject.name, outputSHA256: try Hex.decode(hex), predicate: wire.predicate)
        guard json == bytes else {
            throw ReceiptFormat.bad("the statement is not in canonical form (sorted keys, no whitespace, no duplicate or unknown keys)", "statement")
        }
    }

    /// The Statement as JSON (keys sorted, no whitespace): the DSSE payload.
    public var json: [UInt8] {
        ReceiptFormat.encode(Wire(_type: Self.type, subject: [Subject(name: subjectName, digest: ["sha256": Hex.encode(outputSHA256)])],
                                  predicateType: Self.predicateType, predicate: predicate))
    }
}

/// The receipt predicate (`https://vouch.dev/receipt/v1`): what produced the output, as the
/// agent's certificate attests it. Digests are `sha256:` and 64 lowercase hex digits; integers
/// are decimal strings; times RFC 3339 UTC with seconds.
public struct ReceiptPredicate: Codable, Sendable, Equatable {
    /// The model as attested: the manifest digests the EAR in the certificate lists (the
    /// broker's measured model manifests), never a name the caller gives.
    public struct Model: Codable, Sendable, Equatable {
        public var manifests: [String]
        public init(manifests: [String]) { self.manifests = manifests }
    }
    public struct Agent: Codable, Sendable, Equatable {
        public var spiffeId: String
        /// SHA-256 of the agent certificate's DER.
        public var certificate: String
        /// The certificate's serial (lowercase hex).
        public var serial: String
        public init(spiffeId: String, certificate: String, serial: String) {
            self.spiffeId = spiffeId; self.certificate = certificate; self.serial = serial
        }
    }
    public struct Evidence: Codable, Sendable, Equatable {
        /// `platform` for the host's own evidence, else the device's name (`gpu0`).
        public var device: String
        /// The evidence type (`tpm2-quote`, `sev-snp-report`, `tdx-quote`, `azure-snp-vtpm`, `nvidia-gpu`).
        public var type: String
        public var digest: String
        public init(device: String, type: String, digest: String) { self.device = device; self.type = type; self.digest = digest }
    }
    public struct Attestation: Codable, Sendable, Equatable {
        /// The broker's attestation record id of the issuance decision (from the issuance entry).
        public var record: String?
        /// SHA-256 of the EAR (compact JWS bytes) in the certificate.
        public var ear: String
        /// The issuance entry's index in the log.
        public var issuanceIndex: String?
        public var evidence: [Evidence]
        /// SHA-256 of the policy file the decision applied.
        public var policy: String
        /// When the broker appraised (the EAR's `iat`).
        public var appraisedAt: String
        public init(record: String?, ear: String, issuanceIndex: String?, evidence: [Evidence], policy: String, appraisedAt: String) {
            self.record = record; self.ear = ear; self.issuanceIndex = issuanceIndex; self.evidence = evidence
            self.policy = policy; self.appraisedAt = appraisedAt
        }
    }
    public struct Request: Codable, Sendable, Equatable {
        /// `RequestCommitment.digest`: SHA-256 over the domain, a 32-byte salt and the request.
        public var commitment: String
        /// The endpoint answered, "METHOD /path" (no query), when the signer knows it (the
        /// receipt proxy always does): a verifier can tell a chat completion from any other route.
        public var route: String?
        public init(commitment: String, route: String? = nil) { self.commitment = commitment; self.route = route }

        /// An upper-case method token (at most 16 letters), one space, and a path of printable
        /// ASCII starting with "/", without "?" or "#", at most 1,024 bytes.
        public static func isRoute(_ s: String) -> Bool {
            guard let space = s.firstIndex(of: " ") else { return false }
            let method = s[..<space].utf8, path = s[s.index(after: space)...].utf8
            return (1...16).contains(method.count) && method.allSatisfy { (0x41...0x5a).contains($0) }
                && (1...1024).contains(path.count) && path.first == 0x2f
                && path.allSatisfy { (0x21...0x7e).contains($0) && $0 != 0x3f && $0 != 0x23 }
        }
    }

    public var model: Model
    public var agent: Agent
    public var attestation: Attestation
    public var request: Request?
    public var startedAt: String
    public var finishedAt: String

    public init(model: Model, agent: Agent, attestation: Attestation, request: Request?, startedAt: Date, finishedAt: Date) {
        self.model = model; self.agent = agent; self.attestation = attestation; self.request = request
        self.startedAt = startedAt.iso8601; self.finishedAt = finishedAt.iso8601
    }

    public var started: Date? { Self.time(startedAt) }
    public var finished: Date? { Self.time(finishedAt) }
    public var appraised: Date? { Self.time(attestation.appraisedAt) }

    static func time(_ s: String) -> Date? {
        guard let d = Date.parseRFC3339(s), d.iso8601 == s else { return nil }
        return d
    }

    func validate() throws {
        func need(_ ok: Bool, _ field: String, _ what: String) throws {
            if !ok { throw ReceiptFormat.bad("\(field) \(what)", "predicate.\(field)") }
        }
        func value(_ s: String) -> Bool { !s.isEmpty && s.utf8.count <= 1024 && s.utf8.allSatisfy { (0x21...0x7e).contains($0) } }
        try need(model.manifests.count <= 64 && model.manifests.allSatisfy(ReceiptFormat.isDigest), "model.manifests", "are sha256 digests")
        try need(agent.spiffeId.hasPrefix("spiffe://") && value(agent.spiffeId), "agent.spiffeId", "is a SPIFFE ID")
        try need(ReceiptFormat.isDigest(agent.certificate), "agent.certificate", "is a sha256 digest")
        try need(value(agent.serial) && agent.serial.utf8.count <= 40 && (try? Hex.decode(agent.serial)) != nil, "agent.serial", "is hex")
        try need(attestation.record.map(ReceiptFormat.isDecimal) ?? true, "attestation.record", "is a decimal string")
        try need(attestation.issuanceIndex.map(ReceiptFormat.isDecimal) ?? true, "attestation.issuanceIndex", "is a decimal string")
        try need(ReceiptFormat.isDigest(attestation.ear), "attestation.ear", "is a sha256 digest")
        try need(ReceiptFormat.isDigest(attestation.policy), "attestation.policy", "is a sha256 digest")
        try need((1...16).contains(attestation.evidence.count) && attestation.evidence.allSatisfy {
            value($0.device) && value($0.type) && ReceiptFormat.isDigest($0.digest)
        }, "attestation.evidence", "lists 1 to 16 devices with sha256 digests")
        try need(appraised != nil, "attestation.appraisedAt", "is RFC 3339 UTC with seconds")
        try need(request.map { ReceiptFormat.isDigest($0.commitment) } ?? true, "request.commitment", "is a sha256 digest")
        try need(request?.route.map(Request.isRoute) ?? true, "request.route", "is \"METHOD /path\"")
        try need(started != nil, "startedAt", "is RFC 3339 UTC with seconds")
        try need(finished != nil, "finishedAt", "is RFC 3339 UTC with seconds")
    }
}

/// The salted commitment to a request: SHA-256(`domain` ‖ salt ‖ request), the salt 32 random
/// bytes the signer hands to the requester (never put in the receipt), so that the receipt
/// reveals nothing about the request until the requester opens it with the salt.
public enum RequestCommitment {
    /// Domain separation: these 29 bytes (ASCII, ending in a NUL) come first.
    public static let domain = Array("vouch.dev/receipt/v1 request\u{0}".utf8)
    public static let saltBytes = 32

    /// The bytes the commitment hashes.
    public static func message(salt: [UInt8], request: [UInt8]) -> [UInt8] { domain + salt + request }
}
