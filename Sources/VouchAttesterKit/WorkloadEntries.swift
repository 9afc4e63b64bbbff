import Foundation
import VouchCore

/// One workload selector, as SPIRE's unix workload attestor names them: `unix:uid:1000`,
/// `unix:user:svc`, `unix:gid:1000`, `unix:group:svc`, `unix:supplementary_gid:N`,
/// `unix:supplementary_group:NAME`, `unix:path:/usr/bin/agent`, `unix:sha256:HEX` (of the
/// executable). A closed set: any other kind is refused when the entries are read.
public struct WorkloadSelector: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        case uid, user, gid, group, path, sha256
        case supplementaryGID = "supplementary_gid"
        case supplementaryGroup = "supplementary_group"
    }
    public let kind: Kind
    public let value: String

    public init(kind: Kind, value: String) { self.kind = kind; self.value = value }

    /// Reads `unix:KIND:VALUE`; the value is checked per kind (numbers, names, an absolute path,
    /// 64 lowercase hex digits).
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, parts[0] == "unix", let kind = Kind(rawValue: parts[1]) else {
            throw VouchError(.workloadEntriesInvalid, "a selector is unix:KIND:VALUE with KIND one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))",
                             context: ["got": String(text.prefix(80))])
        }
        let value = parts[2]
        let valid: Bool
        switch kind {
        case .uid, .gid, .supplementaryGID: valid = !value.isEmpty && value.count <= 10 && value.allSatisfy(\.isASCII) && UInt32(value) != nil
        case .user, .group, .supplementaryGroup:
            valid = !value.isEmpty && value.count <= 64 && value.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) }
        case .path: valid = value.hasPrefix("/") && value.utf8.count <= 4096 && !value.contains("\0")
        case .sha256: valid = value.count == 64 && value.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
        }
        guard valid else { throw VouchError(.workloadEntriesInvalid, "the selector's value does not fit its kind", context: ["got": String(text.prefix(80))]) }
        self.kind = kind
        self.value = value
    }

    public var description: String { "unix:\(kind.rawValue):\(value)" }
}

/// A registration entry: a workload whose selectors include all of `selectors` gets the identity
/// of agent `agent` on this host (the broker names it: `spiffe://TD/host/HOST/agent/NAME`), an
/// X.509-SVID issued through the attested enrollment path.
public struct WorkloadEntry: Sendable, Equatable {
    public var agent: String
    public var selectors: Set<WorkloadSelector>
    public var keyType: String

    public init(agent: String, selectors: Set<WorkloadSelector>, keyType: String = "p256") {
        self.agent = agent; self.selectors = selectors; self.keyType = keyType
    }

    /// Whether a workload with `selectors` matches: every selector of the entry is among them.
    public func matches(_ workload: Set<WorkloadSelector>) -> Bool { selectors.isSubset(of: workload) }
}

/// The attester's registration entries, read from a YAML (or JSON) document:
///
///     entries:
///       - agent: payments
///         selectors: [unix:uid:1001, unix:path:/opt/payments/bin/agent]
///       - agent: reports
///         selectors: [unix:user:reports]
///         keyType: p384
///
/// Checks, in order: the top level is a mapping with `entries` only; each entry a mapping of
/// `agent` (1-64 of [A-Za-z0-9._-], unique), `selectors` (1-16, each `unix:KIND:VALUE`) and
/// optional `keyType` (`p256`, `p384`); nothing else. Errors name `file:line:column`.
public struct WorkloadEntries: Sendable, Equatable {
    public var entries: [WorkloadEntry]

    public init(entries: [WorkloadEntry]) { self.entries = entries }

    public init(document root: ConfigNode) throws {
        func fail(_ node: ConfigNode, _ message: String) -> VouchError {
            VouchError(.workloadEntriesInvalid, "\(node.mark): \(message)", context: ["file": node.mark.file, "line": "\(node.mark.line)"])
        }
        func mapping(_ node: ConfigNode, allowed: Set<String>) throws -> [String: ConfigNode] {
            guard case let .mapping(pairs) = node.value else { throw fail(node, "expected a mapping") }
            var out: [String: ConfigNode] = [:]
            for (k, v) in pairs {
                guard let key = k.scalar, allowed.contains(key) else { throw fail(k, "unknown key (allowed: \(allowed.sorted().joined(separator: ", ")))") }
                guard out[key] == nil else { throw fail(k, "duplicate key \(key)") }
                out[key] = v
            }
            return out
        }
        let top = try mapping(root, allowed: ["entries"])
        guard let list = top["entries"], case let .sequence(items) = list.value else { throw fail(root, "entries must be a list") }
        guard items.count <= 1024 else { throw fail(list, "at most 1024 entries") }
        var seen: Set<String> = []
        var entries: [WorkloadEntry] = []
        for item in items {
            let m = try mapping(item, allowed: ["agent", "selectors", "keyType"])
            guard let agentNode = m["agent"], let agent = agentNode.scalar else { throw fail(item, "an entry needs agent: NAME") }
            guard (1...64).contains(agent.count), agent.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "._-".unicodeScalars.contains($0)) }) else {
                throw fail(agentNode, "agent is 1-64 of A-Z a-z 0-9 . _ -")
            }
            guard seen.insert(agent).inserted else { throw fail(agentNode, "agent \(agent) has another entry") }
            guard let selNode = m["selectors"], case let .sequence(sels) = selNode.value, (1...16).contains(sels.count) else {
                throw fail(item, "an entry needs selectors: a list of 1-16 unix:KIND:VALUE")
            }
            var selectors: Set<WorkloadSelector> = []
            for s in sels {
                guard let text = s.scalar else { throw fail(s, "a selector is a string") }
                do { selectors.insert(try WorkloadSelector(parsing: text)) } catch let e as VouchError { throw fail(s, e.message) }
            }
            let keyType = m["keyType"]?.scalar ?? "p256"
            guard ["p256", "p384"].contains(keyType) else { throw fail(m["keyType"]!, "keyType is p256 or p384") }
            entries.append(WorkloadEntry(agent: agent, selectors: selectors, keyType: keyType))
        }
        self.entries = entries
    }

    /// The entries a workload matches, in file order (the first is its default identity).
    public func matching(_ workload: Set<WorkloadSelector>) -> [WorkloadEntry] { entries.filter { $0.matches(workload) } }
}

extension ErrorCode {
    /// `vouch-attester --workload-entries FILE`: the file does not read as registration entries.
    public static let workloadEntriesInvalid = ErrorCode("workload_entries_invalid", status: 400)
}
