import Foundation
import VouchAPI
import VouchAttestation
import VouchCore
import VouchCrypto
import VouchReceiptKit
import VouchReceipts
import VouchTLog

/// A small world for receipts: a broker CA and its EAR signer, an issuing CA, an agent with a
/// certificate carrying a signed EAR, and a log (a `MemoryMerkleTree` with checkpoints signed by
/// a note key) holding the agent's issuance entry — what vouchd would have made, built in memory.
public final class ReceiptFixture: @unchecked Sendable {
    public let now: Date
    public let trustDomain = "test.local"
    public let brokerCA: CertificateAuthority
    public let agentCA: CertificateAuthority
    public let earSigner: JWSSigner
    public let logSigner: NoteSigner
    public var tree = MemoryMerkleTree(hasher: MerkleHasher(sha256: { Crypto.sha256($0) }))
    /// The log's entries, in order (what `tree` hashes), to write the log out as tiles.
    public private(set) var entries: [[UInt8]] = []
    public let agentKey: PrivateKey
    public let agentCert: Certificate
    /// The agent certificate's issuance entry and its proof.
    public private(set) var issuance: UnverifiedReceiptBundle.LoggedEntry!
    public var spiffeID: String { "spiffe://\(trustDomain)/host/\(hostID)/agent/payments" }
    public let hostID = String(repeating: "ab", count: 16)
    public var origin: String { TrustDocument.logOrigin(trustDomain: trustDomain) }

    /// `agentKey`: the agent's key (default: a new key of `keyType`).
    public init(now: Date = Date(timeIntervalSince1970: 1_800_000_000), keyType: PrivateKey.KeyType = .p256, agentKey: PrivateKey? = nil) throws {
        self.now = now
        brokerCA = try CertificateAuthority.create(commonName: "broker CA", key: try PrivateKey.generate(.p256), notBefore: now.addingTimeInterval(-3600),
                                                   notAfter: now.addingTimeInterval(86400 * 30))
        agentCA = try CertificateAuthority.create(commonName: "agent CA", key: try PrivateKey.generate(.p256), notBefore: now.addingTimeInterval(-3600),
                                                  notAfter: now.addingTimeInterval(86400 * 30))
        let signerKey = try PrivateKey.generate(.p256)
        let signerCert = try brokerCA.issue(publicKey: try signerKey.publicKey, profile: LeafProfile(
            subjectCommonName: "vouchd", uriSANs: ["spiffe://\(trustDomain)/vouchd"], notBefore: now.addingTimeInterval(-3600),
            notAfter: now.addingTimeInterval(86400 * 30), usage: .brokerClient), serial: nil)
        earSigner = try JWSSigner(key: signerKey, chain: [signerCert, brokerCA.certificate])
        logSigner = try NoteSigner(name: TrustDocument.logOrigin(trustDomain: trustDomain), privateKey: try Ed25519PrivateKey.generate())
        self.agentKey = try agentKey ?? PrivateKey.generate(keyType)
        agentCert = try Self.issue(brokerSigner: earSigner, ca: agentCA, key: try self.agentKey.publicKey, spiffeID: "spiffe://\(trustDomain)/host/\(hostID)/agent/payments",
                                   hostID: hostID, now: now, usage: .agent)
        // Some other entries first, so the proof is not trivial.
        for i in 0..<5 { append(Array("other entry \(i)\n".utf8)) }
        issuance = try log(try issuanceEntry(for: agentCert))
    }

    /// The EAR claims the fixture's broker attests (a TPM host, one model manifest, one GPU).
    public static func claims(hostID: String, now: Date) -> AttestationExtension {
        AttestationExtension(hostId: hostID, attestedAt: now.addingTimeInterval(-600), evidenceType: "tpm2-quote",
                             evidenceDigest: [UInt8](repeating: 1, count: 32), pcrBank: "sha256", pcrDigest: [UInt8](repeating: 2, count: 32),
                             policyName: "fleet", policyVersion: 3, policyDigest: [UInt8](repeating: 3, count: 32),
                             modelManifests: [[UInt8](repeating: 4, count: 32)], secureBoot: true)
    }

    /// A certificate from `ca` for `key` naming `spiffeID`, with an EAR the broker signed for it.
    public static func issue(brokerSigner: JWSSigner, ca: CertificateAuthority, key: PublicKey, spiffeID: String, hostID: String, now: Date,
                             usage: LeafProfile.Usage, notBefore: Date? = nil, notAfter: Date? = nil, simulated: Bool = false) throws -> Certificate {
        var claims = claims(hostID: hostID, now: now)
        claims.subject = try .init(spiffeId: spiffeID, publicKey: key)
        let ear = try brokerSigner.sign(payload: try claims.earPayload(device: "tpm", devices: ["tpm"], verifierBuild: "test",
                                                                       expiresAt: now.addingTimeInterval(3600), simulated: simulated))
        return try ca.issue(publicKey: key, profile: LeafProfile(uriSANs: [spiffeID], notBefore: notBefore ?? now.addingTimeInterval(-600),
                                                                 notAfter: notAfter ?? now.addingTimeInterval(86400), usage: usage,
                                                                 extensions: [(AttestationExtension.oid, AttestationExtension.extensionValue(ear: ear))]), serial: nil)
    }

    /// The issuance entry vouchd writes for `cert`.
    public func issuanceEntry(for cert: Certificate, record: String = "42") throws -> LogEntry {
        let ear = try AttestationExtension.ear(extensionValue: cert.extensionValue(oid: AttestationExtension.oid)!)
        let claims = try AttestationExtension(extensionValue: cert.extensionValue(oid: AttestationExtension.oid)!)
        return try LogEntry(kind: .issuance, time: claims.attestedAt, fields: [
            "host": claims.hostId, "agent": "payments", "spiffe": cert.uriSANs[0], "serial": cert.serialHex,
            "certificate": LogEntry.digest(Crypto.sha256(cert.der)), "attestation": record,
            "attestation-digest": LogEntry.digest([UInt8](repeating: 9, count: 32)),
            "ear-digest": LogEntry.digest(Crypto.sha256(Array(ear.utf8))), "policy-digest": LogEntry.digest(claims.policyDigest),
        ])
    }

    /// Appends `entry` to the log and returns it with its proof against a checkpoint of the new
    /// size signed by `signers` (default: the log key).
    public func log(_ entry: LogEntry, signers: [NoteSigner]? = nil) throws -> UnverifiedReceiptBundle.LoggedEntry {
        append(entry.bytes)
        let index = tree.size - 1
        return UnverifiedReceiptBundle.LoggedEntry(entry: entry.bytes, proof: try proof(index: index, signers: signers ?? [logSigner]))
    }

    func append(_ entry: [UInt8]) {
        entries.append(entry)
        tree.append(entry: entry)
    }

    /// An inclusion proof of the entry at `index` against a freshly signed checkpoint of the whole tree.
    public func proof(index: UInt64, signers: [NoteSigner]) throws -> TLogProofFile {
        let prover = MerkleProver(hasher: tree.hasher, reader: tree)
        let body = try CheckpointBody(origin: origin, size: tree.size, rootHash: try prover.root(size: tree.size))
        return try TLogProofFile(extra: nil, index: index, proof: try prover.inclusionProof(index: index, size: tree.size),
                                 signedCheckpoint: SignedNote.encode(text: body.text, signatures: try signers.map {
                                     try SignedNote.signature(of: body.text, by: $0, timestamp: $0.verifierKey.type == .cosignatureV1 ? UInt64(now.timeIntervalSince1970) : nil)
                                 }))
    }

    /// The trust document for this world.
    public var trust: TrustDocument {
        get throws {
            TrustDocument(trustDomain: trustDomain, agentRoots: try agentCA.certificate.pem, brokerCA: try brokerCA.certificate.pem,
                          log: .init(origin: origin, vkey: logSigner.verifierKey.vkey))
        }
    }

    public var chainPEM: String { get throws { try agentCert.pem + agentCA.certificate.pem } }

    public func signer(issuance: UnverifiedReceiptBundle.LoggedEntry? = nil) throws -> ReceiptSigner {
        try ReceiptSigner(chainPEM: try chainPEM, keyPEM: agentKey.pem, issuance: issuance ?? self.issuance)
    }

    public func verifier() throws -> ReceiptVerifier { ReceiptVerifier(trust: try ReceiptTrust(try trust)) }
}
