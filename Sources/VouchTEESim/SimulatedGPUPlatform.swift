import Foundation
import VouchCore
import VouchCrypto
import VouchRuntime

/// A simulated NVIDIA Hopper board (up to `maxDevices` GPUs), made once and kept in a directory
/// so that a restarted attester is the same GPUs under the same roots. INSECURE by design — every
/// key is a file; for tests, the demo and the simulated fleet only. Every certificate's subject
/// names the organisation `TEESimulation.organization`, so NVIDIA's pinned roots never match.
///
/// The directory holds (it may be the software TEE's platform directory: the names differ):
/// - `gpu-platform.json` (mode 0600): the software Device Identity CA (P-384, self-signed), the
///   software CoRIM signing root and its signing leaf, and every GPU's P-384 key, leaf
///   certificate (issued by the Device Identity CA, with its FWID in a TCG DICE TcbInfo
///   extension) and FWID, all PEM/hex;
/// - `roots/nvidia-gpu.pem` (the Device Identity CA) and `roots/nvidia-rim.pem` (the CoRIM
///   signing root), next to the software TEE's `sev-snp.pem` and `tdx.pem`;
/// - `rims/driver.swidtag` and `rims/vbios.swidtag`: the RIMs (`SoftwareRIM`), re-signed each
///   time the platform is loaded.
public final class SimulatedGPUPlatform: Sendable {
    public static let maxDevices = 16
    static let fileName = "gpu-platform.json"
    static let maxFileBytes = 256 << 10

    public let directory: String
    /// The GPUs this platform reports (the first `count` of the board's).
    public let gpus: [SoftwareGPU]
    public let deviceCA: CertificateAuthority
    public let rimRoot: CertificateAuthority
    public let rimSigningCertificate: Certificate
    public let rimSigningKey: PrivateKey

    public var rootsDirectory: String { directory + "/roots" }
    public var rimsDirectory: String { directory + "/rims" }
    public var deviceRootPath: String { rootsDirectory + "/nvidia-gpu.pem" }
    public var rimRootPath: String { rootsDirectory + "/nvidia-rim.pem" }
    public func rimPath(_ component: SoftwareRIM.Component) -> String { rimsDirectory + "/\(component.rawValue).swidtag" }

    /// The board kept in `directory` (made there first if there is none; of two processes making
    /// one at once, one wins and both load it), reporting its first `count` GPUs (1…16). Its
    /// roots and RIMs are (re)published each time.
    public init(directory: String, count: Int) throws {
        guard (1...Self.maxDevices).contains(count) else {
            throw VouchError(.teeSimulationUnsupported, "a simulated GPU board has 1-\(Self.maxDevices) GPUs", context: ["got": "\(count)"])
        }
        try Files.makeDirectory(directory)
        let path = directory + "/" + Self.fileName
        if !Files.exists(path) {
            _ = try Files.createOnce([UInt8](try JSONEncoder().encode(try Self.make())), at: path, mode: 0o600)
        }
        let stored: Stored
        do { stored = try JSONDecoder().decode(Stored.self, from: Data(try Files.readSecret(path, maxBytes: Self.maxFileBytes))) } catch let e as VouchError {
            throw e
        } catch {
            throw VouchError(.config, "the simulated GPU platform file does not parse", context: ["path": path])
        }
        guard stored.version == 1, stored.gpus.count == Self.maxDevices else {
            throw VouchError(.config, "the simulated GPU platform file has an unknown version or shape", context: ["path": path])
        }
        self.directory = directory
        deviceCA = try CertificateAuthority(key: try PrivateKey(pem: stored.deviceCA.key), certificate: try Certificate(pem: stored.deviceCA.certificate))
        rimRoot = try CertificateAuthority(key: try PrivateKey(pem: stored.rimRoot.key), certificate: try Certificate(pem: stored.rimRoot.certificate))
        rimSigningCertificate = try Certificate(pem: stored.rimSigner.certificate)
        rimSigningKey = try PrivateKey(pem: stored.rimSigner.key)
        gpus = try stored.gpus.prefix(count).map {
            SoftwareGPU(key: try PrivateKey(pem: $0.key), certificate: try Certificate(pem: $0.certificate), fwid: try Hex.decode($0.fwid, field: "fwid"))
        }
        try publish()
    }

    /// Writes the two roots and the two signed RIMs.
    public func publish() throws {
        try Files.makeDirectory(rootsDirectory, mode: 0o755)
        try Files.writeAtomically(Array(try deviceCA.certificate.pem.utf8), to: deviceRootPath)
        try Files.writeAtomically(Array(try rimRoot.certificate.pem.utf8), to: rimRootPath)
        try Files.makeDirectory(rimsDirectory, mode: 0o755)
        for component in [SoftwareRIM.Component.driver, .vbios] {
            try Files.writeAtomically(try SoftwareRIM.signed(component, signer: rimSigningKey, chain: [rimSigningCertificate, rimRoot.certificate]),
                                      to: rimPath(component))
        }
    }

    /// Each GPU's evidence for `nonce` (32 bytes): its SPDM GET_MEASUREMENTS transcript
    /// (`SoftwareGPU.transcript`, blocks 1…10 with their good measurements unless `options`
    /// override them; see `SoftwareGPUOptions`) and its chain (leaf, Device Identity CA; PEM).
    public func evidence(nonce: [UInt8], options: [String: String]) throws -> [(transcript: [UInt8], certificateChainPEM: String)] {
        let parsed = try SoftwareGPUOptions(options, count: gpus.count)
        let rootPEM = try deviceCA.certificate.pem
        return try gpus.enumerated().map { k, gpu in
            let blocks = (1...SoftwareGPUFirmware.blockCount).map { b in
                (index: UInt8(b), digest: parsed.overrides[k]?[b] ?? SoftwareGPUFirmware.measurement(block: b))
            }
            return (try gpu.transcript(nonce: nonce, blocks: blocks), try gpu.certificate.pem + rootPEM)
        }
    }

    // MARK: making and storing

    struct StoredGPU: Codable {
        var certificate: String
        var key: String
        var fwid: String
    }

    struct Stored: Codable {
        var version = 1
        var deviceCA, rimRoot, rimSigner: StoredKeyPair
        var gpus: [StoredGPU]
    }

    /// A new board: the two roots (2020–2045, as the software SEV-SNP roots), the RIM signing
    /// leaf and `maxDevices` GPUs with random FWIDs.
    static func make() throws -> Stored {
        let org = ("O", TEESimulation.organization)
        let (from, to) = SoftwareSNP.rootValidity
        let deviceCA = try CertificateAuthority.tdxSimulationRoot(subject: [("CN", "Simulated NVIDIA Device Identity CA"), org],
                                                                  key: try PrivateKey.generate(.p384), notBefore: from, notAfter: to)
        let rimRoot = try CertificateAuthority.tdxSimulationRoot(subject: [("CN", "Simulated NVIDIA CoRIM signing Root CA"), org],
                                                                 key: try PrivateKey.generate(.p384), notBefore: from, notAfter: to)
        let rimKey = try PrivateKey.generate(.p384)
        let rimLeaf = try rimRoot.tdxSimulationLeaf(subject: [("CN", "Simulated NVIDIA Reference Value signer"), org], publicKey: try rimKey.publicKey,
                                                    notBefore: from, notAfter: to)
        let gpus = try (0..<maxDevices).map { k -> StoredGPU in
            let key = try PrivateKey.generate(.p384)
            let fwid = try Crypto.randomBytes(48)
            let leaf = try deviceCA.tdxSimulationLeaf(subject: [("CN", "Simulated GH100 GPU \(k)"), org], publicKey: try key.publicKey,
                                                      notBefore: from, notAfter: to,
                                                      extensions: [(oid: "2.23.133.5.4.1", der: SoftwareGPU.tcbInfo(fwid: fwid))])
            return StoredGPU(certificate: try leaf.pem, key: try key.pem, fwid: Hex.encode(fwid))
        }
        return Stored(deviceCA: try StoredKeyPair(deviceCA.certificate, deviceCA.key), rimRoot: try StoredKeyPair(rimRoot.certificate, rimRoot.key),
                      rimSigner: try StoredKeyPair(rimLeaf, rimKey), gpus: gpus)
    }
}
