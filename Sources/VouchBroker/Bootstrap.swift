import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchRuntime

/// First-start setup of a broker's on-disk material.
public enum BrokerBootstrap {
    /// Loads the issuing CA from `dir/ca.pem` + `dir/ca.key`, or creates it (key file mode 0600).
    public static func loadOrCreateCA(directory dir: String, commonName: String, clock: Clock) throws -> (CertificateAuthority, created: Bool) {
        let certPath = dir + "/ca.pem", keyPath = dir + "/ca.key"
        if Files.exists(certPath) || Files.exists(keyPath) {
            let key = try PrivateKey(pem: Files.readString(keyPath))
            let cert = try Certificate(pem: Files.readString(certPath))
            return (try CertificateAuthority(key: key, certificate: cert), false)
        }
        try Files.makeDirectory(dir)
        let now = clock.now()
        let key = try PrivateKey.generate(.p256)
        let ca = try CertificateAuthority.create(commonName: commonName, key: key, notBefore: now.addingTimeInterval(-60),
                                                 notAfter: now.addingTimeInterval(10 * 365 * 86400))
        try Files.writeAtomically(Array(try key.pem.utf8), to: keyPath, mode: 0o600)
        try Files.writeAtomically(Array(try ca.certificate.pem.utf8), to: certPath, mode: 0o644)
        return (ca, true)
    }

    /// Loads an issuing CA from `dir`: `ca.pem` + `ca.key` (mode 0600), and `chain.pem` with the
    /// certificates above it when it is an intermediate. The chain must verify.
    public static func loadIssuingCA(directory dir: String, at now: Date) throws -> IssuingCA {
        let key = try PrivateKey(pem: Files.readString(dir + "/ca.key"))
        let cert = try Certificate(pem: Files.readString(dir + "/ca.pem"))
        let ca = try CertificateAuthority(key: key, certificate: cert)
        let chain = Files.exists(dir + "/chain.pem") ? try Certificate.chain(pem: Files.readString(dir + "/chain.pem")) : []
        if !chain.isEmpty {
            let roots = chain.filter(\.isSelfSigned)
            guard !roots.isEmpty else { throw VouchError(.config, "\(dir)/chain.pem has no self-signed root", context: ["path": dir]) }
            if let e = cert.verify(anchors: roots, intermediates: chain.filter { !$0.isSelfSigned }, at: now) {
                throw VouchError(.config, "\(dir)/ca.pem does not chain to \(dir)/chain.pem: \(e.message)", context: ["path": dir])
            }
        }
        return IssuingCA(signer: ca, chain: chain)
    }

    /// The CA set under `dir`: the issuing CA in `dir` itself (created on first start if absent),
    /// `dir/previous` (kept after a rotation) and `dir/next` (staged: published, not yet issuing).
    /// Rotation renames them on disk: next → current, current → previous.
    public static func loadCASet(directory dir: String, commonName: String, clock: Clock) throws -> (CASet, createdCA: Bool) {
        let (_, created) = try loadOrCreateCA(directory: dir, commonName: commonName, clock: clock)
        let now = clock.now()
        let current = try loadIssuingCA(directory: dir, at: now)
        let previous = Files.exists(dir + "/previous/ca.pem") ? try loadIssuingCA(directory: dir + "/previous", at: now) : nil
        let next = Files.exists(dir + "/next/ca.pem") ? try loadIssuingCA(directory: dir + "/next", at: now) : nil
        let files = ["ca.pem", "ca.key", "chain.pem"]
        let set = CASet(current: current, previous: previous, next: next, persist: {
            let fm = FileManager.default
            try? fm.removeItem(atPath: dir + "/previous")
            try Files.makeDirectory(dir + "/previous")
            for f in files where Files.exists(dir + "/" + f) { try fm.moveItem(atPath: dir + "/" + f, toPath: dir + "/previous/" + f) }
            for f in files where Files.exists(dir + "/next/" + f) { try fm.moveItem(atPath: dir + "/next/" + f, toPath: dir + "/" + f) }
            try fm.removeItem(atPath: dir + "/next")
        })
        return (set, created)
    }

    /// Loads the admin bearer token from `path`, or creates a random one (mode 0600).
    /// Returns its SHA-256, which is all the broker keeps in memory.
    public static func loadOrCreateAdminToken(path: String) throws -> (digest: [UInt8], created: Bool) {
        if Files.exists(path) {
            let token = try Files.readString(path).trimmingCharacters(in: .whitespacesAndNewlines)
            guard token.count >= 32 else { throw VouchError(.config, "admin token file holds fewer than 32 characters", context: ["path": path]) }
            return (Crypto.sha256(Array(token.utf8)), false)
        }
        let token = "vouch_" + Hex.encode(try Crypto.randomBytes(32))
        try Files.writeAtomically(Array((token + "\n").utf8), to: path, mode: 0o600)
        return (Crypto.sha256(Array(token.utf8)), true)
    }

    /// Loads a shared secret (e.g. the webhook HMAC key) from `path`, or creates 32 random bytes
    /// there (hex, mode 0600).
    public static func loadOrCreateSecret(path: String) throws -> [UInt8] {
        if Files.exists(path) {
            let text = try Files.readString(path).trimmingCharacters(in: .whitespacesAndNewlines)
            guard text.count >= 32 else { throw VouchError(.config, "secret file holds fewer than 32 characters", context: ["path": path]) }
            return Array(text.utf8)
        }
        let secret = Hex.encode(try Crypto.randomBytes(32))
        try Files.writeAtomically(Array((secret + "\n").utf8), to: path, mode: 0o600)
        return Array(secret.utf8)
    }

    /// The broker CA (`dir`/ca.pem + ca.key, created on first start): a self-signed CA, separate
    /// from the issuing CAs, that certifies only the broker itself — its TLS server certificate and
    /// its client/result-signing identity. Clients (`vouch`, `vouch-attester`, curl) trust this
    /// file alone for the broker, so no certificate issued to an agent or host, whatever its name,
    /// can stand in for the broker, and EAR results verify against it only.
    public static func loadOrCreateBrokerCA(directory dir: String, trustDomain: String, clock: Clock) throws -> (CertificateAuthority, created: Bool) {
        try loadOrCreateCA(directory: dir, commonName: "Vouch broker CA \(trustDomain)", clock: clock)
    }

    /// The broker's TLS client identity (SPIFFE ID `spiffeID`) for pulling quotes, made afresh
    /// by the broker CA at each start and written to `dir`/client.pem and client.key (mode 0600),
    /// for operators who call attesters or the API as the broker. It signs nothing the broker
    /// publishes (`resultSigner` does).
    public static func brokerIdentity(brokerCA: CertificateAuthority, spiffeID: String, directory dir: String, clock: Clock)
        throws -> (certificatePEM: String, keyPEM: String) {
        try Files.makeDirectory(dir)
        let key = try PrivateKey.generate(.p256)
        let now = clock.now()
        let cert = try brokerCA.issue(publicKey: try key.publicKey, profile: LeafProfile(
            subjectCommonName: "vouchd", uriSANs: [spiffeID], notBefore: now.addingTimeInterval(-60),
            notAfter: now.addingTimeInterval(30 * 86400), usage: .brokerClient), serial: nil)
        let certificatePEM = try cert.pem + (try brokerCA.certificate.pem), keyPEM = try key.pem
        try Files.writeAtomically(Array(certificatePEM.utf8), to: dir + "/client.pem", mode: 0o644)
        try Files.writeAtomically(Array(keyPEM.utf8), to: dir + "/client.key", mode: 0o600)
        return (certificatePEM, keyPEM)
    }

    /// How long the result signer's certificate (the `x5c` of every EAR) is valid from a start:
    /// longer than any EAR or agent certificate signed under it, so an EAR never outlives its chain.
    public static let resultSignerValidity: TimeInterval = 400 * 86400

    /// The key that signs attestation results (EARs in certificates and host EARs), and its
    /// certificate from the broker CA (SPIFFE ID `spiffeID`). The key is made once, in
    /// `dir`/signing.key (mode 0600, created exclusively: of two first starts, one key wins), and
    /// kept: EARs inside certificates issued before a restart verify by the same `kid` in
    /// `/v1/ear/jwks`. It is never the TLS client key operators are given. A key file that is a
    /// symbolic link, belongs to another user, is readable by others, is encrypted, is not P-256,
    /// or whose parts do not match is refused (`config`). Rotating is deleting the file before a
    /// start (docs/operations.md). The certificate is issued afresh at each start.
    public static func resultSigner(brokerCA: CertificateAuthority, spiffeID: String, directory dir: String, clock: Clock) throws -> JWSSigner {
        let key = try persistentP256Key(directory: dir, file: "signing.key", what: "result-signing key")
        let now = clock.now()
        let cert = try brokerCA.issue(publicKey: try key.publicKey, profile: LeafProfile(
            subjectCommonName: "vouchd results", uriSANs: [spiffeID], notBefore: now.addingTimeInterval(-60),
            notAfter: now.addingTimeInterval(resultSignerValidity), usage: .brokerClient), serial: nil)
        return try JWSSigner(key: key, chain: [cert, brokerCA.certificate])
    }

    /// The key that signs JWT-SVIDs (`POST /v1/hosts/{id}/jwt-svids`), published by `kid` in
    /// `GET /v1/jwt-svid/jwks` and the SPIFFE bundle (`use: jwt-svid`). Made once, in
    /// `dir`/jwt-svid.key, and kept as the result-signing key is (same file checks, `config`
    /// on refusal): a token issued before a restart verifies after it. It has no certificate
    /// (its tokens carry no `x5c`). It must be none of `others` — the CA, TLS and result-signing
    /// keys — so that no token or certificate of one kind can pass for another (a key file
    /// copied over from one of them is refused, `config`).
    public static func jwtSVIDSigner(directory dir: String, distinctFrom others: [PublicKey]) throws -> JWSSigner {
        let path = dir + "/jwt-svid.key"
        let key = try persistentP256Key(directory: dir, file: "jwt-svid.key", what: "JWT-SVID signing key")
        let spki = try key.publicKey.spkiDER
        guard !others.contains(where: { (try? $0.spkiDER) == spki }) else {
            throw VouchError(.config, "the broker's JWT-SVID signing key is also one of its CA, TLS or result-signing keys; delete it to make a new one",
                             context: ["path": path])
        }
        return try JWSSigner(key: key, use: "jwt-svid")
    }

    /// A P-256 key kept in `dir`/`file`: created on first use (mode 0600, exclusively: of two first
    /// starts, one key wins), then read. A file that is a symbolic link, belongs to another user,
    /// is readable by others, is encrypted, is not P-256, or whose parts do not match is refused
    /// (`config`).
    static func persistentP256Key(directory dir: String, file: String, what: String) throws -> PrivateKey {
        try Files.makeDirectory(dir)
        let path = dir + "/" + file
        if !Files.exists(path) {
            _ = try Files.createOnce(Array(try PrivateKey.generate(.p256).pem.utf8), at: path, mode: 0o600)
        }
        let key: PrivateKey
        do {
            key = try PrivateKey(pem: String(decoding: try Files.readSecret(path, maxBytes: 64 << 10), as: UTF8.self))
        } catch let e as VouchError where e.code == .config {
            throw e
        } catch {
            throw VouchError(.config, "the broker's \(what) cannot be read (an unencrypted PEM key; delete it to make a new one)",
                             context: ["path": path])
        }
        guard let publicKey = try? key.publicKey, publicKey.ecJWKParameters?.crv == "P-256", key.isPair(of: publicKey) else {
            throw VouchError(.config, "the broker's \(what) must be a P-256 (ES256) key pair", context: ["path": path])
        }
        return key
    }

    /// The transparency log's key: Ed25519, named (and the log's origin) `<trust domain>/vouch-log`,
    /// made once in `path` (C2SP skey text, mode 0600, created exclusively) and kept — every
    /// checkpoint is signed by it, and relying parties pin its vkey (`GET /v1/trust`). Separate from
    /// every CA key. A key file that is a symbolic link, belongs to another user, is readable by
    /// others, is not an skey, or names another log is refused (`config`).
    public static func logSigner(path: String, trustDomain: String) throws -> NoteSigner {
        let name = TrustDocument.logOrigin(trustDomain: trustDomain)
        if !Files.exists(path) {
            _ = try Files.createOnce(Array(try NoteSigner(name: name, privateKey: try Ed25519PrivateKey.generate()).skey.utf8), at: path, mode: 0o600)
        }
        let text = String(decoding: try Files.readSecret(path, maxBytes: 4096), as: UTF8.self)
        guard let signer = try? NoteSigner(skey: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw VouchError(.config, "the log key is not a signed-note signer key (skey)", context: ["path": path])
        }
        guard signer.name == name, signer.verifierKey.type == .ed25519 else {
            throw VouchError(.config, "the log key is not an Ed25519 key named \(name)", context: ["path": path])
        }
        return signer
    }

    /// A fresh TLS server key and certificate from the broker CA for the broker's own API.
    public static func serverTLS(brokerCA: CertificateAuthority, dnsNames: [String], ipAddresses: [String], clock: Clock) throws -> (certificatePEM: String, keyPEM: String) {
        let key = try PrivateKey.generate(.p256)
        let now = clock.now()
        let cert = try brokerCA.issue(publicKey: try key.publicKey, profile: LeafProfile(
            subjectCommonName: "vouchd", dnsSANs: dnsNames, ipSANs: ipAddresses, notBefore: now.addingTimeInterval(-60),
            notAfter: now.addingTimeInterval(30 * 86400), usage: .tlsServer), serial: nil)
        return (try cert.pem + (try brokerCA.certificate.pem), try key.pem)
    }
}
