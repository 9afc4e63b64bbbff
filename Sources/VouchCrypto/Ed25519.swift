internal import COpenSSL
import VouchCore

/// Pure Ed25519 (RFC 8032, no prehash, no context) through OpenSSL 3's ED25519 EVP_PKEY: the
/// keys of signed notes (the transparency log's key, witnesses' cosigning keys). Kept apart from
/// `PrivateKey`/`PublicKey`, whose signatures always hash first with a chosen digest.

/// An Ed25519 public key: its 32-byte RFC 8032 encoding and the OpenSSL key built from it.
public final class Ed25519PublicKey: @unchecked Sendable, Equatable {
    public static let size = 32
    public static let signatureSize = 64
    let pkey: OpaquePointer
    /// The 32-byte encoding (RFC 8032 section 5.1.2).
    public let rawRepresentation: [UInt8]

    /// A key from its 32 bytes; any other length is refused.
    public init(rawRepresentation raw: [UInt8]) throws {
        guard raw.count == Ed25519PublicKey.size else {
            throw VouchError(.invalidValue, "an Ed25519 public key is 32 bytes", context: ["got": "\(raw.count)"])
        }
        pkey = try notNil(EVP_PKEY_new_raw_public_key_ex(nil, "ED25519", nil, raw, raw.count), "EVP_PKEY_new_raw_public_key_ex")
        rawRepresentation = raw
    }
    deinit { EVP_PKEY_free(pkey) }

    /// True only when OpenSSL says exactly 1: a signature of another length, a non-canonical
    /// scalar or a point that does not decode is false.
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        guard signature.count == Ed25519PublicKey.signatureSize, let md = EVP_MD_CTX_new() else { ERR_clear_error(); return false }
        defer { EVP_MD_CTX_free(md); ERR_clear_error() }
        guard EVP_DigestVerifyInit(md, nil, nil, nil, pkey) == 1 else { return false }
        return EVP_DigestVerify(md, signature, signature.count, message, message.count) == 1
    }

    public static func == (a: Ed25519PublicKey, b: Ed25519PublicKey) -> Bool { a.rawRepresentation == b.rawRepresentation }
}

/// An Ed25519 private key. Never logged; its seed and PEM are read only when asked for.
public final class Ed25519PrivateKey: @unchecked Sendable {
    let pkey: OpaquePointer
    public let publicKey: Ed25519PublicKey

    private init(owning pkey: OpaquePointer) throws {
        self.pkey = pkey
        do {
            var len = Ed25519PublicKey.size
            var raw = [UInt8](repeating: 0, count: len)
            try check(EVP_PKEY_get_raw_public_key(pkey, &raw, &len), "EVP_PKEY_get_raw_public_key")
            publicKey = try Ed25519PublicKey(rawRepresentation: Array(raw.prefix(len)))
        } catch {
            EVP_PKEY_free(pkey)
            throw error
        }
    }
    deinit { EVP_PKEY_free(pkey) }

    /// A fresh key from OpenSSL's random generator.
    public static func generate() throws -> Ed25519PrivateKey {
        let ctx = try notNil(EVP_PKEY_CTX_new_from_name(nil, "ED25519", nil), "EVP_PKEY_CTX_new_from_name")
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_keygen_init(ctx), "EVP_PKEY_keygen_init")
        var pkey: OpaquePointer? = nil
        try check(EVP_PKEY_generate(ctx, &pkey), "EVP_PKEY_generate")
        return try Ed25519PrivateKey(owning: try notNil(pkey, "EVP_PKEY_generate"))
    }

    /// The key whose 32-byte seed (RFC 8032's private key) is `seed`.
    public convenience init(seed: [UInt8]) throws {
        guard seed.count == 32 else {
            throw VouchError(.invalidValue, "an Ed25519 seed is 32 bytes", context: ["got": "\(seed.count)"])
        }
        try self.init(owning: try notNil(EVP_PKEY_new_raw_private_key_ex(nil, "ED25519", nil, seed, seed.count), "EVP_PKEY_new_raw_private_key_ex"))
    }

    /// A PKCS#8 PEM `PRIVATE KEY` holding an Ed25519 key; any other key type is refused, and so
    /// is an encrypted key (no password prompt).
    public convenience init(pem: String) throws {
        let bio = try MemoryBIO(Array(pem.utf8))
        let pkey = try notNil(PEM_read_bio_PrivateKey(bio.bio, nil, { _, _, _, _ in 0 }, nil), "PEM_read_bio_PrivateKey")
        guard EVP_PKEY_is_a(pkey, "ED25519") == 1 else {
            EVP_PKEY_free(pkey)
            throw VouchError(.invalidValue, "the private key is not an Ed25519 key")
        }
        try self.init(owning: pkey)
    }

    /// PKCS#8 PEM. Callers write it with mode 0600.
    public var pem: String {
        get throws {
            let bio = try MemoryBIO()
            try check(PEM_write_bio_PrivateKey(bio.bio, pkey, nil, nil, 0, nil, nil), "PEM_write_bio_PrivateKey")
            return bio.string
        }
    }

    /// The 32-byte seed.
    public var seed: [UInt8] {
        get throws {
            var len = 32
            var raw = [UInt8](repeating: 0, count: len)
            try check(EVP_PKEY_get_raw_private_key(pkey, &raw, &len), "EVP_PKEY_get_raw_private_key")
            return Array(raw.prefix(len))
        }
    }

    /// The 64-byte signature of `message` (deterministic: one message, one signature).
    public func signature(for message: [UInt8]) throws -> [UInt8] {
        let md = try notNil(EVP_MD_CTX_new(), "EVP_MD_CTX_new")
        defer { EVP_MD_CTX_free(md) }
        try check(EVP_DigestSignInit(md, nil, nil, nil, pkey), "EVP_DigestSignInit")
        var len = Ed25519PublicKey.signatureSize
        var out = [UInt8](repeating: 0, count: len)
        try check(EVP_DigestSign(md, &out, &len, message, message.count), "EVP_DigestSign")
        return Array(out.prefix(len))
    }
}
