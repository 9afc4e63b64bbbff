import VouchCore

// The small value types of an AMD SEV-SNP ATTESTATION_REPORT (AMD SEV Secure Nested Paging
// Firmware ABI Specification, pub. 56860): TCB_VERSION, the guest POLICY, PLATFORM_INFO, the
// signing-key field, and the product lines whose keys sign reports. Values only: nothing here is
// verified.

/// An EPYC product line with its own AMD root key (ARK) and its own TCB_VERSION layout.
public enum SNPProduct: String, Sendable, Codable, CaseIterable, Hashable {
    case milan = "Milan"
    case genoa = "Genoa"
    case turin = "Turin"

    /// The product line a report's CPUID (report version 3 and later) names, or nil for a CPU
    /// Vouch does not know. Family 19h models 00h–0Fh are Milan; 19h models 10h–1Fh (Genoa) and
    /// A0h–AFh (Bergamo, Siena) sign with the Genoa keys; family 1Ah models 00h–1Fh are Turin.
    /// `family` and `model` are the combined values (base + extended), as the report holds them.
    public init?(cpuidFamily family: UInt8, model: UInt8) {
        switch (family, model) {
        case (0x19, 0x00...0x0F): self = .milan
        case (0x19, 0x10...0x1F), (0x19, 0xA0...0xAF): self = .genoa
        case (0x1A, 0x00...0x1F): self = .turin
        default: return nil
        }
    }

    /// The product line of a VCEK/VLEK productName extension: "Milan-B0", "Genoa", "Turin" (the
    /// line, then optionally '-' and a stepping). Nil for anything else.
    public init?(productName: String) {
        let line = productName.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        guard let p = SNPProduct(rawValue: line) else { return nil }
        self = p
    }

    /// Turin moved the TCB_VERSION fields (and added FMC); Milan and Genoa share one layout.
    public var hasFMC: Bool { self == .turin }
}

/// A TCB_VERSION: eight bytes, little-endian on the wire; byte n is `(raw >> 8n) & 0xff`.
/// What each byte means depends on the product (`components(for:)`).
public struct SNPTCBVersion: Sendable, Hashable {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }

    public func byte(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: raw >> (8 * UInt64(index))) }

    /// Milan/Genoa: byte 0 BOOT_LOADER, 1 TEE, 6 SNP, 7 MICROCODE (2–5 reserved).
    /// Turin: byte 0 FMC, 1 BOOT_LOADER, 2 TEE, 3 SNP, 7 MICROCODE (4–6 reserved).
    public func components(for product: SNPProduct) -> SNPTCBComponents {
        switch product {
        case .milan, .genoa:
            return SNPTCBComponents(bootloader: byte(0), tee: byte(1), snp: byte(6), microcode: byte(7), fmc: nil)
        case .turin:
            return SNPTCBComponents(bootloader: byte(1), tee: byte(2), snp: byte(3), microcode: byte(7), fmc: byte(0))
        }
    }

    /// The TCB_VERSION that holds `components` in `product`'s layout (reserved bytes zero).
    /// An FMC value is written only for Turin.
    public init(_ components: SNPTCBComponents, product: SNPProduct) {
        func at(_ v: UInt8, _ i: Int) -> UInt64 { UInt64(v) << (8 * UInt64(i)) }
        switch product {
        case .milan, .genoa:
            raw = at(components.bootloader, 0) | at(components.tee, 1) | at(components.snp, 6) | at(components.microcode, 7)
        case .turin:
            raw = at(components.fmc ?? 0, 0) | at(components.bootloader, 1) | at(components.tee, 2) | at(components.snp, 3) | at(components.microcode, 7)
        }
    }
}

/// The security patch levels a TCB_VERSION holds, named as the VCEK extensions name them.
public struct SNPTCBComponents: Sendable, Hashable, Codable {
    public var bootloader: UInt8
    public var tee: UInt8
    public var snp: UInt8
    public var microcode: UInt8
    /// Turin only.
    public var fmc: UInt8?

    public init(bootloader: UInt8, tee: UInt8, snp: UInt8, microcode: UInt8, fmc: UInt8? = nil) {
        self.bootloader = bootloader
        self.tee = tee
        self.snp = snp
        self.microcode = microcode
        self.fmc = fmc
    }
}

/// The guest POLICY (8 bytes at 0x08), fixed at launch.
/// Bits: 7:0 ABI_MINOR, 15:8 ABI_MAJOR, 16 SMT, 17 reserved (must be one), 18 MIGRATE_MA,
/// 19 DEBUG, 20 SINGLE_SOCKET, 21 CXL_ALLOW, 22 MEM_AES_256_XTS, 23 RAPL_DIS, 24 CIPHERTEXT_HIDING,
/// 25 PAGE_SWAP_DISABLE; 63:26 reserved, must be zero.
public struct SNPGuestPolicy: Sendable, Hashable {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }

    /// Bit 17, which the specification says must be one.
    public static let reservedOneBit: UInt64 = 1 << 17
    /// Bits 63:26, which must be zero.
    public static let reservedZeroMask: UInt64 = ~((1 << 26) - 1)

    private func bit(_ n: UInt64) -> Bool { raw & (1 << n) != 0 }
    public var abiMinor: UInt8 { UInt8(truncatingIfNeeded: raw) }
    public var abiMajor: UInt8 { UInt8(truncatingIfNeeded: raw >> 8) }
    /// The guest may run on a host with simultaneous multithreading enabled.
    public var smtAllowed: Bool { bit(16) }
    /// The guest may be associated with a migration agent.
    public var migrateMA: Bool { bit(18) }
    /// The host may debug (decrypt) the guest.
    public var debug: Bool { bit(19) }
    public var singleSocket: Bool { bit(20) }
    public var cxlAllowed: Bool { bit(21) }
    public var memAES256XTS: Bool { bit(22) }
    public var raplDisabled: Bool { bit(23) }
    public var ciphertextHiding: Bool { bit(24) }
    public var pageSwapDisabled: Bool { bit(25) }

    /// A policy with only the must-be-one bit and `bits` set.
    public static func with(_ bits: [Int], abiMajor: UInt8 = 0, abiMinor: UInt8 = 0) -> SNPGuestPolicy {
        SNPGuestPolicy(raw: bits.reduce(reservedOneBit | UInt64(abiMajor) << 8 | UInt64(abiMinor)) { $0 | 1 << UInt64($1) })
    }
    public static let smtBit = 16, migrateMABit = 18, debugBit = 19, singleSocketBit = 20
}

/// PLATFORM_INFO (8 bytes at 0x40): what the platform had enabled when the report was made.
/// Bits: 0 SMT_EN, 1 TSME_EN, 2 ECC_EN, 3 RAPL_DIS, 4 CIPHERTEXT_HIDING_EN,
/// 5 ALIAS_CHECK_COMPLETE. The other bits are kept in `raw` and not interpreted (the
/// specification adds platform facts here over time; none of them changes what was signed).
public struct SNPPlatformInfo: Sendable, Hashable {
    public var raw: UInt64
    public init(raw: UInt64) { self.raw = raw }
    private func bit(_ n: UInt64) -> Bool { raw & (1 << n) != 0 }
    public var smtEnabled: Bool { bit(0) }
    public var tsmeEnabled: Bool { bit(1) }
    public var eccEnabled: Bool { bit(2) }
    public var raplDisabled: Bool { bit(3) }
    public var ciphertextHidingEnabled: Bool { bit(4) }
    public var aliasCheckComplete: Bool { bit(5) }
}

/// SIGNING_KEY (bits 4:2 of the word at 0x48): which key signed the report.
public enum SNPSigningKey: UInt8, Sendable, Hashable, Codable {
    /// The Versioned Chip Endorsement Key (per chip and TCB, certified by the ASK).
    case vcek = 0
    /// The Versioned Loaded Endorsement Key (per cloud provider, certified by the ASVK).
    case vlek = 1
    /// No key: the report is unsigned.
    case none = 7
}

/// The CPUID family, model and stepping in a version 3+ report (bytes at 0x188–0x18A).
public struct SNPCPUID: Sendable, Hashable, Codable {
    public var family: UInt8
    public var model: UInt8
    public var stepping: UInt8
    public init(family: UInt8, model: UInt8, stepping: UInt8) {
        self.family = family
        self.model = model
        self.stepping = stepping
    }
}

/// A firmware version as the report gives it (build, minor, major bytes).
public struct SNPFirmwareVersion: Sendable, Hashable, Codable, CustomStringConvertible {
    public var major: UInt8
    public var minor: UInt8
    public var build: UInt8
    public init(major: UInt8, minor: UInt8, build: UInt8) {
        self.major = major
        self.minor = minor
        self.build = build
    }
    public var description: String { "\(major).\(minor).\(build)" }
}
