import VouchCore

/// The comparison of a verified manifest with the files a host measured (or a directory holds).
public enum ModelFileCheck {
    /// One file the host measured: its path relative to the signed model's directory, and its
    /// SHA-256 (lowercase hex).
    public struct Measured: Sendable, Equatable {
        public let name: String
        public let sha256: String
        public init(name: String, sha256: String) { self.name = name; self.sha256 = sha256 }
    }

    public enum Mismatch: Sendable, Equatable {
        /// Signed and present under this name, with another digest.
        case modified(name: String, signed: String, measured: String)
        case missing(name: String)
        /// Present, neither listed nor under an ignored path.
        case extra(name: String)
        /// A signed file's bytes are present under another name (and the signed name is absent).
        case renamed(from: String, to: String)

        public var code: ErrorCode {
            switch self {
            case .modified: .modelFileModified
            case .missing: .modelFileMissing
            case .extra: .modelFileExtra
            case .renamed: .modelFileRenamed
            }
        }
        public var name: String {
            switch self {
            case let .modified(n, _, _), let .missing(n), let .extra(n): n
            case let .renamed(_, to): to
            }
        }
    }

    /// Every difference between the manifest and the measured files, in name order: the same
    /// paths with the same digests, nothing missing and nothing extra (files under the signer's
    /// `ignore_paths` are not compared — the signer declared them outside the model). A missing
    /// signed file whose digest is an extra file's is reported once, as a rename.
    public static func compare(_ manifest: ModelManifest, _ measured: [Measured]) -> [Mismatch] {
        var signed: [String: String] = [:]
        for f in manifest.files { signed[f.name] = f.sha256 }
        var present: [String: String] = [:]
        for m in measured where !manifest.isIgnored(m.name) { present[m.name] = m.sha256 }
        var out: [Mismatch] = []
        var missing: [(String, String)] = []
        var extra: [(String, String)] = []
        for (name, digest) in signed {
            if let got = present[name] {
                if got != digest { out.append(.modified(name: name, signed: digest, measured: got)) }
            } else {
                missing.append((name, digest))
            }
        }
        for (name, digest) in present where signed[name] == nil { extra.append((name, digest)) }
        missing.sort { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
        extra.sort { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
        var extraUsed = Set<String>()
        for (name, digest) in missing {
            if let to = extra.first(where: { $0.1 == digest && !extraUsed.contains($0.0) }) {
                extraUsed.insert(to.0)
                out.append(.renamed(from: name, to: to.0))
            } else {
                out.append(.missing(name: name))
            }
        }
        for (name, _) in extra where !extraUsed.contains(name) { out.append(.extra(name: name)) }
        return out.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
    }
}
