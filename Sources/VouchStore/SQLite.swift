internal import CSQLite
internal import CVouchShims
import Foundation
import VouchCore
import VouchModel

/// The one place SQLite return codes become typed errors.
func sqliteCheck(_ rc: Int32, _ db: OpaquePointer?, _ operation: String) throws {
    guard rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW else {
        let message = db.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
        throw VouchError(rc == SQLITE_CONSTRAINT ? .conflict : .database, "\(operation): \(message)", context: ["sqlite": "\(rc)"])
    }
}

/// A SQLite connection (WAL, synchronous=FULL, foreign keys on). Not thread-safe by itself:
/// its owner serializes every use behind a lock, hence `@unchecked Sendable`.
final class SQLiteDatabase: @unchecked Sendable {
    private(set) var db: OpaquePointer?
    /// Prepared statements by SQL text, reused (each run or query resets its statement when done):
    /// compiling the SQL was a tenth of the broker's time on re-attestation rounds.
    private var statements: [String: Statement] = [:]
    private static let maxCachedStatements = 256

    /// Opens (creating) the database at `path` for the store; `readOnly`: an existing file,
    /// read only (no file is created, the journal mode is left as it is, and the connection
    /// refuses every write: `vouch store copy` reads a stopped broker's database this way).
    init(path: String, readOnly: Bool = false) throws {
        var handle: OpaquePointer?
        let flags = readOnly ? SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK else {
            defer { sqlite3_close(handle) }
            try sqliteCheck(rc, handle, "open \(path)")
            throw VouchError(.database, "open \(path) failed")
        }
        db = handle
        sqlite3_busy_timeout(db, 5000)
        if readOnly {
            try exec("PRAGMA query_only=ON")
            return
        }
        try exec("PRAGMA journal_mode=WAL")
        try exec("PRAGMA synchronous=FULL")
        try exec("PRAGMA foreign_keys=ON")
    }

    deinit {
        statements.removeAll()   // finalized before the connection closes
        sqlite3_close_v2(db)
    }

    func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &err)
        if let err { sqlite3_free(err) }
        try sqliteCheck(rc, db, sql.prefix(60).description)
    }

    /// The prepared statement for `sql`, from the cache when it was prepared before. Callers run
    /// it at once (`run`/`query` bind afresh and reset it when done), never hold it.
    func prepare(_ sql: String) throws -> Statement {
        if let cached = statements[sql] { return cached }
        var stmt: OpaquePointer?
        try sqliteCheck(sqlite3_prepare_v2(db, sql, -1, &stmt, nil), db, "prepare")
        let statement = Statement(stmt!, db: db)
        if statements.count < Self.maxCachedStatements { statements[sql] = statement }
        return statement
    }

    /// Transactions open on this connection; inner ones are savepoints.
    private var depth = 0

    /// Runs `body` in a transaction (BEGIN IMMEDIATE), committing on success and rolling back on
    /// error. Inside another transaction it is a savepoint: released on success, rolled back to
    /// on error (leaving the outer transaction's other work intact).
    func transaction<T>(_ body: () throws -> T) throws -> T {
        // Prepared (and cached) like any statement: sqlite3_exec compiles them on every call.
        let savepoint = depth == 0 ? nil : "s\(depth)"
        try prepare(savepoint.map { "SAVEPOINT \($0)" } ?? "BEGIN IMMEDIATE").run()
        depth += 1
        defer { depth -= 1 }
        do {
            let v = try body()
            try prepare(savepoint.map { "RELEASE \($0)" } ?? "COMMIT").run()
            return v
        } catch {
            if let savepoint {
                try? prepare("ROLLBACK TO \(savepoint)").run()
                try? prepare("RELEASE \(savepoint)").run()
            } else {
                try? prepare("ROLLBACK").run()
            }
            throw error
        }
    }

    /// Runs `body` in a read transaction (a deferred BEGIN, then COMMIT): every query in it reads
    /// one snapshot, the last commit when its first query ran. For read connections, which never
    /// write (`readOnly`), so never wait for or block the writer in WAL mode.
    func readTransaction<T>(_ body: () throws -> T) throws -> T {
        try prepare("BEGIN").run()
        do {
            let v = try body()
            try prepare("COMMIT").run()
            return v
        } catch {
            try? prepare("ROLLBACK").run()
            throw error
        }
    }

    /// False when the connection is in autocommit mode (no transaction open).
    var inTransaction: Bool { sqlite3_get_autocommit(db) == 0 }
    var changes: Int { Int(sqlite3_changes(db)) }
    var lastInsertID: Int64 { sqlite3_last_insert_rowid(db) }
}

/// A bindable value.
enum SQLValue {
    case null, int(Int64), real(Double), text(String), blob([UInt8])
}

final class Statement {
    private let stmt: OpaquePointer
    private let db: OpaquePointer?

    init(_ stmt: OpaquePointer, db: OpaquePointer?) { self.stmt = stmt; self.db = db }
    deinit { sqlite3_finalize(stmt) }

    @discardableResult
    func bind(_ values: [SQLValue]) throws -> Statement {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
        for (i, v) in values.enumerated() {
            let idx = Int32(i + 1)
            let rc: Int32
            switch v {
            case .null: rc = sqlite3_bind_null(stmt, idx)
            case let .int(x): rc = sqlite3_bind_int64(stmt, idx, x)
            case let .real(x): rc = sqlite3_bind_double(stmt, idx, x)
            case let .text(s): rc = vouch_sqlite_bind_text(stmt, idx, s, -1)
            case let .blob(b): rc = b.withUnsafeBytes { vouch_sqlite_bind_blob(stmt, idx, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(b.count)) }
            }
            try sqliteCheck(rc, db, "bind")
        }
        return self
    }

    /// Runs a statement that returns no rows.
    func run(_ values: [SQLValue] = []) throws {
        try bind(values)
        let rc = sqlite3_step(stmt)
        defer { sqlite3_reset(stmt) }
        try sqliteCheck(rc, db, "step")
    }

    /// Runs a query and maps each row.
    func query<T>(_ values: [SQLValue] = [], _ map: (Row) throws -> T) throws -> [T] {
        try bind(values)
        defer { sqlite3_reset(stmt) }
        var out: [T] = []
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { try sqliteCheck(rc, db, "step"); break }
            out.append(try map(Row(stmt: stmt)))
        }
        return out
    }

    struct Row: StoredRow {
        let stmt: OpaquePointer
        func isNull(_ i: Int32) -> Bool { sqlite3_column_type(stmt, i) == SQLITE_NULL }
        func int(_ i: Int32) -> Int64 { sqlite3_column_int64(stmt, i) }
        func real(_ i: Int32) -> Double { sqlite3_column_double(stmt, i) }
        func text(_ i: Int32) -> String { sqlite3_column_text(stmt, i).map { String(cString: $0) } ?? "" }
        func blob(_ i: Int32) -> [UInt8] {
            let n = Int(sqlite3_column_bytes(stmt, i))
            guard n > 0, let p = sqlite3_column_blob(stmt, i) else { return [] }
            return Array(UnsafeRawBufferPointer(start: p, count: n))
        }
        func bytes(_ i: Int32) -> [UInt8] { blob(i) }
    }
}
