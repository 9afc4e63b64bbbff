import Foundation
import VouchCore
import VouchTEEWire

/// What an authenticated SEV-SNP report establishes, in the JSON form `vouch evidence verify
/// --kind sev-snp --json` prints (field names are stable; byte fields are lowercase hex; 64-bit
/// raw values are 16 hex digits). Made only from a `VerifiedSNPReport`.
public struct SNPClaims: Sendable, Equatable, Codable {
    /// One TCB_VERSION: the raw value and its components in the product's layout.
    public struct TCB: Sendable, Equatable, Codable {
        public var raw: String
        public var bootloader: UInt8
        public var tee: UInt8
        public var snp: UInt8
        public var microcode: UInt8
        /// Turin only.
        public var fmc: UInt8?

        init(_ tcb: SNPTCBVersion, product: SNPProduct) {
            let c = tcb.components(for: product)
            raw = snpHex16(tcb.raw)
            bootloader = c.bootloader
            tee = c.tee
            snp = c.snp
            microcode = c.microcode
            fmc = c.fmc
        }
    }

    public struct TCBs: Sendable, Equatable, Codable {
        public var current: TCB
        public var reported: TCB
        public var committed: TCB
        public var launch: TCB
    }

    /// The guest POLICY, raw and decoded.
    public struct GuestPolicy: Sendable, Equatable, Codable {
        public var raw: String
        public var abiMajor: UInt8
        public var abiMinor: UInt8
        public var smt: Bool
        public var migrateMA: Bool
        public var debug: Bool
        public var singleSocket: Bool
        public var cxlAllowed: Bool
        public var memAES256XTS: Bool
        public var raplDisabled: Bool
        public var ciphertextHiding: Bool
        public var pageSwapDisabled: Bool
    }

    /// PLATFORM_INFO, raw and decoded.
    public struct PlatformInfo: Sendable, Equatable, Codable {
        public var raw: String
        public var smtEnabled: Bool
        public var tsmeEnabled: Bool
        public var eccEnabled: Bool
        public var raplDisabled: Bool
        public var ciphertextHidingEnabled: Bool
        public var aliasCheckComplete: Bool
    }

    /// The VCEK or VLEK that signed the report.
    public struct Endorsement: Sendable, Equatable, Codable {
        public var subject: String
        public var issuer: String
        /// RFC 3339, UTC.
        public var notBefore: String
        public var notAfter: String
        /// productName extension ("Milan-B0", …).
        public var productName: String?
        /// cspID extension (VLEK: the cloud provider).
        public var cspID: String?
    }

    public var version: UInt32
    public var product: SNPProduct
    /// "vcek" or "vlek".
    public var signer: String
    public var guestSVN: UInt32
    public var policy: GuestPolicy
    public var debug: Bool
    public var vmpl: UInt32
    public var familyId: String
    public var imageId: String
    public var platformInfo: PlatformInfo
    public var authorKeyEnabled: Bool
    public var chipIdMasked: Bool
    public var measurement: String
    /// The policy's name for the measurement, when the policy lists it.
    public var measurementName: String?
    public var reportData: String
    public var hostData: String
    public var idKeyDigest: String
    public var authorKeyDigest: String
    public var reportId: String
    public var reportIdMA: String
    public var chipId: String
    public var tcb: TCBs
    /// Version 3 and later.
    public var cpuid: SNPCPUID?
    public var currentFirmware: SNPFirmwareVersion
    public var committedFirmware: SNPFirmwareVersion
    /// Version 5.
    public var launchMitigationVector: String?
    public var currentMitigationVector: String?
    public var endorsement: Endorsement

    init(_ v: VerifiedSNPReport) {
        let r = v.report
        version = r.version
        product = v.product
        signer = v.signer == .vlek ? "vlek" : "vcek"
        guestSVN = r.guestSVN
        let p = r.policy
        policy = GuestPolicy(raw: snpHex16(p.raw), abiMajor: p.abiMajor, abiMinor: p.abiMinor, smt: p.smtAllowed, migrateMA: p.migrateMA, debug: p.debug,
                             singleSocket: p.singleSocket, cxlAllowed: p.cxlAllowed, memAES256XTS: p.memAES256XTS, raplDisabled: p.raplDisabled,
                             ciphertextHiding: p.ciphertextHiding, pageSwapDisabled: p.pageSwapDisabled)
        debug = p.debug
        vmpl = r.vmpl
        familyId = Hex.encode(r.familyID)
        imageId = Hex.encode(r.imageID)
        let i = r.platformInfo
        platformInfo = PlatformInfo(raw: snpHex16(i.raw), smtEnabled: i.smtEnabled, tsmeEnabled: i.tsmeEnabled, eccEnabled: i.eccEnabled,
                                    raplDisabled: i.raplDisabled, ciphertextHidingEnabled: i.ciphertextHidingEnabled, aliasCheckComplete: i.aliasCheckComplete)
        authorKeyEnabled = r.authorKeyEnabled
        chipIdMasked = r.maskChipKey
        measurement = Hex.encode(r.measurement)
        measurementName = nil
        reportData = Hex.encode(r.reportData)
        hostData = Hex.encode(r.hostData)
        idKeyDigest = Hex.encode(r.idKeyDigest)
        authorKeyDigest = Hex.encode(r.authorKeyDigest)
        reportId = Hex.encode(r.reportID)
        reportIdMA = Hex.encode(r.reportIDMA)
        chipId = Hex.encode(r.chipID)
        tcb = TCBs(current: TCB(r.currentTCB, product: v.product), reported: TCB(r.reportedTCB, product: v.product),
                   committed: TCB(r.committedTCB, product: v.product), launch: TCB(r.launchTCB, product: v.product))
        cpuid = r.cpuid
        currentFirmware = r.currentVersion
        committedFirmware = r.committedVersion
        launchMitigationVector = r.launchMitigationVector.map(snpHex16)
        currentMitigationVector = r.currentMitigationVector.map(snpHex16)
        endorsement = Endorsement(subject: v.endorsement.subject, issuer: v.endorsement.issuer, notBefore: snpRFC3339(v.endorsement.notBefore),
                                  notAfter: snpRFC3339(v.endorsement.notAfter), productName: v.extensions.productName, cspID: v.extensions.cspID)
    }
}

func snpHex16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 16 - s.count)) + s
}
