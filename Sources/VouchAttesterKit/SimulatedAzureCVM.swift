import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchRuntime
import VouchTEESim
import VouchTEEWire
import VouchTPMWire

/// An Azure confidential VM on the software TEE (`vouch-attester --simulate-tee azure-snp-vtpm`),
/// INSECURE by design: a software paravisor (`SoftwareAzureParavisor`) signs HCL reports with the
/// simulated platform's VCEK, and a software vTPM — an RSA 2048 AK and EK kept in the guest's
/// state directory (`simulated-vtpm.json`, mode 0600: one vTPM per guest, as on Azure) — quotes
/// its PCRs. The HCL report's runtime claims name that AK and EK, and carry as user data
/// `EnrollmentBinding.teeReportData(binding:)`, as the real attester writes it into NV index
/// 0x01400002. The options file (`SimulatedTEEOptions`) is read at every report: the paravisor's
/// launch measurement (default `SimulatedTEEOptions.defaultParavisorMeasurement`), debug, and the vTPM's SHA-256 PCR values (`pcrN=HEX`; default zeros). The TPM
/// clock counts milliseconds since the vTPM was made, so it never goes back across restarts.
public struct SimulatedAzureCVM: TEEEvidenceSource {
    public var kind: TEEKind { .azureSNPVTPM }
    public let paravisor: SoftwareAzureParavisor
    public let ak: SoftwareAK
    public let endorsementKey: PublicKey
    public let optionsPath: String?
    let madeAt: Date
    let clock: any Clock

    static let fileName = "simulated-vtpm.json"

    public init(snp: SoftwareSNP, attestationKey: PrivateKey, endorsementKey: PublicKey, optionsPath: String?, madeAt: Date, clock: any Clock = SystemClock()) throws {
        paravisor = SoftwareAzureParavisor(snp: snp)
        ak = try SoftwareAK(key: attestationKey, rsaModulus: try SoftwareAzureParavisor.rsaComponents(attestationKey.publicKey).modulus)
        self.endorsementKey = endorsementKey
        self.optionsPath = optionsPath
        self.madeAt = madeAt
        self.clock = clock
    }

    struct Stored: Codable {
        var attestationKey: String
        var endorsementKey: String
        var madeAt: Double
    }

    /// The guest's vTPM kept in `stateDirectory` (made there once) on `platform`'s chip.
    public static func loadOrCreate(platform: SimulatedTEEPlatform, stateDirectory: String, optionsPath: String?, clock: any Clock = SystemClock()) throws -> SimulatedAzureCVM {
        try Files.makeDirectory(stateDirectory)
        let path = stateDirectory + "/" + fileName
        if !Files.exists(path) {
            let made = Stored(attestationKey: try PrivateKey.generateRSA(bits: 2048).pem, endorsementKey: try PrivateKey.generateRSA(bits: 2048).pem,
                              madeAt: clock.now().timeIntervalSince1970)
            _ = try Files.createOnce(JSONCodec.encode(made), at: path, mode: 0o600)
        }
        let stored = try JSONCodec.decode(Stored.self, from: Files.readSecret(path, maxBytes: 64 << 10))
        return try SimulatedAzureCVM(snp: platform.snp, attestationKey: try PrivateKey(pem: stored.attestationKey),
                                     endorsementKey: try PrivateKey(pem: stored.endorsementKey).publicKey, optionsPath: optionsPath,
                                     madeAt: Date(timeIntervalSince1970: stored.madeAt), clock: clock)
    }

    /// An Azure CVM's evidence needs the request's binding (its vTPM quote's qualifying data).
    public func evidence(reportData: [UInt8]) throws -> TEEEvidence {
        throw VouchError(.unsupported, "an Azure CVM's evidence is made for a binding (its vTPM quote's qualifying data)")
    }

    /// The HCL report whose user data is `EnrollmentBinding.teeReportData(binding:)`, with the
    /// VCEK, and the vTPM quote over `pcrSelection` (nil: SHA-256 PCRs 0–7) with qualifying data
    /// `binding`.
    public func evidence(binding: [UInt8], pcrSelection: PCRSelection?) throws -> TEEEvidence {
        try evidence(binding: binding, pcrSelection: pcrSelection, options: try SimulatedTEEOptions.read(optionsPath))
    }

    /// The same, with `options` in place of the options file's.
    public func evidence(binding: [UInt8], pcrSelection: PCRSelection?, options: SimulatedTEEOptions) throws -> TEEEvidence {
        let selection = pcrSelection ?? .azureRegistration
        var values: [HashAlg: [Int: [UInt8]]] = [:]
        for bank in selection.banks {
            for index in bank.pcrs {
                values[bank.hash, default: [:]][index] = bank.hash == .sha256 ? options.pcrs[index] ?? [UInt8](repeating: 0, count: 32)
                                                                              : [UInt8](repeating: 0, count: bank.hash.digestSize)
            }
        }
        let elapsed = max(0, clock.now().timeIntervalSince(madeAt))
        let quote = try ak.quote(qualifyingData: binding, selection: selection, pcrs: PCRValues(values), clockMilliseconds: UInt64(elapsed * 1000))
        let claims = try SoftwareAzureParavisor.runtimeClaims(attestationKey: try ak.key.publicKey, endorsementKey: endorsementKey,
                                                              userData: EnrollmentBinding.teeReportData(binding: binding))
        let report = try paravisor.hclReport(runtimeClaims: claims) { r in
            r.measurement = options.measurement ?? SimulatedTEEOptions.defaultParavisorMeasurement
            r.policy = SNPGuestPolicy.with([SNPGuestPolicy.smtBit] + (options.debug ? [SNPGuestPolicy.debugBit] : []))
        }
        return TEEEvidence(fields: TEEEvidenceFields(report: Base64.encode(report), endorsement: Base64.encode(try paravisor.snp.vcek.der), vtpmQuote: quote),
                           chipID: nil)
    }
}
