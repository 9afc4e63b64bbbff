import Foundation
import VouchAPI
import VouchCore
import VouchCrypto
import VouchTEESim
import VouchTEEWire
import VouchTPMWire

/// How a simulated guest presents itself, read from a small file at every report so that a test
/// or a demo can change it while the attester runs (a measurement that drifts, a debug guest).
/// One `key=value` per line; `#` starts a comment; an absent file means the defaults:
/// - `measurement=HEX`: the launch measurement (SEV-SNP MEASUREMENT, TDX MRTD; an Azure CVM's is
///   its paravisor's), 48 bytes (default `SimulatedTEEOptions.defaultMeasurement`, for an Azure
///   CVM `defaultParavisorMeasurement`);
/// - `debug=true|false`: a debuggable guest (SEV-SNP POLICY.DEBUG, TDX TDATTRIBUTES.DEBUG;
///   default false);
/// - `signer=vcek|vlek`: SEV-SNP only, which key signs (default vcek: the host is then the
///   platform's chip; vlek: the host is its host key);
/// - `pcrN=HEX` (N 0–23): an Azure CVM's vTPM only, the SHA-256 PCR's value (default all zeros);
/// - `gpu…=…`: the simulated GPUs' keys (`SoftwareGPUOptions`: `gpuK.blockB=HEX`), kept in `gpu`
///   and checked by the GPU evidence source.
/// Anything else is refused (`config`), so a typo is never silently the default.
public struct SimulatedTEEOptions: Sendable, Equatable {
    /// SHA-384("vouch simulated guest v1"): the measurement a simulated guest launches with.
    public static let defaultMeasurement = Crypto.digest(.sha384, Array("vouch simulated guest v1".utf8))
    /// SHA-384("vouch simulated paravisor v1"): the launch measurement of a simulated Azure CVM's
    /// paravisor, never a plain guest's (a policy admits the two by different allowlists).
    public static let defaultParavisorMeasurement = Crypto.digest(.sha384, Array("vouch simulated paravisor v1".utf8))
    /// A file larger than this is refused unread.
    public static let maxFileBytes = 4096

    /// Nil: the default of the guest's kind.
    public var measurement: [UInt8]?
    public var debug = false
    public var signer: SNPSigningKey = .vcek
    /// A simulated vTPM's SHA-256 PCR values, by index (absent: zeros).
    public var pcrs: [Int: [UInt8]] = [:]
    /// The `gpu…` keys and their values, unchecked here (`SimulatedGPUEvidenceSource` checks them).
    public var gpu: [String: String] = [:]

    public init() {}

    public init(text: String, source: String) throws {
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)?
                .trimmingCharacters(in: .whitespaces) ?? ""
            if line.isEmpty { continue }
            let kv = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            let at = "\(source):\(index + 1)"
            func bad(_ what: String) -> VouchError {
                VouchError(.config, "\(at): \(what)", context: ["path": source, "line": "\(index + 1)"])
            }
            guard kv.count == 2 else { throw bad("expected key=value") }
            switch kv[0] {
            case "measurement":
                guard kv[1].count == 96, let m = try? Hex.decode(kv[1].lowercased()) else { throw bad("measurement must be 96 hex digits (48 bytes)") }
                measurement = m
            case "debug":
                guard let d = Bool(kv[1]) else { throw bad("debug must be true or false") }
                debug = d
            case "signer":
                switch kv[1] {
                case "vcek": signer = .vcek
                case "vlek": signer = .vlek
                default: throw bad("signer must be vcek or vlek")
                }
            case let key where key.hasPrefix("pcr"):
                guard let index = Int(key.dropFirst(3)), (0...23).contains(index), kv[1].count == 64, let value = try? Hex.decode(kv[1].lowercased()) else {
                    throw bad("pcrN takes N 0-23 and 64 hex digits (a SHA-256 PCR value)")
                }
                pcrs[index] = value
            case let key where key.hasPrefix("gpu"):
                gpu[key] = kv[1]
            default:
                throw bad("unknown key \(kv[0]) (known: measurement, debug, signer, pcrN, gpuK.blockB)")
            }
        }
    }

    /// The options in `path`, or the defaults when there is no such file.
    public static func read(_ path: String?) throws -> SimulatedTEEOptions {
        guard let path, FileManager.default.fileExists(atPath: path) else { return SimulatedTEEOptions() }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw VouchError(.config, "cannot read \(path)", context: ["path": path]) }
        defer { try? handle.close() }
        let data = (try? handle.read(upToCount: maxFileBytes + 1)) ?? Data()
        guard data.count <= maxFileBytes else { throw VouchError(.config, "\(path) is larger than \(maxFileBytes) bytes", context: ["path": path]) }
        return try SimulatedTEEOptions(text: String(decoding: data, as: UTF8.self), source: path)
    }
}

/// A confidential VM on the software TEE (`vouch-attester --simulate-tee`), INSECURE by design:
/// reports and quotes in the real formats, signed by the simulated platform's keys, which a broker
/// trusts only when started with `--allow-simulated-hosts` and the platform's roots. SEV-SNP
/// reports come with the certificate table a host hands out with an extended report (VCEK or
/// VLEK, ASK, ARK), as configfs-tsm's `auxblob` carries it; TDX quotes carry the PCK chain.
public struct SimulatedTEE: TEEEvidenceSource {
    public let kind: TEEKind
    public let platform: SimulatedTEEPlatform
    /// The options file, read at every report (nil: the defaults).
    public let optionsPath: String?

    public init(kind: TEEKind, platform: SimulatedTEEPlatform, optionsPath: String?) {
        self.kind = kind
        self.platform = platform
        self.optionsPath = optionsPath
    }

    public func evidence(reportData: [UInt8]) throws -> TEEEvidence {
        let options = try SimulatedTEEOptions.read(optionsPath)
        switch kind {
        case .sevSNP:
            let snp = platform.snp
            var report = snp.report(signer: options.signer, reportData: reportData)
            report.measurement = options.measurement ?? SimulatedTEEOptions.defaultMeasurement
            report.policy = SNPGuestPolicy.with([SNPGuestPolicy.smtBit] + (options.debug ? [SNPGuestPolicy.debugBit] : []))
            let endorsement = options.signer == .vlek ? snp.vlek : snp.vcek
            // The endorsement, then (for a VCEK) the ASK, then the ARK: the GHCB specification's
            // GUIDs name no ASVK.
            let table = SNPCertificateTable(entries: [.init(guid: (options.signer == .vlek ? SNPCertificateTable.Kind.vlek : .vcek).rawValue, der: try endorsement.der)]
                + (options.signer == .vcek ? [.init(guid: SNPCertificateTable.Kind.ask.rawValue, der: try snp.ask.der)] : [])
                + [.init(guid: SNPCertificateTable.Kind.ark.rawValue, der: try snp.ark.der)])
            return TEEEvidence(fields: TEEEvidenceFields(report: Base64.encode(try snp.sign(report)), certificateTable: Base64.encode(table.bytes)),
                               chipID: options.signer == .vcek ? snp.chipID : nil)
        case .azureSNPVTPM:
            throw VouchError(.unsupported, "a simulated Azure CVM is a SimulatedAzureCVM, with its own vTPM")
        case .tdx:
            let body = SoftwareTDX.body(tdAttributes: [options.debug ? 1 : 0, 0, 0, 0x10, 0, 0, 0, 0], mrTD: options.measurement ?? SimulatedTEEOptions.defaultMeasurement, reportData: reportData)
            return TEEEvidence(fields: TEEEvidenceFields(quote: Base64.encode(try platform.tdx.quote(body))), chipID: nil)
        }
    }
}
