internal import COpenSSL
internal import CVouchShims
import VouchCore
import VouchTPMWire

/// The one place OpenSSL return codes become typed errors: drains the OpenSSL error queue
/// into the error's context so that no failure is ever reported with an empty reason.
func opensslError(_ operation: String) -> VouchError {
    var reasons: [String] = []
    while true {
        let e = ERR_get_error()
        if e == 0 { break }
        var buf = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(e, &buf, buf.count)
        reasons.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    return VouchError(.crypto, "\(operation) failed", context: ["openssl": reasons.isEmpty ? "no OpenSSL reason recorded" : reasons.joined(separator: "; ")])
}

/// Throws unless an OpenSSL call returned exactly 1 (its success value).
@inline(__always)
func check(_ rc: Int32, _ operation: String) throws {
    guard rc == 1 else { throw opensslError(operation) }
}

@inline(__always)
func notNil<T>(_ p: T?, _ operation: String) throws -> T {
    guard let p else { throw opensslError(operation) }
    return p
}

/// A memory BIO owned for the duration of one read or write.
final class MemoryBIO {
    let bio: OpaquePointer

    init() throws {
        bio = try notNil(BIO_new(BIO_s_mem()), "BIO_new")
    }

    init(_ bytes: [UInt8]) throws {
        bio = try bytes.withUnsafeBytes { buf in
            // BIO_new_mem_buf does not copy: copy into a fresh BIO instead.
            let b = try notNil(BIO_new(BIO_s_mem()), "BIO_new")
            if buf.count > 0 {
                guard BIO_write(b, buf.baseAddress, Int32(buf.count)) == Int32(buf.count) else {
                    BIO_free(b)
                    throw opensslError("BIO_write")
                }
            }
            return b
        }
    }

    deinit { BIO_free(bio) }

    var contents: [UInt8] {
        var ptr: UnsafeMutablePointer<CChar>?
        let n = vouch_BIO_get_mem_data(bio, &ptr)
        guard n > 0, let ptr else { return [] }
        return ptr.withMemoryRebound(to: UInt8.self, capacity: n) { Array(UnsafeBufferPointer(start: $0, count: n)) }
    }

    var string: String { String(decoding: contents, as: UTF8.self) }
}

/// DER encoding through an OpenSSL i2d function.
func derEncode(_ operation: String, _ encode: (UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?) -> Int32) throws -> [UInt8] {
    var out: UnsafeMutablePointer<UInt8>? = nil
    let n = encode(&out)
    guard n > 0, let out else { throw opensslError(operation) }
    defer { vouch_openssl_free(out) }
    return Array(UnsafeBufferPointer(start: out, count: Int(n)))
}

/// The digest implementations, fetched from the default provider once. OpenSSL 3 turns the
/// legacy `EVP_sha256()` handles into a provider fetch (a locked name lookup) on every
/// initialisation; explicitly fetched ones skip that. A fetched EVP_MD is immutable and safe to
/// share between threads; these live for the whole process. Falls back to the legacy handle if
/// the fetch fails (it only can if the default provider is missing, and then both fail alike).
private struct FetchedDigests: @unchecked Sendable {
    let sha1, sha256, sha384, sha512: OpaquePointer?
    init() {
        sha1 = EVP_MD_fetch(nil, "SHA1", nil) ?? EVP_sha1()
        sha256 = EVP_MD_fetch(nil, "SHA256", nil) ?? EVP_sha256()
        sha384 = EVP_MD_fetch(nil, "SHA384", nil) ?? EVP_sha384()
        sha512 = EVP_MD_fetch(nil, "SHA512", nil) ?? EVP_sha512()
    }
}
private let fetchedDigests = FetchedDigests()

func evpMD(_ h: HashAlg) -> OpaquePointer? {
    switch h {
    case .sha1: fetchedDigests.sha1
    case .sha256: fetchedDigests.sha256
    case .sha384: fetchedDigests.sha384
    case .sha512: fetchedDigests.sha512
    }
}
