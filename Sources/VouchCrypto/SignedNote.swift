import VouchCore

/// C2SP signed notes (c2sp.org/signed-note): a UTF-8 text ending in a newline, a blank line, then
/// signature lines `— NAME BASE64(key ID (4 bytes, big-endian) || signature)`. A note's text is
/// read only after verification: `UnverifiedNote` keeps it internal, `VerifiedNote` gives it.

/// One signature line of a note.
public struct NoteSignature: Sendable, Equatable {
    public let name: String
    public let keyID: UInt32
    /// The bytes after the key ID (for a cosignature: the timestamp, then the Ed25519 signature).
    public let signature: [UInt8]

    public init(name: String, keyID: UInt32, signature: [UInt8]) {
        self.name = name
        self.keyID = keyID
        self.signature = signature
    }

    /// The line, with its newline.
    public var line: String {
        "\u{2014} \(name) \(Base64.encode(NoteKeyEncoding.bytes(keyID) + signature))\n"
    }
}

/// A note as it arrived: its signatures are visible (to pick keys), its text is not.
public struct UnverifiedNote: Sendable {
    /// Bounds: the whole note, and the signature lines (the spec asks for at least 16).
    public static let defaultMaxBytes = 1 << 20
    public static let maxSignatures = 100

    let text: [UInt8]
    public let signatures: [NoteSignature]

    /// Parses `bytes` strictly: valid UTF-8, no control character but newline, the text split
    /// from the signatures at the last blank line, every signature line well formed.
    public init(_ bytes: [UInt8], maxBytes: Int = UnverifiedNote.defaultMaxBytes) throws {
        guard bytes.count <= maxBytes else {
            throw VouchError(.noteMalformed, "the note is over its size limit", context: ["max": "\(maxBytes)", "got": "\(bytes.count)"])
        }
        try SignedNote.checkText(bytes, what: "note")
        guard let blank = SignedNote.lastBlankLine(bytes) else {
            throw VouchError(.noteMalformed, "the note has no blank line before its signatures")
        }
        text = Array(bytes[...blank])
        let sigs = bytes[(blank + 2)...]
        guard sigs.last == 0x0a else { throw VouchError(.noteMalformed, "the note's signature lines do not end in a newline") }
        var parsed: [NoteSignature] = []
        for line in sigs.dropLast().split(separator: 0x0a, omittingEmptySubsequences: false) {
            guard parsed.count < UnverifiedNote.maxSignatures else {
                throw VouchError(.noteMalformed, "the note has too many signatures", context: ["max": "\(UnverifiedNote.maxSignatures)"])
            }
            parsed.append(try SignedNote.parseLine(Array(line)))
        }
        signatures = parsed
    }

    public init(_ text: String, maxBytes: Int = UnverifiedNote.defaultMaxBytes) throws {
        try self.init(Array(text.utf8), maxBytes: maxBytes)
    }

    /// Verifies against `known`: lines whose name and key ID match no known key are ignored; a
    /// line that matches one must verify, or the whole note is refused (`note_signature_invalid`);
    /// at least one known key must have signed (`note_unverified`). Names match byte for byte
    /// (their UTF-8), never by Unicode canonical equivalence as Swift's `String ==` would.
    public func verify(_ known: [NoteVerifierKey]) throws -> VerifiedNote {
        func id(_ name: String, _ keyID: UInt32) -> [UInt8] { Array(name.utf8) + [0x2b] + withUnsafeBytes(of: keyID.bigEndian, Array.init) }
        var byID: [[UInt8]: NoteVerifierKey] = [:]
        for key in known {
            let id = id(key.name, key.keyID)
            if let other = byID[id], other != key {
                throw VouchError(.invalidValue, "two verifier keys share a name and key ID", context: ["name": key.name])
            }
            byID[id] = key
        }
        var verified: [NoteVerification] = []
        for sig in signatures {
            guard let key = byID[id(sig.name, sig.keyID)] else { continue }
            guard let v = SignedNote.check(sig, text: text, key: key) else {
                throw VouchError(.noteSignatureInvalid, "a signature by a known key does not verify", context: ["name": sig.name, "keyID": NoteKeyEncoding.hex(sig.keyID)])
            }
            if !verified.contains(where: { $0.key == key }) { verified.append(v) }
        }
        guard !verified.isEmpty else {
            throw VouchError(.noteUnverified, "no known key signed the note", context: ["signers": signatures.map(\.name).joined(separator: ",")])
        }
        return VerifiedNote(text: String(decoding: text, as: UTF8.self), verifications: verified, signatures: signatures)
    }
}

/// One known key whose signature verified.
public struct NoteVerification: Sendable, Equatable {
    public let key: NoteVerifierKey
    /// For a cosignature: the time the cosigner signed (POSIX seconds); nil for plain Ed25519.
    public let timestamp: UInt64?
}

/// A note at least one known key signed, every known key's signature verified.
public struct VerifiedNote: Sendable {
    public let text: String
    public let verifications: [NoteVerification]
    /// All signature lines, known or not, in note order (to pass the note on unchanged).
    public let signatures: [NoteSignature]

    /// The names of the known keys that signed, in note order.
    public var verifiedBy: [String] { verifications.map(\.key.name) }

    /// The note with `signature` appended (a witness adding its cosignature).
    public func adding(_ signature: NoteSignature) -> String {
        SignedNote.encode(text: text, signatures: signatures + [signature])
    }
}

public enum SignedNote {
    /// `text` signed by `signers`, as note bytes (text, blank line, one line per signer).
    /// Cosigners put `timestamp` (POSIX seconds, from the caller's clock) in their signature and
    /// need it; plain Ed25519 signers take none.
    public static func sign(_ text: String, with signers: [NoteSigner], timestamp: UInt64? = nil) throws -> String {
        guard !signers.isEmpty else { throw VouchError(.invalidValue, "a note needs at least one signer") }
        return encode(text: text, signatures: try signers.map { try signature(of: text, by: $0, timestamp: timestamp) })
    }

    /// One signature line's content over `text` by `signer`.
    public static func signature(of text: String, by signer: NoteSigner, timestamp: UInt64? = nil) throws -> NoteSignature {
        let bytes = Array(text.utf8)
        try checkText(bytes, what: "note text")
        guard bytes.last == 0x0a else { throw VouchError(.noteMalformed, "a note text ends in a newline") }
        let key = signer.verifierKey
        switch key.type {
        case .ed25519:
            guard timestamp == nil else { throw VouchError(.invalidValue, "a plain Ed25519 note signature has no timestamp") }
            return NoteSignature(name: key.name, keyID: key.keyID, signature: try signer.privateKey.signature(for: bytes))
        case .cosignatureV1:
            guard let timestamp, timestamp <= UInt64(Int64.max) else {
                throw VouchError(.invalidValue, "a cosignature needs a timestamp of at most 2^63-1")
            }
            let sig = try signer.privateKey.signature(for: cosignedMessage(bytes, timestamp: timestamp))
            return NoteSignature(name: key.name, keyID: key.keyID, signature: bigEndian(timestamp) + sig)
        }
    }

    public static func encode(text: String, signatures: [NoteSignature]) -> String {
        text + "\n" + signatures.map(\.line).joined()
    }

    /// cosignature/v1's signed message: `cosignature/v1\ntime T\n` then the checkpoint body.
    static func cosignedMessage(_ text: [UInt8], timestamp: UInt64) -> [UInt8] {
        Array("cosignature/v1\ntime \(timestamp)\n".utf8) + text
    }

    /// The verification of one signature line by the key its name and ID matched; nil if it fails.
    static func check(_ sig: NoteSignature, text: [UInt8], key: NoteVerifierKey) -> NoteVerification? {
        switch key.type {
        case .ed25519:
            guard key.publicKey.isValidSignature(sig.signature, for: text) else { return nil }
            return NoteVerification(key: key, timestamp: nil)
        case .cosignatureV1:
            guard sig.signature.count == 8 + Ed25519PublicKey.signatureSize else { return nil }
            let timestamp = sig.signature.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard timestamp <= UInt64(Int64.max),
                  key.publicKey.isValidSignature(Array(sig.signature.dropFirst(8)), for: cosignedMessage(text, timestamp: timestamp)) else { return nil }
            return NoteVerification(key: key, timestamp: timestamp)
        }
    }

    /// Valid UTF-8 with no control character but newline.
    static func checkText(_ bytes: [UInt8], what: String) throws {
        if let i = bytes.firstIndex(where: { $0 < 0x20 && $0 != 0x0a }) {
            throw VouchError(.noteMalformed, "the \(what) holds a control character", context: ["offset": "\(i)"])
        }
        guard Array(String(decoding: bytes, as: UTF8.self).utf8) == bytes else {
            throw VouchError(.noteMalformed, "the \(what) is not valid UTF-8")
        }
    }

    /// The index of the newline ending the text: the first of the last two consecutive newlines.
    static func lastBlankLine(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 2 else { return nil }
        var i = bytes.count - 2
        while i >= 0 {
            if bytes[i] == 0x0a && bytes[i + 1] == 0x0a { return i }
            i -= 1
        }
        return nil
    }

    /// `— NAME BASE64` (without its newline).
    static func parseLine(_ line: [UInt8]) throws -> NoteSignature {
        let dash: [UInt8] = [0xe2, 0x80, 0x94, 0x20]
        guard line.starts(with: dash) else { throw VouchError(.noteMalformed, "a signature line starts with an em dash and a space") }
        let rest = line.dropFirst(dash.count)
        guard let space = rest.firstIndex(of: 0x20) else { throw VouchError(.noteMalformed, "a signature line is name, space, signature") }
        let name = String(decoding: rest[..<space], as: UTF8.self)
        guard NoteKeyName.isValid(name) else { throw VouchError(.noteMalformed, "a signature line's key name is invalid") }
        guard let raw = try? Base64.decode(String(decoding: rest[(space + 1)...], as: UTF8.self), field: "signature"), raw.count >= 5 else {
            throw VouchError(.noteMalformed, "a signature is base64 of a key ID and at least one byte", context: ["name": name])
        }
        let id = raw.prefix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return NoteSignature(name: name, keyID: id, signature: Array(raw.dropFirst(4)))
    }

    static func bigEndian(_ v: UInt64) -> [UInt8] { (0..<8).reversed().map { UInt8(v >> (8 * UInt64($0)) & 0xff) } }
}
