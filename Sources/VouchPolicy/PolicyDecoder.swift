import Foundation
import VouchCore
import VouchTPMWire

/// Decodes a policy from a parsed YAML/JSON document. Unknown keys, wrong types, bad values and
/// duplicate keys reject the whole document with `file:line:column`, the key path and a message
/// (code `policy_invalid`, context `file`, `line`, `column`, `path`).
public enum PolicyDecoder {
    /// `modelMaterial` checks the trust material of `model.publishers` (keys, certificates, Sigstore
    /// trusted roots) where this pure target cannot parse it; VouchPolicyFiles passes one that does.
    public static func decode(_ root: ConfigNode, sha256: String, file: String? = nil,
                              modelMaterial: ModelPublisher.MaterialCheck? = nil) throws -> Policy {
        let top = try Mapping(root, path: "")
        try top.allowOnly(["apiVersion", "name", "version", "description", "priority", "match", "attestationKey", "pcrs",
                           "eventLog", "model", "freshness", "clock", "tpm", "certificate", "reattestation", "snp", "tdx", "nitro",
                           "devices"])
        let api = try top.requiredString("apiVersion")
        guard api.value == "vouch/v1" else { throw invalid(api.node, "apiVersion", "must be vouch/v1") }
        let name = try top.requiredString("name")
        guard name.value.range(of: "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", options: .regularExpression) != nil else {
            throw invalid(name.node, "name", "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
        }
        let version = try integer(try top.required("version"), "version", 1...Int(Int32.max))

        // `pcrs` is a TPM host's; a policy with an `snp:` or `tdx:` section may leave it out, and
        // then covers no TPM host (`Policy.isTEEOnly`).
        var bank = HashAlg.sha256
        var pcrValues: [Int: [[UInt8]]] = [:]
        if let pcrsNode = top.optional("pcrs") {
            let pcrs = try Mapping(pcrsNode, path: "pcrs")
            try pcrs.allowOnly(["bank", "values"])
            let bankNode = try pcrs.required("bank")
            guard let bankName = bankNode.scalar, let b = HashAlg(rawValue: bankName) else {
                throw invalid(bankNode, "pcrs.bank", "must be one of sha1, sha256, sha384, sha512")
            }
            bank = b
            let valuesNode = try pcrs.required("values")
            for (k, v) in try Mapping(valuesNode, path: "pcrs.values").entries {
                guard let s = k.scalar, let index = Int(s), (0...PCRSelection.maxPCR).contains(index) else {
                    throw invalid(k, "pcrs.values", "keys must be PCR indices 0-23")
                }
                let list = try sequence(v, path: "pcrs.values.\(index)")
                guard !list.isEmpty else { throw invalid(v, "pcrs.values.\(index)", "must list at least one digest") }
                pcrValues[index] = try list.map { try Hex.decode(digest($0, "pcrs.values.\(index)", bytes: bank.digestSize, alg: bank.rawValue)) }
            }
            guard !pcrValues.isEmpty else { throw invalid(valuesNode, "pcrs.values", "must constrain at least one PCR") }
        } else if top.optional("snp") == nil && top.optional("tdx") == nil {
            throw invalid(root, "pcrs", "is required (a policy for confidential VMs only leaves it out and has an snp: or tdx: section)")
        }

        var p = Policy(name: name.value, version: version, pcrBank: bank, pcrValues: pcrValues)
        p.sha256 = sha256
        p.file = file ?? root.mark.file
        p.description = try top.optionalString("description")?.value ?? ""
        if let n = top.optional("priority") { p.priority = try integer(n, "priority", -1_000_000...1_000_000) }

        if let node = top.optional("match") {
            let m = try Mapping(node, path: "match")
            try m.allowOnly(["labels", "ekIssuer"])
            if let l = m.optional("labels") {
                for (k, v) in try Mapping(l, path: "match.labels").entries {
                    let key = k.scalar ?? ""
                    guard key.range(of: Policy.labelPattern, options: .regularExpression) != nil else {
                        throw invalid(k, "match.labels", "label names are 1-63 of a-z, 0-9, '.', '_', '-', '/'")
                    }
                    guard let value = v.scalar, value.count <= 253 else { throw invalid(v, "match.labels.\(key)", "must be a string") }
                    p.match.labels[key] = value
                }
            }
            if let e = try m.optionalString("ekIssuer") { p.match.ekIssuer = e.value }
        }

        if let node = top.optional("attestationKey") {
            let ak = try Mapping(node, path: "attestationKey")
            try ak.allowOnly(["algorithms", "trust", "allowSHA1"])
            if let a = ak.optional("allowSHA1") { p.allowSHA1AK = try bool(a, "attestationKey.allowSHA1") }
            if let algs = ak.optional("algorithms") {
                p.akAlgorithms = try sequence(algs, path: "attestationKey.algorithms").map { n in
                    guard let s = n.scalar, let k = KeyTemplates.AKKind(rawValue: s) else {
                        throw invalid(n, "attestationKey.algorithms", "must be one of \(KeyTemplates.AKKind.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    return k
                }
                guard !p.akAlgorithms.isEmpty else { throw invalid(algs, "attestationKey.algorithms", "must not be empty") }
            }
            if let t = ak.optional("trust") {
                guard t.scalar == "activation" else {
                    throw invalid(t, "attestationKey.trust", "must be activation (credential activation against a certified EK)")
                }
            }
        }

        if let node = top.optional("eventLog") {
            let e = try Mapping(node, path: "eventLog")
            try e.allowOnly(["required", "secureBoot", "bootApplications", "kernelCommandLine", "dbxContains"])
            if let r = e.optional("required") { p.eventLog.required = try bool(r, "eventLog.required") }
            if let s = e.optional("secureBoot") { p.eventLog.secureBoot = try bool(s, "eventLog.secureBoot") }
            if let b = e.optional("bootApplications") {
                let apps = try Mapping(b, path: "eventLog.bootApplications")
                try apps.allowOnly(["allowed", "denied"])
                if let a = apps.optional("allowed") { p.eventLog.bootApplicationsAllowed = try digests(a, "eventLog.bootApplications.allowed") }
                if let d = apps.optional("denied") { p.eventLog.bootApplicationsDenied = try digests(d, "eventLog.bootApplications.denied") }
            }
            if let k = e.optional("kernelCommandLine") {
                let cmd = try Mapping(k, path: "eventLog.kernelCommandLine")
                try cmd.allowOnly(["required", "forbidden"])
                if let r = cmd.optional("required") { p.eventLog.kernelCmdlineRequired = try tokens(r, "eventLog.kernelCommandLine.required") }
                if let f = cmd.optional("forbidden") { p.eventLog.kernelCmdlineForbidden = try tokens(f, "eventLog.kernelCommandLine.forbidden") }
            }
            if let d = e.optional("dbxContains") { p.eventLog.dbxMustContain = try digests(d, "eventLog.dbxContains") }
        }

        if let node = top.optional("model") {
            let m = try Mapping(node, path: "model")
            try m.allowOnly(["required", "allowed", "denied", "publishers"])
            if let r = m.optional("required") { p.model.required = try bool(r, "model.required") }
            if let a = m.optional("allowed") {
                p.model.allowed = try sequence(a, path: "model.allowed").enumerated().map { i, entry in
                    let e = try Mapping(entry, path: "model.allowed[\(i)]")
                    try e.allowOnly(["name", "manifest"])
                    return Policy.ModelRules.Allowed(name: try e.requiredString("name").value,
                                                     manifest: try digest(try e.required("manifest"), "model.allowed[\(i)].manifest"))
                }
            }
            if let d = m.optional("denied") { p.model.denied = try digests(d, "model.denied") }
            if let l = m.optional("publishers") { p.model.publishers = try ModelPublisher.decodeList(l, path: "model.publishers", check: modelMaterial) }
        }

        if let node = top.optional("freshness") {
            let f = try Mapping(node, path: "freshness")
            try f.allowOnly(["maxEvidenceAge"])
            if let a = f.optional("maxEvidenceAge") { p.maxEvidenceAge = try duration(a, "freshness.maxEvidenceAge", 1...86400) }
        }

        if let node = top.optional("clock") {
            let c = try Mapping(node, path: "clock")
            try c.allowOnly(["requireSafe"])
            if let r = c.optional("requireSafe") { p.requireSafeClock = try bool(r, "clock.requireSafe") }
        }

        if let node = top.optional("tpm") {
            let t = try Mapping(node, path: "tpm")
            try t.allowOnly(["allowFirmwareDowngrade", "minimumFirmwareVersion"])
            if let a = t.optional("allowFirmwareDowngrade") { p.allowFirmwareDowngrade = try bool(a, "tpm.allowFirmwareDowngrade") }
            if let m = t.optional("minimumFirmwareVersion") {
                // 64-bit and vendor-defined: written in hex, as `vouch quote verify` prints it.
                guard let s = m.scalar, (1...16).contains(s.count), s.allSatisfy(\.isHexDigit), s == s.lowercased(),
                      let v = UInt64(s, radix: 16) else {
                    throw invalid(m, "tpm.minimumFirmwareVersion", "must be 1-16 lowercase hex digits (TPMS_ATTEST.firmwareVersion)")
                }
                p.minimumFirmwareVersion = v
            }
        }

        if let node = top.optional("certificate") {
            let c = try Mapping(node, path: "certificate")
            try c.allowOnly(["ttl", "maxTTL", "spiffeIDTemplate", "agentKeyTypes"])
            if let m = c.optional("maxTTL") { p.certificate.maxTTL = try duration(m, "certificate.maxTTL", 60...7 * 86400) }
            if let t = c.optional("ttl") {
                p.certificate.ttl = try duration(t, "certificate.ttl", 60...86400)
                guard p.certificate.ttl <= p.certificate.maxTTL else { throw invalid(t, "certificate.ttl", "must not exceed certificate.maxTTL") }
            }
            if let s = c.optional("spiffeIDTemplate") {
                guard let t = s.scalar, t.hasPrefix("spiffe://{trustDomain}/"), t.contains("{agentName}"), t.count <= 2048,
                      Policy.templateIsWellFormed(t) else {
                    throw invalid(s, "certificate.spiffeIDTemplate",
                                  "must start with spiffe://{trustDomain}/, contain {agentName}, and use only {trustDomain}, {hostId}, {hostname}, {agentName}, {label:NAME} and the characters a-z A-Z 0-9 . - _ /")
                }
                p.certificate.spiffeIDTemplate = t
            }
            if let k = c.optional("agentKeyTypes") {
                p.certificate.agentKeyTypes = try sequence(k, path: "certificate.agentKeyTypes").map { n in
                    guard let s = n.scalar, Policy.allAgentKeyTypes.contains(s) else {
                        throw invalid(n, "certificate.agentKeyTypes", "must be one of \(Policy.allAgentKeyTypes.joined(separator: ", "))")
                    }
                    return s
                }
                guard !p.certificate.agentKeyTypes.isEmpty else { throw invalid(k, "certificate.agentKeyTypes", "must not be empty") }
            }
        }

        if let node = top.optional("reattestation") {
            let r = try Mapping(node, path: "reattestation")
            try r.allowOnly(["interval", "onFailure"])
            if let i = r.optional("interval") { p.reattestation.interval = try duration(i, "reattestation.interval", 10...86400) }
            if let f = r.optional("onFailure") {
                let of = try Mapping(f, path: "reattestation.onFailure")
                try of.allowOnly(["action", "afterFailures", "grace"])
                if let a = of.optional("action") {
                    guard let s = a.scalar, let action = Policy.Reattestation.Action(rawValue: s) else {
                        throw invalid(a, "reattestation.onFailure.action", "must be revoke or untrust")
                    }
                    p.reattestation.action = action
                }
                if let n = of.optional("afterFailures") { p.reattestation.afterFailures = try integer(n, "reattestation.onFailure.afterFailures", 1...100) }
                if let g = of.optional("grace") { p.reattestation.grace = try duration(g, "reattestation.onFailure.grace", 0...86400) }
            }
        }
        // CPU TEE evidence: what an SEV-SNP report or a TDX quote must show (docs/policy.md).
        if let node = top.optional("snp") { p.snp = try SNPPolicy.decode(node) }
        if let node = top.optional("tdx") { p.tdx = try TDXPolicy.decode(node) }
        if let node = top.optional("nitro") { p.nitro = try NitroPolicy.decode(node) }
        if let node = top.optional("devices") { p.devices = try DevicesPolicy.decode(node) }
        return p
    }

    // MARK: typed helpers (each throws policy_invalid naming the node's position and path)

    static func invalid(_ node: ConfigNode, _ path: String, _ message: String) -> VouchError {
        VouchError(.policyInvalid, "\(node.mark): \(path) \(message)",
                   context: ["file": node.mark.file, "line": "\(node.mark.line)", "column": "\(node.mark.column)", "path": path])
    }

    static func sequence(_ node: ConfigNode, path: String) throws -> [ConfigNode] {
        guard case let .sequence(items) = node.value else { throw invalid(node, path, "must be a list") }
        return items
    }

    static func bool(_ node: ConfigNode, _ path: String) throws -> Bool {
        guard let s = node.scalar, ["true", "false"].contains(s) else { throw invalid(node, path, "must be true or false") }
        return s == "true"
    }

    static func integer(_ node: ConfigNode, _ path: String, _ range: ClosedRange<Int>) throws -> Int {
        guard let s = node.scalar, let i = Int(s), range.contains(i) else {
            throw invalid(node, path, "must be an integer from \(range.lowerBound) to \(range.upperBound)")
        }
        return i
    }

    static func duration(_ node: ConfigNode, _ path: String, _ range: ClosedRange<TimeInterval>) throws -> TimeInterval {
        let text = node.scalar ?? ""
        let seconds: TimeInterval? = text == "0s" || text == "0" ? 0 : (try? parseDuration(text, field: path))
        guard let seconds, range.contains(seconds) else {
            throw invalid(node, path, "must be a duration from \(Int(range.lowerBound))s to \(Int(range.upperBound))s, such as 90s, 15m, 2h")
        }
        return seconds
    }

    static func digest(_ node: ConfigNode, _ path: String, bytes: Int = 32, alg: String = "SHA-256") throws -> String {
        guard let s = node.scalar, s.count == bytes * 2, s.range(of: "^[0-9a-f]+$", options: .regularExpression) != nil else {
            throw invalid(node, path, "each entry must be a \(bytes)-byte \(alg) digest in lowercase hex")
        }
        return s
    }

    static func digests(_ node: ConfigNode, _ path: String) throws -> [String] {
        try sequence(node, path: path).map { try digest($0, path) }
    }

    static func tokens(_ node: ConfigNode, _ path: String) throws -> [String] {
        try sequence(node, path: path).map { n in
            guard let s = n.scalar, !s.isEmpty, !s.contains(" ") else { throw invalid(n, path, "each entry must be one command-line token, such as ro or module.sig_enforce=1") }
            return s
        }
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

        func optional(_ key: String) -> ConfigNode? { entries.first { $0.key.scalar == key }?.value }

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

extension Policy {
    public static let labelPattern = "^[a-z0-9][a-z0-9._/-]{0,62}$"

    static func templateIsWellFormed(_ t: String) -> Bool {
        var rest = Substring(t.dropFirst("spiffe://".count))
        while let open = rest.firstIndex(of: "{") {
            guard rest[..<open].allSatisfy(isSpiffeChar), let close = rest[open...].firstIndex(of: "}") else { return false }
            let token = String(rest[open...close])
            guard templatePlaceholders.contains(token) ||
                  (token.hasPrefix("{label:") && String(token.dropFirst(7).dropLast()).range(of: labelPattern, options: .regularExpression) != nil) else { return false }
            rest = rest[rest.index(after: close)...]
        }
        return rest.allSatisfy(isSpiffeChar)
    }

    static func isSpiffeChar(_ c: Character) -> Bool {
        c.isASCII && (c.isLetter || c.isNumber || "._-/".contains(c))
    }

    /// A SPIFFE ID as the SPIFFE ID specification allows it (`SPIFFEID.isValid`).
    public static func isValidSpiffeID(_ id: String) -> Bool { SPIFFEID.isValid(id) }

    /// Expands the SPIFFE ID template. Returns nil when a referenced label is missing or a value
    /// would put characters outside a SPIFFE path segment into the ID.
    public func spiffeID(trustDomain: String, hostID: String, hostname: String, agentName: String, labels: [String: String]) -> String? {
        var out = certificate.spiffeIDTemplate
        for (k, v) in [("{trustDomain}", trustDomain), ("{hostId}", hostID), ("{hostname}", hostname), ("{agentName}", agentName)] {
            guard !out.contains(k) || (!v.isEmpty && v.allSatisfy(Policy.isSpiffeChar) && !v.contains("/")) || k == "{trustDomain}" else { return nil }
            out = out.replacingOccurrences(of: k, with: v)
        }
        while let r = out.range(of: "{label:") {
            guard let end = out[r.upperBound...].firstIndex(of: "}") else { return nil }
            let key = String(out[r.upperBound..<end])
            guard let value = labels[key], !value.isEmpty, value.allSatisfy(Policy.isSpiffeChar), !value.contains("/") else { return nil }
            out.replaceSubrange(r.lowerBound...end, with: value)
        }
        return Policy.isValidSpiffeID(out) ? out : nil
    }
}
