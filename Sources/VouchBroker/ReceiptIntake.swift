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
}

/// `POST /v1/receipts`: an agent logs one of its receipts. The body is a receipt bundle
/// (docs/receipts.md); the broker logs only what verifies, in this order:
///
///  1. the bundle parses (`receipt_malformed`); a `receipt` part already in it is ignored;
///  2. every check of `ReceiptVerifier` holds against the broker's own trust document (the
///     issuing-CA roots, the broker CA, this log's key): signature, chain, agent identity, EAR,
///     claims, the issuance entry and its inclusion in this log (the verifier's codes, 403);
///  3. the certificate is one this broker issued — same serial, same DER — and is not revoked
///     now (`receipt_not_accepted`);
///  4. the receipt finished no later than `maxClockSkew` after the broker's clock
///     (`receipt_outside_validity`).
///
/// Then the receipt entry (SPIFFE ID, serial, certificate digest, SHA-256 of the DSSE payload,
/// output digest; the time is the broker's) is appended, and the answer is its proof once a
/// checkpoint covers it. No token: the agent's signature authenticates the submission.
struct ReceiptIntake {
    static let maxClockSkew: TimeInterval = 300

    let log: TransparencyLog
    let trust: TrustDocument
    let certificates: any CertificateStore
    let clock: any Clock

    func submit(_ body: [UInt8]) throws -> LogProofResponse {
        let parsed: UnverifiedReceiptBundle
        do { parsed = try UnverifiedReceiptBundle(json: body) } catch {
            throw VouchError(.receiptMalformed, "the body is not a receipt bundle: \((error as? VouchError)?.message ?? "\(error)")")
        }
        let bundle = UnverifiedReceiptBundle(envelope: parsed.envelope, chainPEM: parsed.chainPEM, ear: parsed.ear,
                                             issuance: parsed.issuance, receipt: nil)
        let facts: ReceiptFacts
        switch ReceiptVerifier(trust: try ReceiptTrust(trust)).verify(bundle: bundle.json) {
        case .verified(let f): facts = f
        case .rejected(let violations):
            let first = violations.first ?? ReceiptViolation(code: .receiptMalformed, message: "the receipt does not verify")
            throw VouchError(first.code, violations.map { "\($0.code.rawValue): \($0.message)" }.joined(separator: "; "),
                             context: ["codes": violations.map(\.code.rawValue).joined(separator: ",")])
        }
        let leaf = try Certificate.chain(pem: bundle.chainPEM)[0]
        let certificateDigest = LogEntry.digest(Crypto.sha256(try leaf.der))
        guard let record = try certificates.certificate(serial: facts.serial),
              let issued = try? Certificate.chain(pem: record.pem).first, try issued.der == leaf.der else {
            throw VouchError(.receiptNotAccepted, "this broker did not issue the receipt's certificate", context: ["serial": facts.serial])
        }
        if let revokedAt = record.revokedAt {
            throw VouchError(.receiptNotAccepted, "the receipt's certificate was revoked at \(revokedAt.iso8601)", context: ["serial": facts.serial])
        }
        let now = clock.now()
        guard let finished = Date.parseRFC3339(facts.statement.predicate.finishedAt), finished <= now.addingTimeInterval(Self.maxClockSkew) else {
            throw VouchError(.receiptOutsideValidity, "the receipt finishes after the broker's clock", context: ["finishedAt": facts.statement.predicate.finishedAt])
        }
        let entry = try LogEntry(kind: .receipt, time: now, fields: [
            "spiffe": facts.spiffeId, "serial": facts.serial, "certificate": certificateDigest,
            "statement": LogEntry.digest(Crypto.sha256(bundle.envelope.payload)),
            "output": LogEntry.digest(facts.statement.outputSHA256),
        ])
        let (index, bytes, proof) = try log.appendReceipt(entry)
        return LogProofResponse(index: "\(index)", entry: Base64.encode(bytes), proof: proof.text)
    }
}
