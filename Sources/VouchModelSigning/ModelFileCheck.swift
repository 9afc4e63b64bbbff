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
    /// signed file whose digest is an extra file's is reported once, as a rename. Names are
    /// compared as UTF-8 bytes, never by Unicode equivalence: `café` composed and decomposed are two
    /// files to a file system, so they are two names here. A name measured twice is extra the
    /// second time. Linear in the number of files (renames are matched through a digest index).
    public static func compare(_ manifest: ModelManifest, _ measured: [Measured]) -> [Mismatch] {
        var signed: [[UInt8]: String] = [:]
        for f in manifest.files { signed[Array(f.name.utf8)] = f.sha256 }
        var present: [[UInt8]: (name: String, sha256: String)] = [:]
        var out: [Mismatch] = []
        for m in measured where !manifest.isIgnored(m.name) {
            let key = Array(m.name.utf8)
            if present[key] != nil { out.append(.extra(name: m.name)); continue }
            present[key] = (m.name, m.sha256)
        }
        var missing: [(String, String)] = []
        for f in manifest.files {
            if let got = present[Array(f.name.utf8)] {
                if got.sha256 != f.sha256 { out.append(.modified(name: f.name, signed: f.sha256, measured: got.sha256)) }
            } else {
                missing.append((f.name, f.sha256))
            }
        }
        // Extra files by digest, each list in name order, so a rename pairs deterministically.
        var extraByDigest: [String: [String]] = [:]
        let extra = present.filter { signed[$0.key] == nil }.map(\.value).sorted { Self.precedes($0.name, $1.name) }
        for e in extra { extraByDigest[e.sha256, default: []].append(e.name) }
        var renamedTo = Set<[UInt8]>()
        var taken: [String: Int] = [:]   // per digest, how many of its extra files a rename took
        for (name, digest) in missing.sorted(by: { Self.precedes($0.0, $1.0) }) {
            let next = taken[digest, default: 0]
            if let candidates = extraByDigest[digest], next < candidates.count {
                let to = candidates[next]
                taken[digest] = next + 1
                renamedTo.insert(Array(to.utf8))
                out.append(.renamed(from: name, to: to))
            } else {
                out.append(.missing(name: name))
            }
        }
        for e in extra where !renamedTo.contains(Array(e.name.utf8)) { out.append(.extra(name: e.name)) }
        return out.sorted { Self.precedes($0.name, $1.name) }
    }

    static func precedes(_ a: String, _ b: String) -> Bool { Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8)) }
}
