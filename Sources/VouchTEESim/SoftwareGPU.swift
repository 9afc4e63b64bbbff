import Foundation
import VouchCore
import VouchCrypto
import VouchTEEWire

/// What a simulated NVIDIA Hopper GPU reports: its firmware versions, board identity and the good
/// measurement of each SPDM block. Every simulated GPU runs the same firmware, so one set of RIMs
/// covers them all.
public enum SoftwareGPUFirmware {
    public static let driverVersion = "550.90.07"
    /// The VBIOS version as the opaque data carries it (8 bytes; `SPDMMeasurementTranscript.vbiosVersion`
    /// reads it as "96.00.9F.00.01").
    public static let vbiosVersionBytes: [UInt8] = [0x00, 0x9f, 0x00, 0x96, 0x01, 0x00, 0x00, 0x00]
    public static let vbiosVersion = "96.00.9F.00.01"
    public static let project = "1010", projectSKU = "0200", chipSKU = "882", product = "GH100"
    /// SPDM measurement blocks 1…`blockCount`. RIM Resource index i is block i + 1: the VBIOS RIM
    /// holds indices 0…4 (blocks 1–5), the driver RIM indices 5…9 (blocks 6–10).
    public static let blockCount = 10
    public static let vbiosBlocks = 1...5
    public static let driverBlocks = 6...10

    /// The good measurement of SPDM block `index`: SHA-384("vouch simulated gpu block <index>").
    public static func measurement(block index: Int) -> [UInt8] {
        Crypto.digest(.sha384, Array("vouch simulated gpu block \(index)".utf8))
    }
}

/// One simulated GPU: its device identity key, the leaf certificate the software Device Identity
/// CA issued it (with the FWID in a TCG DICE TcbInfo extension) and that FWID.
public struct SoftwareGPU: Sendable {
    public let key: PrivateKey
    public let certificate: Certificate
    public let fwid: [UInt8]

    public init(key: PrivateKey, certificate: Certificate, fwid: [UInt8]) {
        self.key = key
        self.certificate = certificate
        self.fwid = fwid
    }

    /// The TCG DICE TcbInfo extension value (2.23.133.5.4.1): SEQUENCE { vendor [0] "NVIDIA",
    /// model [1] "GH100", fwids [6] { SEQUENCE { sha384 OID, OCTET STRING fwid } } }.
    public static func tcbInfo(fwid: [UInt8]) -> [UInt8] {
        let sha384 = DER.objectIdentifier([2, 16, 840, 1, 101, 3, 4, 2, 2])
        return DER.sequence([DER.tlv(DER.contextTag(0, constructed: false), Array("NVIDIA".utf8)),
                             DER.tlv(DER.contextTag(1, constructed: false), Array(SoftwareGPUFirmware.product.utf8)),
                             DER.tlv(DER.contextTag(6, constructed: true), DER.sequence([sha384, DER.octetString(fwid)]))])
    }

    /// SPDM 1.1 GET_MEASUREMENTS (signature requested, all blocks, slot 0, `nonce`) ‖
    /// MEASUREMENTS (`blocks` as DMTF measurement blocks of SHA-384 digests, a random responder
    /// nonce, NVIDIA's opaque-data fields) ‖ ECDSA P-384/SHA-384 r ‖ s over everything before it.
    public func transcript(nonce: [UInt8], blocks: [(index: UInt8, digest: [UInt8])]) throws -> [UInt8] {
        guard nonce.count == SPDMMeasurementTranscript.nonceLength else {
            throw VouchError(.teeSimulationUnsupported, "an SPDM nonce is 32 bytes", context: ["field": "nonce", "got": "\(nonce.count)"])
        }
        var out: [UInt8] = [0x11, 0xE0, 0x01, 0xFF] + nonce + [0x00]
        var record: [UInt8] = []
        for block in blocks {
            let size = 3 + block.digest.count
            // Index, DMTF specification, size; value type 1 (mutable firmware, a digest), value size, value.
            record += [block.index, 0x01] + le16(size) + [0x01] + le16(block.digest.count) + block.digest
        }
        out += [0x11, 0x60, 0x00, 0x00, UInt8(blocks.count)] + [UInt8(record.count & 0xff), UInt8(record.count >> 8 & 0xff), UInt8(record.count >> 16)]
        out += record + (try Crypto.randomBytes(32))
        let opaque = opaqueData()
        out += le16(opaque.count) + opaque
        return out + (try Self.rawSignature(key, out))
    }

    /// NVIDIA's opaque-data TLVs (type u16, length u16, value; little-endian): driver version,
    /// VBIOS version, chip SKU, project, project SKU (NUL-terminated text), FWID.
    func opaqueData() -> [UInt8] {
        func text(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }
        let f = SoftwareGPUFirmware.self
        let fields: [(SPDMMeasurementTranscript.OpaqueType, [UInt8])] = [
            (.driverVersion, text(f.driverVersion)), (.vbiosVersion, f.vbiosVersionBytes), (.chipSKU, text(f.chipSKU)),
            (.project, text(f.project)), (.projectSKU, text(f.projectSKU)), (.fwid, fwid),
        ]
        return fields.flatMap { le16(Int($0.0.rawValue)) + le16($0.1.count) + $0.1 }
    }

    /// An ECDSA P-384/SHA-384 signature as raw r ‖ s (48 bytes each), as SPDM carries it.
    static func rawSignature(_ key: PrivateKey, _ message: [UInt8]) throws -> [UInt8] {
        try TEESimulation.rawSignature(der: try key.sign(message, hash: .sha384), scalarBytes: 48)
    }
}

private func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8 & 0xff)] }

/// The software GPUs' options (`gpuK.blockB=HEX`), parsed from the key=value map the attester
/// reads from its options file. Keys:
/// - `gpuK.blockB=HEX` (K the 0-based GPU, B the SPDM block index 1…10, HEX 96 hex digits):
///   GPU K reports HEX as block B's measurement instead of the good one — a GPU whose VBIOS
///   (blocks 1–5) or driver (blocks 6–10) differs from the RIMs.
/// Any other key starting with `gpu` is refused (`config`).
public struct SoftwareGPUOptions: Sendable, Equatable {
    /// GPU index → block index → reported digest.
    public var overrides: [Int: [Int: [UInt8]]] = [:]

    public init() {}

    public init(_ options: [String: String], count: Int) throws {
        for (key, value) in options.sorted(by: { $0.key < $1.key }) {
            func bad(_ why: String) -> VouchError { VouchError(.config, "simulated GPU option \(key): \(why)", context: ["key": key]) }
            let parts = key.split(separator: ".", maxSplits: 1).map(String.init)
            guard parts.count == 2, parts[0].hasPrefix("gpu"), let gpu = Int(parts[0].dropFirst(3)), parts[1].hasPrefix("block"),
                  let block = Int(parts[1].dropFirst(5)) else { throw bad("unknown key (known: gpuK.blockB)") }
            guard (0..<count).contains(gpu) else { throw bad("GPU \(gpu) is not one of the \(count) simulated GPUs (0-based)") }
            guard (1...SoftwareGPUFirmware.blockCount).contains(block) else { throw bad("block must be 1-\(SoftwareGPUFirmware.blockCount)") }
            guard value.count == 96, let digest = try? Hex.decode(value.lowercased()) else { throw bad("the value must be 96 hex digits (48 bytes)") }
            overrides[gpu, default: [:]][block] = digest
        }
    }
}
