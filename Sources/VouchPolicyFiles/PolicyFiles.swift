import Foundation
import VouchCore
import VouchCrypto
import VouchPolicy
import VouchRuntime
import VouchYAML

/// Reads policy files: each path a file, or a directory whose `*.yaml`, `*.yml` and `*.json`
/// files are read (not recursively), in name order.
public enum PolicyFiles {
    public static func expand(_ paths: [String]) throws -> [String] {
        var files: [String] = []
        for path in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
                throw VouchError(.config, "policy path does not exist: \(path)", context: ["path": path])
            }
            if isDir.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") || $0.hasSuffix(".json") }.sorted()
                    .map { (path as NSString).appendingPathComponent($0) }
            } else {
                files.append(path)
            }
        }
        return files
    }

    /// Parses and validates one file.
    public static func load(file: String) throws -> Policy {
        let bytes = try Files.read(file)
        return try PolicyDecoder.decode(YAMLParser.parse(bytes, file: file), sha256: Hex.encode(Crypto.sha256(bytes)), file: file)
    }

    /// Every file's result, for linting.
    public static func loadEach(_ paths: [String]) throws -> [(file: String, result: Result<Policy, VouchError>)] {
        try expand(paths).map { file in
            do { return (file, .success(try load(file: file))) } catch let e as VouchError { return (file, .failure(e)) }
        }
    }

    /// The validated set, or the first error (a file's, or the set's: duplicate names or priorities).
    public static func loadSet(_ paths: [String]) throws -> PolicySet {
        let results = try loadEach(paths)
        guard !results.isEmpty else { throw VouchError(.policyInvalid, "no policy files in \(paths.joined(separator: ", "))") }
        return try PolicySet(results.map { try $0.result.get() })
    }

    /// Modification times of the files behind `paths`, to notice edits.
    public static func fingerprint(_ paths: [String]) -> [String: Date] {
        var out: [String: Date] = [:]
        for f in (try? expand(paths)) ?? [] {
            out[f] = (try? FileManager.default.attributesOfItem(atPath: f)[.modificationDate] as? Date) ?? .distantPast
        }
        return out
    }
}
