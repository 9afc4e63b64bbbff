internal import COpenSSL
import Synchronization
import VouchTPMWire

/// Initialised verify operations (EVP_PKEY_CTX after EVP_PKEY_verify_init, padding and digest
/// set) kept per key, scheme and hash, so a verification is one digest and one EVP_PKEY_verify.
/// Setting a context up fetches the signature algorithm and digest from the provider (locked
/// name lookups) — on the re-attestation path that cost as much as the RSA arithmetic itself.
/// A context is used by one thread at a time: taken from the pool, returned after a verify that
/// completed (1 or 0), freed after an error, so a context in an odd state is never reused.
final class VerifyContextPool: @unchecked Sendable {
    /// An idle context; only ever handed to one thread at a time.
    private struct Context: @unchecked Sendable { let ctx: OpaquePointer }
    /// Enough for the broker's concurrent verifiers; more are created on demand and freed.
    private static let maxIdle = 8
    private let idle = Mutex<[Int: [Context]]>([:])   // keyed by `slot(scheme, hash)`

    deinit {
        idle.withLock { pools in
            for c in pools.values.joined() { EVP_PKEY_CTX_free(c.ctx) }
        }
    }

    /// Runs `body` with a verify context for `pkey`, or returns nil if one cannot be set up.
    func with(pkey: OpaquePointer, scheme: SignatureScheme, hash: HashAlg, _ body: (OpaquePointer) -> Int32) -> Int32? {
        let key = Self.slot(scheme, hash)
        let reused = idle.withLock { $0[key]?.popLast() }?.ctx
        guard let ctx = reused ?? Self.make(pkey: pkey, scheme: scheme, hash: hash) else { return nil }
        let rc = body(ctx)
        let kept = (rc == 1 || rc == 0) && idle.withLock { pools in
            guard pools[key, default: []].count < Self.maxIdle else { return false }
            pools[key, default: []].append(Context(ctx: ctx))
            return true
        }
        if !kept { EVP_PKEY_CTX_free(ctx) }
        return rc
    }

    /// A small integer per (scheme, hash), cheaper to hash than the String-backed enums.
    private static func slot(_ scheme: SignatureScheme, _ hash: HashAlg) -> Int {
        let s = switch scheme { case .rsassa: 0; case .rsapss: 1; case .ecdsa: 2 }
        return s << 16 | Int(hash.tpmAlg.rawValue)
    }

    private static func make(pkey: OpaquePointer, scheme: SignatureScheme, hash: HashAlg) -> OpaquePointer? {
        guard let ctx = EVP_PKEY_CTX_new_from_pkey(nil, pkey, nil) else { return nil }
        var ok = EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_CTX_set_signature_md(ctx, evpMD(hash)) == 1
        switch scheme {
        case .rsassa:
            ok = ok && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1
        case .rsapss:
            ok = ok && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1
                && EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, evpMD(hash)) == 1
                && EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_AUTO) == 1
        case .ecdsa:
            break
        }
        guard ok else {
            EVP_PKEY_CTX_free(ctx)
            ERR_clear_error()
            return nil
        }
        return ctx
    }
}
