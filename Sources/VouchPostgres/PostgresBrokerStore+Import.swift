import Foundation
import VouchCore
import VouchModel

// The PostgreSQL store's side of `vouch store copy`: a SQLite broker's rows written into an empty
// database, and read back to be verified, in one transaction.

extension PostgresBrokerStore {
    /// Copies every row of `source` into this database, which must be empty, in one write
    /// transaction (the writer's: it holds the advisory lock, so no replica writes meanwhile):
    ///
    /// 1. refuses (`conflict`) unless every copied table is empty — a copy never merges;
    /// 2. inserts the source's rows table by table, in dependency order, with prepared
    ///    multi-row INSERTs (bytes as binary `bytea`, times as doubles), counting and digesting
    ///    them as they are read (`StoreCopyTally`);
    /// 3. moves each serial's sequence past the largest id the source gave out, so the next
    ///    decision, event or outbox row gets a new id (never one a sequenced outbox row had);
    /// 4. reads every table back in primary-key order and refuses unless each has as many rows
    ///    with the same digest as the source's.
    ///
    /// Any failure rolls everything back. Returns the source's count and digest per table.
    /// `sha256` is VouchCrypto's (this module does no cryptography).
    public func importCopy(from source: any StoreCopySource, sha256: @escaping @Sendable ([UInt8]) -> [UInt8],
                           chunkSize: Int = StoreCopy.chunkSize) throws -> [TableTally] {
        let size = max(1, chunkSize)
        return try write { c in
            for table in StoreCopy.tables {
                guard try c.query("SELECT EXISTS (SELECT 1 FROM \(table.name))", [], { $0.text(0) == "t" }).first == false else {
                    throw VouchError(.conflict, "the destination database is not empty", context: ["table": table.name])
                }
            }
            // Doubles are read back exactly (the shortest text that round-trips), whatever the
            // server's default.
            try c.exec("SET LOCAL extra_float_digits = 3")
            var copied = StoreCopyTally(sha256: sha256)
            let serials = try source.exportRows(chunkSize: size) { table, rows in
                copied.add(table, rows)
                try Self.insert(c, table, rows)
            }
            for table in StoreCopy.tables {
                guard let serial = table.serial else { continue }
                try Self.moveSequence(c, table.name, serial, past: serials[table.name] ?? 0)
            }
            var readBack = StoreCopyTally(sha256: sha256)
            for table in StoreCopy.tables {
                try Self.readRows(c, table, size) { readBack.add(table, $0) }
            }
            try copied.verify(against: readBack)
            return copied.tables
        }
    }

    /// PostgreSQL's limit on the parameters of one statement.
    static let maxParameters = 65535

    /// Inserts `rows` with as few statements as the parameter limit allows; each parameter is
    /// cast to its column's type, so that every row of a multi-row VALUES list binds alike.
    static func insert(_ c: PGConnection, _ table: CopiedTable, _ rows: [[StoredValue]]) throws {
        let width = table.columns.count
        let perStatement = max(1, maxParameters / width)
        var start = 0
        while start < rows.count {
            let batch = rows[start..<min(rows.count, start + perStatement)]
            let tuples = (0..<batch.count).map { r in
                "(" + table.columns.enumerated().map { "$\(r * width + $0.offset + 1)::\(sqlType($0.element.type))" }.joined(separator: ",") + ")"
            }
            try c.run("INSERT INTO \(table.name) (\(table.columnList)) VALUES \(tuples.joined(separator: ", "))",
                      batch.flatMap { $0.map(PGValue.init) })
            start += batch.count
        }
    }

    /// The type a parameter is cast to (an integer column takes a bigint by assignment).
    static func sqlType(_ type: StoredColumnType) -> String {
        switch type {
        case .integer: "bigint"
        case .real: "double precision"
        case .text: "text"
        case .bytes: "bytea"
        }
    }

    /// Sets the sequence behind `table.column` so that its next value is above both the largest
    /// id copied and `highest` (the source's own high-water mark); an unused serial stays as it is.
    static func moveSequence(_ c: PGConnection, _ table: String, _ column: String, past highest: Int64) throws {
        let copied = try c.query("SELECT COALESCE(MAX(\(column)), 0) FROM \(table)") { $0.int(0) }.first ?? 0
        let value = max(copied, highest)
        guard value > 0 else { return }
        try c.run("SELECT setval(pg_get_serial_sequence($1, $2), $3::bigint)", [.text(table), .text(column), .int(value)])
    }

    /// Reads `table` in primary-key order, `size` rows at a time (keyset pagination), as the
    /// source read it: text keys compare by their bytes (`COLLATE "C"`, SQLite's BINARY), not by
    /// the database's locale.
    static func readRows(_ c: PGConnection, _ table: CopiedTable, _ size: Int, _ each: ([[StoredValue]]) -> Void) throws {
        let keys = table.keyColumns
        let order = keys.map { $0.type == .text ? "\($0.name) COLLATE \"C\"" : $0.name }.joined(separator: ", ")
        let marks = keys.indices.map { "$\($0 + 1)" }.joined(separator: ", ")
        let first = "SELECT \(table.columnList) FROM \(table.name) ORDER BY \(order) LIMIT $1"
        let next = "SELECT \(table.columnList) FROM \(table.name) WHERE (\(order)) > (\(marks)) ORDER BY \(order) LIMIT $\(keys.count + 1)"
        var after: [PGValue]?
        while true {
            let rows = try c.query(after == nil ? first : next, (after ?? []) + [.int(Int64(size))]) { r in
                try table.columns.enumerated().map { try r.stored(Int32($0.offset), $0.element.type, table: table.name, column: $0.element.name) }
            }
            guard let last = rows.last else { return }
            each(rows)
            if rows.count < size { return }
            after = table.keyPositions.map { PGValue(last[$0]) }
        }
    }
}

extension PGValue {
    init(_ value: StoredValue) {
        switch value {
        case .null: self = .null
        case let .int(x): self = .int(x)
        case let .real(x): self = .real(x)
        case let .text(s): self = .text(s)
        case let .bytes(b): self = .bytes(b)
        }
    }
}

extension PGRow {
    /// The column's value read as its column's type (text-format results).
    func stored(_ i: Int32, _ type: StoredColumnType, table: String, column: String) throws -> StoredValue {
        if isNull(i) { return .null }
        switch type {
        case .text: return .text(text(i))
        case .bytes: return .bytes(bytes(i))
        case .integer:
            if let x = Int64(text(i)) { return .int(x) }
        case .real:
            if let x = Double(text(i)) { return .real(x) }
        }
        throw VouchError(.database, "\(table).\(column) read back as \(text(i).prefix(40)), not \(type.rawValue)", context: ["table": table, "column": column])
    }
}
