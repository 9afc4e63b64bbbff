import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchModel
import VouchReceiptKit
import VouchReceipts
import VouchTLog

extension ErrorCode {
    /// `POST /v1/receipts`: the receipt's certificate is not one this broker issued, or it is
    /// revoked now (the broker logs receipts of live agents only; an auditor judges older ones
    /// from the log's revocation entries).
    public static let receiptNotAccepted = ErrorCode("receipt_not_accepted", status: 403)
    /// `POST /v1/receipts`: the body has the receipt bundle's JSON shape (docs/openapi.yaml), but
    /// what it carries does not parse as a receipt (PEM, JWS, base64, DSSE, the Statement, log
    /// entries, tlog-proofs): bad material in a well-formed request is a refusal, not a 422.
    public static let receiptContentInvalid = ErrorCode("receipt_content_invalid", status: 403)
}

/// `POST /v1/receipts`: an agent logs one of its receipts. The body is a receipt bundle
/// (docs/receipts.md); the broker logs only what verifies, in this order:
///
///  1. the bundle parses: `receipt_malformed` (422) for a body that is not a bundle's JSON,
///     `receipt_content_invalid` (403) for one of that shape whose contents do not parse (so a
///     schema-valid request is never a 422); a `receipt` part already in it is ignored;
///  2. the leaf certificate is one this broker issued — same serial, same DER —, not revoked and
///     valid now (`receipt_not_accepted`): checked before anything costly, since the route takes
///     no token;
///  3. every check of `ReceiptVerifier` holds against the broker's own trust document (the
///     issuing-CA roots, the broker CA, this log's key): signature, chain, agent identity, EAR,
///     claims, the issuance entry and its inclusion in this log (the verifier's codes, 403);
///  4. the receipt finished no later than `maxClockSkew` after the broker's clock and no more
///     than `maxAge` before it (`receipt_outside_validity`).
///
/// Then the receipt entry (SPIFFE ID, serial, certificate digest, SHA-256 of the DSSE payload,
/// output digest; the time is the broker's) is appended once — a receipt already logged (the
/// same Statement) answers its existing entry, so replaying a public receipt adds nothing — and
/// the answer is its proof once the background sequencer's checkpoint covers it. No token: the
/// agent's signature authenticates the receipt, and only live agents' receipts are logged.
struct ReceiptIntake {
    /// How far a receipt's finish may run ahead of the broker's clock: the verifier's bound on a
    /// logged receipt's finish past its entry time, the same number.
    static let maxClockSkew = ReceiptVerifier.loggedTimeSkew
    /// How long after it finished a receipt may still be logged (the broker's entry time is the
    /// receipt's trusted upper bound: a receipt logged much later proves little about when it was made).
    static let maxAge: TimeInterval = 86400

    let log: TransparencyLog
    let trust: TrustDocument
    let certificates: any CertificateStore
    let clock: any Clock

    /// The JSON shape of a receipt bundle, as docs/openapi.yaml's `ReceiptBundle` has it: a body
    /// of this shape is schema-valid, so its contents failing to parse is a refusal (403).
    struct Shape: Decodable {
        struct Envelope: Decodable {
            struct Signature: Decodable { var keyid: String?; var sig: String }
            var payloadType: String
            var payload: String
            var signatures: [Signature]
        }
        struct Entry: Decodable { var entry: String; var proof: String }
        var mediaType: String
        var envelope: Envelope
        var chain: String
        var ear: String
        var issuance: Entry?
        var receipt: Entry?

        static func matches(_ body: [UInt8]) -> Bool {
            guard body.count <= UnverifiedReceiptBundle.maxBytes, let shape = try? JSONDecoder().decode(Shape.self, from: Data(body)) else { return false }
            return shape.mediaType == UnverifiedReceiptBundle.mediaType && (1...8).contains(shape.envelope.signatures.count)
        }
    }

    /// `receipt_malformed` (422) for a body that is not a bundle's JSON; `receipt_content_invalid`
    /// (403) for one of that shape whose contents do not parse.
    func malformed(_ body: [UInt8], _ message: String) -> VouchError {
        Shape.matches(body) ? VouchError(.receiptContentInvalid, "the receipt's contents do not parse: \(message)")
                            : VouchError(.receiptMalformed, "the body is not a receipt bundle: \(message)")
    }

    func submit(_ body: [UInt8]) throws -> LogProofResponse {
        let parsed: UnverifiedReceiptBundle
        do { parsed = try UnverifiedReceiptBundle(json: body) } catch {
            throw malformed(body, (error as? VouchError)?.message ?? "\(error)")
        }
        let bundle = UnverifiedReceiptBundle(envelope: parsed.envelope, chainPEM: parsed.chainPEM, ear: parsed.ear,
                                             issuance: parsed.issuance, receipt: nil)
        // The cheap checks first: only a certificate this broker issued, unrevoked and valid now,
        // is worth a full verification (which costs an unauthenticated caller nothing).
        guard let leaf = try? Certificate.chain(pem: bundle.chainPEM).first else {
            throw malformed(body, "the chain holds no certificate")
        }
        let now = clock.now()
        let serial = leaf.serialHex
        guard let record = try certificates.certificate(serial: serial),
              let issued = try? Certificate.chain(pem: record.pem).first, try issued.der == leaf.der else {
            throw VouchError(.receiptNotAccepted, "this broker did not issue the receipt's certificate", context: ["serial": String(serial.prefix(64))])
        }
        if let revokedAt = record.revokedAt {
            throw VouchError(.receiptNotAccepted, "the receipt's certificate was revoked at \(revokedAt.iso8601)", context: ["serial": serial])
        }
        guard record.notBefore <= now, now < record.notAfter else {
            throw VouchError(.receiptNotAccepted, "the receipt's certificate is not valid now (the broker logs receipts of live agents)", context: ["serial": serial])
        }
        let facts: ReceiptFacts
        // The broker logs what its own certificates' agents made; the EAR's appraisal status
        // (warning for a simulated host) stays in the receipt for verifiers to judge.
        var inputs = ReceiptVerifier.Inputs()
        inputs.allowWarning = true
        switch ReceiptVerifier(trust: try ReceiptTrust(trust)).verify(bundle: bundle.json, inputs) {
        case .verified(let f): facts = f
        case .rejected(let violations):
            let first = violations.first ?? ReceiptViolation(code: .receiptMalformed, message: "the receipt does not verify")
            let message = violations.map { "\($0.code.rawValue): \($0.message)" }.joined(separator: "; ")
            if first.code == .receiptMalformed { throw malformed(body, message) }
            throw VouchError(first.code, message, context: ["codes": violations.map(\.code.rawValue).joined(separator: ",")])
        }
        guard facts.serial == serial else { throw VouchError(.internalError, "the verified receipt names another certificate") }
        guard let finished = Date.parseRFC3339(facts.statement.predicate.finishedAt),
              finished <= now.addingTimeInterval(Self.maxClockSkew), finished >= now.addingTimeInterval(-Self.maxAge) else {
            throw VouchError(.receiptOutsideValidity, "the receipt finishes after the broker's clock, or more than a day before it",
                             context: ["finishedAt": facts.statement.predicate.finishedAt])
        }
        let entry = try LogEntry(kind: .receipt, time: now, fields: [
            "spiffe": facts.spiffeId, "serial": facts.serial, "certificate": LogEntry.digest(Crypto.sha256(try leaf.der)),
            "statement": LogEntry.digest(Crypto.sha256(bundle.envelope.payload)),
            "output": LogEntry.digest(facts.statement.outputSHA256),
        ])
        let (index, bytes, proof) = try log.appendReceipt(entry)
        return LogProofResponse(index: "\(index)", entry: Base64.encode(bytes), proof: proof.text)
    }
}
