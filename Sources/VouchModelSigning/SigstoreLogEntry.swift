import Foundation
import VouchCore
import VouchTLog

/// One Rekor (v1) transparency-log entry of a Sigstore bundle (`verificationMaterial.tlogEntries[]`,
/// protobuf-specs `TransparencyLogEntry`), read from the bundle's bytes as they arrived
/// (`SigstoreBundle.raw`). Parsing checks shape and bounds only, each failure `invalid_value` with
/// the field at fault; `SigstoreKeylessVerifier` verifies it.
public struct SigstoreLogEntry: Sendable, Equatable {
    /// Most entries read from one bundle.
    public static let maxEntries = 8
    /// Longest canonicalized body read (a DSSE entry names the envelope's hashes, its signatures
    /// and the signing certificate: a few KB).
    public static let maxBodyBytes = 64 << 10

    public struct InclusionProof: Sendable, Equatable {
        /// The entry's index in the tree the proof is for (Rekor's shard), not the global index.
        public let logIndex: UInt64
        public let rootHash: [UInt8]
        public let treeSize: UInt64
        public let hashes: [[UInt8]]
        /// The signed checkpoint of that tree (a signed note; `RekorCheckpoint`).
        public let checkpoint: String
    }

    /// The entry's global index (what the signed entry timestamp signs).
    public let logIndex: UInt64
    /// The log's ID: the SHA-256 of its key's DER SubjectPublicKeyInfo.
    public let logID: [UInt8]
    public let kind: String
    public let version: String
    /// Seconds since the epoch, as the log claims it (trusted only once the SET verifies).
    public let integratedTime: Int64?
    /// The inclusion promise: the log's signature over `signedEntryTimestampPayload`.
    public let signedEntryTimestamp: [UInt8]?
    public let inclusionProof: InclusionProof?
    /// The entry as the log stored it (the Merkle leaf's data).
    public let canonicalizedBody: [UInt8]

    struct Wire: Decodable {
        struct Material: Decodable { var tlogEntries: [Entry]? }
        struct Entry: Decodable {
            struct LogID: Decodable { var keyId: String? }
            struct KindVersion: Decodable { var kind: String?; var version: String? }
            struct Promise: Decodable { var signedEntryTimestamp: String? }
            struct Checkpoint: Decodable { var envelope: String? }
            struct Proof: Decodable {
                var logIndex: ProtoInt?
                var rootHash: String?
                var treeSize: ProtoInt?
                var hashes: [String]?
                var checkpoint: Checkpoint?
            }
            var logIndex: ProtoInt?
            var logId: LogID?
            var kindVersion: KindVersion?
            var integratedTime: ProtoInt?
            var inclusionPromise: Promise?
            var inclusionProof: Proof?
            var canonicalizedBody: String?
        }
        var verificationMaterial: Material
    }

    /// A protobuf JSON int64: a decimal string (what protobuf writes) or a JSON number.
    struct ProtoInt: Decodable {
        let value: Int64
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) {
                guard s.utf8.count <= 20, let v = Int64(s) else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "not an int64") }
                value = v
            } else {
                value = try c.decode(Int64.self)
            }
        }
    }

    /// Every transparency-log entry of the bundle `json` (a bundle that `SigstoreBundle` read).
    public static func entries(bundle json: [UInt8]) throws -> [SigstoreLogEntry] {
        guard json.count <= SigstoreBundle.maxBytes else { throw bad("the bundle is over \(SigstoreBundle.maxBytes) bytes", "bundle") }
        let wire: Wire
        do { wire = try JSONDecoder().decode(Wire.self, from: Data(json)) } catch {
            throw bad("the transparency-log entries do not parse", "bundle.verificationMaterial.tlogEntries")
        }
        let list = wire.verificationMaterial.tlogEntries ?? []
        guard list.count <= maxEntries else { throw bad("more than \(maxEntries) entries", "bundle.verificationMaterial.tlogEntries") }
        return try list.enumerated().map { try SigstoreLogEntry($1, field: "bundle.verificationMaterial.tlogEntries[\($0)]") }
    }

    init(_ e: Wire.Entry, field: String) throws {
        guard let index = e.logIndex?.value, index >= 0 else { throw Self.bad("no logIndex", "\(field).logIndex") }
        logIndex = UInt64(index)
        logID = try Self.bytes(e.logId?.keyId, "\(field).logId.keyId", max: 64)
        guard let kind = e.kindVersion?.kind, let version = e.kindVersion?.version, kind.utf8.count <= 64, version.utf8.count <= 64 else {
            throw Self.bad("no kind and version", "\(field).kindVersion")
        }
        self.kind = kind
        self.version = version
        if let t = e.integratedTime?.value {
            guard t > 0 else { throw Self.bad("integratedTime is not positive", "\(field).integratedTime") }
            integratedTime = t
        } else {
            integratedTime = nil
        }
        signedEntryTimestamp = try e.inclusionPromise.map { try Self.bytes($0.signedEntryTimestamp, "\(field).inclusionPromise.signedEntryTimestamp", max: 1024) }
        canonicalizedBody = try Self.bytes(e.canonicalizedBody, "\(field).canonicalizedBody", max: Self.maxBodyBytes)
        if let p = e.inclusionProof {
            let f = "\(field).inclusionProof"
            guard let i = p.logIndex?.value, i >= 0 else { throw Self.bad("no logIndex", "\(f).logIndex") }
            guard let size = p.treeSize?.value, size > 0, UInt64(size) <= TLogLimits.maxTreeSize else { throw Self.bad("treeSize out of range", "\(f).treeSize") }
            let hashes = p.hashes ?? []
            guard hashes.count <= TLogLimits.maxProofHashes else { throw Self.bad("too many hashes", "\(f).hashes") }
            guard let note = p.checkpoint?.envelope, note.utf8.count <= RekorCheckpoint.maxBytes else { throw Self.bad("no checkpoint", "\(f).checkpoint.envelope") }
            inclusionProof = InclusionProof(logIndex: UInt64(i), rootHash: try Self.hash(p.rootHash, "\(f).rootHash"), treeSize: UInt64(size),
                                            hashes: try hashes.enumerated().map { try Self.hash($1, "\(f).hashes[\($0)]") }, checkpoint: note)
        } else {
            inclusionProof = nil
        }
    }

    /// What the signed entry timestamp signs: the canonical JSON (RFC 8785: keys sorted, no
    /// whitespace) of `body` (the canonicalized body, base64), `integratedTime`, `logID` (hex)
    /// and `logIndex`. Nil without an integrated time.
    public var signedEntryTimestampPayload: [UInt8]? {
        guard let integratedTime else { return nil }
        // Base64 and lowercase hex need no JSON escaping; integers are written in decimal.
        let json = "{\"body\":\"\(Base64.encode(canonicalizedBody))\",\"integratedTime\":\(integratedTime),"
            + "\"logID\":\"\(Hex.encode(logID))\",\"logIndex\":\(logIndex)}"
        return Array(json.utf8)
    }

    /// Verifies the inclusion proof (RFC 6962: the leaf hash of the canonicalized body, the audit
    /// path to the root for the tree size); throws `tlog_proof_invalid` (VouchTLog) when it does
    /// not lead to `rootHash`, `invalid_value` when there is no proof.
    public func verifyInclusion(sha256: @escaping @Sendable ([UInt8]) -> [UInt8]) throws {
        guard let p = inclusionProof else { throw Self.bad("the entry has no inclusion proof", "inclusionProof") }
        let hasher = MerkleHasher(sha256: sha256)
        _ = try MerkleVerifier(hasher: hasher).verifyInclusion(leafHash: hasher.leafHash(canonicalizedBody), index: p.logIndex, size: p.treeSize,
                                                                 proof: p.hashes, root: p.rootHash)
    }

    static func hash(_ s: String?, _ field: String) throws -> [UInt8] {
        let b = try bytes(s, field, max: MerkleHasher.hashSize)
        guard b.count == MerkleHasher.hashSize else { throw bad("a hash is not \(MerkleHasher.hashSize) bytes", field) }
        return b
    }

    static func bytes(_ s: String?, _ field: String, max: Int) throws -> [UInt8] {
        guard let s, s.utf8.count <= (max + 2) / 3 * 4 + 4, let b = try? SigstoreBundle.base64(s, field), (1...max).contains(b.count) else {
            throw bad("not base64 of 1 to \(max) bytes", field)
        }
        return b
    }

    static func bad(_ message: String, _ field: String) -> VouchError {
        VouchError(.invalidValue, message, context: ["field": field])
    }
}

/// A Rekor checkpoint: a signed note (c2sp.org/signed-note) whose text is the tree's origin, size
/// and root hash (a C2SP tlog-checkpoint body, perhaps with extension lines), signed by the log's
/// key. For an ECDSA Rekor key, a signature line carries the first 4 bytes of the log ID (the
/// SHA-256 of the key's DER) and the DER ECDSA signature over the text.
public struct RekorCheckpoint: Sendable, Equatable {
    public static let maxBytes = 16 << 10
    public static let maxSignatures = 16

    public struct Signature: Sendable, Equatable {
        public let name: String
        public let keyHint: [UInt8]
        public let signature: [UInt8]
    }

    /// The signed text: every line up to the blank line, each with its newline.
    public let text: [UInt8]
    public let origin: String
    public let size: UInt64
    public let rootHash: [UInt8]
    public let signatures: [Signature]

    /// Parses a note strictly: one blank line between text and signatures, the text a
    /// checkpoint body (`CheckpointBody`), every signature line `— NAME BASE64\n` with at least
    /// 5 bytes of signature; failures are `invalid_value`.
    public init(envelope: String) throws {
        let bytes = Array(envelope.utf8)
        guard bytes.count <= Self.maxBytes else { throw Self.bad("the checkpoint is over \(Self.maxBytes) bytes") }
        let parts = envelope.components(separatedBy: "\n\n")
        guard parts.count == 2, !parts[1].isEmpty, parts[1].hasSuffix("\n") else {
            throw Self.bad("a checkpoint is text, one blank line, and newline-terminated signature lines")
        }
        let textString = parts[0] + "\n"
        let body: CheckpointBody
        do { body = try CheckpointBody(text: textString) } catch { throw Self.bad("the checkpoint text is not origin, size and root hash") }
        var signatures: [Signature] = []
        for line in parts[1].dropLast().split(separator: "\n", omittingEmptySubsequences: false) {
            guard signatures.count < Self.maxSignatures else { throw Self.bad("more than \(Self.maxSignatures) signatures") }
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 3, fields[0] == "\u{2014}", !fields[1].isEmpty,
                  let raw = try? Base64.decode(String(fields[2]), field: "signature"), raw.count >= 5 else {
                throw Self.bad("a signature line is not `— NAME BASE64`")
            }
            signatures.append(Signature(name: String(fields[1]), keyHint: Array(raw.prefix(4)), signature: Array(raw.dropFirst(4))))
        }
        text = Array(textString.utf8)
        origin = body.origin
        size = body.size
        rootHash = body.rootHash
        self.signatures = signatures
    }

    static func bad(_ message: String) -> VouchError {
        VouchError(.invalidValue, message, context: ["field": "inclusionProof.checkpoint.envelope"])
    }
}

/// The canonicalized body of a Rekor `dsse` v0.0.1 entry: the hashes of the envelope and of its
/// payload, and each signature with the certificate (or key) that verifies it, as Rekor recorded
/// them when it admitted the entry.
public struct RekorDSSEBody: Sendable, Equatable {
    public struct Signature: Sendable, Equatable {
        public let signature: [UInt8]
        /// The verifier as Rekor stored it: PEM text (a certificate or a public key).
        public let verifierPEM: String
    }

    /// `spec.payloadHash`: its algorithm and lowercase hex value.
    public let payloadHashAlgorithm: String
    public let payloadHash: String
    public let signatures: [Signature]

    struct Wire: Decodable {
        struct Hash: Decodable { var algorithm: String; var value: String }
        struct Sig: Decodable { var signature: String; var verifier: String }
        struct Spec: Decodable { var payloadHash: Hash?; var signatures: [Sig]? }
        var apiVersion: String
        var kind: String
        var spec: Spec
    }

    /// Parses a body of kind `dsse`, apiVersion `0.0.1`, with a payload hash and 1 to 8
    /// signatures; failures are `invalid_value`.
    public init(json: [UInt8]) throws {
        let w: Wire
        do { w = try JSONDecoder().decode(Wire.self, from: Data(json)) } catch { throw Self.bad("the body is not a Rekor entry", "body") }
        guard w.kind == "dsse", w.apiVersion == "0.0.1" else { throw Self.bad("the body is not a dsse 0.0.1 entry", "body.kind") }
        guard let hash = w.spec.payloadHash, hash.algorithm.utf8.count <= 32, hash.value.utf8.count <= 128 else {
            throw Self.bad("the body has no payload hash", "body.spec.payloadHash")
        }
        let sigs = w.spec.signatures ?? []
        guard (1...8).contains(sigs.count) else { throw Self.bad("the body has 1 to 8 signatures", "body.spec.signatures") }
        signatures = try sigs.enumerated().map { i, s in
            let sig = try SigstoreLogEntry.bytes(s.signature, "body.spec.signatures[\(i)].signature", max: 1024)
            let pem = try SigstoreLogEntry.bytes(s.verifier, "body.spec.signatures[\(i)].verifier", max: 16 << 10)
            return Signature(signature: sig, verifierPEM: String(decoding: pem, as: UTF8.self))
        }
        payloadHashAlgorithm = hash.algorithm
        payloadHash = hash.value
    }

    static func bad(_ message: String, _ field: String) -> VouchError {
        VouchError(.invalidValue, message, context: ["field": field])
    }
}
