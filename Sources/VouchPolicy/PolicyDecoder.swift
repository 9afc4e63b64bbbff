import Foundation
import VouchCore
import VouchTPMWire

/// Decodes a policy from a parsed YAML/JSON document. Unknown keys, wrong types and bad values
/// reject the whole document with `file:line:column`, the key path and a message.
public enum PolicyDecoder {
    public static func decode(_ root: ConfigNode, sha256: String) throws -> Policy {
        let top = try Mapping(root, path: "")
        try top.allowOnly(["apiVersion", "name", "version", "description", "attestationKey", "pcrs", "certificate", "clock", "model"])
        let api = try top.requiredString("apiVersion")
        guard api.value == "vouch/v1" else { throw invalid(api.node, "apiVersion", "must be vouch/v1") }
        let name = try top.requiredString("name")
        guard name.value.range(of: "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", options: .regularExpression) != nil else {
            throw invalid(name.node, "name", "must be 1-63 letters, digits, '.', '_' or '-'")
        }
        let versionNode = try top.required("version")
        guard let version = versionNode.scalar.flatMap(Int.init), version >= 1 else {
            throw invalid(versionNode, "version", "must be a positive integer")
        }
        let description = try top.optionalString("description")?.value ?? ""

        var akAlgorithms = KeyTemplates.AKKind.allCases
        if let akNode = top.optional("attestationKey") {
            let ak = try Mapping(akNode, path: "attestationKey")
            try ak.allowOnly(["algorithms"])
            if let algs = ak.optional("algorithms") {
                akAlgorithms = try sequence(algs, path: "attestationKey.algorithms").map { n in
                    guard let s = n.scalar, let k = KeyTemplates.AKKind(rawValue: s) else {
                        throw invalid(n, "attestationKey.algorithms", "must be one of \(KeyTemplates.AKKind.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    return k
                }
                guard !akAlgorithms.isEmpty else { throw invalid(algs, "attestationKey.algorithms", "must not be empty") }
            }
        }

        let pcrs = try Mapping(try top.required("pcrs"), path: "pcrs")
        try pcrs.allowOnly(["bank", "values"])
        let bankNode = try pcrs.required("bank")
        guard let bankName = bankNode.scalar, let bank = HashAlg(rawValue: bankName) else {
            throw invalid(bankNode, "pcrs.bank", "must be one of sha1, sha256, sha384, sha512")
        }
        let valuesNode = try pcrs.required("values")
        let values = try Mapping(valuesNode, path: "pcrs.values")
        var pcrValues: [Int: [[UInt8]]] = [:]
        for (k, v) in values.entries {
            guard let s = k.scalar, let index = Int(s), (0...PCRSelection.maxPCR).contains(index) else {
                throw invalid(k, "pcrs.values", "keys must be PCR indices 0-23")
            }
            guard pcrValues[index] == nil else { throw invalid(k, "pcrs.values.\(index)", "is given twice") }
            let list = try sequence(v, path: "pcrs.values.\(index)")
            guard !list.isEmpty else { throw invalid(v, "pcrs.values.\(index)", "must list at least one digest") }
            pcrValues[index] = try list.map { d in
                guard let hex = d.scalar, let bytes = try? Hex.decode(hex), bytes.count == bank.digestSize else {
                    throw invalid(d, "pcrs.values.\(index)", "each entry must be a \(bank.digestSize)-byte \(bank.rawValue) digest in hex")
                }
                return bytes
            }
        }
        guard !pcrValues.isEmpty else { throw invalid(valuesNode, "pcrs.values", "must constrain at least one PCR") }

        var ttl: TimeInterval = 15 * 60
        if let certNode = top.optional("certificate") {
            let cert = try Mapping(certNode, path: "certificate")
            try cert.allowOnly(["ttl"])
            if let t = cert.optional("ttl") {
                guard let s = t.scalar, let seconds = try? parseDuration(s, field: "certificate.ttl"), seconds >= 60, seconds <= 86400 else {
                    throw invalid(t, "certificate.ttl", "must be a duration from 1m to 24h, such as 15m")
                }
                ttl = seconds
            }
        }
        var requireSafe = false
        if let clockNode = top.optional("clock") {
            let clock = try Mapping(clockNode, path: "clock")
            try clock.allowOnly(["requireSafe"])
            if let r = clock.optional("requireSafe") {
                guard let s = r.scalar, ["true", "false"].contains(s) else { throw invalid(r, "clock.requireSafe", "must be true or false") }
                requireSafe = s == "true"
            }
        }
        var policy = Policy(name: name.value, version: version, description: description, akAlgorithms: akAlgorithms,
                            pcrBank: bank, pcrValues: pcrValues, certificateTTL: ttl, sha256: sha256)
        policy.requireSafeClock = requireSafe
        if let modelNode = top.optional("model") {
            policy.model = try decodeModel(modelNode)
        }
        return policy
    }

    static func manifestDigest(_ node: ConfigNode, _ path: String) throws -> String {
        guard let s = node.scalar, s.range(of: "^[0-9a-f]{64}$", options: .regularExpression) != nil else {
            throw invalid(node, path, "must be a SHA-256 manifest digest: 64 lowercase hex digits")
        }
        return s
    }

    static func decodeModel(_ node: ConfigNode) throws -> Policy.ModelRules {
        let m = try Mapping(node, path: "model")
        try m.allowOnly(["required", "allowed", "denied"])
        var rules = Policy.ModelRules()
        if let r = m.optional("required") {
            guard let s = r.scalar, ["true", "false"].contains(s) else { throw invalid(r, "model.required", "must be true or false") }
            rules.required = s == "true"
        }
        if let a = m.optional("allowed") {
            rules.allowed = try sequence(a, path: "model.allowed").enumerated().map { i, entry in
                let e = try Mapping(entry, path: "model.allowed[\(i)]")
                try e.allowOnly(["name", "manifest"])
                let name = try e.requiredString("name").value
                return (name, try manifestDigest(try e.required("manifest"), "model.allowed[\(i)].manifest"))
            }
        }
        if let d = m.optional("denied") {
            rules.denied = try sequence(d, path: "model.denied").map { try manifestDigest($0, "model.denied") }
        }
        return rules
    }

    static func invalid(_ node: ConfigNode, _ path: String, _ message: String) -> VouchError {
        VouchError(.policyInvalid, "\(node.mark): \(path) \(message)",
                   context: ["file": node.mark.file, "line": "\(node.mark.line)", "column": "\(node.mark.column)", "path": path])
    }

    static func sequence(_ node: ConfigNode, path: String) throws -> [ConfigNode] {
        guard case let .sequence(items) = node.value else { throw invalid(node, path, "must be a list") }
        return items
    }

    struct Mapping {
        let node: ConfigNode
        let path: String
        let entries: [(key: ConfigNode, value: ConfigNode)]

        init(_ node: ConfigNode, path: String) throws {
            guard case let .mapping(entries) = node.value else {
                throw PolicyDecoder.invalid(node, path.isEmpty ? "document" : path, "must be a mapping")
            }
            self.node = node
            self.path = path
            self.entries = entries
            var seen = Set<String>()
            for (k, _) in entries {
                guard let s = k.scalar else { throw PolicyDecoder.invalid(k, path, "keys must be scalars") }
                guard seen.insert(s).inserted else { throw PolicyDecoder.invalid(k, child(s), "is given twice") }
            }
        }

        func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

        func allowOnly(_ keys: Set<String>) throws {
            for (k, _) in entries where !keys.contains(k.scalar ?? "") {
                throw PolicyDecoder.invalid(k, child(k.scalar ?? "?"), "is not a known key (allowed: \(keys.sorted().joined(separator: ", ")))")
            }
        }

        func optional(_ key: String) -> ConfigNode? {
            entries.first { $0.key.scalar == key }?.value
        }

        func required(_ key: String) throws -> ConfigNode {
            guard let v = optional(key) else { throw PolicyDecoder.invalid(node, child(key), "is required") }
            return v
        }

        func requiredString(_ key: String) throws -> (value: String, node: ConfigNode) {
            let v = try required(key)
            guard let s = v.scalar, !s.isEmpty else { throw PolicyDecoder.invalid(v, child(key), "must be a non-empty string") }
            return (s, v)
        }

        func optionalString(_ key: String) throws -> (value: String, node: ConfigNode)? {
            guard let v = optional(key) else { return nil }
            guard let s = v.scalar else { throw PolicyDecoder.invalid(v, child(key), "must be a string") }
            return (s, v)
        }
    }
}
