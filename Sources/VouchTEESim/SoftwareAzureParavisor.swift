import Foundation
import VouchCore
import VouchCrypto
import VouchTEEWire

/// An Azure confidential VM's paravisor in software: HCL reports in the layout `AzureHCLReport`
/// reads (Microsoft's OpenHCL `IgvmAttestRequestBase`: header, SEV-SNP report, request data,
/// runtime claims JSON), whose SEV-SNP report — signed by the software SEV-SNP platform's VCEK —
/// binds the runtime claims by REPORT_DATA = their digest ‖ zeros, and whose claims name the
/// vTPM's attestation key (`HCLAkPub`) and endorsement key (`HCLEkPub`) as RSA JWKs with the user
/// data the guest wrote. For tests, the demo and simulated hosts only.
public struct SoftwareAzureParavisor: Sendable {
    public let snp: SoftwareSNP

    /// The size of the NV index an HCL report is read from in the Genoa CVM sample
    /// (Tests/Fixtures/sev-snp/genoa-azure-cvm): reports are zero-padded to it.
    public static let nvIndexSize = 2600

    public init(snp: SoftwareSNP) {
        self.snp = snp
    }

    /// The runtime claims the paravisor writes: `keys` (the AK, `key_ops` sign, then the EK,
    /// `key_ops` encrypt, as RSA JWKs), `vm-configuration` and `user-data` (the 64 bytes the
    /// guest wrote, uppercase hex), serialized with sorted keys.
    public static func runtimeClaims(attestationKey: PublicKey, endorsementKey: PublicKey, userData: [UInt8],
                                     vmConfiguration: [String: Any] = ["secure-boot": true, "tpm-enabled": true, "console-enabled": false]) throws -> [UInt8] {
        func jwk(_ kid: String, _ key: PublicKey, _ ops: String) throws -> [String: Any] {
            let (n, e) = try rsaComponents(key)
            return ["kid": kid, "key_ops": [ops], "kty": "RSA", "n": JWSSigner.base64URL(n), "e": JWSSigner.base64URL(e)]
        }
        let object: [String: Any] = ["keys": [try jwk("HCLAkPub", attestationKey, "sign"), try jwk("HCLEkPub", endorsementKey, "encrypt")],
                                     "vm-configuration": vmConfiguration, "user-data": Hex.encode(userData).uppercased()]
        return [UInt8](try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
    }

    /// An HCL report around `hardwareReport` (1184 bytes) and `runtimeClaims`, as `AzureHCLReport`
    /// parses it: header version `version`, request type 2, status 0; request-data version
    /// `requestDataVersion` (2 adds a zero capability bitmap), report type SNP, `hashType`; then
    /// zero padding up to `nvIndexSize`.
    public static func encode(hardwareReport: [UInt8], runtimeClaims: [UInt8], hashType: AzureHCLReport.HashType = .sha256,
                              version: UInt32 = 2, requestDataVersion: UInt32 = 1) -> [UInt8] {
        let extensionSize = requestDataVersion == 2 ? 4 : 0
        let dataSize = 20 + extensionSize + runtimeClaims.count
        var out = AzureHCLReport.signature
        func u32le(_ values: [UInt32]) { for v in values { out += (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } } }
        u32le([version, UInt32(AzureHCLReport.requestDataOffset + dataSize), 2, 0])
        out += [UInt8](repeating: 0, count: 12) + hardwareReport
        u32le([UInt32(dataSize), requestDataVersion, AzureHCLReport.snpReportType, hashType.rawValue, UInt32(runtimeClaims.count)])
        out += [UInt8](repeating: 0, count: extensionSize) + runtimeClaims
        return out + [UInt8](repeating: 0, count: max(0, nvIndexSize - out.count))
    }

    /// A signed HCL report: the platform's report (VMPL 0, as the paravisor's; VCEK-signed) with
    /// REPORT_DATA = `hashType` digest of `runtimeClaims` ‖ zeros, after `edit` (a measurement, a
    /// debug policy, another VMPL) — `edit` may also change REPORT_DATA, for tests of the binding.
    public func hclReport(runtimeClaims: [UInt8], hashType: AzureHCLReport.HashType = .sha256, edit: (inout SNPReport) -> Void = { _ in }) throws -> [UInt8] {
        let digest: [UInt8]
        switch hashType {
        case .sha256: digest = Crypto.digest(.sha256, runtimeClaims)
        case .sha384: digest = Crypto.digest(.sha384, runtimeClaims)
        case .sha512: digest = Crypto.digest(.sha512, runtimeClaims)
        }
        var report = snp.report(signer: .vcek, reportData: digest + [UInt8](repeating: 0, count: 64 - digest.count))
        report.vmpl = 0
        edit(&report)
        return Self.encode(hardwareReport: try snp.sign(report), runtimeClaims: runtimeClaims, hashType: hashType)
    }

    /// An RSA key's big-endian modulus (no leading zero) and exponent, read from its DER
    /// SubjectPublicKeyInfo.
    public static func rsaComponents(_ key: PublicKey) throws -> (modulus: [UInt8], exponent: [UInt8]) {
        guard key.isRSA else { throw VouchError(.teeSimulationUnsupported, "an HCL report's keys are RSA keys") }
        var spki = DER.Reader(try key.spkiDER)
        var body = try spki.sequence("SubjectPublicKeyInfo")
        _ = try body.element("algorithm")
        var bits = DER.Reader(try body.wholeByteBitString("subjectPublicKey"))
        var rsa = try bits.sequence("RSAPublicKey")
        let n = try rsa.read(DER.integerTag, "modulus"), e = try rsa.read(DER.integerTag, "publicExponent")
        return (Array(n.drop { $0 == 0 }), Array(e.drop { $0 == 0 }))
    }
}
