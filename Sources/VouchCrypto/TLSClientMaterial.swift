internal import COpenSSL
import VouchCore

/// Trust anchors and a client identity for outgoing mutual TLS, parsed once and installed into
/// each connection's SSL_CTX. libcurl otherwise reads and decodes the CA bundle, the certificate
/// chain and the private key from their files for every new connection; on the broker's pulls
/// (one fresh connection per host per interval) that was the larger part of its CPU time.
///
/// The objects are shared, not copied: SSL_CTX_set1_cert_store, SSL_CTX_use_certificate,
/// SSL_CTX_add1_chain_cert and SSL_CTX_use_PrivateKey each take a reference, and OpenSSL allows
/// one X509_STORE, X509 and EVP_PKEY to serve many connections on many threads.
public final class TLSClientMaterial: @unchecked Sendable {
    private let store: OpaquePointer
    private let chain: [Certificate]
    private let key: PrivateKey

    /// - Parameters:
    ///   - trustPEM: the only certificates a server may chain to (a partial chain ending at any of
    ///     them is accepted, as curl accepts with CURLOPT_CAINFO).
    ///   - certificateChainPEM: the client certificate first, then any intermediates.
    ///   - keyPEM: the client certificate's private key.
    public init(trustPEM: String, certificateChainPEM: String, keyPEM: String) throws {
        let anchors = try Certificate.chain(pem: trustPEM)
        let chain = try Certificate.chain(pem: certificateChainPEM)
        guard !anchors.isEmpty else { throw VouchError(.invalidValue, "TLS trust bundle holds no certificate", context: ["field": "trust"]) }
        guard let leaf = chain.first else { throw VouchError(.invalidValue, "client certificate file holds no certificate", context: ["field": "certificate"]) }
        let key = try PrivateKey(pem: keyPEM)
        guard X509_check_private_key(leaf.x509, key.pkey) == 1 else {
            ERR_clear_error()
            throw VouchError(.invalidValue, "client private key does not match the client certificate", context: ["field": "key"])
        }
        guard let store = X509_STORE_new() else { throw opensslError("X509_STORE_new") }
        for anchor in anchors where X509_STORE_add_cert(store, anchor.x509) != 1 {
            X509_STORE_free(store)
            throw opensslError("X509_STORE_add_cert")
        }
        _ = X509_STORE_set_flags(store, UInt(X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_TRUSTED_FIRST))
        self.store = store
        self.chain = chain
        self.key = key
    }

    deinit { X509_STORE_free(store) }

    /// Installs the trust store, certificate chain and key into `sslContext` (an SSL_CTX*, as
    /// libcurl's CURLOPT_SSL_CTX_FUNCTION hands it over). False if OpenSSL refuses any of them;
    /// the caller must then fail the connection.
    public func install(into sslContext: UnsafeMutableRawPointer) -> Bool {
        let ctx = OpaquePointer(sslContext)
        SSL_CTX_set1_cert_store(ctx, store)
        var ok = SSL_CTX_use_certificate(ctx, chain[0].x509) == 1
        for intermediate in chain.dropFirst() where ok {
            ok = SSL_CTX_ctrl(ctx, SSL_CTRL_CHAIN_CERT, 1, UnsafeMutableRawPointer(intermediate.x509)) == 1
        }
        ok = ok && SSL_CTX_use_PrivateKey(ctx, key.pkey) == 1
        if !ok { ERR_clear_error() }
        return ok
    }
}
