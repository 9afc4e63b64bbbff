import Foundation
import VouchCore

/// The report an Azure confidential VM's paravisor (HCL, OpenHCL) writes into the vTPM's NV
/// index 0x01400001: a header, the hardware report, and the runtime claims whose hash the
/// hardware report's REPORT_DATA carries. Parsed, NOT verified (`AzureSNPVerifier` does that).
///
/// Layout (little-endian; Microsoft's OpenHCL `IgvmAttestRequestBase`):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0x000 | 4 | signature "HCLA" |
/// | 0x004 | 4 | version (1 or 2) |
/// | 0x008 | 4 | report_size: the bytes that follow from offset 0 that are meaningful |
/// | 0x00C | 4 | request_type |
/// | 0x010 | 4 | status |
/// | 0x014 | 12 | reserved |
/// | 0x020 | 1184 | the hardware report (an SNP ATTESTATION_REPORT for report type 2) |
/// | 0x4C0 | 4 | data_size: this request-data header, its extension and the claims |
/// | 0x4C4 | 4 | request-data version (1; 2 adds a 4-byte capability bitmap after this header) |
/// | 0x4C8 | 4 | report_type (2 = SNP, 4 = TDX) |
/// | 0x4CC | 4 | report_data_hash_type (1 SHA-256, 2 SHA-384, 3 SHA-512) |
/// | 0x4D0 | 4 | variable_data_size: the runtime claims' length |
/// | 0x4D4 (+4) | n | the runtime claims: JSON |
///
/// Refused (`tee_evidence_malformed`): a wrong signature, header version or request-data version,
/// a report_size or data_size that does not add up (or runs past the bytes), an unknown hash
/// type, and a report type other than SNP (Vouch reads only SNP HCL reports). Bytes after
/// report_size (the NV index's zero padding) are not read. Header fields the HCL does not measure
/// (request_type, status) are kept as they are, not interpreted.
public struct AzureHCLReport: Sendable {
    public static let signature: [UInt8] = Array("HCLA".utf8)
    public static let headerSize = 0x20
    public static let requestDataOffset = 0x20 + SNPReport.size
    public static let snpReportType: UInt32 = 2

    public enum HashType: UInt32, Sendable {
        case sha256 = 1, sha384 = 2, sha512 = 3
        public var digestSize: Int {
            switch self {
            case .sha256: 32
            case .sha384: 48
            case .sha512: 64
            }
        }
    }

    public let version: UInt32
    public let requestType: UInt32
    public let status: UInt32
    /// The SNP ATTESTATION_REPORT bytes (parse with `SNPReport`).
    public let hardwareReport: [UInt8]
    public let reportType: UInt32
    public let hashType: HashType
    /// The runtime claims exactly as hashed into REPORT_DATA.
    public let runtimeClaims: [UInt8]

    public init(bytes: [UInt8]) throws {
        func bad(_ message: String, _ field: String, _ expected: String, _ got: String) -> VouchError {
            VouchError(.teeEvidenceMalformed, message, context: ["field": field, "expected": expected, "got": got])
        }
        var r = ByteReader(bytes)
        let sig = try wrapMalformed { try r.bytes(4, "signature") }
        guard sig == Self.signature else { throw bad("not an HCL report", "signature", "HCLA", Hex.encode(sig)) }
        version = try wrapMalformed { try r.u32le("version") }
        guard version == 1 || version == 2 else { throw bad("HCL report header version is not 1 or 2", "version", "1 or 2", "\(version)") }
        let reportSize = Int(try wrapMalformed { try r.u32le("report_size") })
        requestType = try wrapMalformed { try r.u32le("request_type") }
        status = try wrapMalformed { try r.u32le("status") }
        _ = try wrapMalformed { try r.bytes(12, "reserved") }
        hardwareReport = try wrapMalformed { try r.bytes(SNPReport.size, "hardware report") }
        let dataSize = Int(try wrapMalformed { try r.u32le("data_size") })
        let dataVersion = try wrapMalformed { try r.u32le("request_data.version") }
        guard dataVersion == 1 || dataVersion == 2 else {
            throw bad("HCL request data version is not 1 or 2", "request_data.version", "1 or 2", "\(dataVersion)")
        }
        reportType = try wrapMalformed { try r.u32le("report_type") }
        guard reportType == Self.snpReportType else { throw bad("HCL report is not an SNP report", "report_type", "2 (SNP)", "\(reportType)") }
        let rawHash = try wrapMalformed { try r.u32le("report_data_hash_type") }
        guard let hash = HashType(rawValue: rawHash) else { throw bad("HCL report names an unknown hash", "report_data_hash_type", "1, 2 or 3", "\(rawHash)") }
        hashType = hash
        let claimsSize = Int(try wrapMalformed { try r.u32le("variable_data_size") })
        let extensionSize = dataVersion == 2 ? 4 : 0
        guard dataSize == 20 + extensionSize + claimsSize else {
            throw bad("HCL request data size does not add up", "data_size", "\(20 + extensionSize + claimsSize)", "\(dataSize)")
        }
        guard reportSize == Self.requestDataOffset + dataSize, reportSize <= bytes.count else {
            throw bad("HCL report size does not add up", "report_size", "\(Self.requestDataOffset + dataSize) within \(bytes.count) bytes", "\(reportSize)")
        }
        if extensionSize > 0 { _ = try wrapMalformed { try r.bytes(extensionSize, "capability_bitmap") } }
        runtimeClaims = try wrapMalformed { try r.bytes(claimsSize, "runtime claims") }
    }
}

/// The runtime claims' parts Vouch reads: the vTPM's attestation key (`HCLAkPub`) and its
/// endorsement key (`HCLEkPub`) as RSA JWKs, the VM configuration and the user data. Parsing
/// only, from JSON that is trusted only once its hash is checked against a verified report.
public struct AzureRuntimeClaims: Sendable, Equatable {
    public struct RSAKey: Sendable, Equatable, Codable {
        public var kid: String
        /// Big-endian modulus and exponent, decoded from the JWK's base64url `n` and `e`.
        public var modulus: [UInt8]
        public var exponent: [UInt8]
    }

    public let keys: [RSAKey]
    /// `vm-configuration`: each member as JSON text (strings unquoted).
    public let vmConfiguration: [String: String]
    public let userData: String?

    public var attestationKey: RSAKey? { keys.first { $0.kid == "HCLAkPub" } }
    public var endorsementKey: RSAKey? { keys.first { $0.kid == "HCLEkPub" } }

    /// Refuses (`tee_evidence_malformed`) JSON that is not an object with a `keys` array of RSA
    /// JWKs (`kid`, `kty` "RSA", base64url `n` and `e`), or with two keys of one kid.
    public init(json: [UInt8]) throws {
        func bad(_ message: String, _ field: String) -> VouchError {
            VouchError(.teeEvidenceMalformed, message, context: ["field": "runtimeClaims.\(field)", "expected": "Azure HCL runtime claims", "got": message])
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(json)) as? [String: Any] else { throw bad("not a JSON object", "") }
        guard let rawKeys = object["keys"] as? [[String: Any]] else { throw bad("no keys array", "keys") }
        var keys: [RSAKey] = []
        for (i, k) in rawKeys.enumerated() {
            guard let kid = k["kid"] as? String, k["kty"] as? String == "RSA", let n = k["n"] as? String, let e = k["e"] as? String,
                  let modulus = Self.base64url(n), let exponent = Self.base64url(e), !modulus.isEmpty, !exponent.isEmpty else {
                throw bad("key \(i) is not an RSA JWK with kid, n and e", "keys[\(i)]")
            }
            guard !keys.contains(where: { $0.kid == kid }) else { throw bad("two keys named \(kid)", "keys[\(i)].kid") }
            keys.append(RSAKey(kid: kid, modulus: modulus, exponent: exponent))
        }
        self.keys = keys
        var config: [String: String] = [:]
        for (name, value) in object["vm-configuration"] as? [String: Any] ?? [:] {
            switch value {
            case let s as String: config[name] = s
            case let b as Bool: config[name] = b ? "true" : "false"
            case let n as NSNumber: config[name] = n.stringValue
            default: config[name] = String(describing: value)
            }
        }
        vmConfiguration = config
        userData = object["user-data"] as? String
    }

    /// base64url without padding (RFC 7515 section 2), or nil.
    static func base64url(_ s: String) -> [UInt8]? {
        guard s.utf8.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x5f }) else {
            return nil
        }
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.count % 4 != 0 { t += "=" }
        return Data(base64Encoded: t).map { [UInt8]($0) }
    }
}

/// Turns a truncation inside the HCL report into `tee_evidence_malformed`.
private func wrapMalformed<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as VouchError {
        throw VouchError(.teeEvidenceMalformed, "HCL report is truncated: \(e.message)", context: e.context)
    }
}
