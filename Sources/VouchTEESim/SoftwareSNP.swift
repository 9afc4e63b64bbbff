import Foundation
import VouchCore
import VouchCrypto
import VouchTEEWire

/// A software SEV-SNP platform for one product line: a test ARK, ASK and ASVK (RSA, signing with
/// RSASSA-PSS SHA-384, MGF1-SHA-384, salt 48, as AMD's do), a VCEK and a VLEK (ECDSA P-384) with
/// AMD's extensions for a chosen TCB and chip id, and reports in the real 1184-byte format signed
/// by them. Certificates carry AMD's subject names (`ARK-Milan`, `SEV-Milan`, `SEV-VLEK-Milan`,
/// `SEV-VCEK`, `SEV-VLEK`) with the organisation `TEESimulation.organization`, so a store of
/// AMD's roots never matches them.
///
/// The roots are RSA-2048 by default, not AMD's RSA-4096: generating 4096-bit keys takes seconds
/// and tests make several platforms; nothing in the verifier depends on the key size.
public struct SoftwareSNP: Sendable {
    public let product: SNPProduct
    public let arkKey: PrivateKey
    public let ark: Certificate
    public let askKey: PrivateKey
    public let ask: Certificate
    public let asvkKey: PrivateKey
    public let asvk: Certificate
    public let vcekKey: PrivateKey
    public private(set) var vcek: Certificate
    public let vlekKey: PrivateKey
    public private(set) var vlek: Certificate
    /// The chip id the VCEK's hwID names (64 bytes; on Turin only the first 8 are in the hwID).
    public let chipID: [UInt8]
    /// The TCB the VCEK and VLEK certify, and reports carry as REPORTED_TCB.
    public let tcb: SNPTCBComponents

    /// The validity every root certificate gets (2020-01-01 to 2045-01-01).
    public static let rootValidity = (notBefore: Date(timeIntervalSince1970: 1_577_836_800), notAfter: Date(timeIntervalSince1970: 2_366_755_200))
    /// The validity the VCEK and VLEK get by default (2024-01-01 to 2031-01-01).
    public static let keyValidity = (notBefore: Date(timeIntervalSince1970: 1_704_067_200), notAfter: Date(timeIntervalSince1970: 1_924_992_000))

    public init(product: SNPProduct = .milan, tcb: SNPTCBComponents? = nil, chipID: [UInt8]? = nil, rsaBits: Int = 2048) throws {
        self.product = product
        self.tcb = tcb ?? SNPTCBComponents(bootloader: 3, tee: 0, snp: 8, microcode: 115, fmc: product.hasFMC ? 1 : nil)
        self.chipID = try chipID ?? Crypto.randomBytes(64)
        guard self.chipID.count == 64 else {
            throw VouchError(.teeSimulationUnsupported, "a chip id is 64 bytes", context: ["field": "chipID", "got": "\(self.chipID.count)"])
        }
        let (from, to) = Self.rootValidity
        arkKey = try PrivateKey.generateRSA(bits: rsaBits)
        ark = try RSAPSSIssuer.issue(subject: Self.name("ARK-\(product.rawValue)"), publicKey: arkKey.publicKey, issuer: nil, signingKey: arkKey,
                                     serial: [0x01, 0x00, 0x00], notBefore: from, notAfter: to, isCA: true)
        askKey = try PrivateKey.generateRSA(bits: rsaBits)
        ask = try RSAPSSIssuer.issue(subject: Self.name("SEV-\(product.rawValue)"), publicKey: askKey.publicKey, issuer: ark, signingKey: arkKey,
                                     serial: [0x01, 0x00, 0x01], notBefore: from, notAfter: to, isCA: true)
        asvkKey = try PrivateKey.generateRSA(bits: rsaBits)
        asvk = try RSAPSSIssuer.issue(subject: Self.name("SEV-VLEK-\(product.rawValue)"), publicKey: asvkKey.publicKey, issuer: ark, signingKey: arkKey,
                                      serial: [0x01, 0x01, 0x01], notBefore: from, notAfter: to, isCA: true)
        vcekKey = try PrivateKey.generate(.p384)
        vlekKey = try PrivateKey.generate(.p384)
        // Placeholders until the issuing methods below can run on a complete value.
        vcek = ark
        vlek = ark
        let hwID = Array(self.chipID.prefix(product == .turin ? 8 : 64))
        let issuedVCEK = try issueEndorsement(.vcek, key: vcekKey, extensions: Self.extensions(product: product, tcb: self.tcb, hwID: hwID))
        let issuedVLEK = try issueEndorsement(.vlek, key: vlekKey,
                                              extensions: Self.extensions(product: product, tcb: self.tcb, cspID: "CN=vouch-simulated-csp.example"))
        vcek = issuedVCEK
        vlek = issuedVLEK
    }

    /// A platform made before, from its keys and certificates as they were (a simulated platform
    /// kept across restarts). Nothing is checked: the verifier judges what it signs.
    public init(product: SNPProduct, tcb: SNPTCBComponents, chipID: [UInt8], ark: (Certificate, PrivateKey), ask: (Certificate, PrivateKey),
                asvk: (Certificate, PrivateKey), vcek: (Certificate, PrivateKey), vlek: (Certificate, PrivateKey)) throws {
        guard chipID.count == 64 else {
            throw VouchError(.teeSimulationUnsupported, "a chip id is 64 bytes", context: ["field": "chipID", "got": "\(chipID.count)"])
        }
        self.product = product
        self.tcb = tcb
        self.chipID = chipID
        (self.ark, arkKey) = ark
        (self.ask, askKey) = ask
        (self.asvk, asvkKey) = asvk
        (self.vcek, vcekKey) = vcek
        (self.vlek, vlekKey) = vlek
    }

    /// The ASK, the ASVK and the ARK as PEM (the shape of AMD's `cert_chain`), for a roots
    /// directory.
    public var rootsPEM: String {
        get throws { try ask.pem + asvk.pem + ark.pem }
    }

    /// AMD's extensions for a VCEK (`hwID`) or VLEK (`cspID`) of `product` certifying `tcb`.
    public static func extensions(product: SNPProduct, tcb: SNPTCBComponents, hwID: [UInt8]? = nil, cspID: String? = nil) -> SNPEndorsementExtensions {
        var e = SNPEndorsementExtensions()
        e.structVersion = product == .turin ? 1 : 0
        e.productName = product == .milan ? "Milan-B0" : product.rawValue
        e.bootloaderSPL = tcb.bootloader
        e.teeSPL = tcb.tee
        e.snpSPL = tcb.snp
        e.microcodeSPL = tcb.microcode
        e.fmcSPL = product.hasFMC ? (tcb.fmc ?? 0) : nil
        e.hwID = hwID
        e.cspID = cspID
        return e
    }

    /// A VCEK (issued by the ASK) or VLEK (by the ASVK) for `key` with `extensions` exactly as
    /// given, serial 0 as AMD's. Tests use it for endorsements that disagree with a report.
    public func issueEndorsement(_ kind: SNPSigningKey, key: PrivateKey, extensions: SNPEndorsementExtensions, hwIDAsOctetString: Bool = false,
                                 notBefore: Date = SoftwareSNP.keyValidity.notBefore, notAfter: Date = SoftwareSNP.keyValidity.notAfter) throws -> Certificate {
        let (issuer, issuerKey, cn): (Certificate, PrivateKey, String)
        switch kind {
        case .vcek: (issuer, issuerKey, cn) = (ask, askKey, "SEV-VCEK")
        case .vlek: (issuer, issuerKey, cn) = (asvk, asvkKey, "SEV-VLEK")
        case .none: throw VouchError(.teeSimulationUnsupported, "an endorsement is a VCEK or a VLEK", context: ["field": "kind"])
        }
        return try RSAPSSIssuer.issue(subject: Self.name(cn), publicKey: key.publicKey, issuer: issuer, signingKey: issuerKey, serial: [0],
                                      notBefore: notBefore, notAfter: notAfter, isCA: false,
                                      extensions: extensions.encoded(hwIDAsOctetString: hwIDAsOctetString).map { RSAPSSIssuer.Extension(oid: $0.oid, der: $0.der) })
    }

    /// A CRL signed by the ARK listing `revoked` certificates' serials.
    public func crl(revoking revoked: [Certificate], thisUpdate: Date, nextUpdate: Date) throws -> [UInt8] {
        try RSAPSSIssuer.makeCRL(issuer: ark, signingKey: arkKey, revokedSerials: revoked.map(\.serialBytes), thisUpdate: thisUpdate, nextUpdate: nextUpdate)
    }

    /// The CPUID a report of this product line carries (Milan 19h/01h, Genoa 19h/11h, Turin 1Ah/02h).
    public var cpuid: SNPCPUID {
        switch product {
        case .milan: SNPCPUID(family: 0x19, model: 0x01, stepping: 1)
        case .genoa: SNPCPUID(family: 0x19, model: 0x11, stepping: 1)
        case .turin: SNPCPUID(family: 0x1A, model: 0x02, stepping: 0)
        }
    }

    /// An unsigned report as this platform would make it: the platform's TCB as current,
    /// reported, committed and launch TCB, its CPUID (version 3+), its chip id (zero for a
    /// VLEK-signed report, as AMD masks it), POLICY with SMT allowed, PLATFORM_INFO SMT and TSME
    /// enabled, firmware 1.55.0, and `reportData`. Change any field, then `sign` it.
    public func report(version: UInt32 = 3, signer: SNPSigningKey = .vcek, reportData: [UInt8] = [UInt8](repeating: 0, count: 64)) -> SNPReport {
        var r = SNPReport(version: version)
        let t = SNPTCBVersion(tcb, product: product)
        r.currentTCB = t
        r.reportedTCB = t
        r.committedTCB = t
        r.launchTCB = t
        r.policy = SNPGuestPolicy.with([SNPGuestPolicy.smtBit])
        r.platformInfo = SNPPlatformInfo(raw: 0b11)
        r.signingKey = signer
        r.chipID = signer == .vlek ? [UInt8](repeating: 0, count: 64) : chipID
        r.maskChipKey = signer == .vlek
        if version >= 3 { r.cpuid = cpuid }
        r.currentVersion = SNPFirmwareVersion(major: 1, minor: 55, build: 0)
        r.committedVersion = r.currentVersion
        r.reportData = reportData
        return r
    }

    /// The report's bytes, signed by the VCEK or VLEK its SIGNING_KEY names.
    public func sign(_ report: SNPReport) throws -> [UInt8] {
        try Self.sign(report, key: report.signingKey == .vlek ? vlekKey : vcekKey)
    }

    /// The report's bytes, signed by `key` (ECDSA P-384, SHA-384, over bytes [0, 0x2A0), R and S
    /// written little-endian).
    public static func sign(_ report: SNPReport, key: PrivateKey) throws -> [UInt8] {
        var r = report
        r.signature = [UInt8](repeating: 0, count: 512)
        let der = try key.sign(try r.signedBytes(), hash: .sha384)
        let (sr, ss) = try ecdsaSignatureComponents(der: der)
        try r.setSignature(r: sr, s: ss)
        return try r.serialized()
    }

    /// AMD's subject name order, with the simulation's organisation.
    static func name(_ cn: String) -> [(attribute: String, value: String)] {
        [("OU", "Engineering"), ("C", "US"), ("L", "Santa Clara"), ("ST", "CA"), ("O", TEESimulation.organization), ("CN", cn)]
    }
}
