import VouchCore

/// One bank of TPMS_PCR_SELECTION: a hash algorithm and a set of PCR indices.
public struct PCRBankSelection: Sendable, Equatable, Codable {
    public var hash: HashAlg
    public var pcrs: [Int]   // sorted, unique, 0...23

    public init(hash: HashAlg, pcrs: [Int]) {
        self.hash = hash
        self.pcrs = Array(Set(pcrs)).sorted()
    }
}

/// TPML_PCR_SELECTION (Part 2, Table 111).
public struct PCRSelection: Sendable, Equatable, Codable {
    public var banks: [PCRBankSelection]

    public init(banks: [PCRBankSelection]) { self.banks = banks }

    public static let maxPCR = 23

    public init(from reader: inout ByteReader) throws {
        let countOffset = reader.offset
        let count = try reader.u32("TPML_PCR_SELECTION.count")
        guard count <= 16 else {
            throw VouchError(.invalidValue, "too many PCR banks in selection",
                             context: ["field": "TPML_PCR_SELECTION.count", "offset": "\(countOffset)", "expected": "<= 16", "got": "\(count)"])
        }
        var banks: [PCRBankSelection] = []
        for i in 0..<Int(count) {
            let hOffset = reader.offset
            let hash = try HashAlg(wire: try reader.u16("pcrSelections[\(i)].hash"), field: "pcrSelections[\(i)].hash", offset: hOffset)
            let sizeOffset = reader.offset
            let size = Int(try reader.u8("pcrSelections[\(i)].sizeofSelect"))
            guard size >= 3, size <= 4 else {
                throw VouchError(.invalidValue, "sizeofSelect must be 3 or 4",
                                 context: ["field": "pcrSelections[\(i)].sizeofSelect", "offset": "\(sizeOffset)", "got": "\(size)"])
            }
            let bitmap = try reader.bytes(size, "pcrSelections[\(i)].pcrSelect")
            var pcrs: [Int] = []
            for (byteIndex, byte) in bitmap.enumerated() {
                for bit in 0..<8 where byte & (1 << bit) != 0 {
                    pcrs.append(byteIndex * 8 + bit)
                }
            }
            guard pcrs.allSatisfy({ $0 <= PCRSelection.maxPCR }) else {
                throw VouchError(.invalidValue, "PCR index above 23 selected", context: ["field": "pcrSelections[\(i)].pcrSelect"])
            }
            banks.append(PCRBankSelection(hash: hash, pcrs: pcrs))
        }
        self.banks = banks
    }

    public func marshal(into w: inout ByteWriter) {
        w.u32(UInt32(banks.count))
        for bank in banks {
            w.u16(bank.hash.tpmAlg.rawValue)
            w.u8(3)
            var bitmap = [UInt8](repeating: 0, count: 3)
            for p in bank.pcrs { bitmap[p / 8] |= 1 << (p % 8) }
            w.raw(bitmap)
        }
    }

    public var marshaled: [UInt8] {
        var w = ByteWriter()
        marshal(into: &w)
        return w.bytes
    }
}

/// PCR values read from a TPM, per bank, keyed by index.
public struct PCRValues: Sendable, Equatable, Codable {
    public var values: [HashAlg: [Int: [UInt8]]]

    public init(_ values: [HashAlg: [Int: [UInt8]]] = [:]) { self.values = values }

    /// Concatenates the selected values in TPM order (banks in selection order, indices ascending):
    /// the input whose hash must equal a quote's pcrDigest.
    public func concatenated(for selection: PCRSelection) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(selection.banks.reduce(0) { $0 + $1.pcrs.count * $1.hash.digestSize })
        for bank in selection.banks {
            let values = values[bank.hash]
            for pcr in bank.pcrs {
                guard let v = values?[pcr] else {
                    throw VouchError(.invalidValue, "PCR value missing for the quoted selection",
                                     context: ["field": "pcrs.\(bank.hash.rawValue).\(pcr)"])
                }
                guard v.count == bank.hash.digestSize else {
                    throw VouchError(.invalidValue, "PCR value has the wrong size for its bank",
                                     context: ["field": "pcrs.\(bank.hash.rawValue).\(pcr)", "expected": "\(bank.hash.digestSize)", "got": "\(v.count)"])
                }
                out += v
            }
        }
        return out
    }
}

extension PCRValues {
    /// The JSON form used on the wire and in files: bank name → PCR index (decimal) → lowercase hex.
    public var hexMap: [String: [String: String]] {
        Dictionary(uniqueKeysWithValues: values.map { bank, pcrs in
            (bank.rawValue, Dictionary(uniqueKeysWithValues: pcrs.map { ("\($0.key)", Hex.encode($0.value)) }))
        })
    }

    /// Parses `hexMap`'s form. An unknown bank or an index outside 0-23 is `bad_request`, bad hex
    /// `invalid_value`; the context names `field.bank.index`.
    public init(hexMap: [String: [String: String]], field: String) throws {
        var out = PCRValues()
        for (bankName, pcrs) in hexMap {
            guard let bank = HashAlg(rawValue: bankName) else {
                throw VouchError(.badRequest, "\(field) banks must be sha1, sha256, sha384 or sha512", context: ["field": "\(field).\(bankName)"])
            }
            for (k, v) in pcrs {
                guard let i = Int(k), (0...PCRSelection.maxPCR).contains(i), String(i) == k else {   // "7", never "07" or "+7"
                    throw VouchError(.badRequest, "\(field) keys must be PCR indices 0-23", context: ["field": "\(field).\(bankName).\(k)"])
                }
                out.values[bank, default: [:]][i] = try Hex.decode(v, field: "\(field).\(bankName).\(k)")
            }
        }
        self = out
    }
}
