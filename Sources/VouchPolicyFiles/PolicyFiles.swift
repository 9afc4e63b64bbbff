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
        return try PolicyDecoder.decode(YAMLParser.parse(bytes, file: file), sha256: Hex.encode(Crypto.sha256(bytes)), file: file,
                                        modelMaterial: checkModelMaterial)
    }

    /// The check `load` gives the decoder for `model.publishers`' trust material (reported as
    /// `policy_invalid` at the value's file:line:column). Checks, in order:
    /// - a key: its DER is exactly one SubjectPublicKeyInfo (re-encoding gives the same bytes), of
    ///   an EC key on a named P-256, P-384 or P-521 curve (model-signing's key types);
    /// - a root: its DER is exactly one X.509 certificate;
    /// - a trusted root: the bytes are a JSON object (until `SigstoreTrustedRoot(json:)` parses it).
    public static func checkModelMaterial(_ material: ModelPublisher.Material) throws {
        func refuse(_ reason: String) -> VouchError { VouchError(.policyInvalid, reason) }
        switch material {
        case let .publicKey(der):
            guard let key = try? PublicKey(spkiDER: der), (try? key.spkiDER) == der else { throw refuse("is not a public key (SubjectPublicKeyInfo)") }
            guard key.isEC, (try? key.canonicalSPKIDER) != nil else {
                throw refuse("is not an EC public key on P-256, P-384 or P-521 (model-signing's key types): \(key.isRSA ? "an RSA key" : key.isEC ? "another curve" : "another key type")")
            }
        case let .certificate(der):
            guard let certificate = try? Certificate(der: der), (try? certificate.der) == der else { throw refuse("is not an X.509 certificate") }
        case let .sigstoreTrustedRoot(json):
            do {
                // SWITCH: `_ = try SigstoreTrustedRoot(json: json)` replaces this line when VouchModelSigning has it.
                guard try JSONSerialization.jsonObject(with: Data(json)) is [String: Any] else { throw refuse("not a JSON object") }
            } catch { throw refuse("is not a Sigstore trusted root (trusted_root.json): \((error as? VouchError)?.message ?? "not JSON")") }
        }
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
