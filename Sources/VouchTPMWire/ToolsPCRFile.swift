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

extension ToolsPCRFile {
    static let selectionBytes = 4 + 16 * 8
    static let digestListBytes = 4 + 8 * (2 + 64)

    /// Parses a file written by `tpm2_quote -o` / `tpm2_pcrread -o` (serialized layout above).
    /// Counts, sizes and the total length are checked before anything is read.
    public static func parse(_ bytes: [UInt8]) throws -> (PCRSelection, PCRValues) {
        func le32(_ o: Int) -> UInt32 { UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24 }
        func le16(_ o: Int) -> UInt16 { UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8 }
        guard bytes.count >= selectionBytes + 4 else {
            throw VouchError(.truncated, "PCR file is shorter than its fixed header", context: ["field": "pcrs", "expected": ">= \(selectionBytes + 4)", "got": "\(bytes.count)"])
        }
        let bankCount = Int(le32(0))
        guard (1...16).contains(bankCount) else {
            throw VouchError(.invalidValue, "PCR file selects an impossible number of banks", context: ["field": "pcrSelections.count", "offset": "0", "got": "\(bankCount)"])
        }
        var banks: [PCRBankSelection] = []
        for i in 0..<bankCount {
            let o = 4 + i * 8
            let hash = try HashAlg(wire: le16(o), field: "pcrSelections[\(i)].hash", offset: o)
            let size = Int(bytes[o + 2])
            guard (1...4).contains(size) else {
                throw VouchError(.invalidValue, "sizeofSelect must be 1-4", context: ["field": "pcrSelections[\(i)].sizeofSelect", "offset": "\(o + 2)", "got": "\(size)"])
            }
            var pcrs: [Int] = []
            for byte in 0..<size { for bit in 0..<8 where bytes[o + 3 + byte] & (1 << bit) != 0 { pcrs.append(byte * 8 + bit) } }
            guard pcrs.allSatisfy({ $0 <= PCRSelection.maxPCR }) else {
                throw VouchError(.invalidValue, "PCR index above 23 selected", context: ["field": "pcrSelections[\(i)].pcrSelect", "offset": "\(o + 3)"])
            }
            banks.append(PCRBankSelection(hash: hash, pcrs: pcrs))
        }
        let selection = PCRSelection(banks: banks)
        let total = banks.reduce(0) { $0 + $1.pcrs.count }
        let listCount = Int(le32(selectionBytes))
        guard listCount == (total + 7) / 8 else {
            throw VouchError(.invalidValue, "PCR file's digest list count does not match its selection",
                             context: ["field": "digests.count", "offset": "\(selectionBytes)", "expected": "\((total + 7) / 8)", "got": "\(listCount)"])
        }
        let expectedSize = selectionBytes + 4 + listCount * digestListBytes
        guard bytes.count == expectedSize else {
            throw VouchError(bytes.count < expectedSize ? .truncated : .trailingBytes, "PCR file has the wrong length for its selection",
                             context: ["field": "pcrs", "expected": "\(expectedSize)", "got": "\(bytes.count)"])
        }
        var digests: [[UInt8]] = []
        for l in 0..<listCount {
            let base = selectionBytes + 4 + l * digestListBytes
            let n = Int(le32(base))
            guard n <= 8, digests.count + n <= total else {
                throw VouchError(.invalidValue, "PCR file digest list holds too many values", context: ["field": "digests[\(l)].count", "offset": "\(base)", "got": "\(n)"])
            }
            for j in 0..<n {
                let o = base + 4 + j * 66
                let size = Int(le16(o))
                guard size <= 64 else { throw VouchError(.invalidValue, "digest longer than 64 bytes", context: ["field": "digests[\(l)][\(j)].size", "offset": "\(o)", "got": "\(size)"]) }
                digests.append(Array(bytes[o + 2..<o + 2 + size]))
            }
        }
        guard digests.count == total else {
            throw VouchError(.invalidValue, "PCR file holds fewer values than it selects", context: ["field": "digests", "expected": "\(total)", "got": "\(digests.count)"])
        }
        var values = PCRValues()
        var k = 0
        for bank in banks {
            for p in bank.pcrs {
                guard digests[k].count == bank.hash.digestSize else {
                    throw VouchError(.invalidValue, "PCR value has the wrong size for its bank",
                                     context: ["field": "pcrs.\(bank.hash.rawValue).\(p)", "expected": "\(bank.hash.digestSize)", "got": "\(digests[k].count)"])
                }
                values.values[bank.hash, default: [:]][p] = digests[k]
                k += 1
            }
        }
        return (selection, values)
    }
}
