internal import COpenSSL
import Foundation
internal import CVouchShims
import VouchCore
import VouchTPMWire

/// Message digests, HMAC and randomness.
public enum Crypto {
    public static func digest(_ alg: HashAlg, _ data: [UInt8]) -> [UInt8] {
        data.withUnsafeBytes { digest(alg, $0) }
    }

    /// The digest of raw bytes, written straight into the result (no intermediate buffer), on
    /// this thread's reusable digest context (see `threadDigestContext`).
    public static func digest(_ alg: HashAlg, _ data: UnsafeRawBufferPointer) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Int(EVP_MAX_MD_SIZE)) { out, count in
            var len: UInt32 = 0
            var ok: Int32 = 0
            if let ctx = threadDigestContext() {
                ok = EVP_DigestInit_ex2(ctx, evpMD(alg), nil) == 1 && EVP_DigestUpdate(ctx, data.baseAddress, data.count) == 1
                    ? EVP_DigestFinal_ex(ctx, out.baseAddress, &len) : 0
            }
            if ok != 1 { ok = EVP_Digest(data.baseAddress, data.count, out.baseAddress, &len, evpMD(alg), nil) }
            // Digests only fail on allocation failure; a wrong digest must never be returned.
            precondition(ok == 1 && Int(len) == alg.digestSize, "EVP_Digest failed")
            count = Int(len)
        }
    }

    public static func sha256(_ data: [UInt8]) -> [UInt8] { digest(.sha256, data) }

    public static func hmac(_ alg: HashAlg, key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        let r = key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                HMAC(evpMD(alg), k.baseAddress, Int32(k.count), d.baseAddress?.assumingMemoryBound(to: UInt8.self), d.count, &out, &len)
            }
        }
        precondition(r != nil, "HMAC failed")
        return Array(out.prefix(Int(len)))
    }

    /// Cryptographically secure random bytes from OpenSSL's DRBG.
    public static func randomBytes(_ n: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        try check(RAND_bytes(&out, Int32(n)), "RAND_bytes")
        return out
    }

    /// AES-CFB encryption with a zero IV, as TPM credential protection uses (Part 1, 24.4).
    public static func aesCFBEncrypt(key: [UInt8], _ plaintext: [UInt8]) throws -> [UInt8] {
        try aesCFB(key: key, plaintext, encrypt: true)
    }

    public static func aesCFBDecrypt(key: [UInt8], _ ciphertext: [UInt8]) throws -> [UInt8] {
        try aesCFB(key: key, ciphertext, encrypt: false)
    }

    private static func aesCFB(key: [UInt8], _ input: [UInt8], encrypt: Bool) throws -> [UInt8] {
        let cipher: OpaquePointer?
        switch key.count {
        case 16: cipher = EVP_aes_128_cfb128()
        case 24: cipher = EVP_aes_192_cfb128()
        case 32: cipher = EVP_aes_256_cfb128()
        default: throw VouchError(.invalidValue, "AES key must be 128, 192 or 256 bits", context: ["got": "\(key.count * 8)"])
        }
        let ctx = try notNil(EVP_CIPHER_CTX_new(), "EVP_CIPHER_CTX_new")
        defer { EVP_CIPHER_CTX_free(ctx) }
        let iv = [UInt8](repeating: 0, count: 16)
        try check(EVP_CipherInit_ex(ctx, cipher, nil, key, iv, encrypt ? 1 : 0), "EVP_CipherInit_ex")
        var out = [UInt8](repeating: 0, count: input.count + 16)
        var n: Int32 = 0
        var total = 0
        try check(EVP_CipherUpdate(ctx, &out, &n, input, Int32(input.count)), "EVP_CipherUpdate")
        total = Int(n)
        try out.withUnsafeMutableBufferPointer { buf in
            try check(EVP_CipherFinal_ex(ctx, buf.baseAddress! + total, &n), "EVP_CipherFinal_ex")
        }
        total += Int(n)
        return Array(out.prefix(total))
    }

    /// KDFa (TPM 2.0 Part 1, 11.4.10.2): SP 800-108 counter-mode KDF with HMAC.
    /// `label` is given without its terminating zero; the zero octet is added here.
    public static func kdfa(_ alg: HashAlg, key: [UInt8], label: String, contextU: [UInt8], contextV: [UInt8], bits: Int) -> [UInt8] {
        counterMode(bits: bits) { counter in
            var w = ByteWriter()
            w.u32(counter)
            w.raw(Array(label.utf8))
            w.u8(0)
            w.raw(contextU)
            w.raw(contextV)
            w.u32(UInt32(bits))
            return hmac(alg, key: key, w.bytes)
        }
    }

    /// KDFe (TPM 2.0 Part 1, 11.4.10.3): the SP 800-56A concatenation KDF with the hash `alg`:
    /// H(counter ‖ Z ‖ label ‖ 0 ‖ partyUInfo ‖ partyVInfo) for counter = 1, 2, …, truncated to
    /// `bits` (a multiple of 8). `label` is given without its terminating zero.
    public static func kdfe(_ alg: HashAlg, z: [UInt8], label: String, partyUInfo: [UInt8], partyVInfo: [UInt8], bits: Int) -> [UInt8] {
        counterMode(bits: bits) { counter in
            var w = ByteWriter()
            w.u32(counter)
            w.raw(z)
            w.raw(Array(label.utf8))
            w.u8(0)
            w.raw(partyUInfo)
            w.raw(partyVInfo)
            return digest(alg, w.bytes)
        }
    }

    /// Concatenates `block(1)`, `block(2)`, … until `bits` are there, and truncates to them.
    private static func counterMode(bits: Int, _ block: (UInt32) -> [UInt8]) -> [UInt8] {
        let bytesNeeded = (bits + 7) / 8
        var out: [UInt8] = []
        var counter: UInt32 = 1
        while out.count < bytesNeeded {
            out += block(counter)
            counter += 1
        }
        return Array(out.prefix(bytesNeeded))
    }
}

/// The OpenSSL implementation of `Digester`.
public struct OpenSSLDigester: Digester {
    public init() {}
    public func digest(_ alg: HashAlg, _ data: [UInt8]) -> [UInt8] { Crypto.digest(alg, data) }
}

/// Incremental hashing (EVP_MD_CTX), for inputs too large to hold in memory.
public final class DigestStream {
    private let ctx: OpaquePointer
    public let algorithm: HashAlg

    public init(_ alg: HashAlg) throws {
        algorithm = alg
        ctx = try notNil(EVP_MD_CTX_new(), "EVP_MD_CTX_new")
        guard EVP_DigestInit_ex(ctx, evpMD(alg), nil) == 1 else {
            EVP_MD_CTX_free(ctx)
            throw opensslError("EVP_DigestInit_ex")
        }
    }

    deinit { EVP_MD_CTX_free(ctx) }

    public func update(_ buffer: UnsafeRawBufferPointer) throws {
        try check(EVP_DigestUpdate(ctx, buffer.baseAddress, buffer.count), "EVP_DigestUpdate")
    }

    public func finish() throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        try check(EVP_DigestFinal_ex(ctx, &out, &len), "EVP_DigestFinal_ex")
        return Array(out.prefix(Int(len)))
    }
}

extension Crypto {
    /// Digest of a file read in 1 MiB chunks into one reused buffer: memory does not grow with the
    /// file's size. Returns the digest and the number of bytes read.
    public static func digestFile(_ path: String, _ alg: HashAlg = .sha256) throws -> (digest: [UInt8], size: UInt64) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw VouchError(.io, "cannot open \(path)", context: ["path": path, "errno": "\(errno)"]) }
        defer { close(fd) }
        let stream = try DigestStream(alg)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var total: UInt64 = 0
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n == 0 { break }
            guard n > 0 else {
                if errno == EINTR { continue }
                throw VouchError(.io, "cannot read \(path)", context: ["path": path, "errno": "\(errno)"])
            }
            try stream.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            total += UInt64(n)
        }
        return (try stream.finish(), total)
    }
}

/// One EVP_MD_CTX per thread, re-initialised for every digest: EVP_Digest allocates and frees a
/// context per call, which on event-log replay (two banks × every event) cost as much as the
/// hashing. Freed when its thread exits.
private let digestContextKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { EVP_MD_CTX_free(OpaquePointer($0)) }
    return key
}()

private func threadDigestContext() -> OpaquePointer? {
    if let p = pthread_getspecific(digestContextKey) { return OpaquePointer(p) }
    guard let ctx = EVP_MD_CTX_new() else { return nil }
    guard pthread_setspecific(digestContextKey, UnsafeRawPointer(ctx)) == 0 else {
        EVP_MD_CTX_free(ctx)
        return nil
    }
    return ctx
}
