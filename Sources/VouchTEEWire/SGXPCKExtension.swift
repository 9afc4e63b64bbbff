import VouchCore

/// The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1; Intel SGX PCK
/// Certificate and CRL Profile): what Intel certified about the platform the PCK key belongs to.
/// Parsed from the extension's DER value with bounded reads; read only from a certificate whose
/// chain has been verified.
///
///     SEQUENCE {
///       SEQUENCE { .1 PPID, OCTET STRING (16) }
///       SEQUENCE { .2 TCB, SEQUENCE { SEQUENCE { .2.1 … .2.16, INTEGER } ×16,
///                                    SEQUENCE { .2.17 PCESVN, INTEGER }, SEQUENCE { .2.18 CPUSVN, OCTET STRING (16) } } }
///       SEQUENCE { .3 PCE-ID, OCTET STRING (2) }
///       SEQUENCE { .4 FMSPC, OCTET STRING (6) }
///       SEQUENCE { .5 SGX type, ENUMERATED }
///       [Platform CA:] SEQUENCE { .6 PlatformInstanceID, OCTET STRING (16) }, SEQUENCE { .7 Configuration, SEQUENCE {…} }
///     }
public struct SGXPCKExtension: Sendable, Equatable {
    public static let oid = "1.2.840.113741.1.13.1"
    /// Larger extension values are refused unread (Intel's is about 550 bytes).
    public static let maxBytes = 4096

    public var ppid: [UInt8]
    /// SGX TCB components 1–16 (.2.1 … .2.16), each 0–255.
    public var tcbComponents: [UInt8]
    public var pceSvn: UInt16
    public var cpuSvn: [UInt8]
    public var pceID: [UInt8]
    public var fmspc: [UInt8]
    /// 0 Standard, 1 Scalable, 2 Scalable with integrity.
    public var sgxType: Int

    public init(ppid: [UInt8], tcbComponents: [UInt8], pceSvn: UInt16, cpuSvn: [UInt8], pceID: [UInt8], fmspc: [UInt8], sgxType: Int = 0) {
        self.ppid = ppid
        self.tcbComponents = tcbComponents
        self.pceSvn = pceSvn
        self.cpuSvn = cpuSvn
        self.pceID = pceID
        self.fmspc = fmspc
        self.sgxType = sgxType
    }

    private static let arcs: [UInt] = [1, 2, 840, 113741, 1, 13, 1]
    private static func oidContent(_ more: [UInt]) -> [UInt8] { Array(DER.objectIdentifier(arcs + more).dropFirst(2)) }
    private static let enumeratedTag: UInt8 = 0x0a
    /// The OIDs .2.1 … .2.18 (TCB components, PCESVN, CPUSVN) as OBJECT IDENTIFIER contents.
    private static let tcbOIDs: [[UInt8]] = (1...18).map { oidContent([2, UInt($0)]) }

    public init(der: [UInt8]) throws {
        guard der.count <= Self.maxBytes else {
            throw tdxMalformed("SGX extension is larger than allowed", field: "sgxExtension", expected: "<= \(Self.maxBytes)", got: "\(der.count)")
        }
        do {
            var outer = DER.Reader(der)
            var top = try outer.sequence("sgxExtension")
            guard outer.isAtEnd else { throw tdxMalformed("SGX extension has bytes after its SEQUENCE", field: "sgxExtension") }
            var ppid: [UInt8]?, tcb: (components: [UInt8], pceSvn: UInt16, cpuSvn: [UInt8])?, pceID: [UInt8]?, fmspc: [UInt8]?, sgxType: Int?
            var seen = Set<[UInt8]>()
            while !top.isAtEnd {
                var entry = try top.sequence("sgxExtension.entry")
                let oid = try entry.read(DER.objectIdentifierTag, "sgxExtension.entry.oid")
                guard seen.insert(oid).inserted else {
                    throw tdxMalformed("SGX extension names one field twice", field: "sgxExtension", got: Hex.encode(oid))
                }
                switch oid {
                case Self.oidContent([1]): ppid = try Self.octets(&entry, "sgxExtension.ppid", count: 16)
                case Self.oidContent([2]): tcb = try Self.readTCB(try entry.sequence("sgxExtension.tcb"))
                case Self.oidContent([3]): pceID = try Self.octets(&entry, "sgxExtension.pceId", count: 2)
                case Self.oidContent([4]): fmspc = try Self.octets(&entry, "sgxExtension.fmspc", count: 6)
                case Self.oidContent([5]):
                    let v = try entry.read(Self.enumeratedTag, "sgxExtension.sgxType")
                    guard v.count == 1, v[0] < 0x80 else { throw tdxMalformed("SGX type is not a small ENUMERATED", field: "sgxExtension.sgxType") }
                    sgxType = Int(v[0])
                default:
                    _ = try entry.element("sgxExtension.entry.value")   // PlatformInstanceID, Configuration: not read
                }
                guard entry.isAtEnd else { throw tdxMalformed("SGX extension entry has extra values", field: "sgxExtension.entry", got: Hex.encode(oid)) }
            }
            guard let ppid, let tcb, let pceID, let fmspc, let sgxType else {
                throw tdxMalformed("SGX extension lacks PPID, TCB, PCE-ID, FMSPC or SGX type", field: "sgxExtension")
            }
            self.init(ppid: ppid, tcbComponents: tcb.components, pceSvn: tcb.pceSvn, cpuSvn: tcb.cpuSvn, pceID: pceID, fmspc: fmspc, sgxType: sgxType)
        } catch let e as VouchError where e.code != .teeEvidenceMalformed {
            throw VouchError(.teeEvidenceMalformed, "SGX extension: \(e.message)", context: e.context)
        }
    }

    private static func octets(_ r: inout DER.Reader, _ field: String, count: Int) throws -> [UInt8] {
        let v = try r.octetString(field)
        guard v.count == count else { throw tdxMalformed("\(field) has the wrong length", field: field, expected: "\(count)", got: "\(v.count)") }
        return v
    }

    /// The 18 TCB entries, each exactly once, in any order.
    private static func readTCB(_ seq: DER.Reader) throws -> (components: [UInt8], pceSvn: UInt16, cpuSvn: [UInt8]) {
        var r = seq
        var components = [Int?](repeating: nil, count: 16)
        var pceSvn: Int?, cpuSvn: [UInt8]?
        var count = 0
        while !r.isAtEnd {
            count += 1
            guard count <= 18 else { throw tdxMalformed("SGX TCB has more than 18 entries", field: "sgxExtension.tcb") }
            var entry = try r.sequence("sgxExtension.tcb.entry")
            let oid = try entry.read(DER.objectIdentifierTag, "sgxExtension.tcb.entry.oid")
            if let i = tcbOIDs.prefix(16).firstIndex(of: oid) {
                let n = i + 1
                guard components[n - 1] == nil else { throw tdxMalformed("SGX TCB names a component twice", field: "sgxExtension.tcb.comp\(n)") }
                let v = try entry.integer("sgxExtension.tcb.comp\(n)")
                guard v <= 255 else { throw tdxMalformed("SGX TCB component is above 255", field: "sgxExtension.tcb.comp\(n)", got: "\(v)") }
                components[n - 1] = v
            } else if oid == tcbOIDs[16] {
                guard pceSvn == nil else { throw tdxMalformed("SGX TCB names PCESVN twice", field: "sgxExtension.tcb.pcesvn") }
                let v = try entry.integer("sgxExtension.tcb.pcesvn")
                guard v <= 0xffff else { throw tdxMalformed("PCESVN is above 65535", field: "sgxExtension.tcb.pcesvn", got: "\(v)") }
                pceSvn = v
            } else if oid == tcbOIDs[17] {
                guard cpuSvn == nil else { throw tdxMalformed("SGX TCB names CPUSVN twice", field: "sgxExtension.tcb.cpusvn") }
                cpuSvn = try octets(&entry, "sgxExtension.tcb.cpusvn", count: 16)
            } else {
                throw tdxMalformed("SGX TCB has an unknown entry", field: "sgxExtension.tcb", got: Hex.encode(oid))
            }
            guard entry.isAtEnd else { throw tdxMalformed("SGX TCB entry has extra values", field: "sgxExtension.tcb.entry") }
        }
        guard components.allSatisfy({ $0 != nil }), let pceSvn, let cpuSvn else {
            throw tdxMalformed("SGX TCB lacks a component, PCESVN or CPUSVN", field: "sgxExtension.tcb")
        }
        return (components.map { UInt8($0!) }, UInt16(pceSvn), cpuSvn)
    }

    /// The extension's DER value (as the software TEE puts it in its PCK certificates).
    public var encoded: [UInt8] {
        func entry(_ more: [UInt], _ value: [UInt8]) -> [UInt8] { DER.sequence([DER.objectIdentifier(Self.arcs + more), value]) }
        var tcb: [[UInt8]] = tcbComponents.prefix(16).enumerated().map { entry([2, UInt($0.offset + 1)], DER.integer(Int($0.element))) }
        tcb.append(entry([2, 17], DER.integer(Int(pceSvn))))
        tcb.append(entry([2, 18], DER.octetString(cpuSvn)))
        return DER.sequence([
            entry([1], DER.octetString(ppid)),
            entry([2], DER.sequence(tcb)),
            entry([3], DER.octetString(pceID)),
            entry([4], DER.octetString(fmspc)),
            entry([5], DER.tlv(Self.enumeratedTag, [UInt8(sgxType & 0x7f)])),
        ])
    }
}
