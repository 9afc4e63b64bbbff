import Foundation
import VouchCore
import VouchTLog

/// A receipt bundle (media type `application/vnd.vouch.receipt.v1+json`): everything a third
/// party needs, with the trust document, to check a receipt offline.
///
///     {"mediaType": "application/vnd.vouch.receipt.v1+json",
///      "envelope": DSSE envelope of the in-toto Statement,
///      "chain": PEM: the agent certificate, then its issuing chain,
///      "ear": the compact JWS EAR from the certificate's attestation extension,
///      "issuance": {"entry": base64 LogEntry bytes, "proof": tlog-proof text},
///      "receipt": optional, the same for the receipt's own log entry}
///
/// Parsed for shape only (`UnverifiedReceiptBundle`); `ReceiptVerifier` decides what holds.
public struct UnverifiedReceiptBundle: Sendable {
    public static let mediaType = "application/vnd.vouch.receipt.v1+json"
    public static let maxBytes = 1 << 20

    /// A log entry and its inclusion proof (C2SP tlog-proof, checkpoint included).
    public struct LoggedEntry: Sendable, Equatable {
        public let entry: [UInt8]
        public let proof: TLogProofFile
        public init(entry: [UInt8], proof: TLogProofFile) { self.entry = entry; self.proof = proof }

        /// Reads the broker's answer to `GET /v1/log/proof` (`{"index": "N", "entry": base64,
        /// "proof": tlog-proof text}`); the index must be the proof's.
        public init(proofResponse bytes: [UInt8]) throws {
            struct Wire: Codable { var index: String; var entry: String; var proof: String }
            guard bytes.count <= Self.maxResponseBytes else { throw ReceiptFormat.bad("the proof response is too long", "proof") }
            let wire = try ReceiptFormat.decode(Wire.self, bytes, field: "proof")
            guard let logged = try UnverifiedReceiptBundle.logged(WireEntry(entry: wire.entry, proof: wire.proof), "proof"),
                  String(logged.proof.index) == wire.index else {
                throw ReceiptFormat.bad("the response's index is not its proof's", "proof.index")
            }
            self = logged
        }
        static let maxResponseBytes = 128 * 1024
    }

    public let envelope: DSSEEnvelope
    public let chainPEM: String
    public let ear: String
    public let issuance: LoggedEntry?
    public let receipt: LoggedEntry?

    public init(envelope: DSSEEnvelope, chainPEM: String, ear: String, issuance: LoggedEntry?, receipt: LoggedEntry?) {
        self.envelope = envelope; self.chainPEM = chainPEM; self.ear = ear; self.issuance = issuance; self.receipt = receipt
    }

    struct Wire: Codable {
        var mediaType: String
        var envelope: DSSEEnvelope.Wire
        var chain: String
        var ear: String
        var issuance: WireEntry?
        var receipt: WireEntry?
    }
    struct WireEntry: Codable {
        var entry: String
        var proof: String
    }

    public init(json bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxBytes else { throw ReceiptFormat.bad("the bundle is over \(Self.maxBytes) bytes", "bundle") }
        let wire = try ReceiptFormat.decode(Wire.self, bytes, field: "bundle")
        guard wire.mediaType == Self.mediaType else { throw ReceiptFormat.bad("mediaType is not \(Self.mediaType)", "bundle.mediaType") }
        guard wire.chain.utf8.count <= 64 * 1024, wire.chain.contains("-----BEGIN CERTIFICATE-----") else {
            throw ReceiptFormat.bad("chain is not PEM certificates", "bundle.chain")
        }
        guard wire.ear.utf8.count <= 64 * 1024, wire.ear.split(separator: ".", omittingEmptySubsequences: false).count == 3 else {
            throw ReceiptFormat.bad("ear is not a compact JWS", "bundle.ear")
        }
        self.init(envelope: try DSSEEnvelope(wire: wire.envelope), chainPEM: wire.chain, ear: wire.ear,
                  issuance: try Self.logged(wire.issuance, "bundle.issuance"), receipt: try Self.logged(wire.receipt, "bundle.receipt"))
    }

    static func logged(_ w: WireEntry?, _ field: String) throws -> LoggedEntry? {
        guard let w else { return nil }
        let entry = try ReceiptFormat.base64(w.entry, field: "\(field).entry")
        guard entry.count <= LogEntry.maxBytes else { throw ReceiptFormat.bad("the entry is over \(LogEntry.maxBytes) bytes", "\(field).entry") }
        do {
            return LoggedEntry(entry: entry, proof: try TLogProofFile(text: w.proof))
        } catch {
            throw ReceiptFormat.bad("the proof is not a C2SP tlog-proof", "\(field).proof")
        }
    }

    /// The bundle as JSON (keys sorted, no whitespace).
    public var json: [UInt8] {
        func wire(_ l: LoggedEntry?) -> WireEntry? { l.map { WireEntry(entry: Base64.encode($0.entry), proof: $0.proof.text) } }
        return ReceiptFormat.encode(Wire(mediaType: Self.mediaType, envelope: envelope.wire, chain: chainPEM, ear: ear,
                                         issuance: wire(issuance), receipt: wire(receipt)))
    }

    /// The same bundle with the receipt's own log entry added (after `POST /v1/receipts`).
    public func adding(receipt: LoggedEntry) -> UnverifiedReceiptBundle {
        UnverifiedReceiptBundle(envelope: envelope, chainPEM: chainPEM, ear: ear, issuance: issuance, receipt: receipt)
    }
}
