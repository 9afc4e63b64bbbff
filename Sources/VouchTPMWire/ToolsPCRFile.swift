import VouchCore

/// The PCR file that `tpm2_quote -o` writes and `tpm2_checkquote -f` reads (tpm2-tools 5.x,
/// "serialized" layout): the in-memory C structs of tss2, little-endian and padded.
///   TPML_PCR_SELECTION: u32 count, 16 x { u16 hash, u8 sizeofSelect, u8 pcrSelect[4], u8 pad }
///   u32 number of TPML_DIGEST that follow, each { u32 count, 8 x { u16 size, u8 buffer[64] } }
/// Each TPML_DIGEST holds at most 8 values, filled bank by bank in selection order.
public enum ToolsPCRFile {
    public static func write(selection: PCRSelection, values: PCRValues) throws -> [UInt8] {
        var out: [UInt8] = []
        func le32(_ v: UInt32) { out += [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24)] }
        func le16(_ v: UInt16) { out += [UInt8(v & 0xff), UInt8(v >> 8)] }
        le32(UInt32(selection.banks.count))
        for i in 0..<16 {
            if i < selection.banks.count {
                let bank = selection.banks[i]
                le16(bank.hash.tpmAlg.rawValue)
                out.append(3)
                var bitmap = [UInt8](repeating: 0, count: 4)
                for p in bank.pcrs { bitmap[p / 8] |= 1 << (p % 8) }
                out += bitmap
                out.append(0)
            } else {
                out += [UInt8](repeating: 0, count: 8)
            }
        }
        var digests: [[UInt8]] = []
        for bank in selection.banks {
            for p in bank.pcrs {
                guard let v = values.values[bank.hash]?[p] else {
                    throw VouchError(.invalidValue, "missing PCR value", context: ["field": "pcrs.\(bank.hash.rawValue).\(p)"])
                }
                digests.append(v)
            }
        }
        let chunks = stride(from: 0, to: digests.count, by: 8).map { Array(digests[$0..<min($0 + 8, digests.count)]) }
        le32(UInt32(chunks.count))
        for chunk in chunks {
            le32(UInt32(chunk.count))
            for j in 0..<8 {
                let d = j < chunk.count ? chunk[j] : []
                le16(UInt16(d.count))
                out += d + [UInt8](repeating: 0, count: 64 - d.count)
            }
        }
        return out
    }
}
