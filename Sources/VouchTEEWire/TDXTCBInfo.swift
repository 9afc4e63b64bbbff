import Foundation
import VouchCore

/// A TCB status as Intel's TCB info, TDX module identities and QE identity name it.
public enum TDXTCBStatus: String, Sendable, Codable, CaseIterable {
    case upToDate = "UpToDate"
    case swHardeningNeeded = "SWHardeningNeeded"
    case configurationNeeded = "ConfigurationNeeded"
    case configurationAndSWHardeningNeeded = "ConfigurationAndSWHardeningNeeded"
    case outOfDate = "OutOfDate"
    case outOfDateConfigurationNeeded = "OutOfDateConfigurationNeeded"
    case relaunchAdvised = "RelaunchAdvised"
    case relaunchAdvisedConfigurationNeeded = "RelaunchAdvisedConfigurationNeeded"
    case revoked = "Revoked"
}

/// Intel's TDX TCB info (PCS `/tdx/certification/v4/tcb`, version 3), read from the exact signed
/// bytes. Parse only after the signature over those bytes has verified: these values decide the
/// platform's TCB status. Field sizes and counts are checked; an unknown status is refused.
public struct TDXTCBInfo: Sendable {
    public struct Module: Sendable, Equatable {
        public var mrSigner: [UInt8]        // 48
        public var attributes: [UInt8]      // 8
        public var attributesMask: [UInt8]  // 8
        public init(mrSigner: [UInt8], attributes: [UInt8], attributesMask: [UInt8]) {
            self.mrSigner = mrSigner
            self.attributes = attributes
            self.attributesMask = attributesMask
        }
    }

    public struct ModuleLevel: Sendable, Equatable {
        public var isvSvn: UInt8
        public var tcbDate: Date
        public var status: TDXTCBStatus
        public var advisoryIDs: [String]
        public init(isvSvn: UInt8, tcbDate: Date, status: TDXTCBStatus, advisoryIDs: [String] = []) {
            self.isvSvn = isvSvn
            self.tcbDate = tcbDate
            self.status = status
            self.advisoryIDs = advisoryIDs
        }
    }

    public struct ModuleIdentity: Sendable, Equatable {
        public var id: String
        public var module: Module
        public var tcbLevels: [ModuleLevel]
        public init(id: String, module: Module, tcbLevels: [ModuleLevel]) {
            self.id = id
            self.module = module
            self.tcbLevels = tcbLevels
        }
    }

    public struct Level: Sendable, Equatable {
        public var sgxComponents: [UInt8]   // 16
        public var pceSvn: UInt16
        public var tdxComponents: [UInt8]   // 16 (TDX TCB info)
        public var tcbDate: Date
        public var status: TDXTCBStatus
        public var advisoryIDs: [String]
        public init(sgxComponents: [UInt8], pceSvn: UInt16, tdxComponents: [UInt8], tcbDate: Date, status: TDXTCBStatus, advisoryIDs: [String] = []) {
            self.sgxComponents = sgxComponents
            self.pceSvn = pceSvn
            self.tdxComponents = tdxComponents
            self.tcbDate = tcbDate
            self.status = status
            self.advisoryIDs = advisoryIDs
        }
    }

    public var id: String
    public var version: Int
    public var issueDate: Date
    public var nextUpdate: Date
    public var fmspc: [UInt8]
    public var pceID: [UInt8]
    public var tcbType: Int
    public var tcbEvaluationDataNumber: Int
    public var tdxModule: Module?
    public var tdxModuleIdentities: [ModuleIdentity]
    /// In the order the document lists them (the verifier sorts them itself).
    public var tcbLevels: [Level]

    static let maxLevels = 1024, maxAdvisories = 512

    public init(json: [UInt8]) throws {
        let raw: Raw
        do { raw = try JSONDecoder().decode(Raw.self, from: Data(json)) } catch {
            throw tdxMalformed("TCB info does not have the TDX TCB info fields", field: "tcbInfo", got: "\(error)".prefix(200).description)
        }
        id = raw.id
        version = raw.version
        issueDate = try tdxDate(raw.issueDate, "tcbInfo.issueDate")
        nextUpdate = try tdxDate(raw.nextUpdate, "tcbInfo.nextUpdate")
        fmspc = try tdxHex(raw.fmspc, "tcbInfo.fmspc", count: 6)
        pceID = try tdxHex(raw.pceId, "tcbInfo.pceId", count: 2)
        tcbType = raw.tcbType
        tcbEvaluationDataNumber = raw.tcbEvaluationDataNumber
        tdxModule = try raw.tdxModule.map { try $0.module("tcbInfo.tdxModule") }
        guard raw.tcbLevels.count <= Self.maxLevels, (raw.tdxModuleIdentities?.count ?? 0) <= 64 else {
            throw tdxMalformed("TCB info lists more levels than allowed", field: "tcbInfo.tcbLevels", got: "\(raw.tcbLevels.count)")
        }
        tdxModuleIdentities = try (raw.tdxModuleIdentities ?? []).enumerated().map { i, m in
            let path = "tcbInfo.tdxModuleIdentities[\(i)]"
            guard m.tcbLevels.count <= Self.maxLevels else { throw tdxMalformed("module identity lists more levels than allowed", field: path) }
            return ModuleIdentity(id: m.id, module: try RawModule(mrsigner: m.mrsigner, attributes: m.attributes, attributesMask: m.attributesMask).module(path),
                                  tcbLevels: try m.tcbLevels.enumerated().map { j, l in
                                      let p = "\(path).tcbLevels[\(j)]"
                                      return ModuleLevel(isvSvn: try tdxSVN(l.tcb.isvsvn, "\(p).tcb.isvsvn", max: 255).uint8, tcbDate: try tdxDate(l.tcbDate, "\(p).tcbDate"),
                                                         status: try tdxStatus(l.tcbStatus, "\(p).tcbStatus"), advisoryIDs: try tdxAdvisories(l.advisoryIDs, p))
                                  })
        }
        let isTDX = raw.id == "TDX"
        tcbLevels = try raw.tcbLevels.enumerated().map { i, l in
            let p = "tcbInfo.tcbLevels[\(i)]"
            let sgx = try l.tcb.sgxtcbcomponents.map { try tdxSVN($0.svn, "\(p).tcb.sgxtcbcomponents", max: 255).uint8 }
            guard sgx.count == 16 else { throw tdxMalformed("a TCB level does not have 16 SGX components", field: "\(p).tcb.sgxtcbcomponents", got: "\(sgx.count)") }
            let tdx = try (l.tcb.tdxtcbcomponents ?? []).map { try tdxSVN($0.svn, "\(p).tcb.tdxtcbcomponents", max: 255).uint8 }
            guard !isTDX || tdx.count == 16 else {
                throw tdxMalformed("a TDX TCB level does not have 16 TDX components", field: "\(p).tcb.tdxtcbcomponents", got: "\(tdx.count)")
            }
            return Level(sgxComponents: sgx, pceSvn: UInt16(try tdxSVN(l.tcb.pcesvn, "\(p).tcb.pcesvn", max: 0xffff)), tdxComponents: tdx,
                         tcbDate: try tdxDate(l.tcbDate, "\(p).tcbDate"), status: try tdxStatus(l.tcbStatus, "\(p).tcbStatus"),
                         advisoryIDs: try tdxAdvisories(l.advisoryIDs, p))
        }
    }

    private struct Raw: Decodable {
        let id: String
        let version: Int
        let issueDate: String
        let nextUpdate: String
        let fmspc: String
        let pceId: String
        let tcbType: Int
        let tcbEvaluationDataNumber: Int
        let tdxModule: RawModule?
        let tdxModuleIdentities: [RawModuleIdentity]?
        let tcbLevels: [RawLevel]
    }

    private struct RawModule: Decodable {
        let mrsigner: String
        let attributes: String
        let attributesMask: String
        func module(_ path: String) throws -> Module {
            Module(mrSigner: try tdxHex(mrsigner, "\(path).mrsigner", count: 48), attributes: try tdxHex(attributes, "\(path).attributes", count: 8),
                   attributesMask: try tdxHex(attributesMask, "\(path).attributesMask", count: 8))
        }
    }

    private struct RawModuleIdentity: Decodable {
        let id: String
        let mrsigner: String
        let attributes: String
        let attributesMask: String
        let tcbLevels: [RawISVSVNLevel]
    }


    private struct RawComponent: Decodable { let svn: Int }

    private struct RawTCB: Decodable {
        let sgxtcbcomponents: [RawComponent]
        let pcesvn: Int
        let tdxtcbcomponents: [RawComponent]?
    }

    private struct RawLevel: Decodable {
        let tcb: RawTCB
        let tcbDate: String
        let tcbStatus: String
        let advisoryIDs: [String]?
    }
}

/// Intel's TD QE identity (PCS `/tdx/certification/v4/qe/identity`, `enclaveIdentity` version 2),
/// read from the exact signed bytes, after the signature has verified.
public struct TDXQEIdentity: Sendable {
    public struct Level: Sendable, Equatable {
        public var isvSvn: UInt16
        public var tcbDate: Date
        public var status: TDXTCBStatus
        public var advisoryIDs: [String]
        public init(isvSvn: UInt16, tcbDate: Date, status: TDXTCBStatus, advisoryIDs: [String] = []) {
            self.isvSvn = isvSvn
            self.tcbDate = tcbDate
            self.status = status
            self.advisoryIDs = advisoryIDs
        }
    }

    public var id: String
    public var version: Int
    public var issueDate: Date
    public var nextUpdate: Date
    public var tcbEvaluationDataNumber: Int
    public var miscSelect: UInt32
    public var miscSelectMask: UInt32
    public var attributes: [UInt8]       // 16
    public var attributesMask: [UInt8]   // 16
    public var mrSigner: [UInt8]         // 32
    public var isvProdID: UInt16
    public var tcbLevels: [Level]

    public init(json: [UInt8]) throws {
        let raw: Raw
        do { raw = try JSONDecoder().decode(Raw.self, from: Data(json)) } catch {
            throw tdxMalformed("QE identity does not have the enclave identity fields", field: "enclaveIdentity", got: "\(error)".prefix(200).description)
        }
        guard raw.tcbLevels.count <= TDXTCBInfo.maxLevels else {
            throw tdxMalformed("QE identity lists more levels than allowed", field: "enclaveIdentity.tcbLevels", got: "\(raw.tcbLevels.count)")
        }
        id = raw.id
        version = raw.version
        issueDate = try tdxDate(raw.issueDate, "enclaveIdentity.issueDate")
        nextUpdate = try tdxDate(raw.nextUpdate, "enclaveIdentity.nextUpdate")
        tcbEvaluationDataNumber = raw.tcbEvaluationDataNumber
        func u32(_ s: String, _ field: String) throws -> UInt32 {
            try tdxHex(s, field, count: 4).reduce(0) { $0 << 8 | UInt32($1) }   // written big-endian, as a number
        }
        miscSelect = try u32(raw.miscselect, "enclaveIdentity.miscselect")
        miscSelectMask = try u32(raw.miscselectMask, "enclaveIdentity.miscselectMask")
        attributes = try tdxHex(raw.attributes, "enclaveIdentity.attributes", count: 16)
        attributesMask = try tdxHex(raw.attributesMask, "enclaveIdentity.attributesMask", count: 16)
        mrSigner = try tdxHex(raw.mrsigner, "enclaveIdentity.mrsigner", count: 32)
        isvProdID = UInt16(try tdxSVN(raw.isvprodid, "enclaveIdentity.isvprodid", max: 0xffff))
        tcbLevels = try raw.tcbLevels.enumerated().map { i, l in
            let p = "enclaveIdentity.tcbLevels[\(i)]"
            return Level(isvSvn: UInt16(try tdxSVN(l.tcb.isvsvn, "\(p).tcb.isvsvn", max: 0xffff)), tcbDate: try tdxDate(l.tcbDate, "\(p).tcbDate"),
                         status: try tdxStatus(l.tcbStatus, "\(p).tcbStatus"), advisoryIDs: try tdxAdvisories(l.advisoryIDs, p))
        }
    }

    private struct Raw: Decodable {
        let id: String
        let version: Int
        let issueDate: String
        let nextUpdate: String
        let tcbEvaluationDataNumber: Int
        let miscselect: String
        let miscselectMask: String
        let attributes: String
        let attributesMask: String
        let mrsigner: String
        let isvprodid: Int
        let tcbLevels: [RawISVSVNLevel]
    }
}

/// A TCB level judged by one ISVSVN, as both a TDX module identity's and the QE identity's
/// `tcbLevels` carry it, before its fields are checked.
private struct RawISVSVNLevel: Decodable {
    struct TCB: Decodable { let isvsvn: Int }
    let tcb: TCB
    let tcbDate: String
    let tcbStatus: String
    let advisoryIDs: [String]?
}

private extension Int {
    var uint8: UInt8 { UInt8(clamping: self) }
}

func tdxDate(_ s: String, _ field: String) throws -> Date {
    guard let d = Date.parseRFC3339(s) else { throw tdxMalformed("\(field) is not an RFC 3339 date", field: field, got: String(s.prefix(64))) }
    return d
}

func tdxHex(_ s: String, _ field: String, count: Int) throws -> [UInt8] {
    guard let b = try? Hex.decode(s), b.count == count else {
        throw tdxMalformed("\(field) is not \(count) bytes of hex", field: field, expected: "\(count * 2) hex digits", got: String(s.prefix(128)))
    }
    return b
}

func tdxSVN(_ v: Int, _ field: String, max: Int) throws -> Int {
    guard (0...max).contains(v) else { throw tdxMalformed("\(field) is out of range", field: field, expected: "0...\(max)", got: "\(v)") }
    return v
}

func tdxStatus(_ s: String, _ field: String) throws -> TDXTCBStatus {
    guard let status = TDXTCBStatus(rawValue: s) else { throw tdxMalformed("\(field) is not a known TCB status", field: field, got: String(s.prefix(64))) }
    return status
}

func tdxAdvisories(_ ids: [String]?, _ path: String) throws -> [String] {
    let ids = ids ?? []
    guard ids.count <= TDXTCBInfo.maxAdvisories, ids.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 64 }) else {
        throw tdxMalformed("advisory ids are too many or not short strings", field: "\(path).advisoryIDs")
    }
    return ids
}
