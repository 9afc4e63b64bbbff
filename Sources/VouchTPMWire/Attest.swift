import VouchCore

/// TPMS_CLOCK_INFO (Part 2, Table 120).
public struct ClockInfo: Sendable, Equatable, Codable {
    public let clock: UInt64
    public let resetCount: UInt32
    public let restartCount: UInt32
    public let safe: Bool
}

/// TPMS_ATTEST (Part 2, Table 131) for quotes and certify. `raw` keeps the signed bytes:
/// a verifier checks the signature over `raw` before trusting any decoded field.
public struct TPMSAttest: Sendable, Equatable {
    public enum Attested: Sendable, Equatable {
        case quote(pcrSelection: PCRSelection, pcrDigest: [UInt8])
        case certify(name: [UInt8], qualifiedName: [UInt8])
    }

    public let magic: UInt32
    public let type: UInt16
    public let qualifiedSigner: [UInt8]
    public let extraData: [UInt8]
    public let clockInfo: ClockInfo
    public let firmwareVersion: UInt64
    public let attested: Attested
    public let raw: [UInt8]

    /// Parses a complete TPMS_ATTEST. Magic and type are decoded, not judged: the verifier judges.
    public init(bytes: [UInt8]) throws {
        guard bytes.count <= 4096 else {
            throw VouchError(.invalidValue, "TPMS_ATTEST is larger than any TPM produces",
                             context: ["field": "TPMS_ATTEST", "expected": "<= 4096", "got": "\(bytes.count)"])
        }
        var r = ByteReader(bytes)
        magic = try r.u32("TPMS_ATTEST.magic")
        let typeOffset = r.offset
        type = try r.u16("TPMS_ATTEST.type")
        qualifiedSigner = try r.sized("TPMS_ATTEST.qualifiedSigner", max: 68)
        extraData = try r.sized("TPMS_ATTEST.extraData", max: 64)
        clockInfo = ClockInfo(clock: try r.u64("clockInfo.clock"), resetCount: try r.u32("clockInfo.resetCount"),
                              restartCount: try r.u32("clockInfo.restartCount"), safe: try r.u8("clockInfo.safe") != 0)
        firmwareVersion = try r.u64("TPMS_ATTEST.firmwareVersion")
        switch type {
        case TPMConstants.stAttestQuote:
            let sel = try PCRSelection(from: &r)
            let digest = try r.sized("quote.pcrDigest", max: 64)
            attested = .quote(pcrSelection: sel, pcrDigest: digest)
        case TPMConstants.stAttestCertify:
            let name = try r.sized("certify.name", max: 68)
            let qn = try r.sized("certify.qualifiedName", max: 68)
            attested = .certify(name: name, qualifiedName: qn)
        default:
            throw VouchError(.unsupported, "TPMS_ATTEST type is neither quote nor certify",
                             context: ["field": "TPMS_ATTEST.type", "offset": "\(typeOffset)", "got": String(format0x: type)])
        }
        try r.expectEnd("TPMS_ATTEST")
        raw = bytes
    }
}

/// TPMT_SIGNATURE (Part 2, Table 217) for the schemes an AK uses.
public struct TPMTSignature: Sendable, Equatable {
    public enum Value: Sendable, Equatable {
        case rsa(scheme: TPMAlg, hash: HashAlg, signature: [UInt8])   // rsassa or rsapss
        case ecdsa(hash: HashAlg, r: [UInt8], s: [UInt8])
    }

    public let value: Value
    public let raw: [UInt8]

    public var hash: HashAlg {
        switch value { case let .rsa(_, h, _): h; case let .ecdsa(h, _, _): h }
    }

    public init(bytes: [UInt8]) throws {
        var r = ByteReader(bytes)
        let algOffset = r.offset
        let alg = try TPMAlg(wire: try r.u16("TPMT_SIGNATURE.sigAlg"), field: "TPMT_SIGNATURE.sigAlg", offset: algOffset)
        let hOffset = r.offset
        switch alg {
        case .rsassa, .rsapss:
            let hash = try HashAlg(wire: try r.u16("signature.hash"), field: "signature.hash", offset: hOffset)
            let sig = try r.sized("signature.sig", max: 512)
            value = .rsa(scheme: alg, hash: hash, signature: sig)
        case .ecdsa:
            let hash = try HashAlg(wire: try r.u16("signature.hash"), field: "signature.hash", offset: hOffset)
            let sr = try r.sized("signature.signatureR", max: 66)
            let ss = try r.sized("signature.signatureS", max: 66)
            value = .ecdsa(hash: hash, r: sr, s: ss)
        default:
            throw VouchError(.unsupported, "signature scheme is not one an attestation key uses",
                             context: ["field": "TPMT_SIGNATURE.sigAlg", "offset": "\(algOffset)", "got": "\(alg)"])
        }
        try r.expectEnd("TPMT_SIGNATURE")
        raw = bytes
    }
}
