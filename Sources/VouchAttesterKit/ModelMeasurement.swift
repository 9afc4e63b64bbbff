import Foundation
import VouchCore
import VouchCrypto
import VouchEventLog
import VouchRuntime
import VouchTPM
import VouchTPMWire

/// Measures model artefacts (weight shards, tokenizer, config) into PCR 23 and keeps the log.
public enum ModelMeasurement {
    /// Expands `paths` (files, or directories walked recursively) into (name, path) pairs; the name
    /// is the path as given, with directory members as `DIR/relative/path`. Sorted by name.
    public static func artefactPaths(_ paths: [String]) throws -> [(name: String, path: String)] {
        var out: [(String, String)] = []
        let fm = FileManager.default
        for p in paths {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: p, isDirectory: &isDir) else {
                throw VouchError(.io, "no such file or directory: \(p)", context: ["path": p])
            }
            if isDir.boolValue {
                guard let walker = fm.enumerator(atPath: p) else { throw VouchError(.io, "cannot read directory \(p)", context: ["path": p]) }
                for case let rel as String in walker {
                    let full = (p as NSString).appendingPathComponent(rel)
                    var sub: ObjCBool = false
                    if fm.fileExists(atPath: full, isDirectory: &sub), !sub.boolValue { out.append((full, full)) }
                }
            } else {
                out.append((p, p))
            }
        }
        guard !out.isEmpty else { throw VouchError(.badRequest, "no model artefacts to measure") }
        return out.sorted { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
    }

    /// Hashes every artefact (streaming), resets PCR 23, extends it with one SHA-256 digest per
    /// artefact in name order, and writes the CEL JSON log to `logPath` (atomically, mode 0644).
    /// Returns the claims the broker will derive from it.
    public static func measure(paths: [String], tcti: String, logPath: String) throws -> ModelClaims {
        let artefacts = try artefactPaths(paths).map { a -> ModelLog.Artefact in
            let (digest, size) = try Crypto.digestFile(a.path)
            return ModelLog.Artefact(name: a.name, sha256: Hex.encode(digest), size: size)
        }
        let log = ModelLog(artefacts: artefacts)
        let device = try TPMDevice(tcti: tcti)
        defer { device.close() }
        // A stale log must not outlive the PCR it described.
        if Files.exists(logPath) { try? FileManager.default.removeItem(atPath: logPath) }
        try device.pcrReset(ModelLog.pcr)
        for a in artefacts { try device.pcrExtend(ModelLog.pcr, digests: [.sha256: try Hex.decode(a.sha256)]) }
        try Files.writeAtomically(log.json, to: logPath, mode: 0o644)
        return log.claims(using: OpenSSLDigester())
    }
}
