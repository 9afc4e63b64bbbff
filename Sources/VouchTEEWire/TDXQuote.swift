import VouchCore

// Intel TDX DCAP quotes, versions 4 and 5 (Intel TDX DCAP Quoting Library API, Appendix A
// "Quote Format"). All integers are little-endian. Layout:
//
//   v4: header (48) ‖ TD quote body (584)                          ‖ u32 sigLen ‖ signature data
//   v5: header (48) ‖ u16 bodyType ‖ u32 bodySize ‖ body (584|648) ‖ u32 sigLen ‖ signature data
//
// The attestation key signs everything before the signature-data length: header ‖ body (v4),
// header ‖ descriptor ‖ body (v5). Signature data (ECDSA-P256 key type):
//   signature r‖s (64) ‖ attestation public key x‖y (64) ‖ certification data
// with certification data type 6 (QE report certification data):
//   QE report (384, an SGX report body) ‖ QE report signature (64) ‖ u16 authLen ‖ QE auth data ‖
//   certification data type 5 (the PCK certificate chain, PEM).
// Real quotes come in larger buffers: bytes after the signature data are ignored (counted in
// `trailingByteCount`), never read.

/// The 48-byte quote header.
public struct TDXQuoteHeader: Sendable, Equatable {
    public static let size = 48
    /// ECDSA-256-with-P-256 attestation key.
    public static let attestationKeyECDSAP256: UInt16 = 2
    public static let teeTypeTDX: UInt32 = 0x81
    /// Intel's QE vendor id, 939a7233-f79c-4ca9-940a-0db3957f0607.
    public static let intelQEVendorID: [UInt8] = [0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07]

    public var version: UInt16
    public var attestationKeyType: UInt16
    public var teeType: UInt32
    /// Bytes 8..<12: reserved in v4 and v5 (QE and PCE SVN in the SGX v3 header).
    public var reserved: [UInt8]
    public var qeVendorID: [UInt8]
    public var userData: [UInt8]

    public init(version: UInt16, attestationKeyType: UInt16 = attestationKeyECDSAP256, teeType: UInt32 = teeTypeTDX,
                reserved: [UInt8] = [0, 0, 0, 0], qeVendorID: [UInt8] = intelQEVendorID, userData: [UInt8] = [UInt8](repeating: 0, count: 20)) {
        self.version = version
        self.attestationKeyType = attestationKeyType
        self.teeType = teeType
        self.reserved = reserved
        self.qeVendorID = qeVendorID
        self.userData = userData
    }
}

/// The TD quote body: TDX 1.0 (584 bytes, v4 quotes and v5 body type 2) or TDX 1.5 (648 bytes,
/// v5 body type 3, which adds TEE_TCB_SVN_2 and MRSERVICETD).
public struct TDXQuoteBody: Sendable, Equatable {
    public enum Kind: UInt16, Sendable {
        case td10 = 2
        case td15 = 3
        public var size: Int { self == .td10 ? 584 : 648 }
    }

    public var kind: Kind
    public var teeTcbSvn: [UInt8]        // 16
    public var mrSeam: [UInt8]           // 48
    public var mrSignerSeam: [UInt8]     // 48
    public var seamAttributes: [UInt8]   // 8
    public var tdAttributes: [UInt8]     // 8
    public var xfam: [UInt8]             // 8
    public var mrTD: [UInt8]             // 48
    public var mrConfigID: [UInt8]       // 48
    public var mrOwner: [UInt8]          // 48
    public var mrOwnerConfig: [UInt8]    // 48
    public var rtmrs: [[UInt8]]          // 4 × 48
    public var reportData: [UInt8]       // 64
    /// TDX 1.5 only (16 and 48 bytes); empty for TDX 1.0.
    public var teeTcbSvn2: [UInt8]
    public var mrServiceTD: [UInt8]

    public init(kind: Kind = .td10, teeTcbSvn: [UInt8] = zeros(16), mrSeam: [UInt8] = zeros(48), mrSignerSeam: [UInt8] = zeros(48),
                seamAttributes: [UInt8] = zeros(8), tdAttributes: [UInt8] = zeros(8), xfam: [UInt8] = zeros(8), mrTD: [UInt8] = zeros(48),
                mrConfigID: [UInt8] = zeros(48), mrOwner: [UInt8] = zeros(48), mrOwnerConfig: [UInt8] = zeros(48),
                rtmrs: [[UInt8]] = [zeros(48), zeros(48), zeros(48), zeros(48)], reportData: [UInt8] = zeros(64),
                teeTcbSvn2: [UInt8]? = nil, mrServiceTD: [UInt8]? = nil) {
        self.kind = kind
        self.teeTcbSvn = teeTcbSvn
        self.mrSeam = mrSeam
        self.mrSignerSeam = mrSignerSeam
        self.seamAttributes = seamAttributes
        self.tdAttributes = tdAttributes
        self.xfam = xfam
        self.mrTD = mrTD
        self.mrConfigID = mrConfigID
        self.mrOwner = mrOwner
        self.mrOwnerConfig = mrOwnerConfig
        self.rtmrs = rtmrs
        self.reportData = reportData
        self.teeTcbSvn2 = teeTcbSvn2 ?? (kind == .td15 ? Self.zeros(16) : [])
        self.mrServiceTD = mrServiceTD ?? (kind == .td15 ? Self.zeros(48) : [])
    }

    public static func zeros(_ n: Int) -> [UInt8] { [UInt8](repeating: 0, count: n) }

    /// TDATTRIBUTES decoded (TDX module ABI: bit 0 DEBUG, 28 SEPT_VE_DISABLE, 30 PKS, 31 KL, 63 PERFMON).
    public var attributes: TDXTDAttributes { TDXTDAttributes(tdAttributes) }
}

/// TDATTRIBUTES as a little-endian 64-bit value with its named bits.
public struct TDXTDAttributes: Sendable, Equatable {
    public let value: UInt64
    public init(_ bytes: [UInt8]) {
        var v: UInt64 = 0
        for (i, b) in bytes.prefix(8).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        value = v
    }
    /// TUD bits 7:0; bit 0 is DEBUG (the host can read and write the TD's state and memory).
    public var debug: Bool { value & 1 != 0 }
    /// Any TUD bit (7:0): the TD is under debug and untrusted.
    public var underDebug: Bool { value & 0xff != 0 }
    public var septVEDisable: Bool { value & (1 << 28) != 0 }
    public var pks: Bool { value & (1 << 30) != 0 }
    public var keyLocker: Bool { value & (1 << 31) != 0 }
    public var perfmon: Bool { value & (1 << 63) != 0 }
}

/// An SGX report body (384 bytes): here the Quoting Enclave's report, signed by the PCK key.
public struct SGXReportBody: Sendable, Equatable {
    public static let size = 384
    /// The exact 384 bytes (what the QE report signature covers).
    public let raw: [UInt8]
    public var cpuSvn: [UInt8] { Array(raw[0..<16]) }
    public var miscSelect: UInt32 { tdxLE32(raw, 16) }
    public var attributes: [UInt8] { Array(raw[48..<64]) }
    public var mrEnclave: [UInt8] { Array(raw[64..<96]) }
    public var mrSigner: [UInt8] { Array(raw[128..<160]) }
    public var isvProdID: UInt16 { UInt16(raw[256]) | UInt16(raw[257]) << 8 }
    public var isvSvn: UInt16 { UInt16(raw[258]) | UInt16(raw[259]) << 8 }
    public var reportData: [UInt8] { Array(raw[320..<384]) }

    public init(raw: [UInt8]) throws {
        guard raw.count == Self.size else {
            throw VouchError(.teeEvidenceMalformed, "an SGX report body is 384 bytes", context: ["field": "qeReport", "expected": "384", "got": "\(raw.count)"])
        }
        self.raw = raw
    }

    /// Builds a report body from its fields (reserved bytes zero).
    public init(cpuSvn: [UInt8] = TDXQuoteBody.zeros(16), miscSelect: UInt32 = 0, attributes: [UInt8] = TDXQuoteBody.zeros(16),
                mrEnclave: [UInt8] = TDXQuoteBody.zeros(32), mrSigner: [UInt8] = TDXQuoteBody.zeros(32), isvProdID: UInt16 = 0,
                isvSvn: UInt16 = 0, reportData: [UInt8] = TDXQuoteBody.zeros(64)) {
        var w = TDXByteWriter()
        w.fixed(cpuSvn, 16)
        w.u32(miscSelect)
        w.fixed([], 28)
        w.fixed(attributes, 16)
        w.fixed(mrEnclave, 32)
        w.fixed([], 32)
        w.fixed(mrSigner, 32)
        w.fixed([], 96)
        w.u16(isvProdID)
        w.u16(isvSvn)
        w.fixed([], 60)
        w.fixed(reportData, 64)
        raw = w.bytes
    }
}

/// QE report certification data (certification data type 6).
public struct TDXQECertificationData: Sendable, Equatable {
    public static let type: UInt16 = 6
    /// Nested certification data type 5: the PCK certificate chain, PEM (leaf first).
    public static let pckChainType: UInt16 = 5

    public var qeReport: SGXReportBody
    public var qeReportSignature: [UInt8]   // r‖s, 64
    public var qeAuthData: [UInt8]
    public var pckCertChain: [UInt8]

    public init(qeReport: SGXReportBody, qeReportSignature: [UInt8], qeAuthData: [UInt8], pckCertChain: [UInt8]) {
        self.qeReport = qeReport
        self.qeReportSignature = qeReportSignature
        self.qeAuthData = qeAuthData
        self.pckCertChain = pckCertChain
    }
}

/// The quote's signature data (ECDSA-P256 attestation key).
public struct TDXQuoteSignatureData: Sendable, Equatable {
    public var signature: [UInt8]        // r‖s over the signed bytes, 64
    public var attestationKey: [UInt8]   // x‖y, 64
    public var certification: TDXQECertificationData

    public init(signature: [UInt8], attestationKey: [UInt8], certification: TDXQECertificationData) {
        self.signature = signature
        self.attestationKey = attestationKey
        self.certification = certification
    }
}

/// A TDX DCAP quote, parsed and UNVERIFIED: nothing here has been checked against a signature.
/// `TDXVerifier` (VouchAttestation) decides what is believed.
public struct TDXQuote: Sendable {
    /// Larger inputs are refused before any field is read (a real quote is about 5 KiB).
    public static let maxBytes = 1 << 20

    public let header: TDXQuoteHeader
    public let body: TDXQuoteBody
    public let signatureData: TDXQuoteSignatureData
    /// The exact bytes the attestation key signs.
    public let signedBytes: [UInt8]
    /// Bytes after the signature data (the rest of the buffer the quote came in), not read.
    public let trailingByteCount: Int

    public var version: Int { Int(header.version) }

    public init(bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxBytes else {
            throw VouchError(.teeEvidenceMalformed, "TDX quote is larger than 1 MiB", context: ["field": "quote", "got": "\(bytes.count)"])
        }
        var r = TDXByteReader(bytes)
        let header = try Self.readHeader(&r)
        let kind: TDXQuoteBody.Kind
        if header.version == 5 {
            let at = r.offset
            let type = try r.u16("bodyDescriptor.type")
            let size = try r.u32("bodyDescriptor.size")
            guard let k = TDXQuoteBody.Kind(rawValue: type) else {
                throw tdxMalformed("quote body type is not TDX 1.0 (2) or TDX 1.5 (3)", field: "bodyDescriptor.type", offset: at, got: "\(type)")
            }
            guard size == UInt32(k.size) else {
                throw tdxMalformed("quote body size does not match its type", field: "bodyDescriptor.size", offset: at + 2, expected: "\(k.size)", got: "\(size)")
            }
            kind = k
        } else {
            kind = .td10
        }
        let body = try Self.readBody(&r, kind: kind)
        let signedEnd = r.offset
        let sigLenAt = r.offset
        let sigLen = Int(try r.u32("signatureDataLength"))
        guard sigLen <= r.remaining else {
            throw tdxMalformed("signature data length runs past the end of the quote", field: "signatureDataLength", offset: sigLenAt,
                            expected: "<= \(r.remaining)", got: "\(sigLen)")
        }
        var s = r.limited(to: sigLen)
        let signatureData = try Self.readSignatureData(&s)
        r.skip(sigLen)
        self.header = header
        self.body = body
        self.signatureData = signatureData
        self.signedBytes = Array(bytes[0..<signedEnd])
        self.trailingByteCount = r.remaining
    }

    private static func readHeader(_ r: inout TDXByteReader) throws -> TDXQuoteHeader {
        let version = try r.u16("header.version")
        guard version == 4 || version == 5 else {
            throw tdxMalformed("TDX quote version is not 4 or 5", field: "header.version", offset: 0, expected: "4 or 5", got: "\(version)")
        }
        let keyType = try r.u16("header.attestationKeyType")
        guard keyType == TDXQuoteHeader.attestationKeyECDSAP256 else {
            throw tdxMalformed("attestation key type is not ECDSA-256-with-P-256 (2)", field: "header.attestationKeyType", offset: 2, expected: "2", got: "\(keyType)")
        }
        let teeType = try r.u32("header.teeType")
        guard teeType == TDXQuoteHeader.teeTypeTDX else {
            throw tdxMalformed("TEE type is not TDX (0x81)", field: "header.teeType", offset: 4, expected: "0x81", got: "0x\(String(teeType, radix: 16))")
        }
        return TDXQuoteHeader(version: version, attestationKeyType: keyType, teeType: teeType, reserved: try r.bytes(4, "header.reserved"),
                              qeVendorID: try r.bytes(16, "header.qeVendorID"), userData: try r.bytes(20, "header.userData"))
    }

    private static func readBody(_ r: inout TDXByteReader, kind: TDXQuoteBody.Kind) throws -> TDXQuoteBody {
        // Read in wire order (arguments are evaluated left to right), straight into the body.
        try TDXQuoteBody(kind: kind, teeTcbSvn: r.bytes(16, "body.teeTcbSvn"), mrSeam: r.bytes(48, "body.mrSeam"), mrSignerSeam: r.bytes(48, "body.mrSignerSeam"),
                         seamAttributes: r.bytes(8, "body.seamAttributes"), tdAttributes: r.bytes(8, "body.tdAttributes"), xfam: r.bytes(8, "body.xfam"),
                         mrTD: r.bytes(48, "body.mrTD"), mrConfigID: r.bytes(48, "body.mrConfigID"), mrOwner: r.bytes(48, "body.mrOwner"),
                         mrOwnerConfig: r.bytes(48, "body.mrOwnerConfig"),
                         rtmrs: [r.bytes(48, "body.rtmr0"), r.bytes(48, "body.rtmr1"), r.bytes(48, "body.rtmr2"), r.bytes(48, "body.rtmr3")],
                         reportData: r.bytes(64, "body.reportData"),
                         teeTcbSvn2: kind == .td15 ? r.bytes(16, "body.teeTcbSvn2") : nil, mrServiceTD: kind == .td15 ? r.bytes(48, "body.mrServiceTD") : nil)
    }

    private static func readSignatureData(_ s: inout TDXByteReader) throws -> TDXQuoteSignatureData {
        let signature = try s.bytes(64, "signatureData.signature")
        let key = try s.bytes(64, "signatureData.attestationKey")
        let certTypeAt = s.offset
        let certType = try s.u16("signatureData.certificationData.type")
        guard certType == TDXQECertificationData.type else {
            throw tdxMalformed("certification data is not QE report certification data (type 6)", field: "signatureData.certificationData.type",
                            offset: certTypeAt, expected: "6", got: "\(certType)")
        }
        let certSizeAt = s.offset
        let certSize = Int(try s.u32("signatureData.certificationData.size"))
        guard certSize == s.remaining else {
            throw tdxMalformed("certification data size does not fill the signature data", field: "signatureData.certificationData.size",
                            offset: certSizeAt, expected: "\(s.remaining)", got: "\(certSize)")
        }
        let qeReport = try SGXReportBody(raw: try s.bytes(SGXReportBody.size, "qeCertificationData.qeReport"))
        let qeSignature = try s.bytes(64, "qeCertificationData.qeReportSignature")
        let authLen = Int(try s.u16("qeCertificationData.qeAuthData.size"))
        let auth = try s.bytes(authLen, "qeCertificationData.qeAuthData")
        let innerTypeAt = s.offset
        let innerType = try s.u16("qeCertificationData.certificationData.type")
        guard innerType == TDXQECertificationData.pckChainType else {
            throw tdxMalformed("QE certification data does not carry a PCK certificate chain (type 5)", field: "qeCertificationData.certificationData.type",
                            offset: innerTypeAt, expected: "5", got: "\(innerType)")
        }
        let innerSizeAt = s.offset
        let innerSize = Int(try s.u32("qeCertificationData.certificationData.size"))
        guard innerSize == s.remaining else {
            throw tdxMalformed("PCK certificate chain size does not fill the QE certification data", field: "qeCertificationData.certificationData.size",
                            offset: innerSizeAt, expected: "\(s.remaining)", got: "\(innerSize)")
        }
        let chain = try s.bytes(innerSize, "qeCertificationData.pckCertChain")
        return TDXQuoteSignatureData(signature: signature, attestationKey: key,
                                     certification: TDXQECertificationData(qeReport: qeReport, qeReportSignature: qeSignature, qeAuthData: auth, pckCertChain: chain))
    }
}

func tdxMalformed(_ message: String, field: String, offset: Int? = nil, expected: String? = nil, got: String? = nil) -> VouchError {
    var context = ["field": field]
    if let offset { context["offset"] = "\(offset)" }
    if let expected { context["expected"] = expected }
    if let got { context["got"] = got }
    return VouchError(.teeEvidenceMalformed, message, context: context)
}
