import VouchCore

/// TPM_ALG_ID values (TCG TPM 2.0 Part 2, Table 9) that Vouch understands.
public enum TPMAlg: UInt16, Sendable, Codable, CaseIterable {
    case rsa = 0x0001
    case sha1 = 0x0004
    case hmac = 0x0005
    case aes = 0x0006
    case keyedHash = 0x0008
    case sha256 = 0x000B
    case sha384 = 0x000C
    case sha512 = 0x000D
    case null = 0x0010
    case rsassa = 0x0014
    case rsaes = 0x0015
    case rsapss = 0x0016
    case oaep = 0x0017
    case ecdsa = 0x0018
    case ecdh = 0x0019
    case ecdaa = 0x001A
    case ecschnorr = 0x001C
    case kdf1SP800_56A = 0x0020
    case kdf1SP800_108 = 0x0022
    case ecc = 0x0023
    case symCipher = 0x0025
    case cfb = 0x0043

    public init(wire raw: UInt16, field: String, offset: Int) throws {
        guard let a = TPMAlg(rawValue: raw) else {
            throw VouchError(.unsupported, "\(field) names an algorithm Vouch does not support",
                             context: ["field": field, "offset": "\(offset)", "got": String(format0x: raw)])
        }
        self = a
    }
}

/// A hash algorithm usable for PCR banks, names and signatures.
public enum HashAlg: String, Sendable, Codable, CaseIterable {
    case sha1, sha256, sha384, sha512

    public var tpmAlg: TPMAlg {
        switch self { case .sha1: .sha1; case .sha256: .sha256; case .sha384: .sha384; case .sha512: .sha512 }
    }

    public var digestSize: Int {
        switch self { case .sha1: 20; case .sha256: 32; case .sha384: 48; case .sha512: 64 }
    }

    /// Hashes the TPM algorithm id. Without this, the String raw value's default would be hashed
    /// on every `[HashAlg: …]` lookup (event-log replay does several per event).
    public func hash(into hasher: inout Hasher) { hasher.combine(tpmAlg.rawValue) }

    public init?(tpmAlg: TPMAlg) {
        switch tpmAlg {
        case .sha1: self = .sha1
        case .sha256: self = .sha256
        case .sha384: self = .sha384
        case .sha512: self = .sha512
        default: return nil
        }
    }

    public init(wire raw: UInt16, field: String, offset: Int) throws {
        guard let alg = TPMAlg(rawValue: raw), let h = HashAlg(tpmAlg: alg) else {
            throw VouchError(.unsupported, "\(field) is not a supported hash algorithm",
                             context: ["field": field, "offset": "\(offset)", "got": String(format0x: raw)])
        }
        self = h
    }
}

/// TPM_ECC_CURVE values for the curves Vouch verifies.
public enum ECCCurve: UInt16, Sendable, Codable {
    case nistP256 = 0x0003
    case nistP384 = 0x0004
    case nistP521 = 0x0005

    public var coordinateSize: Int {
        switch self { case .nistP256: 32; case .nistP384: 48; case .nistP521: 66 }
    }
}

/// TPMA_OBJECT bits (Part 2, Table 31).
public struct ObjectAttributes: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let fixedTPM = ObjectAttributes(rawValue: 1 << 1)
    public static let stClear = ObjectAttributes(rawValue: 1 << 2)
    public static let fixedParent = ObjectAttributes(rawValue: 1 << 4)
    public static let sensitiveDataOrigin = ObjectAttributes(rawValue: 1 << 5)
    public static let userWithAuth = ObjectAttributes(rawValue: 1 << 6)
    public static let adminWithPolicy = ObjectAttributes(rawValue: 1 << 7)
    public static let noDA = ObjectAttributes(rawValue: 1 << 10)
    public static let encryptedDuplication = ObjectAttributes(rawValue: 1 << 11)
    public static let restricted = ObjectAttributes(rawValue: 1 << 16)
    public static let decrypt = ObjectAttributes(rawValue: 1 << 17)
    public static let sign = ObjectAttributes(rawValue: 1 << 18)
}

public enum TPMConstants {
    /// TPM_GENERATED_VALUE: every TPMS_ATTEST made by a TPM starts with it.
    public static let generatedValue: UInt32 = 0xff54_4347
    public static let stAttestQuote: UInt16 = 0x8018
    public static let stAttestCertify: UInt16 = 0x8017
    /// NV index of the RSA 2048 EK certificate (TCG EK Credential Profile).
    public static let rsaEKCertNVIndex: UInt32 = 0x01c0_0002
    /// Persistent handle of the RSA EK (TCG Provisioning Guidance).
    public static let rsaEKPersistentHandle: UInt32 = 0x8101_0001
}

extension String {
    init(format0x v: UInt16) {
        let digits = String(v, radix: 16)
        self = "0x" + String(repeating: "0", count: Swift.max(0, 4 - digits.count)) + digits
    }
}

/// Computes digests. Pure targets (event-log replay) take one instead of importing a crypto library.
public protocol Digester: Sendable {
    func digest(_ alg: HashAlg, _ data: [UInt8]) -> [UInt8]
}
