internal import CPQ
import Foundation
import VouchCore
import VouchModel

// libpq, wrapped: one connection per `PGConnection` (never shared between threads at once),
// statements prepared once per connection, parameters and results as Swift values, and one
// helper (`check`) that turns a result's status and SQLSTATE into a typed error.

/// The SQLSTATEs the store acts on (PostgreSQL manual, appendix A).
enum SQLState {
    static let uniqueViolation = "23505"
    static let serializationFailure = "40001"
    static let deadlockDetected = "40P01"
    /// Class 08 (connection exception), and the server going away under a connection.
    static func isConnectionLoss(_ state: String) -> Bool {
        state.hasPrefix("08") || ["57P01", "57P02", "57P03"].contains(state)
    }
}

/// `PG_DIAG_SQLSTATE` ('C' in postgres_ext.h): a character-literal macro Swift does not import.
private let diagSQLState: Int32 = 67

extension VouchError {
    /// Whether the failure is one a transaction may simply run again for: a serialization failure
    /// or a deadlock (PostgreSQL rolled the transaction back and asks for a retry).
    var isRetryableTransaction: Bool {
        context["sqlstate"] == SQLState.serializationFailure || context["sqlstate"] == SQLState.deadlockDetected
    }
    /// Whether the connection is gone (the server restarted, failed over, the network dropped).
    var isConnectionLoss: Bool { context["connection"] == "lost" }
}

/// A value bound to a statement parameter. `bytes` travel in binary format and must be bound
/// where the server expects `bytea`; the others travel as text.
enum PGValue: Sendable {
    case null, int(Int64), real(Double), text(String), bytes([UInt8])

    static func date(_ d: Date) -> PGValue { .real(d.timeIntervalSince1970) }
    static func date(_ d: Date?) -> PGValue { d.map { .real($0.timeIntervalSince1970) } ?? .null }
    static func textOrNull(_ s: String?) -> PGValue { s.map { .text($0) } ?? .null }
    static func intOrNull(_ i: Int64?) -> PGValue { i.map { .int($0) } ?? .null }
}

/// A notification received on a LISTEN channel.
struct PGNotification: Sendable, Equatable {
    let channel: String
    let payload: String
}

/// A connection string with any password masked, for messages and logs.
func redactedURL(_ url: String) -> String {
    // postgres://user:secret@host/db → postgres://user:***@host/db; key=value strings: password=***
    if let scheme = url.range(of: "://"), let at = url[scheme.upperBound...].firstIndex(of: "@"),
       let colon = url[scheme.upperBound..<at].firstIndex(of: ":") {
        return String(url[..<url.index(after: colon)]) + "***" + String(url[at...])
    }
    return url.split(separator: " ").map { $0.hasPrefix("password=") ? "password=***" : String($0) }.joined(separator: " ")
}

/// One libpq connection. Not thread-safe: its owner (a pool checkout, the writer, a listener)
/// uses it from one thread at a time, hence `@unchecked Sendable`.
final class PGConnection: @unchecked Sendable {
    private let conn: OpaquePointer
    /// Statement names by SQL text: each statement is parsed and planned once per connection.
    private var prepared: [String: String] = [:]
    let target: String

    /// Connects to `url` (a `postgres://` URI or key=value string; several hosts and
    /// `target_session_attrs=read-write` are libpq's own). Defaults that the URL may override:
    /// a 5 s connect timeout; TCP keepalives and a 10 s TCP user timeout, so a dead server or a
    /// broken path is noticed in seconds; and session settings — no NOTICE messages (libpq would
    /// print them on stderr), `bytea` in hex and floats exact (what `PGRow` reads), a transaction
    /// left idle for 10 s ended by the server (so a replica that stalls holding the write lock
    /// cannot stop the others for longer), lock waits over 15 s and statements over 60 s failed.
    /// A server in recovery (a standby) is refused: its reads could miss committed revocations.
    init(url: String, applicationName: String = "vouchd") throws {
        target = redactedURL(url)
        let options = ["client_min_messages=warning", "bytea_output=hex", "extra_float_digits=3", "idle_in_transaction_session_timeout=10000",
                       "lock_timeout=15000", "statement_timeout=60000"].map { "-c " + $0 }.joined(separator: " ")
        let pairs: [(String, String)] = [("connect_timeout", "5"), ("application_name", applicationName), ("keepalives_idle", "10"),
                                         ("keepalives_interval", "5"), ("keepalives_count", "3"), ("tcp_user_timeout", "10000"),
                                         ("options", options), ("dbname", url)]
        let keys = pairs.map { strdup($0.0) }, values = pairs.map { strdup($0.1) }
        defer { (keys + values).forEach { free($0) } }
        let k = keys.map { UnsafePointer<CChar>($0) } + [nil], v = values.map { UnsafePointer<CChar>($0) } + [nil]
        guard let c = PQconnectdbParams(k, v, 1) else { throw VouchError(.database, "out of memory connecting to PostgreSQL") }
        guard PQstatus(c) == CONNECTION_OK else {
            let message = String(cString: PQerrorMessage(c)).trimmingCharacters(in: .whitespacesAndNewlines)
            PQfinish(c)
            throw VouchError(.database, "cannot connect to PostgreSQL at \(redactedURL(url)): \(message)", context: ["connection": "lost"])
        }
        conn = c
        // Warnings the server sends (a commit not confirmed by a synchronous standby) are kept for
        // the caller to read (`takeWarnings`); notices below warnings are not sent at all.
        PQsetNoticeProcessor(c, { context, message in
            guard let context, let message else { return }
            Unmanaged<PGConnection>.fromOpaque(context).takeUnretainedValue().warnings.append(String(cString: message))
        }, Unmanaged.passUnretained(self).toOpaque())
        if try query("SELECT pg_is_in_recovery()", [], { $0.text(0) }).first == "t" {
            throw VouchError(.database, "\(target) is a standby in recovery: give vouchd every host with target_session_attrs=read-write",
                             context: ["connection": "lost"])
        }
    }

    /// What the server warned about since the last call (e.g. "canceling wait for synchronous
    /// replication … the transaction has already committed locally").
    private var warnings: [String] = []
    func takeWarnings() -> [String] { defer { warnings = [] }; return warnings }

    deinit { PQfinish(conn) }

    /// False once the connection is broken (it is then dropped, never reused).
    var isHealthy: Bool { PQstatus(conn) == CONNECTION_OK }
    /// True when no transaction is open (only such a connection goes back to a pool).
    var isIdle: Bool { PQtransactionStatus(conn) == PQTRANS_IDLE }
    /// The socket, for waiting on notifications.
    var socket: Int32 { PQsocket(conn) }
    /// The server's version number (150018 for 15.18).
    var serverVersion: Int { Int(PQserverVersion(conn)) }

    /// Runs SQL text with no parameters (several statements allowed: migrations, BEGIN, LISTEN).
    func exec(_ sql: String) throws {
        let r = PQexec(conn, sql)
        defer { PQclear(r) }
        try check(r, sql)
    }

    /// Commits the open transaction; throws if the server rolled it back instead (a statement of
    /// it failed and the failure was not acted on: the server answers COMMIT with ROLLBACK).
    func commit() throws {
        let r = PQexec(conn, "COMMIT")
        defer { PQclear(r) }
        try check(r, "COMMIT")
        guard let r, String(cString: PQcmdStatus(r)) == "COMMIT" else {
            throw VouchError(.database, "the transaction was rolled back by the server at COMMIT", context: ["sqlstate": ""])
        }
    }

    /// Runs a statement; returns the number of rows it changed.
    @discardableResult
    func run(_ sql: String, _ params: [PGValue] = []) throws -> Int {
        try execute(sql, params) { r in Int(String(cString: PQcmdTuples(r))) ?? 0 }
    }

    /// Runs a query and maps each row.
    func query<T>(_ sql: String, _ params: [PGValue] = [], _ map: (PGRow) throws -> T) throws -> [T] {
        try execute(sql, params) { r in
            try (0..<PQntuples(r)).map { try map(PGRow(result: r, row: $0)) }
        }
    }

    /// Text travels as C strings: one with a NUL byte would be cut short, so it is refused.
    private static func validate(_ params: [PGValue]) throws {
        for case let .text(t) in params where t.utf8.contains(0) {
            throw VouchError(.badRequest, "a text value holds a NUL byte", context: ["field": "text"])
        }
    }

    private func execute<T>(_ sql: String, _ params: [PGValue], _ read: (OpaquePointer) throws -> T) throws -> T {
        try Self.validate(params)
        let name = try statement(sql)
        let r = Self.withParameters(params) { values, lengths, formats in
            PQexecPrepared(conn, name, Int32(params.count), values, lengths, formats, 0)
        }
        guard let r else { throw failure(nil, sql) }
        defer { PQclear(r) }
        try check(r, sql)
        return try read(r)
    }

    /// Calls `body` with `params` as libpq wants them (values, lengths, formats), valid for the call.
    private static func withParameters<T>(_ params: [PGValue], _ body: ([UnsafePointer<CChar>?], [Int32], [Int32]) -> T) -> T {
        var buffers: [UnsafeMutableRawPointer?] = []
        var lengths: [Int32] = [], formats: [Int32] = []
        defer { buffers.forEach { free($0) } }
        for p in params {
            switch p {
            case .null: buffers.append(nil); lengths.append(0); formats.append(0)
            case let .int(x): buffers.append(UnsafeMutableRawPointer(strdup(String(x)))); lengths.append(0); formats.append(0)
            case let .real(x): buffers.append(UnsafeMutableRawPointer(strdup(Self.float(x)))); lengths.append(0); formats.append(0)
            case let .text(s): buffers.append(UnsafeMutableRawPointer(strdup(s))); lengths.append(0); formats.append(0)   // NUL-free: see `validate`
            case let .bytes(b):
                let m = malloc(max(1, b.count))!
                b.withUnsafeBytes { if let base = $0.baseAddress { m.copyMemory(from: base, byteCount: b.count) } }
                buffers.append(m); lengths.append(Int32(b.count)); formats.append(1)
            }
        }
        return body(buffers.map { $0.map { UnsafePointer<CChar>($0.assumingMemoryBound(to: CChar.self)) } }, lengths, formats)
    }

    /// Runs one statement once per row of `rows`, pipelined (libpq's pipeline mode): the
    /// executions of a chunk are sent together and their results read after, so a batch costs a
    /// round trip per chunk instead of one per row — what the log sequencer's appends (an entry and
    /// its subtree hashes per row, thousands a round) spend under the write lock. Inside a
    /// transaction: the first failure fails the batch (and the transaction), thrown as `check` would.
    func runBatch(_ sql: String, _ rows: [[PGValue]]) throws {
        guard rows.count > 1 else {
            for row in rows { try run(sql, row) }
            return
        }
        for row in rows { try Self.validate(row) }
        let name = try statement(sql)
        for chunk in stride(from: 0, to: rows.count, by: Self.pipelineChunk).map({ rows[$0..<min($0 + Self.pipelineChunk, rows.count)] }) {
            guard PQenterPipelineMode(conn) == 1 else { throw failure(nil, sql) }
            var firstError: VouchError?
            var sent = 0
            for row in chunk {
                let ok = Self.withParameters(row) { values, lengths, formats in
                    PQsendQueryPrepared(conn, name, Int32(row.count), values, lengths, formats, 0)
                }
                guard ok == 1 else { firstError = failure(nil, sql); break }
                sent += 1
            }
            if PQpipelineSync(conn) != 1, firstError == nil { firstError = failure(nil, sql) }
            // Each execution's results end with a null; the sync point's result comes last.
            for _ in 0..<sent {
                while let r = PQgetResult(conn) {
                    let status = PQresultStatus(r)
                    if firstError == nil, status != PGRES_COMMAND_OK, status != PGRES_TUPLES_OK { firstError = failure(r, sql) }
                    PQclear(r)
                }
            }
            while let r = PQgetResult(conn) {
                let done = PQresultStatus(r) == PGRES_PIPELINE_SYNC
                PQclear(r)
                if done { break }
            }
            _ = PQexitPipelineMode(conn)
            if let firstError { throw firstError }
        }
    }

    /// Executions sent before their results are read: small enough that the results never fill
    /// the socket's buffers while libpq blocks sending.
    static let pipelineChunk = 256

    /// Doubles as text PostgreSQL reads back to the same value (Swift prints the shortest exact form).
    private static func float(_ x: Double) -> String {
        x.isNaN ? "NaN" : x.isInfinite ? (x < 0 ? "-Infinity" : "Infinity") : "\(x)"
    }

    private func statement(_ sql: String) throws -> String {
        if let name = prepared[sql] { return name }
        let name = "v\(prepared.count)"
        let r = PQprepare(conn, name, sql, 0, nil)
        defer { PQclear(r) }
        try check(r, sql)
        prepared[sql] = name
        return name
    }

    /// The one place a libpq result becomes a typed error: a unique violation is `conflict`,
    /// anything else `database`, with the SQLSTATE in the context, and `connection: lost` when
    /// the connection is gone.
    private func check(_ r: OpaquePointer?, _ sql: String) throws {
        let status = r.map { PQresultStatus($0) } ?? PGRES_FATAL_ERROR
        guard status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY else { throw failure(r, sql) }
    }

    private func failure(_ r: OpaquePointer?, _ sql: String) -> VouchError {
        let state = r.flatMap { PQresultErrorField($0, diagSQLState) }.map { String(cString: $0) } ?? ""
        let text = (r.flatMap { PQresultErrorMessage($0) }.map { String(cString: $0) }).flatMap { $0.isEmpty ? nil : $0 }
            ?? String(cString: PQerrorMessage(conn))
        var context = ["sqlstate": state]
        if !isHealthy || SQLState.isConnectionLoss(state) { context["connection"] = "lost" }
        let statement = sql.split(whereSeparator: \.isNewline).first.map { String($0.prefix(60)) } ?? ""
        return VouchError(state == SQLState.uniqueViolation ? .conflict : .database,
                          "\(statement): \(text.trimmingCharacters(in: .whitespacesAndNewlines))", context: context)
    }

    // MARK: notifications

    /// Waits up to `timeout` seconds for notifications on the channels this connection LISTENs
    /// to, and returns those that arrived (none on timeout). Throws when the connection is lost.
    func notifications(timeout: TimeInterval) throws -> [PGNotification] {
        var found = drainNotifications()
        if !found.isEmpty { return found }
        var fds = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let ready = poll(&fds, 1, Int32(max(0, timeout) * 1000))
        if ready < 0 && errno != EINTR { throw VouchError(.database, "waiting for notifications failed", context: ["connection": "lost"]) }
        guard PQconsumeInput(conn) == 1 else {
            throw VouchError(.database, "the notification connection was lost: \(String(cString: PQerrorMessage(conn)))", context: ["connection": "lost"])
        }
        found = drainNotifications()
        return found
    }

    private func drainNotifications() -> [PGNotification] {
        var out: [PGNotification] = []
        while let n = PQnotifies(conn) {
            out.append(PGNotification(channel: String(cString: n.pointee.relname), payload: String(cString: n.pointee.extra)))
            PQfreemem(n)
        }
        return out
    }
}

/// One row of a result, read in text format.
struct PGRow: StoredRow {
    let result: OpaquePointer
    let row: Int32

    func isNull(_ i: Int32) -> Bool { PQgetisnull(result, row, i) == 1 }
    func text(_ i: Int32) -> String { String(cString: PQgetvalue(result, row, i)) }
    func int(_ i: Int32) -> Int64 { Int64(text(i)) ?? 0 }
    func real(_ i: Int32) -> Double { Double(text(i)) ?? 0 }
    /// A `bytea` in the server's hex output format (`\x` and two digits a byte).
    func bytes(_ i: Int32) -> [UInt8] {
        let count = Int(PQgetlength(result, row, i))
        guard count >= 2, let p = PQgetvalue(result, row, i) else { return [] }
        return UnsafeBufferPointer(start: p, count: count).withMemoryRebound(to: UInt8.self) { raw in
            var out: [UInt8] = []
            out.reserveCapacity((count - 2) / 2)
            var i = 2
            while i + 1 < count {
                out.append(Self.nibble(raw[i]) << 4 | Self.nibble(raw[i + 1]))
                i += 2
            }
            return out
        }
    }

    private static func nibble(_ c: UInt8) -> UInt8 {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x61...0x66: c - 0x61 + 10
        case 0x41...0x46: c - 0x41 + 10
        default: 0
        }
    }

}
