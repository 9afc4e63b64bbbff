extension ErrorCode {
    /// A command line the program cannot run: unknown or missing options, values of the wrong
    /// form. The command-line tools exit 2 on it; the API never answers it (the status is the one
    /// a request this malformed would get).
    public static let usage = ErrorCode("usage", status: 400)
}

/// A small command-line parser: `--name value` options and `--flag` switches, nothing positional
/// unless asked for. Unknown or repeated options are usage errors.
public struct Arguments {
    /// Whether the words ask for help (`-h`, `--help`) rather than for work: the tools answer
    /// them before parsing anything else, so help never fails on the other words.
    public static func asksForHelp(_ args: [String]) -> Bool { args.contains("-h") || args.contains("--help") }
    /// Whether the words ask for the version (`--version`).
    public static func asksForVersion(_ args: [String]) -> Bool { args.contains("--version") }

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
                    guard i + 1 < args.count else { throw VouchError(.usage, "option --\(name) needs a value") }
                    guard values[name] == nil else { throw VouchError(.usage, "option --\(name) is given twice") }
                    values[name] = args[i + 1]
                    i += 1
                } else {
                    throw VouchError(.usage, "unknown option \(a)")
                }
            } else {
                guard positional.count < allowPositional else { throw VouchError(.usage, "unexpected argument \(a)") }
                positional.append(a)
            }
            i += 1
        }
    }

    public subscript(_ name: String) -> String? { values[name] }

    public func required(_ name: String) throws -> String {
        guard let v = values[name], !v.isEmpty else { throw VouchError(.usage, "option --\(name) is required") }
        return v
    }

    public func has(_ flag: String) -> Bool { flags.contains(flag) }
}
