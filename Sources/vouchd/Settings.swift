import Foundation
import VouchCore
import VouchRuntime
import VouchYAML

/// vouchd's settings from three layers, later ones winning: the configuration file (`--config`,
/// YAML or JSON, keys are the option names), environment variables (`VOUCHD_` + the option name
/// in upper case with `_` for `-`, e.g. VOUCHD_DATA_DIR), then command-line options. Every
/// layer is validated the same way: unknown keys, wrong types and empty values are errors naming
/// where they came from (file:line:column, variable, or option).
struct Settings {
    private(set) var values: [String: String] = [:]
    private(set) var flags: Set<String> = []
    /// Where each value came from, for error messages.
    private(set) var origin: [String: String] = [:]

    init(options: Set<String>, flags allowedFlags: Set<String>, arguments: Arguments, environment: [String: String]) throws {
        if let path = arguments["config"] {
            try loadFile(path, options: options, flags: allowedFlags)
        }
        for (key, value) in environment where key.hasPrefix("VOUCHD_") {
            let name = key.dropFirst("VOUCHD_".count).lowercased().replacingOccurrences(of: "_", with: "-")
            if allowedFlags.contains(name) {
                try setFlag(name, value, from: key)
            } else if options.contains(name), name != "config" {
                guard !value.isEmpty else { throw VouchError(.config, "\(key) is empty", context: ["field": key]) }
                values[name] = value
                origin[name] = key
            } else {
                throw VouchError(.config, "\(key) names no vouchd option", context: ["field": key])
            }
        }
        for (name, value) in arguments.values where name != "config" {
            values[name] = value
            origin[name] = "--\(name)"
        }
        for flag in allowedFlags where arguments.has(flag) {
            flags.insert(flag)
            origin[flag] = "--\(flag)"
        }
    }

    private mutating func setFlag(_ name: String, _ value: String, from: String) throws {
        switch value.lowercased() {
        case "true", "yes", "1": flags.insert(name)
        case "false", "no", "0": flags.remove(name)
        default: throw VouchError(.config, "\(from) must be true or false", context: ["field": from, "got": String(value.prefix(32))])
        }
        origin[name] = from
    }

    private mutating func loadFile(_ path: String, options: Set<String>, flags allowedFlags: Set<String>) throws {
        let root = try YAMLParser.parse(try Files.read(path), file: path)
        guard case let .mapping(pairs) = root.value else {
            throw VouchError(.config, "\(root.mark): the configuration must be a mapping of option names to values", context: ["path": path])
        }
        var seen: Set<String> = []
        for (keyNode, valueNode) in pairs {
            guard let key = keyNode.scalar else { throw VouchError(.config, "\(keyNode.mark): keys must be option names", context: ["path": path]) }
            guard seen.insert(key).inserted else { throw VouchError(.config, "\(keyNode.mark): \(key) is given twice", context: ["field": key]) }
            let at = "\(valueNode.mark)"
            if allowedFlags.contains(key) {
                guard let v = valueNode.scalar else { throw VouchError(.config, "\(at): \(key) must be true or false", context: ["field": key]) }
                try setFlag(key, v, from: at)
            } else if options.contains(key), key != "config" {
                switch valueNode.value {
                case let .scalar(s) where !s.isEmpty:
                    values[key] = s
                case let .sequence(items) where !items.isEmpty:
                    let strings = items.compactMap(\.scalar)
                    guard strings.count == items.count, !strings.contains(where: { $0.isEmpty || $0.contains(",") }) else {
                        throw VouchError(.config, "\(at): \(key) must be a list of non-empty strings without commas", context: ["field": key])
                    }
                    values[key] = strings.joined(separator: ",")
                default:
                    throw VouchError(.config, "\(at): \(key) must be a value (or a list of values)", context: ["field": key])
                }
                origin[key] = at
            } else {
                let known = (options.subtracting(["config"]).union(allowedFlags)).sorted().joined(separator: ", ")
                throw VouchError(.config, "\(keyNode.mark): unknown key \(key) (known: \(known))", context: ["field": key])
            }
        }
    }

    subscript(_ name: String) -> String? { values[name] }
    func has(_ flag: String) -> Bool { flags.contains(flag) }
    func required(_ name: String) throws -> String {
        guard let v = values[name], !v.isEmpty else {
            throw VouchError(.usage, "\(name) is required (--\(name), VOUCHD_\(name.uppercased().replacingOccurrences(of: "-", with: "_")), or the config file)")
        }
        return v
    }
    /// Where `name` was set, for error messages ("--port", "VOUCHD_PORT", "file:3:7").
    func source(_ name: String) -> String { origin[name] ?? "--\(name)" }
}
