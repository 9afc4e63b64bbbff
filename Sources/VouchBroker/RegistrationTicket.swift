import Foundation
import VouchAPI
import VouchCore
import VouchCrypto

extension ErrorCode {
    public static let registrationInvalid = ErrorCode("registration_invalid", status: 403)
    public static let labelsImmutable = ErrorCode("labels_immutable", status: 409)
}

/// A registration waiting for credential activation, held by the registrant rather than the
/// broker: registration is unauthenticated (an EK certificate is public), so it writes nothing
/// durable and cannot disturb the host's active AK, trust record, labels, URL or key pin.
/// The broker MACs the ticket with a key that never leaves its memory and checks it at
/// activation; only then, with proof that the AK sits in the TPM of the certified EK, does
/// anything about the host change.
struct RegistrationTicket: Codable, Sendable, Equatable {
    var hostId: String
    var hostname: String
    var ekPublic: String        // base64 TPM2B_PUBLIC, as certified
    var ekCertificate: String   // base64 DER
    var ekIssuer: String
    var labels: [String: String]
    var akPublic: String        // base64 TPM2B_PUBLIC
    var akAlgorithm: String
    /// SHA-256 (hex) of the activation secret made for this AK's name and the EK.
    var activationDigest: String
    var expiresAt: Double
    var mode: String
    var attesterURL: String?
    var simulated: Bool
    /// The host record's version when the registration was answered (0: no record). Activation
    /// requires it unchanged, so a ticket is good for one activation, and never after the host was
    /// blocked, deleted or activated with another AK since.
    var hostVersion: Int64

    static let maxEncodedLength = 32 * 1024

    /// `payload.mac`, both base64url: the ticket's JSON and HMAC-SHA256 over it.
    func seal(key: [UInt8]) -> String {
        let payload = JSONCodec.encode(self)
        return JWSSigner.base64URL(payload) + "." + JWSSigner.base64URL(Crypto.hmac(.sha256, key: key, payload))
    }

    /// Opens a sealed ticket: bounded length, two parts, the MAC verifies (constant time), then
    /// the JSON decodes. Any failure is `registration_invalid`.
    static func open(_ sealed: String, key: [UInt8]) throws -> RegistrationTicket {
        let invalid = VouchError(.registrationInvalid, "the registration ticket is not one this broker issued; register again", context: ["field": "registration"])
        guard sealed.utf8.count <= maxEncodedLength else { throw invalid }
        let parts = sealed.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2,
              let payload = try? JWSSigner.base64URLDecode(String(parts[0]), field: "registration"),
              let mac = try? JWSSigner.base64URLDecode(String(parts[1]), field: "registration"),
              constantTimeEqual(mac, Crypto.hmac(.sha256, key: key, payload)),
              let ticket = try? JSONCodec.decode(RegistrationTicket.self, from: payload) else { throw invalid }
        return ticket
    }
}
