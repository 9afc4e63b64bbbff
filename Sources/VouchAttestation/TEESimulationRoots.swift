import Foundation
import VouchCore
import VouchCrypto

extension TEETrust {
    /// The software TEE's roots a directory holds, besides the pinned ones (for tests and demos
    /// only; vouchd takes them with `--simulated-tee-roots DIR`, and only together with
    /// `--allow-simulated-hosts`). `vouch-attester simulated-tee-platform` writes such a directory:
    /// - `sev-snp.pem`: a simulated SEV-SNP chain (ASK, ASVK, ARK, named as AMD names them), each
    ///   ARK trusted as it is;
    /// - `tdx.pem`: simulated TDX root certificates;
    /// - `nvidia-gpu.pem` (optional): the software GPU's Device Identity root certificates
    ///   (`GPUTrust.simulatedDeviceRoots`), for GPUs presented by a simulated host;
    /// - `nvidia-rim.pem` (optional): the software GPU board's RIM signing roots
    ///   (`GPUTrust.simulatedRIMRoots`), the only roots its RIMs verify under.
    /// At least one of the first two must be there, and every certificate in them must name the software
    /// TEE's organisation (`simulationOrganization`): a directory holding anything else — an AMD or
    /// Intel root, a CA of one's own — is refused (`config`), so this option can never widen the
    /// trust in real platforms' evidence.
    public func trustingSimulation(directory: URL) throws -> TEETrust {
        let snpFile = directory.appendingPathComponent("sev-snp.pem"), tdxFile = directory.appendingPathComponent("tdx.pem")
        func load(_ url: URL) throws -> (text: String, certificates: [Certificate])? {
            guard FileManager.default.fileExists(atPath: url.path) else { return nil }
            guard let handle = FileHandle(forReadingAtPath: url.path) else {
                throw VouchError(.config, "simulated TEE roots file cannot be read", context: ["path": url.path])
            }
            defer { try? handle.close() }
            let data = (try? handle.read(upToCount: (1 << 20) + 1)) ?? Data()
            guard data.count <= 1 << 20 else { throw VouchError(.config, "simulated TEE roots file is larger than 1 MiB", context: ["path": url.path]) }
            let text = String(decoding: data, as: UTF8.self)
            let certificates = try Certificate.chain(pem: text)
            guard !certificates.isEmpty else { throw VouchError(.config, "simulated TEE roots file holds no certificate", context: ["path": url.path]) }
            for c in certificates where !Self.isSimulation(issuer: c.subject) {
                throw VouchError(.config, "simulated TEE roots may only be the software TEE's (organisation \(Self.simulationOrganization))",
                                 context: ["path": url.path, "subject": c.subject])
            }
            return (text, certificates)
        }
        let gpuFile = directory.appendingPathComponent("nvidia-gpu.pem"), rimFile = directory.appendingPathComponent("nvidia-rim.pem")
        let snp = try load(snpFile), tdx = try load(tdxFile), gpu = try load(gpuFile), rim = try load(rimFile)
        guard snp != nil || tdx != nil else {
            throw VouchError(.config, "simulated TEE roots directory holds neither sev-snp.pem nor tdx.pem", context: ["path": directory.path])
        }
        for (file, loaded) in [(tdxFile, tdx), (gpuFile, gpu), (rimFile, rim)] {
            if let notRoot = loaded?.certificates.first(where: { !$0.isSelfSigned }) {
                throw VouchError(.config, "\(file.lastPathComponent) must hold root certificates only", context: ["path": file.path, "subject": notRoot.subject])
            }
        }
        let store = try snp.map { try SNPTrustStore(pemFiles: [("sev-snp.pem", $0.text)], source: directory.path, pinning: .asLoaded) }
        var trust = trustingSimulation(snp: store, tdxRoots: tdx?.certificates)
        trust.gpu.simulatedDeviceRoots = gpu?.certificates
        trust.gpu.simulatedRIMRoots = rim?.certificates
        return trust
    }
}
