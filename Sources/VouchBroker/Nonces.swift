import Foundation
import VouchCore
import VouchCrypto
import VouchModel

/// Challenge nonces that cost nothing until they are used. Anyone may ask for a challenge (the
/// request is unauthenticated), so issuing one writes nothing: the nonce carries its own issue
/// time and a MAC binding it to the host and purpose. It becomes durable only when evidence
/// bound to it has verified — the used nonce is stored in the same transaction as the decision,
/// which is what makes it single-use (see `AttestationRecord.nonceExpiresAt`).
///
/// Layout (32 bytes, 64 hex digits as before): issue time in milliseconds since 1970 (6 bytes,
/// big-endian) ‖ 10 random bytes ‖ the first 16 bytes of HMAC-SHA256(key, "vouch nonce v1" ‖ 0 ‖
/// purpose ‖ 0 ‖ host id ‖ 0 ‖ the first 16 bytes). The key never leaves the broker's memory and
/// is new at each start, so a restart expires outstanding challenges.
struct NonceMinter: Sendable {
    enum Purpose: String, Sendable { case enrollment, attestation, registration }

    let key: [UInt8]
    /// How far in the future an issue time may lie (the clock stepping back a little).
    static let futureSlack: TimeInterval = 5

    func mint(hostID: String, purpose: Purpose, at now: Date) throws -> String {
        let ms = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        var head = (0..<6).reversed().map { UInt8(truncatingIfNeeded: ms >> (8 * UInt64($0))) }
        head += try Crypto.randomBytes(10)
        return Hex.encode(head + mac(head, hostID: hostID, purpose: purpose))
    }

    /// Checks a nonce for `hostID` and `purpose` and returns when it was issued. Checks, in order:
    /// 64 lowercase hex digits (`bad_request`); the MAC (`nonce_unknown`: not issued by this
    /// broker process, or to another host or purpose; or issued in the future); issued less than `ttl` before `now`
    /// (`nonce_expired`). Whether it was already used is the store's to say.
    func open(_ nonce: String, hostID: String, purpose: Purpose, now: Date, ttl: TimeInterval) throws -> Date {
        guard Hex.isLowercase(nonce, length: 64...64), let bytes = try? Hex.decode(nonce) else {
            throw VouchError(.badRequest, "nonce must be 64 lowercase hex digits", context: ["field": "nonce"])
        }
        let head = Array(bytes[0..<16])
        guard constantTimeEqual(Array(bytes[16..<32]), mac(head, hostID: hostID, purpose: purpose)) else {
            throw VouchError(.nonceUnknown, "nonce was not issued to this host for \(purpose.rawValue)", context: ["field": "nonce"])
        }
        let ms = head[0..<6].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let issuedAt = Date(timeIntervalSince1970: Double(ms) / 1000)
        guard issuedAt <= now.addingTimeInterval(Self.futureSlack) else {
            throw VouchError(.nonceUnknown, "nonce claims to be issued in the future (the broker's clock went back)", context: ["field": "nonce"])
        }
        guard now < issuedAt.addingTimeInterval(ttl) else {
            throw VouchError(.nonceExpired, "nonce has expired; request a new challenge", context: ["field": "nonce", "expiredAt": issuedAt.addingTimeInterval(ttl).iso8601])
        }
        return issuedAt
    }

    private func mac(_ head: [UInt8], hostID: String, purpose: Purpose) -> [UInt8] {
        let input = Array("vouch nonce v1".utf8) + [0] + Array(purpose.rawValue.utf8) + [0] + Array(hostID.utf8) + [0] + head
        return Array(Crypto.hmac(.sha256, key: key, input).prefix(16))
    }
}
