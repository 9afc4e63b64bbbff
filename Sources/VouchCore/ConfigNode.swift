/// A parsed configuration document (YAML or JSON) with source positions, so that every
/// validation error can name `file:line:column`.
public indirect enum ConfigValue: Sendable, Equatable {
    case scalar(String)
    case sequence([ConfigNode])
    case mapping([(key: ConfigNode, value: ConfigNode)])
    case null

    public static func == (a: ConfigValue, b: ConfigValue) -> Bool {
        switch (a, b) {
        case let (.scalar(x), .scalar(y)): return x == y
        case let (.sequence(x), .sequence(y)): return x == y
        case let (.mapping(x), .mapping(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        case (.null, .null): return true
        default: return false
        }
    }
}

public struct SourceMark: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) { self.file = file; self.line = line; self.column = column }
    public var description: String { "\(file):\(line):\(column)" }
}

public struct ConfigNode: Sendable, Equatable {
    public var value: ConfigValue
    public var mark: SourceMark
    public init(_ value: ConfigValue, mark: SourceMark) { self.value = value; self.mark = mark }

    public var scalar: String? { if case let .scalar(s) = value { return s }; return nil }
}
