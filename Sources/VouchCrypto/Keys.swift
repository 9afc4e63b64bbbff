internal import COpenSSL
internal import CVouchShims
import VouchCore
import VouchTPMWire

/// Signature schemes an attestation key or agent key may use.
public enum SignatureScheme: String, Sendable, Codable {
    case rsassa, rsapss, ecdsa
}

/// A public key (EVP_PKEY). Immutable after creation; OpenSSL allows concurrent verify on one key.
public final class PublicKey: @unchecked Sendable {
    let pkey: OpaquePointer
    private let verifyContexts = VerifyContextPool()
    /// The key type, looked up once (EVP_PKEY_is_a is a name lookup; verification asks per call).
    public let isRSA: Bool
    public let isEC: Bool
    /// The SubjectPublicKeyInfo, DER, when this key was built here from its parameters (an EC
    /// point on a named curve, RSA n and e): written by `Self.canonicalSPKI`, the one encoding
    /// `canonicalSPKIDER` gives and i2d_PUBKEY writes for such a key. `spkiDER` returns it without
    /// OpenSSL 3's encoder (a provider fetch per call, several % of an enrollment's CPU).
    private let knownSPKI: [UInt8]?

    init(owning pkey: OpaquePointer, canonicalSPKI: [UInt8]? = nil) {
        self.pkey = pkey
        knownSPKI = canonicalSPKI
        isRSA = EVP_PKEY_is_a(pkey, "RSA") == 1
        isEC = EVP_PKEY_is_a(pkey, "EC") == 1
    }
    deinit { EVP_PKEY_free(pkey) }

    /// Builds the key a TPM public area describes (RSA modulus/exponent or ECC point).
    public convenience init(tpmPublic: TPMTPublic) throws {
        switch tpmPublic.key {
        case let .rsa(modulus, exponent, _):
            try self.init(owning: PublicKey.fromParams(type: "RSA") { bld in
                let n = try notNil(BN_bin2bn(modulus, Int32(modulus.count), nil), "BN_bin2bn")
                let e = try notNil(BN_new(), "BN_new")
                try check(BN_set_word(e, UInt(exponent)), "BN_set_word")
                try check(OSSL_PARAM_BLD_push_BN(bld, ParamName.n, n), "OSSL_PARAM_BLD_push_BN")
                try check(OSSL_PARAM_BLD_push_BN(bld, ParamName.e, e), "OSSL_PARAM_BLD_push_BN")
                return { BN_free(n); BN_free(e) }
            })
        case .ecc:
            try self.init(ecPoint: tpmPublic.key)
        }
    }

    /// An EC public key from a point (named curve, affine x and y), as a TPM or a TDX quote
    /// carries it. OpenSSL checks the point is on the curve. Built from parameters, not from an
    /// encoded SubjectPublicKeyInfo: OpenSSL 3.0's decoders cost about four times as much.
    public convenience init(ecPoint key: TPMTPublic.Key) throws {
        switch key {
        case .rsa: throw VouchError(.invalidValue, "not an EC point")
        case let .ecc(curve, x, y):
            let group: String
            switch curve {
            case .nistP256: group = "prime256v1"
            case .nistP384: group = "secp384r1"
            case .nistP521: group = "secp521r1"
            }
            let point = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: 1 + x.count + y.count)
            _ = point.initialize(from: [0x04] + x + y)
            let groupC = strdup(group)!
            // OpenSSL takes only an octet string of the curve's length, so a key built here has
            // full-width coordinates; the guard keeps the cache to exactly that form.
            let spki = x.count == curve.coordinateSize && y.count == curve.coordinateSize
                ? PublicKey.namedCurves.first { $0.curve == curve }.map { PublicKey.canonicalSPKI(ecCurveOID: $0.oid, x: x, y: y) } : nil
            try self.init(owning: PublicKey.fromParams(type: "EC") { bld in
                try check(OSSL_PARAM_BLD_push_utf8_string(bld, ParamName.group, groupC, 0), "OSSL_PARAM_BLD_push_utf8_string")
                try check(OSSL_PARAM_BLD_push_octet_string(bld, ParamName.pub, point.baseAddress, point.count), "OSSL_PARAM_BLD_push_octet_string")
                return { point.deallocate(); free(groupC) }
            }, canonicalSPKI: spki)
        }
    }

    /// An RSA public key from its big-endian modulus and exponent (as in a JWK's `n` and `e`).
    public convenience init(rsaModulus modulus: [UInt8], exponent: [UInt8]) throws {
        guard !modulus.isEmpty, modulus.count <= 1024, !exponent.isEmpty, exponent.count <= 8 else {
            throw VouchError(.invalidValue, "RSA modulus or exponent has an impossible length")
        }
        try self.init(owning: PublicKey.fromParams(type: "RSA") { bld in
            let n = try notNil(BN_bin2bn(modulus, Int32(modulus.count), nil), "BN_bin2bn")
            let e = try notNil(BN_bin2bn(exponent, Int32(exponent.count), nil), "BN_bin2bn")
            try check(OSSL_PARAM_BLD_push_BN(bld, ParamName.n, n), "OSSL_PARAM_BLD_push_BN")
            try check(OSSL_PARAM_BLD_push_BN(bld, ParamName.e, e), "OSSL_PARAM_BLD_push_BN")
            return { BN_free(n); BN_free(e) }
        }, canonicalSPKI: PublicKey.canonicalSPKI(rsaModulus: modulus, exponent: exponent))
    }

    /// id-ecPublicKey and rsaEncryption, DER (tag and length included).
    static let ecPublicKeyOID = DER.objectIdentifier([1, 2, 840, 10045, 2, 1])
    static let rsaEncryptionOID = DER.objectIdentifier([1, 2, 840, 113549, 1, 1, 1])
    /// The named curves and their OIDs, DER (prime256v1, secp384r1, secp521r1).
    static let namedCurves: [(curve: ECCCurve, oid: [UInt8])] = [
        (.nistP256, DER.objectIdentifier([1, 2, 840, 10045, 3, 1, 7])), (.nistP384, DER.objectIdentifier([1, 3, 132, 0, 34])),
        (.nistP521, DER.objectIdentifier([1, 3, 132, 0, 35])),
    ]

    /// SubjectPublicKeyInfo of an EC key: id-ecPublicKey, the named curve, the uncompressed point.
    static func canonicalSPKI(ecCurveOID: [UInt8], x: [UInt8], y: [UInt8]) -> [UInt8] {
        DER.sequence([DER.sequence([ecPublicKeyOID, ecCurveOID]), DER.bitString(bytes: [0x04] + x + y)])
    }

    /// SubjectPublicKeyInfo of an RSA key: rsaEncryption with NULL parameters, RSAPublicKey
    /// { n, e } as minimal INTEGERs.
    static func canonicalSPKI(rsaModulus: [UInt8], exponent: [UInt8]) -> [UInt8] {
        DER.sequence([DER.sequence([rsaEncryptionOID, [0x05, 0x00]]),
                      DER.bitString(bytes: DER.sequence([DER.unsignedInteger(rsaModulus), DER.unsignedInteger(exponent)]))])
    }

    /// True when `spkiDER` is the canonical encoding written here (see `knownSPKI`).
    var spkiIsCanonical: Bool { knownSPKI != nil }

    /// This key in its canonical form: itself when it was built from its parameters, otherwise
    /// decoded from `canonicalSPKIDER` (what an issued certificate carries).
    public var canonicalKey: PublicKey {
        get throws { knownSPKI != nil ? self : try PublicKey(spkiDER: try canonicalSPKIDER) }
    }

    /// Runs `push` to fill a parameter builder, converts to params (while the pushed buffers are
    /// still alive), then frees them through the returned cleanup.
    private static func fromParams(type: String, _ push: (OpaquePointer) throws -> () -> Void) throws -> OpaquePointer {
        let bld = try notNil(OSSL_PARAM_BLD_new(), "OSSL_PARAM_BLD_new")
        defer { OSSL_PARAM_BLD_free(bld) }
        let cleanup = try push(bld)
        defer { cleanup() }
        let params = try notNil(OSSL_PARAM_BLD_to_param(bld), "OSSL_PARAM_BLD_to_param")
        defer { OSSL_PARAM_free(params) }
        let ctx = try notNil(EVP_PKEY_CTX_new_from_name(nil, type, nil), "EVP_PKEY_CTX_new_from_name")
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_fromdata_init(ctx), "EVP_PKEY_fromdata_init")
        var pkey: OpaquePointer? = nil
        try check(EVP_PKEY_fromdata(ctx, &pkey, vouch_EVP_PKEY_PUBLIC_KEY, params), "EVP_PKEY_fromdata")
        return try notNil(pkey, "EVP_PKEY_fromdata")
    }

    /// Parses a DER SubjectPublicKeyInfo.
    public convenience init(spkiDER: [UInt8]) throws {
        let key: OpaquePointer? = spkiDER.withUnsafeBufferPointer { buf in
            var p: UnsafePointer<UInt8>? = buf.baseAddress
            return d2i_PUBKEY(nil, &p, buf.count)
        }
        self.init(owning: try notNil(key, "d2i_PUBKEY"))
    }

    /// Parses a PEM `PUBLIC KEY`.
    public convenience init(pem: String) throws {
        let bio = try MemoryBIO(Array(pem.utf8))
        self.init(owning: try notNil(PEM_read_bio_PUBKEY(bio.bio, nil, nil, nil), "PEM_read_bio_PUBKEY"))
    }

    public var spkiDER: [UInt8] {
        get throws {
            if let knownSPKI { return knownSPKI }
            return try derEncode("i2d_PUBKEY") { i2d_PUBKEY(pkey, $0) }
        }
    }

    public var pem: String {
        get throws {
            let bio = try MemoryBIO()
            try check(PEM_write_bio_PUBKEY(bio.bio, pkey), "PEM_write_bio_PUBKEY")
            return bio.string
        }
    }

    public var bits: Int { Int(EVP_PKEY_get_bits(pkey)) }

    /// For an RSA key, whether its public exponent is odd and at least 3: with e = 1 (or an even
    /// e) a "signature" proves nothing about a private key. True for any other key.
    public var hasSoundRSAExponent: Bool {
        guard isRSA else { return true }
        var e: OpaquePointer?
        guard EVP_PKEY_get_bn_param(pkey, "e", &e) == 1, let e else { return false }
        defer { BN_free(e) }
        return BN_is_odd(e) == 1 && BN_is_one(e) == 0
    }

    /// The DER SubjectPublicKeyInfo in one canonical form, whatever encoding the key came in: RSA
    /// as DER (minimal INTEGERs, NULL parameters); EC as a named curve with the uncompressed point.
    /// Two encodings of the same key give the same bytes.
    public var canonicalSPKIDER: [UInt8] {
        get throws {
            if let knownSPKI { return knownSPKI }
            guard isEC else { return try spkiDER }
            var nameBuf = [CChar](repeating: 0, count: 64)
            var nameLen = 0
            guard EVP_PKEY_get_utf8_string_param(pkey, "group", &nameBuf, nameBuf.count, &nameLen) == 1 else { throw opensslError("EVP_PKEY_get_utf8_string_param(group)") }
            let group = String(decoding: nameBuf.prefix(nameLen).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let curve: ECCCurve
            switch group {
            case "prime256v1", "P-256", "secp256r1": curve = .nistP256
            case "secp384r1", "P-384": curve = .nistP384
            case "secp521r1", "P-521": curve = .nistP521
            default: throw VouchError(.unsupported, "EC curve is not supported", context: ["got": group])
            }
            func coordinate(_ name: String) throws -> [UInt8] {
                var bn: OpaquePointer? = nil
                guard EVP_PKEY_get_bn_param(pkey, name, &bn) == 1, let bn else { throw opensslError("EVP_PKEY_get_bn_param(\(name))") }
                defer { BN_free(bn) }
                var out = [UInt8](repeating: 0, count: curve.coordinateSize)
                guard BN_bn2binpad(bn, &out, Int32(out.count)) == Int32(out.count) else { throw opensslError("BN_bn2binpad") }
                return out
            }
            // Uncompressed point on the named curve, as a TPM public area would give it.
            let point = TPMTPublic.Key.ecc(curve: curve, x: try coordinate("qx"), y: try coordinate("qy"))
            return try PublicKey(ecPoint: point).spkiDER
        }
    }

    public func isEqual(to other: PublicKey) -> Bool { EVP_PKEY_eq(pkey, other.pkey) == 1 }

    /// For an EC key: its curve's JOSE name and the affine coordinates (for a JWK).
    public var ecJWKParameters: (crv: String, x: [UInt8], y: [UInt8])? {
        guard isEC else { return nil }
        var len = 0
        guard EVP_PKEY_get_octet_string_param(pkey, "pub", nil, 0, &len) == 1, len > 1 else { ERR_clear_error(); return nil }
        var buf = [UInt8](repeating: 0, count: len)
        guard EVP_PKEY_get_octet_string_param(pkey, "pub", &buf, len, &len) == 1, buf.first == 0x04 else { ERR_clear_error(); return nil }
        let n = (len - 1) / 2
        let crv = n == 32 ? "P-256" : n == 48 ? "P-384" : n == 66 ? "P-521" : "?"
        return (crv, Array(buf[1...n]), Array(buf[(1 + n)...(2 * n)]))
    }

    /// Verifies `signature` over `message`. Returns true only when OpenSSL says exactly 1;
    /// every error, mismatch of key type and scheme, or malformed signature is false.
    /// For `.ecdsa`, `signature` is a DER ECDSA-Sig-Value.
    public func verify(message: [UInt8], signature: [UInt8], scheme: SignatureScheme, hash: HashAlg) -> Bool {
        switch scheme {
        case .rsassa, .rsapss: guard isRSA else { return false }
        case .ecdsa: guard isEC else { return false }
        }
        // Hash, then verify the digest on a pooled, initialised context (see VerifyContextPool):
        // the same checks as EVP_DigestVerify with `hash`, without the per-call provider fetches.
        let digest = Crypto.digest(hash, message)
        let rc = verifyContexts.with(pkey: pkey, scheme: scheme, hash: hash) { ctx in
            EVP_PKEY_verify(ctx, signature, signature.count, digest, digest.count)
        }
        ERR_clear_error()
        return rc == 1
    }

    /// RSA-OAEP encryption with a label (the TPM's label convention includes the final zero octet).
    public func rsaOAEPEncrypt(_ plaintext: [UInt8], hash: HashAlg, label: [UInt8]) throws -> [UInt8] {
        guard isRSA else { throw VouchError(.invalidValue, "OAEP needs an RSA key") }
        let ctx = try notNil(EVP_PKEY_CTX_new_from_pkey(nil, pkey, nil), "EVP_PKEY_CTX_new_from_pkey")
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_encrypt_init(ctx), "EVP_PKEY_encrypt_init")
        try check(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), "EVP_PKEY_CTX_set_rsa_padding")
        try check(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, evpMD(hash)), "EVP_PKEY_CTX_set_rsa_oaep_md")
        try check(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, evpMD(hash)), "EVP_PKEY_CTX_set_rsa_mgf1_md")
        // set0 takes ownership of the label: hand it an OpenSSL allocation.
        let owned = try notNil(vouch_openssl_malloc(label.count), "OPENSSL_malloc")
        owned.copyMemory(from: label, byteCount: label.count)
        guard EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, owned, Int32(label.count)) > 0 else {
            vouch_openssl_free(owned)
            throw opensslError("EVP_PKEY_CTX_set0_rsa_oaep_label")
        }
        var outLen = 0
        try check(EVP_PKEY_encrypt(ctx, nil, &outLen, plaintext, plaintext.count), "EVP_PKEY_encrypt")
        var out = [UInt8](repeating: 0, count: outLen)
        try check(EVP_PKEY_encrypt(ctx, &out, &outLen, plaintext, plaintext.count), "EVP_PKEY_encrypt")
        return Array(out.prefix(outLen))
    }
}

/// OSSL_PARAM_BLD keeps the key-name pointers until OSSL_PARAM_BLD_to_param: they must outlive
/// the call, so they are allocated once and never freed.
private enum ParamName {
    nonisolated(unsafe) static let n = UnsafePointer(strdup("n")!)
    nonisolated(unsafe) static let e = UnsafePointer(strdup("e")!)
    nonisolated(unsafe) static let group = UnsafePointer(strdup("group")!)
    nonisolated(unsafe) static let pub = UnsafePointer(strdup("pub")!)
}

/// DER ECDSA-Sig-Value from the raw r and s a TPM returns (big-endian magnitudes), as
/// i2d_ECDSA_SIG writes it: SEQUENCE { INTEGER r, INTEGER s }, each minimal (leading zeros
/// dropped, one added back when the high bit is set). Written directly: two BIGNUMs and an
/// encoder per call were about 2 % of a warm TDX quote verification. Never throws (the
/// signature is kept for its callers).
public func ecdsaSignatureDER(r: [UInt8], s: [UInt8]) throws -> [UInt8] {
    DER.sequence([DER.unsignedInteger(r), DER.unsignedInteger(s)])
}

/// A private key (EVP_PKEY) for the CA or an agent. Never logged; PEM export is explicit.
public final class PrivateKey: @unchecked Sendable {
    let pkey: OpaquePointer

    init(owning pkey: OpaquePointer) { self.pkey = pkey }
    deinit { EVP_PKEY_free(pkey) }

    public enum KeyType: String, Sendable { case p256 = "P-256", p384 = "P-384", p521 = "P-521" }

    /// Generates a fresh EC key on `type`'s curve.
    public static func generate(_ type: KeyType = .p256) throws -> PrivateKey {
        let ctx = try notNil(EVP_PKEY_CTX_new_from_name(nil, "EC", nil), "EVP_PKEY_CTX_new_from_name")
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_keygen_init(ctx), "EVP_PKEY_keygen_init")
        try check(EVP_PKEY_CTX_set_group_name(ctx, type.rawValue), "EVP_PKEY_CTX_set_group_name")
        var pkey: OpaquePointer? = nil
        try check(EVP_PKEY_generate(ctx, &pkey), "EVP_PKEY_generate")
        return PrivateKey(owning: try notNil(pkey, "EVP_PKEY_generate"))
    }

    public convenience init(pem: String) throws {
        let bio = try MemoryBIO(Array(pem.utf8))
        // No password callback that could prompt on a terminal: an encrypted key is refused.
        self.init(owning: try notNil(PEM_read_bio_PrivateKey(bio.bio, nil, { _, _, _, _ in 0 }, nil), "PEM_read_bio_PrivateKey"))
    }

    /// True when this private key and `publicKey` are one key pair: a signature made with it
    /// verifies with that key (catches a key file whose parts do not belong together).
    public func isPair(of publicKey: PublicKey) -> Bool {
        let probe = Array("vouch key pair check".utf8)
        guard let signature = try? sign(probe) else { return false }
        return publicKey.verify(message: probe, signature: signature, scheme: .ecdsa, hash: .sha256)
    }

    /// PKCS#8 PEM. Callers write it with mode 0600.
    public var pem: String {
        get throws {
            let bio = try MemoryBIO()
            try check(PEM_write_bio_PrivateKey(bio.bio, pkey, nil, nil, 0, nil, nil), "PEM_write_bio_PrivateKey")
            return bio.string
        }
    }

    /// PKCS#8 DER (what the SPIFFE Workload API hands a workload as its SVID key).
    public var pkcs8DER: [UInt8] {
        get throws {
            let body = try pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
            return try Base64.decode(body, field: "PKCS#8")
        }
    }

    public var publicKey: PublicKey {
        get throws { try PublicKey(spkiDER: try derEncode("i2d_PUBKEY") { i2d_PUBKEY(pkey, $0) }) }
    }

    /// ECDH (SP 800-56A, cofactor 1 on the NIST curves) with `peer`: the x-coordinate of the shared
    /// point, left-padded to the curve's field size.
    public func ecdhSharedX(with peer: PublicKey) throws -> [UInt8] {
        guard peer.isEC, EVP_PKEY_is_a(pkey, "EC") == 1 else { throw VouchError(.invalidValue, "ECDH needs two EC keys") }
        let ctx = try notNil(EVP_PKEY_CTX_new_from_pkey(nil, pkey, nil), "EVP_PKEY_CTX_new_from_pkey")
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_derive_init(ctx), "EVP_PKEY_derive_init")
        try check(EVP_PKEY_derive_set_peer(ctx, peer.pkey), "EVP_PKEY_derive_set_peer")
        var len = 0
        try check(EVP_PKEY_derive(ctx, nil, &len), "EVP_PKEY_derive")
        var out = [UInt8](repeating: 0, count: len)
        try check(EVP_PKEY_derive(ctx, &out, &len), "EVP_PKEY_derive")
        return Array(out.prefix(len))
    }

    /// Signs `message` (hashed with `hash`); ECDSA output is DER.
    public func sign(_ message: [UInt8], hash: HashAlg = .sha256) throws -> [UInt8] {
        let md = try notNil(EVP_MD_CTX_new(), "EVP_MD_CTX_new")
        defer { EVP_MD_CTX_free(md) }
        try check(EVP_DigestSignInit(md, nil, evpMD(hash), nil, pkey), "EVP_DigestSignInit")
        var len = 0
        try check(EVP_DigestSign(md, nil, &len, message, message.count), "EVP_DigestSign")
        var out = [UInt8](repeating: 0, count: len)
        try check(EVP_DigestSign(md, &out, &len, message, message.count), "EVP_DigestSign")
        return Array(out.prefix(len))
    }

    /// Signs a digest already made with `hash` (what a TPM's TPM2_Sign takes); ECDSA output is
    /// DER, RSA is PKCS #1 v1.5. The same signature `sign` makes over the message.
    public func signDigest(_ digest: [UInt8], hash: HashAlg = .sha256) throws -> [UInt8] {
        guard digest.count == Crypto.digest(hash, []).count else {
            throw VouchError(.invalidValue, "the digest's length is not \(hash.rawValue)'s", context: ["got": "\(digest.count)"])
        }
        let ctx = try notNil(EVP_PKEY_CTX_new_from_pkey(nil, pkey, nil), "EVP_PKEY_CTX_new_from_pkey")
        defer { EVP_PKEY_CTX_free(ctx) }
        try check(EVP_PKEY_sign_init(ctx), "EVP_PKEY_sign_init")
        try check(EVP_PKEY_CTX_set_signature_md(ctx, evpMD(hash)), "EVP_PKEY_CTX_set_signature_md")
        var len = 0
        try check(EVP_PKEY_sign(ctx, nil, &len, digest, digest.count), "EVP_PKEY_sign")
        var out = [UInt8](repeating: 0, count: len)
        try check(EVP_PKEY_sign(ctx, &out, &len, digest, digest.count), "EVP_PKEY_sign")
        return Array(out.prefix(len))
    }
}
