internal import CYAML
import VouchCore

/// Parses one YAML (or JSON) document into a `ConfigNode` tree with source marks, using libyaml.
/// Anchors/aliases, multiple documents, documents over 1 MiB and nesting over 64 levels are refused.
public enum YAMLParser {
    public static let maxBytes = 1 << 20
    public static let maxDepth = 64

    public static func parse(_ bytes: [UInt8], file: String) throws -> ConfigNode {
        guard bytes.count <= maxBytes else {
            throw VouchError(.yaml, "\(file): document is larger than 1 MiB", context: ["file": file, "got": "\(bytes.count)"])
        }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { throw VouchError(.yaml, "yaml_parser_initialize failed") }
        defer { yaml_parser_delete(&parser) }
        return try bytes.withUnsafeBufferPointer { buf in
            yaml_parser_set_input_string(&parser, buf.baseAddress, buf.count)
            return try Builder(file: file).run(&parser)
        }
    }

    private final class Builder {
        let file: String
        enum Frame { case sequence(SourceMark, [ConfigNode]), mapping(SourceMark, [ConfigNode]) }
        var stack: [Frame] = []
        var root: ConfigNode?
        var documents = 0

        init(file: String) { self.file = file }

        func mark(_ m: yaml_mark_t) -> SourceMark { SourceMark(file: file, line: Int(m.line) + 1, column: Int(m.column) + 1) }

        func fail(_ message: String, _ m: SourceMark) -> VouchError {
            VouchError(.yaml, "\(m): \(message)", context: ["file": m.file, "line": "\(m.line)", "column": "\(m.column)"])
        }

        func add(_ node: ConfigNode) {
            guard let top = stack.popLast() else { root = node; return }
            switch top {
            case let .sequence(m, items): stack.append(.sequence(m, items + [node]))
            case let .mapping(m, items): stack.append(.mapping(m, items + [node]))
            }
        }

        func run(_ parser: inout yaml_parser_t) throws -> ConfigNode {
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else {
                    let problem = parser.problem.map { String(cString: $0) } ?? "syntax error"
                    throw fail(problem, mark(parser.problem_mark))
                }
                defer { yaml_event_delete(&event) }
                let m = mark(event.start_mark)
                switch event.type {
                case YAML_STREAM_END_EVENT:
                    guard let root else { throw fail("document is empty", m) }
                    return root
                case YAML_DOCUMENT_START_EVENT:
                    documents += 1
                    if documents > 1 { throw fail("only one document is allowed", m) }
                case YAML_ALIAS_EVENT:
                    throw fail("anchors and aliases are not allowed", m)
                case YAML_SCALAR_EVENT:
                    let s = event.data.scalar
                    let text = String(decoding: UnsafeBufferPointer(start: s.value, count: s.length), as: UTF8.self)
                    let plain = s.style == YAML_PLAIN_SCALAR_STYLE
                    let isNull = plain && ["", "~", "null", "Null", "NULL"].contains(text)
                    add(ConfigNode(isNull ? .null : .scalar(text), mark: m))
                case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
                    guard stack.count < YAMLParser.maxDepth else { throw fail("nesting is deeper than \(YAMLParser.maxDepth)", m) }
                    stack.append(event.type == YAML_SEQUENCE_START_EVENT ? .sequence(m, []) : .mapping(m, []))
                case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
                    guard let top = stack.popLast() else { throw fail("unbalanced document", m) }
                    switch top {
                    case let .sequence(sm, items):
                        add(ConfigNode(.sequence(items), mark: sm))
                    case let .mapping(mm, items):
                        var pairs: [(key: ConfigNode, value: ConfigNode)] = []
                        var i = 0
                        while i + 1 < items.count { pairs.append((items[i], items[i + 1])); i += 2 }
                        add(ConfigNode(.mapping(pairs), mark: mm))
                    }
                default:
                    break
                }
            }
        }
    }
}
