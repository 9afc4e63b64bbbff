import VouchCore

/// Keys of C2SP signed notes (c2sp.org/signed-note) and witness cosignatures
/// (c2sp.org/tlog-cosignature), with their text encodings: a verifier key (vkey)
/// `name+hash+base64(type || public key)` and a signer key (skey)
/// `PRIVATE+KEY+name+hash+base64(type || seed)`, where `hash` is the key ID as 8 lowercase hex
/// digits and the key ID is SHA-256(name || 0x0A || type || 32-byte public key)[:4], big-endian.

extension ErrorCode {
    /// A signed note, signature line or cosignature that does not parse, or is over its bounds.
    public static let noteMalformed = ErrorCode("note_malformed", status: 422)
    /// A verifier or signer key encoding that does not parse, names an unsupported signature
    /// type, has an invalid key name, or whose key ID is not the one its name and key give.
    public static let noteKeyInvalid = ErrorCode("note_key_invalid", status: 422)
    /// A signature by a known key (name and key ID match) that does not verify: the whole note is refused.
    public static let noteSignatureInvalid = ErrorCode("note_signature_invalid", status: 403)
    /// No signature by any known key: the note's text must not be used.
    public static let noteUnverified = ErrorCode("note_unverified", status: 403)
}

/// The signature types this code signs and verifies (signed-note's assigned identifier bytes).
public enum NoteSignatureType: UInt8, Sendable {
    /// Ed25519 over the note text.
    case ed25519 = 0x01
    /// A timestamped Ed25519 witness cosignature (cosignature/v1) over a checkpoint.
    case cosignatureV1 = 0x04
}

/// Signed-note key name rules: non-empty, no Unicode white space, no `+`; this code also refuses
/// any other control character and names over 256 bytes.
public enum NoteKeyName {
    public static let maxBytes = 256
    public static func isValid(_ name: String) -> Bool {
        guard !name.isEmpty, name.utf8.count <= maxBytes else { return false }
        return name.unicodeScalars.allSatisfy { s in
            !s.properties.isWhitespace && s != "+" && s.value >= 0x20 && s.value != 0x7f && !(0x80...0x9f).contains(s.value)
        }
    }
}

/// The public half: what a verifier of notes is configured with.
public struct NoteVerifierKey: Sendable, Equatable {
    public let name: String
    public let type: NoteSignatureType
    public let publicKey: Ed25519PublicKey
    /// SHA-256(name || 0x0A || type || public key)[:4] as a big-endian integer.
    public let keyID: UInt32

    public init(name: String, type: NoteSignatureType = .ed25519, publicKey: Ed25519PublicKey) throws {
        guard NoteKeyName.isValid(name) else {
            throw VouchError(.noteKeyInvalid, "a note key name is non-empty, without spaces, plus signs or control characters", context: ["name": name])
        }
        self.name = name
        self.type = type
        self.publicKey = publicKey
        keyID = NoteVerifierKey.keyID(name: name, type: type, publicKey: publicKey.rawRepresentation)
    }

    static func keyID(name: String, type: NoteSignatureType, publicKey: [UInt8]) -> UInt32 {
        let h = Crypto.sha256(Array(name.utf8) + [0x0a, type.rawValue] + publicKey)
        return h.prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// Parses `name+hash+base64(type || key)`; the hash must be the key ID of the name and key.
    public init(vkey: String) throws {
        let parts = try NoteKeyEncoding.split(vkey, fields: 2, what: "verifier key")
        let (type, key) = try NoteKeyEncoding.typedKey(parts.key, what: "verifier key")
        try self.init(name: parts.name, type: type, publicKey: try Ed25519PublicKey(rawRepresentation: key))
        try NoteKeyEncoding.checkHash(parts.hash, keyID, name: name)
    }

    /// The vkey text.
    public var vkey: String {
        "\(name)+\(NoteKeyEncoding.hex(keyID))+\(Base64.encode([type.rawValue] + publicKey.rawRepresentation))"
    }
}

/// The private half: a name, a signature type and an Ed25519 private key.
public struct NoteSigner: Sendable {
    public let verifierKey: NoteVerifierKey
    let privateKey: Ed25519PrivateKey

    public init(name: String, type: NoteSignatureType = .ed25519, privateKey: Ed25519PrivateKey) throws {
        verifierKey = try NoteVerifierKey(name: name, type: type, publicKey: privateKey.publicKey)
        self.privateKey = privateKey
    }

    /// Parses `PRIVATE+KEY+name+hash+base64(type || seed)`.
    public init(skey: String) throws {
        let prefix = "PRIVATE+KEY+"
        guard skey.hasPrefix(prefix) else { throw VouchError(.noteKeyInvalid, "a signer key starts with PRIVATE+KEY+") }
        let parts = try NoteKeyEncoding.split(String(skey.dropFirst(prefix.count)), fields: 2, what: "signer key")
        let (type, seed) = try NoteKeyEncoding.typedKey(parts.key, what: "signer key")
        try self.init(name: parts.name, type: type, privateKey: try Ed25519PrivateKey(seed: seed))
        try NoteKeyEncoding.checkHash(parts.hash, verifierKey.keyID, name: parts.name)
    }

    public var name: String { verifierKey.name }

    /// The skey text. Secret: callers write it with mode 0600 and never log it.
    public var skey: String {
        get throws {
            "PRIVATE+KEY+\(name)+\(NoteKeyEncoding.hex(verifierKey.keyID))+\(Base64.encode([verifierKey.type.rawValue] + (try privateKey.seed)))"
        }
    }
}

enum NoteKeyEncoding {
    /// Bounds a key text before any work on it.
    static let maxBytes = 1024

    /// `name+hash+rest`: the name and hash end at the first two plus signs (base64 may hold more).
    static func split(_ text: String, fields: Int, what: String) throws -> (name: String, hash: String, key: String) {
        guard text.utf8.count <= maxBytes else { throw VouchError(.noteKeyInvalid, "the \(what) is too long") }
        let parts = text.split(separator: "+", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw VouchError(.noteKeyInvalid, "a \(what) is name+hash+key") }
        return (String(parts[0]), String(parts[1]), String(parts[2]))
    }

    /// base64(type || 32 bytes) with a type this code supports.
    static func typedKey(_ text: String, what: String) throws -> (NoteSignatureType, [UInt8]) {
        guard let bytes = try? Base64.decode(text, field: what), bytes.count == 33 else {
            throw VouchError(.noteKeyInvalid, "the \(what)'s key is not base64 of a type byte and 32 bytes")
        }
        guard let type = NoteSignatureType(rawValue: bytes[0]) else {
            throw VouchError(.noteKeyInvalid, "the \(what)'s signature type is not supported", context: ["got": "\(bytes[0])"])
        }
        return (type, Array(bytes.dropFirst()))
    }

    static func checkHash(_ hash: String, _ keyID: UInt32, name: String) throws {
        guard Hex.isLowercase(hash, length: 8...8), hash == hex(keyID) else {
            throw VouchError(.noteKeyInvalid, "the key hash is not the key ID of the name and key", context: ["name": name, "got": hash, "expected": hex(keyID)])
        }
    }

    static func hex(_ id: UInt32) -> String { Hex.encode(bytes(id)) }

    /// A key ID's four bytes, big-endian.
    static func bytes(_ id: UInt32) -> [UInt8] { [UInt8(id >> 24), UInt8(id >> 16 & 0xff), UInt8(id >> 8 & 0xff), UInt8(id & 0xff)] }
}
