import VouchCore

/// An AMD SEV-SNP ATTESTATION_REPORT (Firmware ABI Specification, pub. 56860, the
/// ATTESTATION_REPORT table), parsed but NOT verified: nothing here has checked the signature,
/// so every field is what the bytes claim. `SNPVerifier` (VouchAttestation) decides what is
/// believed.
///
/// Layout (1184 bytes, little-endian integers):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0x000 | 4 | VERSION (2, 3, 4 or 5 accepted) |
/// | 0x004 | 4 | GUEST_SVN |
/// | 0x008 | 8 | POLICY (`SNPGuestPolicy`) |
/// | 0x010 | 16 | FAMILY_ID |
/// | 0x020 | 16 | IMAGE_ID |
/// | 0x030 | 4 | VMPL |
/// | 0x034 | 4 | SIGNATURE_ALGO (1 = ECDSA P-384 with SHA-384) |
/// | 0x038 | 8 | CURRENT_TCB |
/// | 0x040 | 8 | PLATFORM_INFO |
/// | 0x048 | 4 | bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY, 31:5 reserved |
/// | 0x04C | 4 | reserved |
/// | 0x050 | 64 | REPORT_DATA |
/// | 0x090 | 48 | MEASUREMENT |
/// | 0x0C0 | 32 | HOST_DATA |
/// | 0x0E0 | 48 | ID_KEY_DIGEST |
/// | 0x110 | 48 | AUTHOR_KEY_DIGEST |
/// | 0x140 | 32 | REPORT_ID |
/// | 0x160 | 32 | REPORT_ID_MA |
/// | 0x180 | 8 | REPORTED_TCB |
/// | 0x188 | 3 | CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (version 3+; reserved in version 2) |
/// | 0x18B | 21 | reserved |
/// | 0x1A0 | 64 | CHIP_ID |
/// | 0x1E0 | 8 | COMMITTED_TCB |
/// | 0x1E8 | 4 | CURRENT_BUILD, CURRENT_MINOR, CURRENT_MAJOR, reserved |
/// | 0x1EC | 4 | COMMITTED_BUILD, COMMITTED_MINOR, COMMITTED_MAJOR, reserved |
/// | 0x1F0 | 8 | LAUNCH_TCB |
/// | 0x1F8 | 8+8 | LAUNCH_MIT_VECTOR, CURRENT_MIT_VECTOR (version 5; reserved before) |
/// | 0x208 | 152 | reserved |
/// | 0x2A0 | 512 | SIGNATURE: R (72 bytes), S (72 bytes), both little-endian, then reserved |
///
/// The signature covers bytes [0x000, 0x2A0). Version 4 has version 3's layout.
///
/// Refused as malformed (`tee_evidence_malformed`), before anything else reads the report: any
/// length but 1184; a version other than 2–5; POLICY bit 17 (must be one) clear or a bit of
/// 63:26 (must be zero) set; a reserved SIGNING_KEY value (2–6) or a set bit in 31:5 of the word
/// at 0x48; a non-zero byte in any reserved range of the table above (the firmware writes zeros
/// there; the specification marks them reserved, and a parser that ignored them would let two
/// different byte strings read as the same report); with SIGNATURE_ALGO 1, a non-zero byte after
/// S. PLATFORM_INFO bits the table does not name are kept, not refused (`SNPPlatformInfo`).
/// Because every byte is either read into a field or checked to be zero, `serialized()` of a
/// parsed report gives back exactly the bytes it was parsed from.
public struct SNPReport: Sendable, Hashable {
    public static let size = 0x4A0
    /// The signature covers bytes [0, signedLength).
    public static let signedLength = 0x2A0
    public static let supportedVersions: ClosedRange<UInt32> = 2...5
    /// SIGNATURE_ALGO 1: ECDSA P-384 with SHA-384.
    public static let ecdsaP384SHA384: UInt32 = 1
    /// R and S are each 72 bytes (little-endian, zero-padded) at the start of SIGNATURE.
    public static let signatureComponentSize = 72

    public var version: UInt32
    public var guestSVN: UInt32
    public var policy: SNPGuestPolicy
    public var familyID: [UInt8]          // 16
    public var imageID: [UInt8]           // 16
    public var vmpl: UInt32
    public var signatureAlgorithm: UInt32
    public var currentTCB: SNPTCBVersion
    public var platformInfo: SNPPlatformInfo
    /// AUTHOR_KEY_EN: the ID block was signed by an author key (AUTHOR_KEY_DIGEST is meaningful).
    public var authorKeyEnabled: Bool
    /// MASK_CHIP_KEY: the host masked CHIP_ID (all zero).
    public var maskChipKey: Bool
    public var signingKey: SNPSigningKey
    public var reportData: [UInt8]        // 64
    public var measurement: [UInt8]       // 48
    public var hostData: [UInt8]          // 32
    public var idKeyDigest: [UInt8]       // 48
    public var authorKeyDigest: [UInt8]   // 48
    public var reportID: [UInt8]          // 32
    public var reportIDMA: [UInt8]        // 32
    public var reportedTCB: SNPTCBVersion
    /// Version 3 and later; nil in version 2.
    public var cpuid: SNPCPUID?
    public var chipID: [UInt8]            // 64
    public var committedTCB: SNPTCBVersion
    public var currentVersion: SNPFirmwareVersion
    public var committedVersion: SNPFirmwareVersion
    public var launchTCB: SNPTCBVersion
    /// Version 5 only.
    public var launchMitigationVector: UInt64?
    public var currentMitigationVector: UInt64?
    /// The whole 512-byte SIGNATURE field.
    public var signature: [UInt8]

    /// R as the report holds it: 72 bytes, little-endian.
    public var signatureR: [UInt8] { Array(signature[0..<Self.signatureComponentSize]) }
    /// S as the report holds it: 72 bytes, little-endian.
    public var signatureS: [UInt8] { Array(signature[Self.signatureComponentSize..<2 * Self.signatureComponentSize]) }

    /// An all-zero report of `version` (POLICY's must-be-one bit set, SIGNATURE_ALGO 1), for
    /// writers: the software TEE fills it in and signs it.
    public init(version: UInt32 = 2) {
        self.version = version
        guestSVN = 0
        policy = SNPGuestPolicy(raw: SNPGuestPolicy.reservedOneBit)
        familyID = [UInt8](repeating: 0, count: 16)
        imageID = [UInt8](repeating: 0, count: 16)
        vmpl = 0
        signatureAlgorithm = Self.ecdsaP384SHA384
        currentTCB = SNPTCBVersion(raw: 0)
        platformInfo = SNPPlatformInfo(raw: 0)
        authorKeyEnabled = false
        maskChipKey = false
        signingKey = .vcek
        reportData = [UInt8](repeating: 0, count: 64)
        measurement = [UInt8](repeating: 0, count: 48)
        hostData = [UInt8](repeating: 0, count: 32)
        idKeyDigest = [UInt8](repeating: 0, count: 48)
        authorKeyDigest = [UInt8](repeating: 0, count: 48)
        reportID = [UInt8](repeating: 0, count: 32)
        reportIDMA = [UInt8](repeating: 0, count: 32)
        reportedTCB = SNPTCBVersion(raw: 0)
        cpuid = version >= 3 ? SNPCPUID(family: 0, model: 0, stepping: 0) : nil
        chipID = [UInt8](repeating: 0, count: 64)
        committedTCB = SNPTCBVersion(raw: 0)
        currentVersion = SNPFirmwareVersion(major: 0, minor: 0, build: 0)
        committedVersion = SNPFirmwareVersion(major: 0, minor: 0, build: 0)
        launchTCB = SNPTCBVersion(raw: 0)
        launchMitigationVector = version >= 5 ? 0 : nil
        currentMitigationVector = version >= 5 ? 0 : nil
        signature = [UInt8](repeating: 0, count: 512)
    }

    /// Parses a report (see the type's comment for what is refused).
    public init(bytes: [UInt8]) throws {
        guard bytes.count == Self.size else {
            throw snpMalformed("SNP report is not \(Self.size) bytes", field: "report", expected: "\(Self.size)", got: "\(bytes.count)")
        }
        var r = ByteReader(bytes)
        version = try r.u32le("VERSION")
        guard Self.supportedVersions.contains(version) else {
            throw snpMalformed("SNP report version is not one Vouch reads", field: "VERSION", offset: 0, expected: "2-5", got: "\(version)")
        }
        guestSVN = try r.u32le("GUEST_SVN")
        policy = SNPGuestPolicy(raw: try r.u64le("POLICY"))
        guard policy.raw & SNPGuestPolicy.reservedOneBit != 0 else {
            throw snpMalformed("SNP report POLICY bit 17 (reserved, must be one) is clear", field: "POLICY", offset: 0x08,
                            expected: "bit 17 set", got: snpHex64(policy.raw))
        }
        guard policy.raw & SNPGuestPolicy.reservedZeroMask == 0 else {
            throw snpMalformed("SNP report POLICY has a reserved bit (63:26) set", field: "POLICY", offset: 0x08,
                            expected: "bits 63:26 clear", got: snpHex64(policy.raw))
        }
        familyID = try r.bytes(16, "FAMILY_ID")
        imageID = try r.bytes(16, "IMAGE_ID")
        vmpl = try r.u32le("VMPL")
        signatureAlgorithm = try r.u32le("SIGNATURE_ALGO")
        currentTCB = SNPTCBVersion(raw: try r.u64le("CURRENT_TCB"))
        platformInfo = SNPPlatformInfo(raw: try r.u64le("PLATFORM_INFO"))
        let keyInfo = try r.u32le("SIGNING_KEY")
        guard keyInfo >> 5 == 0 else {
            throw snpMalformed("SNP report has a reserved bit (31:5) set in the word at 0x48", field: "SIGNING_KEY", offset: 0x48,
                            expected: "bits 31:5 clear", got: String(keyInfo, radix: 16))
        }
        guard let key = SNPSigningKey(rawValue: UInt8((keyInfo >> 2) & 7)) else {
            throw snpMalformed("SNP report SIGNING_KEY is a reserved value", field: "SIGNING_KEY", offset: 0x48,
                            expected: "0 (VCEK), 1 (VLEK) or 7 (none)", got: "\((keyInfo >> 2) & 7)")
        }
        authorKeyEnabled = keyInfo & 1 != 0
        maskChipKey = keyInfo & 2 != 0
        signingKey = key
        try zeros(&r, 4, "reserved at 0x4C")
        reportData = try r.bytes(64, "REPORT_DATA")
        measurement = try r.bytes(48, "MEASUREMENT")
        hostData = try r.bytes(32, "HOST_DATA")
        idKeyDigest = try r.bytes(48, "ID_KEY_DIGEST")
        authorKeyDigest = try r.bytes(48, "AUTHOR_KEY_DIGEST")
        reportID = try r.bytes(32, "REPORT_ID")
        reportIDMA = try r.bytes(32, "REPORT_ID_MA")
        reportedTCB = SNPTCBVersion(raw: try r.u64le("REPORTED_TCB"))
        if version >= 3 {
            cpuid = SNPCPUID(family: try r.u8("CPUID_FAM_ID"), model: try r.u8("CPUID_MOD_ID"), stepping: try r.u8("CPUID_STEP"))
            try zeros(&r, 21, "reserved at 0x18B")
        } else {
            cpuid = nil
            try zeros(&r, 24, "reserved at 0x188")
        }
        chipID = try r.bytes(64, "CHIP_ID")
        committedTCB = SNPTCBVersion(raw: try r.u64le("COMMITTED_TCB"))
        let cb = try r.u8("CURRENT_BUILD"), cmi = try r.u8("CURRENT_MINOR"), cma = try r.u8("CURRENT_MAJOR")
        try zeros(&r, 1, "reserved at 0x1EB")
        currentVersion = SNPFirmwareVersion(major: cma, minor: cmi, build: cb)
        let kb = try r.u8("COMMITTED_BUILD"), kmi = try r.u8("COMMITTED_MINOR"), kma = try r.u8("COMMITTED_MAJOR")
        try zeros(&r, 1, "reserved at 0x1EF")
        committedVersion = SNPFirmwareVersion(major: kma, minor: kmi, build: kb)
        launchTCB = SNPTCBVersion(raw: try r.u64le("LAUNCH_TCB"))
        if version >= 5 {
            launchMitigationVector = try r.u64le("LAUNCH_MIT_VECTOR")
            currentMitigationVector = try r.u64le("CURRENT_MIT_VECTOR")
            try zeros(&r, Self.signedLength - 0x208, "reserved at 0x208")
        } else {
            launchMitigationVector = nil
            currentMitigationVector = nil
            try zeros(&r, Self.signedLength - 0x1F8, "reserved at 0x1F8")
        }
        signature = try r.bytes(512, "SIGNATURE")
        if signatureAlgorithm == Self.ecdsaP384SHA384, let i = signature[(2 * Self.signatureComponentSize)...].firstIndex(where: { $0 != 0 }) {
            throw snpMalformed("SNP report has a non-zero byte in the signature's reserved part", field: "SIGNATURE",
                            offset: Self.signedLength + i, expected: "0", got: String(signature[i], radix: 16))
        }
        try r.expectEnd("SNP report")
    }

    /// The report's 1184 bytes. Throws `tee_evidence_malformed` if a field has the wrong length
    /// or a version-specific field is missing or present where the version has none.
    public func serialized() throws -> [UInt8] {
        func fixed(_ b: [UInt8], _ n: Int, _ field: String) throws -> [UInt8] {
            guard b.count == n else { throw snpMalformed("SNP report field has the wrong length", field: field, expected: "\(n)", got: "\(b.count)") }
            return b
        }
        guard Self.supportedVersions.contains(version) else {
            throw snpMalformed("SNP report version is not one Vouch writes", field: "VERSION", expected: "2-5", got: "\(version)")
        }
        guard (version >= 3) == (cpuid != nil), (version >= 5) == (launchMitigationVector != nil && currentMitigationVector != nil) else {
            throw snpMalformed("SNP report fields do not match its version", field: "VERSION", expected: "CPUID from 3, mitigation vectors from 5", got: "\(version)")
        }
        var w = SNPByteWriter()
        w.u32(version)
        w.u32(guestSVN)
        w.u64(policy.raw)
        w.raw(try fixed(familyID, 16, "FAMILY_ID"))
        w.raw(try fixed(imageID, 16, "IMAGE_ID"))
        w.u32(vmpl)
        w.u32(signatureAlgorithm)
        w.u64(currentTCB.raw)
        w.u64(platformInfo.raw)
        w.u32(UInt32(signingKey.rawValue) << 2 | (maskChipKey ? 2 : 0) | (authorKeyEnabled ? 1 : 0))
        w.zeros(4)
        w.raw(try fixed(reportData, 64, "REPORT_DATA"))
        w.raw(try fixed(measurement, 48, "MEASUREMENT"))
        w.raw(try fixed(hostData, 32, "HOST_DATA"))
        w.raw(try fixed(idKeyDigest, 48, "ID_KEY_DIGEST"))
        w.raw(try fixed(authorKeyDigest, 48, "AUTHOR_KEY_DIGEST"))
        w.raw(try fixed(reportID, 32, "REPORT_ID"))
        w.raw(try fixed(reportIDMA, 32, "REPORT_ID_MA"))
        w.u64(reportedTCB.raw)
        if let cpuid {
            w.raw([cpuid.family, cpuid.model, cpuid.stepping])
            w.zeros(21)
        } else {
            w.zeros(24)
        }
        w.raw(try fixed(chipID, 64, "CHIP_ID"))
        w.u64(committedTCB.raw)
        w.raw([currentVersion.build, currentVersion.minor, currentVersion.major, 0])
        w.raw([committedVersion.build, committedVersion.minor, committedVersion.major, 0])
        w.u64(launchTCB.raw)
        if let launch = launchMitigationVector, let current = currentMitigationVector {
            w.u64(launch)
            w.u64(current)
        }
        w.zeros(Self.signedLength - w.bytes.count)
        w.raw(try fixed(signature, 512, "SIGNATURE"))
        return w.bytes
    }

    /// The bytes the signature covers, [0, 0x2A0) of `serialized()`.
    public func signedBytes() throws -> [UInt8] { Array(try serialized().prefix(Self.signedLength)) }

    /// Sets R and S from their big-endian magnitudes (as a DER ECDSA signature holds them):
    /// each is written little-endian into its 72-byte slot. The rest of SIGNATURE becomes zero.
    public mutating func setSignature(r: [UInt8], s: [UInt8]) throws {
        func slot(_ big: [UInt8], _ field: String) throws -> [UInt8] {
            let magnitude = Array(big.drop { $0 == 0 })
            guard magnitude.count <= Self.signatureComponentSize else {
                throw snpMalformed("signature component is too long for the report", field: field, expected: "<= 72", got: "\(magnitude.count)")
            }
            return magnitude.reversed() + [UInt8](repeating: 0, count: Self.signatureComponentSize - magnitude.count)
        }
        signature = try slot(r, "SIGNATURE.R") + slot(s, "SIGNATURE.S") + [UInt8](repeating: 0, count: 512 - 2 * Self.signatureComponentSize)
    }

    /// R and S as big-endian magnitudes (leading zeros dropped), for building a DER signature.
    public var signatureBigEndian: (r: [UInt8], s: [UInt8]) {
        (Array(signatureR.reversed().drop { $0 == 0 }), Array(signatureS.reversed().drop { $0 == 0 }))
    }
}

private func zeros(_ r: inout ByteReader, _ n: Int, _ field: String) throws {
    let start = r.offset
    let bytes = try r.bytes(n, field)
    if let i = bytes.firstIndex(where: { $0 != 0 }) {
        throw snpMalformed("SNP report has a non-zero byte in a reserved field", field: field, offset: start + i, expected: "0", got: String(bytes[i], radix: 16))
    }
}

func snpMalformed(_ message: String, field: String, offset: Int? = nil, expected: String, got: String) -> VouchError {
    var context = ["field": field, "expected": expected, "got": got]
    if let offset { context["offset"] = "0x" + String(offset, radix: 16) }
    return VouchError(.teeEvidenceMalformed, message, context: context)
}

func snpHex64(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 16 - s.count)) + s
}

/// Little-endian writer for C-struct formats (the SNP report).
struct SNPByteWriter {
    private(set) var bytes: [UInt8] = []
    mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func raw(_ b: [UInt8]) { bytes += b }
    mutating func zeros(_ n: Int) { bytes += [UInt8](repeating: 0, count: n) }
}
