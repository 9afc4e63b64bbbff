import Foundation
import VouchCore
import VouchCrypto
import VouchModelSigning

/// PLACEHOLDER, replaced by the keyless verifier (helper K): Sigstore keyless signatures.
public enum SigstoreKeylessVerifier {
    public struct Claims: Sendable {
        public let certificate: Certificate
        public let integratedTime: Date
        public let logIndex: UInt64
    }
    public enum Result: Sendable {
        case verified(Claims)
        case rejected(ErrorCode, String)
    }
    public static func verify(bundle: SigstoreBundle, trustedRoot: [UInt8], identity: String, issuer: String) -> Result {
        .rejected(.modelSignatureInvalid, "keyless verification is not built yet")
    }
}
