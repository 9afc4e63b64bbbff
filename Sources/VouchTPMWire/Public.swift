import VouchCore

/// TPMT_PUBLIC (Part 2, Table 191) for RSA and ECC keys. `raw` keeps the exact marshaled bytes,
/// which are what the TPM hashes into the object's name.
public struct TPMTPublic: Sendable, Equatable {
    public enum Key: Sendable, Equatable {
        case rsa(modulus: [UInt8], exponent: UInt32, keyBits: UInt16)
        case ecc(curve: ECCCurve, x: [UInt8], y: [UInt8])
    }

    public let type: TPMAlg
    public let nameAlg: HashAlg
    public let attributes: ObjectAttributes
    public let authPolicy: [UInt8]
    /// Symmetric algorithm of a storage/decrypt key (.null for signing keys).
    public let symmetric: TPMAlg
    /// Key size in bits of `symmetric` (0 when `.null`).
    public let symmetricKeyBits: UInt16
    /// Block cipher mode of `symmetric` as marshaled (0 when `.null`; CFB for storage keys).
    public let symmetricMode: UInt16
    /// ECC keys: the KDF scheme as marshaled (TPM_ALG_NULL for EKs); 0 for RSA keys.
    public let kdfScheme: UInt16
    /// RSA keys: the exponent field as marshaled (0 stands for 65537); 0 for ECC keys.
    /// `key` holds the exponent's value; this keeps the encoding the public area used.
    public let rsaExponentField: UInt32
    /// Signing scheme and its hash (.null when the key allows any scheme).
    public let scheme: TPMAlg
    public let schemeHash: HashAlg?
    public let key: Key
    public let raw: [UInt8]

    /// Parses exactly one TPMT_PUBLIC from `reader`.
    public init(from reader: inout ByteReader) throws {
        let start = reader.offset
        let typeOffset = reader.offset
        let type = try TPMAlg(wire: try reader.u16("TPMT_PUBLIC.type"), field: "TPMT_PUBLIC.type", offset: typeOffset)
        let nameOffset = reader.offset
        nameAlg = try HashAlg(wire: try reader.u16("TPMT_PUBLIC.nameAlg"), field: "TPMT_PUBLIC.nameAlg", offset: nameOffset)
        attributes = ObjectAttributes(rawValue: try reader.u32("TPMT_PUBLIC.objectAttributes"))
        authPolicy = try reader.sized("TPMT_PUBLIC.authPolicy", max: 64)

        // TPMT_SYM_DEF_OBJECT
        let symOffset = reader.offset
        symmetric = try TPMAlg(wire: try reader.u16("parameters.symmetric.algorithm"), field: "parameters.symmetric.algorithm", offset: symOffset)
        if symmetric != .null {
            symmetricKeyBits = try reader.u16("parameters.symmetric.keyBits")
            symmetricMode = try reader.u16("parameters.symmetric.mode")
        } else {
            symmetricKeyBits = 0
            symmetricMode = 0
        }
        // TPMT_RSA_SCHEME / TPMT_ECC_SCHEME
        let schemeOffset = reader.offset
        scheme = try TPMAlg(wire: try reader.u16("parameters.scheme"), field: "parameters.scheme", offset: schemeOffset)
        if scheme != .null {
            let hOffset = reader.offset
            schemeHash = try HashAlg(wire: try reader.u16("parameters.scheme.hashAlg"), field: "parameters.scheme.hashAlg", offset: hOffset)
            if scheme == .ecdaa { _ = try reader.u16("parameters.scheme.count") }
        } else {
            schemeHash = nil
        }

        switch type {
        case .rsa:
            let keyBits = try reader.u16("parameters.keyBits")
            let exp = try reader.u32("parameters.exponent")
            let modulus = try reader.sized("unique.rsa", max: 512)
            guard keyBits == 1024 || keyBits == 2048 || keyBits == 3072 || keyBits == 4096, modulus.count * 8 == Int(keyBits) else {
                throw VouchError(.invalidValue, "RSA modulus length does not match keyBits",
                                 context: ["field": "unique.rsa", "expected": "\(keyBits / 8)", "got": "\(modulus.count)"])
            }
            key = .rsa(modulus: modulus, exponent: exp == 0 ? 65537 : exp, keyBits: keyBits)
            rsaExponentField = exp
            kdfScheme = 0
        case .ecc:
            let curveOffset = reader.offset
            let curveRaw = try reader.u16("parameters.curveID")
            guard let curve = ECCCurve(rawValue: curveRaw) else {
                throw VouchError(.unsupported, "ECC curve is not supported",
                                 context: ["field": "parameters.curveID", "offset": "\(curveOffset)", "got": String(format0x: curveRaw)])
            }
            let kdf = try reader.u16("parameters.kdf.scheme")
            if kdf != TPMAlg.null.rawValue { _ = try reader.u16("parameters.kdf.hashAlg") }
            kdfScheme = kdf
            rsaExponentField = 0
            let x = try reader.sized("unique.ecc.x", max: 66)
            let y = try reader.sized("unique.ecc.y", max: 66)
            guard x.count == curve.coordinateSize, y.count == curve.coordinateSize else {
                throw VouchError(.invalidValue, "ECC point coordinates have the wrong size",
                                 context: ["field": "unique.ecc", "expected": "\(curve.coordinateSize)", "got": "\(x.count)/\(y.count)"])
            }
            key = .ecc(curve: curve, x: x, y: y)
        default:
            throw VouchError(.unsupported, "only RSA and ECC public areas are supported",
                             context: ["field": "TPMT_PUBLIC.type", "offset": "\(typeOffset)", "got": "\(type)"])
        }
        self.type = type
        raw = Array(reader.bytes[start..<reader.offset])
    }

    /// Parses a TPM2B_PUBLIC (size-prefixed TPMT_PUBLIC) with nothing after it.
    public init(tpm2bPublic bytes: [UInt8]) throws {
        var outer = ByteReader(bytes)
        let inner = try outer.sized("TPM2B_PUBLIC", max: 1024)
        try outer.expectEnd("TPM2B_PUBLIC")
        var r = ByteReader(inner)
        try self.init(from: &r)
        try r.expectEnd("TPMT_PUBLIC")
    }

    /// TPM2B_PUBLIC encoding of this public area.
    public var tpm2b: [UInt8] {
        var w = ByteWriter()
        w.sized(raw)
        return w.bytes
    }
}
