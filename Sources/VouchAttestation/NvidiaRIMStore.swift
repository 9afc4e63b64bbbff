import Foundation
import VouchCore
import VouchPolicy
import VouchXMLSig

extension ErrorCode {
    /// The driver RIM and the VBIOS RIM both mark the same measurement index active: which one
    /// is the reference is undefined, so the comparison is refused.
    public static let rimIndexConflict = ErrorCode("rim_index_conflict", status: 403)
}

/// A local store of NVIDIA driver and VBIOS RIMs: every file of a directory verified once with
/// `NvidiaRIMVerifier` when loaded, the verified ones indexed by (component, colloquialVersion),
/// the others reported and never used. A lookup is cheap (no XML, no signature): it picks the
/// driver RIM for exactly the GPU's driver version and the VBIOS RIM for exactly its VBIOS version
/// (hex digits compared without regard to case), re-checks that the RIM's certificates are valid
/// at the lookup time, and merges the two into a GPU's reference values.
public struct NvidiaRIMStore: Sendable {
    public static let maxFiles = 256
    public static let maxFileBytes = 1 << 20

    /// A RIM file that did not verify at load (never used), with the code and message why.
    public struct LoadFailure: Sendable, Equatable {
        public let file: String
        public let code: ErrorCode
        public let message: String
    }

    /// One verified RIM and the file it came from.
    public struct Entry: Sendable {
        public let file: String
        public let rim: VerifiedNvidiaRIM
    }

    struct Key: Hashable { var component: NvidiaRIMComponent; var version: String }

    let entries: [Key: [Entry]]
    /// The files that did not verify when the store was loaded.
    public let failures: [LoadFailure]

    /// Every RIM ever verified into this store, by file name.
    public var verified: [Entry] { entries.values.flatMap { $0 }.sorted { $0.file < $1.file } }

    /// Loads every regular file of `directory` whose name does not start with "." (at most
    /// `maxFiles`, each at most `maxFileBytes`), verifying each at `at` with `verifier`; the
    /// component is told by the signed colloquialVersion (`NvidiaRIMComponent(version:)`).
    /// Throws `config` when the directory cannot be read or holds more than `maxFiles` files.
    public init(directory: URL, verifier: NvidiaRIMVerifier, at: Date) throws {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory.path) else {
            throw VouchError(.config, "the RIM directory cannot be read", context: ["path": directory.path])
        }
        var files: [(String, [UInt8]?)] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            let url = directory.appendingPathComponent(name)
            guard let attributes = try? fm.attributesOfItem(atPath: url.path), attributes[.type] as? FileAttributeType == .typeRegular else { continue }
            guard files.count < Self.maxFiles else {
                throw VouchError(.config, "the RIM directory holds more than \(Self.maxFiles) files", context: ["path": directory.path])
            }
            let size = (attributes[.size] as? NSNumber)?.intValue ?? Int.max
            files.append((name, size <= Self.maxFileBytes ? fm.contents(atPath: url.path).map { [UInt8]($0) } : nil))
        }
        self.init(files: files, verifier: verifier, at: at)
    }

    /// The same from (name, bytes) pairs; nil bytes: the file could not be read or is too large.
    /// Files after the first `maxFiles` are reported, not verified.
    public init(files: [(name: String, bytes: [UInt8]?)], verifier: NvidiaRIMVerifier, at: Date) {
        var entries: [Key: [Entry]] = [:]
        var failures: [LoadFailure] = []
        for (name, bytes) in files.prefix(Self.maxFiles) {
            guard let bytes, bytes.count <= Self.maxFileBytes else {
                failures.append(LoadFailure(file: name, code: .xmlDocumentMalformed, message: "unreadable or over \(Self.maxFileBytes) bytes"))
                continue
            }
            do {
                let rim = try verifier.verify(bytes, at: at)
                entries[Self.key(rim.identity.component, rim.identity.version), default: []].append(Entry(file: name, rim: rim))
            } catch {
                let e = error as? VouchError
                failures.append(LoadFailure(file: name, code: e?.code ?? .rimMalformed, message: e?.message ?? "\(error)"))
            }
        }
        failures += files.dropFirst(Self.maxFiles).map {
            LoadFailure(file: $0.name, code: .xmlDocumentMalformed, message: "more than \(Self.maxFiles) RIM files")
        }
        self.entries = entries
        self.failures = failures
    }

    static func key(_ component: NvidiaRIMComponent, _ version: String) -> Key {
        Key(component: component, version: component == .vbios ? version.uppercased() : version)
    }

    /// The RIM for `component` at `version` whose certificates are valid at `at` (the one valid
    /// longest when several are), or why there is none.
    public func rim(_ component: NvidiaRIMComponent, version: String, at: Date) -> Result<Entry, Missing> {
        guard let candidates = entries[Self.key(component, version)], !candidates.isEmpty else {
            return .failure(Missing(component: component, version: version, reason: "no verified \(component.rawValue) RIM for version \(version)"))
        }
        guard let best = candidates.filter({ $0.rim.validity.contains(at) }).max(by: { $0.rim.validity.upperBound < $1.rim.validity.upperBound }) else {
            return .failure(Missing(component: component, version: version,
                                    reason: "the \(component.rawValue) RIM for version \(version) is not valid at the check time (certificates valid \(candidates.map { "\($0.rim.validity.lowerBound.iso8601)…\($0.rim.validity.upperBound.iso8601)" }.joined(separator: ", ")))"))
        }
        return .success(best)
    }

    /// A component whose RIM was not found or is not valid at the lookup time.
    public struct Missing: Error, Sendable, Equatable {
        public let component: NvidiaRIMComponent
        public let version: String
        public let reason: String
    }

    /// The reference values for a GPU reporting `driverVersion` and `vbiosVersion`, looked up at `at`.
    public struct Lookup: Sendable {
        public let references: NvidiaGPUReferenceValues
        /// The RIMs used (file and identity), driver first.
        public let used: [Entry]
        /// The components with no RIM; their indices are "missing", never a pass.
        public let missing: [Missing]
    }

    /// RIM index i is SPDM measurement block i + 1; the active indices of both RIMs are merged.
    /// A missing RIM leaves its indices out (the comparison reports them "missing"; the result is
    /// `complete` only with both RIMs). Throws `rim_index_conflict` when an index is active in both.
    public func references(driverVersion: String, vbiosVersion: String, at: Date) throws -> Lookup {
        var used: [Entry] = []
        var missing: [Missing] = []
        for (component, version) in [(NvidiaRIMComponent.driver, driverVersion), (.vbios, vbiosVersion)] {
            switch rim(component, version: version, at: at) {
            case let .success(entry): used.append(entry)
            case let .failure(m): missing.append(m)
            }
        }
        let references = try Self.merge(used.map(\.rim.referenceValues), complete: missing.isEmpty)
        return Lookup(references: references, used: used, missing: missing)
    }

    /// The merge of the lookup (pure; `rim_index_conflict` on an index active in two RIMs).
    static func merge(_ rims: [ReferenceValues], complete: Bool) throws -> NvidiaGPUReferenceValues {
        var alternatives: [Int: [[UInt8]]] = [:]
        for rim in rims {
            for m in rim.active {
                let block = m.index + 1
                guard alternatives[block] == nil else {
                    throw VouchError(.rimIndexConflict, "RIM index \(m.index) (measurement block \(block)) is active in both the driver and the VBIOS RIM",
                                     context: ["index": "\(m.index)"])
                }
                alternatives[block] = m.alternatives
            }
        }
        return NvidiaGPUReferenceValues(alternatives: alternatives, complete: complete)
    }
}

extension NvidiaGPUVerifier {
    /// What `verify(_:at:expectedNonce:rims:requireReferences:)` returns: the verification and,
    /// when the evidence got as far as its versions, the RIM lookup made for them.
    public struct StoreVerification: Sendable {
        public let result: TEEVerification<NvidiaGPUClaims>
        public let lookup: NvidiaRIMStore.Lookup?
    }

    /// Verifies `evidence` (checks 1-6) and compares its measurements with the references `rims`
    /// holds for its verified driver and VBIOS versions at `now` (check 7). An index active in both
    /// RIMs refuses the evidence (`rim_index_conflict`); a missing RIM leaves its indices "missing".
    public func verify(_ evidence: NvidiaGPUEvidence, at now: Date, expectedNonce: [UInt8]? = nil, rims: NvidiaRIMStore,
                       requireReferences: Bool = false) -> StoreVerification {
        var lookup: NvidiaRIMStore.Lookup?
        let result = verify(evidence, at: now, expectedNonce: expectedNonce, requireReferences: requireReferences) { driver, vbios in
            do {
                let found = try rims.references(driverVersion: driver, vbiosVersion: vbios, at: now)
                lookup = found
                return .success(found.references)
            } catch {
                let e = error as? VouchError
                return .failure(LookupFailure(violation: PolicyViolation(code: e?.code ?? .rimIndexConflict, path: "rims",
                                                                         expected: "driver and VBIOS RIMs with disjoint active indices",
                                                                         actual: e?.message ?? "\(error)")))
            }
        }
        return StoreVerification(result: result, lookup: lookup)
    }
}
