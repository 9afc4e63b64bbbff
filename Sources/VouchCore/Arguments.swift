/// A small command-line parser: `--name value` options and `--flag` switches, nothing positional
/// unless asked for. Unknown or repeated options are usage errors.
public struct Arguments {
    public private(set) var values: [String: String] = [:]
    public private(set) var flags: Set<String> = []
    public private(set) var positional: [String] = []

    public init(_ args: [String], options: Set<String>, flags allowedFlags: Set<String> = [], positional allowPositional: Int = 0) throws {
        var i = 0
        while i < args.count {
            let a = args[i]
            if a.hasPrefix("--") {
                let name = String(a.dropFirst(2))
                if allowedFlags.contains(name) {
                    flags.insert(name)
                } else if options.contains(name) {
                    guard i + 1 < args.count else { throw VouchError(.badRequest, "option --\(name) needs a value") }
                    guard values[name] == nil else { throw VouchError(.badRequest, "option --\(name) is given twice") }
                    values[name] = args[i + 1]
                    i += 1
                } else {
                    throw VouchError(.badRequest, "unknown option \(a)")
                }
            } else {
                guard positional.count < allowPositional else { throw VouchError(.badRequest, "unexpected argument \(a)") }
                positional.append(a)
            }
            i += 1
        }
    }

    public subscript(_ name: String) -> String? { values[name] }

    public func required(_ name: String) throws -> String {
        guard let v = values[name], !v.isEmpty else { throw VouchError(.badRequest, "option --\(name) is required") }
        return v
    }

    public func has(_ flag: String) -> Bool { flags.contains(flag) }
}
