internal import CSQLite
import Foundation
import Synchronization
import VouchCore
import VouchModel

// The SQLite store's read-only export, for `vouch store copy` (moving a broker to PostgreSQL).

extension SQLiteBrokerStore {
    /// A stopped broker's database opened read-only, its rows read table by table as one
    /// snapshot (`StoreCopySource`). It never writes (no migration, no journal change: the
    /// connection is query-only), so it refuses a database at any schema version other than this
    /// build's: the operator first starts the current vouchd on it once, which migrates it.
    public final class Export: StoreCopySource {
        private let lock = Mutex(())
        private let db: SQLiteDatabase
        /// The database file.
        public let path: String

        public init(path: String) throws {
            guard FileManager.default.fileExists(atPath: path) else {
                throw VouchError(.notFound, "no database at \(path)", context: ["path": path])
            }
            self.path = path
            db = try SQLiteDatabase(path: path, readOnly: true)
            try Self.checkVersion(db, path: path)
        }

        /// Refuses a file that is not a broker's database, or is one at another schema version.
        private static func checkVersion(_ db: SQLiteDatabase, path: String) throws {
            let text: String?
            do {
                text = try db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").query([]) { $0.text(0) }.first
            } catch let e as VouchError {
                throw VouchError(.database, "\(path) is not a vouchd database: \(e.message)", context: ["path": path])
            }
            let current = SQLiteBrokerStore.schemaVersion
            guard let version = text.flatMap(Int.init), version == current else {
                let got = text ?? "none"
                let advice = (text.flatMap(Int.init) ?? 0) > current
                    ? "it was written by a newer vouchd: copy it with that release's vouch"
                    : "start this release's vouchd on it once (it migrates the database), stop it, then copy"
                throw VouchError(.database, "\(path) is at schema version \(got), this vouch copies version \(current): \(advice)",
                                 context: ["path": path, "expected": "\(current)", "got": got])
            }
        }

        /// Every table in `StoreCopy.tables` order, in one read transaction (WAL: a snapshot that
        /// writers after its first read do not change), each in primary-key order by keyset
        /// pagination (each chunk continues after the last key of the one before).
        public func exportRows(chunkSize: Int, _ chunk: (CopiedTable, [[StoredValue]]) throws -> Void) throws -> [String: Int64] {
            let size = max(1, chunkSize)
            return try lock.withLock { _ in
                try db.exec("BEGIN")
                defer { try? db.exec("COMMIT") }
                try Self.checkVersion(db, path: path)
                var serials: [String: Int64] = [:]
                for table in StoreCopy.tables {
                    let last = try export(table, size, chunk)
                    if let serial = table.serial, let i = table.columns.firstIndex(where: { $0.name == serial }), case let .int(id)? = last?[i] {
                        serials[table.name] = id
                    }
                }
                // AUTOINCREMENT's record of the largest id each table ever gave out.
                for (name, seq) in try db.prepare("SELECT name, seq FROM sqlite_sequence").query([], { ($0.text(0), $0.int(1)) })
                where StoreCopy.tables.contains(where: { $0.name == name && $0.serial != nil }) {
                    serials[name] = max(serials[name] ?? 0, seq)
                }
                return serials
            }
        }

        /// One table's rows, `size` at a time; returns its last row (nil: no rows).
        private func export(_ table: CopiedTable, _ size: Int, _ chunk: (CopiedTable, [[StoredValue]]) throws -> Void) throws -> [StoredValue]? {
            let order = table.primaryKey.joined(separator: ", ")
            let marks = table.primaryKey.map { _ in "?" }.joined(separator: ", ")
            let first = try db.prepare("SELECT \(table.columnList) FROM \(table.name) ORDER BY \(order) LIMIT ?")
            let next = try db.prepare("SELECT \(table.columnList) FROM \(table.name) WHERE (\(order)) > (\(marks)) ORDER BY \(order) LIMIT ?")
            var last: [StoredValue]?
            while true {
                let after = last.map { row in table.keyPositions.map { SQLValue(row[$0]) } }
                let rows = try (after == nil ? first : next).query((after ?? []) + [.int(Int64(size))]) { r in
                    try table.checked((0..<Int32(table.columns.count)).map { r.stored($0) })
                }
                guard let end = rows.last else { return last }
                try chunk(table, rows)
                last = end
                if rows.count < size { return last }
            }
        }
    }
}

extension SQLValue {
    init(_ value: StoredValue) {
        switch value {
        case .null: self = .null
        case let .int(x): self = .int(x)
        case let .real(x): self = .real(x)
        case let .text(s): self = .text(s)
        case let .bytes(b): self = .blob(b)
        }
    }
}

extension Statement.Row {
    /// The column's value by its storage class. Text that is not UTF-8, or holds a NUL (which
    /// PostgreSQL's text cannot), reads as bytes, so that the column's check refuses it by name.
    func stored(_ i: Int32) -> StoredValue {
        switch sqlite3_column_type(stmt, i) {
        case SQLITE_NULL: return .null
        case SQLITE_INTEGER: return .int(int(i))
        case SQLITE_FLOAT: return .real(real(i))
        case SQLITE_TEXT:
            let p = sqlite3_column_text(stmt, i)
            let raw = Array(UnsafeBufferPointer(start: p, count: Int(sqlite3_column_bytes(stmt, i))))
            guard !raw.contains(0), let s = String(validating: raw, as: UTF8.self) else { return .bytes(raw) }
            return .text(s)
        default: return .bytes(blob(i))
        }
    }
}
