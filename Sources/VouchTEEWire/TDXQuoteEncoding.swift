import VouchCore

// The TDX quote writer (for the software TEE and tests) and the little-endian reader and writer
// the TDX formats use.

extension TDXQuoteBody {
    /// The body's bytes (584 for TDX 1.0, 648 for TDX 1.5); short fields are zero-padded.
    public var encoded: [UInt8] {
        var w = TDXByteWriter()
        w.fixed(teeTcbSvn, 16)
        w.fixed(mrSeam, 48)
        w.fixed(mrSignerSeam, 48)
        w.fixed(seamAttributes, 8)
        w.fixed(tdAttributes, 8)
        w.fixed(xfam, 8)
        w.fixed(mrTD, 48)
        w.fixed(mrConfigID, 48)
        w.fixed(mrOwner, 48)
        w.fixed(mrOwnerConfig, 48)
        for i in 0..<4 { w.fixed(i < rtmrs.count ? rtmrs[i] : [], 48) }
        w.fixed(reportData, 64)
        if kind == .td15 {
            w.fixed(teeTcbSvn2, 16)
            w.fixed(mrServiceTD, 48)
        }
        return w.bytes
    }
}

extension TDXQuoteHeader {
    public var encoded: [UInt8] {
        var w = TDXByteWriter()
        w.u16(version)
        w.u16(attestationKeyType)
        w.u32(teeType)
        w.fixed(reserved, 4)
        w.fixed(qeVendorID, 16)
        w.fixed(userData, 20)
        return w.bytes
    }
}

extension TDXQuoteSignatureData {
    /// signature ‖ attestation key ‖ certification data (type 6 wrapping type 5).
    public var encoded: [UInt8] {
        var inner = TDXByteWriter()
        inner.raw(certification.qeReport.raw)
        inner.fixed(certification.qeReportSignature, 64)
        inner.u16(UInt16(truncatingIfNeeded: certification.qeAuthData.count))
        inner.raw(certification.qeAuthData)
        inner.u16(TDXQECertificationData.pckChainType)
        inner.u32(UInt32(truncatingIfNeeded: certification.pckCertChain.count))
        inner.raw(certification.pckCertChain)
        var w = TDXByteWriter()
        w.fixed(signature, 64)
        w.fixed(attestationKey, 64)
        w.u16(TDXQECertificationData.type)
        w.u32(UInt32(truncatingIfNeeded: inner.bytes.count))
        w.raw(inner.bytes)
        return w.bytes
    }
}

extension TDXQuote {
    /// The bytes the attestation key signs for `header` and `body`: header ‖ body for v4, header ‖
    /// body descriptor ‖ body for v5.
    public static func signedBytes(header: TDXQuoteHeader, body: TDXQuoteBody) -> [UInt8] {
        var w = TDXByteWriter()
        w.raw(header.encoded)
        let b = body.encoded
        if header.version == 5 {
            w.u16(body.kind.rawValue)
            w.u32(UInt32(b.count))
        }
        w.raw(b)
        return w.bytes
    }

    /// A whole quote: the signed bytes, the signature-data length and the signature data.
    public static func encode(header: TDXQuoteHeader, body: TDXQuoteBody, signatureData: TDXQuoteSignatureData) -> [UInt8] {
        var w = TDXByteWriter()
        w.raw(signedBytes(header: header, body: body))
        let s = signatureData.encoded
        w.u32(UInt32(s.count))
        w.raw(s)
        return w.bytes
    }

    /// This quote re-encoded (without the trailing bytes it was read with).
    public var encoded: [UInt8] { Self.encode(header: header, body: body, signatureData: signatureData) }
}

/// Little-endian writes, as the DCAP structures are C structs on x86.
struct TDXByteWriter {
    private(set) var bytes: [UInt8] = []
    mutating func u16(_ v: UInt16) { bytes += [UInt8(v & 0xff), UInt8(v >> 8)] }
    mutating func u32(_ v: UInt32) { for s in stride(from: 0, through: 24, by: 8) { bytes.append(UInt8((v >> UInt32(s)) & 0xff)) } }
    mutating func raw(_ b: [UInt8]) { bytes += b }
    /// Exactly `n` bytes: `b` truncated or zero-padded.
    mutating func fixed(_ b: [UInt8], _ n: Int) {
        bytes += b.prefix(n)
        if b.count < n { bytes += [UInt8](repeating: 0, count: n - b.count) }
    }
}

/// Bounds-checked little-endian reads over one buffer, up to `end`, with offsets from the start
/// of the whole buffer in every error (`tee_evidence_malformed`, field, offset, expected, got).
struct TDXByteReader {
    let buffer: [UInt8]
    private(set) var offset: Int
    let end: Int

    init(_ buffer: [UInt8]) {
        self.buffer = buffer
        offset = 0
        end = buffer.count
    }

    private init(_ buffer: [UInt8], offset: Int, end: Int) {
        self.buffer = buffer
        self.offset = offset
        self.end = end
    }

    var remaining: Int { end - offset }

    /// A reader over the next `n` bytes (the caller checked `n <= remaining`).
    func limited(to n: Int) -> TDXByteReader { TDXByteReader(buffer, offset: offset, end: offset + n) }

    mutating func skip(_ n: Int) { offset += min(n, remaining) }

    private func need(_ n: Int, _ field: String) throws {
        guard n >= 0, n <= remaining else {
            throw tdxMalformed("input ends inside \(field)", field: field, offset: offset, expected: "\(n)", got: "\(max(remaining, 0))")
        }
    }

    mutating func bytes(_ n: Int, _ field: String) throws -> [UInt8] {
        try need(n, field)
        defer { offset += n }
        return Array(buffer[offset..<offset + n])
    }

    mutating func u16(_ field: String) throws -> UInt16 {
        try need(2, field)
        defer { offset += 2 }
        return UInt16(buffer[offset]) | UInt16(buffer[offset + 1]) << 8
    }

    mutating func u32(_ field: String) throws -> UInt32 {
        try need(4, field)
        defer { offset += 4 }
        return tdxLE32(buffer, offset)
    }
}

/// The little-endian u32 at `at` (the caller checked the bounds).
func tdxLE32(_ b: [UInt8], _ at: Int) -> UInt32 {
    UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
}
