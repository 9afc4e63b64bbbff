import VouchCore

/// An SPDM 1.1 GET_MEASUREMENTS request followed by its MEASUREMENTS response, as NVIDIA Hopper
/// GPUs hand out attestation evidence (DMTF DSP0274 1.1, §10.11; the measurement blocks in the
/// DMTF measurement specification format). Parsing checks every length and bound; nothing here
/// checks the signature, so every value is still unverified (`NvidiaGPUVerifier` decides).
///
/// Layout (multi-byte integers little-endian):
/// - request (37 bytes): SPDMVersion 0x11, code 0xE0, Param1 (bit 0: signature requested), Param2
///   (measurement operation; 0xFF = all), Nonce (32), SlotIDParam;
/// - response: SPDMVersion, code 0x60, Param1, Param2 (slot id in bits 0–3, the request's),
///   NumberOfBlocks (u8), MeasurementRecordLength (u24), the record (NumberOfBlocks blocks filling
///   exactly that length), Nonce (32), OpaqueDataLength (u16, at most 1024), OpaqueData,
///   Signature (96 bytes for ECDSA P-384: r ‖ s big-endian).
/// - a measurement block: Index (u8), MeasurementSpecification (u8; bit 0 = DMTF, the only one
///   accepted), MeasurementSize (u16), then DMTFSpecMeasurementValueType (u8; bit 7 = raw bit
///   stream), DMTFSpecMeasurementValueSize (u16) and the value, filling MeasurementSize exactly.
/// Bytes after the signature are tolerated only when they are all zero and at most
/// `maxTrailingZeros` (a real capture carries one such byte); they are outside the signed bytes.
public struct SPDMMeasurementTranscript: Sendable, Equatable {
    public static let requestLength = 37
    public static let signatureLength = 96
    public static let nonceLength = 32
    public static let maxOpaqueLength = 1024
    public static let maxTrailingZeros = 16
    /// A transcript longer than this is refused before parsing (255 blocks of SHA-512 fit easily).
    public static let maxBytes = 64 << 10

    /// One measurement block (DMTF measurement specification).
    public struct Block: Sendable, Equatable {
        public var index: UInt8
        /// DMTFSpecMeasurementValueType: bit 7 set for a raw bit stream, else a digest.
        public var valueType: UInt8
        public var value: [UInt8]
        public var isDigest: Bool { valueType & 0x80 == 0 }
        public init(index: UInt8, valueType: UInt8, value: [UInt8]) {
            self.index = index
            self.valueType = valueType
            self.value = value
        }
    }

    /// One NVIDIA opaque-data field: type (u16), length (u16), value.
    public struct OpaqueField: Sendable, Equatable {
        public var type: UInt16
        public var value: [UInt8]
        public init(type: UInt16, value: [UInt8]) {
            self.type = type
            self.value = value
        }
    }

    /// NVIDIA's opaque-data field types that Vouch reads (nvtrust local GPU verifier's list).
    public enum OpaqueType: UInt16, Sendable {
        case driverVersion = 3, vbiosVersion = 6, nvdec0Status = 11, measurementCount = 12, chipSKU = 15
        case project = 17, projectSKU = 18, fwid = 20, opaqueDataVersion = 34, featureFlag = 36
    }

    public var spdmVersion: UInt8
    /// Request Param1 (attributes) and Param2 (measurement operation).
    public var requestAttributes: UInt8
    public var requestOperation: UInt8
    /// The requester's nonce: the verifier's challenge.
    public var requestNonce: [UInt8]
    public var requestSlot: UInt8
    public var responseParam1: UInt8
    public var responseParam2: UInt8
    public var blocks: [Block]
    public var responderNonce: [UInt8]
    public var opaqueData: [UInt8]
    public var opaqueFields: [OpaqueField]
    /// ECDSA P-384 signature, r ‖ s big-endian.
    public var signature: [UInt8]
    /// Request ‖ response without its signature: the bytes the signature covers.
    public var signedBytes: [UInt8]
    /// Zero bytes found after the signature (outside the signed bytes).
    public var trailingZeros: Int

    public init(_ bytes: [UInt8]) throws {
        guard bytes.count <= Self.maxBytes else { throw Self.malformed("the SPDM transcript is longer than \(Self.maxBytes) bytes", "transcript") }
        do { try self.init(parsing: bytes) } catch let e as VouchError where e.code != .teeEvidenceMalformed {
            throw VouchError(.teeEvidenceMalformed, "SPDM transcript: \(e.message)", context: e.context)
        }
    }

    private init(parsing bytes: [UInt8]) throws {
        var r = ByteReader(bytes)
        spdmVersion = try r.u8("request.version")
        guard spdmVersion == 0x11 else { throw Self.malformed("the request is not SPDM 1.1", "request.version") }
        guard try r.u8("request.code") == 0xE0 else { throw Self.malformed("the request is not GET_MEASUREMENTS", "request.code") }
        requestAttributes = try r.u8("request.param1")
        guard requestAttributes & 1 == 1 else { throw Self.malformed("the request asks for no signature", "request.param1") }
        requestOperation = try r.u8("request.param2")
        // All measurements (0xFF): a request for one block, or for the count only, would let a
        // host leave out the blocks a reference comparison needs.
        guard requestOperation == 0xFF else { throw Self.malformed("the request does not ask for all measurements (param2 0xFF)", "request.param2") }
        requestNonce = try r.bytes(Self.nonceLength, "request.nonce")
        requestSlot = try r.u8("request.slot")
        guard try r.u8("response.version") == spdmVersion else { throw Self.malformed("the response's SPDM version differs from the request's", "response.version") }
        guard try r.u8("response.code") == 0x60 else { throw Self.malformed("the response is not MEASUREMENTS", "response.code") }
        responseParam1 = try r.u8("response.param1")
        responseParam2 = try r.u8("response.param2")
        guard responseParam2 & 0x0F == requestSlot & 0x0F else { throw Self.malformed("the response names another certificate slot than the request", "response.param2") }
        let count = Int(try r.u8("response.numberOfBlocks"))
        guard count >= 1 else { throw Self.malformed("the response holds no measurement block", "response.numberOfBlocks") }
        let lo = Int(try r.u16le("response.recordLength"))
        let recordLength = lo | Int(try r.u8("response.recordLength")) << 16
        blocks = try Self.parseRecord(try r.bytes(recordLength, "response.record"), count: count)
        responderNonce = try r.bytes(Self.nonceLength, "response.nonce")
        let opaqueLength = Int(try r.u16le("response.opaqueLength"))
        guard opaqueLength <= Self.maxOpaqueLength else { throw Self.malformed("the opaque data is longer than \(Self.maxOpaqueLength) bytes", "response.opaqueLength") }
        opaqueData = try r.bytes(opaqueLength, "response.opaqueData")
        opaqueFields = try Self.parseOpaque(opaqueData)
        signedBytes = Array(bytes[0..<r.offset])
        signature = try r.bytes(Self.signatureLength, "response.signature")
        let rest = bytes[r.offset...]
        guard rest.count <= Self.maxTrailingZeros, rest.allSatisfy({ $0 == 0 }) else {
            throw VouchError(.teeEvidenceMalformed, "the SPDM transcript has bytes after the signature",
                             context: ["field": "response.signature", "got": "\(rest.count)"])
        }
        trailingZeros = rest.count
    }

    static func parseRecord(_ record: [UInt8], count: Int) throws -> [Block] {
        var r = ByteReader(record)
        var blocks: [Block] = []
        var seen = Set<UInt8>()
        for _ in 0..<count {
            let index = try r.u8("block.index")
            guard index != 0, index != 0xFF, seen.insert(index).inserted else { throw malformed("a measurement block index is 0, 255 or repeated", "block.index", got: "\(index)") }
            guard try r.u8("block.specification") == 1 else { throw malformed("a measurement block is not in the DMTF format", "block.specification", got: "\(index)") }
            let size = Int(try r.u16le("block.size"))
            var m = ByteReader(try r.bytes(size, "block.measurement"))
            let type = try m.u8("block.valueType")
            let valueSize = Int(try m.u16le("block.valueSize"))
            let value = try m.bytes(valueSize, "block.value")
            guard m.isAtEnd else { throw malformed("a measurement block's value does not fill its size", "block.size", got: "\(index)") }
            blocks.append(Block(index: index, valueType: type, value: value))
        }
        guard r.isAtEnd else { throw malformed("the measurement record is longer than its blocks", "response.recordLength") }
        return blocks
    }

    static func parseOpaque(_ data: [UInt8]) throws -> [OpaqueField] {
        var r = ByteReader(data)
        var fields: [OpaqueField] = []
        var seen = Set<UInt16>()
        while !r.isAtEnd {
            let type = try r.u16le("opaque.type")
            let length = Int(try r.u16le("opaque.length"))
            let value = try r.bytes(length, "opaque.value")
            guard seen.insert(type).inserted else { throw malformed("an opaque-data field type is repeated", "opaque.type", got: "\(type)") }
            fields.append(OpaqueField(type: type, value: value))
        }
        return fields
    }

    static func malformed(_ message: String, _ field: String, got: String? = nil) -> VouchError {
        var context = ["field": field]
        if let got { context["got"] = got }
        return VouchError(.teeEvidenceMalformed, message, context: context)
    }

    /// The value of opaque field `type`, if present.
    public func opaque(_ type: OpaqueType) -> [UInt8]? { opaqueFields.first { $0.type == type.rawValue }?.value }

    /// A NUL-terminated ASCII opaque field (driver version, project, SKUs) as text; nil when
    /// absent or not printable ASCII.
    public func opaqueString(_ type: OpaqueType) -> String? {
        guard let v = opaque(type) else { return nil }
        let text = v.prefix { $0 != 0 }
        guard !text.isEmpty, text.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return nil }
        return String(decoding: text, as: UTF8.self)
    }

    /// The driver version (opaque field 3), e.g. "550.90.07".
    public var driverVersion: String? { opaqueString(.driverVersion) }

    /// The VBIOS version (opaque field 6, 8 bytes) as NVIDIA writes it: the first four bytes as a
    /// little-endian integer in 8 hex digits split in pairs, then the fifth byte, e.g.
    /// `009f009601000000` → "96.00.9F.00.01".
    public var vbiosVersion: String? {
        guard let v = opaque(.vbiosVersion), v.count == 8 else { return nil }
        let digits = [v[3], v[2], v[1], v[0], v[4]].map { Hex.encode([$0]).uppercased() }
        return digits.joined(separator: ".")
    }

    /// The FWID (opaque field 20), 48 bytes for SHA-384.
    public var fwid: [UInt8]? { opaque(.fwid) }
}
